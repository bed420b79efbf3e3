/**
 * The comparator as a checkpoint device of the primary, in COLO mode. While
 * protected, the primary guest's frames go to the comparator, and only what
 * it releases reaches the clients. At each commit (the secondary holds the
 * checkpoint and the primary guest is still paused) it tells the comparator
 * (COLO_CHECKPOINT: held primary frames leave, held secondary frames are
 * dropped) and the net link (the secondary's frames from its resumed guest
 * may be compared now). Without a standby (teardown) nothing can be
 * compared: held frames are released and the guest's output passes
 * straight through, unprotected, until protection is set up again.
 *
 * Frames no replica vouches for (passed through, or flushed at teardown)
 * leave only while the authority (the arbiter's lease) is valid; without
 * it they are dropped, as a partitioned network would drop them, and the
 * guest's TCP sends them again once they can go. Every frame bound for the
 * clients leaves through deliver(), so this is decided in one place.
 */
import type { CheckpointDevice } from '../checkpoint/devices.js';
import type { FrameComparator } from './comparators.js';
import type { NetLinkPrimary } from './net-link.js';

export interface ComparatorDeviceOptions {
  comparator: FrameComparator;
  link: NetLinkPrimary;
  /** Frames for the clients (the front). */
  release: (frame: Buffer) => void;
  /** May frames no replica vouches for leave now? (default: always) */
  authority?: { valid(): boolean };
  /** Told of each frame dropped for want of the authority. */
  onDropped?: (frame: Buffer) => void;
}

export class ComparatorDevice implements CheckpointDevice {
  readonly name = 'colo-comparator';
  private comparing = false;

  constructor(private readonly options: ComparatorDeviceOptions) {}

  /** The primary guest's NIC output. */
  transmit(frame: Buffer): void {
    if (this.comparing) this.options.comparator.pushPrimary(frame);
    else this.deliver(frame);
  }

  /** A frame for the clients: from the comparator (matched, or flushed at a checkpoint) or passed through. */
  deliver(frame: Buffer): void {
    // While comparing, a frame leaves only once the secondary matched it or holds its checkpoint.
    if (!this.comparing && !(this.options.authority?.valid() ?? true)) {
      this.options.onDropped?.(frame);
      return;
    }
    this.options.release(frame);
  }

  async setup(): Promise<void> {
    // The secondary's guest output comes over the net link: no link, no comparison, no protection.
    await this.options.link.ensure();
    this.options.link.reset();
    this.comparing = true;
  }

  postsuspend(): void {
    // Client frames the paused guest has taken go to the secondary now, ahead of the checkpoint's
    // "new checkpoint" on the stream, so its guest sees them before it is suspended as before.
    this.options.link.flush();
  }

  async commit(epoch: number): Promise<void> {
    await this.options.comparator.checkpointDone();
    this.options.link.committed(epoch);
  }

  async teardown(): Promise<void> {
    this.comparing = false;
    // The secondary's copy is gone: what was held for comparison is all the clients will get.
    await this.options.comparator.checkpointDone();
  }
}
