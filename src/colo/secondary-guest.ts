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
}

export class SecondaryGuest implements ColoReplicaHooks {
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
    const { replica, disk } = this.options;
    replica.pause();
    // The guest's own disk writes since the last checkpoint go; the checkpoint brings the primary's.
    disk?.dropOverlay();
    if (!this.running) return new Uint32Array(0);
    this.running = false;
    return replica.readAndClearDirty();
  }

  resume(epoch: number): void {
    const { replica, disk, link, clock } = this.options;
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
