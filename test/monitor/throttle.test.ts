/** FailureThrottle: lockout after repeated failures, per key, on an injected clock. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FailureThrottle } from '../../src/monitor/throttle.js';

const make = (o: Partial<{ maxFailures: number; windowMs: number; lockoutMs: number; maxTracked: number }> = {}): { t: FailureThrottle; clock: { now: number } } => {
  const clock = { now: 1_000_000 };
  return { t: new FailureThrottle({ maxFailures: 3, windowMs: 10_000, lockoutMs: 30_000, maxTracked: 100, ...o, now: () => clock.now }), clock };
};

test('locks a key out at the n-th failure within the window, for the lockout time', () => {
  const { t, clock } = make();
  assert.equal(t.fail('a'), false);
  clock.now += 1000;
  assert.equal(t.fail('a'), false);
  assert.equal(t.lockedFor('a'), 0);
  assert.equal(t.fail('a'), true, 'the third failure starts the lockout');
  assert.equal(t.lockedFor('a'), 30_000);
  assert.equal(t.lockedFor('b'), 0, 'other keys are not affected');
  clock.now += 29_999;
  assert.equal(t.lockedFor('a'), 1);
  clock.now += 1;
  assert.equal(t.lockedFor('a'), 0, 'over at its end');
  assert.equal(t.fail('a'), false, 'the count started over');
});

test('failures older than the window do not count', () => {
  const { t, clock } = make();
  t.fail('a');
  t.fail('a');
  clock.now += 10_000;
  assert.equal(t.fail('a'), false, 'the first two fell out of the window');
  assert.equal(t.fail('a'), false);
  assert.equal(t.fail('a'), true);
});

test('a success forgets the key', () => {
  const { t } = make();
  t.fail('a');
  t.fail('a');
  t.succeed('a');
  assert.equal(t.tracked, 0);
  assert.equal(t.fail('a'), false);
  assert.equal(t.fail('a'), false);
});

test('the table stays bounded: the oldest record goes first', () => {
  const { t } = make({ maxTracked: 3 });
  for (const k of ['a', 'b', 'c', 'd']) t.fail(k);
  assert.equal(t.tracked, 3);
  t.fail('a');
  t.fail('a');
  assert.equal(t.lockedFor('a'), 0, "a's first failure was evicted with its record");
  assert.equal(t.fail('a'), true);
});
