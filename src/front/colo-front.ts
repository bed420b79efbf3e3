/**
 * The COLO front: clients reach the guests' RESP service through it, on
 * the service address, while the guests themselves speak only Ethernet
 * frames through their virtual NICs. For each client TCP connection the
 * front plays the client's side of a TCP conversation with the guests —
 * SYN, data cut at the MSS, FIN — and hands every frame to `toGuests`,
 * which gives it to the primary's NIC and a copy to the secondary's (the
 * role of QEMU's filter-mirror). What comes back is only what the
 * comparator released of the primary's output (`release()`): the front puts
 * its payload back in sequence and writes it to the client.
 *
 * Backpressure: a client that does not read its replies has its requests
 * paused (the guest answers requests; no requests, no more replies), so the
 * bytes held for it stay bounded. While the way to the guests is backed up
 * (hold()), no client's requests are read at all.
 *
 * Slots: at most maxConnections clients; an idle client gives its slot to a
 * newcomer, or times out (client-limits.ts says when, and what idle means).
 * Here a client is busy while the primary has sent it output the comparator
 * has not released yet (`produced()` tells the front of every frame the
 * primary's NIC sends), while released bytes wait in its socket, or while
 * its reads are paused; and no one is idle while the front is held (its
 * requests wait unread in the sockets).
 */
import net, { type AddressInfo } from 'node:net';

import { WireError } from '../net/errors.js';
import { MSS, Tcp, decodeSegment, encodeSegment, ipv4, seqAdd, type Endpoint } from '../net/wire.js';
import { BurstLog } from '../util/burst-log.js';
import type { Logger } from '../util/logger.js';
import { listen } from '../util/net.js';
import { clientLimits, idleSweepMs, summarizeLimitEvents, type ClientLimitOptions, type ClientLimits, type FrontClientStats, type LimitEvent } from './client-limits.js';
import { FrontError, FrontErrorCodes } from './errors.js';
import { IdleClients } from './idle-clients.js';

/** Where clients appear to come from, to the guests: the front's own address on their network. */
export const CLIENT_ENDPOINT = { mac: Buffer.from('525400000002', 'hex'), ip: ipv4('10.0.0.2') };

export interface ColoFrontOptions extends ClientLimitOptions {
  /** The guests' service endpoint (the same on both replicas). */
  guest: Endpoint;
  /** The address clients appear from to the guests; each connection gets its own port. */
  client: { ip: number; mac: Buffer };
  /** Gives a client frame to both guests. */
  toGuests: (frame: Buffer) => void;
  host?: string;
  port?: number;
  /** Time a closing client socket is given to flush before it is cut (default 2 s). */
  closeGraceMs?: number;
  /** Monotonic clock in ms, for idle times; injected for tests. */
  now?: () => number;
  logger?: Logger;
}

export interface ColoFrontMetrics {
  connections: number;
  accepted: number;
  rejected: number;
  /** Idle clients closed to admit a newcomer at the limit. */
  evicted: number;
  /** Clients closed by the idle timeout. */
  timedOut: number;
  /** Released frames that matched no connection or came out of order. */
  strayFrames: number;
}

const FIRST_PORT = 1024;
/** How long a port closed by its client waits for the guest's FIN before it may be reused. */
const FIN_WAIT_MS = 5000;
const PORTS = 65536 - FIRST_PORT;
const DEFAULT_CLOSE_GRACE_MS = 2000;
const MAX_CLOSE_GRACE_MS = 60_000;

/** a is after b in sequence space (RFC 1982). */
const seqAfter = (a: number, b: number): boolean => ((a - b) | 0) > 0;

class Conn {
  /** Next sequence number we send the guests. */
  snd: number;
  /** Next guest sequence number we expect (known from the SYN-ACK). */
  rcv: number | undefined = undefined;
  /** End of what the primary has sent this connection, released or not (produced()). */
  producedEnd: number | undefined = undefined;
  clientEnded = false;
  readingPaused = false;

  constructor(
    readonly socket: net.Socket,
    readonly ep: Endpoint,
    isn: number,
  ) {
    this.snd = isn;
  }

