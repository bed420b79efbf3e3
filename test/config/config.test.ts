import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { after, describe, test } from 'node:test';
import { configFromObject, defaultConfig, loadConfig, MAX_CONFIG_BYTES } from '../../src/config/config.js';
import { ConfigError } from '../../src/errors.js';
import { tempDir } from '../helpers/cli.js';

const tmp = tempDir();
after(() => tmp.cleanup());

function write(name: string, text: string): string {
  const f = tmp.path(name);
  writeFileSync(f, text);
  return f;
}

const refused = (fn: () => unknown, pattern: RegExp): void =>
  assert.throws(fn, (err: unknown) => err instanceof ConfigError && err.code === 'ERR_CONFIG_INVALID' && pattern.test(err.message));

describe('configuration', () => {
  test('a full file is read, with YAML types and defaults for what it leaves out', () => {
    const f = write(
      'full.yaml',
      `log_level: debug
domain:
  type: sim
  memory_mib: 64
  disk_mib: 16
primary:
  secondary: 127.0.0.1:7701
  service: "[::1]:6380"
  interval_ms: 25
  precopy:
    max_iterations: 3
secondary:
  listen: 0.0.0.0:7701
  max_epoch_mib: 32
`,
    );
    const c = loadConfig(f);
    assert.equal(c.logLevel, 'debug');
    assert.equal(c.domain.diskMib, 16);
    assert.equal(c.domain.memoryMib, 64);
    assert.deepEqual(c.primary.secondary, { host: '127.0.0.1', port: 7701 });
    assert.deepEqual(c.primary.service, { host: '::1', port: 6380 });
    assert.equal(c.primary.intervalMs, 25);
    assert.equal(c.primary.precopy.maxIterations, 3);
    assert.equal(c.primary.precopy.targetDirtyPages, defaultConfig().primary.precopy.targetDirtyPages);
    assert.equal(c.primary.ackTimeoutMs, defaultConfig().primary.ackTimeoutMs);
    assert.deepEqual(c.secondary.listen, { host: '0.0.0.0', port: 7701 });
    assert.equal(c.secondary.maxEpochMib, 32);
    assert.deepEqual(c.secondary.service, defaultConfig().secondary.service);
    assert.deepEqual(c.heartbeat, { intervalMs: 50, timeoutMs: 250 });
  });

  test('an empty file is the defaults', () => {
    assert.deepEqual(loadConfig(write('empty.yaml', '')), defaultConfig());
  });

  test('the examples in examples/ are valid', () => {
    for (const name of ['primary.yaml', 'secondary.yaml']) {
      const c = loadConfig(new URL(`../../../examples/${name}`, import.meta.url).pathname);
      assert.equal(c.domain.type, 'sim');
    }
  });

  test('bad values name the file, the key path and what was expected', () => {
    const cases: [unknown, RegExp][] = [
      [{ primary: { interval_ms: 0 } }, /^f\.yaml: primary\.interval_ms: expected an integer in 1\.\.60000, got 0$/],
      [{ primary: { interval_ms: '50' } }, /primary\.interval_ms: expected an integer in 1\.\.60000, got "50"/],
      [{ primary: { interval_ms: 2.5 } }, /primary\.interval_ms: expected an integer/],
      [{ primary: { secondary: 'localhost' } }, /primary\.secondary: expected HOST:PORT/],
      [{ primary: { secondary: 'a b:80' } }, /is not a host name/],
      [{ primary: { secondary: '10.0.0.1:70000' } }, /port 70000 is outside 1\.\.65535/],
      [{ primary: { secondary: 7 } }, /primary\.secondary: expected a HOST:PORT string, got 7/],
      [{ primary: { stream_version: 4 } }, /primary\.stream_version: expected one of 2, 3, got 4/],
      [{ primary: { verify_digest: 'yes' } }, /primary\.verify_digest: expected true or false/],
      [{ primary: { interval_ms: 10, min_interval_ms: 20 } }, /min_interval_ms \(20\) exceeds primary\.interval_ms \(10\)/],
      [{ primary: { intervall_ms: 10 } }, /primary\.intervall_ms: unknown key/],
      [{ domain: { memory_mib: 5000 } }, /domain\.memory_mib: expected an integer in 1\.\.4096/],
      [{ domain: { disk_mib: 0 } }, /domain\.disk_mib: expected an integer in 1\.\.1024/],
      [{ colo: { comparator: { primary_in: '127.0.0.1:1', secondary_in: '127.0.0.1:2', outdev: '127.0.0.1:3' } } }, /colo\.comparator\.notify: expected HOST:PORT/],
      [{ colo: { max_interval_ms: 5 } }, /colo\.max_interval_ms: expected an integer in 10\.\.3600000/],
      [{ domain: { disk_mib: '64' } }, /domain\.disk_mib: expected an integer in 1\.\.1024, got "64"/],
      [{ domain: { type: 'xen' } }, /domain\.type: expected one of "sim"/],
      [{ secondary: [] }, /secondary: expected a mapping/],
      [{ log_level: 'loud' }, /log_level: expected one of/],
      [{ heartbeat: { interval_ms: 100, timeout_ms: 100 } }, /heartbeat\.timeout_ms \(100\) must exceed heartbeat\.interval_ms \(100\)/],
      [{ secondary: { service: 'x' } }, /secondary\.service: expected HOST:PORT/],
      [{ nonsense: 1 }, /nonsense: unknown key/],
      [[1, 2], /\(top level\): expected a mapping/],
    ];
    for (const [doc, pattern] of cases) refused(() => configFromObject(doc, 'f.yaml'), pattern);
  });

  test('unreadable, oversized and malformed files are refused clearly', () => {
    refused(() => loadConfig(tmp.path('missing.yaml')), /missing\.yaml: cannot read the configuration: ENOENT/);
    refused(() => loadConfig(write('big.yaml', '#'.repeat(MAX_CONFIG_BYTES + 1))), /at most 1048576 bytes/);
    refused(() => loadConfig(write('bad.yaml', 'primary: [unclosed\n')), /bad\.yaml: not valid YAML/);
    // An alias bomb is cut off by the alias limit rather than expanded.
    const bomb = ['a: &a [x, x, x, x, x, x, x, x, x, x]', ...Array.from({ length: 8 }, (_, i) => `${String.fromCharCode(98 + i)}: &${String.fromCharCode(98 + i)} [*${String.fromCharCode(97 + i)}, *${String.fromCharCode(97 + i)}, *${String.fromCharCode(97 + i)}, *${String.fromCharCode(97 + i)}, *${String.fromCharCode(97 + i)}, *${String.fromCharCode(97 + i)}, *${String.fromCharCode(97 + i)}, *${String.fromCharCode(97 + i)}, *${String.fromCharCode(97 + i)}, *${String.fromCharCode(97 + i)}]`)].join('\n');
    refused(() => loadConfig(write('bomb.yaml', bomb)), /bomb\.yaml: not valid YAML: Excessive alias count/);
  });
});
