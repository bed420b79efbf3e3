/**
 * The far end of the stream benchmark, run in a worker thread so that, as
 * between two hosts, sender and receiver do not share one event loop:
 * either a real secondary (replica of `pages` pages), or a raw sink that
 * reads a u64 byte count and then that many bytes, and answers one byte.
 */
import { once } from 'node:events';
import { createServer, type AddressInfo } from 'node:net';
import { parentPort, workerData } from 'node:worker_threads';
import { createBinding } from '../domain/bindings.js';
import { SecondaryServer } from '../secondary/server.js';
import { tcpTransport } from '../transport/tcp.js';
import { createLogger } from '../util/logger.js';

export interface StreamPeerData {
  role: 'secondary' | 'sink';
  /** The replica's RAM. */
  mib: number;
}

async function main(data: StreamPeerData): Promise<number> {
  if (data.role === 'secondary') {
    const logger = createLogger('silent');
    const replica = createBinding({ type: 'sim', memoryMib: data.mib, vcpus: 1, diskMib: 1 }).replica(logger);
    const server = new SecondaryServer({ replica, transport: tcpTransport, listen: { host: '127.0.0.1', port: 0 }, logger });
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
