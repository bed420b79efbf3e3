/**
 * Sources: what the monitor watches. Each turns one node's own events
 * (PrimaryEngine on the primary; SecondaryServer and Promoter on the
 * secondary) into monitor event bodies, keeps where things stand for the
 * snapshot, and offers the control actions that node can do.
 *
 * Observers must not break replication: every handler here is cheap (no I/O,
 * no serialization) and runs inside the engine's own callbacks.
 */
import { Subject, from, skip, type Observable, type Subscription } from 'rxjs';
import type { PrimaryEngine, ProtectionState } from '../checkpoint/engine.js';
import type { ModeController } from '../checkpoint/mode.js';
import type { Trigger } from '../checkpoint/triggers.js';
import type { EpochMetrics } from '../checkpoint/session.js';
import type { ArbiterView } from '../arbiter/arbiter.js';
import type { Promoter } from '../failover/promoter.js';
import type { FenceNotice } from '../heartbeat/fencing.js';
import type { EpochCommit, ReplicaState } from '../secondary/receiver.js';
import type { SecondaryServer } from '../secondary/server.js';
import type { SettableMode, ControlTarget } from './control.js';
import type { EpochFields, EventBody, FailoverFields, HeartbeatState, MonitorState, NodeRole, PrecopyFields, SnapshotEvent } from './events.js';
import type { ServiceClientStats } from './metrics.js';
import { primaryStateName, replicaStateName } from './vocabulary.js';

/** Epochs kept for a new client's charts. */
export const RECENT_EPOCHS = 300;

/** What a node reports of itself: the snapshot's own fields (the monitor adds actions, clients, the peer and the history). */
export type SourceStatus = Pick<
  SnapshotEvent,
  'state' | 'reason' | 'mode' | 'intervalMs' | 'lastEpoch' | 'lagMs' | 'recent' | 'arbiter' | 'precopy' | 'generation' | 'heartbeat' | 'heldBytes' | 'lastFailover' | 'guestProtected'
>;

/** What the metrics read at scrape time beyond the snapshot: cheap, no I/O. */
export interface SourceReadings {
  /** The primary: a link to its secondary is open; the secondary: a primary streams (after a failover: the new primary's link to its standby). */
  peerUp: boolean;
  /** The generation this node's stream carries (primary), or of the primary whose checkpoint the replica holds (secondary); undefined: none. */
  generation: number | undefined;
  /** Guest output held until an epoch covering it is acked, bytes; undefined: none held by Tandem here. */
  heldOutputBytes: number | undefined;
  /** How long the guest has run without a standby, ms (0: protected); undefined: no guest runs here (a secondary standing by). */
  unprotectedMs: number | undefined;
  /** Checkpoint stream bytes sent so far, pre-copies included; undefined: the metrics count the epochs' bytes. */
  streamBytes: number | undefined;
}

export interface MonitorSource {
  readonly role: NodeRole;
  readonly events$: Subject<EventBody>;
  readonly control: ControlTarget;
  /** The clients of this node's service front, if it has one (for the metrics). */
  readonly clients?: () => ServiceClientStats | undefined;
  status(): SourceStatus;
  readings(): SourceReadings;
  start(): void;
  stop(): void;
}

/** Without an arbiter: each node decides alone. */
const NO_ARBITER: ArbiterView = { kind: 'none', holder: null, generation: null, protected: false, authority: true };

export interface Clocks {
  /** Monotonic ms, for lag. */
  now?: () => number;
  /** Wall clock ms, stamped on recent epochs and on the last failover. */
  wallNow?: () => number;
}

/** What both roles may tell of the node beyond its engine or server. */
interface NodeReadings {
  /** How the node hears its peer on the heartbeat channel (undefined: it has none, or has not started it). */
  heartbeat?: () => HeartbeatState | undefined;
}

abstract class BaseSource {
  readonly events$ = new Subject<EventBody>();
  protected current: MonitorState = 'stopped';
  protected reason = 'not started';
  protected lastEpoch = 0;
  protected lastEpochAt: number | undefined;
  protected lastFailover: FailoverFields | null = null;
  private readonly recent: (EpochFields & { ts: number })[] = [];

  constructor(
    protected readonly clocks: Clocks,
    private readonly arbiter?: { view(): ArbiterView },
  ) {}

