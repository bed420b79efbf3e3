/**
 * PrecopyGate: the pre-copies of one process take turns, a turn is bounded,
 * and a stop while waiting ends the wait.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { PrecopyGate } from '../../src/checkpoint/precopy-gate.js';

/** A pre-copy that runs until its `finish` is called. */
function pending(log: string[], name: string): { run: () => Promise<string>; finish: () => void } {
  let finish!: () => void;
  const done = new Promise<void>((resolve) => (finish = resolve));
  return {
    run: async () => {
      log.push(`${name} starts`);
      await done;
      log.push(`${name} ends`);
      return name;
    },
    finish: () => finish(),
  };
}

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('PrecopyGate', () => {
  test('one at a time, in the order asked; the waiters are told they wait', async () => {
    const gate = new PrecopyGate(60_000);
    const log: string[] = [];
    const [a, b, c] = ['a', 'b', 'c'].map((n) => pending(log, n));
    const waited: string[] = [];
    const ra = gate.run(a.run, { onWait: () => waited.push('a') });
    const rb = gate.run(b.run, { onWait: () => waited.push('b') });
    const rc = gate.run(c.run, { onWait: () => waited.push('c') });
    // Told before run() returned, so a caller can say why it waits.
    assert.deepEqual(waited, ['b', 'c']);
    await tick();
    assert.deepEqual(log, ['a starts']);
    assert.equal(gate.queued, 2);
    a.finish();
    assert.equal(await ra, 'a');
    await tick();
    assert.deepEqual(log, ['a starts', 'a ends', 'b starts']);
    b.finish();
    c.finish();
    assert.deepEqual(await Promise.all([rb, rc]), ['b', 'c']);
    assert.deepEqual(log, ['a starts', 'a ends', 'b starts', 'b ends', 'c starts', 'c ends']);
  });

  test('a failed pre-copy hands the turn on', async () => {
    const gate = new PrecopyGate(60_000);
    const ra = gate.run(() => Promise.reject(new Error('link lost')));
    const rb = gate.run(() => Promise.resolve('b'));
    await assert.rejects(ra, /link lost/);
    assert.equal(await rb, 'b');
    assert.equal(gate.queued, 0);
  });

  test('a turn held past its bound lets the next one start beside it (one stalled domain never keeps another unprotected)', async () => {
    const gate = new PrecopyGate(50);
    const log: string[] = [];
    const stalled = pending(log, 'stalled');
    const next = pending(log, 'next');
    const rs = gate.run(stalled.run);
    const rn = gate.run(next.run);
    await tick();
    assert.deepEqual(log, ['stalled starts']);
    await new Promise((r) => setTimeout(r, 120));
    assert.deepEqual(log, ['stalled starts', 'next starts']);
    next.finish();
    stalled.finish();
    assert.deepEqual(await Promise.all([rs, rn]), ['stalled', 'next']);
    // The slot the stalled one gave up is not given back twice when it ends: a third still waits its turn.
    const log2: string[] = [];
    const x = pending(log2, 'x');
    const y = pending(log2, 'y');
    const rx = gate.run(x.run);
    const ry = gate.run(y.run);
    await tick();
    assert.deepEqual(log2, ['x starts']);
    x.finish();
    y.finish();
    await Promise.all([rx, ry]);
  });

  test('a stop while waiting ends the wait with its reason, and the waiter never runs', async () => {
    const gate = new PrecopyGate(60_000);
    const log: string[] = [];
    const a = pending(log, 'a');
    const ra = gate.run(a.run);
    const stop = new AbortController();
    let ran = false;
    const rb = gate.run(
      () => {
        ran = true;
        return Promise.resolve();
      },
      { signal: stop.signal },
    );
    stop.abort(new Error('stopped while waiting'));
    await assert.rejects(rb, /stopped while waiting/);
    assert.equal(gate.queued, 0);
    a.finish();
    await ra;
    assert.equal(ran, false);
    // Already stopped: refused at once.
    await assert.rejects(gate.run(() => Promise.resolve(), { signal: stop.signal }), /stopped while waiting/);
  });
});
