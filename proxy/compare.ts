/**
 * The comparator core: pure, no sockets, no timers; time comes in as an
 * argument. It holds each guest's outbound frames per connection and turns
 * them into decisions:
 *
 *   - release a primary frame (it matched its secondary twin, or it cannot
 *     be compared, or a checkpoint made the primary's output the truth);
 *   - drop a secondary frame (matched, uncomparable, or superseded);
 *   - request a checkpoint, with a reason and the connection.
 *
 * Matching rules (docs/proxy.md has the full list and where they differ
 * from QEMU's colo-compare on purpose):
 *
 *   TCP  Compared by sequence space, not by segment: a primary segment is
 *        released once every byte of its range (SYN and FIN count as one
 *        position each, as in RFC 9293) equals the secondary's bytes at the
 *        same sequence numbers, however the secondary cut them, and once the
 *        secondary has acknowledged at least as far as the segment does (so
 *        a client never sees an ack for data the secondary has not got).
 *        Segments without sequence space are not waved through: a pure ACK
 *        waits for the secondary's ack to reach it, a RST for a secondary
 *        RST at the same sequence number.
 *   UDP, ICMP, other IP
 *        The oldest held primary datagram is matched against the held
 *        secondary ones (first equal wins) by its IP payload; oldest first,
 *        so a primary that runs one datagram ahead only waits.
 *   ARP, non-IP, malformed
 *        Not compared: primary released, secondary dropped.
 *
 * A mismatch freezes its connection (nothing more is compared there) and
 * asks for one checkpoint. scan() asks for a checkpoint when any held frame
 * is older than the compare timeout. checkpointDone() releases every held
 * primary frame in arrival order and drops every held secondary one.
 */
import { ProxyError, ProxyErrorCodes as C } from './errors.js';
import { ownFrame, type Frame } from './framing.js';
import { FlowTable, type FlowId } from './flows.js';
import { decodePacket, TcpFlag, type Packet, type PacketKind } from './packet.js';

export type Side = 'primary' | 'secondary';

export type CheckpointReason = 'mismatch' | 'timeout' | 'queue-full' | 'table-full';

export interface CheckpointRequest {
  reason: CheckpointReason;
  /** The connection that caused it ("tcp 10.0.0.1:80 > 10.0.0.2:40000"). */
  flow: string;
  /** What was seen, for an operator. */
  detail: string;
}

export type ReleaseWhy = 'match' | 'uncompared' | 'checkpoint' | 'retransmit';
export type DropWhy = 'match' | 'uncompared' | 'checkpoint' | 'retransmit' | 'overflow';

export type Decision =
  | { type: 'release'; frame: Frame; why: ReleaseWhy }
  | { type: 'drop'; side: Side; frame: Frame; why: DropWhy }
  | { type: 'checkpoint'; request: CheckpointRequest }
  /** A frame whose headers do not decode: it is passed through uncompared, and this says why. */
  | { type: 'malformed'; side: Side; error: ProxyError };

export interface ComparatorOptions {
  /** A held frame older than this (ms) triggers a checkpoint request at the next scan. Default 3000. */
  compareTimeoutMs?: number;
  /** Frames held per connection and side. Default 1024. */
  maxQueueSize?: number;
  /** Connections tracked at once. Default 16384. */
  maxConnections?: number;
}

export const COMPARATOR_DEFAULTS = { compareTimeoutMs: 3000, maxQueueSize: 1024, maxConnections: 16384 } as const;

export interface ComparatorStats {
  /** Primary frames released after a successful comparison. */
  matched: number;
  released: number;
  dropped: number;
  checkpointRequests: number;
  held: { primary: number; secondary: number };
  connections: number;
}

interface Held {
  frame: Frame;
  pkt: Packet;
  /** Arrival time (ms) and global arrival order. */
  at: number;
  order: number;
  // TCP: sequence range [start, end) and its make-up.
  start: number;
  end: number;
  syn: number;
  fin: number;
  /** Sequence number up to which this (primary) segment has been found equal so far. */
  checkedTo: number;
  /** It left its queue (released or dropped). */
  gone: boolean;
}

/** A FIFO with O(1) shift; TCP inserts out of order by scanning from the tail. */
const NONE: readonly Held[] = Object.freeze([]);

class Queue {
  items: Held[] = [];
  head = 0;

  get length(): number {
    return this.items.length - this.head;
  }

  at(i: number): Held {
    return this.items[this.head + i];
  }

  first(): Held | undefined {
    return this.head < this.items.length ? this.items[this.head] : undefined;
  }

  push(h: Held): void {
    this.items.push(h);
  }

