/**
 * The demo's stand-in for a moving service IP: one listening address whose
 * connections are forwarded to whichever node currently serves the guest.
 * Switching the target affects new connections; existing ones end with the
 * node they were made to (as TCP connections to a failed host do).
 */
import { createServer, connect, type AddressInfo, type Server, type Socket } from 'node:net';
import type { Address } from '../util/address.js';
import { listen } from '../util/net.js';

export class ServiceIp {
  private server: Server | undefined;
  private target: Address | undefined;
  private readonly sockets = new Set<Socket>();

  constructor(
    private readonly listenAt: Address,
    private readonly maxConnections = 1024,
  ) {}

  /** Where new connections go; undefined refuses them (no node serves). */
  moveTo(target: Address | undefined): void {
    this.target = target;
  }

  async start(): Promise<AddressInfo> {
    const server = createServer((client) => this.forward(client));
    server.maxConnections = this.maxConnections;
    await listen(server, this.listenAt.port, this.listenAt.host);
    this.server = server;
    return server.address() as AddressInfo;
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    const server = this.server;
    this.server = undefined;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private forward(client: Socket): void {
    const target = this.target;
    if (target === undefined) {
      client.destroy();
      return;
    }
    const upstream = connect({ host: target.host, port: target.port, noDelay: true });
    client.setNoDelay(true);
    this.sockets.add(client);
    this.sockets.add(upstream);
    const end = (): void => {
      client.destroy();
      upstream.destroy();
      this.sockets.delete(client);
      this.sockets.delete(upstream);
    };
    // pipe() carries backpressure both ways.
    client.pipe(upstream);
    upstream.pipe(client);
    client.on('error', end);
    upstream.on('error', end);
    client.on('close', end);
    upstream.on('close', end);
  }
}
