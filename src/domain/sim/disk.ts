/**
 * The sim guest's virtual block device: a fixed-size disk of 4 KiB blocks
 * in one Buffer. Guest writes go through write(), which is refused while the
 * domain is paused (a paused guest issues no I/O) and marks the blocks it
 * touches; the mirror reads and clears those marks once per epoch, as the
 * dirty log does for RAM. The restore side installs blocks with
 * installBlocks(), which is not a guest write and so is not tracked.
 */
import { createHash } from 'node:crypto';
import type { BlockDevice } from '../../disk/block-device.js';
import { DISK_BLOCK_SIZE } from '../../disk/record.js';
import { IndexSet } from '../index-set.js';

/** Largest sim disk: block indexes stay well inside a u32 and the Buffer inside one allocation. */
export const MAX_DISK_BYTES = 1024 * 1024 * 1024;

export interface SimDiskOptions {
  /** Bytes, a multiple of DISK_BLOCK_SIZE in 1 block .. MAX_DISK_BYTES. */
  capacityBytes: number;
  /** The domain the disk belongs to: its guest cannot write while paused. */
  domain: { readonly paused: boolean };
}

export class SimDisk implements BlockDevice {
  readonly capacityBytes: number;
  readonly blocks: number;
  private readonly data: Buffer;
  private readonly domain: { readonly paused: boolean };
  private readonly dirty: IndexSet;
  /** Every block that may be non-zero (written by the guest or installed): what a fresh replica must be sent. */
  private readonly written: IndexSet;
  private tracking = false;
  /** COLO secondary: the guest's writes since the last checkpoint, by block. */
  private overlay: Map<number, Buffer> | undefined = undefined;

  constructor(options: SimDiskOptions) {
    const { capacityBytes } = options;
    if (!Number.isInteger(capacityBytes) || capacityBytes < DISK_BLOCK_SIZE || capacityBytes > MAX_DISK_BYTES || capacityBytes % DISK_BLOCK_SIZE !== 0) {
      throw new RangeError(`sim disk capacity must be a multiple of ${DISK_BLOCK_SIZE} in ${DISK_BLOCK_SIZE}..${MAX_DISK_BYTES} bytes, got ${capacityBytes}`);
    }
    this.capacityBytes = capacityBytes;
    this.blocks = capacityBytes / DISK_BLOCK_SIZE;
    this.data = Buffer.alloc(capacityBytes);
    this.domain = options.domain;
    this.dirty = new IndexSet(this.blocks);
    this.written = new IndexSet(this.blocks);
  }

  /** A view of the disk's bytes (a copy where an overlay covers them): valid until the next write there. */
  read(offset: number, length: number): Buffer {
    this.check(offset, length, 'read');
    const overlay = this.overlay;
    if (overlay === undefined || overlay.size === 0 || length === 0) return this.data.subarray(offset, offset + length);
    const first = Math.floor(offset / DISK_BLOCK_SIZE);
    const last = Math.floor((offset + length - 1) / DISK_BLOCK_SIZE);
    let covered = false;
    for (let b = first; b <= last && !covered; b++) covered = overlay.has(b);
    if (!covered) return this.data.subarray(offset, offset + length);
    const out = Buffer.from(this.data.subarray(offset, offset + length));
    for (let b = first; b <= last; b++) {
      const blk = overlay.get(b);
      if (blk === undefined) continue;
      const from = Math.max(offset, b * DISK_BLOCK_SIZE);
      const to = Math.min(offset + length, (b + 1) * DISK_BLOCK_SIZE);
      blk.copy(out, from - offset, from - b * DISK_BLOCK_SIZE, to - b * DISK_BLOCK_SIZE);
    }
    return out;
  }

  /** A guest write. */
  write(offset: number, bytes: Uint8Array): void {
    if (this.domain.paused) throw new Error('sim domain is paused: guest disk writes are stopped');
    this.check(offset, bytes.length, 'write');
    if (bytes.length === 0) return;
    if (this.overlay !== undefined) {
      this.writeOverlay(this.overlay, offset, bytes);
      return;
    }
    this.data.set(bytes, offset);
    const first = Math.floor(offset / DISK_BLOCK_SIZE);
    const last = Math.floor((offset + bytes.length - 1) / DISK_BLOCK_SIZE);
    this.written.add(first, last);
    if (this.tracking) this.dirty.add(first, last);
  }

  /** Starts tracking writes for the mirror (clears the marks). */
  enableTracking(): void {
    this.tracking = true;
    this.dirty.clear();
  }

  disableTracking(): void {
    this.tracking = false;
    this.dirty.clear();
  }

