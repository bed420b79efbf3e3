/**
 * One protection session: one checkpointed stream to one secondary over one
 * link. It does the live pre-copy and first checkpoint, then one epoch per
 * call to epoch():
 *
 *   suspend -> stage dirty pages, platform context and device-model state
 *   -> postcopy (resume; the pause ends here) -> send -> ack -> checkpoint
 *
 * The guest is paused only while staging (memory copies), never during the
 * transfer, and is resumed in a finally whatever happens.
 */
import type { Domain, PlatformContext, PrecopyDecision, PrecopyStats, SaveCallbacks } from '../domain/types.js';
import { ErrorCodes, TandemError } from '../errors.js';
import { AckStatus } from '../transport/backchannel.js';
import type { StreamRecord } from '../stream/records.js';
import type { ReplicationLink } from '../transport/link.js';
import { ColoControl } from '../stream/format.js';
import { StreamSaver } from './saver.js';
import { StagingBuffer } from './staging.js';
import type { TriggerReason } from './triggers.js';

export interface EpochMetrics {
  epoch: number;
  trigger: TriggerReason | 'precopy';
  /** Guest paused, suspend to resume, microseconds. */
  pauseUs: number;
  dirtyPages: number;
  /** Stream bytes of this epoch. */
  bytes: number;
  sendMs: number;
  ackMs: number;
  totalMs: number;
  /** State digest at suspend (only when verification is on). */
  digest?: string;
}

export interface PrecopySummary {
  /** Stream bytes of the checkpoint devices' live syncs (e.g. a disk's full sync), sent before the memory pre-copy. */
  deviceSyncBytes: number;
  rounds: number;
  pagesSent: number;
  decision: PrecopyDecision;
  first: EpochMetrics;
}

export interface SessionOptions {
  version: 2 | 3;
  ackTimeoutMs: number;
  /** Pages per write during the live pre-copy: the guest runs between batches. */
  precopyBatchPages: number;
  /** Monotonic clock in ms (performance.now); injected for tests. */
  now: () => number;
  /** Digest of the checkpointed state, taken while paused (verification mode). */
  digest?: () => string;
  /** Told of each staged epoch's digest before any of it is sent (verification mode). */
  onStaged?: (epoch: number, digest: string) => void;
  /** Checkpoint devices' records for an epoch (e.g. its disk writes), sent before its CHECKPOINT_END. */
  deviceRecords?: (epoch: number) => StreamRecord[];
  /** Checkpoint devices' live syncs (DeviceSet.liveSync), sent batch by batch ahead of the libxc stream. */
  deviceLiveSync?: () => Iterable<StreamRecord[]>;
  /**
   * COLO: the secondary runs its own copy of the guest. Each checkpoint after
   * the first is announced, the secondary's dirty pages are sent too, and the
   * guest stays paused until the secondary holds the checkpoint (docs/colo.md).
   */
  colo?: boolean;
}

export class EpochRefusedError extends TandemError {
  constructor(
    message: string,
    readonly epoch: number,
    readonly status: number,
  ) {
    super(ErrorCodes.EPOCH_REFUSED, message);
  }

  override get name(): string {
    return 'EpochRefusedError';
  }
}

export class ProtectionSession {
  private readonly staging = new StagingBuffer();
  private pending: Buffer[] = [];
  private saver: StreamSaver | undefined;
  private epochs = 0;

  constructor(
    private readonly domain: Domain,
    private readonly callbacks: SaveCallbacks,
    private readonly link: ReplicationLink,
    private readonly options: SessionOptions,
  ) {}

  /** Stream bytes written so far in this session. */
  get bytesSent(): number {
    return this.saver?.position ?? 0;
  }

  /** Epochs committed by the secondary in this session. */
  get epoch(): number {
    return this.epochs;
  }

