/**
 * The primary's checkpoint engine: keeps the guest protected. It connects
 * to the secondary, runs a protection session (pre-copy, then epochs paced
 * by the trigger pipeline), and when the link fails or the secondary refuses
 * an epoch it says so, keeps the guest running, and starts over with a fresh
 * pre-copy as soon as the secondary can be reached.
 *
 * It owns the checkpoint devices of the domain (one DeviceSet, set up and
 * torn down around each session) and never names one; the mode controller
 * decides when checkpoints are due, the epoch strategy what an epoch is.
 */
import { BehaviorSubject, Observable, ReplaySubject, Subject, asyncScheduler, from, lastValueFrom, merge, takeUntil, tap, EMPTY, type SchedulerLike } from 'rxjs';
import type { ProtectedDomain } from '../domain/types.js';
import { codeChain } from '../errors.js';
import type { Logger } from '../util/logger.js';
import { formatAddress, type Address } from '../util/address.js';
import { ReplicationLink } from '../transport/link.js';
import type { Transport } from '../transport/transport.js';
import type { DeviceSet } from './devices.js';
import { CheckpointError, CheckpointErrorCodes } from './errors.js';
import type { ModeController } from './mode.js';
import { precopyPolicy, type PrecopyOptions } from './precopy.js';
import type { PrecopyTurns } from './precopy-gate.js';
import type { PrecopyProgress } from './precopy-progress.js';
import { CheckpointSession, type EpochMetrics } from './session.js';
import { ColoEpochs, remusEpochs, type EpochStrategy } from './strategies.js';
import { mergeTriggers, paceEpochs, type Trigger } from './triggers.js';

export type ProtectionState = 'stopped' | 'connecting' | 'precopy' | 'protected' | 'degraded' | 'stopping';

const SYNCING = 'syncing the standby: devices and guest memory, live (pre-copy)';

export interface StateChange {
  state: ProtectionState;
  reason: string;
}

export interface EngineOptions {
  secondary: Address;
  minIntervalMs: number;
  /** An epoch at the latest this long after the previous one began (0: no bound). */
  maxIntervalMs: number;
  ackTimeoutMs: number;
  connectTimeoutMs: number;
  /** Wait between the first attempts to reconnect to the secondary; after five failed ones it doubles each time. */
  retryMs: number;
  /** The most the wait between attempts grows to (default: 30 × retryMs). */
  retryMaxMs?: number;
  streamVersion: 2 | 3;
  precopy: PrecopyOptions;
  /** Take a state digest at every suspend (costs pause time; for checks). */
  digest?: () => string;
  /** Told of each epoch's digest as soon as it is taken, before the epoch is sent. */
  onStaged?: (epoch: number, digest: string) => void;
  /**
   * This primary's generation: each stream opens with it, so the secondary
   * can refuse a superseded primary. A function is asked once per session,
   * after the devices' setup (the arbiter may move it between sessions).
   */
  generation?: number | (() => number);
  /** Pre-copy progress at most this often (default 1 s; 0: whenever it moves). */
  progressIntervalMs?: number;
  /** Compress Remus checkpoint pages where the secondary offers it, with a cache of this many pages (CheckpointSessionOptions). */
  compression?: { cachePages: number };
}

export interface EngineDeps {
  domain: ProtectedDomain;
  /** The domain's checkpoint devices; the engine runs their setup and teardown around each session. */
  devices: DeviceSet;
  /** When checkpoints are due; its kind (remus or colo) is the kind of every session's epochs. */
  mode: ModeController;
  transport: Transport;
  /** The comparator's checkpoint requests (COLO); they start an epoch only in colo mode. */
  divergence$?: Observable<Trigger>;
  /**
   * The output buffer's "output now waits for epoch N" (once per epoch);
   * it starts that epoch only under the mode's output policy, in remus mode.
   */
  outputWaiting$?: Observable<number>;
  logger: Logger;
  /** Where the process's pre-copies take turns (src/checkpoint/precopy-gate.ts); undefined: this one never waits. */
  precopyTurns?: PrecopyTurns;
  scheduler?: SchedulerLike;
  now?: () => number;
}

