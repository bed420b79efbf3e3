import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { after, describe, test } from 'node:test';
import { inspect } from 'node:util';
import { stringify } from 'yaml';
import { configFromObject, defaultConfig, loadConfig, MAX_CONFIG_BYTES, requireRole, type TandemConfig } from '../../src/config/config.js';
import { createArbiter, parseArbiterUrl } from '../../src/arbiter/select.js';
import { domainConfigs, domainsProblem } from '../../src/config/domains.js';
import { ConfigError } from '../../src/errors.js';
import { silent } from '../helpers/sim.js';
import { formatAddress, type Address } from '../../src/util/address.js';
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

type Mapping = Record<string, unknown>;
const isMapping = (v: unknown): v is Mapping => typeof v === 'object' && v !== null && !Array.isArray(v);
const isAddress = (v: unknown): v is Address => isMapping(v) && Object.keys(v).sort().join() === 'host,port';
const snakeCase = (key: string): string => key.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);

/** A configuration as its YAML document: snake_case keys, HOST:PORT addresses, unset keys left out. */
function asYaml(value: unknown): unknown {
  if (isAddress(value)) return formatAddress(value);
  if (Array.isArray(value)) return value.map(asYaml);
  if (!isMapping(value)) return value;
  return Object.fromEntries(Object.entries(value).flatMap(([k, v]) => (v === undefined ? [] : [[snakeCase(k), asYaml(v)]])));
}

/** The value at a dotted key path ('' is the whole document). */
const valueAt = (doc: unknown, path: string): unknown => (path === '' ? doc : path.split('.').reduce<unknown>((m, k) => (m as Mapping)[k], doc));

/** The dotted path of every key under `value`, mappings (not addresses) descended into. */
function keyPaths(value: unknown, prefix = ''): string[] {
  if (!isMapping(value) || isAddress(value)) return [];
  return Object.entries(value).flatMap(([k, v]) => [`${prefix}${k}`, ...keyPaths(v, `${prefix}${k}.`)]);
}

/** The defaults with every optional key set (the monitor token left out: it excludes token_file; tls.dir too: it excludes the three files). */
function everyKeySet(): TandemConfig {
  const c = defaultConfig();
  c.role = 'primary';
  c.logFormat = 'pretty';
  c.logFile = '/var/log/tandem/primary.log';
  c.primary.secondary = { host: '10.0.0.2', port: 7700 };
  c.primary.heartbeat = { host: '10.0.0.2', port: 7701 };
  c.secondary.heartbeat = { host: '0.0.0.0', port: 0 };
  c.monitor.listen = { host: '::1', port: 7790 };
  c.monitor.tokenFile = '/etc/tandem/monitor-token';
  c.monitor.peer = 'http://10.0.0.2:7790/';
  c.colo.net = { host: 'standby.example', port: 7702 };
  const at = (port: number): Address => ({ host: '127.0.0.1', port });
  c.colo.comparator = { primaryIn: at(9001), secondaryIn: at(9002), outdev: at(9003), notify: at(9004) };
  c.arbiter = { ...c.arbiter, kind: 'etcd', endpoints: [at(2379), { host: 'etcd2.example', port: 2379 }], node: 'host-a', ca: '/etc/tandem/etcd-ca.pem', cert: '/etc/tandem/etcd.pem', key: '/etc/tandem/etcd-key.pem' };
  c.tls = { ...c.tls, ca: '/etc/tandem/ca.crt', cert: '/etc/tandem/a.crt', key: '/etc/tandem/a.key', name: 'a', peer: 'b', handshakeTimeoutMs: 500 };
  c.hooks = { roleChange: '/etc/tandem/on-role-change', timeoutMs: 5000 };
  c.floatingAddress = { address: '10.0.0.100/24', interface: 'eth0', announceCount: 2 };
  return c;
}

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
  policy: output
  precopy:
    max_iterations: 3
secondary:
  listen: 0.0.0.0:7701
  max_epoch_mib: 32
