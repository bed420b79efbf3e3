import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError } from '../../src/errors.js';
import { formatAddress, parseAddress } from '../../src/util/address.js';

test('HOST:PORT operands', () => {
  assert.deepEqual(parseAddress('127.0.0.1:7700', 'x'), { host: '127.0.0.1', port: 7700 });
  assert.deepEqual(parseAddress('[::1]:6379', 'x'), { host: '::1', port: 6379 });
  assert.deepEqual(parseAddress('db-1.example:1', 'x'), { host: 'db-1.example', port: 1 });
  assert.deepEqual(parseAddress('localhost:0', 'x', true), { host: 'localhost', port: 0 });
  assert.equal(formatAddress({ host: '::1', port: 5 }), '[::1]:5');
  for (const bad of ['127.0.0.1', ':80', 'host:', 'host:0', 'host:65536', 'ho st:1', '::1:80', '300.1.1.1:1', 'a:-1', '']) {
    assert.throws(() => parseAddress(bad, '--secondary'), (e: unknown) => e instanceof ConfigError && e.message.startsWith('--secondary: '), bad);
  }
});