  /** Inserts keeping ascending sequence order (stable: equal starts keep arrival order). */
  insertBySeq(h: Held): void {
    let i = this.items.length;
    while (i > this.head && after(this.items[i - 1].start, h.start)) i--;
    if (i === this.items.length) this.items.push(h);
    else this.items.splice(i, 0, h);
  }

  shift(): Held {
    const h = this.items[this.head++];
    h.gone = true;
    if (this.head === this.items.length) {
      this.items = [];
      this.head = 0;
    } else if (this.head > 64 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return h;
  }

  removeAt(i: number): Held {
    if (i === 0) return this.shift();
    const h = this.items.splice(this.head + i, 1)[0];
    h.gone = true;
    return h;
  }

  drain(): readonly Held[] {
    if (this.head === this.items.length) {
      if (this.head !== 0) this.items = [];
      this.head = 0;
      return NONE;
    }
    const all = this.head === 0 ? this.items : this.items.slice(this.head);
    this.items = [];
    this.head = 0;
    return all;
  }
}

interface Connection {
  id: FlowId;
  kind: PacketKind;
  flow: string;
  primary: Queue;
  secondary: Queue;
  /** A mismatch was found: compare nothing more here until the checkpoint. */
  diverged: boolean;
  /** Arrival order of its latest frame: eviction picks the idle connection quiet the longest. */
  active: number;
  // TCP
  /** Sequence space [low, verified) was found equal and released (undefined: nothing yet). */
  low: number;
  verified: number | undefined;
  /** Highest ack seen from each side (undefined: none yet). */
  primaryAck: number | undefined;
  secondaryAck: number | undefined;
}

/** RFC 1982-style comparison of 32-bit sequence numbers: a is after b. */
export const after = (a: number, b: number): boolean => ((a - b) | 0) > 0;
const seqMax = (a: number | undefined, b: number): number => (a === undefined || after(b, a) ? b : a);

function check(name: string, value: number, min: number, max: number): number {
  if (!Number.isInteger(value) || value < min || value > max) throw new ProxyError(C.PROXY_BAD_OPTIONS, `${name}: expected an integer in ${min}..${max}, got ${value}`);
  return value;
}

export class Comparator {
  private readonly compareTimeoutMs: number;
  private readonly maxQueueSize: number;
  private readonly maxConnections: number;
  private readonly conns = new FlowTable<Connection>();
  /**
   * Connections that took a frame since the last checkpoint: the only ones
   * that can hold frames or have anything for checkpointDone() and scan() to
   * do, so their cost follows the traffic, not the size of the table.
   */
  private readonly touched = new Set<Connection>();
  private order = 0;
  private heldPrimary = 0;
  private heldSecondary = 0;
  private readonly counts = { matched: 0, released: 0, dropped: 0, checkpointRequests: 0 };

  constructor(options: ComparatorOptions = {}) {
    this.compareTimeoutMs = check('compareTimeoutMs', options.compareTimeoutMs ?? COMPARATOR_DEFAULTS.compareTimeoutMs, 1, 2 ** 31 - 1);
    this.maxQueueSize = check('maxQueueSize', options.maxQueueSize ?? COMPARATOR_DEFAULTS.maxQueueSize, 1, 2 ** 20);
    this.maxConnections = check('maxConnections', options.maxConnections ?? COMPARATOR_DEFAULTS.maxConnections, 1, 2 ** 22);
  }

  stats(): ComparatorStats {
    return { ...this.counts, held: { primary: this.heldPrimary, secondary: this.heldSecondary }, connections: this.conns.size };
  }