  /** The devices' live syncs, live pre-copy rounds, then the first checkpoint (epoch 1). */
  async precopy(): Promise<PrecopySummary> {
    const saver = this.startStream();
    const deviceSyncBytes = await this.deviceLiveSync(saver);
    saver.startLibxc();
    await this.flush();
    this.domain.enableLogDirty();
    const all = new Uint32Array(this.domain.info.pages);
    for (let i = 0; i < all.length; i++) all[i] = i;
    let toSend: Uint32Array = all;
    let rounds = 0;
    let pagesSent = 0;
    while (true) {
      rounds++;
      const batch = this.options.precopyBatchPages;
      for (let i = 0; i < toSend.length; i += batch) {
        // Live: the guest runs between batches; what it dirties is logged and resent.
        saver.sendPages(toSend.subarray(i, i + batch));
        await this.flush();
      }
      pagesSent += toSend.length;
      const dirty = this.domain.readAndClearDirty();
      const stats: PrecopyStats = { iteration: rounds, sentLast: toSend.length, dirtyCount: dirty.length };
      const decision = this.callbacks.precopyPolicy(stats);
      if (decision === 'abort') throw new TandemError(ErrorCodes.EPOCH_REFUSED, `pre-copy aborted by policy after ${rounds} rounds`);
      if (decision === 'stop-and-copy') {
        // Live pages still queued in the socket are views of guest RAM: they
        // must be out before the guest resumes after the checkpoint, or
        // post-checkpoint writes would reach the secondary as epoch 1.
        await this.link.flushed();
        // The pages dirtied in the last round go with the first checkpoint.
        const first = this.options.colo === true ? await this.coloCheckpoint('precopy', dirty) : await this.checkpoint('precopy', dirty);
        return { deviceSyncBytes, rounds, pagesSent, decision, first };
      }
      toSend = dirty;
    }
  }

  /** One checkpoint epoch. */
  epochFor(trigger: TriggerReason): Promise<EpochMetrics> {
    return this.options.colo === true ? this.coloCheckpoint(trigger) : this.checkpoint(trigger);
  }

  /** Ends the stream cleanly: libxc END, libxl END. */
  async end(): Promise<void> {
    this.saver?.end();
    await this.flush();
  }

  private startStream(): StreamSaver {
    this.saver = new StreamSaver(this.domain, { framing: 'libxl', version: this.options.version, colo: this.options.colo }, (chunks) => {
      for (const c of chunks) this.pending.push(c);
    });
    this.saver.begin();
    return this.saver;
  }

  /**
   * Libxl records ahead of the libxc stream, where the layout lets libxl
   * speak before LIBXC_CONTEXT. Each batch is written (honouring the link's
   * backpressure) before the next is made, so the guest runs in between and
   * a device never holds more than one batch. Returns the bytes sent.
   */
  private async deviceLiveSync(saver: StreamSaver): Promise<number> {
    const before = saver.position;
    for (const batch of this.options.deviceLiveSync?.() ?? []) {
      saver.libxlRecords(batch);
      await this.flush();
    }
    return saver.position - before;
  }

  private async flush(): Promise<void> {
    if (this.pending.length === 0) return;
    const chunks = this.pending;
    this.pending = [];
    await this.link.write(chunks);
  }

