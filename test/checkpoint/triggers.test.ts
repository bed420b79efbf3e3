/** Marble tests for the trigger pipeline: virtual time, exact frames. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { type Observable, of } from 'rxjs';
import { map } from 'rxjs/operators';
import { TestScheduler } from 'rxjs/testing';
import { mergeTriggers, paceEpochs, type Trigger } from '../../src/checkpoint/triggers.js';

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