`,
    );
    const c = loadConfig(f);
    assert.equal(c.logLevel, 'debug');
    assert.equal(c.domain.type, 'sim');
    assert.equal(c.domain.type === 'sim' && c.domain.diskMib, 16);
    assert.equal(c.domain.type === 'sim' && c.domain.memoryMib, 64);
    assert.deepEqual(c.primary.secondary, { host: '127.0.0.1', port: 7701 });
    assert.deepEqual(c.primary.service, { host: '::1', port: 6380 });
    assert.equal(c.primary.intervalMs, 25);
    assert.equal(c.primary.policy, 'output');
    assert.equal(defaultConfig().primary.policy, 'timer');
    assert.equal(c.primary.precopy.maxIterations, 3);
    assert.equal(c.primary.precopy.targetDirtyPages, defaultConfig().primary.precopy.targetDirtyPages);
    assert.equal(c.primary.ackTimeoutMs, defaultConfig().primary.ackTimeoutMs);
    assert.deepEqual(c.secondary.listen, { host: '0.0.0.0', port: 7701 });
    assert.equal(c.secondary.maxEpochMib, 32);
    assert.deepEqual(c.secondary.service, defaultConfig().secondary.service);
    assert.deepEqual(c.heartbeat, { intervalMs: 50, timeoutMs: 250 });
  });

  test('compression: off by default (a plain Xen stream); xbzrle with a cache size', () => {
    assert.equal(defaultConfig().primary.compression, 'none');
    assert.equal(defaultConfig().primary.compressionCacheMib, 64);
    const c = configFromObject({ primary: { compression: 'xbzrle', compression_cache_mib: 256 } }, 'f.yaml');
    assert.equal(c.primary.compression, 'xbzrle');
    assert.equal(c.primary.compressionCacheMib, 256);
  });

  test('an empty file is the defaults', () => {
    assert.deepEqual(loadConfig(write('empty.yaml', '')), defaultConfig());
  });

  test('the examples in examples/ are valid', () => {
    for (const [name, type] of [['primary.yaml', 'sim'], ['secondary.yaml', 'sim'], ['xen-primary.yaml', 'xen'], ['xen-secondary.yaml', 'xen']]) {
      const c = loadConfig(new URL(`../../../examples/${name}`, import.meta.url).pathname);
      assert.equal(c.domain.type, type, name);
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
      [{ primary: { policy: 'eager' } }, /^f\.yaml: primary\.policy: expected one of "output", "timer", got "eager"$/],
      [{ primary: { policy: 1 } }, /primary\.policy: expected one of "output", "timer", got 1/],
      [{ primary: { verify_digest: 'yes' } }, /primary\.verify_digest: expected true or false/],
      [{ primary: { compression: 'zstd' } }, /primary\.compression: expected one of "none", "xbzrle", got "zstd"/],
      [{ primary: { compression_cache_mib: 0 } }, /primary\.compression_cache_mib: expected an integer in 1\.\.65536, got 0/],
      [{ primary: { compression_cache_mib: 65537 } }, /primary\.compression_cache_mib: expected an integer in 1\.\.65536/],
      [{ primary: { interval_ms: 10, min_interval_ms: 20 } }, /min_interval_ms \(20\) exceeds primary\.interval_ms \(10\)/],
      [{ primary: { intervall_ms: 10 } }, /primary\.intervall_ms: unknown key/],
      [{ domain: { memory_mib: 5000 } }, /domain\.memory_mib: expected an integer in 1\.\.4096/],
      [{ domain: { disk_mib: 0 } }, /domain\.disk_mib: expected an integer in 1\.\.1024/],
      [{ colo: { comparator: { primary_in: '127.0.0.1:1', secondary_in: '127.0.0.1:2', outdev: '127.0.0.1:3' } } }, /colo\.comparator\.notify: expected HOST:PORT/],
      [{ colo: { max_interval_ms: 5 } }, /colo\.max_interval_ms: expected an integer in 10\.\.3600000/],
      [{ domain: { disk_mib: '64' } }, /domain\.disk_mib: expected an integer in 1\.\.1024, got "64"/],
      [{ domain: { type: 'kvm' } }, /domain\.type: expected one of "sim", "xen"/],
      [{ domain: { type: 'xen' } }, /domain\.service: expected HOST:PORT, got nothing/],
      [{ domain: { type: 'xen', service: '10.0.0.10:6379', vif: 'vif1.0; rm' } }, /domain\.vif: "vif1\.0; rm" is not an interface name/],
      [{ domain: { type: 'xen', service: '10.0.0.10:6379', name: '../x y' } }, /domain\.name: "\.\.\/x y" is not a domain name or id/],
      [{ domain: { type: 'xen', service: '10.0.0.10:6379', memory_mib: 64 } }, /domain\.memory_mib: unknown key/],
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

  test('a YAML syntax error names its line and column', () => {
    refused(() => loadConfig(write('tab.yaml', 'log_level: info\nprimary:\n  interval_ms: 50\n\tretry_ms: 10\n')), /^\S*tab\.yaml: not valid YAML at line 4, column 1: Tabs are not allowed/);
    refused(() => loadConfig(write('twice.yaml', 'primary:\n  interval_ms: 50\n  interval_ms: 60\n')), /twice\.yaml: not valid YAML at line 3, column 3: Map keys must be unique/);
  });

  test('every key of defaultConfig() is read back from its snake_case YAML', () => {
    const full = everyKeySet();
    const written = keyPaths(asYaml(full));
    const unwritten = keyPaths(defaultConfig()).map((path) => path.split('.').map(snakeCase).join('.')).filter((path) => !written.includes(path));
    // domains: is a list of entries, each its own file's worth (tested below), not a key with a value of its own.
    assert.deepEqual(unwritten, ['monitor.token', 'tls.dir', 'domains'], 'the file sets every key but the token, the certificate directory and the domains');
    assert.deepEqual(loadConfig(write('every-key.yaml', stringify(asYaml(full)))), full);
    const token = defaultConfig();
    token.monitor.token = 'a-token-of-enough-characters';
    assert.deepEqual(loadConfig(write('token.yaml', stringify(asYaml(token)))), token);
  });

  test('an unknown key is refused at every depth, with the keys that are known there', () => {
    const doc = asYaml(everyKeySet()) as Mapping;
    const sections = ['', ...keyPaths(doc).filter((path) => isMapping(valueAt(doc, path)))];
    assert.deepEqual(sections, ['', 'heartbeat', 'domain', 'primary', 'primary.precopy', 'secondary', 'monitor', 'colo', 'colo.comparator', 'arbiter', 'tls', 'hooks', 'floating_address']);
    for (const section of sections) {
      const bad = structuredClone(doc);
      const at = valueAt(bad, section) as Mapping;
      const known = Object.keys(at);
      at.surplus_key = 1;
      const key = section === '' ? 'surplus_key' : `${section}.surplus_key`;
      const message = new RegExp(`^f\\.yaml: ${key.replaceAll('.', '\\.')}: unknown key \\(known: ([a-z_, ]+)\\)$`);
      assert.throws(
        () => configFromObject(bad, 'f.yaml'),
        (err: Error) => {
          const listed = err instanceof ConfigError ? message.exec(err.message)?.[1].split(', ') : undefined;
          return listed !== undefined && known.every((k) => listed.includes(k));
        },
        key,
      );
    }
  });

  test('role: says which node a file is for; the other node refuses it, a file without one is for either', () => {
    const primary = loadConfig(write('p.yaml', 'role: primary\nprimary:\n  secondary: 127.0.0.1:7700\n'));
    assert.equal(primary.role, 'primary');
    requireRole(primary, 'p.yaml', 'primary');
    refused(() => requireRole(primary, 'p.yaml', 'secondary'), /^p\.yaml is a primary's configuration \(role: primary\); `tandem secondary` needs a secondary's/);
    const secondary = loadConfig(write('s.yaml', 'role: secondary\n'));
    refused(() => requireRole(secondary, 's.yaml', 'primary'), /^s\.yaml is a secondary's configuration \(role: secondary\); `tandem primary` needs a primary's/);
    const shared = loadConfig(write('both.yaml', 'primary:\n  interval_ms: 20\nsecondary:\n  listen: 127.0.0.1:0\n'));
    assert.equal(shared.role, undefined);
    for (const role of ['primary', 'secondary'] as const) requireRole(shared, 'both.yaml', role);
    refused(() => loadConfig(write('r.yaml', 'role: tertiary\n')), /r\.yaml: role: expected one of "primary", "secondary", got "tertiary"/);
  });

  test('the examples say their role', () => {
    for (const [name, role] of [['primary.yaml', 'primary'], ['secondary.yaml', 'secondary'], ['xen-primary.yaml', 'primary'], ['xen-secondary.yaml', 'secondary']]) {
      assert.equal(loadConfig(new URL(`../../../examples/${name}`, import.meta.url).pathname).role, role, name);
    }
  });

  test('defaultConfig() is a fresh object each call', () => {
    const a = defaultConfig();
    a.primary.service.port = 1;
    a.primary.precopy.maxIterations = 99;
    if (a.domain.type === 'sim') a.domain.memoryMib = 1;
    const b = defaultConfig().domain;
    assert.deepEqual([defaultConfig().primary.service.port, defaultConfig().primary.precopy.maxIterations, b.type === 'sim' ? b.memoryMib : 0], [6379, 5, 256]);
  });

  test('a xen domain section: the domain, its service, the defaults left to the binding', () => {
    assert.deepEqual(configFromObject({ domain: { type: 'xen', name: 'web1', service: '10.0.0.10:6379' } }, 'f.yaml').domain, {
      type: 'xen',
      name: 'web1',
      service: { host: '10.0.0.10', port: 6379 },
      vif: undefined,
      ifb: undefined,
      xl: undefined,
      failoverTimeoutMs: 120_000,
      suspendTimeoutMs: 60_000,
    });
  });

  test('a domain section without a type is the sim domain', () => {
    assert.deepEqual(configFromObject({ domain: { memory_mib: 8 } }, 'f.yaml').domain, { type: 'sim', memoryMib: 8, vcpus: 1, diskMib: 64 });
    refused(() => configFromObject({ domain: { type: 'sim', cpus: 2 } }, 'f.yaml'), /^f\.yaml: domain\.cpus: unknown key \(known: type, memory_mib, vcpus, disk_mib\)$/);
    refused(() => configFromObject({ domain: 'sim' }, 'f.yaml'), /^f\.yaml: domain: expected a mapping, got "sim"$/);
  });

  test('all the problems are listed on one line, a few at most, long values cut short', () => {
    refused(
      () => configFromObject({ heartbeat: { interval_ms: 0 }, primary: { retry_ms: 0, precopy: { rounds: 3 } } }, 'f.yaml'),
      /^f\.yaml: heartbeat\.interval_ms: expected an integer in 1\.\.60000, got 0; primary\.retry_ms: expected an integer in 1\.\.600000, got 0; primary\.precopy\.rounds: unknown key \(known: target_dirty_pages, max_iterations\)$/,
    );
    const many = Object.fromEntries(Array.from({ length: 1000 }, (_, i) => [`k${i}`, i]));
    refused(() => configFromObject(many, 'f.yaml'), /^f\.yaml: k0, k1, k2, k3, k4, and 995 more: unknown keys \(known: /);
    const long = 'x'.repeat(100_000);
    assert.throws(() => configFromObject({ log_level: long, primary: { secondary: long } }, 'f.yaml'), (err: Error) => err.message.length < 400 && /log_level: expected one of .*, got "x+\.\.\.; primary\.secondary: expected a HOST:PORT string, got "x+\.\.\.$/.test(err.message));
  });

  test('a refused secret is in neither the message nor its cause', () => {
    const secret = 'a-secret-token-of-some-length';
    for (const monitor of [{ token: secret.repeat(30) }, { token: [secret] }, { token_file: secret.repeat(300) }, { token: secret, token_file: secret }]) {
      assert.throws(() => configFromObject({ monitor }, 'f.yaml'), (err: Error) => err instanceof ConfigError && !inspect(err, { depth: Infinity }).includes(secret));
    }
  });

  test('the arbiter section: etcd needs endpoints, names are checked, TLS files go together; --arbiter URLs are read or refused', () => {
    const c = configFromObject({ arbiter: { kind: 'etcd', endpoints: ['10.0.0.9:2379', '[::1]:2379'], node: 'alpha', lease_ms: 3000 }, tls: { dir: '/etc/tandem/tls', name: 'alpha' } }, 'f.yaml');
    assert.deepEqual(c.arbiter.endpoints, [{ host: '10.0.0.9', port: 2379 }, { host: '::1', port: 2379 }]);
    assert.equal(c.arbiter.leaseMs, 3000);
    assert.equal(c.arbiter.prefix, '/tandem');
    assert.equal(defaultConfig().arbiter.kind, 'none');
    refused(() => configFromObject({ arbiter: { kind: 'etcd' } }, 'f.yaml'), /arbiter: kind etcd needs endpoints/);
    refused(() => configFromObject({ arbiter: { endpoints: ['127.0.0.1:2379'] } }, 'f.yaml'), /arbiter: endpoints are given but kind is none/);
    refused(() => configFromObject({ arbiter: { kind: 'etcd', endpoints: ['127.0.0.1:2379'], node: '../etc' } }, 'f.yaml'), /arbiter\.node: expected a name/);
    refused(() => configFromObject({ arbiter: { kind: 'etcd', endpoints: Array(8).fill('127.0.0.1:2379') } }, 'f.yaml'), /arbiter\.endpoints/);
    refused(() => configFromObject({ arbiter: { kind: 'etcd', endpoints: ['127.0.0.1:2379'], prefix: '/t/' } }, 'f.yaml'), /arbiter\.prefix: expected a key prefix without a trailing \//);
    refused(() => configFromObject({ arbiter: { kind: 'etcd', endpoints: ['127.0.0.1:2379'], cert: '/c' } }, 'f.yaml'), /arbiter: cert and key go together/);
    refused(() => configFromObject({ arbiter: { lease_ms: 10 } }, 'f.yaml'), /arbiter\.lease_ms: expected an integer in 1000\.\.600000, got 10/);
    assert.deepEqual(parseArbiterUrl('etcd://127.0.0.1:2379,[::1]:2380'), { kind: 'etcd', endpoints: [{ host: '127.0.0.1', port: 2379 }, { host: '::1', port: 2380 }] });
    assert.deepEqual(parseArbiterUrl('none'), { kind: 'none' });
    for (const bad of ['etcd://', 'http://127.0.0.1:2379', 'etcd://127.0.0.1', `etcd://${Array(8).fill('h:1').join(',')}`, 'etcd://h:1/x']) {
      assert.throws(() => parseArbiterUrl(bad), (err: unknown) => err instanceof ConfigError && /--arbiter/.test(err.message), bad);
    }
    // An etcd arbiter needs this node's name; with none, nothing is asked of etcd.
    const noName = configFromObject({ arbiter: { kind: 'etcd', endpoints: ['127.0.0.1:2379'] } }, 'f.yaml');
    assert.throws(() => createArbiter(noName, 'primary', silent), /arbiter\.node: each node of a pair needs its own name/);
    // The TLS name is the default: the name its certificate proves.
    const tlsNamed = configFromObject({ arbiter: { kind: 'etcd', endpoints: ['127.0.0.1:2379'] }, tls: { dir: '/etc/tandem/tls', name: 'alpha' } }, 'f.yaml');
    assert.equal(createArbiter(tlsNamed, 'primary', silent).kind, 'etcd');
    // etcd off loopback: HTTPS with a client certificate, or refused (when the file is read, and when flags set it).
    refused(() => configFromObject({ arbiter: { kind: 'etcd', endpoints: ['127.0.0.1:2379', '10.0.0.3:2379'], node: 'a' } }, 'f.yaml'), /arbiter: etcd at 10\.0\.0\.3:2379 is not on loopback, so it needs mutual TLS/);
    refused(() => configFromObject({ arbiter: { kind: 'etcd', endpoints: ['10.0.0.3:2379'], node: 'a', ca: '/ca.pem' } }, 'f.yaml'), /10\.0\.0\.3:2379 is not on loopback, so it needs mutual TLS/);
    const flagged = defaultConfig();
    flagged.arbiter = { ...flagged.arbiter, kind: 'etcd', endpoints: [{ host: 'etcd.example', port: 2379 }], node: 'a' };
    assert.throws(() => createArbiter(flagged, 'primary', silent), (err: unknown) => err instanceof ConfigError && /etcd at etcd\.example:2379 is not on loopback/.test(err.message));
    assert.throws(() => createArbiter(configFromObject({ arbiter: { kind: 'etcd', endpoints: ['127.0.0.1:2379'], node: 'a', ca: tmp.path('missing.pem') } }, 'f.yaml'), 'primary', silent), /arbiter\.ca: cannot read/);
    assert.equal(createArbiter(defaultConfig(), 'primary', silent).kind, 'none');
  });

  test('a number the YAML spells .inf is shown as Infinity, a value that contains itself as such', () => {
    refused(() => loadConfig(write('inf.yaml', 'primary:\n  interval_ms: .inf\n')), /primary\.interval_ms: expected an integer in 1\.\.60000, got Infinity$/);
    refused(() => loadConfig(write('cycle.yaml', 'monitor: &m\n  - *m\n')), /monitor: expected a mapping, got a list that contains itself$/);
  });
});

