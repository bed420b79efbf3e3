/**
 * The schema reader: it accepts each event type as documented and names the
 * field at fault otherwise. (Events from a live server are checked by every
 * WebSocket test's client.)
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { EVENT_TYPES, SCHEMA_VERSION, isUnknownType, parseEvent, validateEvent, type MonitorEvent } from '../../src/monitor/events.js';

const env = { v: SCHEMA_VERSION, ts: 1_700_000_000_000, node: 'primary' };
const epochFields = { epoch: 3, trigger: 'timer', pauseUs: 120.5, dirtyPages: 7, bytes: 30_000, sendMs: 0.4, ackMs: 0.3, totalMs: 1.1, applyMs: null };
const precopyFields = { iteration: 1, pagesSent: 4096, pagesTotal: 786_432, percent: 0.52, bytes: 16_793_600, elapsedMs: 1000.5, bytesPerSecond: 16_000_000, etaMs: 190_000, done: false };

const failover = { ts: 1_700_000_000_500, reason: 'the primary is dead (no heartbeat for 250 ms); taking over as generation 3', generation: 3 };
const peerFields = {
  url: 'http://127.0.0.1:7791/',
  reachable: true,
  error: null,
  fetchedAt: 1_700_000_000_900,
  node: 'secondary',
  state: 'standby',
  reason: 'the replica holds a complete checkpoint of the stream',
  generation: 2,
  heartbeat: 'alive',
  lastEpoch: 3,
  lagMs: 20.5,
  heldBytes: null,
  clients: 0,
  lastFailover: null,
};
const stateEvent = { ...env, seq: 12, type: 'state', state: 'failed-over', previous: 'failing-over', reason: 'r' };
/** `object` without `keys`: an event as an older node sends it. */
const without = (object: Record<string, unknown>, ...keys: string[]): Record<string, unknown> => Object.fromEntries(Object.entries(object).filter(([k]) => !keys.includes(k)));
const flatPeer = without(peerFields, 'node');

const examples: Record<MonitorEvent['type'], Record<string, unknown>> = {
  snapshot: {
    ...env,
    seq: 9,
    type: 'snapshot',
    state: 'protected',
    reason: 'r',
    mode: 'remus',
    intervalMs: 50,
    lastEpoch: 3,
    lagMs: 12.5,
    actions: ['checkpoint'],
    recent: [{ ...epochFields, ts: 1 }],
    clients: 1,
    arbiter: { kind: 'etcd', holder: 'alpha', generation: 2, protected: true, authority: false },
    precopy: null,
    generation: 2,
    heartbeat: 'alive',
    heldBytes: 4096,
    peer: peerFields,
    history: [stateEvent],
    lastFailover: failover,
    guestProtected: true,
  },
  epoch: { ...env, seq: 10, type: 'epoch', ...epochFields },
  precopy: { ...env, seq: 15, type: 'precopy', ...precopyFields },
  divergence: { ...env, seq: 11, type: 'divergence', connection: null, reason: 'bytes differ' },
  state: stateEvent,
  peer: { ...env, seq: 16, type: 'peer', ...flatPeer, peer: peerFields, changed: ['reachable'] },
  failover: { ...env, seq: 17, type: 'failover', ...failover },
  mode: { ...env, seq: 13, type: 'mode', mode: 'manual', intervalMs: null, reason: 'r' },
  control: { ...env, seq: 14, type: 'control', action: 'failover', by: '127.0.0.1:1', ok: false, code: 'ERR_MONITOR_UNAUTHORIZED' },
  dropped: { ...env, type: 'dropped', count: 4 },
  reply: { ...env, type: 'reply', id: 'a', action: 'status', result: null },
  error: { ...env, type: 'error', id: null, code: 'ERR_MONITOR_BAD_MESSAGE', message: 'm' },
  domains: { ...env, type: 'domains', domains: [] },
  detached: { ...env, seq: 18, type: 'detached', domain: 'web' },
};

