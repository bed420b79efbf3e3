/**
 * The hub's policy with in-memory clients: a client's buffer is whatever it
 * has been sent and not "read" yet, so tests decide exactly how slow it is.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { validateEvent, type MonitorEvent } from '../../src/monitor/events.js';
import { MonitorHub, type HubClient, type SnapshotBody } from '../../src/monitor/hub.js';

class MemoryClient implements HubClient {
  readonly received: MonitorEvent[] = [];
  bufferedAmount = 0;
  /** When false, sent bytes stay buffered (a client that does not read). */
  reading = true;
  pings = 0;
  terminated = false;

  send(data: string): void {
    this.received.push(validateEvent(JSON.parse(data)));
    if (!this.reading) this.bufferedAmount += Buffer.byteLength(data);
  }

  ping(): void {
    this.pings++;
  }

  terminate(): void {
    this.terminated = true;
  }
}

const snapshot = (): SnapshotBody => ({ state: 'protected', reason: 'r', mode: 'remus', intervalMs: 50, lastEpoch: 0, lagMs: null, actions: [], recent: [], arbiter: { kind: 'none', holder: null, generation: null, protected: false, authority: true }, precopy: null, generation: null, heartbeat: null, heldBytes: null, peer: null, lastFailover: null, guestProtected: true });

function hub(opts: Partial<ConstructorParameters<typeof MonitorHub>[0]> = {}): { hub: MonitorHub; cut: string[] } {
  const cut: string[] = [];
  const h = new MonitorHub({ node: 'primary', snapshot, now: () => 1_700_000_000_000, schedule: (fn) => fn(), onCut: (_c, why) => cut.push(why), ...opts });
  return { hub: h, cut };
}

const epoch = (n: number) =>
  ({ type: 'epoch', epoch: n, trigger: 'timer', pauseUs: 100, dirtyPages: 1, bytes: 10, sendMs: 1, ackMs: 1, totalMs: 2, applyMs: null }) as const;