  /** Takes one frame from a guest at time `now` (ms); appends the decisions it leads to. */
  push(side: Side, frame: Frame, now: number, out: Decision[] = []): Decision[] {
    let pkt: Packet;
    try {
      pkt = decodePacket(frame.data, frame.vnetHdrLen);
    } catch (err) {
      out.push({ type: 'malformed', side, error: err as ProxyError });
      this.passUncompared(side, frame, out);
      return out;
    }
    if (pkt.kind === 'arp' || pkt.kind === 'l2') {
      this.passUncompared(side, frame, out);
      return out;
    }
    const conn = this.connection(pkt, side, frame, out);
    if (conn === undefined) return out;
    this.touched.add(conn);
    const queue = side === 'primary' ? conn.primary : conn.secondary;
    const held: Held = { frame, pkt, at: now, order: this.order++, start: 0, end: 0, syn: 0, fin: 0, checkedTo: 0, gone: false };
    if (pkt.kind === 'tcp') {
      held.syn = pkt.flags & TcpFlag.SYN ? 1 : 0;
      held.fin = pkt.flags & TcpFlag.FIN ? 1 : 0;
      held.start = pkt.seq;
      held.end = (pkt.seq + held.syn + (pkt.payloadEnd - pkt.payloadStart) + held.fin) >>> 0;
      held.checkedTo = held.start;
      if (pkt.flags & TcpFlag.ACK) {
        if (side === 'primary') conn.primaryAck = seqMax(conn.primaryAck, pkt.ack);
        else conn.secondaryAck = seqMax(conn.secondaryAck, pkt.ack);
      }
      // A secondary segment without sequence space and without RST has
      // said all it had to say (its ack): nothing will ever be compared to it.
      if (side === 'secondary' && held.start === held.end && !(pkt.flags & TcpFlag.RST)) {
        this.drop(side, frame, 'match', out);
        if (!conn.diverged) this.compareTcp(conn, out);
        return out;
      }
    }
    if (queue.length >= this.maxQueueSize) {
      this.drop(side, frame, 'overflow', out);
      this.request(out, 'queue-full', conn.flow, `${side} queue holds ${queue.length} frames (max-queue-size ${this.maxQueueSize}); frame dropped`);
      return out;
    }
    if (pkt.kind === 'tcp') queue.insertBySeq(held);
    else queue.push(held);
    if (side === 'primary') this.heldPrimary++;
    else this.heldSecondary++;
    if (!conn.diverged) {
      if (pkt.kind === 'tcp') this.compareTcp(conn, out);
      else this.compareDatagrams(conn, out);
    }
    // Still waiting: it must not keep the chunk it may be a view of alive (a copy only for frames that wait).
    if (!held.gone) {
      const own = ownFrame(frame);
      if (own !== frame) {
        held.frame = own;
        pkt.rebase(own.data);
      }
    }
    return out;
  }

  /**
   * Looks for held frames older than the compare timeout; asks for one
   * checkpoint (naming the first such connection) if there are any.
   */
  scan(now: number, out: Decision[] = []): Decision[] {
    for (const conn of this.touched) {
      // Datagram queues are in arrival order: their head is the oldest frame.
      // TCP queues are in sequence order, so every frame is looked at.
      const fifo = conn.kind !== 'tcp';
      const oldPrimary = this.oldest(conn.primary, now, fifo);
      const old = oldPrimary ?? this.oldest(conn.secondary, now, fifo);
      if (old !== undefined) {
        const side = oldPrimary !== undefined ? 'primary' : 'secondary';
        this.request(out, 'timeout', conn.flow, `${side} frame held ${now - old.at} ms without a match (compare timeout ${this.compareTimeoutMs} ms)`);
        break;
      }
    }
    return out;
  }

  /**
   * A checkpoint was taken: the secondary now runs from the primary's state,
   * so the primary's held output is the truth. Releases it (in arrival
   * order) and drops everything the secondary sent before.
   */
  checkpointDone(out: Decision[] = []): Decision[] {
    const released: Held[] = [];
    for (const conn of this.touched) {
      const held = conn.primary.drain();
      for (const h of conn.secondary.drain()) this.drop('secondary', h.frame, 'checkpoint', out);
      conn.diverged = false;
      if (conn.kind === 'tcp') {
        // The primary's sequence space is now the connection's history.
        for (const h of held) {
          if (h.start === h.end) continue;
          if (conn.verified === undefined) conn.low = h.start;
          conn.verified = seqMax(conn.verified, h.end);
        }
        // The secondary now holds everything the primary has acknowledged.
        if (conn.primaryAck !== undefined) conn.secondaryAck = seqMax(conn.secondaryAck, conn.primaryAck);
      }
      for (const h of held) released.push(h);
    }
    this.heldSecondary = 0;
    this.touched.clear();
    released.sort((a, b) => a.order - b.order);
    for (const h of released) this.release(h.frame, 'checkpoint', out);
    this.heldPrimary = 0;
    return out;
  }

  private oldest(q: Queue, now: number, fifo: boolean): Held | undefined {
    const n = fifo ? Math.min(1, q.length) : q.length;
    for (let i = 0; i < n; i++) {
      const h = q.at(i);
      if (now - h.at > this.compareTimeoutMs) return h;
    }
    return undefined;
  }

  private passUncompared(side: Side, frame: Frame, out: Decision[]): void {
    if (side === 'primary') this.release(frame, 'uncompared', out);
    else this.drop(side, frame, 'uncompared', out);
  }

  private release(frame: Frame, why: ReleaseWhy, out: Decision[]): void {
    this.counts.released++;
    if (why === 'match') this.counts.matched++;
    out.push({ type: 'release', frame, why });
  }

