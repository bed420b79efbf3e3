/**
 * What the checkpoint engine needs of a domain, split as Xen's toolstack
 * splits it:
 *
 * - libxl's role stays in Tandem: it writes the libxl records, runs the
 *   checkpoint devices, waits for the secondary's ack and commits. It
 *   reaches the domain through a ProtectedDomain (suspend, resume, the
 *   device model) and implements the save callbacks of xenguest.h
 *   (SaveCallbacks).
 * - libxc's role, writing the libxc layer of the stream (pages, vCPU and
 *   platform state, CHECKPOINT), belongs to the domain's binding: a
 *   LibxcSaver. For a real Xen domain that is Xen's own save code
 *   (libxenguest, run by `libxl-save-helper`), which calls the callbacks
 *   over its pipe and writes the libxc bytes to an fd that Tandem drains
 *   into the stream. For a domain whose memory Tandem reads itself (the
 *   sim) it is Tandem's PageSaver over the PageDomain interface below.
 *
 * The seam is therefore at the epoch, not at page reads: the engine never
 * touches guest memory.
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

/** The device model's saved state (save_qemu) and the xenstore keys libxl carries with it. */
export interface DeviceModelState {
  data: Buffer;
  xenstore: [string, string][];
}

/** The primary's domain, as the engine drives it (libxl's view). */
export interface ProtectedDomain {
  readonly info: DomainInfo;
  /** Writes the libxc layer of this domain's streams. */
  readonly saver: LibxcSaver;
  /** Stops the guest; resolves once it no longer runs (Xen: suspended via xenstore). */
  suspend(): Promise<void>;
  /** Lets the suspended guest run again (Xen: fast resume). */
  resume(): Promise<void>;
  /**
   * The device model's state, saved while the guest is suspended (libxl's
   * save_qemu; QMP on a real QEMU). null: the domain has none (a Xen PV or
   * PVH guest), and its stream carries no emulator records.
   */
  saveDeviceModel(): Promise<DeviceModelState | null>;
  /**
   * The toolstack's configuration of the domain (Xen: libxl's JSON, as `xl
   * list -l` prints it), sent at the opening of each replication stream so
   * that the secondary's toolstack can build the domain from the stream.
   * Absent: the secondary needs none (the sim's replica is built alike).
   */
  toolstackConfig?(): Promise<string>;
}

/**
 * plain: one snapshot ending in END (xl save); remus: checkpoints until the
 * checkpoint callback says stop; colo: as remus, and the secondary's dirty
 * pages are sent with each checkpoint after the first.
 */
export type SaveStreamType = 'plain' | 'remus' | 'colo';

export interface SaveParameters {
  type: SaveStreamType;
  /** libxc stream version: 3 (Xen 4.14+) carries CPUID/MSR policy and STATIC_DATA_END. */
  version: 2 | 3;
  /**
   * Checkpoint pages as TANDEM_PAGE_XBZRLE where the secondary decodes them
   * (docs/stream.md). A saver that cannot (Xen's libxc writes its own
   * stream) ignores it; the stream is then a plain Xen stream.
   */
  compression?: PageCompressionParameters;
}

export interface PageCompressionParameters {
  /** Most pages the cache of the secondary's page contents (the deltas' bases) may hold. */
  cachePages: number;
  /**
   * Asked at each checkpoint: may its pages go compressed? True only once
   * the secondary has offered to decode them and holds the stream's first
   * checkpoint (a delta needs a base both sides agree on).
   */
  enabled(): boolean;
}

/** What a LibxcSaver writes the libxc layer into: the stream, as framed by libxl (Tandem). */
export interface LibxcOutput {
  /** Queues bytes of the libxc layer, in order. Buffers may be views that must stay unchanged until sent. */
  write(chunks: readonly Buffer[]): void;
  /** Sends what is queued; resolves when more may be queued (the link's backpressure). */
  flush(): Promise<void>;
  /** Resolves once every byte flushed so far has left the process (views of guest memory may change after). */
  flushed(): Promise<void>;
}

/** What a live pre-copy round saw, for the precopy policy (xenguest.h precopy_stats). */
export interface PrecopyStats {
  /** Rounds completed so far (the first sends every page). */
  iteration: number;
  /** Pages sent in the round just completed. */
  sentLast: number;
  /** Pages dirty now, to be sent next. */
  dirtyCount: number;
}

export type PrecopyDecision = 'continue' | 'stop-and-copy' | 'abort';

/** How far the live pre-copy round under way has got (xenguest.h has it as libxc's progress reports). */
export interface PrecopyRoundProgress {
  /** The round under way (1 sends every page). */
  iteration: number;
  /** Pages of this round sent so far. */
  sent: number;
  /** Pages this round sends. */
  total: number;
}

