import assert from 'node:assert/strict';
import { test } from 'node:test';
import { StagingBuffer } from '../../src/domain/staging.js';

test('the staging buffer is reused, grows to the largest epoch, and hands out page views', () => {
  const s = new StagingBuffer();
  const a = s.reserve(10);
  assert.ok(a.length >= 10 * 4096);
  assert.equal(s.reserve(3), a, 'a smaller epoch reuses the buffer');
  const b = s.reserve(100);
  assert.notEqual(b, a);
  assert.ok(s.capacityPages >= 100);
  assert.equal(s.reserve(50), b);
  b.fill(7, 4096 * 2, 4096 * 3);
  const page = s.page(2);
  assert.equal(page.length, 4096);
  assert.equal(page.buffer, b.buffer, 'a view, not a copy');
  assert.ok(page.every((x) => x === 7));
});