  busy(): boolean {
    const unreleased = this.producedEnd !== undefined && (this.rcv === undefined || seqAfter(this.producedEnd, this.rcv));
    return unreleased || this.readingPaused || this.socket.writableLength > 0;
  }
}

export class ColoFront {
  private server: net.Server | undefined = undefined;
  private readonly byPort = new Map<number, Conn>();
  private nextPort = FIRST_PORT;
  private held = false;
  private readonly idle = new IdleClients<Conn>();
  private limits: ClientLimits | undefined = undefined;
  private limitLog: BurstLog<LimitEvent> | undefined = undefined;
  private sweeper: NodeJS.Timeout | undefined = undefined;
  private readonly counters = { accepted: 0, rejected: 0, evicted: 0, timedOut: 0, strayFrames: 0 };

  constructor(private readonly options: ColoFrontOptions) {}

  private get graceMs(): number {
    return this.options.closeGraceMs ?? DEFAULT_CLOSE_GRACE_MS;
  }

  private now(): number {
    return (this.options.now ?? (() => performance.now()))();
  }

  async start(): Promise<AddressInfo> {
    if (this.server !== undefined) throw new FrontError(FrontErrorCodes.FRONT_BAD_OPTIONS, 'COLO front already started');
    // Each client takes one of the ports the guests see it come from.
    const limits = clientLimits(this.options, PORTS);
    const grace = this.graceMs;
    if (!Number.isInteger(grace) || grace < 0 || grace > MAX_CLOSE_GRACE_MS) throw new FrontError(FrontErrorCodes.FRONT_BAD_OPTIONS, `closeGraceMs must be an integer in 0..${MAX_CLOSE_GRACE_MS}, got ${grace}`);
    const server = net.createServer((s) => this.accept(s));
    const { host = '127.0.0.1', port = 6379 } = this.options;
    this.limits = limits;
    try {
      await listen(server, port, host);
    } catch (err) {
      throw new FrontError(FrontErrorCodes.FRONT_LISTEN_FAILED, `cannot listen on ${host}:${port}: ${(err as Error).message}`, { cause: err });
    }
    server.on('error', (err) => this.options.logger?.error({ err }, 'COLO front error'));
    this.server = server;
    this.limitLog = new BurstLog({ logger: this.options.logger, summarize: summarizeLimitEvents('COLO front', limits.maxConnections) });
    if (limits.idleTimeoutMs > 0) {
      this.sweeper = setInterval(() => this.sweep(), idleSweepMs(limits.idleTimeoutMs));
      this.sweeper.unref();
    }
    return server.address() as AddressInfo;
  }

