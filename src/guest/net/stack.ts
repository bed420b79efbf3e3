/**
 * The sim guest's network stack: a TCP endpoint behind a virtual NIC, for
 * COLO. Frames in, frames out; the key-value commands run on the payload.
 *
 * Everything a connection is lives in guest RAM — the socket table, each
 * socket's sequence numbers and its receive buffer (a request not yet
 * complete) — as it would in a guest kernel. That is what COLO needs: after
 * a checkpoint the secondary's RAM is the primary's, so its connections
 * carry on from exactly the primary's state, and two replicas fed the same
 * frames from the same state send the same frames back, byte for byte
 * (initial sequence numbers come from a secret in RAM, the IP id is 0,
 * segments are cut at the MSS). No JavaScript object caches RAM state,
 * since a checkpoint may replace RAM under it.
 *
 * It is a deliberately small TCP: the links to the front are lossless and
 * in order, so there is no retransmission, no reordering queue and no
 * window management; a segment out of order is dropped and counted. A
 * request must fit the socket's receive buffer.
 *
 * RAM layout from `base` (little endian):
 *   0  "TNDMNET1"  8  u32 version  12 u32 max sockets  16 u32 rx bytes
 *  20  u32 ISN secret  24 u32 guest IPv4  28 u16 guest port  32 guest MAC (6)
 *  40  u32 counters: frames in, frames out, dropped, accepted, refused
 *  64  slots, each 32 bytes of header then the receive buffer:
 *      0 u32 state  4 u32 peer IPv4  8 u16 peer port  12 u32 rcv_nxt
 *     16 u32 snd_nxt  20 u32 rx length  24 peer MAC (6)
 */
import { GuestError, GuestErrorCodes } from '../errors.js';
import type { KvCommands, Session } from '../commands.js';
import { fnv1a } from '../layout.js';
import { GuestRam, type GuestDomain } from '../ram.js';
import { RespParser, errorReply } from '../resp.js';
import { WireError } from '../../net/errors.js';
import { MSS, Tcp, decodeSegment, encodeSegment, seqAdd, type Endpoint, type Segment } from '../../net/wire.js';

const MAGIC = Buffer.from('TNDMNET1', 'latin1');
const VERSION = 1;
const H_VERSION = 8;
const H_MAX = 12;
const H_RX = 16;
const H_SECRET = 20;
const H_IP = 24;
const H_PORT = 28;
const H_MAC = 32;
const H_COUNTERS = 40;
const HEADER = 64;
const S_STATE = 0;
const S_IP = 4;
const S_PORT = 8;
const S_RCV = 12;
const S_SND = 16;
const S_RXLEN = 20;
const S_MAC = 24;
const SLOT_HEADER = 32;

/** Socket states as stored in RAM. FinSent: we sent our FIN (QUIT, or a request we refused) and wait for the peer's. */
const State = { Free: 0, Established: 1, FinSent: 2 } as const;

export const NetCounter = { framesIn: 0, framesOut: 1, dropped: 2, accepted: 3, refused: 4 } as const;
export type NetCounterName = keyof typeof NetCounter;

const WINDOW = 65535;

export interface NetStackFormat {
  base: number;
  maxSockets: number;
  /** Receive buffer per socket: the largest request the guest takes. */
  rxBytes: number;
  ip: number;
  port: number;
  mac: Buffer;
  secret: number;
}

/** Bytes of RAM a stack with these limits takes. */
export const netStackBytes = (maxSockets: number, rxBytes: number): number => HEADER + maxSockets * (SLOT_HEADER + rxBytes);

export class GuestNetStack {
  private readonly scratch = Buffer.alloc(12);

  private constructor(
    private readonly mem: GuestRam,
    private readonly commands: KvCommands,
    private readonly transmit: (frame: Buffer) => void,
  ) {}