  private drop(side: Side, frame: Frame, why: DropWhy, out: Decision[]): void {
    this.counts.dropped++;
    out.push({ type: 'drop', side, frame, why });
  }

  private request(out: Decision[], reason: CheckpointReason, flow: string, detail: string): void {
    this.counts.checkpointRequests++;
    out.push({ type: 'checkpoint', request: { reason, flow, detail } });
  }

  /** Finds or creates the packet's connection; undefined when the table is full of busy ones (frame dropped). */
  private connection(pkt: Packet, side: Side, frame: Frame, out: Decision[]): Connection | undefined {
    const hash = this.conns.hash(pkt);
    let conn = this.conns.get(pkt, hash);
    if (conn !== undefined) {
      conn.active = this.order;
      return conn;
    }
    if (this.conns.size >= this.maxConnections && !this.evictIdle()) {
      this.drop(side, frame, 'overflow', out);
      this.request(out, 'table-full', pkt.flow(), `${this.conns.size} connections hold frames (max ${this.maxConnections}); frame of a new connection dropped`);
      return undefined;
    }
    conn = {
      id: this.conns.identify(pkt, hash),
      kind: pkt.kind,
      flow: pkt.flow(),
      primary: new Queue(),
      secondary: new Queue(),
      diverged: false,
      active: this.order,
      low: 0,
      verified: undefined,
      primaryAck: undefined,
      secondaryAck: undefined,
    };
    this.conns.add(conn.id, conn);
    return conn;
  }

  /**
   * Forgets the least recently active connection that holds nothing; false
   * if every one holds frames. A walk of the table, but only when it is full.
   */
  private evictIdle(): boolean {
    let victim: Connection | undefined;
    for (const c of this.conns.values()) {
      if (c.primary.length === 0 && c.secondary.length === 0 && (victim === undefined || c.active < victim.active)) victim = c;
    }
    if (victim === undefined) return false;
    this.conns.delete(victim.id);
    this.touched.delete(victim);
    return true;
  }

  private mismatch(conn: Connection, detail: string, out: Decision[]): void {
    conn.diverged = true;
    this.request(out, 'mismatch', conn.flow, detail);
  }

  // -------------------------------------------------------------------------
  // UDP, ICMP, other IP
  // -------------------------------------------------------------------------

  private compareDatagrams(conn: Connection, out: Decision[]): void {
    const p = conn.primary;
    const s = conn.secondary;
    while (p.length > 0 && s.length > 0) {
      const ph = p.first()!;
      let found = -1;
      for (let i = 0; i < s.length; i++) {
        if (sameL4(ph, s.at(i))) {
          found = i;
          break;
        }
      }
      if (found < 0) {
        this.mismatch(conn, `primary ${conn.kind} datagram of ${ph.pkt.l4End - ph.pkt.l4Start} bytes matches none of the ${s.length} held secondary ones`, out);
        return;
      }
      const sh = s.removeAt(found);
      p.shift();
      this.heldPrimary--;
      this.heldSecondary--;
      this.release(ph.frame, 'match', out);
      this.drop('secondary', sh.frame, 'match', out);
    }
  }

  // -------------------------------------------------------------------------
  // TCP
  // -------------------------------------------------------------------------

  private compareTcp(conn: Connection, out: Decision[]): void {
    const p = conn.primary;
    const s = conn.secondary;
    for (;;) {
      const ph = p.first();
      if (ph === undefined) break;
      const flags = ph.pkt.flags;
      if (ph.start === ph.end) {
        // No sequence space: a pure ACK, or a RST.
        if (flags & TcpFlag.RST) {
          const i = findRst(s, ph.start);
          if (i < 0) break;
          this.drop('secondary', s.removeAt(i).frame, 'match', out);
          this.heldSecondary--;
        } else if (!this.ackCovered(conn, ph)) {
          break;
        }
        p.shift();
        this.heldPrimary--;
        this.release(ph.frame, 'match', out);
        continue;
      }
      if (this.spent(conn, ph)) {
        // A retransmission of sequence space already found equal and released.
        p.shift();
        this.heldPrimary--;
        this.release(ph.frame, 'retransmit', out);
        continue;
      }
      // A hole between what was released and this segment: its earlier bytes
      // have not arrived from the primary yet, and must go first.
      if (conn.verified !== undefined && after(ph.start, conn.verified)) break;
      let pos = ph.checkedTo;
      if (conn.verified !== undefined && !after(conn.low, pos) && after(conn.verified, pos)) pos = conn.verified;
      for (let i = 0; i < s.length && pos !== ph.end; i++) {
        const sh = s.at(i);
        if (sh.start === sh.end || !after(sh.end, pos)) continue; // RST, or wholly before pos
        if (after(sh.start, pos)) break; // a hole: the secondary has not sent these bytes yet
        const stop = after(ph.end, sh.end) ? sh.end : ph.end;
        const n = (stop - pos) >>> 0;
        if (!rangeEqual(ph, (pos - ph.start) >>> 0, sh, (pos - sh.start) >>> 0, n)) {
          this.mismatch(conn, `payload differs in sequence range ${pos}..${stop}`, out);
          return;
        }
        pos = stop;
      }
      ph.checkedTo = pos;
      if (pos !== ph.end || !this.ackCovered(conn, ph)) break;
      p.shift();
      this.heldPrimary--;
      if (conn.verified === undefined) {
        conn.low = ph.start;
        conn.verified = ph.end;
      } else {
        // Merge [start, end) into [low, verified): it touches or overlaps (holes wait above).
        if (after(conn.low, ph.start)) conn.low = ph.start;
        conn.verified = seqMax(conn.verified, ph.end);
      }
      this.release(ph.frame, 'match', out);
      this.dropSpent(conn, 'match', out);
    }
    // Secondary retransmissions of released sequence space are spent too.
    this.dropSpent(conn, 'retransmit', out);
  }

