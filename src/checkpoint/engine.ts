/**
 * The primary's checkpoint engine: keeps the guest protected. It connects
 * to the secondary, runs a protection session (pre-copy, then epochs paced
 * by the trigger pipeline), and when the link fails or the secondary refuses
 * an epoch it says so, keeps the guest running, and starts over with a fresh
 * pre-copy as soon as the secondary can be reached.
 */
import { BehaviorSubject, Observable, ReplaySubject, Subject, asyncScheduler, from, lastValueFrom, merge, takeUntil, tap, type SchedulerLike } from 'rxjs';
import type { Domain, SaveCallbacks } from '../domain/types.js';
import type { Logger } from '../util/logger.js';
import { ReplicationLink } from '../transport/link.js';
import type { DeviceSet } from './devices.js';
import { ProtectionSession, type EpochMetrics } from './session.js';
import { mergeTriggers, paceEpochs, type Trigger } from './triggers.js';

export type ProtectionState = 'stopped' | 'connecting' | 'precopy' | 'protected' | 'degraded' | 'stopping';

export interface StateChange {
  state: ProtectionState;
  reason: string;
}

export interface EngineOptions {
  secondaryHost: string;
  secondaryPort: number;
  /** Remus interval; null for none (COLO or operator-driven only). */
  intervalMs: number | null;
  minIntervalMs: number;
  maxIntervalMs: number;
  ackTimeoutMs: number;
  connectTimeoutMs: number;
  /** Wait between attempts to (re)connect to the secondary. */
  retryMs: number;
  streamVersion: 2 | 3;
  precopyBatchPages: number;
  /** Take a state digest at every suspend (costs pause time; for checks). */
  verifyDigest?: () => string;
  /** Told of each epoch's digest as soon as it is staged, before it is sent. */
  onStaged?: (epoch: number, digest: string) => void;
  /** COLO epochs: the secondary runs its guest; see ProtectionSession. */
  colo?: boolean;
}

export interface EngineDeps {
  domain: Domain;
  callbacks: SaveCallbacks;
  /** The checkpoint devices the callbacks drive; the engine runs their setup and teardown around each session. */
  devices?: DeviceSet;
  logger: Logger;
  scheduler?: SchedulerLike;
  now?: () => number;
}

export class PrimaryEngine {
  readonly metrics$ = new Subject<EpochMetrics>();
  readonly state$ = new BehaviorSubject<StateChange>({ state: 'stopped', reason: 'not started' });
  /** Divergence requests (the COLO comparator feeds this). */
  readonly divergence$ = new Subject<Trigger>();
  private readonly operator$ = new Subject<Trigger>();
  private readonly interval$: BehaviorSubject<number | null>;
  /** Replays, so a session that subscribes after stop() still sees it. */
  private stop$ = new ReplaySubject<void>(1);
  private loop: Promise<void> | undefined;
  private stopping = false;
  private wake: (() => void) | undefined;

  constructor(
    private readonly deps: EngineDeps,
    private readonly options: EngineOptions,
  ) {
    this.interval$ = new BehaviorSubject<number | null>(options.intervalMs);
  }

  get state(): ProtectionState {
    return this.state$.value.state;
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

  /** An operator asks for a checkpoint now. */
  requestCheckpoint(detail = 'operator'): void {
    this.operator$.next({ reason: 'operator', detail });
  }

  /** Changes the Remus interval (null stops the timer). */
  setInterval(ms: number | null): void {
    this.interval$.next(ms);
  }

  private setState(state: ProtectionState, reason: string): void {
    if (this.state$.value.state === state && this.state$.value.reason === reason) return;
    this.state$.next({ state, reason });
  }

  private async protectLoop(): Promise<void> {
    const { logger } = this.deps;
    const o = this.options;
    while (!this.stopping) {
      this.setState('connecting', `connecting to the secondary at ${o.secondaryHost}:${o.secondaryPort}`);
      const link = new ReplicationLink({ host: o.secondaryHost, port: o.secondaryPort, connectTimeoutMs: o.connectTimeoutMs });
      try {
        await link.start();
        await this.runSession(link);
        await this.deps.devices?.run('teardown');
        if (this.stopping) break;
      } catch (err) {
        link.destroy();
        // Devices apply their policy for a lost standby (e.g. release or keep holding output).
        await this.deps.devices?.run('teardown').catch((e: unknown) => logger.error({ err: e }, 'checkpoint device teardown failed'));
        if (this.stopping) break;
        const message = err instanceof Error ? err.message : String(err);
        // Loud: the guest keeps running, but nothing protects it now.
        logger.error({ err }, `UNPROTECTED: ${message}; the guest runs without a standby, retrying in ${o.retryMs} ms`);
        this.setState('degraded', message);
        await this.sleep(o.retryMs);
      }
    }
  }

  private async runSession(link: ReplicationLink): Promise<void> {
    const { domain, callbacks, logger } = this.deps;
    const o = this.options;
    const scheduler = this.deps.scheduler ?? asyncScheduler;
    const session = new ProtectionSession(domain, callbacks, link, {
      version: o.streamVersion,
      ackTimeoutMs: o.ackTimeoutMs,
      precopyBatchPages: o.precopyBatchPages,
      now: this.deps.now ?? (() => performance.now()),
      digest: o.verifyDigest,
      onStaged: o.onStaged,
      colo: o.colo,
      deviceRecords: this.deps.devices === undefined ? undefined : (epoch) => this.deps.devices!.records(epoch),
      deviceLiveSync: this.deps.devices === undefined ? undefined : () => this.deps.devices!.liveSync(),
    });
    await this.deps.devices?.run('setup');
    this.setState('precopy', 'sending written disk blocks and all of guest memory live (pre-copy)');
    const summary = await session.precopy();
    if (this.stopping) {
      this.metrics$.next(summary.first);
      await session.end();
      await link.stop();
      return;
    }
    const triggers$ = mergeTriggers({ interval$: this.interval$, operator$: this.operator$, divergence$: this.divergence$ }, scheduler).pipe(takeUntil(this.stop$));
    const epochs$ = paceEpochs(triggers$, (t) => from(session.epochFor(t.reason)), { minIntervalMs: o.minIntervalMs, maxIntervalMs: o.maxIntervalMs }, scheduler);
    // A link that fails between epochs is noticed at once, not at the next trigger.
    const linkLost$ = new Observable<never>((sub) => {
      link.onClose = (err) => sub.error(err);
    });
    // Subscribed before anyone hears of epoch 1, so a request made on hearing it is not lost.
    const done = lastValueFrom(merge(epochs$.pipe(tap((m) => this.metrics$.next(m))), linkLost$.pipe(takeUntil(this.stop$))), { defaultValue: undefined });
    this.metrics$.next(summary.first);
    logger.info(
      { deviceSyncBytes: summary.deviceSyncBytes, rounds: summary.rounds, pagesSent: summary.pagesSent, pauseUs: summary.first.pauseUs },
      'pre-copy done, guest protected',
    );
    this.setState('protected', `secondary at ${o.secondaryHost}:${o.secondaryPort} holds epoch 1`);
    await done;
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
