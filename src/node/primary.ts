/**
 * A primary node, assembled from its configuration: the guest (from the
 * domain's binding), the service clients reach it through (the Remus front,
 * or COLO's comparator and front), the checkpoint devices, the mode
 * controller and the engine, the heartbeat channel with its fencing, and
 * the monitor. The CLI parses flags and calls start() and stop(); the
 * order things start and stop in, and what fencing does, live here.
 */
import { primaryStateName } from '../monitor/vocabulary.js';
import type { AddressInfo } from 'node:net';
import { distinctUntilChanged, map, type Observable, type Subscription } from 'rxjs';
import type { Arbiter } from '../arbiter/arbiter.js';
import { ArbiterDevice } from '../arbiter/device.js';
import { NO_ARBITER_WARNING } from '../arbiter/none.js';
import { createArbiter } from '../arbiter/select.js';
import type { Trigger } from '../checkpoint/triggers.js';
import { DeviceSet, type CheckpointDevice } from '../checkpoint/devices.js';
import { PrimaryEngine } from '../checkpoint/engine.js';
import type { PrecopyTurns } from '../checkpoint/precopy-gate.js';
import { CheckpointError, CheckpointErrorCodes } from '../checkpoint/errors.js';
import { DEFAULT_HYBRID, hybridPolicy, type HybridOptions } from '../checkpoint/hybrid.js';
import { ModeController } from '../checkpoint/mode.js';
import { DEFAULT_PRECOPY } from '../checkpoint/precopy.js';
import { ColoPrimaryService } from '../colo/primary-service.js';
import { nextPort, type TandemConfig } from '../config/config.js';
import { PAGE_SIZE } from '../stream/format.js';
import type { DomainBinding, PrimaryGuest } from '../domain/binding.js';
import { DiskMirror } from '../disk/mirror.js';
import { ErrorCodes, TandemError } from '../errors.js';
import type { ClientLimitOptions, FrontClientStats } from '../front/client-limits.js';
import { GuestOutputService } from '../front/guest-output-service.js';
import { RemusService } from '../front/remus-service.js';
import { SilentStandbyWatch } from '../failover/silent-standby.js';
import { StrandedSignal } from '../failover/stranded.js';
import { HeartbeatChannel } from '../heartbeat/channel.js';
import { startUnlessFenced, whenFenced, type FenceNotice } from '../heartbeat/fencing.js';
import { MonitorError, MonitorErrorCodes } from '../monitor/errors.js';
import { PrimarySource } from '../monitor/source.js';
import { ownMonitor } from '../monitor/wire.js';
import type { Detach, MonitorAttach } from '../monitor/attach.js';
import { floatingAddressFor, type FloatingAddress } from '../net/floating-address.js';
import { roleHooksFor, type RoleEvent, type RoleHooks } from './role-hooks.js';
import type { Transport } from '../transport/transport.js';
import { formatAddress, type Address } from '../util/address.js';
import type { Logger } from '../util/logger.js';

/** remus: checkpoint every interval; colo: compare the replicas' output; none: run the guest unprotected (a baseline). */
export type PrimaryMode = 'remus' | 'colo' | 'none';

export interface PrimaryNodeOptions {
  cfg: TandemConfig;
  mode: PrimaryMode;
  binding: DomainBinding;
  transport: Transport;
  logger: Logger;
  hybrid?: HybridOptions;
  /** Who may serve the domain (default: the configuration's, src/arbiter/select.ts). */
  arbiter?: Arbiter;
  /**
   * A secondary that failed over and now protects the guest it resumed: the
   * guest comes from its replica, the arbiter already gave it the domain,
   * and it serves at once (no wait to hear the new secondary, which may not
   * be up yet: the engine connects when it is).
   */
  promoted?: { guest: PrimaryGuest };
  /**
   * What a change of role does outside the node, when the caller owns it (a
   * promoted secondary passes its own: its floating address already taken,
   * its hooks' order kept across the hand-over). Default: the
   * configuration's, started and stopped by this node.
   */
  outside?: { hooks: RoleHooks | undefined; floating: FloatingAddress | undefined };
  /** The process's monitor, shared by every domain it runs (src/monitor/attach.ts); default: the node's own, from cfg.monitor. */
  monitor?: MonitorAttach;
  /** Where the pre-copies of every domain the process runs take turns (src/checkpoint/precopy-gate.ts); default: this node's never wait. */
  precopyTurns?: PrecopyTurns;
}

