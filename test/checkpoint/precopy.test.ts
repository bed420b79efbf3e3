import assert from 'node:assert/strict';
import { test } from 'node:test';
import { precopyPolicy } from '../../src/checkpoint/precopy.js';

test('pre-copy stops when the dirty set is small, stops shrinking, or the round bound is hit', () => {
  const p = precopyPolicy({ targetDirtyPages: 50, maxIterations: 5, shrinkRatio: 1 });
  assert.equal(p({ iteration: 1, sentLast: 65536, dirtyCount: 50 }), 'stop-and-copy', 'small enough');
  assert.equal(p({ iteration: 1, sentLast: 65536, dirtyCount: 5000 }), 'continue', 'the first round sent everything');
  assert.equal(p({ iteration: 2, sentLast: 5000, dirtyCount: 900 }), 'continue', 'shrinking');
  assert.equal(p({ iteration: 3, sentLast: 900, dirtyCount: 900 }), 'stop-and-copy', 'not shrinking any more');
  assert.equal(p({ iteration: 3, sentLast: 900, dirtyCount: 1200 }), 'stop-and-copy', 'growing');
  assert.equal(p({ iteration: 5, sentLast: 900, dirtyCount: 100 }), 'stop-and-copy', 'round bound');
  const strict = precopyPolicy({ targetDirtyPages: 0, maxIterations: 30, shrinkRatio: 0.5 });
  assert.equal(strict({ iteration: 2, sentLast: 1000, dirtyCount: 600 }), 'stop-and-copy', 'shrinks too slowly for a 0.5 ratio');
  assert.equal(strict({ iteration: 2, sentLast: 1000, dirtyCount: 400 }), 'continue');
});
