/** The `monitor` configuration section and where the control token comes from. */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { after, test } from 'node:test';
import { configFromObject, defaultConfig } from '../../src/config/config.js';
import { TOKEN_ENV, demoMonitorFlag, demoMonitors, resolveToken } from '../../src/monitor/wire.js';
import { tempDir } from '../helpers/cli.js';

const tmp = tempDir();
after(() => tmp.cleanup());
const SECRET = 'a-secret-token-of-some-length';

test('the monitor section: listen, token or token_file, allow_remote_read, WebSocket slots, handshake timeout', () => {
  const slots = { maxClients: 256, operatorSlots: 16, handshakeTimeoutMs: 10_000, peer: undefined, peerIntervalMs: 1000 };
  assert.deepEqual(defaultConfig().monitor, { listen: undefined, token: undefined, tokenFile: undefined, allowRemoteRead: false, loopbackRead: true, ...slots });
  const c = configFromObject({ monitor: { listen: '127.0.0.1:0', token: SECRET, allow_remote_read: true } }, 't.yaml');
  assert.deepEqual(c.monitor, { listen: { host: '127.0.0.1', port: 0 }, token: SECRET, tokenFile: undefined, allowRemoteRead: true, loopbackRead: true, ...slots });
  const small = configFromObject({ monitor: { max_clients: 8, operator_slots: 2, handshake_timeout_ms: 500 } }, 't').monitor;
  assert.deepEqual([small.maxClients, small.operatorSlots, small.handshakeTimeoutMs], [8, 2, 500]);
  assert.equal(configFromObject({ monitor: { loopback_read: false } }, 't').monitor.loopbackRead, false);
  // The pair's other monitor: a URL or HOST:PORT, kept as written (the monitor reads it as a URL).
  const paired = configFromObject({ monitor: { peer: 'http://10.0.0.2:7791/', peer_interval_ms: 500 } }, 't').monitor;
  assert.deepEqual([paired.peer, paired.peerIntervalMs], ['http://10.0.0.2:7791/', 500]);
  assert.equal(configFromObject({ monitor: { peer: '[::1]:7791' } }, 't').monitor.peer, '[::1]:7791');
  for (const [doc, why] of [
    [{ monitor: { token: 'short' } }, /t\.yaml: monitor\.token: expected a string of 16\.\.512 characters/],
    [{ monitor: { token: 1234567890123456 } }, /monitor\.token: expected a string/],
    [{ monitor: { token: SECRET, token_file: '/x' } }, /set token or token_file, not both/],
    [{ monitor: { listen: 'nowhere' } }, /monitor\.listen/],
    [{ monitor: { allow_remote_read: 'yes' } }, /monitor\.allow_remote_read: expected true or false/],
    [{ monitor: { tokens: SECRET } }, /monitor\.tokens: unknown key/],
    [{ monitor: { allow_remote_read: true, loopback_read: false } }, /allow_remote_read opens reading to everyone/],
    [{ monitor: { max_clients: 0 } }, /monitor\.max_clients: expected an integer in 1\.\.65536, got 0/],
    [{ monitor: { max_clients: 8 } }, /monitor\.operator_slots \(16\) exceeds monitor\.max_clients \(8\)/],
    [{ monitor: { operator_slots: -1 } }, /monitor\.operator_slots: expected an integer in 0\.\.65536/],
    [{ monitor: { handshake_timeout_ms: 10 } }, /monitor\.handshake_timeout_ms: expected an integer in 100\.\.600000, got 10/],
    [{ monitor: { handshake_timeout_ms: '1s' } }, /monitor\.handshake_timeout_ms: expected an integer/],
    [{ monitor: { peer: 'https://10.0.0.2:7791/' } }, /monitor\.peer: expected an http:\/\/ URL \(a monitor serves plain HTTP\), got https:\/\//],
    [{ monitor: { peer: 'http://10.0.0.2:7791/api/status' } }, /monitor\.peer: expected the monitor's root, http:\/\/HOST:PORT\//],
    [{ monitor: { peer: 'http://admin:pw@10.0.0.2:7791/' } }, /monitor\.peer: expected no user or password in the URL/],
    [{ monitor: { peer: 'not a host:port' } }, /monitor\.peer: expected the peer's monitor as http:\/\/HOST:PORT\/ or HOST:PORT/],
    [{ monitor: { peer: 7791 } }, /monitor\.peer: expected the peer's monitor as/],
    [{ monitor: { peer: `http://${'a'.repeat(400)}:1/` } }, /monitor\.peer: expected the peer's monitor as/],
    [{ monitor: { peer_interval_ms: 10 } }, /monitor\.peer_interval_ms: expected an integer in 100\.\.60000, got 10/],
  ] as [unknown, RegExp][]) {
    assert.throws(() => configFromObject(doc, 't.yaml'), (e: Error & { code?: string }) => e.code === 'ERR_CONFIG_INVALID' && why.test(e.message) && !e.message.includes(SECRET), why.source);
  }
  assert.throws(() => configFromObject({ monitor: { token: `${SECRET}`.repeat(30) } }, 't'), (e: Error) => !e.message.includes(SECRET), 'a rejected token is not echoed');
});

test('the token: token_file (trimmed), else token, else the environment', () => {
  const file = tmp.path('token');
  writeFileSync(file, `  ${SECRET}\n`, { mode: 0o600 });
  const base = defaultConfig().monitor;
  assert.equal(resolveToken({ ...base, tokenFile: file }, {}), SECRET);
  assert.equal(resolveToken({ ...base, token: 'inline-token-0123456789' }, { [TOKEN_ENV]: SECRET }), 'inline-token-0123456789');
  assert.equal(resolveToken(base, { [TOKEN_ENV]: SECRET }), SECRET);
  assert.equal(resolveToken(base, {}), undefined);
  assert.throws(() => resolveToken(base, { [TOKEN_ENV]: 'short' }), /16\.\.512 characters/);
  writeFileSync(file, 'short\n');
  assert.throws(() => resolveToken({ ...base, tokenFile: file }, {}), /the token must be 16\.\.512 characters/);
  assert.throws(() => resolveToken({ ...base, tokenFile: tmp.path('absent') }, {}), (e: Error) => /cannot read/.test(e.message) && (e.cause as { code?: string }).code === 'ENOENT');
});

test('a token file is read as the CLI reads one: owner-only, bounded, a regular file, never quoted', () => {
  const base = defaultConfig().monitor;
  const refused = (tokenFile: string, why: RegExp): void => {
    assert.throws(
      () => resolveToken({ ...base, tokenFile }, {}),
      (e: Error & { code?: string }) => e.code === 'ERR_CONFIG_INVALID' && why.test(e.message) && !e.message.includes(SECRET),
      why.source,
    );
  };
  const open = tmp.path('open-token');
  writeFileSync(open, `${SECRET}\n`, { mode: 0o644 });
  refused(open, /^monitor\.token_file: .*open-token holds a secret that every user of this host can read \(mode 644\); chmod 600/);
  const group = tmp.path('group-token');
  writeFileSync(group, `${SECRET}\n`, { mode: 0o640 });
  refused(group, /group-token holds a secret that its group can read \(mode 640\)/);
  const big = tmp.path('big-token');
  writeFileSync(big, SECRET.repeat(200), { mode: 0o600 });
  refused(big, /big-token is 5800 bytes; a token file is at most 4096/);
  const control = tmp.path('control-token');
  writeFileSync(control, `${SECRET}\u0000\n`, { mode: 0o600 });
  refused(control, /the token may hold only printable ASCII characters/);
  refused(tmp.dir, /is not a regular file/);
  // The inline token and the environment's follow the same rule.
  assert.throws(() => configFromObject({ monitor: { token: `${SECRET}\u0007` } }, 't'), /monitor\.token: the token may hold only printable ASCII characters/);
  assert.throws(() => resolveToken(base, { [TOKEN_ENV]: `${SECRET}\n` }), /TANDEM_MONITOR_TOKEN: the token may hold only printable ASCII characters/);
});

test("the demo's monitors: the primary's on the address, the secondary's on the next port, each the other's peer", async () => {
  const never = (): Promise<number> => Promise.reject(new Error('a port was picked for a given one'));
  const fixed = await demoMonitors({ host: '127.0.0.1', port: 7790 }, never);
  assert.deepEqual(demoMonitorFlag(fixed, 'primary'), ['--monitor', '127.0.0.1:7790', '--monitor-peer', '127.0.0.1:7791']);
  assert.deepEqual(demoMonitorFlag(fixed, 'secondary'), ['--monitor', '127.0.0.1:7791', '--monitor-peer', '127.0.0.1:7790']);
  // Port 0: two ports picked on the monitor's host, never the same one twice.
  const picks = [40001, 40001, 40002];
  const hosts: string[] = [];
  const any = await demoMonitors({ host: '::1', port: 0 }, (host) => (hosts.push(host), Promise.resolve(picks.shift()!)));
  assert.deepEqual(demoMonitorFlag(any, 'secondary'), ['--monitor', '[::1]:40002', '--monitor-peer', '[::1]:40001']);
  assert.deepEqual(hosts, ['::1', '::1', '::1']);
  assert.deepEqual(demoMonitorFlag(undefined, 'primary'), []);
});
