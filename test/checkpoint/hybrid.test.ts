/** Marble tests for the hybrid COLO/Remus policy: virtual time, exact frames. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { map } from 'rxjs/operators';
import { TestScheduler } from 'rxjs/testing';
import { DEFAULT_HYBRID, hybridPolicy, validateHybrid, type HybridOptions } from '../../src/checkpoint/hybrid.js';

const scheduler = (): TestScheduler => new TestScheduler((actual, expected) => assert.deepEqual(actual, expected));
const OPTS: HybridOptions = { windowMs: 10, toRemusAbove: 3, toColoAtMost: 1, calmMs: 20 };
const short = { r: 'remus', c: 'colo' };

describe('hybridPolicy', () => {
  test('a burst of divergences switches to Remus; calm for the calm period switches back', () => {
    scheduler().run(({ cold, expectObservable }) => {
      const d$ = cold('dddd 40ms |');
      expectObservable(hybridPolicy(d$, OPTS).pipe(map((s) => s.mode))).toBe('---r 19ms c 20ms |', short);
    });
  });

  test('divergences spread out never leave COLO', () => {
    scheduler().run(({ cold, expectObservable }) => {
      // One every 5 ms: two per 10 ms window, below the 3 that would switch.
      expectObservable(hybridPolicy(cold('d 4ms d 4ms d 4ms d 4ms d 4ms d|'), OPTS)).toBe('26ms |');
    });
  });

  test('frequent divergences while in Remus restart the calm period; a lone one does not', () => {
    scheduler().run(({ cold, expectObservable }) => {
      // Switch at 3; two at 10 and 11 (busy: calm restarts to end at 31); one alone at 25 (calm enough).
      const d$ = cold('dddd 6ms dd 13ms d 30ms |');
      expectObservable(hybridPolicy(d$, OPTS).pipe(map((s) => s.mode))).toBe('---r 27ms c 24ms |', short);
    });
  });

  test('every switch says why', () => {
    scheduler().run(({ cold, expectObservable }) => {
      expectObservable(hybridPolicy(cold('dddd 30ms |'), OPTS)).toBe('---a 19ms b 10ms |', {
        a: { mode: 'remus', reason: '4 divergences in 10 ms (more than 3): periodic checkpoints are cheaper' },
        b: { mode: 'colo', reason: 'divergences calmed: at most 1 per 10 ms for 20 ms' },
      });
    });
  });

  test('options are checked: integers, and a return threshold below the leave threshold', () => {
    assert.equal(validateHybrid(DEFAULT_HYBRID), undefined);
    assert.match(validateHybrid({ ...OPTS, windowMs: 0 }) ?? '', /windowMs must be an integer >= 1, got 0/);
    assert.match(validateHybrid({ ...OPTS, calmMs: 1.5 }) ?? '', /calmMs/);
    assert.match(validateHybrid({ ...OPTS, toColoAtMost: 3 }) ?? '', /toColoAtMost \(3\) must be below toRemusAbove \(3\)/);
  });
});