  /**
   * A COLO epoch: announce it, suspend, take the secondary's dirty pages,
   * stage ours and theirs, send, wait for the secondary to hold it, commit
   * (the comparator releases what it held), and only then resume: output
   * after the resume must be compared against the secondary's, never
   * released on the strength of this checkpoint.
   */
  private async coloCheckpoint(trigger: EpochMetrics['trigger'], carried?: Uint32Array): Promise<EpochMetrics> {
    const { now } = this.options;
    const epoch = this.epochs + 1;
    // The first checkpoint is the pre-copy's: no secondary guest runs yet to announce it to.
    const first = epoch === 1;
    if (!first) {
      this.saver!.newCheckpoint();
      await this.flush();
    }
    const t0 = now();
    let staged: StagedEpoch | undefined;
    let t1: number;
    let t2: number;
    let bytes: number;
    try {
      staged = await stageEpoch(this.domain, this.callbacks, this.staging, epoch, {
        now,
        digest: this.options.digest,
        carried,
        keepPaused: true,
        afterSuspend: first ? undefined : () => this.secondarySuspended(),
      });
      t1 = now();
      bytes = await this.sendStaged(epoch, staged);
      t2 = now();
      await this.applied(epoch);
      const ready = await this.link.nextRecord('CHECKPOINT_STATE', this.options.ackTimeoutMs);
      if (ready.controlId !== ColoControl.SVM_READY) throw new ColoHandshakeError(`expected the secondary's SVM_READY after epoch ${epoch}, got control id ${ready.controlId}`);
      this.epochs = epoch;
      await this.callbacks.checkpoint(epoch);
    } finally {
      // Resumed whatever happened (stageEpoch already resumed it if staging itself failed).
      if (staged !== undefined) await this.callbacks.postcopy(epoch);
    }
    const t3 = now();
    return metricsOf(epoch, trigger, staged, { pauseMs: t3 - t0, bytes, sendMs: t2 - t1, ackMs: t3 - t2, totalMs: t3 - t0 });
  }

  /** COLO: the secondary's guest is paused; the pages it wrote since the last checkpoint, ascending, checked. */
  private async secondarySuspended(): Promise<Uint32Array> {
    const timeout = this.options.ackTimeoutMs;
    // The previous checkpoint ended with the secondary's SVM_RESUMED; this one starts with SVM_SUSPENDED.
    const resumed = await this.link.nextRecord('CHECKPOINT_STATE', timeout);
    if (resumed.controlId !== ColoControl.SVM_RESUMED) throw new ColoHandshakeError(`expected the secondary's SVM_RESUMED of the last checkpoint, got control id ${resumed.controlId}`);
    const state = await this.link.nextRecord('CHECKPOINT_STATE', timeout);
    if (state.controlId !== ColoControl.SVM_SUSPENDED) throw new ColoHandshakeError(`expected the secondary's SVM_SUSPENDED, got control id ${state.controlId}`);
    const list = await this.link.nextRecord('CHECKPOINT_DIRTY_PFN_LIST', timeout);
    const pages = this.domain.info.pages;
    const pfns = Uint32Array.from(list.pfns).sort();
    if (pfns.length > 0 && pfns[pfns.length - 1] >= pages) {
      throw new ColoHandshakeError(`the secondary reported dirty pfn ${pfns[pfns.length - 1]} beyond the guest's ${pages} pages`);
    }
    return pfns;
  }

  /**
   * Suspend, stage, resume, send, wait for the ack, commit. `carried` holds
   * pages already known dirty (the last pre-copy round's), sent with this epoch.
   */
  private async checkpoint(trigger: EpochMetrics['trigger'], carried?: Uint32Array): Promise<EpochMetrics> {
    const { now } = this.options;
    const epoch = this.epochs + 1;
    const t0 = now();
    const staged = await stageEpoch(this.domain, this.callbacks, this.staging, epoch, { now, carried, digest: this.options.digest });
    const t1 = now();
    const bytes = await this.sendStaged(epoch, staged);
    const t2 = now();
    await this.applied(epoch);
    this.epochs = epoch;
    const t3 = now();
    await this.callbacks.checkpoint(epoch);
    return metricsOf(epoch, trigger, staged, { pauseMs: staged.pauseMs, bytes, sendMs: t2 - t1, ackMs: t3 - t2, totalMs: now() - t0 });
  }

  /** Writes a staged epoch (pages, context, device model, device records, CHECKPOINT_END) and flushes it; its stream bytes. */
  private async sendStaged(epoch: number, staged: StagedEpoch): Promise<number> {
    if (staged.digest !== undefined) this.options.onStaged?.(epoch, staged.digest);
    const saver = this.saver!;
    const before = saver.position;
    saver.sendPages(staged.pfns, (i) => this.staging.page(i));
    saver.endOfCheckpoint(staged.ctx);
    saver.checkpoint(staged.dm, this.options.deviceRecords?.(epoch));
    const bytes = saver.position - before;
    await this.flush();
    return bytes;
  }

