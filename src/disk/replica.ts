/**
 * The disks' side of the secondary: turns TANDEM_DISK_WRITES records into
 * checked updates of the replica's disks. The receiver decides when they are
 * applied (a stream's first checkpoint at once, later epochs at their
 * CHECKPOINT_END), so a torn epoch never reaches a disk.
 */
import { TandemType } from '../stream/format.js';
import type { ReplicaDevice, ReplicaUpdate } from '../secondary/receiver.js';
import type { BlockDevice } from './block-device.js';
import { parseDiskWrites, type DiskWrites } from './record.js';

export class DiskReplica implements ReplicaDevice {
  readonly name = 'disk';
  readonly code = TandemType.TANDEM_DISK_WRITES;
  /** Blocks installed so far (for status and tests). */
  installedBlocks = 0;

  /** `disks[i]` is disk index i of the stream. */
  constructor(private readonly disks: readonly BlockDevice[]) {}

  parse(body: Buffer, site: { offset: number }): ReplicaUpdate {
    const writes = parseDiskWrites(body, { capacityOf: (i) => this.disks[i]?.capacityBytes }, site);
    return { fullSync: writes.reset, apply: () => this.apply(writes) };
  }

  private apply(w: DiskWrites): void {
    const disk = this.disks[w.disk];
    if (w.reset) disk.zero();
    for (const e of w.extents) disk.installBlocks(e.first, e.data);
    this.installedBlocks += w.blocks;
  }
}