/** Why a node stopped serving. */
export type StopReason = { kind: 'signal'; signal: string } | { kind: 'switchover' } | ({ kind: 'fenced' } & FenceNotice);

interface Service {
  readonly device: CheckpointDevice;
  start(): Promise<AddressInfo>;
  clients(): FrontClientStats | undefined;
  /** Clients may get nothing more: the node is fenced, hands over, or stands the secondary down (the guest then runs on unprotected). */
  stopFront(why: 'fenced' | 'switchover' | 'stand-down'): Promise<void>;
  stop(): Promise<void>;
}

export class PrimaryNode {
  private service: Service | undefined;
  private heartbeat: HeartbeatChannel | undefined;
  private engine: PrimaryEngine | undefined;
  private detachMonitor: Detach | undefined;
  private readonly subscriptions: Subscription[] = [];
  private silentStandby: SilentStandbyWatch | undefined;
  private stranded: StrandedSignal | undefined;
  private askSwitchover: () => void = () => {};
  private readonly switchoverAsked = new Promise<void>((resolve) => (this.askSwitchover = resolve));
  private fenced: Promise<FenceNotice> | undefined;
  private arbiter: Arbiter | undefined;
  private hooks: RoleHooks | undefined;
  private floating: FloatingAddress | undefined;
  /** HOST:PORT served, once serving. */
  private served: string | undefined;
  /** Last said to the hooks: protected or not (stays quiet while the node stops). */
  private saidProtected = false;
  private stopping = false;

  constructor(private readonly options: PrimaryNodeOptions) {}

  /** The engine, once started with protection (tests and the monitor watch it). */
  get protection(): PrimaryEngine | undefined {
    return this.engine;
  }

  /** Output the Remus front holds until its epoch is acked; undefined where nothing is held in Tandem (COLO, Xen's qdisc, unprotected). */
  heldOutputBytes(): number | undefined {
    return this.service instanceof RemusService ? this.service.heldBytes() : undefined;
  }

  /** COLO: every checkpoint request of the comparator, as it made it. */
  get checkpointRequests$(): Observable<Trigger> | undefined {
    return this.service instanceof ColoPrimaryService ? this.service.checkpointRequests$ : undefined;
  }

  /**
   * Hears the peer (refusing to serve if fenced), starts the guest's service
   * and, unless unprotected, protection. Resolves with the service address.
   */
  async start(): Promise<AddressInfo> {
    const { cfg, mode, binding, logger } = this.options;
    const p = cfg.primary;
    const protect = mode !== 'none';
    if (protect && p.secondary === undefined) throw new TandemError(ErrorCodes.CONFIG_INVALID, 'no secondary: pass --secondary HOST:PORT or set primary.secondary in the configuration');
    // A wrong hook path, interface or missing tool stops the node here, before it holds anything.
    if (this.options.outside === undefined) {
      this.hooks = roleHooksFor(cfg, logger);
      this.floating = floatingAddressFor(cfg.floatingAddress, logger);
      await this.hooks?.start();
      await this.floating?.start();
    } else {
      ({ hooks: this.hooks, floating: this.floating } = this.options.outside);
    }
    // The arbiter first: a node that may not serve the domain starts nothing.
    const arbiter = this.options.arbiter ?? createArbiter(cfg, 'primary', logger);
    this.arbiter = arbiter;
    if (arbiter.kind === 'none' && protect) logger.warn(NO_ARBITER_WARNING);
    const promoted = this.options.promoted;
    const generation = promoted === undefined ? await arbiter.acquire() : arbiter.generation;
    try {
      const superseded = new Promise<FenceNotice>((resolve) => arbiter.once('superseded', (h) => resolve({ ownGeneration: arbiter.generation, peerGeneration: h.generation })));
      this.fenced = superseded;
      const guest = promoted?.guest ?? (await binding.primary(logger));
      const unfit =
        p.verifyDigest && guest.digest === undefined
          ? `primary.verify_digest: Tandem cannot digest the state of a domain of type ${binding.type}`
          : mode === 'colo' && guest.attachNic === undefined
            ? `a domain of type ${binding.type} cannot run COLO here (Tandem cannot drive its NIC): use remus`
            : undefined;
      if (unfit !== undefined) {
        await guest.stop();
        throw new TandemError(ErrorCodes.CONFIG_INVALID, unfit);
      }
      if (protect) await this.hearPeer(p.secondary!, generation, superseded, promoted === undefined);
      // Not fenced: this node serves, on the floating address too (taken before the front binds: it may bind that address).
      // A promoted secondary took it already, before its replica resumed.
      if (promoted === undefined) await this.floating?.take(`this node serves the guest as generation ${generation}`);
      const service = mode === 'colo' ? this.coloService(guest, p.secondary!) : guest.outputCommit !== undefined ? new GuestOutputService(guest, guest.outputCommit) : this.remusService(guest, protect);
      this.service = service;
      const bound = await service.start();
      this.served = formatAddress({ host: bound.address, port: bound.port });
      logger.info({ service: `${bound.address}:${bound.port}` }, `guest service on ${bound.address}:${bound.port}`);
      // A promoted secondary said "promoted" already.
      if (promoted === undefined) this.roleChange('serving', `serving the guest (mode ${mode}) on ${this.served}`);
      if (!protect) {
        logger.warn('mode none: the guest runs UNPROTECTED (no checkpoints, no standby); output is not held');
        return bound;
      }
      await this.protect(guest, service, p.secondary!);
      return bound;
    } catch (err) {
      // The secondary heard this run start: it is told this run stands down, or the silence that
      // follows reads as a dead primary, and a replica of an earlier run could take over.
      await this.standDownUnstarted(err);
      // Not serving after all: the domain goes back (a fenced start never held what it lost), and so does the address.
      if (promoted === undefined) await this.releaseFloating('this node failed to start serving');
      await arbiter.stop({ release: true }).catch(() => {});
      throw err;
    }
  }

