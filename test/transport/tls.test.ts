/**
 * The mutual-TLS transport over real loopback sockets: a good pair carries
 * bytes both ways, whichever listens; a certificate of another CA, a
 * certificate of the same CA for another node, no certificate, TLS 1.2,
 * plain TCP and silence are refused, logged with a typed code, and never
 * reach the listener's channel code; every handshake is bounded, in time and
 * in how many a listener holds at once.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { connect as netConnect, createServer as netServer, type AddressInfo, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { after, describe, test } from 'node:test';
import { connect as tlsConnect, createServer as tlsServer } from 'node:tls';
import { tlsPaths } from '../../src/transport/certs.js';
import { TransportError } from '../../src/transport/errors.js';
import { MAX_HANDSHAKES, tlsTransport } from '../../src/transport/tls.js';
import type { Transport, TransportListener } from '../../src/transport/transport.js';
import { captureLog } from '../secondary/fixtures.js';
import { testCerts, tlsFor, type TestNode } from '../helpers/tls.js';
import { until } from '../helpers/wait.js';

const LOOPBACK = { host: '127.0.0.1', port: 0 };

/** What a failed test left open, closed after the file so that it still ends. */
const leftOpen = { listeners: new Set<TransportListener>(), streams: new Set<Duplex>() };
after(async () => {
  for (const s of leftOpen.streams) s.destroy();
  await Promise.all([...leftOpen.listeners].map((l) => l.close()));
});

interface Listening {
  listener: TransportListener;
  port: number;
  /** Connections handed to the channel code. */
  accepted: { stream: Duplex; remote: string }[];
  log: ReturnType<typeof captureLog>;
}

/** Node `name` listening; each accepted connection is greeted, then echoed. */
async function listenAs(name: TestNode, options: { peer?: TestNode; dir?: string; handshakeTimeoutMs?: number; allowHalfOpen?: boolean } = {}): Promise<Listening> {
  const log = captureLog();
  const transport = await tlsFor(name, options.peer, { dir: options.dir, handshakeTimeoutMs: options.handshakeTimeoutMs ?? 2000, logger: log.logger });
  const accepted: Listening['accepted'] = [];
  const listener = await transport.listen(
    LOOPBACK,
    (stream, remote) => {
      accepted.push({ stream, remote });
      leftOpen.streams.add(stream);
      stream.on('error', () => {});
      // Written at once: it travels right behind the acceptance byte, which the dialer must strip.
      stream.write(`hello from ${name}\n`);
      if (!options.allowHalfOpen) stream.pipe(stream);
    },
    { purpose: 'the test', allowHalfOpen: options.allowHalfOpen },
  );
  leftOpen.listeners.add(listener);
  return { listener, port: listener.address.port, accepted, log };
}

const dialAs = async (name: TestNode, port: number, peer?: TestNode, dir?: string, timeoutMs = 2000): Promise<Duplex> =>
  (await tlsFor(name, peer, { dir })).connect({ host: '127.0.0.1', port }, { timeoutMs, peer: 'the test listener' });

/** Reads until `n` bytes arrived. */
function readBytes(stream: Duplex, n: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let got = 0;
    const onData = (d: Buffer): void => {
      parts.push(d);
      got += d.length;
      if (got >= n) {
        stream.off('data', onData);
        resolve(Buffer.concat(parts).subarray(0, n));
      }
    };
    stream.on('data', onData);
    stream.once('error', reject);
  });
}

const refusal =
  (code: string, pattern: RegExp) =>
  (e: unknown): boolean =>
    e instanceof TransportError && e.code === code && pattern.test(e.message);

/** The listener's refusal lines (warn level) with `code`. */
const refusals = (l: Listening, code: string): Record<string, unknown>[] => l.log.lines().filter((line) => line.code === code);

