/**
 * A secondary node, assembled from its configuration: the replica (from the
 * domain's binding) and the server that applies the primary's checkpoints
 * to it, the heartbeat channel, the failover rule and the promoter, COLO's
 * running replica when the primary runs COLO, and the monitor. The CLI
 * parses flags and calls start() and stop().
 *
 * Failback: with `primary.secondary` set to another address than this
 * node's own `secondary.listen` (the peer's, as the symmetric configuration
 * of a pair has it), a Remus failover does not
 * leave the guest unprotected for good: the promoted guest is served as a
 * primary node's (src/node/primary.ts, `promoted`), whose engine protects it
 * to that address as soon as the old primary has come back as a secondary.
 */
import { replicaStateName } from '../monitor/vocabulary.js';
import type { ReplicaState } from '../secondary/receiver.js';
import type { Arbiter, Holder } from '../arbiter/arbiter.js';
import { NO_ARBITER_WARNING } from '../arbiter/none.js';
import { createArbiter } from '../arbiter/select.js';
import { ColoSecondary } from '../colo/secondary.js';
import { nextPort, type TandemConfig } from '../config/config.js';
import type { DomainBinding, PromotedGuest, PromoteOptions, ReplicaGuest } from '../domain/binding.js';
import { DiskReplica } from '../disk/replica.js';
import { ErrorCodes, TandemError } from '../errors.js';
import { FailoverRule } from '../failover/rule.js';
import { Promoter } from '../failover/promoter.js';
import { HeartbeatChannel } from '../heartbeat/channel.js';
import { PrimaryNode } from './primary.js';
import type { PrecopyTurns } from '../checkpoint/precopy-gate.js';
import type { Detach, MonitorAttach } from '../monitor/attach.js';
import { SecondarySource } from '../monitor/source.js';
import { ownMonitor } from '../monitor/wire.js';
import { floatingAddressFor, type FloatingAddress } from '../net/floating-address.js';
import { roleHooksFor, type RoleHooks } from './role-hooks.js';
import { SecondaryServer } from '../secondary/server.js';
import type { Transport } from '../transport/transport.js';
import { formatAddress, type Address } from '../util/address.js';
import type { Logger } from '../util/logger.js';

export interface SecondaryNodeOptions {
  cfg: TandemConfig;
  /** colo: the replica runs the guest too between checkpoints (the primary's mode must match). */
  mode: 'remus' | 'colo';
  binding: DomainBinding;
  transport: Transport;
  logger: Logger;
  /** Replay the guest's persistent state against its memory before serving after a failover (slow: verification runs). */
  verifyPersistence?: boolean;
  /** Who may serve the domain: a failover takes it there first (default: none, with the warning it deserves). */
  arbiter?: Arbiter;
  /** The process's monitor, shared by every domain it runs (src/monitor/attach.ts); default: the node's own, from cfg.monitor. */
  monitor?: MonitorAttach;
  /** Where the pre-copies of the domains the process serves after a failover take turns (src/checkpoint/precopy-gate.ts). */
  precopyTurns?: PrecopyTurns;
}

export interface SecondaryAddresses {
  replication: Address;
  heartbeat: Address;
  /** COLO's net link. */
  net?: Address;
}

/** How often a secondary reads who holds the domain, for display. */
const HOLDER_POLL_MS = 2000;

export class SecondaryNode {
  private replica: ReplicaGuest | undefined;
  private colo: ColoSecondary | undefined;
  private server: SecondaryServer | undefined;
  private heartbeat: HeartbeatChannel | undefined;
  private promoter: Promoter | undefined;
  private rule: FailoverRule | undefined;
  private detachMonitor: Detach | undefined;
  private arbiter: Arbiter | undefined;
  private holderPoll: NodeJS.Timeout | undefined;
  private superseded: Promise<Holder> | undefined;
  /** After a failover with failback configured: the node serving and protecting the guest. */
  private serving: PrimaryNode | undefined;
  private hooks: RoleHooks | undefined;
  private floating: FloatingAddress | undefined;

  constructor(private readonly options: SecondaryNodeOptions) {}

  /** The parts tests and the monitor watch (after start()). */
  get parts(): { server: SecondaryServer; promoter: Promoter; heartbeat: HeartbeatChannel; replica: ReplicaGuest } {
    if (this.server === undefined) throw new Error('the secondary node is not started');
    return { server: this.server, promoter: this.promoter!, heartbeat: this.heartbeat!, replica: this.replica! };
  }

