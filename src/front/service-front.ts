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
 *
 * Slots: at most maxConnections clients; an idle client gives its slot to a
 * newcomer, or times out (client-limits.ts says when, and what idle means).
 * Here a client is busy while output of it is held for a commit, released
 * but not yet taken by its socket, or a request of it not yet taken by the
 * guest's socket. A newcomer that took an evicted client's slot opens its
 * guest connection once the guest has closed the evicted one, so a guest
 * whose own limit is max_clients never refuses it.
 */
import net, { type AddressInfo } from 'node:net';

import { BurstLog } from '../util/burst-log.js';
import type { Logger } from '../util/logger.js';
import { FrontError, FrontErrorCodes } from './errors.js';
import { clientLimits, idleSweepMs, summarizeLimitEvents, type ClientLimitOptions, type ClientLimits, type FrontClientStats, type LimitEvent } from './client-limits.js';
import { IdleClients } from './idle-clients.js';
import type { OutputBuffer, OutputConnection, OutputMode } from './output-buffer.js';
import { listen } from '../util/net.js';

export interface ServiceFrontOptions extends ClientLimitOptions {
  buffer: OutputBuffer;
  /** The guest's internal RESP address (the KvServer's). */
  guest: { host: string; port: number };
  /** Service address to bind (default 127.0.0.1, port 6379; 0 for an ephemeral one). */
  host?: string;
  port?: number;
  /** Time a closing socket is given to flush before it is cut. */
  closeGraceMs?: number;
  /** Monotonic clock in ms, for idle times; injected for tests. */
  now?: () => number;
  logger?: Logger;
}

export interface ServiceFrontMetrics {
  connections: number;
  accepted: number;
  rejectedConnections: number;
  /** Idle clients closed to admit a newcomer at the limit. */
  evictedIdle: number;
  /** Clients closed by the idle timeout. */
  idleTimeouts: number;
  guestConnectFailures: number;
  /** Clients not taking their replies: the guest side of each is paused until they do. */
  slowClients: number;
}

const DEFAULT_CLOSE_GRACE_MS = 2000;
const MAX_CLOSE_GRACE_MS = 60_000;

class Proxied {
  /** Reasons the guest side's reads are paused: held output at its bound, a slow client. */
  heldFull = false;
  clientFull = false;
  guestReadingPaused = false;
  clientGone = false;
  /** Both sides are closing (finish()): bytes still arriving from the client are not the guest's any more. */
  finished = false;
  out: OutputConnection | undefined = undefined;
  /** Its own connection to the guest; undefined while it waits for an evicted client's to close. */
  guest: net.Socket | undefined = undefined;

  constructor(
    readonly client: net.Socket,
    readonly peer: string,
  ) {}

  busy(): boolean {
    // Not through to the guest yet: its requests are on their way.
    if (this.guest === undefined || this.out === undefined) return true;
    return this.out.heldChunks > 0 || this.client.writableLength > 0 || this.guest.writableLength > 0 || this.clientFull;
  }

  updateGuestReading(): void {
    const stop = this.heldFull || this.clientFull;
    if (stop && !this.guestReadingPaused) {
      this.guestReadingPaused = true;
      this.guest?.pause();
    } else if (!stop && this.guestReadingPaused) {
      this.guestReadingPaused = false;
      this.guest?.resume();
    }
  }
}

export class ServiceFront {
  private readonly options: ServiceFrontOptions;
  private server: net.Server | undefined = undefined;
  private readonly connections = new Set<Proxied>();
  private readonly idle = new IdleClients<Proxied>();
  private limits: ClientLimits | undefined = undefined;
  private limitLog: BurstLog<LimitEvent> | undefined = undefined;
  private sweeper: NodeJS.Timeout | undefined = undefined;
  private readonly counters = { accepted: 0, rejectedConnections: 0, evictedIdle: 0, idleTimeouts: 0, guestConnectFailures: 0 };

  constructor(options: ServiceFrontOptions) {
    this.options = options;
  }

  private get graceMs(): number {
    return this.options.closeGraceMs ?? DEFAULT_CLOSE_GRACE_MS;
  }

  private now(): number {
    return (this.options.now ?? (() => performance.now()))();
  }

  /** Output commit on ('remus') or off ('none': releases everything held). */
  setMode(mode: OutputMode): void {
    this.options.buffer.setMode(mode);
  }

