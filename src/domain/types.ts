/**
 * What the checkpoint code needs from a hypervisor, modelled on the domain
 * access libxc's save code has (dirty log, page reads, vCPU/platform context,
 * device-model state). The engine touches a guest only through this, so a
 * Xen binding can stand where the simulated domain stands.
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

export interface Domain {
  readonly info: DomainInfo;

  /** Stops guest execution; no guest write lands until unpause(). */
  pause(): void;
  unpause(): void;
  readonly paused: boolean;

  /** Starts tracking writes; every page counts as dirty from here on until read. */
  enableLogDirty(): void;
  /** PFNs written since the last call (ascending), and clears the log. */
  readAndClearDirty(): number[];

  /** A view of one page of guest RAM. Valid until the guest next runs. */
  readPage(pfn: number): Buffer;

  /** Static platform data: CPUID and MSR policy (v3 streams). */
  cpuidPolicy(): CpuidLeaf[];
  msrPolicy(): MsrEntry[];

  /** Per-checkpoint platform state. */
  tscInfo(): TscInfo;
  hvmParams(): HvmParam[];
  /** vCPU and platform context blob (Xen's HVM save format framing). */
  hvmContext(): Buffer;

  /** Device-model state (save_qemu) and its xenstore keys. */
  deviceModelState(): Buffer;
  deviceModelXenstore(): [string, string][];
}