  /** Lays out an empty socket table in RAM (guest writes: the domain must run). */
  static format(domain: GuestDomain, f: NetStackFormat, commands: KvCommands, transmit: (frame: Buffer) => void): GuestNetStack {
    const bad = (detail: string): never => {
      throw new GuestError(GuestErrorCodes.STORE_BAD_OPTIONS, `cannot format the guest network stack: ${detail}`);
    };
    if (!Number.isInteger(f.maxSockets) || f.maxSockets < 1 || f.maxSockets > 65536) bad(`maxSockets ${f.maxSockets} is not in 1..65536`);
    if (!Number.isInteger(f.rxBytes) || f.rxBytes < 64 || f.rxBytes > 16 * 1024 * 1024 || f.rxBytes % 8 !== 0) bad(`rxBytes ${f.rxBytes} is not a multiple of 8 in 64..16 MiB`);
    if (f.mac.length !== 6) bad('the MAC address is not 6 bytes');
    const bytes = netStackBytes(f.maxSockets, f.rxBytes);
    if (!Number.isInteger(f.base) || f.base < 0 || f.base + bytes > domain.ram.length) bad(`${bytes} bytes at ${f.base} do not fit RAM`);
    const h = Buffer.alloc(HEADER);
    MAGIC.copy(h, 0);
    h.writeUInt32LE(VERSION, H_VERSION);
    h.writeUInt32LE(f.maxSockets, H_MAX);
    h.writeUInt32LE(f.rxBytes, H_RX);
    h.writeUInt32LE(f.secret >>> 0, H_SECRET);
    h.writeUInt32LE(f.ip >>> 0, H_IP);
    h.writeUInt16LE(f.port, H_PORT);
    f.mac.copy(h, H_MAC);
    const mem = new GuestRam(domain, f.base);
    mem.write(0, h);
    // Every slot free, whatever RAM held.
    for (let i = 0; i < f.maxSockets; i++) mem.setU32(HEADER + i * (SLOT_HEADER + f.rxBytes) + S_STATE, State.Free);
    return new GuestNetStack(mem, commands, transmit);
  }

  /** The stack already in RAM (a promoted or COLO secondary replica); checks the header. */
  static attach(domain: GuestDomain, base: number, commands: KvCommands, transmit: (frame: Buffer) => void): GuestNetStack {
    if (!Number.isInteger(base) || base < 0 || base + HEADER > domain.ram.length) throw new GuestError(GuestErrorCodes.STORE_NOT_FOUND, `no network stack at ${base}: outside RAM`);
    const mem = new GuestRam(domain, base);
    if (!mem.view(0, MAGIC.length).equals(MAGIC)) throw new GuestError(GuestErrorCodes.STORE_NOT_FOUND, `no network stack at ${base}: bad magic`);
    if (mem.u32(H_VERSION) !== VERSION) throw new GuestError(GuestErrorCodes.STORE_BAD_VERSION, `network stack version ${mem.u32(H_VERSION)}, this build reads ${VERSION}`);
    const bytes = netStackBytes(mem.u32(H_MAX), mem.u32(H_RX));
    if (base + bytes > domain.ram.length) throw new GuestError(GuestErrorCodes.STORE_CORRUPT, `network stack of ${bytes} bytes does not fit RAM`);
    return new GuestNetStack(mem, commands, transmit);
  }

  /** The guest's own address. */
  get endpoint(): Endpoint {
    return { mac: Buffer.from(this.mem.view(H_MAC, 6)), ip: this.mem.u32(H_IP), port: this.mem.ram.readUInt16LE(this.mem.base + H_PORT) };
  }

  counter(name: NetCounterName): number {
    return this.mem.u32(H_COUNTERS + NetCounter[name] * 4);
  }

  /** Open connections. */
  connections(): number {
    let n = 0;
    for (let i = 0; i < this.max; i++) if (this.mem.u32(this.slot(i) + S_STATE) !== State.Free) n++;
    return n;
  }

