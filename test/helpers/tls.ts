/**
 * Certificates for the tests, made once per test file with the library
 * `tandem certs init` uses: a CA with nodes `primary`, `secondary` and a
 * third, `intruder` (same CA, another name), and a second CA (`other`) whose
 * nodes have the same names. The nodes a test spawns get them with
 * `tlsArgs(name)`; in-process peers get `tlsFor(name)`. `attack()` is a
 * peer without the right credentials that speaks a channel's protocol
 * anyway.
 */
import { readFileSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { after } from 'node:test';
import { connect as tlsConnect } from 'node:tls';
import { certsInit, tlsPaths } from '../../src/transport/certs.js';
import { loadTlsCredentials, type LoadedCredentials } from '../../src/transport/tls-files.js';
import { tlsTransport, type TlsTransportOptions } from '../../src/transport/tls.js';
import type { Transport } from '../../src/transport/transport.js';
import { tempDir } from './cli.js';

export const NODES = ['primary', 'secondary', 'intruder'] as const;
export type TestNode = (typeof NODES)[number];

export interface TestCerts {
  /** The CA everyone trusts. */
  dir: string;
  /** Another CA, with nodes of the same names. */
  other: string;
}

// Registered when a test file loads this module, so the hook is the file's, not its first test's.
const tmp = tempDir('tandem-tls-');
after(() => tmp.cleanup());
let made: Promise<TestCerts> | undefined;

/** This test file's certificates (made on first use, removed after the file's tests). */
export function testCerts(): Promise<TestCerts> {
  if (made === undefined) {
    made = (async () => {
      await certsInit(tmp.path('ca'), { nodes: NODES, days: 60 });
      await certsInit(tmp.path('other'), { nodes: NODES, days: 60 });
      return { dir: tmp.path('ca'), other: tmp.path('other') };
    })();
  }
  return made;
}

/** The other one of the pair. */
export const peerOf = (name: TestNode): TestNode => (name === 'primary' ? 'secondary' : 'primary');

/** Flags for a `tandem primary` or `tandem secondary` running as `name` of the trusted CA. */
export async function tlsArgs(name: TestNode, peer: TestNode = peerOf(name)): Promise<string[]> {
  return ['--tls', (await testCerts()).dir, '--name', name, '--peer', peer];
}

/** `name`'s checked credentials from a certificate directory (the trusted CA's unless `dir`). */
export async function credentialsOf(name: TestNode, peer: TestNode = peerOf(name), dir?: string): Promise<LoadedCredentials> {
  const at = dir ?? (await testCerts()).dir;
  return loadTlsCredentials({ dir: at, name, peer, handshakeTimeoutMs: 2000, insecure: false, ca: undefined, cert: undefined, key: undefined }, () => {});
}

/** A TLS transport as node `name`, accepting `peer`. */
export async function tlsFor(name: TestNode, peer: TestNode = peerOf(name), options: Partial<TlsTransportOptions> & { dir?: string } = {}): Promise<Transport> {
  const { dir, ...rest } = options;
  return tlsTransport({ ...(await credentialsOf(name, peer, dir)), handshakeTimeoutMs: 2000, ...rest });
}

/** A peer without the right credentials: plain TCP, the same CA's certificate for another node, or another CA's for the right name. */
export type Attacker = 'plain TCP' | 'same CA, another node' | 'another CA, the right name';
export const ATTACKERS: readonly Attacker[] = ['plain TCP', 'same CA, another node', 'another CA, the right name'];

/**
 * Connects to 127.0.0.1:`port` as `who`, sends `bytes` as early as it can
 * (on connecting; over TLS the moment its own side of the handshake is done,
 * which in TLS 1.3 is before the listener has judged its certificate), again
 * every 20 ms, and resolves once the listener closed the connection or after
 * `maxMs`: how many times the bytes went out, and whether the listener closed.
 */
export async function attack(port: number, who: Attacker, bytes: Buffer, maxMs = 3000): Promise<{ sent: number; closedByListener: boolean }> {
  const { dir, other } = await testCerts();
  const files = who === 'same CA, another node' ? tlsPaths(dir, 'intruder') : tlsPaths(other, 'primary');
  return new Promise((resolve) => {
    let sent = 0;
    let timer: NodeJS.Timeout | undefined;
    const send = (): void => {
      if (socket.destroyed) return;
      socket.write(bytes);
      sent++;
    };
    const start = (): void => {
      send();
      timer = setInterval(send, 20);
    };
    const socket =
      who === 'plain TCP'
        ? netConnect({ host: '127.0.0.1', port }, start)
        : tlsConnect(
            // The attacker does not care whom it talks to: it trusts anything.
            { host: '127.0.0.1', port, cert: readFileSync(files.cert), key: readFileSync(files.key), minVersion: 'TLSv1.3', rejectUnauthorized: false },
            start,
          );
    socket.on('error', () => {});
    socket.on('data', () => {});
    const give = setTimeout(() => finish(false), maxMs);
    socket.once('close', () => finish(true));
    function finish(closedByListener: boolean): void {
      clearTimeout(give);
      clearInterval(timer);
      socket.destroy();
      resolve({ sent, closedByListener });
    }
  });
}