  /**
   * Drops the secondary segments wholly inside the released range. The queue
   * is in sequence order, so they sit at the front, after any that start
   * before the range: the walk stops at the first segment reaching past it
   * (constant time per call in a steady stream, not a scan of the queue).
   */
  private dropSpent(conn: Connection, why: DropWhy, out: Decision[]): void {
    if (conn.verified === undefined) return;
    const s = conn.secondary;
    for (let i = 0; i < s.length; ) {
      const sh = s.at(i);
      if (this.spent(conn, sh)) {
        s.removeAt(i);
        this.heldSecondary--;
        this.drop('secondary', sh.frame, why, out);
      } else if (sh.start === sh.end || after(conn.low, sh.start)) {
        i++; // a RST, or a segment before the released range: not ours to judge here
      } else {
        break;
      }
    }
  }

  /** The segment's sequence space lies wholly inside what was already found equal and released. */
  private spent(conn: Connection, h: Held): boolean {
    return conn.verified !== undefined && h.start !== h.end && !after(conn.low, h.start) && !after(h.end, conn.verified);
  }

  /**
   * A primary segment may only leave once the secondary has acknowledged as
   * far as it does: otherwise a client could see an ack for data that only
   * the primary received, and lose it on failover.
   */
  private ackCovered(conn: Connection, h: Held): boolean {
    if (!(h.pkt.flags & TcpFlag.ACK)) return true;
    return conn.secondaryAck !== undefined && !after(h.pkt.ack, conn.secondaryAck);
  }
}

function findRst(s: Queue, seq: number): number {
  for (let i = 0; i < s.length; i++) {
    const h = s.at(i);
    if (h.pkt.flags & TcpFlag.RST && h.start === seq) return i;
  }
  return -1;
}

function sameL4(a: Held, b: Held): boolean {
  const pa = a.pkt;
  const pb = b.pkt;
  const n = pa.l4End - pa.l4Start;
  if (n !== pb.l4End - pb.l4Start) return false;
  return a.frame.data.compare(b.frame.data, pb.l4Start, pb.l4End, pa.l4Start, pa.l4End) === 0;
}

const SYN_MARK = 1;
const DATA_MARK = 2;
const FIN_MARK = 3;

/** What occupies sequence offset `o` of a segment, and for how many positions it lasts. */
function piece(h: Held, o: number): [kind: number, left: number] {
  if (o < h.syn) return [SYN_MARK, 1];
  const plen = h.pkt.payloadEnd - h.pkt.payloadStart;
  const d = o - h.syn;
  if (d < plen) return [DATA_MARK, plen - d];
  return [FIN_MARK, 1];
}

/** Equal content over `n` sequence positions at offsets `ao` of a and `bo` of b. */
function rangeEqual(a: Held, ao: number, b: Held, bo: number, n: number): boolean {
  while (n > 0) {
    const [ka, la] = piece(a, ao);
    const [kb, lb] = piece(b, bo);
    if (ka !== kb) return false;
    const k = Math.min(la, lb, n);
    if (ka === DATA_MARK) {
      const as = a.pkt.payloadStart + ao - a.syn;
      const bs = b.pkt.payloadStart + bo - b.syn;
      if (a.frame.data.compare(b.frame.data, bs, bs + k, as, as + k) !== 0) return false;
    }
    ao += k;
    bo += k;
    n -= k;
  }
  return true;
}