  protected now(): number {
    return (this.clocks.now ?? (() => performance.now()))();
  }

  protected setState(state: MonitorState, reason: string): void {
    if (state === this.current && reason === this.reason) return;
    const previous = this.current;
    this.current = state;
    this.reason = reason;
    this.events$.next({ type: 'state', state, previous, reason });
  }

  protected epoch(fields: EpochFields): void {
    this.lastEpoch = fields.epoch;
    this.lastEpochAt = this.now();
    this.recent.push({ ...fields, ts: (this.clocks.wallNow ?? Date.now)() });
    if (this.recent.length > RECENT_EPOCHS) this.recent.shift();
    this.events$.next({ type: 'epoch', ...fields });
  }

  /** The node took over the guest, or was fenced by one that did: kept for the snapshot, and told. */
  protected failedOver(reason: string, generation: number | null): void {
    this.lastFailover = { ts: (this.clocks.wallNow ?? Date.now)(), reason, generation };
    this.events$.next({ type: 'failover', reason, generation });
  }

  protected base(): Pick<SourceStatus, 'arbiter' | 'state' | 'reason' | 'lastEpoch' | 'lagMs' | 'recent' | 'lastFailover'> {
    return {
      lastFailover: this.lastFailover,
      arbiter: this.arbiter?.view() ?? NO_ARBITER,
      state: this.current,
      reason: this.reason,
      lastEpoch: this.lastEpoch,
      lagMs: this.lastEpochAt === undefined ? null : Math.max(0, this.now() - this.lastEpochAt),
      recent: [...this.recent],
    };
  }
}

export interface PrimarySourceOptions extends Clocks, NodeReadings {
  /** Who may serve: shown in the snapshot. */
  arbiter?: { view(): ArbiterView };
  /** Starts a planned handover (the node stops once it is done); absent: not offered. */
  switchover?: () => Promise<Record<string, unknown>>;
  engine: PrimaryEngine;
  /** The owner of the checkpoint mode: the source reports it and passes operators' changes to it. */
  mode: ModeController;
  /** The comparator's checkpoint requests (COLO), reported as divergences. */
  divergences$?: Observable<Trigger>;
  /** The service front's clients. */
  clients?: () => ServiceClientStats | undefined;
  /** The generation the engine's next (or current) stream carries. */
  generation?: () => number | undefined;
  /** Output the service front holds for a commit, bytes (undefined: it holds none, or the guest holds its own). */
  heldOutputBytes?: () => number | undefined;
  /** Resolves if another node takes the guest over from this one while it runs (src/node/primary.ts, whenFenced). */
  fenced?: Promise<FenceNotice>;
}

const fromEngine = (m: EpochMetrics): EpochFields => ({
  epoch: m.epoch,
  trigger: m.trigger,
  pauseUs: m.pauseUs,
  dirtyPages: m.dirtyPages,
  bytes: m.bytes,
  sendMs: m.sendMs,
  ackMs: m.ackMs,
  totalMs: m.totalMs,
  applyMs: null,
});

export class PrimarySource extends BaseSource implements MonitorSource {
  readonly role = 'primary' as const;
  readonly control: ControlTarget;
  readonly clients: (() => ServiceClientStats | undefined) | undefined;
  private subscriptions: Subscription[] = [];
  /** Protected at least once: a later pre-copy is a re-protection. */
  private wasProtected = false;
  /** The pre-copy under way, as last reported. */
  private precopy: PrecopyFields | null = null;
  /** When the guest last lost (or never had) its standby; undefined while protected. */
  private unprotectedSince: number | undefined;

  constructor(private readonly options: PrimarySourceOptions) {
    super(options, options.arbiter);
    const { engine, mode } = options;
    this.clients = options.clients;
    this.control = {
      checkpoint: () => engine.requestCheckpoint('monitor'),
      setInterval: (ms) => mode.setInterval(ms, `interval set to ${ms} ms by an operator`),
      setMode: (m: SettableMode) => mode.choose(m, `set to ${m} by an operator`),
      stopProtection: () => engine.stop(),
      ...(options.switchover === undefined ? {} : { switchover: options.switchover }),
      startProtection: () => engine.start(),
    };
  }