export class PrimaryEngine {
  readonly metrics$ = new Subject<EpochMetrics>();
  /** How each session's live pre-copy goes (see precopy-progress.ts). */
  readonly precopy$ = new Subject<PrecopyProgress>();
  readonly state$ = new BehaviorSubject<StateChange>({ state: 'stopped', reason: 'not started' });
  private readonly operator$ = new Subject<Trigger>();
  /** Replays, so a session that subscribes after stop() still sees it. */
  private stop$ = new ReplaySubject<void>(1);
  private loop: Promise<void> | undefined;
  private stopping = false;
  private wake: (() => void) | undefined;
  private link: ReplicationLink | undefined;
  /** Protection sessions begun since start (one per pre-copy). */
  private sessionCount = 0;
  /** Failed sessions since the guest was last protected; 0 while it is. */
  private failures = 0;
  private currentSession: CheckpointSession | undefined;
  /** Stream bytes of the sessions before the current one. */
  private sentBefore = 0;

  constructor(
    private readonly deps: EngineDeps,
    private readonly options: EngineOptions,
  ) {}

  get state(): ProtectionState {
    return this.state$.value.state;
  }

  /** The current (or last) protection session's number, from 1; 0 before the first. */
  get session(): number {
    return this.sessionCount;
  }

  start(): void {
    if (this.loop) return;
    this.stopping = false;
    this.stop$ = new ReplaySubject<void>(1);
    this.loop = this.protectLoop();
  }

  /** Ends protection: finishes the epoch in flight, ends the stream cleanly, closes the link. */
  async stop(): Promise<void> {
    if (!this.loop) return;
    this.stopping = true;
    this.setState('stopping', 'stop requested');
    this.stop$.next();
    this.wake?.();
    await this.loop;
    this.loop = undefined;
    this.setState('stopped', 'stopped');
  }

  /** Stream bytes written to secondaries since start, every session's pre-copy included. */
  get bytesSent(): number {
    return this.sentBefore + (this.currentSession?.bytesSent ?? 0);
  }

  /** Since the secondary last sent anything on the session's link, ms (undefined: no link). */
  get linkSilentMs(): number | undefined {
    return this.link?.silentMs;
  }

  /**
   * The secondary is gone though TCP has not noticed (a partition, a hung
   * host): ends the session now, as a lost link would, rather than at the
   * ack timeout.
   */
  abandonLink(reason: string): void {
    this.link?.abandon(new CheckpointError(CheckpointErrorCodes.ACK_TIMEOUT, reason));
  }

  /** The secondary is heard from again (its heartbeats): a degraded engine tries now instead of at the end of its backoff. */
  retryNow(why: string): void {
    if (this.stopping || this.state !== 'degraded') return;
    this.deps.logger.info({ attempt: this.failures + 1 }, `${why}: trying to protect the guest again now`);
    this.wake?.();
  }

  /** An operator asks for a checkpoint now. */
  requestCheckpoint(by = 'operator'): void {
    this.operator$.next({ reason: 'operator', by });
  }

  private setState(state: ProtectionState, reason: string): void {
    if (this.state$.value.state === state && this.state$.value.reason === reason) return;
    this.state$.next({ state, reason });
  }