/** A raw client that gives the listener `bytes` (or nothing) and reports when the listener closed it, ms after connecting. */
function rawClient(port: number, bytes?: Buffer): Promise<number> {
  return new Promise((resolve) => {
    const s: Socket = netConnect({ port, host: '127.0.0.1' });
    let t0 = 0;
    s.on('connect', () => {
      t0 = performance.now();
      if (bytes !== undefined) s.write(bytes);
    });
    s.on('error', () => {});
    s.on('data', () => {});
    s.on('close', () => resolve(performance.now() - t0));
  });
}

describe('mutual TLS between the nodes', () => {
  test('a good pair connects, either one listening, and carries bytes both ways over TLS 1.3', async () => {
    for (const [server, client] of [
      ['secondary', 'primary'],
      ['primary', 'secondary'],
    ] as const) {
      const l = await listenAs(server);
      const stream = await dialAs(client, l.port);
      const greeting = `hello from ${server}\n`;
      assert.equal((await readBytes(stream, greeting.length)).toString(), greeting, 'the greeting, without the acceptance byte in front');
      // 4 MiB out and echoed back: every byte, in order.
      const payload = randomBytes(4 * 2 ** 20);
      const echoed = readBytes(stream, payload.length);
      stream.write(payload);
      const back = await echoed;
      assert.equal(createHash('sha256').update(back).digest('hex'), createHash('sha256').update(payload).digest('hex'));
      assert.equal(l.accepted.length, 1);
      assert.match(l.accepted[0].remote, /^127\.0\.0\.1:\d+$/);
      assert.equal((stream as unknown as { getProtocol(): string }).getProtocol(), 'TLSv1.3');
      assert.deepEqual(l.log.lines().filter((line) => line.level === 40), [], 'no refusal logged');
      stream.destroy();
      for (const a of l.accepted) a.stream.destroy();
      await l.listener.close();
    }
  });

  test('a half-closed connection still carries the answer back (a truncated stream gets its ack)', async () => {
    const l = await listenAs('secondary', { allowHalfOpen: true });
    const stream = await dialAs('primary', l.port);
    await until(() => l.accepted.length === 1, 'the connection');
    const server = l.accepted[0].stream;
    server.on('data', () => {});
    server.on('end', () => server.end('answer after your end\n'));
    const all: Buffer[] = [];
    stream.on('data', (d: Buffer) => all.push(d));
    const ended = new Promise((r) => stream.once('end', r));
    stream.end('last words');
    await ended;
    assert.equal(Buffer.concat(all).toString(), 'hello from secondary\nanswer after your end\n');
    await l.listener.close();
  });

  test('a certificate of another CA is refused, as dialer and as listener', async () => {
    const { dir, other } = await testCerts();
    // A dialer whose certificate is another CA's, though it trusts ours: the listener refuses it and logs why.
    const l = await listenAs('secondary');
    const forged = tlsPaths(other, 'primary');
    const closedWithoutAByte = await new Promise<boolean>((resolve) => {
      const s = tlsConnect({
        host: '127.0.0.1',
        port: l.port,
        ca: readFileSync(tlsPaths(dir, 'secondary').ca),
        cert: readFileSync(forged.cert),
        key: readFileSync(forged.key),
        minVersion: 'TLSv1.3',
        checkServerIdentity: () => undefined,
      });
      s.on('error', () => {});
      s.on('data', () => resolve(false));
      s.on('close', () => resolve(true));
    });
    assert.ok(closedWithoutAByte, 'closed without a byte');
    await until(() => refusals(l, 'ERR_TRANSPORT_TLS_REFUSED').length === 1, 'the refusal in the listener log');
    assert.match(String(refusals(l, 'ERR_TRANSPORT_TLS_REFUSED')[0].msg), /refused a connection for the test from 127\.0\.0\.1:\d+: its certificate \(CN=primary\) is not issued by this node's CA/);

    // A node of the other CA dials: it refuses the listener's certificate in turn, and the listener hears that.
    await assert.rejects(dialAs('primary', l.port, 'secondary', other), refusal('ERR_TRANSPORT_TLS_REFUSED', /the test listener at 127\.0\.0\.1:\d+ refused: its certificate is not issued by this node's CA/));
    await until(() => refusals(l, 'ERR_TRANSPORT_TLS_REFUSED').length === 2, 'the second refusal');
    assert.equal(l.accepted.length, 0, 'the channel code never saw either connection');
    await l.listener.close();

    // The same on a half-open listener (the replication link's): the dialer's drop is seen at once, not after the handshake timeout.
    const half = await listenAs('secondary', { allowHalfOpen: true, handshakeTimeoutMs: 30_000 });
    await assert.rejects(dialAs('primary', half.port, 'secondary', other), refusal('ERR_TRANSPORT_TLS_REFUSED', /not issued by this node's CA/));
    await until(() => refusals(half, 'ERR_TRANSPORT_TLS_REFUSED').length === 1, 'the half-open listener\'s refusal', 2000);
    assert.match(String(refusals(half, 'ERR_TRANSPORT_TLS_REFUSED')[0].msg), /it closed the connection during the handshake/);
    assert.equal(half.accepted.length, 0);
    await half.listener.close();

    // A listener of the other CA where the secondary should be: the dialer refuses it.
    const impostor = await listenAs('secondary', { dir: other });
    await assert.rejects(dialAs('primary', impostor.port), refusal('ERR_TRANSPORT_TLS_REFUSED', /refused: its certificate is not issued by this node's CA/));
    await until(() => refusals(impostor, 'ERR_TRANSPORT_TLS_REFUSED').length === 1, "the impostor's view");
    assert.equal(impostor.accepted.length, 0);
    await impostor.listener.close();
  });

  test('a certificate of the same CA for another node is refused, as dialer and as listener', async () => {
    // The intruder dials a secondary that accepts only "primary".
    const l = await listenAs('secondary');
    await assert.rejects(dialAs('intruder', l.port, 'secondary'), refusal('ERR_TRANSPORT_TLS_REFUSED', /instead of accepting node "intruder"/));
    await until(() => refusals(l, 'ERR_TRANSPORT_PEER_MISMATCH').length === 1, 'the mismatch in the listener log');
    assert.match(String(refusals(l, 'ERR_TRANSPORT_PEER_MISMATCH')[0].msg), /its certificate \(issued by this CA\) names "intruder", not the configured peer "primary"/);
    assert.equal(l.accepted.length, 0, 'the channel code never saw the connection');
    await l.listener.close();

    // The primary dials an intruder listening where its secondary should be.
    const intruder = await listenAs('intruder', { peer: 'primary' });
    await assert.rejects(dialAs('primary', intruder.port), refusal('ERR_TRANSPORT_PEER_MISMATCH', /names "intruder", not the configured peer "secondary"/));
    await intruder.listener.close();
  });

  test('a dialer with no certificate is refused', async () => {
    const { dir } = await testCerts();
    const l = await listenAs('secondary');
    const closed = await new Promise<boolean>((resolve) => {
      const s = tlsConnect({ host: '127.0.0.1', port: l.port, ca: readFileSync(tlsPaths(dir, 'primary').ca), minVersion: 'TLSv1.3', checkServerIdentity: () => undefined });
      s.on('error', () => {});
      s.on('data', () => resolve(false));
      s.on('close', () => resolve(true));
    });
    assert.ok(closed, 'closed without a byte');
    await until(() => refusals(l, 'ERR_TRANSPORT_TLS_REFUSED').length === 1, 'the refusal');
    assert.match(String(refusals(l, 'ERR_TRANSPORT_TLS_REFUSED')[0].msg), /it presented no certificate/);
    assert.equal(l.accepted.length, 0);
    await l.listener.close();
  });

  test('TLS 1.2 is refused both ways', async () => {
    const { dir } = await testCerts();
    const files = (name: TestNode) => {
      const p = tlsPaths(dir, name);
      return { ca: readFileSync(p.ca), cert: readFileSync(p.cert), key: readFileSync(p.key) };
    };
    // A TLS 1.2 dialer with a good certificate.
    const l = await listenAs('secondary');
    const failed = await new Promise<Error>((resolve) => {
      const s = tlsConnect({ host: '127.0.0.1', port: l.port, ...files('primary'), maxVersion: 'TLSv1.2', checkServerIdentity: () => undefined });
      s.on('error', resolve);
      s.on('secureConnect', () => resolve(new Error('a TLS 1.2 handshake succeeded')));
    });
    assert.match(failed.message, /protocol version|unsupported protocol/i);
    await until(() => refusals(l, 'ERR_TRANSPORT_TLS_REFUSED').length === 1, 'the refusal');
    assert.match(String(refusals(l, 'ERR_TRANSPORT_TLS_REFUSED')[0].msg), /offered no TLS version Tandem accepts \(TLSv1\.3 only\)/);
    assert.equal(l.accepted.length, 0);
    await l.listener.close();

    // A TLS 1.2 listener with a good certificate.
    const old = tlsServer({ ...files('secondary'), maxVersion: 'TLSv1.2', requestCert: true }, () => assert.fail('a TLS 1.2 handshake succeeded'));
    old.on('tlsClientError', () => {});
    await new Promise<void>((r) => old.listen(0, '127.0.0.1', r));
    await assert.rejects(dialAs('primary', (old.address() as AddressInfo).port), refusal('ERR_TRANSPORT_TLS_REFUSED', /refused: it offered no TLS version Tandem accepts \(TLSv1\.3 only\)/));
    await new Promise((r) => old.close(r));
  });

  test('plain TCP, silence and a trickled handshake are dropped within the handshake timeout; none reaches the channel', async () => {
    const HANDSHAKE_MS = 300;
    const l = await listenAs('secondary', { handshakeTimeoutMs: HANDSHAKE_MS });
    // What a plain-TCP primary would send first: a libxl stream header.
    const plainMs = await rawClient(l.port, Buffer.from('LibxlFmt\0\0\0\x02\0\0\0\0'));
    assert.ok(plainMs < HANDSHAKE_MS, `plain TCP dropped at once, not after ${plainMs.toFixed(0)} ms`);
    const silentMs = await rawClient(l.port);
    assert.ok(silentMs >= HANDSHAKE_MS - 20 && silentMs < HANDSHAKE_MS + 1000, `silence dropped after ${silentMs.toFixed(0)} ms (timeout ${HANDSHAKE_MS} ms)`);
    // A TLS record header announcing a large ClientHello, then a byte every 50 ms: the bound is not reset by activity.
    const trickled = new Promise<number>((resolve) => {
      const s = netConnect({ port: l.port, host: '127.0.0.1' });
      let t0 = 0;
      let timer: NodeJS.Timeout | undefined;
      s.on('connect', () => {
        t0 = performance.now();
        s.write(Buffer.from([0x16, 0x03, 0x01, 0x3f, 0xff]));
        timer = setInterval(() => s.write(Buffer.of(1)), 50);
      });
      s.on('error', () => {});
      s.on('close', () => {
        clearInterval(timer);
        resolve(performance.now() - t0);
      });
    });
    const trickledMs = await trickled;
    assert.ok(trickledMs < HANDSHAKE_MS + 1000, `a trickled handshake held ${trickledMs.toFixed(0)} ms`);
    assert.equal(l.accepted.length, 0, 'the channel code never saw any of them');
    await until(() => refusals(l, 'ERR_TRANSPORT_TLS_REFUSED').length >= 2, 'the refusals');
    const messages = refusals(l, 'ERR_TRANSPORT_TLS_REFUSED').map((line) => String(line.msg));
    assert.ok(messages.some((m) => /it does not speak TLS \(plain TCP\?\)/.test(m)), messages.join('\n'));
    assert.ok(messages.some((m) => new RegExp(`no TLS handshake within ${HANDSHAKE_MS} ms`).test(m)), messages.join('\n'));
    await l.listener.close();
  });

  test('the same refusal from the same host is logged once a while, then with a count', async () => {
    const l = await listenAs('secondary');
    for (let i = 0; i < 5; i++) await rawClient(l.port, Buffer.from('GET / HTTP/1.1\r\n\r\n'));
    await until(() => refusals(l, 'ERR_TRANSPORT_TLS_REFUSED').length === 1, 'the first refusal');
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(refusals(l, 'ERR_TRANSPORT_TLS_REFUSED').length, 1, 'four more of the same stay quiet');
    await l.listener.close();
  });

  test('a dial is bounded by its timeout when the listener never completes the handshake', async () => {
    const silent = netServer(() => {});
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const t0 = performance.now();
    await assert.rejects(
      dialAs('primary', (silent.address() as AddressInfo).port, 'secondary', undefined, 300),
      refusal('ERR_TRANSPORT_CONNECT_TIMEOUT', /connecting to the test listener at 127\.0\.0\.1:\d+ timed out after 300 ms \(in the TLS handshake\)/),
    );
    assert.ok(performance.now() - t0 < 1300);
    silent.close();
    await assert.rejects(dialAs('primary', (silent.address() as AddressInfo | null)?.port ?? 1), refusal('ERR_TRANSPORT_CONNECT_FAILED', /cannot connect to the test listener/));
  });

  test('close() drops connections still in their handshake at once', async () => {
    const l = await listenAs('secondary', { handshakeTimeoutMs: 30_000 });
    const dropped = rawClient(l.port);
    await new Promise((r) => setTimeout(r, 50));
    const t0 = performance.now();
    await l.listener.close();
    assert.ok(performance.now() - t0 < 1000, 'close() did not wait for the handshake timeout');
    assert.ok((await dropped) < 5000);
  });

  test('a flood of silent connections holds at most MAX_HANDSHAKES; the oldest go first, and the real peer still gets in', async () => {
    // A handshake timeout far beyond the test: only the bound can close these.
    const l = await listenAs('secondary', { handshakeTimeoutMs: 30_000 });
    const extra = 5;
    const t0 = performance.now();
    const flood = Array.from({ length: MAX_HANDSHAKES + extra }, () => rawClient(l.port));
    const closedMs = await Promise.all(flood.slice(0, extra));
    assert.ok(performance.now() - t0 < 5000, `the ${extra} oldest were closed for newer ones (${closedMs.map((ms) => ms.toFixed(0)).join(', ')} ms)`);
    // The primary arrives into a full set of silent handshakes: it pushes out the oldest and is accepted.
    const stream = await dialAs('primary', l.port);
    const greeting = 'hello from secondary\n';
    assert.equal((await readBytes(stream, greeting.length)).toString(), greeting);
    assert.equal(l.accepted.length, 1, 'only the primary reached the channel');
    await until(() => refusals(l, 'ERR_TRANSPORT_TLS_REFUSED').length >= 1, 'the refusal');
    assert.match(String(refusals(l, 'ERR_TRANSPORT_TLS_REFUSED')[0].msg), new RegExp(`no TLS handshake before ${MAX_HANDSHAKES} newer connections arrived`));
    stream.destroy();
    await l.listener.close();
    await Promise.all(flood);
  });

  test('credentials whose key does not belong to the certificate are refused when the transport is made', async () => {
    const { dir } = await testCerts();
    const a = tlsPaths(dir, 'primary');
    const b = tlsPaths(dir, 'secondary');
    assert.throws(
      (): Transport => tlsTransport({ ca: readFileSync(a.ca), cert: readFileSync(a.cert), key: readFileSync(b.key), name: 'primary', peer: 'secondary', handshakeTimeoutMs: 1000 }),
      (e: unknown) => e instanceof TransportError && e.code === 'ERR_TRANSPORT_TLS_REFUSED' && /TLS credentials of node "primary" are unusable/.test(e.message) && !e.message.includes('PRIVATE KEY'),
    );
  });
});
