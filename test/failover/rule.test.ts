/** The failover rule alone: both signs needed, whichever comes second promotes, once. */
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { describe, test } from 'node:test';
import { FailoverRule, failoverVerdict, type FailoverParts } from '../../src/failover/rule.js';
import type { PeerState } from '../../src/heartbeat/detector.js';
import { until } from '../helpers/wait.js';
import { captureLog } from '../secondary/fixtures.js';

describe('failoverVerdict', () => {
  test('promote only when the primary is dead and its stream is gone, and not twice', () => {
    const states: PeerState[] = ['unknown', 'alive', 'suspect', 'dead'];
    for (const peer of states) {
      for (const streamOpen of [false, true]) {
        for (const promoted of [false, true]) {
          const want = promoted || peer !== 'dead' ? 'stay' : streamOpen ? 'wait-for-stream' : 'promote';
          assert.equal(failoverVerdict({ peer, streamOpen, promoted }), want, JSON.stringify({ peer, streamOpen, promoted }));
        }
      }
    }
  });
});

class FakeHeartbeat extends EventEmitter {
  peerState: PeerState = 'alive';
}

class FakeServer extends EventEmitter {
  primary: string | undefined = '10.0.0.1:5000';
}

/** Fake parts: a heartbeat channel, a server and a promoter the test drives. */
class Parts {
  readonly heartbeat = new FakeHeartbeat();
  readonly server = new FakeServer();
  readonly promotions: string[] = [];
  readonly promoter = {
    engaged: false,
    promote: (reason: string): Promise<unknown> => {
      this.promotions.push(reason);
      this.promoter.engaged = true;
      return Promise.resolve();
    },
  };

  get parts(): FailoverParts {
    return this;
  }

  primaryDies(): void {
    this.heartbeat.peerState = 'dead';
    this.heartbeat.emit('peer');
  }

  streamEnds(): void {
    this.server.primary = undefined;
    this.server.emit('primary-gone');
  }
}

describe('FailoverRule', () => {
  for (const order of ['heartbeats first', 'stream first'] as const) {
    test(`promotes once, whichever sign comes second (${order})`, async () => {
      const p = new Parts();
      const log = captureLog();
      const rule = new FailoverRule(p.parts, 250, log.logger);
      rule.start();
      if (order === 'heartbeats first') {
        p.primaryDies();
        assert.deepEqual(p.promotions, [], 'the stream is still open: no promotion yet');
        assert.equal(log.find(/waiting for it to end/).length, 1);
        p.streamEnds();
      } else {
        p.streamEnds();
        await new Promise((r) => setImmediate(r));
        assert.deepEqual(p.promotions, [], 'heartbeats still arrive: a reset link is not a dead primary');
        p.primaryDies();
      }
      await until(() => p.promotions.length === 1, 'the promotion');
      assert.deepEqual(p.promotions, ['primary silent for 250 ms']);
      // Later signs change nothing: one promotion.
      p.primaryDies();
      p.streamEnds();
      await new Promise((r) => setImmediate(r));
      assert.equal(p.promotions.length, 1);
      rule.stop();
    });
  }

  test('stopped, it acts on nothing', async () => {
    const p = new Parts();
    const rule = new FailoverRule(p.parts, 250, captureLog().logger);
    rule.start();
    rule.stop();
    p.streamEnds();
    p.primaryDies();
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(p.promotions, []);
    assert.equal(rule.check(), 'stay');
  });
});
