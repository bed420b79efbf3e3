/**
 * A TCP relay that records what crosses it: put between a client and a
 * server, it keeps every byte each way, so a test can hand the bytes a real
 * session exchanged to another reader (Xen's verifier). One connection at a
 * time; a new one closes the relay's previous pair.
 */
import net, { type AddressInfo } from 'node:net';

export class TcpTap {
  /** Bytes from the client to the server, per connection, in order. */
  readonly forward: Buffer[][] = [];
  /** Bytes from the server to the client, per connection. */
  readonly backward: Buffer[][] = [];
  private server: net.Server | undefined;
  private readonly open = new Set<net.Socket>();

  constructor(private readonly target: { host: string; port: number }) {}

  async start(): Promise<number> {
    const server = net.createServer((client) => {
      const fwd: Buffer[] = [];
      const back: Buffer[] = [];
      this.forward.push(fwd);
      this.backward.push(back);
      const upstream = net.connect(this.target);
      for (const s of [client, upstream]) {
        this.open.add(s);
        s.setNoDelay(true);
        s.on('close', () => this.open.delete(s));
        s.on('error', () => {});
      }
      client.on('data', (d: Buffer) => {
        fwd.push(Buffer.from(d));
        upstream.write(d);
      });
      upstream.on('data', (d: Buffer) => {
        back.push(Buffer.from(d));
        client.write(d);
      });
      // Half-closes travel through, so a clean END and its last ack are not cut short.
      client.on('end', () => upstream.end());
      upstream.on('end', () => client.end());
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    this.server = server;
    return (server.address() as AddressInfo).port;
  }

  async stop(): Promise<void> {
    for (const s of this.open) s.destroy();
    const server = this.server;
    this.server = undefined;
    if (server !== undefined) await new Promise((resolve) => server.close(resolve));
  }
}
