/**
 * One checkpointed stream of a domain into a target: libxl's side of a save.
 * The same code takes the epochs of a protection session (the target is a
 * secondary over the replication link) and of `tandem save` (a file).
 *
 * The domain's LibxcSaver writes the libxc layer and calls back here at
 * xenguest.h's points; this class answers as libxl does:
 *
 *   suspend    -> suspend the guest, devices' postsuspend, save the device model
 *   postcopy   -> (Remus) devices' preresume, resume the guest
 *   checkpoint -> libxl's records (device model, devices' records,
 *                 CHECKPOINT_END), flush, wait until the target holds the
 *                 epoch, devices' commit; then wait for the next epoch
 *
 * The saver runs the loop, the caller the pace: the checkpoint callback
 * parks until checkpoint() asks for another epoch or end() for none, so the
 * trigger pipeline decides when each epoch starts. The guest is paused only
 * while its state is captured (COLO: until the secondary holds it), and is
 * running again whatever fails.
 */
import type { DeviceModelState, LibxcEpochStats, LibxcOutput, PrecopyDecision, PrecopyStats, ProtectedDomain, SaveCallbacks, SaveParameters } from '../domain/types.js';
import { StreamEncoder } from '../stream/encoder.js';
import type { Framing } from '../stream/layout.js';
import { ColoControl, TandemFeature, TandemType } from '../stream/format.js';
import { encodeDomainConfigRecord } from '../stream/domain-config-record.js';
import { encodePrimaryRecord } from '../stream/primary-record.js';
import type { DeviceSet } from './devices.js';
import { CheckpointError, CheckpointErrorCodes } from './errors.js';
import { DEFAULT_PROGRESS_INTERVAL_MS, PrecopyMeter, type PrecopyProgress } from './precopy-progress.js';
import type { EpochStrategy, LibxlRecordWriter } from './strategies.js';
import type { TriggerReason } from './triggers.js';

/** Where a stream goes: a secondary (the replication link), or a file. */
export interface CheckpointTarget {
  /** Writes chunks in order; resolves when more may be written (backpressure). */
  write(chunks: readonly Buffer[]): Promise<void>;
  /** Resolves once everything written so far has left the process. */
  flushed(): Promise<void>;
  /** Resolves once the target holds checkpoint `epoch`; rejects if it refused it or is gone. */
  held(epoch: number): Promise<void>;
  /** TandemFeature bits the target offered (a secondary, on its back-channel); absent or 0: a plain Xen stream only. */
  peerFeatures?(): number;
}

export interface EpochMetrics {
  epoch: number;
  trigger: TriggerReason | 'precopy';
  /** Guest paused, suspend to resume, microseconds. */
  pauseUs: number;
  dirtyPages: number;
  /** Stream bytes of this epoch, from its suspend through its CHECKPOINT_END. */
  bytes: number;
  sendMs: number;
  ackMs: number;
  totalMs: number;
  /** State digest at suspend (only when verification is on). */
  digest?: string;
  /** How the pages went, when they went compressed (TANDEM_PAGE_XBZRLE). */
  compression?: LibxcEpochStats['compression'];
}

export interface PrecopySummary {
  /** Stream bytes of the checkpoint devices' live syncs (e.g. a disk's full sync), sent before the memory pre-copy. */
  deviceSyncBytes: number;
  rounds: number;
  pagesSent: number;
  first: EpochMetrics;
}

export interface CheckpointSessionOptions {
  domain: ProtectedDomain;
  devices: DeviceSet;
  target: CheckpointTarget;
  strategy: EpochStrategy;
  /** libxl (the default) wraps the libxc layer; libxc is the bare libxc layer (`tandem save --format libxc`). */
  framing?: Framing;
  /** libxc stream version. */
  version: 2 | 3;
  precopyPolicy: (stats: PrecopyStats) => PrecopyDecision;
  /** Monotonic clock in ms (performance.now); injected for tests. */
  now: () => number;
  /** Digest of the checkpointed state, taken while paused (verification mode). */
  digest?: () => string;
  /** Told of each epoch's digest before any of the epoch is sent (verification mode). */
  onStaged?: (epoch: number, digest: string) => void;
  /** A replication stream opens with TANDEM_PRIMARY naming this primary's generation (docs/stream.md). */
  generation?: number;
  /** Told how the live pre-copy goes, at most once per progressIntervalMs, and once more when it is over. */
  onProgress?: (p: PrecopyProgress) => void;
  /** Default 1 s; 0 reports whenever something moved. */
  progressIntervalMs?: number;
  /**
   * Compress checkpoint pages (TANDEM_PAGE_XBZRLE) when the target offers
   * to decode them, with a cache of this many pages; Remus streams only.
   * Absent: the stream is exactly the plain Xen stream.
   */
  compression?: { cachePages: number };
}

