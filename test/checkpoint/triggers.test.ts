/** Marble tests for the trigger pipeline: virtual time, exact frames. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { type Observable, of } from 'rxjs';
import { map } from 'rxjs/operators';
import { TestScheduler } from 'rxjs/testing';
import { mergeTriggers, outputTrigger, paceEpochs, type Trigger } from '../../src/checkpoint/triggers.js';

const scheduler = (): TestScheduler => new TestScheduler((actual, expected) => assert.deepEqual(actual, expected));

const T: Record<string, Trigger> = {
  t: { reason: 'timer' },
  o: { reason: 'operator' },
  d: { reason: 'divergence' },
  m: { reason: 'max-interval' },
};

describe('mergeTriggers', () => {
  test('the timer fires every interval, restarts on a new interval and stops on null', () => {
    scheduler().run(({ hot, expectObservable }) => {
      const interval$ = hot('a 24ms b 26ms c', { a: 10, b: 5, c: null }) as Observable<number | null>;
      const operator$ = hot('  15ms o', T);
      expectObservable(mergeTriggers({ interval$, operator$ }).pipe(map((t) => t.reason[0])), '^ 100ms !').toBe(
        '10ms t 4ms o 4ms t 9ms t 4ms t 4ms t 4ms t 4ms t',
      );
    });
  });

  test('operator and divergence triggers pass through with who asked and the comparator\'s request', () => {
    scheduler().run(({ hot, expectObservable }) => {
      const alice: Trigger = { reason: 'operator', by: 'alice' };
      const diverged: Trigger = { reason: 'divergence', request: { reason: 'mismatch', flow: 'tcp 10.0.0.1:5 > 10.0.0.2:80', detail: 'payload differs at byte 3' } };
      const operator$ = hot('-a---', { a: alice });
      const divergence$ = hot('---b-', { b: diverged });
      expectObservable(mergeTriggers({ operator$, divergence$ })).toBe('-a-b-', {
        a: { reason: 'operator', by: 'alice' },
        b: { reason: 'divergence', request: { reason: 'mismatch', flow: 'tcp 10.0.0.1:5 > 10.0.0.2:80', detail: 'payload differs at byte 3' } },
      });
    });
  });
});

describe('paceEpochs', () => {
  test('an epoch per trigger when epochs are quick', () => {
    scheduler().run(({ hot, cold, expectObservable }) => {
      const triggers$ = hot('-t--o--d-|', T);
      const epoch = (t: Trigger): Observable<string> => cold('(x|)', { x: t.reason[0] });
      expectObservable(paceEpochs(triggers$, epoch, { minIntervalMs: 0, maxIntervalMs: 0 })).toBe('-t--o--d-|');
    });
  });

  test('triggers during an epoch coalesce into one pending epoch that starts when it ends', () => {
    scheduler().run(({ hot, cold, expectObservable }) => {
      // Epochs take 5 frames; three triggers land during the first one.
      const triggers$ = hot('t-ttt--------', T);
      let n = 0;
      const epoch = (): Observable<string> => cold('----(x|)', { x: String(++n) });
      expectObservable(paceEpochs(triggers$, epoch, { minIntervalMs: 0, maxIntervalMs: 0 })).toBe('----1---2', { 1: '1', 2: '2' });
    });
  });

  test('the most specific reason wins when triggers coalesce', () => {
    scheduler().run(({ hot, cold, expectObservable }) => {
      const triggers$ = hot('t-tdo-----', T);
      const epoch = (t: Trigger): Observable<string> => cold('----(x|)', { x: t.reason });
      expectObservable(paceEpochs(triggers$, epoch, { minIntervalMs: 0, maxIntervalMs: 0 })).toBe('----a---b', { a: 'timer', b: 'divergence' });
    });
  });

  test('no two epochs start closer than the minimum interval', () => {
    scheduler().run(({ hot, cold, expectObservable }) => {
      const triggers$ = hot('oooo 20ms o', T);
      let n = 0;
      const epoch = (): Observable<number> => cold('(x|)', { x: ++n });
      expectObservable(paceEpochs(triggers$, epoch, { minIntervalMs: 10, maxIntervalMs: 0 })).toBe('a 9ms b 13ms c', { a: 1, b: 2, c: 3 });
    });
  });

  test('without triggers an epoch still starts every maximum interval', () => {
    scheduler().run(({ hot, cold, expectObservable }) => {
      const triggers$ = hot('-', T);
      const epoch = (t: Trigger): Observable<string> => cold('(x|)', { x: t.reason[0] });
      expectObservable(paceEpochs(triggers$, epoch, { minIntervalMs: 0, maxIntervalMs: 50 }), '^ 160ms !').toBe('50ms m 49ms m 49ms m');
    });
  });

  test('the maximum interval counts from the last epoch start, whatever started it', () => {
    scheduler().run(({ hot, cold, expectObservable }) => {
      const triggers$ = hot('30ms d', T);
      const epoch = (t: Trigger): Observable<string> => cold('(x|)', { x: t.reason[0] });
      expectObservable(paceEpochs(triggers$, epoch, { minIntervalMs: 0, maxIntervalMs: 50 }), '^ 140ms !').toBe('30ms d 49ms m 49ms m');
    });
  });

  test('an epoch error ends the stream with that error', () => {
    scheduler().run(({ hot, cold, expectObservable }) => {
      const triggers$ = hot('-t-t-', T);
      let n = 0;
      const epoch = (): Observable<string> => (++n === 2 ? cold('-#', undefined, new Error('link down')) : of('ok'));
      expectObservable(paceEpochs(triggers$, epoch, { minIntervalMs: 0, maxIntervalMs: 0 })).toBe('-a--#', { a: 'ok' }, new Error('link down'));
    });
  });

  test('the stream completes when the triggers end and the last epoch is done', () => {
    scheduler().run(({ hot, cold, expectObservable }) => {
      const triggers$ = hot('-t|', T);
      const epoch = (): Observable<string> => cold('---(x|)', { x: 'done' });
      expectObservable(paceEpochs(triggers$, epoch, { minIntervalMs: 0, maxIntervalMs: 20 })).toBe('----(x|)', { x: 'done' });
    });
  });
});

describe('output-driven epochs (mergeTriggers with output$, paceEpochs)', () => {
  // Each output trigger waits for the epoch after the last one started; the tests number them as the buffer would.
  const O: Record<string, Trigger> = { 1: outputTrigger(1), 2: outputTrigger(2), 3: outputTrigger(3), 4: outputTrigger(4), 5: outputTrigger(5), 6: outputTrigger(6) };

  test('while output keeps waiting, each epoch starts as soon as the previous one is done', () => {
    scheduler().run(({ hot, cold, expectObservable }) => {
      // Output waits at every frame; epochs take 3 frames; the minimum interval (2) never holds one back.
      const output$ = hot('123456', O);
      let n = 0;
      const epoch = (): Observable<number> => cold('---(x|)', { x: ++n });
      const epochs$ = paceEpochs(mergeTriggers({ output$ }), epoch, { minIntervalMs: 2, maxIntervalMs: 0 });
      // Started at 0, 3 and 6 (outputs at 1-2 and 4-5 coalesced), done at 3, 6, 9; nothing waits after that.
      expectObservable(epochs$, '^ 20ms !').toBe('3ms a 2ms b 2ms c', { a: 1, b: 2, c: 3 });
    });
  });

  test('back-to-back epochs are bounded by the minimum interval', () => {
    scheduler().run(({ hot, cold, expectObservable }) => {
      const output$ = hot('1-2-3-4-5-6', O);
      const starts: number[] = [];
      let n = 0;
      const epoch = (t: Trigger): Observable<string> => {
        starts.push(t.epoch!);
        return cold('---(x|)', { x: String(++n) });
      };
      const epochs$ = paceEpochs(mergeTriggers({ output$ }), epoch, { minIntervalMs: 5, maxIntervalMs: 0 });
      // Starts at 0, 5 and 10 (5 apart, though each epoch is done 3 frames after its start); done at 3, 8, 13.
      expectObservable(epochs$, '^ 30ms !').toBe('3ms a 4ms b 4ms c', { a: '1', b: '2', c: '3' });
    });
  });

  test('an idle guest (no output waiting) gets the timer', () => {
    scheduler().run(({ hot, cold, expectObservable }) => {
      const interval$ = hot('a', { a: 10 }) as Observable<number | null>;
      const output$ = hot<Trigger>('-');
      const epoch = (t: Trigger): Observable<string> => cold('(x|)', { x: t.reason });
      expectObservable(paceEpochs(mergeTriggers({ interval$, output$ }), epoch, { minIntervalMs: 1, maxIntervalMs: 0 }), '^ 35ms !').toBe(
        '10ms t 9ms t 9ms t',
        { t: 'timer' },
      );
    });
  });

  test('output appearing mid-interval starts an epoch then, not at the next tick', () => {
    scheduler().run(({ hot, cold, expectObservable }) => {
      const interval$ = hot('a', { a: 20 }) as Observable<number | null>;
      const output$ = hot('7ms 2 24ms 3', O);
      const epoch = (t: Trigger): Observable<string> => cold('-(x|)', { x: t.reason[0] });
      // Output at 7 and 32 (done a frame later); the timer's ticks at 20 and 40 still come.
      expectObservable(paceEpochs(mergeTriggers({ interval$, output$ }), epoch, { minIntervalMs: 1, maxIntervalMs: 0 }), '^ 45ms !').toBe(
        '8ms o 12ms t 11ms o 7ms t',
      );
    });
  });

  test('outputs coalesce into one pending epoch; a timer coalesced with them names the epoch', () => {
    scheduler().run(({ hot, cold, expectObservable }) => {
      const triggers$ = hot('o-22t-333---', { ...O, ...T });
      const epoch = (t: Trigger): Observable<string> => cold('-----(x|)', { x: t.reason });
      // Epoch 0..5 (operator); 2, 2 and the timer wait as one (the timer's reason kept), 5..10; the three 3s as one, 10..15.
      expectObservable(paceEpochs(triggers$, epoch, { minIntervalMs: 0, maxIntervalMs: 0 }), '^ 30ms !').toBe('-----a----b----c', { a: 'operator', b: 'timer', c: 'output' });
    });
  });

  test('output for an epoch already taken is stale at its turn and starts none; a later one pending with it does', () => {
    scheduler().run(({ hot, cold, expectObservable }) => {
      // Epoch 1 starts at 0. Output at 1 still joins epoch 1 (its suspend is under way): stale by 3, dropped.
      // At 6 output waits for 2 and, during epoch 2, at 8 a stale 2 and at 9 a fresh 3: 3 is kept and runs.
      const output$ = hot('11----2-23', O);
      let taken = 0;
      const started: number[] = [];
      const epoch = (t: Trigger): Observable<number> => {
        started.push(t.epoch!);
        const number = ++taken;
        return cold('---(x|)', { x: number });
      };
      const epochs$ = paceEpochs(mergeTriggers({ output$ }), epoch, { minIntervalMs: 0, maxIntervalMs: 0, due: (t) => t.reason !== 'output' || t.epoch! > taken });
      expectObservable(epochs$, '^ 20ms !').toBe('3ms a 5ms b 2ms c', { a: 1, b: 2, c: 3 });
    });
  });

  test('teardown mid-epoch cancels the epoch in flight, the start held back by the minimum interval, and the sources', () => {
    const calls: number[] = [];
    scheduler().run(({ hot, cold, expectObservable, expectSubscriptions }) => {
      const output$ = hot('1--2--3', O);
      const first = cold('----(x|)', { x: 'first' });
      const epoch = (t: Trigger): Observable<string> => {
        calls.push(t.epoch!);
        return t.epoch === 1 ? first : cold('(x|)', { x: 'later' });
      };
      // Epoch 1 runs 0..4; output for 2 waits; at 4 the minimum interval (10) holds its start to 10; unsubscribed at 7.
      expectObservable(paceEpochs(mergeTriggers({ output$ }), epoch, { minIntervalMs: 10, maxIntervalMs: 0 }), '^------!').toBe('----a', { a: 'first' });
      expectSubscriptions(first.subscriptions).toBe('^---!');
      expectSubscriptions(output$.subscriptions).toBe('^------!');
    });
    // The held start never ran, though its time (10) passed in the scheduler's flush.
    assert.deepEqual(calls, [1]);
  });

  test('teardown while an epoch is in flight unsubscribes it', () => {
    scheduler().run(({ hot, cold, expectObservable, expectSubscriptions }) => {
      const output$ = hot('1', O);
      const slow = cold('-----(x|)', { x: 'never seen' });
      expectObservable(paceEpochs(mergeTriggers({ output$ }), () => slow, { minIntervalMs: 0, maxIntervalMs: 0 }), '^--!').toBe('');
      expectSubscriptions(slow.subscriptions).toBe('^--!');
    });
  });
});
