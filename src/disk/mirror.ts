/**
 * The disk's checkpoint device on the primary. At each suspend it takes the
 * blocks the guest wrote during the epoch that just ended and copies them
 * out while the guest is paused (so the copy is the disk as of the
 * checkpoint); the session then sends them as TANDEM_DISK_WRITES records in
 * that epoch's checkpoint, and the secondary applies them at the same
 * CHECKPOINT_END as the epoch's memory, never earlier.
 *
 * A protection session starts with a full sync: every block that may be
 * non-zero, the first record flagged RESET so the replica zeroes the rest.
 * The session sends it live (liveSync, ahead of the memory pre-copy) while
 * the guest runs, copying one record's blocks at a time; writes from the
 * setup on are tracked, so the first checkpoint carries only the blocks
 * written since, like the last pre-copy round of RAM. A session that does not
 * run the live sync gets the full sync in its first checkpoint instead.
 * Between sessions (no standby) writes are not tracked: the next session's
 * full sync covers them.
 */
import type { CheckpointDevice } from '../checkpoint/devices.js';
import type { StreamRecord } from '../stream/records.js';
import { TandemType } from '../stream/format.js';
import type { BlockDevice } from './block-device.js';
import { DISK_BLOCK_SIZE, DISK_WRITES_HEADER, DiskWritesFlags, EXTENT_HEADER, writeDiskWritesHeader, writeExtentHeader } from './record.js';

export interface DiskMirrorOptions {
  disk: BlockDevice;
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

export interface DiskLiveSyncStats {
  blocks: number;
  records: number;
}

export class DiskMirror implements CheckpointDevice {
  readonly name: string;
  private staging = Buffer.alloc(0);
  private staged: { epoch: number; bodies: Buffer[]; blocks: number; fullSync: boolean } | undefined;
  private fullSyncDue = false;
  private active = false;
  private last: DiskEpochStats | undefined;
  private lastLive: DiskLiveSyncStats | undefined;

  constructor(private readonly options: DiskMirrorOptions) {
    this.name = `disk${options.index ?? 0}`;
  }

  /** What the last staged epoch carried. */
  get lastEpoch(): DiskEpochStats | undefined {
    return this.last;
  }

  /** What the last completed live sync sent. */
  get lastLiveSync(): DiskLiveSyncStats | undefined {
    return this.lastLive;
  }

  setup(): void {
    this.options.disk.enableTracking();
    this.fullSyncDue = true;
    this.active = true;
    this.staged = undefined;
  }

  /**
   * The full sync, live: one record per batch, each in a buffer of its own
   * (the previous one may still be queued in the socket). The block list is
   * taken once; a block the guest writes after the setup is in the dirty
   * set whether or not it was copied yet, and goes with the first
   * checkpoint. Only a sync run to its end spares that checkpoint the full
   * sync.
   */
  *liveSync(): Generator<StreamRecord[]> {
    if (!this.active || !this.fullSyncDue) return;
    const blocks = this.options.disk.writtenBlocks();
    const max = this.maxBlocks();
    let records = 0;
    let i = 0;
    do {
      const take = Math.min(max, blocks.length - i);
      const body = Buffer.allocUnsafe(this.recordBytes(blocks, i, take));
      this.encode(body, 0, blocks, i, take, i === 0 ? DiskWritesFlags.RESET : 0);
      i += take;
      records++;
      yield [this.record(body)];
    } while (i < blocks.length);
    this.fullSyncDue = false;
    this.lastLive = { blocks: blocks.length, records };
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
    return s.bodies.map((data) => this.record(data));
  }

  teardown(): void {
    this.active = false;
    this.staged = undefined;
    this.options.disk.disableTracking();
  }

  /**
   * Lays the record bodies out in the staging buffer, at most
   * maxBlocksPerRecord blocks a record. An epoch with no writes sends
   * nothing, except a full sync, which always sends its RESET (an empty disk
   * is still a disk to zero).
   */
  private stage(blocks: Uint32Array, fullSync: boolean): Buffer[] {
    if (blocks.length === 0 && !fullSync) return [];
    const max = this.maxBlocks();
    // Worst case: every block its own extent, a header per record.
    const records = Math.max(1, Math.ceil(blocks.length / max));
    const need = records * DISK_WRITES_HEADER + blocks.length * (EXTENT_HEADER + DISK_BLOCK_SIZE);
    if (this.staging.length < need) this.staging = Buffer.allocUnsafe(Math.max(need, Math.min(this.staging.length * 2, need * 2)));
    const buf = this.staging;
    const bodies: Buffer[] = [];
    let at = 0;
    let i = 0;
    do {
      const take = Math.min(max, blocks.length - i);
      // Only the first record of a full sync resets: later ones add to it.
      const end = this.encode(buf, at, blocks, i, take, fullSync && bodies.length === 0 ? DiskWritesFlags.RESET : 0);
      bodies.push(buf.subarray(at, end));
      at = end;
      i += take;
    } while (i < blocks.length);
    return bodies;
  }

  private maxBlocks(): number {
    return this.options.maxBlocksPerRecord ?? 1024;
  }

  /** Bytes of one record body for `blocks[from..from+count)`: runs of adjacent blocks share an extent header. */
  private recordBytes(blocks: Uint32Array, from: number, count: number): number {
    let extents = count > 0 ? 1 : 0;
    for (let k = from + 1; k < from + count; k++) if (blocks[k] !== blocks[k - 1] + 1) extents++;
    return DISK_WRITES_HEADER + extents * EXTENT_HEADER + count * DISK_BLOCK_SIZE;
  }

  /** One record body for `blocks[from..from+count)` at `buf[at..]`, runs of adjacent blocks as one extent; returns its end. */
  private encode(buf: Buffer, at: number, blocks: Uint32Array, from: number, count: number, flags: number): number {
    const { disk } = this.options;
    const start = at;
    at += DISK_WRITES_HEADER;
    let extents = 0;
    const end = from + count;
    let i = from;
    while (i < end) {
      let j = i + 1;
      while (j < end && blocks[j] === blocks[j - 1] + 1) j++;
      writeExtentHeader(buf, at, blocks[i], j - i);
      disk.copyBlocks(blocks, i, j - i, buf, at + EXTENT_HEADER);
      at += EXTENT_HEADER + (j - i) * DISK_BLOCK_SIZE;
      extents++;
      i = j;
    }
    writeDiskWritesHeader(buf, start, { disk: this.options.index ?? 0, flags, capacity: disk.capacityBytes, extents });
    return at;
  }

  private record(data: Buffer): StreamRecord {
    return { layer: 'libxl', type: 'OPTIONAL', code: TandemType.TANDEM_DISK_WRITES, data };
  }
}