  async stop(): Promise<void> {
    const server = this.server;
    if (server === undefined) return;
    this.server = undefined;
    clearInterval(this.sweeper);
    this.sweeper = undefined;
    this.limitLog?.stop();
    for (const c of this.byPort.values()) c.socket.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  metrics(): ColoFrontMetrics {
    return { connections: this.byPort.size, ...this.counters };
  }

  clientStats(): FrontClientStats {
    const c = this.counters;
    return {
      connections: this.byPort.size,
      maxConnections: this.limits?.maxConnections ?? this.options.maxConnections ?? 0,
      accepted: c.accepted,
      refused: c.rejected,
      evicted: c.evicted,
      timedOut: c.timedOut,
    };
  }

  /**
   * Closes the clients idle past the idle timeout (a timer calls it; tests
   * with an injected clock call it themselves). Returns how many it closed.
   */
  sweep(): number {
    const limits = this.limits;
    if (limits === undefined || limits.idleTimeoutMs === 0 || this.held) return 0;
    const now = this.now();
    const expired = this.idle.idleFor(now, limits.idleTimeoutMs);
    for (const c of expired) this.closeIdle(c, 'timed-out', now);
    return expired.length;
  }

  /**
   * A frame the primary's NIC sent, before the comparator has seen it: what
   * it sends a client counts as owed to that client until released.
   */
  produced(frame: Buffer): void {
    let seg;
    try {
      seg = decodeSegment(frame);
    } catch (err) {
      if (!(err instanceof WireError)) throw err;
      return;
    }
    if (seg.dst.ip !== this.options.client.ip || (seg.flags & Tcp.RST) !== 0) return;
    const c = this.byPort.get(seg.dst.port);
    if (c === undefined) return;
    const end = seqAdd(seg.seq, seg.payload.length + ((seg.flags & Tcp.SYN) !== 0 ? 1 : 0) + ((seg.flags & Tcp.FIN) !== 0 ? 1 : 0));
    if (c.producedEnd === undefined || seqAfter(end, c.producedEnd)) c.producedEnd = end;
  }

  /** Stops reading every client's requests (the mirror to the secondary is backed up). */
  hold(): void {
    if (this.held) return;
    this.held = true;
    for (const c of this.byPort.values()) c.socket.pause();
  }

  /** Reads requests again, from every client not paused for its own sake. */
  unhold(): void {
    if (!this.held) return;
    this.held = false;
    for (const c of this.byPort.values()) if (!c.readingPaused) c.socket.resume();
  }

  /** A frame of the primary's output that the comparator let go. */
  release(frame: Buffer): void {
    let seg;
    try {
      seg = decodeSegment(frame);
    } catch (err) {
      if (!(err instanceof WireError)) throw err;
      this.counters.strayFrames++;
      return;
    }
    const c = seg.dst.ip === this.options.client.ip ? this.byPort.get(seg.dst.port) : undefined;
    if (c === undefined) {
      this.counters.strayFrames++;
      return;
    }
    if ((seg.flags & Tcp.RST) !== 0) {
      this.forget(c);
      // Refused before it was accepted: the guest has no socket left, as Redis says when it has no client slot.
      if (c.rcv === undefined) {
        this.counters.rejected++;
        c.socket.end('-ERR max number of clients reached\r\n');
        setTimeout(() => c.socket.destroy(), this.graceMs).unref();
      } else {
        c.socket.destroy();
      }
      return;
    }
    if ((seg.flags & Tcp.SYN) !== 0) {
      c.rcv = seqAdd(seg.seq, 1);
      return;
    }
    if (c.rcv === undefined || seg.seq !== c.rcv) {
      // The comparator releases a connection's frames in order; anything else is not ours to guess at.
      this.counters.strayFrames++;
      this.options.logger?.warn({ port: c.ep.port, seq: seg.seq, expected: c.rcv }, 'COLO front: released frame out of sequence, dropped');
      return;
    }
    c.rcv = seqAdd(c.rcv, seg.payload.length);
    if (seg.payload.length > 0) this.idle.touch(c, this.now());
    // A view: every released frame is a buffer of its own (a guest's encode, or a decoded record), never reused.
    if (seg.payload.length > 0 && !c.socket.destroyed && !c.socket.write(seg.payload)) this.pauseClient(c);
    if ((seg.flags & Tcp.FIN) !== 0) {
      c.rcv = seqAdd(c.rcv, 1);
      // The guest closed first (QUIT): it waits for our FIN to free its socket. If the client closed
      // first, this FIN answers ours and the guest has already let go.
      if (!c.clientEnded) this.send(c, Tcp.FIN | Tcp.ACK);
      this.forget(c);
      c.socket.end();
      // A client that never closes its side must not keep the socket for ever.
      setTimeout(() => c.socket.destroy(), this.graceMs).unref();
    }
  }

  private accept(socket: net.Socket): void {
    const limits = this.limits;
    if (limits === undefined) {
      socket.destroy();
      return;
    }
    const peer = `${socket.remoteAddress}:${socket.remotePort}`;
    socket.on('error', (err) => this.options.logger?.debug({ err, peer }, 'COLO front client error'));
    const room = this.byPort.size < limits.maxConnections || this.makeRoom(limits, peer);
    const port = room ? this.freePort() : undefined;
    if (port === undefined) {
      this.counters.rejected++;
      this.limitLog?.note('refused', { peer, max: limits.maxConnections }, 'connection refused: too many clients, none idle long enough to give up its slot');
      socket.end('-ERR max number of clients reached\r\n');
      // A client that never closes its side must not keep the socket for ever.
      setTimeout(() => socket.destroy(), this.graceMs).unref();
      return;
    }
    socket.setNoDelay(true);
    const ep: Endpoint = { mac: this.options.client.mac, ip: this.options.client.ip, port };
    const c = new Conn(socket, ep, (Math.random() * 2 ** 32) >>> 0);
    this.byPort.set(port, c);
    this.idle.add(c, this.now());
    this.counters.accepted++;
    this.send(c, Tcp.SYN);
    c.snd = seqAdd(c.snd, 1);
    socket.on('data', (chunk: Buffer) => {
      // Forgotten (evicted, reset, or the guest closed first): its bytes are nobody's to send.
      if (this.byPort.get(port) !== c) return;
      this.idle.touch(c, this.now());
      for (let off = 0; off < chunk.length; off += MSS) {
        const piece = chunk.subarray(off, Math.min(chunk.length, off + MSS));
        this.send(c, Tcp.ACK | Tcp.PSH, piece);
        c.snd = seqAdd(c.snd, piece.length);
      }
    });
    if (this.held) socket.pause();
    socket.on('drain', () => {
      if (c.readingPaused) {
        c.readingPaused = false;
        if (!this.held) socket.resume();
      }
    });
    socket.on('end', () => {
      c.clientEnded = true;
      if (this.byPort.get(port) === c) {
        this.send(c, Tcp.FIN | Tcp.ACK);
        c.snd = seqAdd(c.snd, 1);
        // The port is kept until the guest's FIN answers ours, within reason.
        setTimeout(() => this.forget(c), FIN_WAIT_MS).unref();
      }
    });
    socket.on('close', () => {
      if (c.clientEnded) return;
      // Gone without a FIN (reset, destroyed): reset the guest's socket so it frees the slot.
      if (this.byPort.get(port) === c) this.send(c, Tcp.RST);
      this.forget(c);
    });
  }

  private pauseClient(c: Conn): void {
    if (c.readingPaused) return;
    c.readingPaused = true;
    c.socket.pause();
  }

  private send(c: Conn, flags: number, payload?: Buffer): void {
    this.options.toGuests(encodeSegment({ src: c.ep, dst: this.options.guest, seq: c.snd, ack: c.rcv ?? 0, flags: c.rcv === undefined ? flags & ~Tcp.ACK : flags, window: 65535, payload }));
  }

  private forget(c: Conn): void {
    this.idle.remove(c);
    if (this.byPort.get(c.ep.port) === c) this.byPort.delete(c.ep.port);
  }

  /** At the limit: closes the client idle longest, if one has been idle long enough. */
  private makeRoom(limits: ClientLimits, newcomer: string): boolean {
    // Held: requests wait unread in the sockets, so nobody's silence means anything.
    if (this.held) return false;
    const now = this.now();
    const victim = this.idle.longestIdle(now, limits.evictIdleMs);
    if (victim === undefined) return false;
    this.closeIdle(victim, 'evicted', now, newcomer);
    return true;
  }

  /** Closes an idle client: the guests' socket is reset (freed at once, as when a client goes without a FIN); the client gets a FIN. */
  private closeIdle(c: Conn, why: 'evicted' | 'timed-out', now: number, newcomer?: string): void {
    const peer = `${c.socket.remoteAddress}:${c.socket.remotePort}`;
    const idleMs = Math.round(this.idle.idleMs(c, now));
    if (why === 'evicted') this.counters.evicted++;
    else this.counters.timedOut++;
    this.limitLog?.note(
      why,
      { peer, idleMs, ...(newcomer === undefined ? {} : { for: newcomer }) },
      why === 'evicted' ? `idle client ${peer} evicted after ${idleMs} ms idle: the COLO front is at max_clients and a new client came` : `idle client ${peer} closed after ${idleMs} ms idle (idle timeout)`,
    );
    this.send(c, Tcp.RST);
    this.forget(c);
    c.socket.end();
    setTimeout(() => c.socket.destroy(), this.graceMs).unref();
  }

  private freePort(): number | undefined {
    for (let i = 0; i < PORTS; i++) {
      const p = this.nextPort;
      this.nextPort = p === 65535 ? FIRST_PORT : p + 1;
      if (!this.byPort.has(p)) return p;
    }
    return undefined;
  }
}
