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
          // A stranded primary's word promotes whatever the detector says, but never twice, and never over a stand-down.
          assert.equal(failoverVerdict({ peer, streamOpen, promoted, stranded: true }), promoted ? 'stay' : peer === 'dead' && streamOpen ? 'wait-for-stream' : 'promote');
          assert.equal(failoverVerdict({ peer, streamOpen, promoted, stranded: true, leaving: 'stand-down' }), 'stay');
        }
      }
    }
  });
});

class FakeHeartbeat extends EventEmitter {
  peerState: PeerState = 'alive';
  peerIntent: 'stand-down' | 'hand-over' | undefined;
  strandedAt: number | undefined;
  get peerStrandedMs(): number | undefined {
    return this.strandedAt === undefined ? undefined : performance.now() - this.strandedAt;
  }
}

class FakeServer extends EventEmitter {
  primary: string | undefined = '10.0.0.1:5000';
  lastEpoch = 7;
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

  stranded(yes: boolean): void {
    this.heartbeat.strandedAt = yes ? performance.now() : undefined;
    this.heartbeat.emit('stranded');
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

describe('FailoverRule and a stranded primary', () => {
  const STRANDED_REASON = /^the primary has been stranded for \d+ ms \(no replica acks its output and the arbiter gives it no authority\), no stream here$/;

  test('with an arbiter: a live primary stranded for the timeout, its stream gone, is taken over from; not before the timeout', async () => {
    const p = new Parts();
    const rule = new FailoverRule(p.parts, 100, captureLog().logger, undefined, 0, true);
    rule.start();
    p.streamEnds();
    const from = performance.now();
    p.stranded(true);
    await new Promise((r) => setTimeout(r, 40));
    assert.deepEqual(p.promotions, [], 'said for less than the timeout');
    await until(() => p.promotions.length === 1, 'the takeover');
    assert.ok(performance.now() - from >= 100 - 5, 'not before the timeout');
    assert.match(p.promotions[0], STRANDED_REASON);
    assert.equal(p.heartbeat.peerState, 'alive', 'no dead verdict was needed');
    rule.stop();
  });

  test('a primary that is stranded only briefly (between a lost stream and its next, or awaiting the arbiter) is not taken over from', async () => {
    const p = new Parts();
    const rule = new FailoverRule(p.parts, 100, captureLog().logger, undefined, 0, true);
    rule.start();
    p.streamEnds();
    p.stranded(true);
    await new Promise((r) => setTimeout(r, 50));
    p.stranded(false);
    await new Promise((r) => setTimeout(r, 150));
    assert.deepEqual(p.promotions, []);
    rule.stop();
  });

  test('not without an arbiter, not while a stream carries bytes here, and not without a checkpoint to go back to', async () => {
    // No arbiter: nobody could check that the primary is not serving after all.
    const a = new Parts();
    const ruleA = new FailoverRule(a.parts, 50, captureLog().logger);
    ruleA.start();
    a.streamEnds();
    a.stranded(true);
    // A stream carrying bytes (the primary's pre-copy): wait; once it is silent for the timeout, take over.
    const b = new Parts();
    const ruleB = new FailoverRule(b.parts, 50, captureLog().logger, undefined, 0, true);
    ruleB.start();
    const feeding = setInterval(() => (b.server.lastDataAt = performance.now()), 10);
    b.stranded(true);
    // A replica that gave its checkpoint up (a new stream's pre-copy began): nothing to take over with.
    const c = new Parts();
    c.server.lastEpoch = 0;
    const ruleC = new FailoverRule(c.parts, 50, captureLog().logger, undefined, 0, true);
    ruleC.start();
    c.streamEnds();
    c.stranded(true);
    await new Promise((r) => setTimeout(r, 250));
    assert.deepEqual([a.promotions, b.promotions, c.promotions], [[], [], []]);
    clearInterval(feeding);
    await until(() => b.promotions.length === 1, 'the takeover once the stream fell silent');
    assert.match(b.promotions[0], /its stream here silent$/);
    for (const r of [ruleA, ruleB, ruleC]) r.stop();
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