  async start(): Promise<AddressInfo> {
    if (this.server !== undefined) throw new FrontError(FrontErrorCodes.FRONT_BAD_OPTIONS, 'service front already started');
    const limits = clientLimits(this.options, Number.MAX_SAFE_INTEGER);
    const grace = this.graceMs;
    if (!Number.isInteger(grace) || grace < 0 || grace > MAX_CLOSE_GRACE_MS) throw new FrontError(FrontErrorCodes.FRONT_BAD_OPTIONS, `closeGraceMs must be an integer in 0..${MAX_CLOSE_GRACE_MS}, got ${grace}`);
    this.options.buffer.validate();
    const { host = '127.0.0.1', port = 6379 } = this.options;
    // Half-open allowed: a client that shuts down its sending side still gets its replies.
    const server = net.createServer({ allowHalfOpen: true }, (socket) => this.accept(socket));
    this.server = server;
    this.limits = limits;
    try {
      await listen(server, port, host);
    } catch (err) {
      this.server = undefined;
      throw new FrontError(FrontErrorCodes.FRONT_LISTEN_FAILED, `service front cannot listen on ${host}:${port}: ${(err as Error).message}`, { cause: err });
    }
    this.limitLog = new BurstLog({ logger: this.options.logger, summarize: summarizeLimitEvents('service front', limits.maxConnections) });
    if (limits.idleTimeoutMs > 0) {
      this.sweeper = setInterval(() => this.sweep(), idleSweepMs(limits.idleTimeoutMs));
      this.sweeper.unref();
    }
    server.on('error', (err) => this.options.logger?.error({ err }, 'service front error'));
    const address = server.address() as AddressInfo;
    this.options.logger?.info(
      { host: address.address, port: address.port, guest: `${this.options.guest.host}:${this.options.guest.port}`, ...limits },
      'service front listening',
    );
    return address;
  }

