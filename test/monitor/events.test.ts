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

const examples: Record<MonitorEvent['type'], Record<string, unknown>> = {
  snapshot: { ...env, seq: 9, type: 'snapshot', state: 'protected', reason: 'r', mode: 'remus', intervalMs: 50, lastEpoch: 3, lagMs: 12.5, actions: ['checkpoint'], recent: [{ ...epochFields, ts: 1 }], clients: 1, arbiter: { kind: 'etcd', holder: 'alpha', generation: 2, protected: true, authority: false }, precopy: null },
  epoch: { ...env, seq: 10, type: 'epoch', ...epochFields },
  precopy: { ...env, seq: 15, type: 'precopy', ...precopyFields },
  divergence: { ...env, seq: 11, type: 'divergence', connection: null, reason: 'bytes differ' },
  state: { ...env, seq: 12, type: 'state', state: 'failed-over', previous: 'failing-over', reason: 'r' },
  mode: { ...env, seq: 13, type: 'mode', mode: 'manual', intervalMs: null, reason: 'r' },
  control: { ...env, seq: 14, type: 'control', action: 'failover', by: '127.0.0.1:1', ok: false, code: 'ERR_MONITOR_UNAUTHORIZED' },
  dropped: { ...env, type: 'dropped', count: 4 },
  reply: { ...env, type: 'reply', id: 'a', action: 'status', result: null },
  error: { ...env, type: 'error', id: null, code: 'ERR_MONITOR_BAD_MESSAGE', message: 'm' },
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
    const older: Record<string, unknown> = { ...examples.snapshot };
    delete older.precopy;
    assert.equal(validateEvent(older).type, 'snapshot');
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
      [{ ...examples.precopy, iteration: 0.5 }, /precopy\.iteration/],
      [{ ...examples.precopy, pagesSent: 'many' }, /precopy\.pagesSent/],
      [{ ...examples.precopy, done: 1 }, /precopy\.done/],
      [{ ...examples.control, ok: 'yes' }, /control\.ok/],
      [{ ...examples.reply, id: { a: 1 } }, /reply\.id/],
      [{ ...examples.reply, result: [] }, /reply\.result/],
      [{ ...examples.error, node: 'tertiary' }, /error\.node/],
    ];
    for (const [bad, why] of cases) assert.throws(() => validateEvent(bad), (e: Error & { code?: string }) => e.code === 'ERR_MONITOR_BAD_EVENT' && why.test(e.message), why.source);
    assert.throws(() => parseEvent('{'), (e: Error & { code?: string }) => e.code === 'ERR_MONITOR_BAD_EVENT' && e.cause instanceof SyntaxError);
    assert.throws(() => validateEvent([]), /expected an object/);
  });
});
