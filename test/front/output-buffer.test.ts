/**
 * The netbuf device driven through its hooks directly: exact release points
 * (what each commit releases, and what it must not), order, the held-bytes
 * bound, modes and teardown policies.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { sessionAtEpoch1 } from '../helpers/output-session.js';
import { DeviceSet } from '../../src/checkpoint/devices.js';
import { FrontErrorCodes } from '../../src/front/errors.js';
import { OutputBuffer, type OutputBufferOptions, type OutputConnection, type ReleasedOutput } from '../../src/front/output-buffer.js';

interface FakeSink {
  got: string[];
  pauses: number;
  resumes: number;
  paused: boolean;
  finished: boolean;
  aborted: Error | undefined;
}

function fixture(options: OutputBufferOptions = {}) {
  const released: ReleasedOutput[] = [];
  let clock = 0;
  const buffer = new OutputBuffer({ now: () => clock, onRelease: (r) => released.push(r), ...options });
  const open = (): { conn: OutputConnection; sink: FakeSink } => {
    const sink: FakeSink = { got: [], pauses: 0, resumes: 0, paused: false, finished: false, aborted: undefined };
    const conn = buffer.attach({
      deliver: (b) => sink.got.push(b.toString()),
      pauseSource: () => {
        sink.pauses++;
        sink.paused = true;
      },
      resumeSource: () => {
        sink.resumes++;
        sink.paused = false;
      },
      finish: () => (sink.finished = true),
      abort: (err) => (sink.aborted = err),
    });
    return { conn, sink };
  };
  return { buffer, released, open, tick: (ms: number) => (clock += ms) };
}

const put = (c: OutputConnection, s: string): boolean => c.write(Buffer.from(s));

describe('OutputBuffer epoch tags', () => {
  test('before protection starts output passes straight through', () => {
    const { buffer, open, released } = fixture();
    const { conn, sink } = open();
    put(conn, 'a');
    assert.deepEqual(sink.got, ['a']);
    assert.equal(released[0].tag, null);
    assert.equal(buffer.stats().heldChunks, 0);
  });

  test("a session's pre-copy output passes as unprotected output does; its first postsuspend arms", () => {
    const { buffer, open, released } = fixture();
    const { conn, sink } = open();
    buffer.setup();
    put(conn, 'p');
    assert.deepEqual(sink.got, ['p'], 'a pre-copy may last minutes: a primary that may serve alone keeps serving');
    assert.equal(released[0].tag, null);
    buffer.postsuspend(1);
    put(conn, 'e2');
    buffer.preresume();
    buffer.commit(1);
    assert.deepEqual(sink.got, ['p']);
    buffer.postsuspend(2);
    buffer.commit(2);
    assert.deepEqual(sink.got, ['p', 'e2']);
  });

  test("under 'hold' nothing passes straight through: not before the first session, not during its pre-copy", () => {
    const { buffer, open, released } = fixture({ teardownPolicy: 'hold' });
    const { conn, sink } = open();
    put(conn, 'before');
    buffer.setup();
    put(conn, 'pre-copy');
    assert.deepEqual(sink.got, []);
    buffer.postsuspend(1);
    buffer.commit(1);
    assert.deepEqual(sink.got, ['before', 'pre-copy']);
    assert.deepEqual(
      released.map((r) => r.tag),
      [1, 1],
    );
  });

  test('without the authority pre-copy output is held, and the first commit covers it', () => {
    const { buffer, open } = fixture({ authority: { valid: () => false } });
    const { conn, sink } = open();
    buffer.setup();
    put(conn, 'pre-copy');
    assert.deepEqual(sink.got, []);
    buffer.postsuspend(1);
    buffer.commit(1);
    assert.deepEqual(sink.got, ['pre-copy']);
  });

  test('output between postsuspend(N) and commit(N) is held until commit(N+1)', () => {
    const { buffer, open, released } = fixture();
    const { conn, sink } = open();
    sessionAtEpoch1(buffer);
    put(conn, 'e1-a');
    put(conn, 'e1-b');
    buffer.postsuspend(1);
    put(conn, 'e2-in-flight'); // arrives after suspend 1: not in checkpoint 1
    buffer.preresume();
    put(conn, 'e2-after-resume');
    assert.deepEqual(sink.got, []);
    buffer.commit(1);
    assert.deepEqual(sink.got, ['e1-a', 'e1-b']);
    buffer.postsuspend(2);
    put(conn, 'e3');
    assert.deepEqual(sink.got, ['e1-a', 'e1-b'], 'postsuspend releases nothing');
    buffer.commit(2);
    assert.deepEqual(sink.got, ['e1-a', 'e1-b', 'e2-in-flight', 'e2-after-resume']);
    buffer.postsuspend(3);
    buffer.commit(3);
    assert.deepEqual(sink.got.at(-1), 'e3');
    assert.deepEqual(
      released.map((r) => r.tag),
      [1, 1, 2, 2, 3],
    );
  });

  test('armed at the first postsuspend when setup is never called', () => {
    const { buffer, open } = fixture();
    const { conn, sink } = open();
    put(conn, 'before');
    buffer.postsuspend(7);
    put(conn, 'after');
    buffer.commit(7);
    assert.deepEqual(sink.got, ['before']);
    buffer.postsuspend(8);
    buffer.commit(8);
    assert.deepEqual(sink.got, ['before', 'after']);
  });

  test('one commit releases several epochs at once, in order across connections', () => {
    const { buffer, open } = fixture();
    const a = open();
    const b = open();
    const order: string[] = [];
    sessionAtEpoch1(buffer);
    for (let e = 1; e <= 3; e++) {
      put(a.conn, `a${e}`);
      put(b.conn, `b${e}`);
      order.push(`a${e}`, `b${e}`);
      buffer.postsuspend(e);
    }
    buffer.commit(2);
    assert.deepEqual(a.sink.got, ['a1', 'a2']);
    assert.deepEqual(b.sink.got, ['b1', 'b2']);
    buffer.commit(3);
    assert.deepEqual(a.sink.got, ['a1', 'a2', 'a3']);
    assert.deepEqual(b.sink.got, ['b1', 'b2', 'b3']);
  });

  test('a stale commit releases nothing newer', () => {
    const { buffer, open } = fixture();
    const { conn, sink } = open();
    sessionAtEpoch1(buffer);
    buffer.postsuspend(1);
    put(conn, 'x');
    buffer.commit(1);
    buffer.commit(1);
    assert.deepEqual(sink.got, []);
  });

  test('epoch numbering restarted without teardown: held output waits for the new stream\'s ack', () => {
    const { buffer, open } = fixture();
    const { conn, sink } = open();
    sessionAtEpoch1(buffer);
    buffer.postsuspend(1);
    buffer.commit(1);
    buffer.postsuspend(2);
    buffer.postsuspend(3); // an epoch whose ack never came
    put(conn, 'old');
    buffer.postsuspend(1); // a new stream
    buffer.commit(1);
    assert.deepEqual(sink.got, ['old']);
  });

  test('stats report held bytes, chunks and the oldest age', () => {
    const { buffer, open, tick } = fixture();
    const { conn } = open();
    sessionAtEpoch1(buffer);
    put(conn, 'abc');
    tick(40);
    put(conn, 'de');
    tick(10);
    const s = buffer.stats();
    assert.equal(s.heldBytes, 5);
    assert.equal(s.heldChunks, 2);
    assert.equal(s.oldestHeldMs, 50);
    assert.equal(s.openEpoch, 1);
    buffer.postsuspend(1);
    buffer.commit(1);
    assert.equal(buffer.stats().heldBytes, 0);
    assert.equal(buffer.stats().oldestHeldMs, 0);
    assert.equal(buffer.stats().committedEpoch, 1);
  });

  test('works as a device in a DeviceSet', async () => {
    const { buffer, open } = fixture();
    const { conn, sink } = open();
    const devices = new DeviceSet([buffer]);
    await devices.run('setup');
    put(conn, 'pre-copy');
    await devices.run('postsuspend', 1);
    put(conn, 'x');
    await devices.run('preresume', 1);
    await devices.run('commit', 1);
    assert.deepEqual(sink.got, ['pre-copy']);
    await devices.run('postsuspend', 2);
    await devices.run('commit', 2);
    assert.deepEqual(sink.got, ['pre-copy', 'x']);
  });
});

describe('OutputBuffer bound, close, modes, teardown', () => {
  test('the held-bytes bound pauses every source, resumes at the low mark, never drops', () => {
    const { buffer, open } = fixture({ maxHeldBytes: 10, resumeHeldBytes: 4 });
    const a = open();
    const b = open();
    sessionAtEpoch1(buffer);
    assert.equal(put(a.conn, '12345'), true);
    assert.equal(put(b.conn, '67890'), false);
    assert.equal(a.sink.paused && b.sink.paused, true);
    const late = open();
    assert.equal(late.sink.paused, true, 'a connection opened at the bound starts paused');
    // Bytes already read still go in (bounded by what was in flight), none lost.
    put(a.conn, 'x');
    assert.equal(buffer.stats().heldBytes, 11);
    assert.equal(buffer.stats().stalls, 1);
    buffer.postsuspend(1);
    buffer.commit(1);
    assert.equal(a.sink.paused || b.sink.paused || late.sink.paused, false);
    assert.deepEqual(a.sink.got, ['12345', 'x']);
    assert.deepEqual(b.sink.got, ['67890']);
  });

  test('close finishes a connection only after its held output is released', () => {
    const { buffer, open } = fixture();
    const { conn, sink } = open();
    sessionAtEpoch1(buffer);
    put(conn, 'last');
    conn.close();
    assert.equal(sink.finished, false);
    put(conn, 'ignored after close');
    buffer.postsuspend(1);
    buffer.commit(1);
    assert.deepEqual(sink.got, ['last']);
    assert.equal(sink.finished, true);
    const idle = open();
    idle.conn.close();
    assert.equal(idle.sink.finished, true, 'nothing held: finished at once');
  });

  test('whenReleased runs once the connection has nothing held', () => {
    const { buffer, open } = fixture();
    const a = open();
    const b = open();
    sessionAtEpoch1(buffer);
    put(a.conn, 'x');
    buffer.postsuspend(1);
    put(a.conn, 'y');
    let calls = 0;
    a.conn.whenReleased(() => calls++);
    let bCalls = 0;
    b.conn.whenReleased(() => bCalls++);
    assert.equal(bCalls, 1, 'nothing held: at once');
    buffer.commit(1);
    assert.equal(calls, 0, "'y' is still held");
    buffer.postsuspend(2);
    buffer.commit(2);
    assert.equal(calls, 1);
    assert.equal(a.sink.finished, false, 'released is not closed');
  });

  test("mode 'none' passes through; switching to it releases everything held in order", () => {
    const { buffer, open, released } = fixture();
    const { conn, sink } = open();
    sessionAtEpoch1(buffer);
    put(conn, 'h1');
    buffer.postsuspend(1);
    put(conn, 'h2');
    buffer.setMode('none');
    assert.deepEqual(sink.got, ['h1', 'h2']);
    put(conn, 'p');
    assert.deepEqual(sink.got, ['h1', 'h2', 'p']);
    assert.equal(released.at(-1)!.tag, null);
    buffer.setMode('remus');
    put(conn, 'again'); // open epoch is 2 (postsuspend(1) happened)
    buffer.commit(1);
    assert.equal(sink.got.length, 3);
    buffer.postsuspend(2);
    buffer.commit(2);
    assert.deepEqual(sink.got.at(-1), 'again');
  });

  test("teardown 'release' releases in order and then passes through", () => {
    const { buffer, open } = fixture({ teardownPolicy: 'release' });
    const { conn, sink } = open();
    sessionAtEpoch1(buffer);
    put(conn, 'a');
    buffer.postsuspend(1);
    put(conn, 'b');
    buffer.teardown();
    assert.deepEqual(sink.got, ['a', 'b']);
    put(conn, 'c');
    assert.deepEqual(sink.got, ['a', 'b', 'c']);
  });

  test("teardown 'hold' keeps holding (new output behind old) until the next session's first commit", () => {
    const { buffer, open } = fixture({ teardownPolicy: 'release' });
    buffer.setTeardownPolicy('hold');
    assert.equal(buffer.teardownPolicy, 'hold');
    const { conn, sink } = open();
    sessionAtEpoch1(buffer);
    buffer.postsuspend(1);
    buffer.commit(1);
    buffer.postsuspend(2);
    put(conn, 'unacked');
    buffer.teardown();
    put(conn, 'while-unprotected');
    buffer.commit(2); // a late commit of the dead session must not release
    assert.deepEqual(sink.got, []);
    assert.equal(buffer.stats().phase, 'orphaned');
    sessionAtEpoch1(buffer); // re-protection: new stream, epochs from 1
    put(conn, 'new-session');
    buffer.postsuspend(1);
    buffer.commit(1);
    assert.deepEqual(sink.got, ['unacked', 'while-unprotected', 'new-session']);
  });

  test("teardown 'drop' discards held output and cuts only the connections it belonged to", () => {
    const { buffer, open } = fixture({ teardownPolicy: 'drop' });
    const a = open();
    const b = open();
    sessionAtEpoch1(buffer);
    put(a.conn, 'lost');
    buffer.teardown();
    assert.deepEqual(a.sink.got, []);
    assert.equal((a.sink.aborted as { code?: string } | undefined)?.code, FrontErrorCodes.FRONT_OUTPUT_DROPPED);
    assert.equal(b.sink.aborted, undefined);
    assert.equal(buffer.stats().droppedBytes, 4);
    put(b.conn, 'through');
    assert.deepEqual(b.sink.got, ['through']);
  });

  test('validate refuses a bad bound', () => {
    assert.throws(() => new OutputBuffer({ maxHeldBytes: 0 }).validate(), { code: FrontErrorCodes.FRONT_BAD_OPTIONS });
    assert.throws(() => new OutputBuffer({ maxHeldBytes: 10, resumeHeldBytes: 11 }).validate(), { code: FrontErrorCodes.FRONT_BAD_OPTIONS });
  });
});

describe('OutputBuffer authority (the arbiter\'s lease)', () => {
  /** An authority the test turns on and off. */
  const authority = (): { valid: () => boolean; set: (v: boolean) => void } => {
    let v = true;
    return { valid: () => v, set: (x) => (v = x) };
  };

  test('output no replica holds passes only while the authority is valid; held output goes, in order, when it returns', () => {
    const auth = authority();
    const { buffer, open } = fixture({ authority: auth });
    const a = open();
    const b = open();
    put(a.conn, 'a1');
    auth.set(false);
    put(a.conn, 'a2');
    put(b.conn, 'b1');
    auth.set(true);
    // Valid again, but not yet told: still held, so nothing overtakes a2.
    put(a.conn, 'a3');
    assert.deepEqual(a.sink.got, ['a1']);
    assert.deepEqual(b.sink.got, []);
    assert.equal(buffer.stats().awaitingAuthority, true);
    buffer.authorityRestored();
    assert.deepEqual(a.sink.got, ['a1', 'a2', 'a3']);
    assert.deepEqual(b.sink.got, ['b1']);
    assert.equal(buffer.stats().awaitingAuthority, false);
    put(b.conn, 'b2');
    assert.deepEqual(b.sink.got, ['b1', 'b2']);
  });

  test('a commit releases what the secondary acked whatever the authority says', () => {
    const auth = authority();
    const { buffer, open } = fixture({ authority: auth });
    const { conn, sink } = open();
    sessionAtEpoch1(buffer);
    put(conn, 'e1');
    auth.set(false);
    buffer.postsuspend(1);
    buffer.commit(1);
    assert.deepEqual(sink.got, ['e1']);
  });

  test("a 'release' teardown without the authority holds instead; the next session's first commit covers it", () => {
    const auth = authority();
    const { buffer, open } = fixture({ authority: auth, teardownPolicy: 'release' });
    const { conn, sink } = open();
    sessionAtEpoch1(buffer);
    put(conn, 'e1');
    auth.set(false);
    buffer.teardown();
    put(conn, 'after');
    assert.deepEqual(sink.got, []);
    assert.equal(buffer.stats().heldChunks, 2);
    // A new secondary: everything held is older than its first suspend.
    sessionAtEpoch1(buffer);
    put(conn, 'new');
    buffer.postsuspend(1);
    assert.deepEqual(sink.got, []);
    buffer.commit(1);
    assert.deepEqual(sink.got, ['e1', 'after', 'new']);
  });

  test("switching to mode 'none' without the authority holds what was held", () => {
    const auth = authority();
    const { buffer, open } = fixture({ authority: auth });
    const { conn, sink } = open();
    sessionAtEpoch1(buffer);
    put(conn, 'x');
    auth.set(false);
    buffer.setMode('none');
    put(conn, 'y');
    assert.deepEqual(sink.got, []);
    auth.set(true);
    buffer.authorityRestored();
    assert.deepEqual(sink.got, ['x', 'y']);
  });

  test('authorityRestored() while the authority is still invalid releases nothing', () => {
    const auth = authority();
    const { buffer, open } = fixture({ authority: auth });
    const { conn, sink } = open();
    auth.set(false);
    put(conn, 'q');
    buffer.authorityRestored();
    assert.deepEqual(sink.got, []);
  });
});

