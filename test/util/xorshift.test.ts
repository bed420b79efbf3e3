/** xorshift32: Marsaglia's sequence, unsigned, and seed 0 (a fixed point) replaced. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { xorshift32 } from '../../src/util/xorshift.js';

test('the published sequence from seed 1, as unsigned 32-bit values', () => {
  const r = xorshift32(1);
  assert.deepEqual([r(), r(), r()], [270369, 67634689, 2647435461]);
  const z = xorshift32(0);
  assert.equal(z(), 270369, 'seed 0 would stay 0 for ever: it starts from 1');
});
