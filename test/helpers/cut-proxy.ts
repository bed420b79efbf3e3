/**
 * A TCP relay on loopback that a test can cut: while cut, bytes in either
 * direction are dropped on the floor (connections stay open, as through a
 * partition that drops packets), so a peer's requests time out rather than
 * fail fast. heal() lets bytes through again on new connections; the ones
 * that were open when it was cut stay dead, as TCP connections across a long
 * partition do.
 */
import { connect, createServer, type Server, type Socket } from 'node:net';
import type { Address } from '../../src/util/address.js';

export class CutProxy {
  private server: Server | undefined;
  private readonly pairs = new Set<[Socket, Socket]>();
  private cutNow = false;
  address: Address = { host: '127.0.0.1', port: 0 };

  constructor(private readonly target: Address) {}

  async start(): Promise<Address> {
    const server = createServer((client) => this.relay(client));
    this.server = server;
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    this.address = { host: '127.0.0.1', port: (server.address() as { port: number }).port };
    return this.address;
  }

  cut(): void {
    this.cutNow = true;
  }

  heal(): void {
    this.cutNow = false;
    for (const [a, b] of this.pairs) {
      a.destroy();
      b.destroy();
    }
    this.pairs.clear();
  }

  async stop(): Promise<void> {
    for (const [a, b] of this.pairs) {
      a.destroy();
      b.destroy();
    }
    this.pairs.clear();
    const server = this.server;
    this.server = undefined;
    if (server !== undefined) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private relay(client: Socket): void {
    const upstream = connect(this.target.port, this.target.host);
    const pair: [Socket, Socket] = [client, upstream];
    this.pairs.add(pair);
    const forward = (from: Socket, to: Socket): void => {
      from.on('data', (d: Buffer) => {
        if (!this.cutNow) to.write(d);
      });
    };
    forward(client, upstream);
    forward(upstream, client);
    const close = (): void => {
      this.pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', close).on('close', close);
    upstream.on('error', close).on('close', close);
  }
}