  /** Blocks written since the last call, ascending; clears the marks. */
  readAndClearDirty(): Uint32Array {
    const out = this.dirty.sorted();
    this.dirty.clear();
    return out;
  }

  /** Blocks that may be non-zero, ascending. */
  writtenBlocks(): Uint32Array {
    return this.written.sorted();
  }

  /** Copies `blocks[0..count)` back to back into `dest` at `at`. */
  copyBlocks(blocks: ArrayLike<number>, from: number, count: number, dest: Buffer, at: number): void {
    if (at + count * DISK_BLOCK_SIZE > dest.length) throw new RangeError(`${count} blocks do not fit ${dest.length - at} bytes`);
    for (let i = 0; i < count; i++) {
      const b = blocks[from + i];
      if (!(b >= 0 && b < this.blocks)) throw new RangeError(`block ${b} outside the ${this.blocks}-block disk`);
      this.data.copy(dest, at + i * DISK_BLOCK_SIZE, b * DISK_BLOCK_SIZE, (b + 1) * DISK_BLOCK_SIZE);
    }
  }

  /** Restore side: `data` (whole blocks) at block `first`; not a guest write. */
  installBlocks(first: number, data: Uint8Array): void {
    if (data.length % DISK_BLOCK_SIZE !== 0) throw new RangeError(`${data.length} bytes is not a whole number of blocks`);
    this.check(first * DISK_BLOCK_SIZE, data.length, 'install');
    this.data.set(data, first * DISK_BLOCK_SIZE);
    // A promoted replica that is protected again must send these in its own fresh sync.
    if (data.length > 0) this.written.add(first, first + data.length / DISK_BLOCK_SIZE - 1);
  }

  /** Restore side: the whole disk reads as zeros (a fresh sync describes every block it does not send as zero). */
  zero(): void {
    // Only blocks ever made non-zero need it (every write, install and merge marks `written`). Filling the whole
    // disk held the event loop, and with it every domain's heartbeats, for a 64 MiB fill at each fresh sync.
    const blocks = this.written.sorted();
    for (let i = 0; i < blocks.length; ) {
      let j = i + 1;
      while (j < blocks.length && blocks[j] === blocks[j - 1] + 1) j++;
      this.data.fill(0, blocks[i] * DISK_BLOCK_SIZE, (blocks[j - 1] + 1) * DISK_BLOCK_SIZE);
      i = j;
    }
    this.written.clear();
  }

  /** COLO secondary: from now on guest writes go to an overlay, the base stays as checkpoints leave it. */
  startOverlay(): void {
    this.overlay = new Map();
  }

  /** Drops the overlay: the disk is the base again (a checkpoint replaces the guest's own writes). */
  dropOverlay(): number {
    const n = this.overlay?.size ?? 0;
    this.overlay = undefined;
    return n;
  }

  /** Writes the overlay into the base and ends it (the secondary takes over from its own run). */
  mergeOverlay(): number {
    const overlay = this.overlay;
    this.overlay = undefined;
    if (overlay === undefined) return 0;
    for (const [b, blk] of overlay) {
      blk.copy(this.data, b * DISK_BLOCK_SIZE);
      this.written.add(b, b);
      if (this.tracking) this.dirty.add(b, b);
    }
    return overlay.size;
  }

  private writeOverlay(overlay: Map<number, Buffer>, offset: number, bytes: Uint8Array): void {
    const first = Math.floor(offset / DISK_BLOCK_SIZE);
    const last = Math.floor((offset + bytes.length - 1) / DISK_BLOCK_SIZE);
    for (let b = first; b <= last; b++) {
      let blk = overlay.get(b);
      if (blk === undefined) {
        blk = Buffer.from(this.data.subarray(b * DISK_BLOCK_SIZE, (b + 1) * DISK_BLOCK_SIZE));
        overlay.set(b, blk);
      }
      const from = Math.max(offset, b * DISK_BLOCK_SIZE);
      const to = Math.min(offset + bytes.length, (b + 1) * DISK_BLOCK_SIZE);
      blk.set(bytes.subarray(from - offset, to - offset), from - b * DISK_BLOCK_SIZE);
    }
  }

  /** SHA-256 of the disk's contents (the base: a running COLO guest's overlay left out). */
  digest(): string {
    return createHash('sha256').update(this.data).digest('hex');
  }

  /** A view of the whole base (checkpointed) contents, without the overlay. */
  base(): Buffer {
    return this.data;
  }

  private check(offset: number, length: number, what: string): void {
    if (!(Number.isInteger(offset) && Number.isInteger(length) && offset >= 0 && length >= 0 && offset + length <= this.capacityBytes)) {
      throw new RangeError(`disk ${what} [${offset}, +${length}) outside the ${this.capacityBytes}-byte disk`);
    }
  }
}