  /**
   * One frame from the NIC, as guest code (the caller runs it through
   * domain.run). Replies go out through `transmit` before it returns.
   */
  receive(frame: Buffer): void {
    this.count('framesIn');
    let seg: Segment;
    try {
      seg = decodeSegment(frame);
    } catch (err) {
      if (!(err instanceof WireError)) throw err;
      this.count('dropped');
      return;
    }
    const me = this.endpoint;
    if (seg.dst.ip !== me.ip || seg.dst.port !== me.port) {
      this.count('dropped');
      return;
    }
    const slot = this.find(seg.src.ip, seg.src.port);
    if ((seg.flags & Tcp.RST) !== 0) {
      if (slot !== -1) this.free(slot);
      return;
    }
    if ((seg.flags & Tcp.SYN) !== 0) {
      this.syn(seg, slot, me);
      return;
    }
    if (slot === -1) {
      // Nothing here for it: as RFC 9293 says for a closed port, reset (not in answer to a reset).
      this.count('dropped');
      this.send(me, seg.src, seg.ack, 0, Tcp.RST);
      return;
    }
    const at = this.slot(slot);
    if (seg.seq !== this.mem.u32(at + S_RCV)) {
      // A lossless, in-order link never does this; a duplicate or a gap is dropped, not reordered.
      this.count('dropped');
      return;
    }
    const state = this.mem.u32(at + S_STATE);
    if (state === State.FinSent) {
      // Only the peer's FIN (or the ack of ours) is expected now; data after our FIN is not read.
      if ((seg.flags & Tcp.FIN) !== 0) {
        const rcv = seqAdd(seg.seq, seg.payload.length + 1);
        this.send(me, this.peer(at), this.mem.u32(at + S_SND), rcv, Tcp.ACK);
        this.free(slot);
      }
      return;
    }
    if (seg.payload.length > 0) this.data(at, seg, me);
    if ((seg.flags & Tcp.FIN) !== 0 && this.mem.u32(at + S_STATE) === State.Established) {
      const rcv = seqAdd(this.mem.u32(at + S_RCV), 1);
      this.mem.setU32(at + S_RCV, rcv);
      // The peer is done: answer with our own FIN at once (no half-open connections here).
      this.send(me, this.peer(at), this.mem.u32(at + S_SND), rcv, Tcp.FIN | Tcp.ACK);
      this.free(slot);
    }
  }

  private syn(seg: Segment, slot: number, me: Endpoint): void {
    let s = slot;
    if (s !== -1) {
      const at = this.slot(s);
      // A repeated SYN of the connection we just accepted: answer it again; anything else resets the old one.
      if (this.mem.u32(at + S_RCV) === seqAdd(seg.seq, 1)) {
        const isn = seqAdd(this.mem.u32(at + S_SND), -1);
        this.send(me, this.peer(at), isn, this.mem.u32(at + S_RCV), Tcp.SYN | Tcp.ACK);
        return;
      }
      this.free(s);
    }
    s = this.findFree();
    if (s === -1) {
      this.count('refused');
      this.send(me, seg.src, 0, seqAdd(seg.seq, 1), Tcp.RST | Tcp.ACK);
      return;
    }
    const at = this.slot(s);
    const isn = this.isn(seg.src);
    const hdr = Buffer.alloc(SLOT_HEADER);
    hdr.writeUInt32LE(State.Established, S_STATE);
    hdr.writeUInt32LE(seg.src.ip >>> 0, S_IP);
    hdr.writeUInt16LE(seg.src.port, S_PORT);
    hdr.writeUInt32LE(seqAdd(seg.seq, 1), S_RCV);
    hdr.writeUInt32LE(seqAdd(isn, 1), S_SND);
    hdr.writeUInt32LE(0, S_RXLEN);
    seg.src.mac.copy(hdr, S_MAC);
    this.mem.write(at, hdr);
    this.count('accepted');
    this.send(me, seg.src, isn, seqAdd(seg.seq, 1), Tcp.SYN | Tcp.ACK);
  }

  private data(at: number, seg: Segment, me: Endpoint): void {
    const rxBytes = this.rxBytes;
    const have = this.mem.u32(at + S_RXLEN);
    const len = seg.payload.length;
    const rcv = seqAdd(seg.seq, len);
    this.mem.setU32(at + S_RCV, rcv);
    if (have + len > rxBytes) {
      this.refuse(at, me, `Protocol error: request larger than the guest's ${rxBytes}-byte receive buffer`);
      return;
    }
    const rx = at + SLOT_HEADER;
    this.mem.write(rx + have, seg.payload);
    const total = have + len;
    // The parser keeps no state across segments: the unparsed bytes in RAM are the state.
    const parser = new RespParser({ maxRequestBytes: rxBytes, maxBulkLength: rxBytes, maxInlineLength: Math.min(rxBytes, 64 * 1024) });
    const { commands, error } = parser.feed(this.mem.view(rx, total));
    const session: Session = { quit: false };
    const replies: Buffer[] = [];
    for (const args of commands) {
      if (session.quit) break;
      replies.push(this.commands.execute(args, session));
    }
    if (error !== undefined && !session.quit) {
      replies.push(errorReply(`ERR ${error.message}`));
      session.quit = true;
    }
    if (!session.quit) {
      const used = parser.completeBytes;
      // Keep the incomplete request at the start of the buffer (an overlapping move: TypedArray set copies the source first).
      if (used > 0 && used < total) this.mem.write(rx, this.mem.view(rx + used, total - used));
      this.mem.setU32(at + S_RXLEN, total - used);
    }
    this.output(at, me, replies);
    if (session.quit) this.close(at, me);
  }