describe('OutputBuffer: output waiting for an epoch (onWaiting)', () => {
  test('the first chunk held for each epoch is told once; pass-through output never is', () => {
    const told: number[] = [];
    const { buffer, open } = fixture({ onWaiting: (tag) => told.push(tag) });
    const { conn } = open();
    const other = open().conn;
    put(conn, 'unprotected');
    assert.deepEqual(told, [], 'output before the first suspend passes through: nothing waits');
    sessionAtEpoch1(buffer);
    put(conn, 'a');
    put(other, 'b');
    put(conn, 'c');
    assert.deepEqual(told, [1], 'three chunks waiting for epoch 1: one signal');
    buffer.postsuspend(1);
    assert.deepEqual(told, [1], 'a suspend alone makes nothing wait');
    put(other, 'd');
    buffer.commit(1);
    put(conn, 'e');
    assert.deepEqual(told, [1, 2], 'output after suspend 1 waits for epoch 2, told once');
    buffer.setMode('none');
    put(conn, 'f');
    assert.deepEqual(told, [1, 2], 'mode none: output passes, nothing waits');
  });

  test('a new session numbers its epochs afresh, and its first waiting output is told though the number was told before', () => {
    const told: number[] = [];
    const { buffer, open } = fixture({ onWaiting: (tag) => told.push(tag), teardownPolicy: 'hold' });
    const { conn } = open();
    sessionAtEpoch1(buffer);
    put(conn, 'a');
    buffer.teardown();
    put(conn, 'orphaned');
    assert.deepEqual(told, [1], 'output held with no session waits for no epoch yet');
    // The next session's first suspend (numbered 0 here, as sessionAtEpoch1 does) covers what was held.
    sessionAtEpoch1(buffer);
    put(conn, 'b');
    assert.deepEqual(told, [1, 1]);
  });
});
