/**
 * The primary's cache of page contents the secondary holds: the base of
 * each TANDEM_PAGE_XBZRLE delta. Bounded (least recently used pages go
 * first) and transactional per epoch:
 *
 * - while an epoch is encoded, each page sent is stage()d: lookups see it
 *   at once (a later record of the same epoch deltas against it, as the
 *   secondary applies the epoch's records in order);
 * - commit() once the secondary holds the epoch: the staged contents
 *   become the cache's;
 * - discard() when the epoch may not have been applied: the cache stays at
 *   the last epoch the secondary acked.
 *
 * So the cache only ever holds what the secondary holds. A page missing
 * from it (never sent in a checkpoint, or evicted) is sent whole, which is
 * always right. One cache lives for one stream: a new stream (a session
 * after a reconnection) starts empty.
 */
import { PAGE_SIZE } from '../stream/format.js';

/**
 * Slots live in chunks of this many pages, allocated as the cache first
 * fills them: a large cache costs memory only as it fills, and growing it
 * never copies what it holds.
 */
const CHUNK_PAGES = 256;

export class PageCache {
  private readonly chunks: Buffer[] = [];
  private readonly slotOf = new Map<number, number>();
  private readonly pfnAt: Float64Array;
  /** LRU list over slots: head is the most recently used. */
  private readonly prev: Int32Array;
  private readonly next: Int32Array;
  private head = -1;
  private tail = -1;
  private used = 0;
  /** Slots given back by discard(), reused before the LRU page is evicted. */
  private free: number[] = [];
  /** Pages of the epoch being encoded: views that stay unchanged until commit() or discard(). */
  private readonly staged = new Map<number, Buffer>();
  /** Counters for the monitor and the benchmark. */
  evictions = 0;

  constructor(readonly capacityPages: number) {
    if (!Number.isInteger(capacityPages) || capacityPages < 1) throw new RangeError(`page cache capacity ${capacityPages}, expected a positive integer`);
    this.pfnAt = new Float64Array(capacityPages);
    this.prev = new Int32Array(capacityPages);
    this.next = new Int32Array(capacityPages);
  }

  /** Pages held (committed). */
  get size(): number {
    return this.slotOf.size;
  }

  /** Pages staged in the epoch being encoded. */
  get stagedPages(): number {
    return this.staged.size;
  }

  /** The content the secondary will hold for `pfn` if this epoch commits; undefined when unknown. */
  lookup(pfn: number): Buffer | undefined {
    const staged = this.staged.get(pfn);
    if (staged !== undefined) return staged;
    const slot = this.slotOf.get(pfn);
    if (slot === undefined) return undefined;
    this.toFront(slot);
    return this.slotPage(slot);
  }

  /** `content` is what this epoch sends for `pfn`. It must stay unchanged until commit() or discard(). */
  stage(pfn: number, content: Buffer): void {
    if (content.length !== PAGE_SIZE) throw new RangeError('a cached page is 4096 bytes');
    this.staged.set(pfn, content);
  }

  /** The secondary holds the epoch: its pages become the cache's content. */
  commit(): void {
    for (const [pfn, content] of this.staged) {
      let slot = this.slotOf.get(pfn);
      if (slot === undefined) slot = this.allocate(pfn);
      content.copy(this.chunks[Math.floor(slot / CHUNK_PAGES)], (slot % CHUNK_PAGES) * PAGE_SIZE);
      this.toFront(slot);
    }
    this.staged.clear();
  }

  /**
   * The epoch's fate is unknown (the secondary may or may not have applied
   * it): its pages are forgotten altogether, staged and committed alike, so
   * that none of them is ever the base of a delta again until it is sent
   * whole.
   */
  discard(): void {
    for (const pfn of this.staged.keys()) {
      const slot = this.slotOf.get(pfn);
      if (slot === undefined) continue;
      this.slotOf.delete(pfn);
      this.unlink(slot);
      this.free.push(slot);
    }
    this.staged.clear();
  }

  /** Forgets everything, and gives its memory back. */
  clear(): void {
    this.staged.clear();
    this.slotOf.clear();
    this.chunks.length = 0;
    this.head = this.tail = -1;
    this.used = 0;
    this.free = [];
  }

  private allocate(pfn: number): number {
    let slot: number;
    const reused = this.free.pop();
    if (reused !== undefined) {
      slot = reused;
    } else if (this.used < this.capacityPages) {
      slot = this.used++;
      this.grow(this.used);
      this.prev[slot] = this.next[slot] = -1;
    } else {
      slot = this.tail;
      this.unlink(slot);
      this.slotOf.delete(this.pfnAt[slot]);
      this.evictions++;
    }
    this.pfnAt[slot] = pfn;
    this.slotOf.set(pfn, slot);
    this.link(slot);
    return slot;
  }

  /** Makes room for `slots` slots: a new chunk when the last one is full. */
  private grow(slots: number): void {
    while (this.chunks.length * CHUNK_PAGES < slots) {
      const pages = Math.min(CHUNK_PAGES, this.capacityPages - this.chunks.length * CHUNK_PAGES);
      this.chunks.push(Buffer.allocUnsafeSlow(pages * PAGE_SIZE));
    }
  }

  private slotPage(slot: number): Buffer {
    const at = (slot % CHUNK_PAGES) * PAGE_SIZE;
    return this.chunks[Math.floor(slot / CHUNK_PAGES)].subarray(at, at + PAGE_SIZE);
  }

  private toFront(slot: number): void {
    if (this.head === slot) return;
    this.unlink(slot);
    this.link(slot);
  }

  private link(slot: number): void {
    this.prev[slot] = -1;
    this.next[slot] = this.head;
    if (this.head !== -1) this.prev[this.head] = slot;
    this.head = slot;
    if (this.tail === -1) this.tail = slot;
  }

  private unlink(slot: number): void {
    const p = this.prev[slot];
    const n = this.next[slot];
    if (p !== -1) this.next[p] = n;
    else if (this.head === slot) this.head = n;
    if (n !== -1) this.prev[n] = p;
    else if (this.tail === slot) this.tail = p;
    this.prev[slot] = this.next[slot] = -1;
  }
}
