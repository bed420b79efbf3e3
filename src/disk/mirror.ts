/**
 * The disk's checkpoint device on the primary. At each suspend it takes the
 * blocks the guest wrote during the epoch that just ended and copies them
 * out while the guest is paused (so the copy is the disk as of the
 * checkpoint); the session then sends them as TANDEM_DISK_WRITES records in
 * that epoch's checkpoint, and the secondary applies them at the same
 * CHECKPOINT_END as the epoch's memory, never earlier.
 *
 * A protection session starts with a full sync: the first checkpoint carries
 * every block that may be non-zero, flagged RESET so the replica zeroes the
 * rest. Between sessions (no standby) writes are not tracked: the next
 * session's full sync covers them.
 */
import type { CheckpointDevice } from '../checkpoint/devices.js';
import type { StreamRecord } from '../stream/records.js';
import { TandemType } from '../stream/format.js';
import { DISK_WRITES_HEADER, DiskWritesFlags, EXTENT_HEADER, writeDiskWritesHeader, writeExtentHeader } from './record.js';
import { DISK_BLOCK_SIZE, type SimDisk } from './sim-disk.js';

export interface DiskMirrorOptions {
  disk: SimDisk;
  /** Index of this disk in the records (0 for the first). */
  index?: number;
  /** Most blocks one record carries (default 1024: 4 MiB, under the secondary's record limit). */
  maxBlocksPerRecord?: number;
}

export interface DiskEpochStats {
  epoch: number;
  blocks: number;
  bytes: number;
  fullSync: boolean;
}

export class DiskMirror implements CheckpointDevice {
  readonly name: string;
  private staging = Buffer.alloc(0);
  private staged: { epoch: number; bodies: Buffer[]; blocks: number; fullSync: boolean } | undefined;
  private fullSyncDue = false;
  private active = false;
  private last: DiskEpochStats | undefined;

  constructor(private readonly options: DiskMirrorOptions) {
    this.name = `disk${options.index ?? 0}`;
  }

  /** What the last staged epoch carried. */
  get lastEpoch(): DiskEpochStats | undefined {
    return this.last;
  }

  setup(): void {
    this.options.disk.enableTracking();
    this.fullSyncDue = true;
    this.active = true;
    this.staged = undefined;
  }

  /** The guest is paused: the epoch's writes are final. Copy them out. */
  postsuspend(epoch: number): void {
    if (!this.active) return;
    const { disk } = this.options;
    const dirty = disk.readAndClearDirty();
    const fullSync = this.fullSyncDue;
    // writtenBlocks() already holds every dirty block.
    const blocks = fullSync ? disk.writtenBlocks() : dirty;
    this.fullSyncDue = false;
    this.staged = { epoch, bodies: this.stage(blocks, fullSync), blocks: blocks.length, fullSync };
  }

  /** The records for `epoch`'s checkpoint (views of the staging buffer, valid until the next suspend). */
  records(epoch: number): StreamRecord[] {
    const s = this.staged;
    if (s === undefined || s.epoch !== epoch) return [];
    this.last = { epoch, blocks: s.blocks, bytes: s.blocks * DISK_BLOCK_SIZE, fullSync: s.fullSync };
    return s.bodies.map((data) => ({ layer: 'libxl', type: 'OPTIONAL', code: TandemType.TANDEM_DISK_WRITES, data }));
  }

  teardown(): void {
    this.active = false;
    this.staged = undefined;
    this.options.disk.disableTracking();
  }

  /**
   * Lays the record bodies out in the staging buffer: runs of adjacent
   * blocks become one extent, at most maxBlocksPerRecord blocks a record.
   * An epoch with no writes sends nothing, except a full sync, which always
   * sends its RESET (an empty disk is still a disk to zero).
   */
  private stage(blocks: Uint32Array, fullSync: boolean): Buffer[] {
    if (blocks.length === 0 && !fullSync) return [];
    const max = this.options.maxBlocksPerRecord ?? 1024;
    // Worst case: every block its own extent, a header per record.
    const records = Math.max(1, Math.ceil(blocks.length / max));
    const need = records * DISK_WRITES_HEADER + blocks.length * (EXTENT_HEADER + DISK_BLOCK_SIZE);
    if (this.staging.length < need) this.staging = Buffer.allocUnsafe(Math.max(need, Math.min(this.staging.length * 2, need * 2)));
    const buf = this.staging;
    const { disk } = this.options;
    const index = this.options.index ?? 0;
    const bodies: Buffer[] = [];
    let at = 0;
    let i = 0;
    do {
      const start = at;
      const take = Math.min(max, blocks.length - i);
      at += DISK_WRITES_HEADER;
      let extents = 0;
      const end = i + take;
      while (i < end) {
        let j = i + 1;
        while (j < end && blocks[j] === blocks[j - 1] + 1) j++;
        writeExtentHeader(buf, at, blocks[i], j - i);
        disk.copyBlocks(blocks, i, j - i, buf, at + EXTENT_HEADER);
        at += EXTENT_HEADER + (j - i) * DISK_BLOCK_SIZE;
        extents++;
        i = j;
      }
      // Only the first record of a full sync resets: later ones add to it.
      const flags = fullSync && bodies.length === 0 ? DiskWritesFlags.RESET : 0;
      writeDiskWritesHeader(buf, start, { disk: index, flags, capacity: disk.capacityBytes, extents });
      bodies.push(buf.subarray(start, at));
    } while (i < blocks.length);
    return bodies;
  }
}