  async start(): Promise<SecondaryAddresses> {
    const { cfg, mode, binding, transport, logger } = this.options;
    const s = cfg.secondary;
    // A wrong hook path, interface or missing tool stops the node here, not at its failover.
    const hooks = roleHooksFor(cfg, logger);
    this.hooks = hooks;
    await hooks?.start();
    const floating = floatingAddressFor(cfg.floatingAddress, logger);
    this.floating = floating;
    await floating?.start();
    // This node does not serve: a copy of the address left here (this node was a primary whose process was killed) goes now.
    await floating?.release('this node starts as a secondary');
    const replica = binding.replica(logger);
    this.replica = replica;
    if (mode === 'colo' && replica.runColo === undefined) throw new TandemError(ErrorCodes.CONFIG_INVALID, `a domain of type ${binding.type} cannot run COLO here (its replica cannot run between checkpoints): use remus`);
    // COLO: the replica also runs the guest, fed the client frames the primary mirrors over the net link.
    const colo = mode === 'colo' ? new ColoSecondary({ replica, transport, net: cfg.colo.net ?? nextPort(nextPort(s.listen)), logger }) : undefined;
    this.colo = colo;
    const server: SecondaryServer = new SecondaryServer({
      replica,
      transport,
      listen: s.listen,
      devices: [new DiskReplica(replica.disks)],
      logger,
      maxEpochBytes: s.maxEpochMib * 2 ** 20,
      colo,
      // Streams name their primary's generation: a superseded primary's is refused, a current one's replaces a dead connection.
      primaries: {
        get generation(): number {
          return heartbeat.generation;
        },
      },
    });
    this.server = server;
    server.on('state', (state: ReplicaState) => logger.info({ state: replicaStateName(state) }, `replica: ${replicaStateName(state)}`));
    server.on('epoch', (e) => logger.debug({ ...e }, 'epoch applied'));
    // Heartbeats on their own channel decide that the primary is dead (silence
    // for the timeout), so a large checkpoint in flight never looks like death.
    const heartbeat: HeartbeatChannel = new HeartbeatChannel({
      transport,
      role: 'secondary',
      generation: 1,
      listen: s.heartbeat ?? nextPort(s.listen),
      intervalMs: cfg.heartbeat.intervalMs,
      timeoutMs: cfg.heartbeat.timeoutMs,
      epoch: () => server.lastEpoch,
      logger,
    });
    this.heartbeat = heartbeat;
    // A newer primary heard of: the stream of the one it superseded must not get another epoch acked.
    heartbeat.on('generation', () => server.supersede());
    const arbiter = this.options.arbiter ?? createArbiter(cfg, 'secondary', logger);
    this.arbiter = arbiter;
    if (arbiter.kind === 'none') logger.warn(NO_ARBITER_WARNING);
    // Who holds the domain, for status and the dashboard: a secondary otherwise reads etcd only when it claims.
    if (arbiter.kind !== 'none') {
      this.holderPoll = setInterval(() => void arbiter.holder().catch(() => {}), HOLDER_POLL_MS);
      this.holderPoll.unref();
    }
    this.superseded = new Promise((resolve) => arbiter.once('superseded', resolve));
    // A promotion takes the domain (the next generation) only once it knows it can fail over: from the
    // arbiter first, which refuses while the primary's lease is live, then on the heartbeat channel.
    const claim = async (): Promise<number> => {
      // The generation whose checkpoint the replica holds: only that primary's successor may serve this copy.
      const generation = await arbiter.claim(server.replicaGeneration ?? heartbeat.generation);
      try {
        return heartbeat.promote(generation);
      } catch (err) {
        await arbiter.stop({ release: true }).catch(() => {});
        throw err;
      }
    };
    // A configuration shared by both processes of one host names this node's own listener as the
    // primary's secondary: protecting to itself is no protection.
    const peer = cfg.primary.secondary;
    const reprotect = mode === 'remus' && peer !== undefined && formatAddress(peer) !== formatAddress(s.listen) && replica.resumeAsPrimary !== undefined;
    const serve = !reprotect
      ? undefined
      : async (o: PromoteOptions): Promise<PromotedGuest & { standby: string }> => {
          // Serves where the promoted guest is served, protects to the configured peer; the monitor stays this node's.
          const pcfg: TandemConfig = { ...cfg, primary: { ...cfg.primary, service: o.service }, monitor: { ...cfg.monitor, listen: undefined } };
          const node = new PrimaryNode({ cfg: pcfg, mode: 'remus', binding, transport, logger, arbiter, promoted: { guest: replica.resumeAsPrimary!(logger) }, outside: { hooks, floating }, precopyTurns: this.options.precopyTurns });
          this.serving = node;
          const service = await node.start();
          return { service, standby: `the secondary at ${formatAddress(cfg.primary.secondary!)}` };
        };
    // The floating address is taken once the domain is this node's and before the guest's service binds (it may bind that address).
    const serveHere = async (o: PromoteOptions): Promise<PromotedGuest & { standby?: string }> => {
      await this.takeFloating();
      try {
        return await (serve === undefined ? replica.promote(o) : serve(o));
      } catch (err) {
        // Not serving after all: a node that does not serve holds no address.
        await this.releaseFloating('the takeover failed');
        throw err;
      }
    };
    const promoter = new Promoter({ secondary: server, replica, service: s.service, logger, verifyPersistence: this.options.verifyPersistence, claim, serve: serveHere });
    this.promoter = promoter;
    promoter.on('promoted', (p) => hooks?.notify({ event: 'promoted', generation: p.generation ?? heartbeat.generation, reason: p.reason, service: formatAddress({ host: p.service.address, port: p.service.port }) }));
    if (colo !== undefined) promoter.on('promoting', () => colo.takeOver());
    // Checkpoints arriving are a sign of life as good as a heartbeat.
    server.on('epoch', () => heartbeat.noteActivity());
    // A live primary's stream may be quiet for an interval between epochs (COLO: while the replicas agree).
    heartbeat.on('stranded', (e) =>
      e.stranded
        ? logger.warn(`heartbeat: the primary is stranded: it holds its output, with no replica acking it and no authority from the arbiter; this node takes over if it still says so after ${cfg.heartbeat.timeoutMs} ms and the arbiter agrees`)
        : logger.info('heartbeat: the primary is no longer stranded'),
    );
    this.rule = new FailoverRule(
      { heartbeat, server, promoter },
      cfg.heartbeat.timeoutMs,
      logger,
      undefined,
      colo === undefined ? cfg.primary.intervalMs : cfg.colo.maxIntervalMs,
      arbiter.kind !== 'none',
    );
    this.rule.start();
    const source = new SecondarySource({ server, promoter, arbiter, serving: () => this.serving?.protection, servingHeldBytes: () => this.serving?.heldOutputBytes(), heartbeat: () => heartbeat.peerState, generation: () => heartbeat.generation });
    this.detachMonitor = await (this.options.monitor ?? ownMonitor(cfg.monitor, logger)).attach(cfg.arbiter.domain, source);
    await heartbeat.start();
    const hb = heartbeat.address()!;
    logger.info({ heartbeat: `${hb.host}:${hb.port}` }, 'heartbeat channel listening');
    const replication = await server.start();
    let net: Address | undefined;
    if (colo !== undefined) {
      net = await colo.start();
      logger.info({ net: `${net.host}:${net.port}` }, `COLO: net link listening on ${net.host}:${net.port}`);
    }
    hooks?.notify({ event: 'standby', generation: heartbeat.generation, reason: `secondary listening on ${formatAddress(replication)}` });
    return net === undefined ? { replication, heartbeat: hb } : { replication, heartbeat: hb, net };
  }

