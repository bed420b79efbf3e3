/**
 * `tandem primary` and `tandem secondary` as processes: bad flags and bad
 * configuration end in one line, and so does a node with neither mutual
 * TLS nor insecure mode, or insecure mode off loopback; a secondary fed
 * garbage, over plain TCP or by an authenticated peer, logs a clear line
 * with the error code and keeps serving. (Wrong certificates and forged
 * heartbeats against a real pair: mtls.test.ts.)
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { after, describe, test } from 'node:test';
import { runTandem, tempDir } from '../helpers/cli.js';
import { spawnTandem } from '../helpers/proc.js';
import { testCerts, tlsArgs, tlsFor } from '../helpers/tls.js';
import { frameRecord } from '../../src/stream/encoder.js';
import { LibxlType } from '../../src/stream/format.js';
import { encodeLibxlHeader } from '../../src/stream/headers.js';

const tmp = tempDir();
after(() => tmp.cleanup());

const oneLine = (stderr: string, pattern: RegExp): void => {
  const lines = stderr.trimEnd().split('\n');
  assert.equal(lines.length, 1, stderr);
  assert.match(lines[0], /^tandem: error: /);
  assert.match(lines[0], pattern);
};

describe('tandem primary / secondary: refusals', () => {
  test('bad flags and configuration are refused before anything starts', async () => {
    const bad = tmp.path('bad.yaml');
    writeFileSync(bad, 'primary:\n  interval_ms: -5\n');
    const oneMachine = tmp.path('one-machine.yaml');
    writeFileSync(oneMachine, 'tls:\n  insecure: true\n');
    const open = tmp.path('open.yaml');
    writeFileSync(open, 'tls:\n  insecure: true\nsecondary:\n  listen: 0.0.0.0:7700\n');
    const { dir } = await testCerts();
    // A bad flag is bad usage (exit status 2, ERR_CLI_USAGE); a bad or missing configuration, exit status 1.
    const cases: [string[], RegExp, number][] = [
      [['primary', '--service', '127.0.0.1:6399', '--config', oneMachine], /no secondary: pass --secondary HOST:PORT/, 1],
      [['primary', '--secondary', '127.0.0.1:7', '--service', '127.0.0.1:6399'], /the channels between the hosts need mutual TLS: .*tandem certs init DIR --nodes NAME,NAME.*--tls DIR --name NAME.*\[ERR_CONFIG_INVALID\]$/, 1],
      [['secondary', '--name', 'secondary'], /the channels between the hosts need mutual TLS/, 1],
      [['secondary', '--config', open], /tls\.insecure: true \(plain TCP, unauthenticated\) is refused on an address other than loopback: secondary\.listen \(0\.0\.0\.0:7700\).*\[ERR_CONFIG_INVALID\]$/, 1],
      [['primary', '--config', oneMachine, '--secondary', '10.0.0.2:7700'], /refused on an address other than loopback: primary\.secondary \(10\.0\.0\.2:7700\)/, 1],
      [['secondary', '--config', oneMachine, '--listen', '0.0.0.0:0'], /refused on an address other than loopback: secondary\.listen \(0\.0\.0\.0:0\)/, 1],
      [['secondary', '--tls', tmp.path('absent'), '--name', 'secondary'], /tls\.dir \(--tls\): cannot read the directory .*absent: ENOENT.*\[ERR_CONFIG_INVALID\]$/, 1],
      [['secondary', '--tls', dir, '--name', 'secondary'], /tls\.peer \(--peer\): name the peer/, 1],
      [['secondary', '--tls', dir, '--name', 'nobody', '--peer', 'primary'], /tls\.dir \(--tls\): cannot read .*nobody\.crt: ENOENT/, 1],
      [['secondary', '--tls', dir, '--name', 'Secondary'], /--name: "Secondary" is not a lowercase DNS label.*\[ERR_CLI_USAGE\]$/, 2],
      [['primary', '--tls', dir, '--name', 'primary', '--peer', 'a_b'], /--peer: "a_b" is not a lowercase DNS label.*\[ERR_CLI_USAGE\]$/, 2],
      [['primary', '--tls', '', '--name', 'primary'], /--tls: expected a path of 1\.\.4096 characters \[ERR_CLI_USAGE\]$/, 2],
      [['primary', '--secondary', 'nowhere', '--service', '127.0.0.1:6399'], /--secondary: expected HOST:PORT.*\[ERR_CLI_USAGE\]/, 2],
      [['primary', '--secondary', '127.0.0.1:7', '--service', '127.0.0.1:6399', '--interval', '0'], /--interval: expected an integer in 1\.\.60000, got 0 \[ERR_CLI_USAGE\]/, 2],
      [['primary', '--secondary', '127.0.0.1:7', '--config', bad], /bad\.yaml: primary\.interval_ms: expected an integer in 1\.\.60000, got -5 \[ERR_CONFIG_INVALID\]/, 1],
      [['secondary', '--listen', '127.0.0.1:99999'], /--listen: port 99999 is outside 0\.\.65535 \[ERR_CLI_USAGE\]/, 2],
      [['secondary', '--config', tmp.path('absent.yaml')], /absent\.yaml: cannot read the configuration/, 1],
    ];
    for (const [args, pattern, status] of cases) {
      const r = runTandem(args);
      assert.equal(r.status, status, `${args.join(' ')}: ${r.stderr}`);
      oneLine(r.stderr, pattern);
    }
  });
});

describe('tandem secondary: hostile input', () => {
  test('garbage gets a logged refusal with its code, over plain TCP and from an authenticated peer, and a real primary still syncs afterwards', async () => {
    const config = tmp.path('sec.yaml');
    writeFileSync(config, 'domain:\n  memory_mib: 4\nsecondary:\n  listen: 127.0.0.1:0\n');
    const secondary = spawnTandem(['secondary', '--config', config, ...(await tlsArgs('secondary'))]);
    const listening = await secondary.waitLine((l) => typeof l.port === 'number', 'the secondary');
    const port = listening.port as number;

    // Plain TCP where the TLS handshake belongs: refused before any stream code sees it.
    const s = connect({ port, host: '127.0.0.1' });
    s.on('error', () => {});
    s.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    const handshake = await secondary.waitLine((l) => l.code === 'ERR_TRANSPORT_TLS_REFUSED', 'the handshake refusal');
    assert.match(String(handshake.msg), /refused a connection for the primary from 127\.0\.0\.1:\d+: it does not speak TLS/);
    s.destroy();

    // After the handshake, the stream's opening (TANDEM_PRIMARY, src/secondary/prelude.ts) is judged before anything touches the replica.
    const prelude = async (bytes: Buffer | string, code: string, pattern: RegExp): Promise<void> => {
      const authenticated = await (await tlsFor('primary')).connect({ host: '127.0.0.1', port }, { timeoutMs: 5000, peer: 'the secondary' });
      authenticated.on('error', () => {});
      authenticated.on('data', () => {});
      authenticated.write(bytes);
      const line = await secondary.waitLine((l) => (l.err as { code?: string } | undefined)?.code === code, `the refusal with ${code}`);
      assert.equal(line.level, 40, JSON.stringify(line));
      assert.match(String(line.msg), pattern);
      authenticated.destroy();
    };
    // Garbage where a libxl header belongs, from a peer with the primary's certificate.
    await prelude('GET / HTTP/1.1\r\nHost: x\r\n\r\n', 'ERR_STREAM_BAD_IDENT', /^refused a primary connection from 127\.0\.0\.1:\d+: libxl header at offset 0: ident is not "LibxlFmt"/);
    // A libxl stream that does not name its generation first (a primary from before TANDEM_PRIMARY).
    await prelude(Buffer.concat([encodeLibxlHeader(), ...frameRecord(LibxlType.LIBXC_CONTEXT, [])]), 'ERR_STREAM_NOT_A_PRIMARY', /^refused a primary connection from 127\.0\.0\.1:\d+: .*does not open with TANDEM_PRIMARY/);
    const quiet = secondary.lines.filter((l) => /primary connected|^replica: /.test(String(l.msg)));
    assert.deepEqual(quiet, [], 'neither reached the replica');

    // A real primary syncs afterwards; the process survived.
    const primary = spawnTandem(['primary', '--config', config, '--secondary', `127.0.0.1:${port}`, '--service', '127.0.0.1:0', ...(await tlsArgs('primary'))]);
    const synced = await secondary.waitLine((l) => l.state === 'standby', 'the replica standing by');
    assert.equal(synced.msg, 'replica: standby');
    primary.child.kill('SIGTERM');
    await primary.closed;
  });
});

describe('tandem primary: a signal while it starts', () => {
  test('SIGTERM during the start (the fencing check waits for an absent peer) stops the node in order once started: status 0, said in the log', async () => {
    const config = tmp.path('starting.yaml');
    // Nothing listens at the secondary's address: the start asks its heartbeat channel for up to the timeout whether a newer primary serves.
    writeFileSync(config, 'domain:\n  memory_mib: 4\nheartbeat:\n  timeout_ms: 3000\nprimary:\n  secondary: 127.0.0.1:1\n  service: 127.0.0.1:0\ntls:\n  insecure: true\n');
    const primary = spawnTandem(['primary', '--config', config]);
    // Logged as the transport is chosen, just before the start begins.
    await primary.waitLine((l) => /^tls\.insecure:/.test(String(l.msg)), 'the transport chosen');
    primary.child.kill('SIGTERM');
    const said = await primary.waitLine((l) => l.msg === 'SIGTERM while starting: stopping once started', 'the signal told');
    assert.equal(said.signal, 'SIGTERM');
    assert.equal(await primary.closed, 0, primary.text());
    const order = primary.lines.map((l) => String(l.msg));
    const at = (re: RegExp): number => order.findIndex((m) => re.test(m));
    assert.ok(at(/^guest service on /) > at(/while starting/), 'the start went on to its end');
    assert.ok(at(/^stopping in order \(SIGTERM\)/) > at(/^guest service on /), order.join('\n'));
  });
});
