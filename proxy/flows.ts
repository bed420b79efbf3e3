/**
 * The comparator's connection table, keyed by a packet's flow (VLAN, IP
 * family, protocol, addresses, ports) without building a string per frame.
 *
 * A string key costs every frame a number-to-text conversion per field, a
 * concatenation, and a flatten and hash inside Map.get; with many flows that
 * was the comparator's largest single cost. Here a frame costs an integer
 * hash of the header fields it already decoded and a field-by-field compare
 * against the connection's own copy of its identity.
 *
 * The hash is keyed with a per-table random seed: the frames come from a
 * guest, and a guest that could predict it could put every connection in one
 * chain and make each lookup a walk of the whole table. Chains are bounded by
 * the table's size all the same (the comparator's max connections).
 */
import { randomInt } from 'node:crypto';
import type { Packet } from './packet.js';

/** A flow's identity, owned by the table (a packet's data may be a view of a chunk that goes away). */
export class FlowId {
  constructor(
    readonly hash: number,
    readonly vlan: number,
    readonly family: number,
    readonly proto: number,
    readonly sport: number,
    readonly dport: number,
    /** IPv4: the source and destination addresses as numbers; IPv6: unused (0). */
    readonly src4: number,
    readonly dst4: number,
    /** IPv6: the 32 bytes of source then destination address; IPv4: empty. */
    readonly addrs6: Buffer,
  ) {}
}

interface Entry<T> {
  readonly id: FlowId;
  readonly value: T;
  next: Entry<T> | undefined;
}

const EMPTY = Buffer.alloc(0);

export class FlowTable<T> {
  private readonly buckets = new Map<number, Entry<T>>();
  private count = 0;

  constructor(private readonly seed: number = randomInt(0, 2 ** 30)) {}

  get size(): number {
    return this.count;
  }

  /** The hash of a packet's flow (IP kinds only: arp and l2 frames have no flow). */
  hash(pkt: Packet): number {
    const d = pkt.data;
    const at = pkt.addrAt;
    let h = mix(this.seed, (pkt.vlan & 0xffff) | (pkt.family << 16) | (pkt.proto << 24));
    h = mix(h, ((pkt.sport & 0xffff) << 16) | (pkt.dport & 0xffff));
    if (pkt.family === 4) {
      h = mix(h, d.readInt32BE(at));
      h = mix(h, d.readInt32BE(at + 4));
    } else {
      for (let i = 0; i < 32; i += 4) h = mix(h, d.readInt32BE(at + i));
    }
    // Small non-negative integers stay unboxed in V8's Map.
    return (h ^ (h >>> 15)) & 0x3fffffff;
  }

  get(pkt: Packet, hash: number): T | undefined {
    for (let e = this.buckets.get(hash); e !== undefined; e = e.next) if (same(e.id, pkt)) return e.value;
    return undefined;
  }

  /** The packet's flow as the table keeps it (a copy: it outlives the packet's bytes). */
  identify(pkt: Packet, hash: number): FlowId {
    const d = pkt.data;
    const at = pkt.addrAt;
    const v4 = pkt.family === 4;
    return new FlowId(
      hash,
      pkt.vlan,
      pkt.family,
      pkt.proto,
      pkt.sport,
      pkt.dport,
      v4 ? d.readUInt32BE(at) : 0,
      v4 ? d.readUInt32BE(at + 4) : 0,
      v4 ? EMPTY : Buffer.from(d.subarray(at, at + 32)),
    );
  }

  /** Adds a flow not in the table (get() found nothing for it). */
  add(id: FlowId, value: T): void {
    this.buckets.set(id.hash, { id, value, next: this.buckets.get(id.hash) });
    this.count++;
  }

  delete(id: FlowId): boolean {
    let prev: Entry<T> | undefined;
    for (let e = this.buckets.get(id.hash); e !== undefined; prev = e, e = e.next) {
      if (e.id !== id) continue;
      if (prev !== undefined) prev.next = e.next;
      else if (e.next !== undefined) this.buckets.set(id.hash, e.next);
      else this.buckets.delete(id.hash);
      this.count--;
      return true;
    }
    return false;
  }

  *values(): IterableIterator<T> {
    for (const head of this.buckets.values()) for (let e: Entry<T> | undefined = head; e !== undefined; e = e.next) yield e.value;
  }
}

/** One round of a 32-bit multiply-xorshift mix (murmur3's constants). */
function mix(h: number, k: number): number {
  k = Math.imul(k, 0xcc9e2d51);
  k = (k << 15) | (k >>> 17);
  h ^= Math.imul(k, 0x1b873593);
  h = (h << 13) | (h >>> 19);
  return (Math.imul(h, 5) + 0xe6546b64) | 0;
}

function same(id: FlowId, pkt: Packet): boolean {
  if (id.sport !== pkt.sport || id.dport !== pkt.dport || id.proto !== pkt.proto || id.vlan !== pkt.vlan || id.family !== pkt.family) return false;
  const d = pkt.data;
  const at = pkt.addrAt;
  if (id.family === 4) return d.readUInt32BE(at) === id.src4 && d.readUInt32BE(at + 4) === id.dst4;
  return d.compare(id.addrs6, 0, 32, at, at + 32) === 0;
}