  start(): void {
    const { engine, mode, divergences$ } = this.options;
    this.unprotectedSince = this.now();
    this.subscriptions.push(
      engine.state$.subscribe(({ state, reason }) => this.onState(state, reason)),
      engine.metrics$.subscribe((m) => this.epoch({ ...fromEngine(m), session: engine.session })),
      engine.precopy$.subscribe((p) => {
        this.precopy = p;
        this.events$.next({ type: 'precopy', ...p });
      }),
      // The current mode is in the snapshot; events tell changes.
      mode.mode$.pipe(skip(1)).subscribe((m) => this.events$.next({ type: 'mode', mode: m.mode, intervalMs: m.mode === 'remus' ? m.intervalMs : null, reason: m.reason })),
    );
    if (divergences$ !== undefined) {
      this.subscriptions.push(divergences$.subscribe((t) => this.events$.next({ type: 'divergence', connection: t.request?.flow ?? null, reason: t.request?.reason ?? 'outputs differ' })));
    }
    const fenced = this.options.fenced;
    if (fenced !== undefined) {
      this.subscriptions.push(
        from(fenced).subscribe((n) => {
          const by = n.peerGeneration > 0 ? `generation ${n.peerGeneration} serves the guest now` : 'another node took the domain';
          this.failedOver(`fenced: ${by} (this node's generation: ${n.ownGeneration})`, n.peerGeneration > 0 ? n.peerGeneration : null);
        }),
      );
    }
  }

  stop(): void {
    for (const s of this.subscriptions) s.unsubscribe();
    this.subscriptions = [];
  }

  status(): SourceStatus {
    const { mode, generation, heldOutputBytes, heartbeat } = this.options;
    const m = mode.current;
    return {
      ...this.base(),
      mode: m.mode,
      intervalMs: m.mode === 'remus' ? m.intervalMs : null,
      precopy: this.precopy,
      generation: generation?.() ?? null,
      heartbeat: heartbeat?.() ?? null,
      heldBytes: heldOutputBytes?.() ?? null,
      guestProtected: this.current === 'protected',
    };
  }

  readings(): SourceReadings {
    const { engine } = this.options;
    return {
      peerUp: engine.linkSilentMs !== undefined,
      generation: this.options.generation?.(),
      heldOutputBytes: this.options.heldOutputBytes?.(),
      unprotectedMs: this.unprotectedSince === undefined ? 0 : Math.max(0, this.now() - this.unprotectedSince),
      streamBytes: engine.bytesSent,
    };
  }

  private onState(state: ProtectionState, reason: string): void {
    if (state === 'protected') {
      this.wasProtected = true;
      this.unprotectedSince = undefined;
    } else {
      this.unprotectedSince ??= this.now();
    }
    // A pre-copy's progress means something only while it runs.
    if (state !== 'precopy') this.precopy = null;
    this.setState(primaryStateName(state, this.wasProtected), reason);
  }
}

export interface SecondarySourceOptions extends Clocks, NodeReadings {
  server: SecondaryServer;
  /** An operator's failover goes through it, and takes a newer generation as any promotion does (its claim). */
  promoter: Promoter;
  arbiter?: { view(): ArbiterView };
  /** After a failover: the engine protecting the guest this node now runs (undefined until it has one). */
  serving?: () => ServingEngine | undefined;
  /** After a failover: the output the guest's service holds for its epochs to be acked (undefined: none is held here). */
  servingHeldBytes?: () => number | undefined;
  /** The node's own generation (its heartbeat channel's: the primary's it follows, or the one it took). */
  generation?: () => number | undefined;
}

/** What the secondary watches of the engine that protects its guest after a failover. */
export type ServingEngine = Pick<PrimaryEngine, 'state$' | 'linkSilentMs'>;


export class SecondarySource extends BaseSource implements MonitorSource {
  readonly role = 'secondary' as const;
  readonly control: ControlTarget;
  private detach: (() => void) | undefined;
  /** Since when the guest this node runs (after a failover) has had no standby; undefined: protected, or no guest runs here. */
  private unprotectedSince: number | undefined;
  private serving: Subscription | undefined;

  constructor(private readonly options: SecondarySourceOptions) {
    super(options, options.arbiter);
    const { promoter } = options;
    this.control = {
      failover: async () => {
        const p = await promoter.promote('operator request from the monitor');
        return { epoch: p.epoch, service: `${p.service.address}:${p.service.port}`, tookMs: p.tookMs };
      },
    };
  }

