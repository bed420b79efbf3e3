/**
 * The disks' side of the secondary: turns TANDEM_DISK_WRITES records into
 * checked updates of the replica's disks. The receiver decides when they are
 * applied (a stream's first checkpoint at once, later epochs at their
 * CHECKPOINT_END), so a torn epoch never reaches a disk.
 *
 * While a new stream syncs a disk that holds the last checkpoint, keep()
 * has the old content of every block it changes kept (once, and only if it
 * differs), and its full sync's RESET waits: the blocks the new stream never
 * sends are zeroed only when its first checkpoint is applied. A stream that
 * fails before then leaves the disk as the last checkpoint left it.
 */
import { TandemType } from '../stream/format.js';
import type { ReplicaDevice, ReplicaUpdate } from '../secondary/receiver.js';
import type { DeviceKeeper } from '../secondary/undo.js';
import type { BlockDevice } from './block-device.js';
import { DISK_BLOCK_SIZE, parseDiskWrites, type DiskWrites } from './record.js';

const ZERO_BLOCK = Buffer.alloc(DISK_BLOCK_SIZE);

/** What a new stream changed of the disks, kept until its first checkpoint. */
class DiskKeeper implements DeviceKeeper {
  /** Old block contents, by disk and block. */
  private readonly saved = new Map<number, Map<number, Buffer>>();
  /** Disks whose full sync has begun: their blocks the sync does not send read as zero at the release. */
  private readonly resetDue = new Set<number>();
  /** Blocks each disk's new sync has sent. */
  private readonly sent = new Map<number, Set<number>>();
  private kept = 0;

  constructor(
    private readonly disks: readonly BlockDevice[],
    private readonly done: () => void,
  ) {}

  get bytes(): number {
    return this.kept;
  }

  reset(disk: number): void {
    this.resetDue.add(disk);
  }

  beforeInstall(disk: number, first: number, data: Buffer): void {
    const device = this.disks[disk];
    let saved = this.saved.get(disk);
    if (saved === undefined) this.saved.set(disk, (saved = new Map<number, Buffer>()));
    let sent = this.sent.get(disk);
    if (sent === undefined) this.sent.set(disk, (sent = new Set()));
    for (let i = 0; i * DISK_BLOCK_SIZE < data.length; i++) {
      const block = first + i;
      sent.add(block);
      if (saved.has(block)) continue;
      const old = device.read(block * DISK_BLOCK_SIZE, DISK_BLOCK_SIZE);
      if (old.equals(data.subarray(i * DISK_BLOCK_SIZE, (i + 1) * DISK_BLOCK_SIZE))) continue;
      saved.set(block, Buffer.from(old));
      this.kept += DISK_BLOCK_SIZE;
    }
  }

  rollback(): void {
    for (const [disk, blocks] of this.saved) for (const [block, data] of blocks) this.disks[disk].installBlocks(block, data);
    this.forget();
  }

  release(): void {
    // The RESET's effect, now: what the old checkpoint had and the new stream did not send is zero.
    for (const disk of this.resetDue) {
      const sent = this.sent.get(disk) ?? new Set<number>();
      for (const block of this.disks[disk].writtenBlocks()) if (!sent.has(block)) this.disks[disk].installBlocks(block, ZERO_BLOCK);
    }
    this.forget();
  }

  private forget(): void {
    this.saved.clear();
    this.sent.clear();
    this.resetDue.clear();
    this.kept = 0;
    this.done();
  }
}

export class DiskReplica implements ReplicaDevice {
  readonly name = 'disk';
  readonly code = TandemType.TANDEM_DISK_WRITES;
  /** Blocks installed so far (for status and tests). */
  installedBlocks = 0;

  private keeper: DiskKeeper | undefined;

  /** `disks[i]` is disk index i of the stream. */
  constructor(private readonly disks: readonly BlockDevice[]) {}

  /** From now until release or rollback: keep what the last checkpoint had of every block that changes. */
  keep(): DeviceKeeper {
    this.keeper = new DiskKeeper(this.disks, () => (this.keeper = undefined));
    return this.keeper;
  }

  parse(body: Buffer, site: { offset: number }): ReplicaUpdate {
    const writes = parseDiskWrites(body, { capacityOf: (i) => this.disks[i]?.capacityBytes }, site);
    return { fullSync: writes.reset, apply: () => this.apply(writes) };
  }

  private apply(w: DiskWrites): void {
    const disk = this.disks[w.disk];
    const keeper = this.keeper;
    if (w.reset) {
      if (keeper === undefined) disk.zero();
      else keeper.reset(w.disk);
    }
    for (const e of w.extents) {
      keeper?.beforeInstall(w.disk, e.first, e.data);
      disk.installBlocks(e.first, e.data);
    }
    this.installedBlocks += w.blocks;
  }
}
