/**
 * The far end of the stream benchmark, run in a worker thread so that, as
 * between two hosts, sender and receiver do not share one event loop:
 * either a real secondary (replica of `pages` pages), over plain TCP or,
 * given credentials, mutual TLS, or a raw sink that reads a u64 byte count
 * and then that many bytes, and answers one byte.
 */
import { once } from 'node:events';
import { createServer, type AddressInfo } from 'node:net';
import { parentPort, workerData } from 'node:worker_threads';
import { createBinding } from '../domain/bindings.js';
import { SecondaryServer } from '../secondary/server.js';
import { tcpTransport } from '../transport/tcp.js';
import { tlsTransport } from '../transport/tls.js';
import { createLogger } from '../util/logger.js';

export interface StreamPeerData {
  role: 'secondary' | 'sink';
  /** The replica's RAM. */
  mib: number;
  /** The secondary's mutual-TLS credentials (PEM); plain TCP without. */
  tls?: { ca: Uint8Array; cert: Uint8Array; key: Uint8Array; name: string; peer: string };
}

async function main(data: StreamPeerData): Promise<number> {
  if (data.role === 'secondary') {
    const logger = createLogger('silent');
    const replica = createBinding({ type: 'sim', memoryMib: data.mib, vcpus: 1, diskMib: 1 }).replica(logger);
    const t = data.tls;
    // Buffers arrive as plain Uint8Arrays from the other thread.
    const transport = t === undefined ? tcpTransport : tlsTransport({ ...t, ca: Buffer.from(t.ca), cert: Buffer.from(t.cert), key: Buffer.from(t.key), handshakeTimeoutMs: 5000 });
    const server = new SecondaryServer({ replica, transport, listen: { host: '127.0.0.1', port: 0 }, logger });
    return (await server.start()).port;
  }
  const server = createServer((s) => {
    let want = -1;
    let got = 0;
    let head = Buffer.alloc(0);
    s.on('data', (d: Buffer) => {
      if (want < 0) {
        head = Buffer.concat([head, d]);
        if (head.length < 8) return;
        want = Number(head.readBigUInt64LE(0));
        got = head.length - 8;
      } else got += d.length;
      if (got >= want) s.write(Buffer.of(1));
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return (server.address() as AddressInfo).port;
}

if (parentPort !== null) {
  const port = parentPort;
  main(workerData as StreamPeerData).then(
    (p) => port.postMessage({ port: p }),
    (err: unknown) => port.postMessage({ error: String(err) }),
  );
}