describe('validateEvent', () => {
  test('accepts an example of every event type, and unknown extra fields', () => {
    assert.deepEqual(Object.keys(examples).sort(), [...EVENT_TYPES].sort());
    for (const e of Object.values(examples)) assert.equal(validateEvent({ ...e, addedLater: true }).type, e.type);
    assert.equal(parseEvent(JSON.stringify(examples.snapshot)).type, 'snapshot');
    // A snapshot taken during a pre-copy carries its last report; a saver that cannot count pages leaves them null.
    const during = { ...examples.snapshot, state: 'precopy', precopy: { ...precopyFields, pagesSent: null, pagesTotal: null, percent: null, etaMs: null } };
    assert.equal(validateEvent(during).type, 'snapshot');
  });

  test('a newer node\'s additions: an unknown event type is recognised (to skip), a field an older node leaves out reads as null', () => {
    assert.equal(isUnknownType({ ...env, type: 'hook', seq: 3, anything: 1 }), true);
    for (const known of Object.values(examples)) assert.equal(isUnknownType(known), false, String(known.type));
    // Not an envelope of this version, or not a type name at all: validateEvent's to refuse.
    assert.equal(isUnknownType({ ...env, v: 2, type: 'hook' }), false);
    assert.equal(isUnknownType({ ...env, type: 'Hook!' }), false);
    assert.equal(isUnknownType({ ...env, type: 7 }), false);
    assert.equal(isUnknownType('hook'), false);
    // An older node's snapshot: none of the pair's fields; they read as null and an empty history.
    const older = without(examples.snapshot, 'precopy', 'generation', 'heartbeat', 'heldBytes', 'peer', 'history', 'lastFailover', 'guestProtected');
    const read = validateEvent(structuredClone(older));
    assert.equal(read.type, 'snapshot');
    assert.deepEqual(
      read.type === 'snapshot' && [read.precopy, read.generation, read.heartbeat, read.heldBytes, read.peer, read.history, read.lastFailover, read.guestProtected],
      [null, null, null, null, null, [], null, null],
    );
    // A newer node's history may hold event types this client does not know: they are left out, the rest kept in order.
    const hook = { ...env, seq: 13, type: 'hook', what: 'ran' };
    const control = { ...env, seq: 14, type: 'control', action: 'checkpoint', by: '127.0.0.1:9', ok: true, code: null };
    const newer = validateEvent(structuredClone({ ...examples.snapshot, history: [stateEvent, hook, control] }));
    assert.deepEqual(newer.type === 'snapshot' && newer.history.map((e) => e.seq), [12, 14]);
    // An older peer (without generation, heartbeat, held output, its last failover) reads the same way inside the peer view.
    const snap = validateEvent(structuredClone({ ...examples.snapshot, peer: without(peerFields, 'lastFailover') }));
    assert.equal(snap.type === 'snapshot' && snap.peer?.lastFailover, null);
  });

  test('names the field at fault', () => {
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ ...examples.epoch, v: 2 }, /schema version 2/],
      [{ ...examples.epoch, type: 'epochs' }, /event\.type/],
      [{ ...examples.epoch, bytes: -1 }, /epoch\.bytes/],
      [{ ...examples.epoch, epoch: 1.5 }, /epoch\.epoch/],
      [{ ...examples.epoch, pauseUs: 'fast' }, /epoch\.pauseUs/],
      [{ ...examples.epoch, seq: undefined }, /epoch\.seq/],
      [{ ...examples.state, state: 'happy' }, /state\.state: expected one of/],
      [{ ...examples.snapshot, recent: [{ ...epochFields }] }, /snapshot\.recent\[0\]\.ts/],
      [{ ...examples.snapshot, actions: ['reboot'] }, /snapshot\.actions\[0\]/],
      [{ ...examples.snapshot, mode: 'fast' }, /snapshot\.mode/],
      [{ ...examples.snapshot, arbiter: { kind: 'etcd', holder: 'alpha', generation: -1, protected: true, authority: false } }, /snapshot\.arbiter\.generation/],
      [{ ...examples.snapshot, arbiter: { kind: 'zookeeper', holder: null, generation: null, protected: false, authority: false } }, /snapshot\.arbiter\.kind/],
      [{ ...examples.snapshot, precopy: 'none' }, /snapshot\.precopy: expected an object or null/],
      [{ ...examples.snapshot, precopy: { ...precopyFields, bytes: -5 } }, /snapshot\.precopy\.bytes/],
      [{ ...examples.snapshot, guestProtected: 'yes' }, /snapshot\.guestProtected: expected true, false or null/],
      [{ ...examples.precopy, iteration: 0.5 }, /precopy\.iteration/],
      [{ ...examples.precopy, pagesSent: 'many' }, /precopy\.pagesSent/],
      [{ ...examples.precopy, done: 1 }, /precopy\.done/],
      [{ ...examples.control, ok: 'yes' }, /control\.ok/],
      [{ ...examples.reply, id: { a: 1 } }, /reply\.id/],
      [{ ...examples.reply, result: [] }, /reply\.result/],
      [{ ...examples.error, node: 'tertiary' }, /error\.node/],
      [{ ...examples.snapshot, heartbeat: 'fine' }, /snapshot\.heartbeat: expected one of unknown, alive, suspect, dead/],
      [{ ...examples.snapshot, heldBytes: -1 }, /snapshot\.heldBytes/],
      [{ ...examples.snapshot, generation: 'two' }, /snapshot\.generation/],
      [{ ...examples.snapshot, peer: { ...peerFields, reachable: 'yes' } }, /snapshot\.peer\.reachable/],
      [{ ...examples.snapshot, peer: { ...peerFields, state: 'asleep' } }, /snapshot\.peer\.state/],
      [{ ...examples.snapshot, lastFailover: { ...failover, reason: null } }, /snapshot\.lastFailover\.reason/],
      [{ ...examples.snapshot, history: 'none' }, /snapshot\.history: expected an array/],
      [{ ...examples.snapshot, history: [{ ...stateEvent, state: 'asleep' }] }, /snapshot\.history\[0\]\.state\.state/],
      // No snapshot in a snapshot's history, nor a message to one client.
      [{ ...examples.snapshot, history: [examples.snapshot] }, /snapshot\.history\[0\]: expected a broadcast event/],
      [{ ...examples.snapshot, history: [examples.dropped] }, /snapshot\.history\[0\]: expected a broadcast event/],
      [{ ...examples.peer, peer: null }, /peer\.peer: expected an object/],
      [{ ...examples.peer, changed: 'all' }, /peer\.changed: expected an array/],
      [{ ...examples.failover, generation: 1.5 }, /failover\.generation/],
    ];
    for (const [bad, why] of cases) assert.throws(() => validateEvent(bad), (e: Error & { code?: string }) => e.code === 'ERR_MONITOR_BAD_EVENT' && why.test(e.message), why.source);
    assert.throws(() => parseEvent('{'), (e: Error & { code?: string }) => e.code === 'ERR_MONITOR_BAD_EVENT' && e.cause instanceof SyntaxError);
    assert.throws(() => validateEvent([]), /expected an object/);
    // A value quoted in a message is cut short: a peer's answer may hold a long string.
    assert.throws(() => validateEvent({ ...examples.state, reason: 7, state: 'x'.repeat(10_000) }), (e: Error) => e.message.length < 400);
  });
});