  /** Resolves when an operator asked for a switchover (the monitor's action): the caller then stops the node with it. */
  whenSwitchoverAsked(): Promise<void> {
    return this.switchoverAsked;
  }

  /** Resolves if this node is fenced while it runs (a newer primary exists): the caller must stop it at once. */
  whenFenced(): Promise<FenceNotice> {
    return this.fenced ?? new Promise(() => {});
  }

  async stop(reason: StopReason): Promise<void> {
    const { logger } = this.options;
    this.stopping = true;
    if (reason.kind === 'fenced') {
      logger.fatal(`fenced by generation ${reason.peerGeneration} (this one: ${reason.ownGeneration}): another node serves the guest now; this node stops serving at once`);
      // Never two nodes on the floating address: its removal starts first, and nothing else happens until it is gone.
      // No held output may leave a fenced node: the front closes meanwhile, before the engine's teardown releases anything.
      const released = this.releaseFloating('fenced');
      await this.service?.stopFront('fenced');
      await released;
      const by = reason.peerGeneration > 0 ? `generation ${reason.peerGeneration} serves the guest now` : 'another node took the domain';
      this.roleChange('fenced', `fenced: ${by} (this node's generation: ${reason.ownGeneration})`, reason.ownGeneration);
    } else {
      const why = reason.kind === 'signal' ? reason.signal : 'an operator\'s switchover';
      let said: RoleEvent = 'stopped';
      if (this.heartbeat !== undefined && this.engine !== undefined) {
        said = await this.stopInOrder(why, this.heartbeat, this.engine, reason.kind === 'switchover' ? 'switchover' : this.options.cfg.primary.onStop);
      } else {
        logger.info({ reason: reason.kind === 'signal' ? reason.signal : reason.kind }, 'stopping');
      }
      // Gone before the stream ends: a secondary taking over at a switchover must not find it here still.
      await this.releaseFloating(`stopping (${why})`);
      this.roleChange(said, said === 'stopped' ? `stopping (${why})` : `stopping in order (${why}): ${said}`);
    }
    for (const s of this.subscriptions) s.unsubscribe();
    this.silentStandby?.stop();
    this.stranded?.stop();
    await this.engine?.stop();
    await this.detachMonitor?.();
    await this.service?.stop();
    if (reason.kind !== 'fenced' && this.heartbeat !== undefined) {
      // Heartbeats carry the intent until the secondary has surely heard it (a frame is sent every interval).
      await new Promise((r) => setTimeout(r, 2 * this.options.cfg.heartbeat.intervalMs));
    }
    await this.heartbeat?.stop();
    // Nothing is served any more: an orderly stop hands the domain back at once rather than leaving the lease to run out.
    await this.arbiter?.stop({ release: reason.kind !== 'fenced' });
    if (this.options.outside === undefined) {
      await this.floating?.stop();
      await this.hooks?.stop();
    }
  }

