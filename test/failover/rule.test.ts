/** The failover rule alone: both signs needed, whichever comes second promotes, once. */
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { describe, test } from 'node:test';
import { ArbiterError, ArbiterErrorCodes } from '../../src/arbiter/errors.js';
import { ErrorCodes, TandemError } from '../../src/errors.js';
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
          // An open stream that carries nothing counts as gone.
          const silentWant = promoted || peer !== 'dead' ? 'stay' : 'promote';
          assert.equal(failoverVerdict({ peer, streamOpen, streamSilent: true, promoted }), silentWant, JSON.stringify({ peer, streamOpen, silent: true, promoted }));
        }
      }
    }
  });
});

class FakeHeartbeat extends EventEmitter {
  peerState: PeerState = 'alive';
  peerIntent: 'stand-down' | 'hand-over' | undefined;
}

class FakeServer extends EventEmitter {
  primary: string | undefined = '10.0.0.1:5000';
  /** When the stream last carried bytes (performance.now()). */
  lastDataAt = performance.now();
  get streamSilentMs(): number | undefined {
    return this.primary === undefined ? undefined : performance.now() - this.lastDataAt;
  }
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
      assert.deepEqual(p.promotions, ['primary silent for 250 ms, its stream ended']);
      // Later signs change nothing: one promotion.
      p.primaryDies();
      p.streamEnds();
      await new Promise((r) => setImmediate(r));
      assert.equal(p.promotions.length, 1);
      rule.stop();
    });
  }

  test('a stream left open but silent (a partition, a hung primary) counts as gone once silent for the timeout; one still carrying bytes does not', async () => {
    const p = new Parts();
    const rule = new FailoverRule(p.parts, 100, captureLog().logger, undefined, 50);
    rule.start();
    // Bytes keep arriving (a one-sided heartbeat cut): no promotion however long heartbeats stay silent.
    const feeding = setInterval(() => (p.server.lastDataAt = performance.now()), 20);
    p.primaryDies();
    await new Promise((r) => setTimeout(r, 400));
    assert.deepEqual(p.promotions, [], 'the stream carries data: the primary lives');
    clearInterval(feeding);
    const quietFrom = p.server.lastDataAt;
    await until(() => p.promotions.length === 1, 'the promotion once the stream fell silent');
    const after = performance.now() - quietFrom;
    assert.ok(after >= 250 - 5, `promoted ${after.toFixed(0)} ms after the stream fell silent: not before twice the timeout plus the quiet allowance (250 ms)`);
    assert.deepEqual(p.promotions, ['primary silent for 100 ms, its stream silent too']);
    rule.stop();
  });

  test('a primary that stops in order and stands the secondary down is never failed over from, however silent it goes', async () => {
    const p = new Parts();
    const rule = new FailoverRule(p.parts, 100, captureLog().logger);
    rule.start();
    p.heartbeat.peerIntent = 'stand-down';
    p.heartbeat.emit('leaving');
    p.streamEnds();
    p.primaryDies();
    await new Promise((r) => setTimeout(r, 300));
    assert.deepEqual(p.promotions, []);
    assert.equal(failoverVerdict({ peer: 'dead', streamOpen: false, promoted: false, leaving: 'stand-down' }), 'stay');
    rule.stop();
  });

  test('a primary that hands over is taken over from as soon as its stream ends, without waiting for the timeout', async () => {
    const p = new Parts();
    const rule = new FailoverRule(p.parts, 60_000, captureLog().logger);
    rule.start();
    p.heartbeat.peerIntent = 'hand-over';
    p.heartbeat.emit('leaving');
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(p.promotions, [], 'not while the last epoch may still be arriving');
    p.streamEnds();
    await until(() => p.promotions.length === 1, 'the takeover');
    assert.deepEqual(p.promotions, ['planned switchover: the primary stopped in order and handed over']);
    assert.equal(p.heartbeat.peerState, 'alive', 'no dead verdict was needed');
    rule.stop();
  });

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

describe('FailoverRule and the arbiter', () => {
  /** A promoter refusing with `errors` in turn (wrapped as the promoter wraps a claim's refusal), then promoting. */
  function refusing(p: Parts, errors: Error[]): void {
    p.promoter.promote = (reason: string): Promise<unknown> => {
      p.promotions.push(reason);
      const err = errors.shift();
      if (err === undefined) {
        p.promoter.engaged = true;
        return Promise.resolve();
      }
      return Promise.reject(new TandemError(ErrorCodes.NOTHING_TO_FAIL_OVER, `cannot fail over: ${err.message}`, { cause: err }));
    };
  }

  test('a refusal that may pass (the primary\'s lease still live, the arbiter unreachable) is asked again until it succeeds', async () => {
    const p = new Parts();
    refusing(p, [new ArbiterError(ArbiterErrorCodes.ARBITER_HELD, 'held'), new ArbiterError(ArbiterErrorCodes.ARBITER_UNREACHABLE, 'unreachable')]);
    const rule = new FailoverRule(p.parts, 250, captureLog().logger, 10);
    rule.start();
    p.primaryDies();
    p.streamEnds();
    await until(() => p.promotions.length === 3, 'three attempts');
    assert.equal(p.promoter.engaged, true);
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(p.promotions.length, 3, 'none after it succeeded');
    rule.stop();
  });

  test('a final refusal (stale replica) is not retried, and neither is one whose primary is heard again', async () => {
    const p = new Parts();
    refusing(p, [new ArbiterError(ArbiterErrorCodes.ARBITER_STALE, 'stale')]);
    const rule = new FailoverRule(p.parts, 250, captureLog().logger, 10);
    rule.start();
    p.primaryDies();
    p.streamEnds();
    await new Promise((r) => setTimeout(r, 60));
    assert.equal(p.promotions.length, 1);

    const q = new Parts();
    refusing(q, [new ArbiterError(ArbiterErrorCodes.ARBITER_HELD, 'held'), new ArbiterError(ArbiterErrorCodes.ARBITER_HELD, 'held')]);
    const rule2 = new FailoverRule(q.parts, 250, captureLog().logger, 30);
    rule2.start();
    q.primaryDies();
    q.streamEnds();
    await until(() => q.promotions.length === 1, 'the first attempt');
    // Heard again before the retry: the signs no longer say promote.
    q.heartbeat.peerState = 'alive';
    q.heartbeat.emit('peer');
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(q.promotions.length, 1);
    assert.equal(q.promoter.engaged, false);
    rule.stop();
    rule2.stop();
  });
});
