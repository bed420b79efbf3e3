/**
 * Checkpoint devices, after Xen's libxl_checkpoint_device.c: every device
 * (network buffer, disk mirror, ...) hooks into the same points of each
 * epoch, so the epoch loop never knows which devices exist.
 */
import type { StreamRecord } from '../stream/records.js';
import { CheckpointError, CheckpointErrorCodes } from './errors.js';

export interface CheckpointDevice {
  readonly name: string;
  /** Once, before the first epoch of a protection session. */
  setup?(): void | Promise<void>;
  /**
   * Once, after setup and before the memory pre-copy, with the guest
   * running: batches of libxl records that bring the replica's copy of the
   * device up to date live (a disk's full sync), so the first checkpoint
   * need only carry what changed meanwhile. The session sends each batch
   * before it asks for the next, so the guest runs between batches. A device
   * whose sync is not run to the end must still sync in full at its first
   * checkpoint.
   */
  liveSync?(): Iterable<StreamRecord[]>;
  /** The guest has just been paused: a new epoch begins for output (e.g. buffer from here on). */
  postsuspend?(epoch: number): void | Promise<void>;
  /**
   * Records this device adds to `epoch`'s checkpoint (libxl optional records,
   * written before CHECKPOINT_END so the secondary applies them at that
   * epoch's commit). Called after resume; they may be views valid until the
   * next suspend.
   */
  records?(epoch: number): StreamRecord[];
  /** Checkpoint state is staged; the guest is about to run again. */
  preresume?(epoch: number): void | Promise<void>;
  /** The secondary acked `epoch`: release what was held for it. */
  commit?(epoch: number): void | Promise<void>;
  /** Protection ends (or is restarted): release everything. */
  teardown?(): void | Promise<void>;
}

type Hook = 'setup' | 'postsuspend' | 'preresume' | 'commit' | 'teardown';

const failed = (device: string, hook: string, cause: unknown): CheckpointError =>
  new CheckpointError(CheckpointErrorCodes.CHECKPOINT_DEVICE_FAILED, `checkpoint device ${device}: ${hook} failed: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });

/**
 * The devices of one protected domain, built once and given to the engine,
 * which runs each hook across all of them in order (teardown in reverse).
 */
export class DeviceSet {
  private readonly devices: readonly CheckpointDevice[];

  constructor(devices: readonly CheckpointDevice[] = []) {
    this.devices = [...devices];
  }

  async run(hook: Hook, epoch?: number): Promise<void> {
    const order = hook === 'teardown' ? [...this.devices].reverse() : this.devices;
    for (const d of order) {
      if (d[hook] === undefined) continue;
      try {
        await d[hook](epoch ?? 0);
      } catch (err) {
        throw failed(d.name, hook, err);
      }
    }
  }

  /** Every device's live-sync batches, device by device in registration order. */
  *liveSync(): Generator<StreamRecord[]> {
    for (const d of this.devices) {
      if (d.liveSync === undefined) continue;
      let batches: Iterator<StreamRecord[]>;
      try {
        batches = d.liveSync()[Symbol.iterator]();
      } catch (err) {
        throw failed(d.name, 'liveSync', err);
      }
      while (true) {
        let next: IteratorResult<StreamRecord[]>;
        try {
          next = batches.next();
        } catch (err) {
          throw failed(d.name, 'liveSync', err);
        }
        if (next.done === true) break;
        yield next.value;
      }
    }
  }

  /** Every device's records for `epoch`, in registration order. */
  records(epoch: number): StreamRecord[] {
    const out: StreamRecord[] = [];
    for (const d of this.devices) {
      if (d.records === undefined) continue;
      try {
        for (const r of d.records(epoch)) out.push(r);
      } catch (err) {
        throw failed(d.name, 'records', err);
      }
    }
    return out;
  }

  get size(): number {
    return this.devices.length;
  }
}