describe('configuration: domains (many domains in one process)', () => {
  /** A two-domain file as a parsed YAML document; `change` edits it before it is read. */
  const twoDomains = (change: (doc: Mapping) => void = () => {}): Mapping => {
    const doc: Mapping = {
      tls: { insecure: true },
      heartbeat: { interval_ms: 40, timeout_ms: 400 },
      domain: { type: 'sim', memory_mib: 8, disk_mib: 2 },
      primary: { interval_ms: 30, on_stop: 'switchover' },
      monitor: { listen: '127.0.0.1:7790' },
      domains: [
        { name: 'alpha', primary: { secondary: '127.0.0.1:7700', service: '127.0.0.1:6379' }, secondary: { listen: '127.0.0.1:7700', service: '127.0.0.1:6380' } },
        {
          name: 'beta',
          mode: 'colo',
          domain: { memory_mib: 16 },
          primary: { secondary: '127.0.0.1:7710', service: '127.0.0.1:6381', interval_ms: 10, policy: 'output', min_interval_ms: 0, generation: 4 },
          secondary: { listen: '127.0.0.1:7710', heartbeat: '127.0.0.1:7715', service: '127.0.0.1:6382' },
          colo: { net: '127.0.0.1:7712' },
        },
      ],
    };
    change(doc);
    return doc;
  };
  const entry = (doc: Mapping, i: number): Mapping => (doc.domains as Mapping[])[i];
  const at = (host: string, port: number): Address => ({ host, port });

  test('each entry becomes a whole configuration: its keys over the top level, named at the arbiter, without a monitor of its own', () => {
    const base = configFromObject(twoDomains(), 'd.yaml');
    const before = structuredClone(base);
    const plans = domainConfigs(base);
    assert.deepEqual(base, before, 'the base is not changed');
    assert.deepEqual(domainConfigs(base), plans, 'the same base gives the same plans');
    assert.deepEqual(plans.map((p) => [p.name, p.mode, p.cfg.arbiter.domain]), [['alpha', undefined, 'alpha'], ['beta', 'colo', 'beta']]);
    const [a, b] = plans.map((p) => p.cfg);
    for (const c of [a, b]) {
      assert.equal(c.domains, undefined);
      assert.equal(c.monitor.listen, undefined, 'the process has one monitor');
      assert.deepEqual(c.heartbeat, { intervalMs: 40, timeoutMs: 400 });
      assert.equal(c.tls.insecure, true);
      assert.equal(c.primary.onStop, 'switchover', 'a top-level key no entry sets is every domain\'s');
    }
    assert.deepEqual(a.domain, { type: 'sim', memoryMib: 8, vcpus: 1, diskMib: 2 });
    assert.deepEqual(b.domain, { type: 'sim', memoryMib: 16, vcpus: 1, diskMib: 2 }, 'the entry\'s domain keys over the top level\'s');
    assert.deepEqual([a.primary.secondary, a.primary.service, a.primary.intervalMs, a.primary.policy, a.primary.generation], [at('127.0.0.1', 7700), at('127.0.0.1', 6379), 30, 'timer', 1]);
    assert.deepEqual([b.primary.secondary, b.primary.service, b.primary.intervalMs, b.primary.policy, b.primary.minIntervalMs, b.primary.generation], [at('127.0.0.1', 7710), at('127.0.0.1', 6381), 10, 'output', 0, 4]);
    assert.deepEqual([a.secondary.listen, a.secondary.heartbeat, a.secondary.service], [at('127.0.0.1', 7700), undefined, at('127.0.0.1', 6380)]);
    assert.deepEqual([b.secondary.listen, b.secondary.heartbeat, b.secondary.service, b.colo.net], [at('127.0.0.1', 7710), at('127.0.0.1', 7715), at('127.0.0.1', 6382), at('127.0.0.1', 7712)]);
    // The base keeps the monitor for the process, and the entries as read.
    assert.deepEqual(base.monitor.listen, at('127.0.0.1', 7790));
    assert.deepEqual(base.domains!.map((d) => d.name), ['alpha', 'beta']);
    // Without domains: nothing to derive.
    assert.equal(defaultConfig().domains, undefined);
    assert.deepEqual(domainConfigs(defaultConfig()), []);
  });

  test('a domain of another type than the top level stands alone; a file read from disk; the example is valid', () => {
    const xen = configFromObject(
      twoDomains((d) => (entry(d, 1).domain = { type: 'xen', name: 'web', service: '10.0.0.5:80' })),
      'd.yaml',
    );
    assert.deepEqual(domainConfigs(xen)[1].cfg.domain, { type: 'xen', name: 'web', service: at('10.0.0.5', 80), vif: undefined, ifb: undefined, xl: undefined, failoverTimeoutMs: 120_000, suspendTimeoutMs: 60_000 });
    const file = loadConfig(write('domains.yaml', stringify(twoDomains())));
    assert.deepEqual(domainConfigs(file).map((p) => p.name), ['alpha', 'beta']);
    const example = loadConfig(new URL('../../../examples/domains.yaml', import.meta.url).pathname);
    const plans = domainConfigs(example);
    assert.deepEqual(plans.map((p) => [p.name, p.mode ?? 'the command\'s']), [['alpha', 'the command\'s'], ['beta', 'the command\'s'], ['gamma', 'colo']]);
    assert.equal(example.role, undefined, 'one file for both processes');
    assert.equal(new Set(plans.map((p) => formatAddress(p.cfg.primary.service))).size, 3);
  });

  test('the entries are checked: names, keys, values, the list\'s size, each naming domains[i] and the key', () => {
    const cases: [(d: Mapping) => void, RegExp][] = [
      [(d) => (entry(d, 1).name = 'alpha'), /d\.yaml: domains\[1\]\.name: "alpha" is domains\[0\]'s name too; each domain needs its own/],
      [(d) => (entry(d, 0).name = 'no/slash'), /domains\[0\]\.name: expected a name: letters, digits/],
      [(d) => delete entry(d, 0).name, /domains\[0\]\.name: expected a name/],
      [(d) => (entry(d, 1).mode = 'none'), /domains\[1\]\.mode: expected one of "remus", "colo", got "none"/],
      [(d) => (entry(d, 1).primary = { ...(entry(d, 1).primary as Mapping), service: 'nowhere' }), /domains\[1\]\.primary\.service: expected HOST:PORT/],
      [(d) => (entry(d, 0).primary = { ...(entry(d, 0).primary as Mapping), max_clients: 5 }), /domains\[0\]\.primary\.max_clients: unknown key \(known: secondary, service, heartbeat, interval_ms/],
      [(d) => (entry(d, 0).monitor = { listen: '127.0.0.1:1' }), /domains\[0\]\.monitor.*known: name, mode, domain, primary, secondary, colo/],
      [(d) => (entry(d, 1).domain = { memory_mib: 0 }), /domains\[1\]\.domain\.memory_mib: expected an integer in 1\.\./],
      [(d) => (entry(d, 1).domain = { type: 'xen' }), /domains\[1\]\.domain\.service: expected HOST:PORT, got nothing/],
      [(d) => (entry(d, 0).secondary = { listen: '127.0.0.1:7700', max_epoch_mib: -1 }), /domains\[0\]\.secondary\.max_epoch_mib: expected an integer/],
      [(d) => (d.domains = []), /domains: expected at least one domain/],
      [(d) => (d.domains = Array.from({ length: 65 }, (_, i) => ({ name: `d${i}`, primary: { service: `127.0.0.1:${6000 + i}`, secondary: `127.0.0.1:${7000 + 10 * i}` }, secondary: { listen: `127.0.0.1:${7000 + 10 * i}`, service: `127.0.0.1:${5000 + i}` } }))), /domains: expected at most 64 domains/],
      [(d) => (d.domains = { name: 'a' }), /domains: expected a list of domains \(each with a name\), got object/],
      [(d) => (d.domains = ['alpha']), /domains\[0\]: expected a mapping, got "alpha"/],
      [(d) => (entry(d, 1).primary = { ...(entry(d, 1).primary as Mapping), min_interval_ms: 20 }), /domains\[1\]\.primary\.min_interval_ms \(20\) exceeds domains\[1\]\.primary\.interval_ms \(10\)/],
      [(d) => (entry(d, 0).primary = { secondary: '10.0.0.2:7700', service: '127.0.0.1:6379' }), /domains\[0\] \(alpha\): tls\.insecure: true .* primary\.secondary \(10\.0\.0\.2:7700\)/],
      [(d) => (d.floating_address = { address: '10.0.0.100/24', interface: 'eth0' }), /floating_address: not with domains:/],
      [
        (d) => {
          // The Xen domain's name from the top level, merged into both entries.
          d.domain = { type: 'xen', name: 'web', service: '10.0.0.5:80' };
          entry(d, 1).domain = { service: '10.0.0.6:80' };
        },
        /domains\[1\]\.domain\.name \("web"\) is also domains\[0\]'s: each entry protects its own Xen domain/,
      ],
    ];
    for (const [change, pattern] of cases) refused(() => configFromObject(twoDomains(change), 'd.yaml'), pattern);
    // 64 is allowed.
    const many = twoDomains((d) => (d.domains = Array.from({ length: 64 }, (_, i) => ({ name: `d${i}`, primary: { service: `127.0.0.1:${6000 + i}`, secondary: `127.0.0.1:${7000 + 10 * i}` }, secondary: { listen: `127.0.0.1:${7000 + 10 * i}`, service: `127.0.0.1:${5000 + i}` } }))));
    assert.equal(domainConfigs(configFromObject(many, 'd.yaml')).length, 64);
  });

  test('two domains never share an address either process binds or connects to (port 0 excepted); a file with role: is checked for its role', () => {
    const set = (i: number, section: string, key: string, value: string) => (d: Mapping) => {
      const e = entry(d, i);
      e[section] = { ...(e[section] as Mapping | undefined), [key]: value };
    };
    const cases: [(d: Mapping) => void, RegExp][] = [
      [set(1, 'primary', 'service', '127.0.0.1:6379'), /d\.yaml: domains\[1\]\.primary\.service \(127\.0\.0\.1:6379\) is also domains\[0\]\.primary\.service \(127\.0\.0\.1:6379\): each domain needs its own address/],
      [set(1, 'primary', 'secondary', '127.0.0.1:7700'), /domains\[1\]\.primary\.secondary \(127\.0\.0\.1:7700\) is also domains\[0\]\.primary\.secondary/],
      [set(1, 'primary', 'heartbeat', '127.0.0.1:7701'), /domains\[1\]\.primary\.heartbeat \(127\.0\.0\.1:7701\) is also domains\[0\]\.primary\.heartbeat \(by default primary\.secondary \+ 1\)/],
      [set(1, 'secondary', 'listen', '127.0.0.1:7701'), /domains\[1\]\.secondary\.listen \(127\.0\.0\.1:7701\) is also domains\[0\]\.secondary\.heartbeat \(by default secondary\.listen \+ 1\)/],
      [set(1, 'secondary', 'service', '127.0.0.1:6380'), /domains\[1\]\.secondary\.service \(127\.0\.0\.1:6380\) is also domains\[0\]\.secondary\.service/],
      [(d) => {
        // Off loopback needs TLS (whose files are read when the node starts, not here).
        d.tls = { dir: '/etc/tandem/tls', name: 'secondary' };
        set(1, 'secondary', 'heartbeat', '0.0.0.0:7700')(d);
      }, /domains\[1\]\.secondary\.heartbeat \(0\.0\.0\.0:7700\) is also domains\[0\]\.secondary\.listen \(127\.0\.0\.1:7700\)/],
      [set(0, 'colo', 'net', '127.0.0.1:7712'), /domains\[1\]\.colo\.net \(127\.0\.0\.1:7712\) is also domains\[0\]\.colo\.net/],
      // Beta runs COLO: its net link's default (listen + 2) is a listener of its own.
      [
        (d) => {
          const e = entry(d, 1);
          delete e.colo;
          e.secondary = { listen: '127.0.0.1:7698', heartbeat: '127.0.0.1:7699', service: '127.0.0.1:6382' };
        },
        /domains\[1\]\.colo\.net \(by default secondary\.listen \+ 2\) \(127\.0\.0\.1:7700\) is also domains\[0\]\.secondary\.listen \(127\.0\.0\.1:7700\)/,
      ],
    ];
    for (const [change, pattern] of cases) refused(() => configFromObject(twoDomains(change), 'd.yaml'), pattern);
    // Port 0 is any free port: never shared.
    const anyPort = twoDomains((d) => {
      set(0, 'primary', 'service', '127.0.0.1:0')(d);
      set(1, 'primary', 'service', '127.0.0.1:0')(d);
    });
    assert.equal(domainConfigs(configFromObject(anyPort, 'd.yaml')).length, 2);
    // A primary's file says nothing of the secondary's addresses: both domains left at the default listener are its own business.
    const primaryOnly = (role: string | undefined) =>
      twoDomains((d) => {
        if (role !== undefined) d.role = role;
        for (const e of d.domains as Mapping[]) delete e.secondary;
        delete entry(d, 1).colo;
      });
    assert.equal(domainConfigs(configFromObject(primaryOnly('primary'), 'd.yaml')).length, 2);
    refused(() => configFromObject(primaryOnly(undefined), 'd.yaml'), /domains\[1\]\.secondary\.listen \(127\.0\.0\.1:7700\) is also domains\[0\]\.secondary\.listen/);
    refused(() => configFromObject(primaryOnly('secondary'), 'd.yaml'), /domains\[1\]\.secondary\.listen/);
    // The check is the same function the commands run with their role.
    const shared = configFromObject(twoDomains(), 'd.yaml');
    assert.equal(domainsProblem(shared, 'primary'), undefined);
    assert.equal(domainsProblem(shared, 'secondary'), undefined);
  });
});