describe('MonitorHub', () => {
  test('a new client gets the snapshot, then every event, stamped and numbered', () => {
    const { hub: h } = hub();
    h.publish(epoch(1)); // nobody listening: numbered, not queued
    const c = new MemoryClient();
    h.add(c);
    h.publish(epoch(2));
    h.publish({ type: 'state', state: 'degraded', previous: 'protected', reason: 'link lost' });
    assert.deepEqual(
      c.received.map((e) => e.type),
      ['snapshot', 'epoch', 'state'],
    );
    assert.equal(c.received[0].type === 'snapshot' && c.received[0].seq, 1, 'the snapshot says where the numbering stands');
    assert.deepEqual(
      c.received.slice(1).map((e) => ('seq' in e ? e.seq : -1)),
      [2, 3],
    );
    assert.equal(c.received[1].ts, 1_700_000_000_000);
  });

  test('the history: the last events but epochs, pre-copy reports and peer refreshes, kept with nobody listening, oldest first, bounded', () => {
    const { hub: h } = hub({ historySize: 5 });
    const peerView = { url: 'http://127.0.0.1:1/', reachable: true, error: null, fetchedAt: 1, node: 'secondary' as const, state: 'standby' as const, reason: 'r', generation: 1, heartbeat: 'alive' as const, lastEpoch: 3, lagMs: 1, heldBytes: null, clients: 0, lastFailover: null };
    const flat = Object.fromEntries(Object.entries(peerView).filter(([k]) => k !== 'node')) as Omit<typeof peerView, 'node'>;
    h.publish({ type: 'state', state: 'degraded', previous: 'protected', reason: 'link lost' });
    h.publish(epoch(1));
    // A peer event's own `node` is the envelope's; the hub stamps it.
    h.publish({ type: 'peer', ...flat, peer: peerView, changed: ['reachable'] });
    h.publish({ type: 'peer', ...flat, lastEpoch: 4, peer: { ...peerView, lastEpoch: 4 }, changed: [] });
    h.publish({ type: 'failover', reason: 'the primary is dead', generation: 2 });
    const c = new MemoryClient();
    h.add(c);
    const snap = c.received[0];
    assert.ok(snap.type === 'snapshot');
    assert.deepEqual(
      snap.history.map((e) => [e.type, e.seq]),
      [
        ['state', 1],
        ['peer', 3],
        ['failover', 5],
      ],
    );
    assert.equal(snap.history[2].ts, 1_700_000_000_000, 'stamped as broadcast');
    for (let i = 0; i < 10; i++) h.publish({ type: 'mode', mode: 'manual', intervalMs: null, reason: `r${i}` });
    const later = h.snapshotEvent().history;
    assert.equal(later.length, 5, 'bounded');
    assert.deepEqual(
      later.map((e) => (e.type === 'mode' ? e.reason : e.type)),
      ['r5', 'r6', 'r7', 'r8', 'r9'],
      'the newest kept, oldest first',
    );
  });

  test('publishing only queues: the fan-out runs when scheduled', () => {
    const later: (() => void)[] = [];
    const { hub: h } = hub({ schedule: (fn) => later.push(fn) });
    const c = new MemoryClient();
    h.add(c);
    for (let i = 1; i <= 5; i++) h.publish(epoch(i));
    assert.equal(c.received.length, 1, 'only the snapshot so far');
    assert.equal(later.length, 1, 'one flush scheduled for the whole burst');
    later[0]();
    assert.equal(c.received.length, 6);
  });

  test('a client that joins while events wait for fan-out does not get them again after its snapshot', () => {
    const later: (() => void)[] = [];
    const { hub: h } = hub({ schedule: (fn) => later.push(fn) });
    const early = new MemoryClient();
    h.add(early);
    h.publish(epoch(1));
    const late = new MemoryClient();
    h.add(late);
    h.publish(epoch(2));
    later[0]();
    assert.deepEqual(
      early.received.map((e) => (e.type === 'epoch' ? e.epoch : e.type)),
      ['snapshot', 1, 2],
    );
    assert.deepEqual(
      late.received.map((e) => (e.type === 'epoch' ? e.epoch : e.type)),
      ['snapshot', 2],
    );
  });

  test('a client over the sampling limit misses sampleable events, is told how many, and always gets state changes', () => {
    const { hub: h, cut } = hub({ sampleAboveBytes: 1000, disconnectAboveBytes: 100_000 });
    const slow = new MemoryClient();
    const fast = new MemoryClient();
    h.add(slow);
    h.add(fast);
    slow.reading = false;
    for (let i = 1; i <= 50; i++) h.publish(epoch(i));
    h.publish({ type: 'state', state: 'degraded', previous: 'protected', reason: 'link lost' });
    const slowEpochs = slow.received.filter((e) => e.type === 'epoch').length;
    assert.ok(slowEpochs > 0 && slowEpochs < 50, `sampled: ${slowEpochs} of 50`);
    assert.equal(fast.received.filter((e) => e.type === 'epoch').length, 50, 'the other client misses nothing');
    assert.ok(slow.received.some((e) => e.type === 'state'), 'state changes are never sampled');
    assert.equal(h.stats.sampled, 50 - slowEpochs);
    // The next message it gets (here the state change) is preceded by the count it missed.
    const tail = slow.received.slice(-2);
    assert.equal(tail[0].type, 'dropped');
    assert.equal(tail[0].type === 'dropped' && tail[0].count, 50 - slowEpochs);
    assert.equal(tail[1].type, 'state');
    // Once it reads again it gets every epoch.
    slow.reading = true;
    slow.bufferedAmount = 0;
    h.publish(epoch(51));
    assert.equal(slow.received.at(-1)?.type, 'epoch');
    assert.equal(slow.received.filter((e) => e.type === 'dropped').length, 1);
    assert.deepEqual(cut, []);
  });

  test('a client over the disconnect limit is cut; the others are not', () => {
    const { hub: h, cut } = hub({ sampleAboveBytes: 1000, disconnectAboveBytes: 5000 });
    const stuck = new MemoryClient();
    const fine = new MemoryClient();
    h.add(stuck);
    h.add(fine);
    stuck.reading = false;
    for (let i = 0; i < 200; i++) h.publish({ type: 'mode', mode: 'remus', intervalMs: i + 1, reason: 'x'.repeat(100) });
    assert.ok(stuck.terminated);
    assert.deepEqual(cut, ['slow']);
    assert.equal(h.size, 1);
    assert.equal(h.stats.cutSlow, 1);
    assert.equal(fine.received.filter((e) => e.type === 'mode').length, 200);
    const before = stuck.received.length;
    h.publish(epoch(1));
    assert.equal(stuck.received.length, before, 'nothing is sent to a cut client');
  });

  test('a client that does not answer a ping by the next sweep is cut', () => {
    const { hub: h, cut } = hub();
    const answers = new MemoryClient();
    const silent = new MemoryClient();
    h.add(answers);
    h.add(silent);
    h.sweep();
    assert.deepEqual([answers.pings, silent.pings], [1, 1]);
    h.pong(answers);
    h.sweep();
    assert.ok(silent.terminated);
    assert.ok(!answers.terminated);
    assert.deepEqual(cut, ['unresponsive']);
    assert.equal(answers.pings, 2);
  });

  test('the fan-out queue stays bounded by dropping the oldest sampleable events', () => {
    const later: (() => void)[] = [];
    const { hub: h } = hub({ schedule: (fn) => later.push(fn), maxPending: 10 });
    const c = new MemoryClient();
    h.add(c);
    h.publish({ type: 'state', state: 'degraded', previous: 'protected', reason: 'first' });
    for (let i = 1; i <= 100; i++) h.publish(epoch(i));
    later[0]();
    const got = c.received.slice(1);
    assert.equal(got.length, 10);
    assert.equal(got[0].type, 'state', 'state changes survive the shedding');
    assert.deepEqual(
      got.slice(1).map((e) => (e.type === 'epoch' ? e.epoch : -1)),
      [92, 93, 94, 95, 96, 97, 98, 99, 100],
    );
    assert.equal(h.stats.overflowed, 91);
  });

  test('a client whose send throws is dropped without disturbing the rest', () => {
    const { hub: h, cut } = hub();
    const broken = new MemoryClient();
    const ok = new MemoryClient();
    h.add(broken);
    h.add(ok);
    broken.send = () => {
      throw new Error('socket gone');
    };
    h.publish(epoch(1));
    assert.deepEqual(cut, ['unresponsive']);
    assert.equal(ok.received.at(-1)?.type, 'epoch');
  });

  test('replies go to one client only', () => {
    const { hub: h } = hub();
    const a = new MemoryClient();
    const b = new MemoryClient();
    h.add(a);
    h.add(b);
    h.sendTo(a, { type: 'error', id: 7, code: 'ERR_MONITOR_BAD_MESSAGE', message: 'no' });
    assert.equal(a.received.at(-1)?.type, 'error');
    assert.equal(b.received.length, 1);
  });
});