  /** Waits for the secondary's ack of `epoch`; anything but APPLIED ends the session. */
  private async applied(epoch: number): Promise<void> {
    const ack = await this.link.waitAck(epoch, this.options.ackTimeoutMs);
    if (ack.status !== AckStatus.APPLIED) {
      throw new EpochRefusedError(`the secondary refused epoch ${epoch}: ${ack.reason || `status ${ack.status}`}`, epoch, ack.status);
    }
  }
}

function metricsOf(
  epoch: number,
  trigger: EpochMetrics['trigger'],
  staged: StagedEpoch,
  t: { pauseMs: number; bytes: number; sendMs: number; ackMs: number; totalMs: number },
): EpochMetrics {
  const m: EpochMetrics = { epoch, trigger, pauseUs: Math.round(t.pauseMs * 1000), dirtyPages: staged.pfns.length, bytes: t.bytes, sendMs: t.sendMs, ackMs: t.ackMs, totalMs: t.totalMs };
  if (staged.digest !== undefined) m.digest = staged.digest;
  return m;
}

/** The secondary's handshake on the back-channel did not go as COLO's does. */
export class ColoHandshakeError extends TandemError {
  constructor(message: string) {
    super(ErrorCodes.EPOCH_REFUSED, message);
  }

  override get name(): string {
    return 'ColoHandshakeError';
  }
}

export interface StagedEpoch {
  pfns: Uint32Array;
  ctx: PlatformContext;
  dm: Buffer;
  digest?: string;
  /** Suspend to resume, ms. */
  pauseMs: number;
}

/**
 * The paused part of an epoch: suspend, copy the dirty pages into the
 * staging buffer, capture platform context and device-model state, resume
 * (in a finally: the guest runs again whatever failed).
 */
export async function stageEpoch(
  domain: Domain,
  callbacks: SaveCallbacks,
  staging: StagingBuffer,
  epoch: number,
  opts: {
    now: () => number;
    carried?: Uint32Array;
    digest?: () => string;
    /** Runs once the guest is paused; more pages to send (COLO: those the secondary's guest dirtied), ascending. */
    afterSuspend?: () => Promise<Uint32Array | undefined>;
    /** Leave the guest paused: the caller resumes it (postcopy) in its own finally (COLO). */
    keepPaused?: boolean;
  },
): Promise<StagedEpoch> {
  const t0 = opts.now();
  let pfns: Uint32Array;
  let ctx: PlatformContext;
  let dm: Buffer;
  let digest: string | undefined;
  let staged = false;
  try {
    await callbacks.suspend(epoch);
    const extra = await opts.afterSuspend?.();
    const dirty = domain.readAndClearDirty();
    pfns = opts.carried === undefined ? dirty : mergeSorted(opts.carried, dirty);
    if (extra !== undefined && extra.length > 0) pfns = mergeSorted(pfns, extra);
    domain.copyPages(pfns, pfns.length, staging.reserve(pfns.length));
    ctx = domain.platformContext();
    dm = domain.deviceModelState();
    digest = opts.digest?.();
    staged = true;
  } finally {
    if (!staged || opts.keepPaused !== true) await callbacks.postcopy(epoch);
  }
  const out: StagedEpoch = { pfns, ctx, dm, pauseMs: opts.now() - t0 };
  if (digest !== undefined) out.digest = digest;
  return out;
}

/** Union of two ascending pfn lists, ascending, without duplicates. */
function mergeSorted(a: Uint32Array, b: Uint32Array): Uint32Array {
  const out = new Uint32Array(a.length + b.length);
  let i = 0;
  let j = 0;
  let n = 0;
  while (i < a.length || j < b.length) {
    const x = j >= b.length || (i < a.length && a[i] < b[j]) ? a[i++] : b[j++];
    if (n === 0 || out[n - 1] !== x) out[n++] = x;
  }
  return out.subarray(0, n);
}