/** What the libxc layer put in one checkpoint, reported with the checkpoint callback. */
export interface LibxcEpochStats {
  /** Pages in this checkpoint (dirty pages, and the secondary's in COLO). */
  pages: number;
  /** How the pages went, when they went as TANDEM_PAGE_XBZRLE. */
  compression?: { raw: number; zero: number; delta: number; deltaBytes: number };
}

/**
 * The save callbacks, as xenguest.h's struct save_callbacks: the saver calls
 * them where libxc does, and awaits each.
 */
export interface SaveCallbacks {
  /** Suspend the guest for a checkpoint (libxl also runs the devices' postsuspend and saves the device model here). */
  suspend(): Promise<void>;
  /**
   * COLO, after suspend: the pages the secondary's running guest dirtied
   * since the last checkpoint, ascending; libxc sends them too (what Xen's
   * libxc reads from the back-channel's CHECKPOINT_DIRTY_PFN_LIST).
   */
  secondaryDirtyPages?(): Promise<Uint32Array>;
  /** Decide after each live pre-copy round. */
  precopyPolicy(stats: PrecopyStats): PrecopyDecision;
  /** Told as a live round goes on (a saver that cannot tell leaves it uncalled); cheap, never awaited. */
  precopyProgress?(progress: PrecopyRoundProgress): void;
  /** The checkpoint's state is captured: the guest may run again. Called whatever happened after suspend. */
  postcopy(): Promise<void>;
  /**
   * The checkpoint's libxc records are all written: libxl adds its own,
   * waits for the secondary and commits. true: take another checkpoint (the
   * saver suspends again at once); false: end the stream.
   */
  checkpoint(stats: LibxcEpochStats): Promise<boolean>;
}

/**
 * libxc's half of a save: writes one stream's libxc layer, calling back at
 * the points libxc does. Resolves when the libxc stream is over (a plain
 * save written, or the checkpoint callback said stop); rejects when a
 * callback or the domain fails. A checkpointed stream that is told to stop
 * ends with libxc END where the layout allows it (not between COLO
 * checkpoints); a plain one always does.
 */
export interface LibxcSaver {
  save(out: LibxcOutput, params: SaveParameters, callbacks: SaveCallbacks): Promise<void>;
}

/**
 * A domain Tandem reads and writes page by page itself (the sim; a test's
 * fake): what the PageSaver reads on the primary and the epoch receiver
 * writes on the secondary.
 */
export interface PageDomain {
  readonly info: DomainInfo;

  /** Starts tracking writes (clears the log). */
  enableLogDirty(): void;
  disableLogDirty(): void;
  /** PFNs written since the last call (ascending), and clears the log. */
  readAndClearDirty(): Uint32Array;

  /** A view of one page of guest RAM. Valid until the guest next runs. */
  readPage(pfn: number): Buffer;
  /** Copies `count` pages, `pfns[0..count)`, into `dest` back to back: the staging gather. */
  copyPages(pfns: ArrayLike<number>, count: number, dest: Buffer): void;
  /** Restore side: installs pages[i] at pfns[i] for every i (not a guest write, so not dirty-logged). */
  writePages(pfns: ArrayLike<number>, pages: readonly Buffer[]): void;

  /** Static platform data: CPUID and MSR policy (v3 streams). */
  cpuidPolicy(): CpuidLeaf[];
  msrPolicy(): MsrEntry[];

  /** Per-checkpoint platform state, and its restore. */
  platformContext(): PlatformContext;
  setPlatformContext(ctx: PlatformContext): void;
}

/** The secondary's replica, as the epoch receiver restores into it. */
export interface ReplicaDomain extends Pick<PageDomain, 'info' | 'writePages' | 'platformContext' | 'setPlatformContext'> {
  /**
   * A view of one page of the replica, where it can be read back: the
   * receiver then keeps the last checkpoint's pages while a new stream
   * overwrites them (src/secondary/undo.ts). Absent: a new stream's
   * pre-copy gives the last checkpoint up.
   */
  readPage?(pfn: number): Buffer;
  /**
   * A view of one page of the replica that may be written in place: a
   * compressed page's delta is then applied where the page lies, not to a
   * copy written back with writePages. Like writePages, not a guest write.
   * Absent: the replica is not offered compressed pages (TANDEM_PAGE_XBZRLE).
   */
  writablePage?(pfn: number): Buffer;
  /**
   * Installs a checkpoint's device-model state. Asynchronous: a real device
   * model answers over QMP (or the state is kept for the device model that
   * starts at failover). Refusing it must leave the previous state in place.
   */
  loadDeviceModel(state: Buffer): Promise<void>;
}