  /** A failover goes on without the address (clients may reach the node's own), said loudly. */
  private async takeFloating(): Promise<void> {
    try {
      await this.floating?.take('this node took over the guest');
    } catch (err) {
      this.options.logger.error({ err }, `${(err as Error).message}: the failover goes on without it`);
    }
  }

  /** Removes the floating address; a failure is logged loudly (the node stops all the same). */
  private async releaseFloating(why: string): Promise<void> {
    try {
      await this.floating?.release(why);
    } catch (err) {
      this.options.logger.fatal({ err }, `${(err as Error).message}: remove it by hand before any other node takes it`);
    }
  }

  /** Resolves if, having failed over, this node learns that another took the domain since: the caller must stop it at once. */
  whenSuperseded(): Promise<Holder> {
    return this.superseded ?? new Promise(() => {});
  }

  async stop(signal: string): Promise<void> {
    this.options.logger.info({ signal }, 'stopping');
    const superseded = signal === 'superseded';
    // Superseded, another node serves on the floating address: it goes from here before anything else.
    if (superseded) await this.releaseFloating('superseded: another node took the domain');
    this.rule?.stop();
    clearInterval(this.holderPoll);
    // Serving after a failover: its stop is a primary's (in order, as primary.on_stop says; or fenced), and so are its hooks' events.
    await this.serving?.stop(superseded ? { kind: 'fenced', ownGeneration: this.arbiter?.generation ?? 0, peerGeneration: 0 } : { kind: 'signal', signal });
    await this.releaseFloating(`stopping (${signal})`);
    if (this.serving === undefined) {
      const generation = this.promoter?.promotion?.generation ?? this.heartbeat?.generation ?? 0;
      if (superseded) this.hooks?.notify({ event: 'fenced', generation, reason: `fenced: another node took the domain (this node's generation: ${generation})` });
      else this.hooks?.notify({ event: 'stopped', generation, reason: `stopping (${signal})` });
    }
    await this.heartbeat?.stop();
    await this.promoter?.stop();
    await this.server?.stop();
    await this.colo?.stop();
    await this.detachMonitor?.();
    // A promoted node no longer serves: the domain goes back at once.
    await this.arbiter?.stop({ release: true });
    await this.floating?.stop();
    await this.hooks?.stop();
  }
}
