/** xorshift32: Marsaglia's sequence, unsigned, and seed 0 (a fixed point) replaced. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { below, uniform, xorshift32 } from '../../src/util/xorshift.js';

test('the published sequence from seed 1, as unsigned 32-bit values', () => {
  const r = xorshift32(1);
  assert.deepEqual([r(), r(), r()], [270369, 67634689, 2647435461]);
  const z = xorshift32(0);
  assert.equal(z(), 270369, 'seed 0 would stay 0 for ever: it starts from 1');
});

test('uniform() and below() are xorshift32 from the same seed, scaled', () => {
  const r = xorshift32(42);
  const u = uniform(42);
  const b = below(42);
  for (let i = 0; i < 1000; i++) {
    const x = r();
    const f = u();
    assert.equal(f, x / 2 ** 32);
    assert.ok(f > 0 && f < 1, `${f}`);
    assert.equal(b(1000), x % 1000);
  }
});
