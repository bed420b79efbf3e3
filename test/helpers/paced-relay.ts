/**
 * A TCP relay on loopback whose pace a test sets: while paced, bytes from the
 * connecting side to the target go through at a set rate, the connecting
 * side's socket paused meanwhile, so its sender feels a slow link (TCP
 * backpressure and all) rather than a buffer somewhere that takes everything
 * at once. The other direction is never held. Unpaced, it relays as fast as
 * the target takes the bytes. A target that is down closes the connection;
 * to be refused as a stopped target would refuse, stop() the relay and
 * start() it again (on the same port) with the target.
 */
import { connect, createServer, type Server, type Socket } from 'node:net';
import type { Address } from '../../src/util/address.js';

/** Paced bytes go in slices this large, each after its share of a second. */
const SLICE = 16 * 1024;

export class PacedRelay {
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  private bytesPerSecond: number | undefined;
  address: Address = { host: '127.0.0.1', port: 0 };

  constructor(private readonly target: Address) {}

  /** Listens: on a free port the first time, on the same one again after stop(). */
  async start(): Promise<Address> {
    const server = createServer((client) => this.relay(client));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.address.port, '127.0.0.1', resolve);
    });
    this.address = { host: '127.0.0.1', port: (server.address() as { port: number }).port };
    return this.address;
  }

  /** Bytes per second towards the target from now on, for open connections too; undefined: unpaced. */
  pace(bytesPerSecond: number | undefined): void {
    if (bytesPerSecond !== undefined && !(bytesPerSecond > 0)) throw new RangeError(`a pace is a positive number of bytes per second, not ${bytesPerSecond}`);
    this.bytesPerSecond = bytesPerSecond;
  }

  /** Closes the relay and every connection through it. */
  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
    const server = this.server;
    this.server = undefined;
    if (server !== undefined) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private relay(client: Socket): void {
    const upstream = connect(this.target.port, this.target.host);
    this.sockets.add(client).add(upstream);
    const close = (): void => {
      this.sockets.delete(client);
      this.sockets.delete(upstream);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', close);
    upstream.on('error', close).on('close', close);
    upstream.on('data', (d: Buffer) => {
      if (!client.write(d)) {
        upstream.pause();
        client.once('drain', () => upstream.resume());
      }
    });
    upstream.on('end', () => client.end());
    // One chunk in flight at a time (the client is paused meanwhile); its end waits for it.
    let inFlight = false;
    let ended = false;
    client.on('data', (d: Buffer) => {
      inFlight = true;
      client.pause();
      this.forward(d, upstream, () => {
        inFlight = false;
        if (ended) upstream.end();
        else client.resume();
      });
    });
    client.on('end', () => {
      ended = true;
      if (!inFlight) upstream.end();
    });
  }

  /** Writes `d` upstream, sliced and spaced out while paced, then calls `done` once upstream takes more. */
  private forward(d: Buffer, upstream: Socket, done: () => void): void {
    if (upstream.destroyed) return;
    const rate = this.bytesPerSecond;
    if (rate === undefined) {
      if (upstream.write(d)) done();
      else upstream.once('drain', done);
      return;
    }
    const slice = d.subarray(0, SLICE);
    const rest = d.subarray(slice.length);
    setTimeout(
      () => {
        if (upstream.destroyed) return;
        upstream.write(slice);
        if (rest.length > 0) this.forward(rest, upstream, done);
        else done();
      },
      (slice.length / rate) * 1000,
    );
  }
}