  /** Tells the hooks (in the background: nothing waits for them). */
  private roleChange(event: RoleEvent, reason: string, generation = this.arbiter?.generation ?? this.options.cfg.primary.generation): void {
    this.hooks?.notify({ event, generation, reason, service: event === 'serving' || event === 'protected' || event === 'unprotected' ? this.served : undefined });
  }

  /** Removes the floating address; a failure is logged loudly (the node stops all the same: it must not hang on it). */
  private async releaseFloating(why: string): Promise<void> {
    try {
      await this.floating?.release(why);
    } catch (err) {
      this.options.logger.fatal({ err }, `${(err as Error).message}: remove it by hand before any other node takes it`);
    }
  }

  /**
   * A protected primary stopping on a signal, as primary.on_stop says:
   * stand-down keeps the secondary a secondary (its replica, at the last
   * epoch, stays; it does not take over), switchover takes a last
   * checkpoint whose replies reach the clients, then tells the secondary to
   * take over at once. Either way nothing no replica holds leaves: the
   * domain goes back to the arbiter first (no move to a next generation),
   * and the front closes before the stream ends. Said in the log, never
   * taken for a dead primary.
   */
  private async stopInOrder(signal: string, heartbeat: HeartbeatChannel, engine: PrimaryEngine, plan: 'stand-down' | 'switchover'): Promise<'stand-down' | 'switchover'> {
    const { logger } = this.options;
    if (plan === 'switchover' && engine.state === 'protected') {
      logger.warn({ signal, onStop: plan }, `stopping in order (${signal}): switchover: a last checkpoint, then the secondary takes over`);
      // Said first, while heartbeats still flow: the secondary then takes over only once the stream has ended
      // cleanly, and never takes the stream's end for a dead primary however late this frame would have come.
      heartbeat.leave('hand-over');
      try {
        await this.lastCheckpoint(engine);
      } catch (err) {
        logger.error({ err }, `switchover: the last checkpoint failed (${err instanceof Error ? err.message : String(err)}): standing the secondary down instead`);
        return this.standDown(signal, heartbeat);
      }
      await this.arbiter?.stop({ release: true });
      await this.service?.stopFront('switchover');
      return 'switchover';
    }
    if (plan === 'switchover') logger.warn({ signal, state: engine.state }, `switchover asked for, but the secondary holds no current checkpoint (${engine.state}): standing it down instead`);
    return this.standDown(signal, heartbeat);
  }

  private async standDown(signal: string, heartbeat: HeartbeatChannel): Promise<'stand-down'> {
    this.options.logger.warn({ signal, onStop: 'stand-down' }, `stopping in order (${signal}): standing the secondary down: it keeps its replica and does not take over (primary.on_stop: stand-down)`);
    heartbeat.leave('stand-down');
    await this.arbiter?.stop({ release: true });
    await this.service?.stopFront('stand-down');
    return 'stand-down';
  }