  start(): void {
    const { server, promoter } = this.options;
    this.setState(replicaStateName(server.state), 'monitor started');
    const onState = (s: ReplicaState): void => {
      // After a failover the stopped server reads idle; the node is the primary now.
      if (this.current === 'failing-over' || this.current === 'failed-over') return;
      this.setState(replicaStateName(s), s === 'idle' ? 'no primary is streaming' : s === 'syncing' ? 'a primary is streaming its pre-copy' : 'the replica holds a complete checkpoint of the stream');
    };
    const onEpoch = (c: EpochCommit): void =>
      this.epoch({ epoch: c.epoch, trigger: 'applied', pauseUs: null, dirtyPages: c.pages, bytes: c.bytes, sendMs: null, ackMs: null, totalMs: null, applyMs: c.applyMs });
    const onPromoting = (e: { reason: string; epoch: number }): void => {
      this.unprotectedSince ??= this.now();
      this.setState('failing-over', `${e.reason}; replica at epoch ${e.epoch}`);
    };
    const onPromoted = (p: { epoch: number; generation?: number; reason: string; service: { address: string; port: number }; tookMs: number }): void => {
      const serving = `the guest runs here from epoch ${p.epoch}, serving ${p.service.address}:${p.service.port}`;
      this.failedOver(p.reason, p.generation ?? this.options.generation?.() ?? null);
      this.setState('failed-over', `${serving}; unprotected`);
      this.watchServing(serving);
    };
    const onRefused = (e: { reason: string; error: Error }): void => {
      if (this.current === 'failing-over') this.unprotectedSince = undefined;
      this.setState(this.current === 'failing-over' ? replicaStateName(server.state) : this.current, `failover refused: ${e.error.message}`);
    };
    server.on('state', onState);
    server.on('epoch', onEpoch);
    promoter.on('promoting', onPromoting);
    promoter.on('promoted', onPromoted);
    promoter.on('refused', onRefused);
    this.detach = () => {
      server.off('state', onState);
      server.off('epoch', onEpoch);
      promoter.off('promoting', onPromoting);
      promoter.off('promoted', onPromoted);
      promoter.off('refused', onRefused);
    };
  }

  stop(): void {
    this.detach?.();
    this.detach = undefined;
    this.serving?.unsubscribe();
    this.serving = undefined;
  }

  status(): SourceStatus {
    const { server, promoter, generation, heartbeat } = this.options;
    // A standby tells the generation of the replica it holds; once serving, the one it took.
    const own = this.running ? (promoter.promotion?.generation ?? generation?.()) : (server.replicaGeneration ?? generation?.());
    // Serving after a failover, it is protected again once its engine says so (unprotectedSince cleared).
    const guestProtected = this.current === 'failed-over' && this.unprotectedSince === undefined;
    const heldBytes = this.running ? (this.options.servingHeldBytes?.() ?? null) : null;
    return { ...this.base(), mode: null, intervalMs: null, precopy: null, generation: own ?? null, heartbeat: heartbeat?.() ?? null, heldBytes, guestProtected };
  }

  private get running(): boolean {
    return this.current === 'failing-over' || this.current === 'failed-over';
  }

  readings(): SourceReadings {
    const { server } = this.options;
    const running = this.running;
    const engine = running ? this.options.serving?.() : undefined;
    return {
      peerUp: running ? engine?.linkSilentMs !== undefined : server.primary !== undefined,
      generation: server.replicaGeneration,
      heldOutputBytes: running ? this.options.servingHeldBytes?.() : undefined,
      unprotectedMs: !running ? undefined : this.unprotectedSince === undefined ? 0 : Math.max(0, this.now() - this.unprotectedSince),
      streamBytes: undefined,
    };
  }

  /** After a failover the guest runs here: whether the engine now protecting it holds a standby. */
  private watchServing(serving: string): void {
    const engine = this.options.serving?.();
    if (engine === undefined) return;
    this.serving?.unsubscribe();
    this.serving = engine.state$.subscribe(({ state, reason }) => {
      if (state === 'protected') this.unprotectedSince = undefined;
      else this.unprotectedSince ??= this.now();
      this.setState('failed-over', state === 'protected' ? `${serving}; protected again (${reason})` : `${serving}; unprotected (${state}: ${reason})`);
    });
  }
}