  /** A request the guest will not take: say why, then close. */
  private refuse(at: number, me: Endpoint, message: string): void {
    this.count('dropped');
    this.output(at, me, [errorReply(`ERR ${message}`)]);
    this.close(at, me);
  }

  /** Sends `replies` as segments of at most MSS bytes. */
  private output(at: number, me: Endpoint, replies: Buffer[]): void {
    if (replies.length === 0) return;
    const data = replies.length === 1 ? replies[0] : Buffer.concat(replies);
    const peer = this.peer(at);
    const rcv = this.mem.u32(at + S_RCV);
    let snd = this.mem.u32(at + S_SND);
    for (let off = 0; off < data.length; off += MSS) {
      const piece = data.subarray(off, Math.min(data.length, off + MSS));
      this.send(me, peer, snd, rcv, Tcp.ACK | Tcp.PSH, piece);
      snd = seqAdd(snd, piece.length);
    }
    this.mem.setU32(at + S_SND, snd);
  }

  private close(at: number, me: Endpoint): void {
    const snd = this.mem.u32(at + S_SND);
    this.send(me, this.peer(at), snd, this.mem.u32(at + S_RCV), Tcp.FIN | Tcp.ACK);
    this.mem.setU32(at + S_SND, seqAdd(snd, 1));
    this.mem.setU32(at + S_RXLEN, 0);
    this.mem.setU32(at + S_STATE, State.FinSent);
  }

  private send(me: Endpoint, to: Endpoint, seq: number, ack: number, flags: number, payload?: Buffer): void {
    this.count('framesOut');
    this.transmit(encodeSegment({ src: me, dst: to, seq, ack, flags, window: WINDOW, payload }));
  }

  private peer(at: number): Endpoint {
    return { mac: Buffer.from(this.mem.view(at + S_MAC, 6)), ip: this.mem.u32(at + S_IP), port: this.mem.ram.readUInt16LE(this.mem.base + at + S_PORT) };
  }

  /** The initial sequence number: from the secret in RAM, so both replicas pick the same one. */
  private isn(peer: Endpoint): number {
    const s = this.scratch;
    s.writeUInt32LE(this.mem.u32(H_SECRET), 0);
    s.writeUInt32LE(peer.ip >>> 0, 4);
    s.writeUInt32LE(peer.port, 8);
    return fnv1a(s);
  }

  private get max(): number {
    return this.mem.u32(H_MAX);
  }

  private get rxBytes(): number {
    return this.mem.u32(H_RX);
  }

  private slot(i: number): number {
    return HEADER + i * (SLOT_HEADER + this.rxBytes);
  }

  private find(ip: number, port: number): number {
    const ram = this.mem.ram;
    const base = this.mem.base;
    for (let i = 0; i < this.max; i++) {
      const at = base + this.slot(i);
      if (ram.readUInt32LE(at + S_STATE) !== State.Free && ram.readUInt32LE(at + S_IP) === ip >>> 0 && ram.readUInt16LE(at + S_PORT) === port) return i;
    }
    return -1;
  }

  private findFree(): number {
    for (let i = 0; i < this.max; i++) if (this.mem.u32(this.slot(i) + S_STATE) === State.Free) return i;
    return -1;
  }

  private free(slot: number): void {
    const at = this.slot(slot);
    this.mem.setU32(at + S_STATE, State.Free);
    this.mem.setU32(at + S_RXLEN, 0);
  }

  private count(name: NetCounterName): void {
    const off = H_COUNTERS + NetCounter[name] * 4;
    this.mem.setU32(off, (this.mem.u32(off) + 1) >>> 0);
  }
}