  /** Asks for a checkpoint and resolves once it is acked (its replies released). */
  private lastCheckpoint(engine: PrimaryEngine): Promise<void> {
    const timeoutMs = this.options.cfg.primary.ackTimeoutMs;
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        sub.unsubscribe();
        reject(new CheckpointError(CheckpointErrorCodes.ACK_TIMEOUT, `no checkpoint acked within ${timeoutMs} ms`));
      }, timeoutMs);
      const sub = engine.metrics$.subscribe((m) => {
        if (m.trigger !== 'operator') return;
        clearTimeout(timer);
        sub.unsubscribe();
        resolve();
      });
      engine.requestCheckpoint('switchover');
    });
  }

  private async hearPeer(secondary: Address, generation: number, superseded: Promise<FenceNotice>, waitToHear: boolean): Promise<void> {
    const { cfg, transport, logger } = this.options;
    const heartbeat = new HeartbeatChannel({
      transport,
      role: 'primary',
      generation,
      connect: cfg.primary.heartbeat ?? nextPort(secondary),
      intervalMs: cfg.heartbeat.intervalMs,
      timeoutMs: cfg.heartbeat.timeoutMs,
      epoch: () => this.acked,
      logger,
    });
    if (waitToHear) await startUnlessFenced(heartbeat, cfg.heartbeat.timeoutMs);
    else await heartbeat.start();
    this.heartbeat = heartbeat;
    // Unprotected, the node moves to the arbiter's next generation: the secondary hears it, and drops the old stream.
    this.arbiter?.on('generation', (g) => heartbeat.advance(g));
    this.fenced = Promise.race([whenFenced(heartbeat), superseded]);
  }

  private acked = 0;

  /** A start that failed after the heartbeat channel was up: say stand-down, give the secondary time to hear it, close the channel. */
  private async standDownUnstarted(err: unknown): Promise<void> {
    const heartbeat = this.heartbeat;
    if (heartbeat === undefined) return;
    this.heartbeat = undefined;
    this.options.logger.warn({ err }, 'the start failed after the secondary heard this node: standing it down (it keeps its replica and does not take over)');
    heartbeat.leave('stand-down');
    // Heartbeats carry the intent (a frame every interval), as at an orderly stop.
    await new Promise((r) => setTimeout(r, 2 * this.options.cfg.heartbeat.intervalMs));
    await heartbeat.stop();
  }

  private remusService(guest: PrimaryGuest, protect: boolean): Service {
    const { cfg, logger } = this.options;
    const p = cfg.primary;
    return new RemusService({
      guest,
      mode: protect ? 'remus' : 'none',
      service: p.service,
      onUnprotected: p.onUnprotected,
      maxHeldBytes: p.maxHeldMib * 2 ** 20,
      clients: this.clientLimits(),
      logger,
      authority: this.arbiter,
    });
  }

  private clientLimits(): ClientLimitOptions {
    const p = this.options.cfg.primary;
    return { maxConnections: p.maxClients, evictIdleMs: p.clientEvictIdleMs, idleTimeoutMs: p.clientIdleTimeoutMs };
  }

  private coloService(guest: PrimaryGuest, secondary: Address): ColoPrimaryService {
    const { cfg, transport, logger } = this.options;
    const net = cfg.colo.net ?? { host: secondary.host, port: Math.min(65535, secondary.port + 2) };
    return new ColoPrimaryService({ guest, colo: cfg.colo, transport, net, service: cfg.primary.service, clients: this.clientLimits(), logger, external: cfg.colo.comparator, authority: this.arbiter });
  }

  private async protect(guest: PrimaryGuest, service: Service, secondary: Address): Promise<void> {
    const { cfg, mode: kind, transport, logger } = this.options;
    const p = cfg.primary;
    const colo = kind === 'colo';
    // Only the Remus front holds output in Tandem and can say when a reply waits (a Xen guest's is held in its own qdisc).
    const outputWaiting$ = service instanceof RemusService ? service.outputWaiting$ : undefined;
    const outputDriven = p.policy === 'output' && outputWaiting$ !== undefined;
    const mode = new ModeController(colo ? 'colo' : 'remus', {
      mode: colo ? 'colo' : 'remus',
      intervalMs: p.intervalMs,
      policy: p.policy,
      reason: colo
        ? 'checkpoints when the replicas diverge'
        : outputDriven
          ? `checkpoints as soon as output is held (at most every ${Math.min(p.minIntervalMs, p.intervalMs)} ms), every ${p.intervalMs} ms while none is`
          : `checkpoints every ${p.intervalMs} ms`,
    });
    if (!colo && p.policy === 'output' && outputWaiting$ === undefined) {
      logger.warn({ policy: p.policy }, 'primary.policy output: this guest\'s output is not held by Tandem\'s front, so epochs follow the timer');
    }
    const requests$ = service instanceof ColoPrimaryService ? service.checkpointRequests$ : undefined;
    const devices = new DeviceSet([service.device, ...guest.disks.map((disk, index) => new DiskMirror({ disk, index })), new ArbiterDevice(this.arbiter!)]);
    const engine = new PrimaryEngine(
      { domain: guest.domain, devices, mode, transport, divergence$: requests$, outputWaiting$, logger, precopyTurns: this.options.precopyTurns },
      {
        secondary,
        minIntervalMs: Math.min(p.minIntervalMs, p.intervalMs),
        // COLO checkpoints when the replicas diverge, and at least every max interval.
        maxIntervalMs: colo ? cfg.colo.maxIntervalMs : p.maxIntervalMs,
        ackTimeoutMs: p.ackTimeoutMs,
        connectTimeoutMs: p.connectTimeoutMs,
        retryMs: p.retryMs,
        retryMaxMs: p.retryMaxMs,
        streamVersion: p.streamVersion,
        precopy: { ...DEFAULT_PRECOPY, ...p.precopy },
        digest: p.verifyDigest ? () => guest.digest!() : undefined,
        // Logged before the epoch is sent, so a check can match whatever the secondary ends up holding.
        onStaged: (epoch, digest) => logger.debug({ epoch, digest }, 'epoch staged'),
        generation: () => this.arbiter!.generation,
        compression: p.compression === 'xbzrle' ? { cachePages: (p.compressionCacheMib * 2 ** 20) / PAGE_SIZE } : undefined,
      },
    );
    this.engine = engine;
    // A stream whose generation the arbiter's record has left protects nothing: a new one, at the record's.
    this.arbiter?.on('restream', (e) => engine.abandonLink(`the stream carries generation ${e.stream}, the arbiter's record ${e.generation}: a new stream`));
    if (this.heartbeat !== undefined) {
      this.silentStandby = new SilentStandbyWatch({ heartbeat: this.heartbeat, engine }, cfg.heartbeat.timeoutMs, colo ? cfg.colo.maxIntervalMs : p.intervalMs, logger);
      this.silentStandby.start();
      // The backoff between attempts grows to retry_max_ms; a secondary that is back need not wait for it.
      this.heartbeat.on('peer', (e: { state: string; reason: string }) => {
        if (e.state === 'alive') engine.retryNow(`the secondary's heartbeats are back (${e.reason})`);
      });
      const protection = engine.state$.pipe(
        map((s) => s.state === 'protected'),
        distinctUntilChanged(),
      );
      this.stranded = new StrandedSignal({ arbiter: this.arbiter!, protection, heartbeat: this.heartbeat }, logger);
      this.stranded.start();
    }
    if (requests$ !== undefined) {
      // The hybrid policy watches every request, whatever the mode, and moves the mode between colo and remus.
      this.subscriptions.push(
        hybridPolicy(requests$, this.options.hybrid ?? DEFAULT_HYBRID).subscribe((m) => {
          if (mode.switchTo(m.mode, m.reason)) logger.warn({ mode: m.mode, reason: m.reason }, `replication mode: ${m.mode} (${m.reason})`);
        }),
      );
    }
    let loggedState: string | undefined;
    let everProtected = false;
    this.subscriptions.push(
      // A change of state is logged once, where operators look; a new reason for the same state only at debug
      // (the engine says loudly why protection is lost, and thins its retries out).
      engine.state$.subscribe(({ state, reason }) => {
        // The monitor's name for it (src/monitor/vocabulary.ts): a log line and the dashboard say the same.
        if (state === 'protected') everProtected = true;
        const name = primaryStateName(state, everProtected);
        logger[loggedState === name ? 'debug' : state === 'degraded' ? 'warn' : 'info']({ state: name, reason }, `protection: ${name}`);
        loggedState = name;
      }),
      // The hooks hear the edges: protected, and protected no more (the engine's teardown at a stop is not one).
      engine.state$.subscribe(({ state, reason }) => {
        const now = state === 'protected';
        if (this.stopping || now === this.saidProtected) return;
        this.saidProtected = now;
        this.roleChange(now ? 'protected' : 'unprotected', `protection: ${state} (${reason})`);
      }),
      engine.metrics$.subscribe((m) => {
        this.acked = m.epoch;
        logger.debug({ session: this.engine?.session, ...m }, 'epoch');
      }),
    );
    const source = new PrimarySource({
      engine,
      mode,
      divergences$: requests$,
      clients: () => service.clients(),
      arbiter: this.arbiter,
      generation: () => this.arbiter?.generation,
      // Only the Remus front holds output in Tandem (a Xen guest's is held in its own qdisc, COLO's is compared).
      heldOutputBytes: service instanceof RemusService ? () => service.heldBytes() : undefined,
      heartbeat: () => this.heartbeat?.peerState,
      // Told in the snapshot (lastFailover) while the node stops.
      fenced: this.whenFenced(),
      switchover: () => {
        if (engine.state !== 'protected') return Promise.reject(new MonitorError(MonitorErrorCodes.MONITOR_REFUSED, `switchover refused: the secondary holds no current checkpoint (protection: ${engine.state})`));
        this.askSwitchover();
        return Promise.resolve({ switchover: 'started: a last checkpoint, then the secondary takes over and this node stops' });
      },
    });
    this.detachMonitor = await (this.options.monitor ?? ownMonitor(cfg.monitor, logger)).attach(cfg.arbiter.domain, source);
    engine.start();
  }
}