interface Deferred<T> {
  promise: Promise<T>;
  resolve: (v: T) => void;
  reject: (e: unknown) => void;
}

function deferred<T>(): Deferred<T> {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** The epoch under way: what its callbacks have measured so far. */
interface EpochInProgress {
  epoch: number;
  trigger: EpochMetrics['trigger'];
  t0: number;
  suspendedAt: number;
  pauseMs: number;
  startPosition: number;
  dm: DeviceModelState | null | undefined;
  digest: string | undefined;
  done: Deferred<EpochMetrics>;
}

type Phase = 'new' | 'precopy' | 'parked' | 'epoch' | 'ended' | 'failed';

export class CheckpointSession {
  private readonly encoder: StreamEncoder;
  private pending: Buffer[] = [];
  private phase: Phase = 'new';
  private epochs = 0;
  /** Stream position right after the last CHECKPOINT_END (0: none yet). */
  private lastCheckpointEnd = 0;
  /** How end() ended the stream: with END, or at its last checkpoint (a saver that writes no END after stop, as Xen's libxc). */
  endedWith: 'END' | 'checkpoint' | undefined;
  private current: EpochInProgress | undefined;
  private park: Deferred<boolean> | undefined;
  private saving: Promise<void> | undefined;
  private failure: Error | undefined;
  private suspended = false;
  private announced = false;
  private rounds = 0;
  private pagesSent = 0;
  private readonly meter: PrecopyMeter | undefined;

  constructor(private readonly options: CheckpointSessionOptions) {
    this.encoder = new StreamEncoder(options.framing ?? 'libxl', options.strategy.kind === 'colo');
    const report = options.onProgress;
    this.meter = report && new PrecopyMeter({ now: options.now, intervalMs: options.progressIntervalMs ?? DEFAULT_PROGRESS_INTERVAL_MS, report });
  }

  /** Stream bytes written so far. */
  get bytesSent(): number {
    return this.encoder.position;
  }

  /** Epochs the target holds. */
  get epoch(): number {
    return this.epochs;
  }

  /**
   * Opens the stream with who sends it (the libxl header, TANDEM_PRIMARY),
   * flushed at once: the secondary gives a new connection only seconds to
   * name its primary, and what comes before the pre-copy (the devices'
   * setup, reading the domain's config with `xl list -l`) can take longer
   * than that on a loaded host. precopy() does it if nobody did.
   */
  async announce(): Promise<void> {
    if (this.phase !== 'new' || this.announced) return;
    this.announced = true;
    const { generation } = this.options;
    if (!this.libxl) return;
    this.emit(this.encoder.libxlHeader());
    // Before anything the secondary would apply: it decides from this whether the stream may go on.
    if (generation !== undefined) this.emit(this.encoder.record({ layer: 'libxl', type: 'OPTIONAL', code: TandemType.TANDEM_PRIMARY, data: encodePrimaryRecord(generation) }));
    await this.flush();
  }

  /** The devices' live syncs, live pre-copy rounds, then the first checkpoint (epoch 1), held by the target. */
  async precopy(): Promise<PrecopySummary> {
    this.expect('new', 'precopy');
    await this.announce();
    this.phase = 'precopy';
    this.meter?.start(this.encoder.position, this.options.domain.info.pages);
    const libxl = this.libxl;
    const { generation, domain } = this.options;
    if (libxl && generation !== undefined && domain.toolstackConfig !== undefined) {
      const config = await domain.toolstackConfig();
      this.emit(this.encoder.record({ layer: 'libxl', type: 'OPTIONAL', code: TandemType.TANDEM_DOMAIN_CONFIG, data: encodeDomainConfigRecord(config) }));
    }
    const deviceSyncBytes = await this.deviceLiveSync();
    if (libxl) this.emit(this.encoder.record({ layer: 'libxl', type: 'LIBXC_CONTEXT' }));
    await this.flush();
    const first = this.nextEpoch('precopy');
    this.runSaver();
    const metrics = await first.done.promise;
    return { deviceSyncBytes, rounds: this.rounds, pagesSent: this.pagesSent, first: metrics };
  }

  /** One more checkpoint; resolves once the target holds it and the devices have committed it. */
  checkpoint(trigger: TriggerReason): Promise<EpochMetrics> {
    const failure = this.failure;
    if (failure !== undefined) return Promise.reject(failure);
    if (this.phase !== 'parked') return Promise.reject(this.outOfOrder('checkpoint'));
    this.phase = 'epoch';
    const e = this.nextEpoch(trigger);
    this.park!.resolve(true);
    return e.done.promise;
  }

  /** Ends the stream cleanly between epochs: the libxc layer ends, then libxl END. */
  async end(): Promise<void> {
    if (this.failure !== undefined) throw this.failure;
    this.expect('parked', 'end');
    this.phase = 'ended';
    this.park!.resolve(false);
    await this.saving;
    // The saver's own end (its END, its last flush) may have failed.
    const failure = this.failedWith();
    if (failure !== undefined) throw failure;
    this.endedWith = 'END';
    if (this.libxl) {
      if (this.encoder.betweenColoCheckpoints) this.emit(this.encoder.record({ layer: 'libxl', type: 'END' }));
      else if (this.encoder.position > this.lastCheckpointEnd) {
        this.encoder.libxcHandBack('end');
        this.emit(this.encoder.record({ layer: 'libxl', type: 'END' }));
      } else {
        // Told to stop, the saver wrote nothing (Xen's libxc writes no END then): the stream ends
        // right after its last CHECKPOINT_END, as a Remus stream does. That is its failover point.
        this.endedWith = 'checkpoint';
      }
    }
    await this.flush();
    await this.options.target.flushed();
  }

  /** The target is gone between epochs: the saver is told to stop and left to fail on its own writes. */
  abandon(): void {
    if (this.phase !== 'parked') return;
    this.phase = 'ended';
    this.park!.resolve(false);
  }

  /**
   * A plain save (`tandem save`, no checkpoints): the guest is suspended,
   * every page written, the stream ended; the guest stays suspended, and
   * the caller decides when it runs again.
   */
  async plain(): Promise<void> {
    this.expect('new', 'plain');
    this.phase = 'precopy';
    const { domain } = this.options;
    if (this.libxl) this.emit(this.encoder.libxlHeader(), this.encoder.record({ layer: 'libxl', type: 'LIBXC_CONTEXT' }));
    let dm: DeviceModelState | null | undefined;
    const outOfPlace = (what: string): never => {
      throw new CheckpointError(CheckpointErrorCodes.SESSION_STATE, `the saver called ${what} in a plain save`);
    };
    await domain.saver.save(this.output, { type: 'plain', version: this.options.version }, {
      suspend: async () => {
        await domain.suspend();
        dm = await domain.saveDeviceModel();
      },
      precopyPolicy: () => outOfPlace('precopyPolicy'),
      postcopy: () => outOfPlace('postcopy'),
      checkpoint: () => outOfPlace('checkpoint'),
    });
    if (this.libxl) {
      this.encoder.libxcHandBack('end');
      // A plain libxl stream carries the device model after the libxc END.
      this.emulatorRecords(dm!);
      this.emit(this.encoder.record({ layer: 'libxl', type: 'END' }));
    }
    await this.flush();
    await this.options.target.flushed();
    this.phase = 'ended';
  }

  private get libxl(): boolean {
    return (this.options.framing ?? 'libxl') === 'libxl';
  }

  /** What the saver writes into: its bytes are passed on as the libxc layer. */
  private readonly output: LibxcOutput = {
    write: (chunks) => {
      if (this.libxl) this.encoder.libxcBytes(chunks);
      for (const c of chunks) this.pending.push(c);
      this.meter?.wrote(this.encoder.position);
    },
    flush: () => this.flush(),
    flushed: () => this.options.target.flushed(),
  };

  private readonly writer: LibxlRecordWriter = {
    coloNewCheckpoint: () => this.emit(this.encoder.record({ layer: 'libxl', type: 'CHECKPOINT_STATE', controlId: ColoControl.NEW })),
    flush: () => this.flush(),
  };

  /**
   * What the saver may compress: nothing unless configured, for a Remus
   * stream framed by libxl (the replication stream). Each checkpoint asks;
   * the answer is yes once the target offered it and holds epoch 1. The
   * secondary offers before it acks anything, so by epoch 1's ack the offer
   * has arrived if it ever will.
   */
  private compressionParameters(): SaveParameters['compression'] {
    const c = this.options.compression;
    if (c === undefined || this.options.strategy.kind !== 'remus' || !this.libxl) return undefined;
    const { target } = this.options;
    return { cachePages: c.cachePages, enabled: () => this.epochs >= 1 && ((target.peerFeatures?.() ?? 0) & TandemFeature.PAGE_XBZRLE) !== 0 };
  }

  private runSaver(): void {
    const params: SaveParameters = { type: this.options.strategy.kind, version: this.options.version };
    const compression = this.compressionParameters();
    if (compression !== undefined) params.compression = compression;
    this.saving = this.options.domain.saver.save(this.output, params, this.callbacks()).then(
      () => {
        if (this.current !== undefined) this.fail(new CheckpointError(CheckpointErrorCodes.SESSION_STATE, `the saver ended the stream in epoch ${this.current.epoch}`));
      },
      (err: unknown) => this.fail(err),
    );
  }

  private fail(err: unknown): void {
    if (this.phase === 'failed') return;
    this.phase = 'failed';
    this.failure = err instanceof Error ? err : new Error(String(err));
    this.current?.done.reject(err);
    this.current = undefined;
    // Whatever failed, the guest runs on (libxl resumes the domain when Remus ends).
    if (this.suspended) {
      this.suspended = false;
      this.options.domain.resume().catch(() => {
        // Nothing more to do here: the engine's teardown reports the domain's state.
      });
    }
  }

  private nextEpoch(trigger: EpochMetrics['trigger']): EpochInProgress {
    const t0 = this.options.now();
    this.current = { epoch: this.epochs + 1, trigger, t0, suspendedAt: t0, pauseMs: 0, startPosition: this.encoder.position, dm: undefined, digest: undefined, done: deferred() };
    // Rejections reach the caller of precopy()/checkpoint(); nobody else waits on this one.
    this.current.done.promise.catch(() => {});
    return this.current;
  }

  private callbacks(): SaveCallbacks {
    const { domain, devices, strategy } = this.options;
    const cb: SaveCallbacks = {
      suspend: async () => {
        const e = this.epochInProgress();
        if (e.trigger === 'precopy') this.meter?.finish(this.encoder.position);
        await strategy.beforeSuspend?.(e.epoch, this.writer);
        e.suspendedAt = this.options.now();
        // The first epoch is timed from its suspend, not from the start of the live rounds.
        if (e.trigger === 'precopy') e.t0 = e.suspendedAt;
        e.startPosition = this.encoder.position;
        await domain.suspend();
        this.suspended = true;
        try {
          await devices.run('postsuspend', e.epoch);
          e.dm = await domain.saveDeviceModel();
          if (this.options.digest !== undefined) {
            e.digest = this.options.digest();
            this.options.onStaged?.(e.epoch, e.digest);
          }
        } catch (err) {
          // The saver calls postcopy only after a suspend that succeeded.
          await this.resume(e);
          throw err;
        }
      },
      precopyPolicy: (stats) => {
        this.rounds = stats.iteration;
        this.pagesSent += stats.sentLast;
        const decision = this.options.precopyPolicy(stats);
        if (decision === 'continue') this.meter?.roundDone(stats.iteration, stats.dirtyCount);
        return decision;
      },
      precopyProgress: (p) => this.meter?.pages(p),
      postcopy: async () => {
        const e = this.epochInProgress();
        if (strategy.resumeAt === 'postcopy') await this.resume(e);
      },
      checkpoint: (stats) => this.checkpointed(stats),
    };
    if (strategy.secondaryDirtyPages !== undefined) {
      const dirty = strategy.secondaryDirtyPages.bind(strategy);
      cb.secondaryDirtyPages = () => dirty(this.epochInProgress().epoch);
    }
    return cb;
  }

  /** Devices' preresume, then the guest runs (always, even if a device failed). */
  private async resume(e: EpochInProgress): Promise<void> {
    if (!this.suspended) return;
    try {
      await this.options.devices.run('preresume', e.epoch);
    } finally {
      this.suspended = false;
      await this.options.domain.resume();
      e.pauseMs = this.options.now() - e.suspendedAt;
    }
  }

  /** The checkpoint callback: libxl's half of the epoch, then park until the next one is asked for. */
  private async checkpointed(stats: LibxcEpochStats): Promise<boolean> {
    const e = this.epochInProgress();
    try {
      const t1 = this.options.now();
      if (this.libxl) {
        this.encoder.libxcHandBack('checkpoint');
        this.emulatorRecords(e.dm!);
        for (const rec of this.options.devices.records(e.epoch)) this.emit(this.encoder.record(rec));
        this.emit(this.encoder.record({ layer: 'libxl', type: 'CHECKPOINT_END' }));
        this.lastCheckpointEnd = this.encoder.position;
      }
      const bytes = this.encoder.position - e.startPosition;
      await this.flush();
      const t2 = this.options.now();
      await this.options.target.held(e.epoch);
      await this.options.strategy.afterHeld?.(e.epoch);
      this.epochs = e.epoch;
      const t3 = this.options.now();
      await this.options.devices.run('commit', e.epoch);
      await this.resume(e);
      const metrics: EpochMetrics = {
        epoch: e.epoch,
        trigger: e.trigger,
        pauseUs: Math.round(e.pauseMs * 1000),
        dirtyPages: stats.pages,
        bytes,
        sendMs: t2 - t1,
        ackMs: t3 - t2,
        totalMs: this.options.now() - e.t0,
      };
      if (e.digest !== undefined) metrics.digest = e.digest;
      if (stats.compression !== undefined) metrics.compression = stats.compression;
      this.current = undefined;
      this.park = deferred();
      if (this.phase !== 'failed') this.phase = 'parked';
      e.done.resolve(metrics);
    } catch (err) {
      await this.resume(e).catch(() => {});
      throw err;
    }
    return this.park.promise;
  }

  private epochInProgress(): EpochInProgress {
    if (this.current === undefined) throw new CheckpointError(CheckpointErrorCodes.SESSION_STATE, 'the saver called back outside an epoch');
    return this.current;
  }

  /** EMULATOR_XENSTORE_DATA (when the device model has keys) and EMULATOR_CONTEXT; nothing without a device model. */
  private emulatorRecords(dm: DeviceModelState | null): void {
    if (dm === null) return;
    const { emulatorId } = this.options.domain.info;
    if (dm.xenstore.length > 0) this.emit(this.encoder.record({ layer: 'libxl', type: 'EMULATOR_XENSTORE_DATA', emulatorId, index: 0, entries: dm.xenstore }));
    this.emit(this.encoder.record({ layer: 'libxl', type: 'EMULATOR_CONTEXT', emulatorId, index: 0, data: dm.data }));
  }

  /**
   * Libxl records ahead of the libxc stream, where the layout lets libxl
   * speak before LIBXC_CONTEXT. Each batch is written (honouring the
   * target's backpressure) before the next is made, so the guest runs in
   * between and a device never holds more than one batch.
   */
  private async deviceLiveSync(): Promise<number> {
    const before = this.encoder.position;
    if (!this.libxl) return 0;
    for (const batch of this.options.devices.liveSync()) {
      for (const rec of batch) this.emit(this.encoder.record(rec));
      await this.flush();
    }
    return this.encoder.position - before;
  }

  private emit(...chunkLists: readonly (readonly Buffer[])[]): void {
    for (const chunks of chunkLists) for (const c of chunks) this.pending.push(c);
  }

  private async flush(): Promise<void> {
    if (this.pending.length === 0) return;
    const chunks = this.pending;
    this.pending = [];
    await this.options.target.write(chunks);
  }

  /** The failure so far (a method, so that a check before an await does not narrow the one after it). */
  private failedWith(): Error | undefined {
    return this.failure;
  }

  private expect(phase: Phase, what: string): void {
    if (this.phase !== phase) throw this.outOfOrder(what);
  }

  private outOfOrder(what: string): CheckpointError {
    return new CheckpointError(CheckpointErrorCodes.SESSION_STATE, `${what}() in a session that is ${this.phase}`);
  }
}
