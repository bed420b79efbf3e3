import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { globMatch } from '../../src/guest/glob.js';

const m = (pattern: string, subject: string): boolean => globMatch(Buffer.from(pattern, 'latin1'), Buffer.from(subject, 'latin1'));

describe('globMatch', () => {
  const CASES: [string, string, boolean][] = [
    ['*', '', true],
    ['*', 'anything', true],
    ['', '', true],
    ['', 'a', false],
    ['a', 'a', true],
    ['a', 'b', false],
    ['?', '', false],
    ['?', 'x', true],
    ['a*b', 'ab', true],
    ['a*b', 'axxxb', true],
    ['a*b', 'axxxbc', false],
    ['a*b*c', 'abbbcbc', true],
    ['**a', 'ba', true],
    ['key:*', 'key:__rand_int__', true],
    ['[abc]', 'b', true],
    ['[abc]', 'd', false],
    ['[^abc]', 'd', true],
    ['[^abc]', 'a', false],
    ['[a-c]x', 'bx', true],
    ['[c-a]x', 'bx', true],
    ['[a-c]x', 'dx', false],
    ['[]', 'a', false],
    ['[^]', 'a', true],
    ['[a-]', '-', true],
    ['[\\]]', ']', true],
    ['\\?', '?', true],
    ['\\?', 'x', false],
    ['a\\', 'a\\', true],
    ['[abc', 'b', true],
    ['[abc', 'd', false],
    ['x[ab', 'xa', true],
  ];
  for (const [pattern, subject, expected] of CASES) {
    test(`${JSON.stringify(pattern)} ${expected ? 'matches' : 'does not match'} ${JSON.stringify(subject)}`, () => {
      assert.equal(m(pattern, subject), expected);
    });
  }

  test('many stars against a long non-matching subject stay fast (no exponential backtracking)', () => {
    const started = performance.now();
    assert.equal(m('*a*a*a*a*a*a*a*a*a*a*b', 'a'.repeat(5000)), false);
    assert.ok(performance.now() - started < 1000);
  });

  test('bytes, not characters', () => {
    assert.equal(globMatch(Buffer.from([0x3f]), Buffer.from([0xff])), true);
    assert.equal(globMatch(Buffer.from('?'), Buffer.from('\u00e9')), false, 'é is two bytes in UTF-8');
  });
});