  private async protectLoop(): Promise<void> {
    const { logger, devices } = this.deps;
    const o = this.options;
    const where = formatAddress(o.secondary);
    const now = this.deps.now ?? (() => performance.now());
    let unprotectedSince = 0;
    let lastMessage = '';
    while (!this.stopping) {
      this.setState('connecting', `connecting to the secondary at ${where}`);
      const link = new ReplicationLink({ transport: this.deps.transport, secondary: o.secondary, connectTimeoutMs: o.connectTimeoutMs, ackTimeoutMs: o.ackTimeoutMs });
      try {
        await link.start();
        this.link = link;
        await this.runSession(link);
        this.link = undefined;
        await devices.run('teardown');
        if (this.stopping) break;
      } catch (err) {
        link.destroy();
        // Devices apply their policy for a lost standby (e.g. release or keep holding output).
        await devices.run('teardown').catch((e: unknown) => logger.error({ err: e }, 'checkpoint device teardown failed'));
        if (this.stopping) break;
        this.link = undefined;
        const message = err instanceof Error ? err.message : String(err);
        const codes = codeChain(err);
        if (this.failures === 0) unprotectedSince = now();
        this.failures++;
        // A fault that heals soon (a lost packet, a restart) is retried at once, QUICK_ATTEMPTS times; then
        // exponential backoff: a secondary that is down for hours is not knocked on every second.
        const doublings = Math.min(Math.max(0, this.failures - QUICK_ATTEMPTS), 30);
        const waitMs = Math.min(o.retryMs * 2 ** doublings, Math.max(o.retryMs, o.retryMaxMs ?? 30 * o.retryMs));
        const forS = Math.round((now() - unprotectedSince) / 1000);
        if (this.failures === 1 || message !== lastMessage) {
          // Loud, once per cause: the guest keeps running, but nothing protects it now.
          logger.error({ codes, attempt: this.failures }, `UNPROTECTED: ${message}; the guest runs without a standby, retrying in ${fmtWait(waitMs)}`);
        } else {
          logger.warn({ codes, attempt: this.failures, unprotectedS: forS }, `still unprotected: ${message} (attempt ${this.failures}, unprotected for ${forS} s); next attempt in ${fmtWait(waitMs)}`);
        }
        // The stack is for developers: never at warn or error, where operators read.
        logger.debug({ err }, 'the protection session ended');
        lastMessage = message;
        this.setState('degraded', this.failures === 1 ? message : `${message} (attempt ${this.failures}, unprotected for ${forS} s)`);
        await this.sleep(waitMs);
      }
    }
  }

  private strategy(link: ReplicationLink): EpochStrategy {
    return this.deps.mode.kind === 'colo' ? new ColoEpochs(link, this.deps.domain.info.pages, this.options.ackTimeoutMs) : remusEpochs;
  }

  private async runSession(link: ReplicationLink): Promise<void> {
    const { domain, devices, logger } = this.deps;
    const o = this.options;
    const session = new CheckpointSession({
      domain,
      devices,
      target: link,
      strategy: this.strategy(link),
      version: o.streamVersion,
      precopyPolicy: precopyPolicy(o.precopy),
      now: this.deps.now ?? (() => performance.now()),
      digest: o.digest,
      onStaged: o.onStaged,
      generation: typeof o.generation === 'function' ? o.generation() : o.generation,
      progressIntervalMs: o.progressIntervalMs,
      compression: o.compression,
      onProgress: (p) => {
        this.precopy$.next(p);
        if (!p.done) logger.info(p, `pre-copy: ${describeProgress(p)}`);
      },
    });
    this.sessionCount++;
    this.currentSession = session;
    try {
      await this.protectWith(session, link);
    } finally {
      this.sentBefore += session.bytesSent;
      this.currentSession = undefined;
    }
  }

  /** The session's pre-copy, once it is this domain's turn among the process's (a stop ends the wait). */
  private async precopyInTurn(session: CheckpointSession): Promise<Awaited<ReturnType<CheckpointSession['precopy']>>> {
    const turns = this.deps.precopyTurns;
    if (turns === undefined) return session.precopy();
    const stopped = new AbortController();
    const sub = this.stop$.subscribe(() => stopped.abort(new CheckpointError(CheckpointErrorCodes.PRECOPY_ABORTED, 'stopped while waiting for a turn to pre-copy')));
    try {
      return await turns.run(
        () => {
          this.setState('precopy', SYNCING);
          return session.precopy();
        },
        { signal: stopped.signal, onWait: () => this.setState('precopy', 'waiting for another domain\'s pre-copy to end (one at a time in this process), then syncing the standby') },
      );
    } finally {
      sub.unsubscribe();
    }
  }

