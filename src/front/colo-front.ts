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
 */
import net, { type AddressInfo } from 'node:net';

import { WireError } from '../net/errors.js';
import { MSS, Tcp, decodeSegment, encodeSegment, ipv4, seqAdd, type Endpoint } from '../net/wire.js';
import type { Logger } from '../util/logger.js';
import { listen } from '../util/net.js';
import { FrontError, FrontErrorCodes } from './errors.js';

/** Where clients appear to come from, to the guests: the front's own address on their network. */
export const CLIENT_ENDPOINT = { mac: Buffer.from('525400000002', 'hex'), ip: ipv4('10.0.0.2') };

export interface ColoFrontOptions {
  /** The guests' service endpoint (the same on both replicas). */
  guest: Endpoint;
  /** The address clients appear from to the guests; each connection gets its own port. */
  client: { ip: number; mac: Buffer };
  /** Gives a client frame to both guests. */
  toGuests: (frame: Buffer) => void;
  host?: string;
  port?: number;
  maxConnections?: number;
  logger?: Logger;
}

export interface ColoFrontMetrics {
  connections: number;
  accepted: number;
  rejected: number;
  /** Released frames that matched no connection or came out of order. */
  strayFrames: number;
}

const FIRST_PORT = 1024;
/** How long a port closed by its client waits for the guest's FIN before it may be reused. */
const FIN_WAIT_MS = 5000;
const PORTS = 65536 - FIRST_PORT;

class Conn {
  /** Next sequence number we send the guests. */
  snd: number;
  /** Next guest sequence number we expect (known from the SYN-ACK). */
  rcv: number | undefined = undefined;
  clientEnded = false;
  readingPaused = false;

  constructor(
    readonly socket: net.Socket,
    readonly ep: Endpoint,
    isn: number,
  ) {
    this.snd = isn;
  }
}

export class ColoFront {
  private server: net.Server | undefined = undefined;
  private readonly byPort = new Map<number, Conn>();
  private nextPort = FIRST_PORT;
  private held = false;
  private readonly counters = { accepted: 0, rejected: 0, strayFrames: 0 };

  constructor(private readonly options: ColoFrontOptions) {}

  async start(): Promise<AddressInfo> {
    if (this.server !== undefined) throw new FrontError(FrontErrorCodes.FRONT_BAD_OPTIONS, 'COLO front already started');
    const max = this.options.maxConnections ?? 1000;
    if (!Number.isInteger(max) || max < 1 || max > PORTS) throw new FrontError(FrontErrorCodes.FRONT_BAD_OPTIONS, `maxConnections must be an integer in 1..${PORTS}, got ${max}`);
    const server = net.createServer((s) => this.accept(s));
    const { host = '127.0.0.1', port = 6379 } = this.options;
    try {
      await listen(server, port, host);
    } catch (err) {
      throw new FrontError(FrontErrorCodes.FRONT_LISTEN_FAILED, `cannot listen on ${host}:${port}: ${(err as Error).message}`, { cause: err });
    }
    server.on('error', (err) => this.options.logger?.error({ err }, 'COLO front error'));
    this.server = server;
    return server.address() as AddressInfo;
  }

  async stop(): Promise<void> {
    const server = this.server;
    if (server === undefined) return;
    this.server = undefined;
    for (const c of this.byPort.values()) c.socket.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  metrics(): ColoFrontMetrics {
    return { connections: this.byPort.size, ...this.counters };
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
    // A view: every released frame is a buffer of its own (a guest's encode, or a decoded record), never reused.
    if (seg.payload.length > 0 && !c.socket.destroyed && !c.socket.write(seg.payload)) this.pauseClient(c);
    if ((seg.flags & Tcp.FIN) !== 0) {
      c.rcv = seqAdd(c.rcv, 1);
      // The guest closed first (QUIT): it waits for our FIN to free its socket. If the client closed
      // first, this FIN answers ours and the guest has already let go.
      if (!c.clientEnded) this.send(c, Tcp.FIN | Tcp.ACK);
      this.forget(c);
      c.socket.end();
    }
  }

  private accept(socket: net.Socket): void {
    const port = this.freePort();
    if (port === undefined || this.byPort.size >= (this.options.maxConnections ?? 1000)) {
      this.counters.rejected++;
      socket.end('-ERR max number of clients reached\r\n');
      return;
    }
    socket.setNoDelay(true);
    const ep: Endpoint = { mac: this.options.client.mac, ip: this.options.client.ip, port };
    const c = new Conn(socket, ep, (Math.random() * 2 ** 32) >>> 0);
    this.byPort.set(port, c);
    this.counters.accepted++;
    this.send(c, Tcp.SYN);
    c.snd = seqAdd(c.snd, 1);
    socket.on('data', (chunk: Buffer) => {
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
    socket.on('error', (err) => this.options.logger?.debug({ err, port }, 'COLO front client error'));
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
    if (this.byPort.get(c.ep.port) === c) this.byPort.delete(c.ep.port);
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
