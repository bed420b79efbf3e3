/**
 * The hypervisor binding: everything the checkpoint engine needs from a
 * hypervisor, and nothing else. It has two halves, as in Xen's toolstack:
 *
 * - domain access, like what libxc's save and restore code use (dirty log,
 *   page reads and writes, vCPU/platform context, device-model state,
 *   pause/unpause);
 * - the save and restore callbacks of xenguest.h (`struct save_callbacks`:
 *   suspend, precopy_policy, postcopy, checkpoint, wait_checkpoint; `struct
 *   restore_callbacks`: checkpoint answering error / success / failover),
 *   which the engine calls at the same points of an epoch as libxc does.
 *
 * The engine touches a guest only through these, so a Xen binding (playing
 * libxl-save-helper's parent) can stand where the simulated domain stands.
 */
import type { CpuidLeaf, HvmParam, MsrEntry } from '../stream/records.js';

export interface TscInfo {
  mode: number;
  khz: number;
  nsec: bigint;
  incarnation: number;
}

export interface DomainInfo {
  /** DomainType code: 2 for x86 HVM. */
  type: number;
  /** Guest-physical pages (PFNs 0 .. pages-1). */
  pages: number;
  vcpus: number;
  /** Emulator id for libxl EMULATOR_* records (2 = QEMU upstream). */
  emulatorId: number;
}

/** vCPU and platform state that closes a checkpoint (libxc end_of_checkpoint). */
export interface PlatformContext {
  tsc: TscInfo;
  hvmParams: HvmParam[];
  /** vCPU and platform context blob (Xen's HVM save format framing). */
  hvmContext: Buffer;
}

export interface Domain {
  readonly info: DomainInfo;

  /** Stops guest execution; no guest write lands until unpause(). */
  pause(): void;
  unpause(): void;
  readonly paused: boolean;

  /** Starts tracking writes (clears the log). */
  enableLogDirty(): void;
  disableLogDirty(): void;
  /** PFNs written since the last call (ascending), and clears the log. */
  readAndClearDirty(): Uint32Array;

  /** A view of one page of guest RAM. Valid until the guest next runs. */
  readPage(pfn: number): Buffer;
  /** Copies `count` pages, `pfns[0..count)`, into `dest` back to back: the staging gather. */
  copyPages(pfns: ArrayLike<number>, count: number, dest: Buffer): void;
  /** Restore side: installs a page (not a guest write, so not dirty-logged). */
  writePage(pfn: number, data: Buffer): void;
  /** Restore side: installs pages[i] at pfns[i] for every i (runs of adjacent pages may be copied at once). */
  writePages(pfns: ArrayLike<number>, pages: readonly Buffer[]): void;

  /** Static platform data: CPUID and MSR policy (v3 streams). */
  cpuidPolicy(): CpuidLeaf[];
  msrPolicy(): MsrEntry[];

  /** Per-checkpoint platform state, and its restore. */
  platformContext(): PlatformContext;
  setPlatformContext(ctx: PlatformContext): void;

  /** Device-model state (save_qemu) and its restore; its xenstore keys. */
  deviceModelState(): Buffer;
  loadDeviceModelState(state: Buffer): void;
  deviceModelXenstore(): [string, string][];
}

/** What a precopy round saw, for the precopy policy (xenguest.h precopy_stats). */
export interface PrecopyStats {
  /** Rounds completed so far (the first sends every page). */
  iteration: number;
  /** Pages sent in the round just completed. */
  sentLast: number;
  /** Pages dirty now, to be sent next. */
  dirtyCount: number;
}

export type PrecopyDecision = 'continue' | 'stop-and-copy' | 'abort';

/**
 * The save callbacks, as xenguest.h's struct save_callbacks: the engine
 * calls them where libxc does.
 */
export interface SaveCallbacks {
  /** Stop the guest (and let checkpoint devices run postsuspend for `epoch`). */
  suspend(epoch: number): void | Promise<void>;
  /** Decide after each precopy round. */
  precopyPolicy(stats: PrecopyStats): PrecopyDecision;
  /** Resume the guest after a checkpoint's state is staged (preresume, then unpause). */
  postcopy(epoch: number): void | Promise<void>;
  /**
   * The secondary acked `epoch`: commit it (checkpoint devices release what
   * they held for it); false ends the stream. Xen's Remus also sleeps out the
   * interval here; in Tandem the trigger pipeline decides when the next
   * epoch starts.
   */
  checkpoint(epoch: number): Promise<boolean>;
  /** COLO: wait until the comparator asks for a checkpoint; false ends the stream. */
  waitCheckpoint?(): Promise<boolean>;
}

export type RestoreCheckpointResult = 'error' | 'success' | 'failover';

/** The restore callbacks (struct restore_callbacks): called on the secondary. */
export interface RestoreCallbacks {
  /** A checkpoint was applied ('success'), the stream failed ('error'), or the primary is gone ('failover'). */
  checkpoint(result: RestoreCheckpointResult): void;
}
