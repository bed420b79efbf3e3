/**
 * The service front: clients reach the guest's RESP service through Tandem,
 * on the service address, so that in Remus mode every reply passes the
 * output buffer and is released only once the secondary holds the
 * checkpoint that produced it.
 *
 * Each client connection gets its own connection to the guest's internal
 * address. Client -> guest bytes are forwarded at once (requests are input:
 * the guest may run them before they are checkpointed, as any input a
 * replica would lose and the client would resend); guest -> client bytes go
 * through the OutputBuffer. Both directions are back-pressured: a slow guest
 * pauses the client's reads, a slow client or held output at its bound
 * pauses the guest's reads.
 *
 * Closing keeps commit order: when the guest closes, the client is closed
 * only after the output held for it has been released; when the client
 * goes, the guest connection is closed only after the client's held output
 * has been released (or dropped per the teardown policy), so the guest does
 * not see the hang-up of a client whose replies are still pending commit.
 */
import net, { type AddressInfo } from 'node:net';

import type { Logger } from '../util/logger.js';
import { FrontError, FrontErrorCodes } from './errors.js';
import type { OutputBuffer, OutputConnection, OutputMode } from './output-buffer.js';
import { listen } from '../util/net.js';

export interface ServiceFrontOptions {
  buffer: OutputBuffer;
  /** The guest's internal RESP address (the KvServer's). */
  guest: { host: string; port: number };
  /** Service address to bind (default 127.0.0.1, port 6379; 0 for an ephemeral one). */
  host?: string;
  port?: number;
  /** Client connections at once; one more is told so and closed, as Redis's maxclients. */
  maxConnections?: number;
  /** Time a closing socket is given to flush before it is cut. */
  closeGraceMs?: number;
  logger?: Logger;
}

export interface ServiceFrontMetrics {
  connections: number;
  accepted: number;
  rejectedConnections: number;
  guestConnectFailures: number;
}

export const DEFAULT_FRONT_MAX_CONNECTIONS = 1000;
const DEFAULT_CLOSE_GRACE_MS = 2000;

class Proxied {
  /** Reasons the guest side's reads are paused: held output at its bound, a slow client. */
  heldFull = false;
  clientFull = false;
  guestReadingPaused = false;
  clientGone = false;
  out: OutputConnection | undefined = undefined;

  constructor(
    readonly client: net.Socket,
    readonly guest: net.Socket,
    readonly peer: string,
  ) {}

  updateGuestReading(): void {
    const stop = this.heldFull || this.clientFull;
    if (stop && !this.guestReadingPaused) {
      this.guestReadingPaused = true;
      this.guest.pause();
    } else if (!stop && this.guestReadingPaused) {
      this.guestReadingPaused = false;
      this.guest.resume();
    }
  }
}

export class ServiceFront {
  private readonly options: ServiceFrontOptions;
  private server: net.Server | undefined = undefined;
  private readonly connections = new Set<Proxied>();
  private readonly counters = { accepted: 0, rejectedConnections: 0, guestConnectFailures: 0 };

  constructor(options: ServiceFrontOptions) {
    this.options = options;
  }

  private get maxConnections(): number {
    return this.options.maxConnections ?? DEFAULT_FRONT_MAX_CONNECTIONS;
  }

  private get graceMs(): number {
    return this.options.closeGraceMs ?? DEFAULT_CLOSE_GRACE_MS;
  }

  /** Output commit on ('remus') or off ('none': releases everything held). */
  setMode(mode: OutputMode): void {
    this.options.buffer.setMode(mode);
  }

  async start(): Promise<AddressInfo> {
    if (this.server !== undefined) throw new FrontError(FrontErrorCodes.FRONT_BAD_OPTIONS, 'service front already started');
    const max = this.maxConnections;
    if (!Number.isInteger(max) || max < 1) throw new FrontError(FrontErrorCodes.FRONT_BAD_OPTIONS, `maxConnections must be a positive integer, got ${max}`);
    this.options.buffer.validate();
    const { host = '127.0.0.1', port = 6379 } = this.options;
    // Half-open allowed: a client that shuts down its sending side still gets its replies.
    const server = net.createServer({ allowHalfOpen: true }, (socket) => this.accept(socket));
    this.server = server;
    try {
      await listen(server, port, host);
    } catch (err) {
      this.server = undefined;
      throw new FrontError(FrontErrorCodes.FRONT_LISTEN_FAILED, `service front cannot listen on ${host}:${port}: ${(err as Error).message}`, { cause: err });
    }
    server.on('error', (err) => this.options.logger?.error({ err }, 'service front error'));
    const address = server.address() as AddressInfo;
    this.options.logger?.info({ host: address.address, port: address.port, guest: `${this.options.guest.host}:${this.options.guest.port}` }, 'service front listening');
    return address;
  }