  /** Stops listening and cuts every connection (held output of them is not released). */
  async stop(): Promise<void> {
    const server = this.server;
    if (server === undefined) return;
    this.server = undefined;
    // A connection the kernel accepted before the close but whose callback runs after it is refused, not served.
    this.limits = undefined;
    clearInterval(this.sweeper);
    this.sweeper = undefined;
    this.limitLog?.stop();
    for (const p of this.connections) {
      p.client.destroy();
      p.guest?.destroy();
    }
    this.connections.clear();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /**
   * Closes the clients idle past the idle timeout (a timer calls it; tests
   * with an injected clock call it themselves). Returns how many it closed.
   */
  sweep(): number {
    const limits = this.limits;
    if (limits === undefined || limits.idleTimeoutMs === 0) return 0;
    const now = this.now();
    const expired = this.idle.idleFor(now, limits.idleTimeoutMs);
    for (const p of expired) this.closeIdle(p, 'timed-out', now);
    return expired.length;
  }

  metrics(): ServiceFrontMetrics {
    let slowClients = 0;
    for (const p of this.connections) if (p.clientFull) slowClients++;
    return { connections: this.connections.size, ...this.counters, slowClients };
  }

  clientStats(): FrontClientStats {
    const c = this.counters;
    return {
      connections: this.connections.size,
      maxConnections: this.limits?.maxConnections ?? this.options.maxConnections ?? 0,
      accepted: c.accepted,
      refused: c.rejectedConnections,
      evicted: c.evictedIdle,
      timedOut: c.idleTimeouts,
    };
  }

  private accept(client: net.Socket): void {
    const peer = `${client.remoteAddress}:${client.remotePort}`;
    client.on('error', (err) => this.options.logger?.debug({ err, peer }, 'client connection error'));
    const limits = this.limits;
    if (limits === undefined) {
      client.destroy();
      return;
    }
    const victim = this.connections.size >= limits.maxConnections ? this.makeRoom(limits, peer) : null;
    if (victim === undefined) {
      this.counters.rejectedConnections++;
      this.limitLog?.note('refused', { peer, max: limits.maxConnections }, 'connection refused: too many clients, none idle long enough to give up its slot');
      // Not guest output: nothing to commit.
      client.end('-ERR max number of clients reached\r\n');
      setTimeout(() => client.destroy(), this.graceMs).unref();
      return;
    }
    this.counters.accepted++;
    client.setNoDelay(true);
    const p = new Proxied(client, peer);
    this.connections.add(p);
    this.idle.add(p, this.now());
    const previous = victim?.guest;
    if (previous === undefined || previous.destroyed) {
      this.connectGuest(p);
      return;
    }
    // The guest frees the evicted client's slot when it closes that connection (its FIN
    // answering ours): only then is there surely one for this client, even on a guest whose
    // own maxclients is the front's. Its requests wait in its socket meanwhile, within the
    // close grace (after which the evicted connection is cut).
    client.pause();
    previous.once('close', () => {
      if (!p.finished && !client.destroyed) this.connectGuest(p);
    });
    client.once('close', () => {
      if (p.guest !== undefined) return;
      p.finished = true;
      this.connections.delete(p);
      this.idle.remove(p);
    });
  }

  /** Opens the client's own connection to the guest and joins the two through the output buffer. */
  private connectGuest(p: Proxied): void {
    const { logger } = this.options;
    const { client, peer } = p;
    const guest = net.connect({ host: this.options.guest.host, port: this.options.guest.port });
    guest.setNoDelay(true);
    p.guest = guest;

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
        this.idle.touch(p, this.now());
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
        // Cut, not finished: the buffer will not call finish(), so the slot is given back here.
        p.finished = true;
        this.connections.delete(p);
        this.idle.remove(p);
        client.destroy();
        guest.destroy();
      },
    });

    // Client -> guest: at once, paused while the guest side is backed up.
    client.on('data', (d: Buffer) => {
      if (p.finished) return;
      this.idle.touch(p, this.now());
      if (!guest.write(d)) client.pause();
    });
    guest.on('drain', () => client.resume());
    client.on('drain', () => {
      p.clientFull = false;
      p.updateGuestReading();
    });
    // Guest -> client: through the output buffer.
    guest.on('data', (d: Buffer) => {
      this.idle.touch(p, this.now());
      p.out!.write(d);
    });

    // The client stopped sending: pass the half-close on once its held output is released, so
    // the guest never sees the hang-up of a client whose replies still wait for a commit.
    client.on('end', () => p.out!.whenReleased(() => guest.end()));
    client.on('close', () => {
      p.clientGone = true;
      // The guest connection closes once this client's held output is released (finish()).
      p.out!.close();
    });
    guest.on('close', () => p.out!.close());
    // Paused while it waited for an evicted client's guest connection to close.
    if (client.isPaused()) client.resume();
  }

  /** Everything held for this connection has been released: close both sides. */
  private finish(p: Proxied): void {
    p.finished = true;
    this.connections.delete(p);
    this.idle.remove(p);
    if (!p.client.destroyed) {
      p.client.end();
      setTimeout(() => p.client.destroy(), this.graceMs).unref();
    }
    const guest = p.guest;
    if (guest !== undefined && !guest.destroyed) {
      guest.end();
      setTimeout(() => guest.destroy(), this.graceMs).unref();
    }
  }

  /** At the limit: closes the client idle longest, if one has been idle long enough, and returns it. */
  private makeRoom(limits: ClientLimits, newcomer: string): Proxied | undefined {
    const now = this.now();
    const victim = this.idle.longestIdle(now, limits.evictIdleMs);
    if (victim !== undefined) this.closeIdle(victim, 'evicted', now, newcomer);
    return victim;
  }

  /** Closes an idle client: nothing is held for it, so both sides close at once, gracefully (finish()). */
  private closeIdle(p: Proxied, why: 'evicted' | 'timed-out', now: number, newcomer?: string): void {
    const idleMs = Math.round(this.idle.idleMs(p, now));
    if (why === 'evicted') this.counters.evictedIdle++;
    else this.counters.idleTimeouts++;
    this.limitLog?.note(
      why,
      { peer: p.peer, idleMs, ...(newcomer === undefined ? {} : { for: newcomer }) },
      why === 'evicted' ? `idle client ${p.peer} evicted after ${idleMs} ms idle: the front is at max_clients and a new client came` : `idle client ${p.peer} closed after ${idleMs} ms idle (idle timeout)`,
    );
    // The slot is free now, whatever the sockets' own pace of closing.
    this.connections.delete(p);
    this.idle.remove(p);
    p.out!.close();
  }
}