  private async protectWith(session: CheckpointSession, link: ReplicationLink): Promise<void> {
    const { devices, mode, logger } = this.deps;
    const o = this.options;
    const scheduler = this.deps.scheduler ?? asyncScheduler;
    // Who sends the stream, before the devices' setup (an output buffer's takes seconds on a loaded dom0).
    await session.announce();
    await devices.run('setup');
    this.setState('precopy', SYNCING);
    // A link that fails is noticed at once, not at the next epoch's write.
    const linkLost$ = new Observable<never>((sub) => {
      link.onClose = (err) => sub.error(err);
    });
    try {
      const summary = await this.precopyInTurn(session);
      if (this.stopping) {
        this.metrics$.next(summary.first);
        await session.end();
        await link.stop();
        return;
      }
      const triggers$ = mergeTriggers(
        {
          interval$: mode.interval$(),
          operator$: this.operator$,
          divergence$: mode.gate(this.deps.divergence$ ?? EMPTY),
          output$: mode.outputGate(this.deps.outputWaiting$ ?? EMPTY),
        },
        scheduler,
      ).pipe(takeUntil(this.stop$));
      const epochs$ = paceEpochs(
        triggers$,
        (t) => from(session.checkpoint(t.reason)),
        // Output waiting for an epoch the session has already taken was released with it: no epoch for it.
        { minIntervalMs: o.minIntervalMs, maxIntervalMs: o.maxIntervalMs, due: (t) => t.reason !== 'output' || t.epoch === undefined || t.epoch > session.epoch },
        scheduler,
      );
      // Subscribed before anyone hears of epoch 1, so a request made on hearing it is not lost.
      const done = lastValueFrom(merge(epochs$.pipe(tap((m) => this.metrics$.next(m))), linkLost$.pipe(takeUntil(this.stop$))), { defaultValue: undefined });
      this.metrics$.next(summary.first);
      logger.info({ deviceSyncBytes: summary.deviceSyncBytes, rounds: summary.rounds, pagesSent: summary.pagesSent, pauseUs: summary.first.pauseUs, bytes: session.bytesSent }, 'pre-copy done, guest protected');
      this.failures = 0;
      // A reason that stays true for the whole session. Epochs number from 1 in each session (the
      // stream's own numbering); the session number tells sessions apart.
      this.setState('protected', `session ${this.sessionCount}: the secondary at ${formatAddress(o.secondary)} holds each epoch before its output leaves`);
      await done;
    } catch (err) {
      session.abandon();
      throw err;
    }
    // Stopped: the epoch in flight finished; close the stream as Xen would.
    await session.end();
    await link.stop();
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.wake = done;
    });
  }
}

/** Attempts at retryMs before the wait starts doubling. */
const QUICK_ATTEMPTS = 5;

/** 1500 → "1.5 s", 500 → "500 ms". */
function fmtWait(ms: number): string {
  return ms < 1000 ? `${ms} ms` : `${Number((ms / 1000).toFixed(1))} s`;
}

const MB = 1e6;

/** One progress report in words, for the log: round, pages, %, rate, ETA. */
export function describeProgress(p: PrecopyProgress): string {
  const pages = p.pagesSent === null ? '' : ` ${p.pagesSent}${p.pagesTotal === null ? '' : `/${p.pagesTotal}`} pages${p.percent === null ? '' : ` (${p.percent.toFixed(1)} %)`},`;
  const eta = p.etaMs === null ? '' : `, ETA ${Math.ceil(p.etaMs / 1000)} s`;
  return `round ${p.iteration},${pages} ${(p.bytes / MB).toFixed(1)} MB sent, ${(p.bytesPerSecond / MB).toFixed(1)} MB/s${eta}`;
}
