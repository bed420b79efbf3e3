/** The mode controller: which modes a run allows, who may change them, and what the trigger pipeline sees (marbles). */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Subject } from 'rxjs';
import { TestScheduler } from 'rxjs/testing';
import { CheckpointError } from '../../src/checkpoint/errors.js';
import { ModeController } from '../../src/checkpoint/mode.js';
import { mergeTriggers, outputTrigger, type Trigger } from '../../src/checkpoint/triggers.js';

const scheduler = (): TestScheduler => new TestScheduler((actual, expected) => assert.deepEqual(actual, expected));
const unavailable = (e: unknown): boolean => e instanceof CheckpointError && e.code === 'ERR_MODE_UNAVAILABLE';

describe('ModeController', () => {
  test('a Remus run offers remus and manual; colo (no running secondary to compare with) is refused, as is a bad interval', () => {
    const m = new ModeController('remus', { mode: 'remus', intervalMs: 50, reason: 'start' });
    assert.deepEqual(m.allowed, ['remus', 'manual']);
    assert.throws(() => m.choose('colo', 'op'), unavailable);
    assert.throws(() => new ModeController('remus', { mode: 'colo', intervalMs: 50, reason: 'start' }), unavailable);
    for (const bad of [0, -5, 1.5, Number.NaN]) assert.throws(() => m.setInterval(bad, 'op'), unavailable, String(bad));
    assert.equal(m.current.mode, 'remus', 'a refused change changes nothing');
  });

  test("the hybrid policy's switches apply until an operator pins a mode; picking colo again hands the choice back", () => {
    const m = new ModeController('colo', { mode: 'colo', intervalMs: 25, reason: 'start' });
    const seen: string[] = [];
    m.mode$.subscribe((s) => seen.push(`${s.mode}${s.pinned ? '!' : ''}: ${s.reason}`));
    assert.equal(m.switchTo('remus', 'busy'), true);
    m.choose('manual', 'operator');
    assert.equal(m.switchTo('colo', 'calm'), false);
    m.choose('colo', 'operator again');
    assert.equal(m.switchTo('remus', 'busy again'), true);
    assert.deepEqual(seen, ['colo: start', 'remus: busy', 'manual!: operator', 'colo: operator again', 'remus: busy again']);
  });

  test('the timer runs only in remus mode, at the current interval; a divergence starts a checkpoint only in colo mode (marbles)', () => {
    scheduler().run(({ cold, expectObservable }) => {
      const m = new ModeController('colo', { mode: 'colo', intervalMs: 10, reason: 'start' });
      // At 25 ms the policy falls back to remus (timer every 10 ms); at 58 ms the interval becomes 20; at 100 ms colo again.
      cold('25ms a 32ms b 41ms c|').subscribe((x) => {
        if (x === 'a') m.switchTo('remus', 'busy');
        else if (x === 'b') m.setInterval(20, 'op');
        else m.switchTo('colo', 'calm');
      });
      const divergence$ = cold<Trigger>('5ms d 49ms d 49ms d', { d: { reason: 'divergence' } });
      const triggers$ = mergeTriggers({ interval$: m.interval$(), divergence$: m.gate(divergence$) });
      // Timer at 35, 45, 55 (every 10), then 78, 98 (every 20 from 58); divergences at 5 and 105 pass, the one at 55 (remus) does not.
      expectObservable(triggers$, '^ 120ms !').toBe('5ms d 29ms t 9ms t 9ms t 22ms t 19ms t 6ms d', {
        d: { reason: 'divergence' },
        t: { reason: 'timer' },
      });
    });
  });

  test('held output starts epochs only under the output policy and in remus mode (marbles)', () => {
    scheduler().run(({ cold, hot, expectObservable }) => {
      const waiting$ = hot('2-3-4-5-6', { 2: 2, 3: 3, 4: 4, 5: 5, 6: 6 });
      const timerOnly = new ModeController('remus', { mode: 'remus', intervalMs: 50, reason: 'start' });
      assert.equal(timerOnly.policy, 'timer', 'the timer is the default policy');
      expectObservable(timerOnly.outputGate(waiting$)).toBe('');
      const m = new ModeController('remus', { mode: 'remus', intervalMs: 50, reason: 'start', policy: 'output' });
      // Manual from 3 to 6 (the operator's), remus again from 7: the outputs at 4 and 6 start nothing.
      cold('---a---b').subscribe((x) => (x === 'a' ? m.choose('manual', 'op') : m.choose('remus', 'op')));
      expectObservable(m.outputGate(waiting$)).toBe('2-3-----6', { 2: outputTrigger(2), 3: outputTrigger(3), 6: outputTrigger(6) });
    });
  });

  test('in a colo run held output starts nothing while the mode is colo, and does in its remus fallback', () => {
    const m = new ModeController('colo', { mode: 'colo', intervalMs: 20, reason: 'start', policy: 'output' });
    const seen: Trigger[] = [];
    const waiting$ = new Subject<number>();
    m.outputGate(waiting$).subscribe((t) => seen.push(t));
    waiting$.next(2);
    m.switchTo('remus', 'busy');
    waiting$.next(3);
    assert.deepEqual(seen, [outputTrigger(3)]);
  });
});