  /** Stops listening and cuts every connection (held output of them is not released). */
  async stop(): Promise<void> {
    const server = this.server;
    if (server === undefined) return;
    this.server = undefined;
    for (const p of this.connections) {
      p.client.destroy();
      p.guest.destroy();
    }
    this.connections.clear();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  metrics(): ServiceFrontMetrics {
    return { connections: this.connections.size, ...this.counters };
  }

  private accept(client: net.Socket): void {
    const { logger } = this.options;
    const peer = `${client.remoteAddress}:${client.remotePort}`;
    client.on('error', (err) => logger?.debug({ err, peer }, 'client connection error'));
    if (this.connections.size >= this.maxConnections) {
      this.counters.rejectedConnections++;
      logger?.warn({ peer, max: this.maxConnections }, 'connection refused: too many clients');
      // Not guest output: nothing to commit.
      client.end('-ERR max number of clients reached\r\n');
      setTimeout(() => client.destroy(), this.graceMs).unref();
      return;
    }
    this.counters.accepted++;
    client.setNoDelay(true);
    const guest = net.connect({ host: this.options.guest.host, port: this.options.guest.port });
    guest.setNoDelay(true);
    const p = new Proxied(client, guest, peer);
    this.connections.add(p);

    let guestConnected = false;
    guest.once('connect', () => (guestConnected = true));
    guest.on('error', (err) => {
      if (!guestConnected) {
        this.counters.guestConnectFailures++;
        logger?.error({ err, peer, guest: `${this.options.guest.host}:${this.options.guest.port}` }, 'cannot reach the guest service: client connection closed');
        client.destroy();
      } else {
        logger?.debug({ err, peer }, 'guest connection error');
      }
    });

    p.out = this.options.buffer.attach({
      deliver: (bytes) => {
        if (p.clientGone || client.destroyed || !client.writable) return;
        if (!client.write(bytes) && !p.clientFull) {
          p.clientFull = true;
          p.updateGuestReading();
        }
      },
      pauseSource: () => {
        p.heldFull = true;
        p.updateGuestReading();
      },
      resumeSource: () => {
        p.heldFull = false;
        p.updateGuestReading();
      },
      finish: () => this.finish(p),
      abort: (reason) => {
        logger?.warn({ peer, code: reason instanceof FrontError ? reason.code : undefined }, reason.message);
        client.destroy();
        guest.destroy();
      },
    });

    // Client -> guest: at once, paused while the guest side is backed up.
    client.on('data', (d: Buffer) => {
      if (!guest.write(d)) client.pause();
    });
    guest.on('drain', () => client.resume());
    client.on('drain', () => {
      p.clientFull = false;
      p.updateGuestReading();
    });
    // Guest -> client: through the output buffer.
    guest.on('data', (d: Buffer) => p.out!.write(d));

    // The client stopped sending: pass the half-close on once its held output is released, so
    // the guest never sees the hang-up of a client whose replies still wait for a commit.
    client.on('end', () => p.out!.whenReleased(() => guest.end()));
    client.on('close', () => {
      p.clientGone = true;
      // The guest connection closes once this client's held output is released (finish()).
      p.out!.close();
    });
    guest.on('close', () => p.out!.close());
  }

  /** Everything held for this connection has been released: close both sides. */
  private finish(p: Proxied): void {
    this.connections.delete(p);
    if (!p.client.destroyed) {
      p.client.end();
      setTimeout(() => p.client.destroy(), this.graceMs).unref();
    }
    if (!p.guest.destroyed) {
      p.guest.end();
      setTimeout(() => p.guest.destroy(), this.graceMs).unref();
    }
  }
}
