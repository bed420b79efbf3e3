/** The primary's watch for a secondary silent on both channels: both signs needed, the link ended once. */
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { describe, test } from 'node:test';
import { SilentStandbyWatch } from '../../src/failover/silent-standby.js';
import type { PeerState } from '../../src/heartbeat/detector.js';
import { until } from '../helpers/wait.js';
import { captureLog } from '../secondary/fixtures.js';

class FakeHeartbeat extends EventEmitter {
  peerState: PeerState = 'alive';
}

function parts(): { heartbeat: FakeHeartbeat; engine: { lastDataAt: number | undefined; readonly linkSilentMs: number | undefined; abandoned: string[]; abandonLink(reason: string): void } } {
  const engine = {
    lastDataAt: performance.now() as number | undefined,
    get linkSilentMs(): number | undefined {
      return this.lastDataAt === undefined ? undefined : performance.now() - this.lastDataAt;
    },
    abandoned: [] as string[],
    abandonLink(reason: string): void {
      this.abandoned.push(reason);
      this.lastDataAt = undefined;
    },
  };
  return { heartbeat: new FakeHeartbeat(), engine };
}

describe('SilentStandbyWatch', () => {
  test('heartbeats dead and the link silent for the timeout plus its quiet: the link is ended, once', async () => {
    const p = parts();
    const log = captureLog();
    const watch = new SilentStandbyWatch(p, 100, 50, log.logger);
    watch.start();
    const quietFrom = (p.engine.lastDataAt = performance.now());
    p.heartbeat.peerState = 'dead';
    p.heartbeat.emit('peer');
    assert.deepEqual(p.engine.abandoned, [], 'not before the link was silent long enough');
    await until(() => p.engine.abandoned.length === 1, 'the link to be ended');
    assert.ok(performance.now() - quietFrom >= 145);
    assert.match(p.engine.abandoned[0], /the secondary is silent on both channels \(heartbeats for 100 ms, the replication link for \d+ ms\)/);
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(p.engine.abandoned.length, 1);
    watch.stop();
  });

  test('a session opened while heartbeats are already dead (a new standby that accepted and hung) is ended too', async () => {
    const p = parts();
    const watch = new SilentStandbyWatch(p, 60, 20, captureLog().logger);
    watch.start();
    p.engine.lastDataAt = undefined;
    p.heartbeat.peerState = 'dead';
    p.heartbeat.emit('peer');
    await new Promise((r) => setTimeout(r, 150));
    assert.deepEqual(p.engine.abandoned, [], 'no session: nothing to end');
    // The engine connects; the standby never says a word, and no 'peer' event comes.
    p.engine.lastDataAt = performance.now();
    await until(() => p.engine.abandoned.length === 1, 'the silent session to be ended');
    watch.stop();
  });

  test('acks still arriving (a one-sided heartbeat cut) or heartbeats back: the session goes on', async () => {
    const p = parts();
    const watch = new SilentStandbyWatch(p, 60, 0, captureLog().logger);
    watch.start();
    const feeding = setInterval(() => (p.engine.lastDataAt = performance.now()), 10);
    p.heartbeat.peerState = 'dead';
    p.heartbeat.emit('peer');
    await new Promise((r) => setTimeout(r, 300));
    assert.deepEqual(p.engine.abandoned, []);
    clearInterval(feeding);
    // Heard again before the link's silence counts: nothing.
    p.heartbeat.peerState = 'alive';
    p.heartbeat.emit('peer');
    await new Promise((r) => setTimeout(r, 200));
    assert.deepEqual(p.engine.abandoned, []);
    watch.stop();
  });
});
