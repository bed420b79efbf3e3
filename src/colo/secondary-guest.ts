/**
 * The secondary's running guest in COLO mode: between checkpoints the
 * replica runs the guest's software on its own (the same client frames as
 * the primary's, mirrored over the net link), and its output goes back to
 * the comparator. These are the hooks the secondary server calls at each
 * checkpoint: suspend (pause, report the pages it wrote) and resume (find
 * the software in the checkpointed RAM, mark the net link, run).
 */
import type { SimDisk } from '../disk/sim-disk.js';
import type { SimDomain } from '../domain/sim.js';
import { resumeNetGuest, type NetGuestSoftware } from '../guest/machine.js';
import type { ColoReplicaHooks } from '../secondary/server.js';
import type { NetLinkSecondary } from './net-link.js';

export interface SecondaryGuestOptions {
  replica: SimDomain;
  disk?: SimDisk;
  link: NetLinkSecondary;
  /** The guest's clock (TIME), µs since the Unix epoch. */
  clock?: () => number;
  /** The replica holds checkpoint `epoch` exactly (RAM and disk), just before its guest runs from it. */
  onCheckpoint?: (epoch: number) => void;
}

export class SecondaryGuest implements ColoReplicaHooks {
  /**
   * Failover: the secondary goes on from its guest's own run, as COLO does
   * (its output matched what the clients saw); its disk writes become real.
   */
  takeOver(): void {
    this.options.disk?.mergeOverlay();
    this.software = undefined;
  }

  private software: NetGuestSoftware | undefined = undefined;
  private running = false;

  constructor(private readonly options: SecondaryGuestOptions) {}

  /** Checkpoints it has resumed from. */
  resumes = 0;

  /** A mirrored client frame for the guest's NIC (dropped until the first checkpoint gives it a guest). */
  deliver(frame: Buffer): void {
    const { replica } = this.options;
    replica.run(() => this.software?.net.receive(frame));
  }

  suspend(): Uint32Array {
    const { replica } = this.options;
    replica.pause();
    // What the guest sent before the pause goes to the comparator ahead of SVM_SUSPENDED.
    this.options.link.flush();
    // The guest's own disk writes stay in the overlay until the checkpoint replaces them at resume:
    // should the primary die before the checkpoint completes, they go with the RAM that made them.
    if (!this.running) return new Uint32Array(0);
    this.running = false;
    return replica.readAndClearDirty();
  }

  pause(): void {
    this.options.replica.pause();
    // Its last output still goes out: it was produced from a checkpoint the primary committed.
    this.options.link.flush();
    this.running = false;
  }

  resume(epoch: number): void {
    const { replica, disk, link, clock } = this.options;
    // The checkpoint replaced the guest's own disk writes: drop them.
    disk?.dropOverlay();
    this.options.onCheckpoint?.(epoch);
    // RAM is the primary's now: the software's state is wherever the checkpoint put it.
    this.software = resumeNetGuest(replica, disk, { transmit: (f) => link.send(f), clock });
    // Before the guest can send anything: what follows is from this checkpoint on.
    link.resumed(epoch);
    disk?.startOverlay();
    replica.enableLogDirty();
    this.running = true;
    this.resumes++;
    replica.unpause();
  }
}
