/**
 * Choosing the transport and reading its files: `tandem certs init` makes a
 * directory the transport works with; a missing, garbage, mismatched,
 * expired or exposed file is one clear ConfigError naming the key and the
 * file (never the key's bytes); neither TLS nor insecure mode is a refusal
 * saying how to fix it; insecure mode off loopback is refused naming the key.
 */
import assert from 'node:assert/strict';
import { chmodSync, copyFileSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { after, describe, test } from 'node:test';
import { configFromObject, defaultConfig, type TandemConfig, type TlsConfig } from '../../src/config/config.js';
import { ConfigError } from '../../src/errors.js';
import { certsInit, tlsPaths } from '../../src/transport/certs.js';
import { NO_TLS_MESSAGE, transportFor } from '../../src/transport/select.js';
import { tcpTransport } from '../../src/transport/tcp.js';
import { connect as netConnect } from 'node:net';
import { until } from '../helpers/wait.js';
import { loadTlsCredentials } from '../../src/transport/tls-files.js';
import { tlsTransport } from '../../src/transport/tls.js';
import { runTandem, tempDir } from '../helpers/cli.js';
import { captureLog } from '../secondary/fixtures.js';
import { createLogger } from '../../src/util/logger.js';
import { testCerts } from '../helpers/tls.js';

const tmp = tempDir();
after(() => tmp.cleanup());

const tlsConfig = (t: Partial<TlsConfig>): TlsConfig => ({ ...defaultConfig().tls, ...t });

const refused = (fn: () => unknown, pattern: RegExp): void =>
  assert.throws(fn, (err: unknown) => {
    if (!(err instanceof ConfigError && err.code === 'ERR_CONFIG_INVALID')) return false;
    assert.match(err.message, pattern);
    // Whatever was wrong, no key material is in the message or its causes.
    assert.doesNotMatch(inspect(err, { depth: Infinity }), /BEGIN PRIVATE KEY|MIG[A-Za-z0-9+/]{20}/);
    return true;
  });

/** A copy of the trusted CA's files for `name` (and its peer's certificate) in a fresh directory, to break one at a time. */
async function copyOf(label: string, name = 'primary', peer = 'secondary'): Promise<string> {
  const { dir } = await testCerts();
  const to = tmp.path(label);
  mkdirSync(to);
  for (const file of ['ca.crt', `${name}.crt`, `${name}.key`, `${peer}.crt`]) copyFileSync(join(dir, file), join(to, file));
  chmodSync(join(to, `${name}.key`), 0o600);
  return to;
}

const load = (t: Partial<TlsConfig>, warnings: string[] = []): ReturnType<typeof loadTlsCredentials> => loadTlsCredentials(tlsConfig(t), (w) => warnings.push(w));

describe('tandem certs init', () => {
  test('writes a CA and a key pair per node, keys 0600, refuses to overwrite, and its output works with the transport', async () => {
    const dir = tmp.path('made');
    const r = runTandem(['certs', 'init', dir, '--nodes', 'alpha,beta', '--days', '30']);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^wrote .*ca\.crt .*ca\.key .*alpha\.crt .*alpha\.key .*beta\.crt .*beta\.key\nCA fingerprint \(SHA-256\): ([0-9A-F]{2}:){31}[0-9A-F]{2}\n/);
    assert.match(r.stdout, /ca\.key signs certificates every node accepts: keep it off the nodes/);
    for (const [file, mode] of [['ca.key', 0o600], ['alpha.key', 0o600], ['beta.key', 0o600], ['ca.crt', 0o644], ['alpha.crt', 0o644]] as const) {
      assert.equal(statSync(join(dir, file)).mode & 0o777, mode, file);
    }
    assert.equal(statSync(dir).mode & 0o777, 0o700);

    const before = readFileSync(join(dir, 'ca.key'));
    const again = runTandem(['certs', 'init', dir, '--nodes', 'alpha,beta']);
    assert.equal(again.status, 1);
    assert.match(again.stderr, /^tandem: error: certs init: .*ca\.crt, .*ca\.key, .*already exist; remove them or choose another directory \[ERR_CERTS_INIT_FAILED\]\n$/);
    assert.deepEqual(readFileSync(join(dir, 'ca.key')), before, 'the CA was not replaced');

    // With two nodes in the directory, each one's peer is the other.
    const alpha = loadTlsCredentials(tlsConfig({ dir, name: 'alpha' }), () => {});
    const beta = loadTlsCredentials(tlsConfig({ dir, name: 'beta' }), () => {});
    assert.deepEqual([alpha.peer, beta.peer], ['beta', 'alpha']);
    const listener = await tlsTransport({ ...beta, handshakeTimeoutMs: 1000 }).listen({ host: '127.0.0.1', port: 0 }, (s) => s.end('from beta'), { purpose: 'the test' });
    const s = await tlsTransport({ ...alpha, handshakeTimeoutMs: 1000 }).connect(listener.address, { timeoutMs: 2000, peer: 'beta' });
    const got: Buffer[] = [];
    s.on('data', (d: Buffer) => got.push(d));
    await new Promise((resolve) => s.once('end', resolve));
    assert.equal(Buffer.concat(got).toString(), 'from beta');
    s.destroy();
    await listener.close();
  });

  test('bad names and bad days are bad usage', () => {
    const cases: [string[], RegExp][] = [
      [['--nodes', 'Alpha,beta'], /--nodes: "Alpha" is not a lowercase DNS label/],
      [['--nodes', 'alpha,alpha'], /--nodes: "alpha" is named twice/],
      [['--nodes', 'ca,beta'], /--nodes: "ca" is reserved for the CA's files/],
      [['--nodes', 'a/b'], /--nodes: "a\/b" is not a lowercase DNS label/],
      [['--nodes', 'a', '--days', '0'], /--days: expected an integer in 1\.\.36500, got 0/],
      [[], /Missing required argument: nodes/],
    ];
    for (const [flags, pattern] of cases) {
      const r = runTandem(['certs', 'init', tmp.path('never'), ...flags]);
      assert.equal(r.status, 2, `${flags.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, new RegExp(`^tandem: error: ${pattern.source}.*\\[ERR_CLI_USAGE\\]\\n$`));
    }
  });
});

describe('TLS credentials', () => {
  test('the trusted pair loads, named and checked', async () => {
    const { dir } = await testCerts();
    const warnings: string[] = [];
    const c = load({ dir, name: 'primary', peer: 'secondary' }, warnings);
    assert.equal(c.name, 'primary');
    assert.equal(c.peer, 'secondary');
    assert.match(c.caFingerprint, /^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
    // The CA's key sits next to the nodes' files here, which a node is told.
    assert.deepEqual(warnings.map((w) => /holds the CA's key \(ca\.key\)/.test(w)), [true], warnings.join('\n'));
  });

  test('a missing or garbage file, or one that is not what it should be, is a clear ConfigError', async () => {
    const { dir, other } = await testCerts();
    const mine = tlsPaths(dir, 'primary');
    const files = { ca: mine.ca, cert: mine.cert, key: mine.key, name: 'primary', peer: 'secondary' };
    const garbage = tmp.path('garbage.pem');
    writeFileSync(garbage, 'not a key at all\n', { mode: 0o600 });
    const fakeKey = tmp.path('fake.key');
    writeFileSync(fakeKey, '-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n', { mode: 0o600 });
    const big = tmp.path('big.pem');
    writeFileSync(big, 'x'.repeat(64 * 1024 + 1), { mode: 0o600 });
    const cases: [Partial<TlsConfig>, RegExp][] = [
      [{ ...files, key: tmp.path('absent.key') }, /^tls\.key: cannot read .*absent\.key: ENOENT/],
      [{ ...files, key: garbage }, /^tls\.key: .*garbage\.pem is not an unencrypted PEM private key/],
      [{ ...files, key: fakeKey }, /^tls\.key: .*fake\.key is not an unencrypted PEM private key/],
      [{ ...files, cert: garbage }, /^tls\.cert: .*garbage\.pem is not a PEM certificate \(no BEGIN CERTIFICATE line\)/],
      [{ ...files, key: big }, /^tls\.key: .*big\.pem is 65537 bytes; a PEM certificate or key is at most 65536 bytes/],
      [{ ...files, key: tmp.dir }, /^tls\.key: .* is not a regular file/],
      [{ ...files, key: tlsPaths(dir, 'secondary').key }, /^tls\.key: the key in .*secondary\.key does not belong to the certificate in .*primary\.crt/],
      [{ ...files, cert: tlsPaths(dir, 'secondary').cert, key: tlsPaths(dir, 'secondary').key }, /^tls\.cert: .*secondary\.crt is the certificate of "secondary", not of this node's name "primary"/],
      [{ ...files, cert: tlsPaths(other, 'primary').cert, key: tlsPaths(other, 'primary').key }, /^tls\.cert: .*primary\.crt is not issued by the CA in .*ca\.crt/],
      [{ ...files, ca: mine.cert }, /^tls\.ca: .*primary\.crt is not a CA certificate/],
      [{ ...files, peer: undefined }, /^tls\.peer \(--peer\): the peer's name is required with tls\.cert/],
      [{ ...files, name: undefined }, /^tls\.name \(--name\): this node's name is required with TLS/],
      [{ ...files, peer: 'primary' }, /^tls\.peer \(--peer\): "primary" is this node's own name/],
      [{ dir: tmp.path('nowhere'), name: 'primary' }, /^tls\.dir \(--tls\): cannot read the directory .*nowhere: ENOENT/],
      [{ dir: tmp.path('nowhere'), name: 'primary', peer: 'secondary' }, /^tls\.dir \(--tls\): cannot read .*nowhere\/ca\.crt: ENOENT/],
      // Three node certificates: which is the peer is not guessed.
      [{ dir, name: 'primary' }, /^tls\.peer \(--peer\): name the peer: the default is the other certificate of two, and .* holds certificates for "intruder", "primary", "secondary"/],
    ];
    for (const [t, pattern] of cases) refused(() => load(t), pattern);
  });

  test('a key file every user can read is refused; one its group can read is warned about', async () => {
    const dir = await copyOf('modes');
    const key = tlsPaths(dir, 'primary').key;
    chmodSync(key, 0o644);
    refused(() => load({ dir, name: 'primary' }), /^tls\.dir \(--tls\): .*primary\.key holds a secret that every user of this host can read \(mode 644\); chmod 600/);
    chmodSync(key, 0o640);
    const warnings: string[] = [];
    assert.equal(load({ dir, name: 'primary' }, warnings).peer, 'secondary', 'the other of two certificates');
    assert.ok(warnings.some((w) => /primary\.key holds a secret that its group can read \(mode 640\); chmod 600 it unless that group is meant to/.test(w)), warnings.join('\n'));
    assert.ok(!warnings.some((w) => /ca\.key/.test(w)), 'no CA key here');
  });

  test('an expired certificate is refused with its date; one about to expire is warned about', async () => {
    const dir = tmp.path('expired');
    await certsInit(dir, { nodes: ['primary', 'secondary'], days: 1, now: new Date(Date.now() - 10 * 86_400_000) });
    refused(() => load({ dir, name: 'primary' }), /^tls\.dir \(--tls\): .*ca\.crt expired on .*; make new certificates \(tandem certs init\)/);
    const soon = tmp.path('soon');
    await certsInit(soon, { nodes: ['primary', 'secondary'], days: 10 });
    const warnings: string[] = [];
    load({ dir: soon, name: 'primary' }, warnings);
    assert.ok(warnings.some((w) => /primary\.crt expires on .*, in (9|10) days/.test(w)), warnings.join('\n'));
  });
});

describe('choosing the transport', () => {
  const silent = createLogger('silent');
  const cfgWith = (doc: Record<string, unknown>): TandemConfig => configFromObject(doc, 'f.yaml');

  test('neither TLS nor insecure mode: a refusal that says how to set one up', () => {
    refused(() => transportFor(defaultConfig(), silent), /tandem certs init DIR --nodes NAME,NAME.*--tls DIR --name NAME.*tls\.insecure: true runs them over plain TCP on loopback/);
    assert.match(NO_TLS_MESSAGE, /tls\.dir and tls\.name/);
  });

  test('insecure mode is plain TCP on loopback, said loudly once a channel opens', async () => {
    const log = captureLog();
    const transport = transportFor(cfgWith({ tls: { insecure: true }, primary: { secondary: 'localhost:7700' }, colo: { net: '[::1]:7702' } }), log.logger);
    assert.deepEqual(log.lines(), [], 'nothing said before a channel opens');
    // Plain TCP: a raw socket connects and reaches the channel code at once.
    let reached = 0;
    const listener = await transport.listen({ host: '127.0.0.1', port: 0 }, (s) => (reached++, s.destroy()), { purpose: 'the test' });
    const raw = netConnect(listener.address.port, '127.0.0.1');
    raw.on('error', () => {});
    await until(() => reached === 1, 'the plain connection');
    raw.destroy();
    await listener.close();
    assert.deepEqual(log.find(/plain TCP, unauthenticated and unencrypted/).map((l) => l.level), [40], 'said once, as a warning');
  });

  test('insecure mode on an address other than loopback is refused, naming the key, in the file and after the flags', () => {
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ secondary: { listen: '0.0.0.0:7700' } }, /secondary\.listen \(0\.0\.0\.0:7700\)/],
      [{ primary: { secondary: '10.0.0.2:7700' } }, /primary\.secondary \(10\.0\.0\.2:7700\)/],
      [{ primary: { secondary: '127.0.0.1:7700', heartbeat: 'standby.example:7701' } }, /primary\.heartbeat \(standby\.example:7701\)/],
      [{ secondary: { heartbeat: '192.168.1.2:7701' } }, /secondary\.heartbeat \(192\.168\.1\.2:7701\)/],
      [{ colo: { net: '[fd00::2]:7702' } }, /colo\.net \(\[fd00::2\]:7702\)/],
    ];
    for (const [doc, key] of cases) {
      refused(() => cfgWith({ ...doc, tls: { insecure: true } }), new RegExp(`^f\\.yaml: tls\\.insecure: true \\(plain TCP, unauthenticated\\) is refused on an address other than loopback: ${key.source}; set up mutual TLS`));
    }
    // A flag (--secondary 10.0.0.2:7700) lands in the same key after the file was read.
    const cfg = cfgWith({ tls: { insecure: true } });
    cfg.primary.secondary = { host: '10.0.0.2', port: 7700 };
    refused(() => transportFor(cfg, silent), /^tls\.insecure: true .* loopback: primary\.secondary \(10\.0\.0\.2:7700\)/);
  });

  test('the tls section refuses what cannot go together', () => {
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ insecure: true, dir: '/etc/tandem/tls' }, /tls\.insecure: true turns TLS off, yet certificates are configured/],
      [{ dir: '/d', ca: '/ca.crt', cert: '/c.crt', key: '/c.key' }, /tls: set tls\.dir or tls\.ca, tls\.cert and tls\.key, not both/],
      [{ ca: '/ca.crt' }, /tls: tls\.ca, tls\.cert and tls\.key go together/],
      [{ name: 'alpha', peer: 'alpha' }, /tls\.peer: "alpha" is this node's own name/],
      [{ name: 'Alpha' }, /tls\.name: "Alpha" is not a lowercase DNS label/],
      [{ peer: 'ca' }, /tls\.peer: "ca" is reserved/],
      [{ dir: '' }, /tls\.dir: expected a path, got an empty string/],
      [{ handshake_timeout_ms: 5 }, /tls\.handshake_timeout_ms: expected an integer in 10\.\.60000/],
    ];
    for (const [tls, pattern] of cases) refused(() => cfgWith({ tls }), pattern);
  });

  test('with TLS configured, the transport is mutual TLS and says whom it accepts', async () => {
    const { dir } = await testCerts();
    const log = captureLog();
    const transport = transportFor(cfgWith({ tls: { dir, name: 'secondary', peer: 'primary' } }), log.logger);
    assert.notEqual(transport, tcpTransport);
    const said = log.find(/mutual TLS 1\.3 as "secondary", accepting only "primary"/);
    assert.equal(said.length, 1);
    assert.equal(said[0].node, 'secondary');
    assert.match(String(said[0].ca), /^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
    assert.doesNotMatch(JSON.stringify(log.lines()), /PRIVATE KEY/);
  });
});
