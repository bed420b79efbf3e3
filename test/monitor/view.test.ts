/** The terminal views of `tandem watch`, from events. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { MonitorEvent } from '../../src/monitor/events.js';
import { DomainsWatchView, WatchView, eventLine } from '../../src/monitor/view.js';

const T = Date.UTC(2026, 0, 1, 12, 0, 0);
const env = { v: 1 as const, node: 'primary' as const };
const epoch = (n: number, ts: number): MonitorEvent => ({ ...env, ts, seq: n, type: 'epoch', epoch: n, trigger: 'timer', pauseUs: 250, dirtyPages: 12, bytes: 2048, sendMs: 0.5, ackMs: 0.2, totalMs: 1.5, applyMs: null });

test('one line per event says what happened', () => {
  assert.equal(eventLine(epoch(7, T)), '12:00:00.000 primary epoch 7 (timer) pause 0.25 ms dirty 12 2.0 KiB total 1.50 ms');
  assert.equal(eventLine({ ...env, ts: T, seq: 1, type: 'divergence', connection: 'a->b', reason: 'differs' }), '12:00:00.000 primary DIVERGENCE on a->b: differs');
  assert.equal(eventLine({ ...env, ts: T, seq: 1, type: 'state', state: 'degraded', previous: 'protected', reason: 'link lost' }), '12:00:00.000 primary state protected -> degraded: link lost');
  assert.match(eventLine({ ...env, ts: T, type: 'dropped', count: 3 }), /missed 3 events/);
  const precopy = { ...env, ts: T, seq: 2, type: 'precopy' as const, iteration: 1, pagesSent: 196_608, pagesTotal: 786_432, percent: 25, bytes: 805_306_368, elapsedMs: 6000, bytesPerSecond: 134_217_728, etaMs: 18_000, done: false };
  assert.equal(eventLine(precopy), '12:00:00.000 primary pre-copy round 1: 196608/786432 pages (25.0 %) 768.0 MiB at 128.0 MiB/s ETA 18 s');
  assert.equal(eventLine({ ...precopy, pagesSent: null, pagesTotal: null, percent: null, etaMs: null }), '12:00:00.000 primary pre-copy round 1: 768.0 MiB at 128.0 MiB/s');
  assert.equal(eventLine({ ...precopy, iteration: 3, done: true }), '12:00:00.000 primary pre-copy: live rounds done after 3 rounds, 768.0 MiB in 6.0 s; first checkpoint');
  assert.match(eventLine({ ...env, ts: T, type: 'error', id: 1, code: 'ERR_X', message: 'm' }), /error 1: m \[ERR_X\]/);
});

test('the full-screen view follows the state, the epochs and the rate', () => {
  const v = new WatchView();
  v.apply({ ...env, ts: T, seq: 0, type: 'snapshot', state: 'precopy', reason: 'sending memory', mode: 'remus', intervalMs: 50, lastEpoch: 0, lagMs: null, actions: [], recent: [], clients: 1, arbiter: { kind: 'etcd', holder: 'alpha', generation: 3, protected: true, authority: false }, precopy: null, generation: 3, heartbeat: 'alive', heldBytes: null, peer: null, history: [], lastFailover: null, guestProtected: false });
  assert.match(v.render(T), /state PRECOPY +\(sending memory\)/);
  assert.match(v.render(T), /lag -/);
  assert.match(eventLine({ ...env, ts: T, seq: 0, type: 'snapshot', state: 'protected', reason: 'r', mode: 'remus', intervalMs: 50, lastEpoch: 0, lagMs: null, actions: [], recent: [], clients: 0, arbiter: { kind: 'etcd', holder: 'alpha', generation: 3, protected: true, authority: false }, precopy: null, generation: 3, heartbeat: 'alive', heldBytes: null, peer: null, history: [], lastFailover: null, guestProtected: true }), /arbiter: alpha holds it at generation 3, protected$/);
  for (let i = 1; i <= 20; i++) v.apply(epoch(i, T + i * 100));
  v.apply({ ...env, ts: T + 2100, seq: 21, type: 'state', state: 'protected', previous: 'precopy', reason: 'holds epoch 1' });
  const screen = v.render(T + 3000);
  assert.match(screen, /state PROTECTED/);
  assert.match(screen, /epoch 20 /);
  assert.match(screen, /lag 1000 ms/);
  assert.match(screen, /4\.0 epochs\/s/, '20 epochs over the last five whole seconds');
  assert.equal((screen.match(/^ {2}epoch \d+/gm) ?? []).length, 10, 'the last ten epochs');
  for (const line of v.render(T + 3000, 40).split('\n')) assert.ok(line.length <= 40);
  assert.match(v.render(T + 3000, 0), /^events:$/m, 'a terminal that reports no width gets whole lines');
});

test('the full-screen view shows the peer, the last failover, and the history from before it connected', () => {
  const v = new WatchView();
  const peer = { url: 'http://127.0.0.1:7791/', reachable: true, error: null, fetchedAt: T - 500, node: 'secondary' as const, state: 'standby' as const, reason: 'r', generation: 3, heartbeat: 'alive' as const, lastEpoch: 41, lagMs: 20, heldBytes: null, clients: 0, lastFailover: null };
  const before = { ...env, ts: T - 60_000, seq: 4, type: 'state' as const, state: 'protected' as const, previous: 'precopy' as const, reason: 'holds epoch 1' };
  v.apply({ ...env, ts: T, seq: 9, type: 'snapshot', state: 'protected', reason: 'r', mode: 'remus', intervalMs: 50, lastEpoch: 42, lagMs: null, actions: [], recent: [], clients: 1, arbiter: { kind: 'none', holder: null, generation: null, protected: false, authority: true }, precopy: null, generation: 3, heartbeat: 'alive', heldBytes: 2048, peer, history: [before], lastFailover: null, guestProtected: true });
  let screen = v.render(T, 200);
  assert.match(screen, /^peer secondary standby, generation 3, heartbeat alive, epoch 41, lag 20 ms, clients 0 \(http:\/\/127\.0\.0\.1:7791\/\)$/m);
  assert.match(screen, /^ {2}11:59:00\.000 primary state precopy -> protected: holds epoch 1$/m, 'the history fills the log');
  assert.doesNotMatch(screen, /last failover/);

  const gone = { ...peer, reachable: false, error: 'connect ECONNREFUSED 127.0.0.1:7791' };
  // The event's flat fields repeat its peer's, but `node`: that one is the envelope's.
  v.apply({ ...gone, ...env, ts: T + 1000, seq: 10, type: 'peer', peer: gone, changed: ['reachable', 'error'] });
  v.apply({ ...env, ts: T + 2000, seq: 11, type: 'failover', reason: 'fenced: generation 4 serves the guest now', generation: 4 });
  screen = v.render(T + 2000, 200);
  assert.match(screen, /^peer http:\/\/127\.0\.0\.1:7791\/ UNREACHABLE: connect ECONNREFUSED 127\.0\.0\.1:7791 \(last read 2026-01-01T11:59:59\.500Z: secondary standby\)$/m);
  assert.match(screen, /^last failover 2026-01-01T12:00:02\.000Z \(generation 4\): fenced: generation 4 serves the guest now$/m);
  assert.match(screen, /primary peer: http:\/\/127\.0\.0\.1:7791\/ UNREACHABLE/);
  assert.match(screen, /primary FAILOVER \(generation 4\): fenced/);
});

test('several domains: lines name theirs when asked, and the screen shows one view per domain', () => {
  const state = (domain: string, to: 'protected' | 'degraded', seq: number): MonitorEvent => ({ ...env, ts: T, seq, domain, type: 'state', state: to, previous: 'precopy', reason: 'r' });
  assert.equal(eventLine(state('web', 'degraded', 1), true), '12:00:00.000 primary [web] state precopy -> degraded: r');
  assert.equal(eventLine(state('web', 'degraded', 1)), '12:00:00.000 primary state precopy -> degraded: r', 'one domain: lines as they always were');
  const base = { ...env, ts: T, seq: 0, type: 'snapshot' as const, reason: 'r', mode: 'remus' as const, intervalMs: 50, lastEpoch: 0, lagMs: null, actions: [], recent: [], clients: 0, arbiter: { kind: 'none' as const, holder: null, generation: null, protected: false, authority: true }, precopy: null, generation: null, heartbeat: null, heldBytes: null, peer: null, history: [], lastFailover: null, guestProtected: false };
  const v = new DomainsWatchView();
  v.apply({ ...base, domain: 'web', state: 'precopy' });
  assert.doesNotMatch(v.render(T), /== domain/, 'one domain: the screen as it always was');
  v.apply({ ...base, domain: 'db', state: 'precopy' });
  v.apply(state('db', 'protected', 1));
  v.apply(state('web', 'degraded', 2));
  v.apply({ ...env, ts: T, type: 'dropped', count: 2 });
  const screen = v.render(T);
  assert.match(screen, /== domain web ==\ntandem primary +state DEGRADED/);
  assert.match(screen, /== domain db ==\ntandem primary +state PROTECTED/);
  assert.equal((screen.match(/missed 2 events/g) ?? []).length, 2, 'a message to this client shows in every view');
  assert.equal(v.size, 2);
  v.apply({ ...env, ts: T, seq: 3, domain: 'db', type: 'detached' });
  assert.equal(eventLine({ ...env, ts: T, seq: 3, domain: 'db', type: 'detached' }), '12:00:00.000 primary domain db is no longer shown here');
  assert.equal(v.size, 1);
  assert.doesNotMatch(v.render(T), /== domain/, 'one domain left: the screen as it always was');
});
