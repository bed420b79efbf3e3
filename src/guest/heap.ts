/**
 * The store's allocator, in guest RAM: segregated free lists per size class
 * (heads in the superblock, links in the free blocks themselves) in front of
 * a bump pointer. No coalescing: a freed block only ever serves its own class
 * again, or a smaller request when nothing else is left. Every block in
 * [heapOff, top) is either allocated or on exactly one free list, which is
 * what check() verifies.
 */
import {
  CLASS_MASK,
  E_NEXT,
  E_TAG,
  SB_FREE_HEADS,
  SB_HEAP_TOP,
  SB_HEAP_USED,
  TAG_ENTRY,
  TAG_FREE,
  TAG_MASK,
  classOf,
  classSize,
  type StoreLayout,
} from './layout.js';
import type { GuestRam } from './ram.js';

export interface FreeListReport {
  blocks: number;
  bytes: number;
}

export class Heap {
  private readonly scratch = Buffer.alloc(8);

  constructor(
    private readonly mem: GuestRam,
    private readonly layout: StoreLayout,
  ) {}

  get top(): number {
    return this.mem.u64(SB_HEAP_TOP);
  }

  get used(): number {
    return this.mem.u64(SB_HEAP_USED);
  }

  get capacity(): number {
    return this.layout.heapEnd - this.layout.heapOff;
  }

  /**
   * A block of at least `bytes`, tagged as allocated; its reference, or 0
   * when nothing fits, in which case nothing was written.
   */
  alloc(bytes: number): number {
    const cls = classOf(bytes);
    if (cls >= this.layout.classCount) return 0;
    let ref = this.popFree(cls);
    if (ref === 0) ref = this.bump(cls);
    // Last resort before OOM: a free block of a larger class, slack and all.
    for (let c = cls + 1; ref === 0 && c < this.layout.classCount; c++) ref = this.popFree(c);
    return ref;
  }

  free(ref: number): void {
    const off = ref * 8;
    const cls = this.mem.u32(off + E_TAG) & CLASS_MASK;
    const headAt = SB_FREE_HEADS + cls * 4;
    this.scratch.writeUInt32LE((TAG_FREE | cls) >>> 0, E_TAG);
    this.scratch.writeUInt32LE(this.mem.u32(headAt), E_NEXT);
    this.mem.write(off, this.scratch);
    this.mem.setU32(headAt, ref);
    this.mem.setU64(SB_HEAP_USED, this.used - classSize(cls));
  }

  /** The size of the block at `ref` (its class's size). */
  blockBytes(ref: number): number {
    return classSize(this.mem.u32(ref * 8 + E_TAG) & CLASS_MASK);
  }

  /** Forgets every block: the heap is empty again (FLUSHALL). */
  reset(): void {
    this.mem.setU64(SB_HEAP_TOP, this.layout.heapOff);
    this.mem.setU64(SB_HEAP_USED, 0);
    this.mem.write(SB_FREE_HEADS, Buffer.alloc(this.layout.classCount * 4));
  }

  /** Whether `ref` names a block start inside the used part of the heap. */
  isBlockRef(ref: number): boolean {
    const off = ref * 8;
    return ref !== 0 && off >= this.layout.heapOff && off + 8 <= this.top;
  }

  /** Walks every free list; throws a description of the first inconsistency. */
  checkFreeLists(): FreeListReport {
    const report: FreeListReport = { blocks: 0, bytes: 0 };
    const maxBlocks = Math.floor(this.capacity / classSize(0));
    for (let cls = 0; cls < this.layout.classCount; cls++) {
      let ref = this.mem.u32(SB_FREE_HEADS + cls * 4);
      while (ref !== 0) {
        if (!this.isBlockRef(ref)) throw new Error(`free list ${cls}: reference ${ref} outside the heap`);
        const tag = this.mem.u32(ref * 8 + E_TAG);
        if ((tag & TAG_MASK) >>> 0 !== TAG_FREE || (tag & CLASS_MASK) !== cls) {
          throw new Error(`free list ${cls}: block at offset ${ref * 8} has tag 0x${tag.toString(16)}`);
        }
        if (ref * 8 + classSize(cls) > this.top) throw new Error(`free list ${cls}: block at offset ${ref * 8} runs past the heap top`);
        report.blocks++;
        report.bytes += classSize(cls);
        if (report.blocks > maxBlocks) throw new Error(`free list ${cls}: cycle`);
        ref = this.mem.u32(ref * 8 + E_NEXT);
      }
    }
    return report;
  }

  private popFree(cls: number): number {
    const headAt = SB_FREE_HEADS + cls * 4;
    const ref = this.mem.u32(headAt);
    if (ref === 0) return 0;
    this.mem.setU32(headAt, this.mem.u32(ref * 8 + E_NEXT));
    this.mem.setU32(ref * 8 + E_TAG, (TAG_ENTRY | cls) >>> 0);
    this.mem.setU64(SB_HEAP_USED, this.used + classSize(cls));
    return ref;
  }

  private bump(cls: number): number {
    const size = classSize(cls);
    const top = this.top;
    if (top + size > this.layout.heapEnd) return 0;
    this.mem.setU64(SB_HEAP_TOP, top + size);
    this.mem.setU32(top + E_TAG, (TAG_ENTRY | cls) >>> 0);
    this.mem.setU64(SB_HEAP_USED, this.used + size);
    return top / 8;
  }
}
