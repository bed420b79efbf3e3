/**
 * The sim replica's running guest in COLO mode: between checkpoints the
 * replica runs the guest's software on its own, fed the client frames the
 * primary mirrors, and its output goes out through `transmit` (to the
 * comparator, over the net link). At each checkpoint it is suspended (and
 * reports the pages it wrote) and then resumed from the checkpoint: the
 * software is found again in the checkpointed RAM.
 *
 * Its disk writes go to the disk's overlay and are dropped when a
 * checkpoint replaces them, or made real on a takeover.
 */
import type { ColoReplicaGuest } from '../binding.js';
import { resumeNetGuest, type NetGuestSoftware } from '../../guest/machine.js';
import type { SimDisk } from './disk.js';
import type { SimDomain } from './domain.js';

export interface SimColoGuestOptions {
  replica: SimDomain;
  disk: SimDisk | undefined;
  transmit: (frame: Buffer) => void;
  /** The guest's clock (TIME), µs since the Unix epoch. */
  clock?: () => number;
}

export class SimColoGuest implements ColoReplicaGuest {
  private software: NetGuestSoftware | undefined = undefined;
  private running = false;
  /** Checkpoints it has resumed from. */
  resumes = 0;

  constructor(private readonly options: SimColoGuestOptions) {}

  deliver(frame: Buffer): void {
    const { replica } = this.options;
    replica.run(() => this.software?.net.receive(frame));
  }

  suspend(): Uint32Array {
    const { replica } = this.options;
    replica.pause();
    // The guest's own disk writes stay in the overlay until the checkpoint replaces them at resume:
    // should the primary die before the checkpoint completes, they go with the RAM that made them.
    if (!this.running) return new Uint32Array(0);
    this.running = false;
    return replica.readAndClearDirty();
  }

  pause(): void {
    this.options.replica.pause();
    this.running = false;
  }

  resume(): void {
    const { replica, disk, transmit, clock } = this.options;
    // The checkpoint replaced the guest's own disk writes: drop them.
    disk?.dropOverlay();
    // RAM is the primary's now: the software's state is wherever the checkpoint put it.
    this.software = resumeNetGuest(replica, disk, { transmit, clock });
    disk?.startOverlay();
    replica.enableLogDirty();
    this.running = true;
    this.resumes++;
    replica.unpause();
  }

  takeOver(): void {
    this.options.disk?.mergeOverlay();
    this.software = undefined;
  }
}
