/**
 * Many domains in one process: `tandem primary` protecting each domain of
 * the configuration's `domains:` list, `tandem secondary` holding all their
 * replicas. Each domain is a node of its own (./primary.ts, ./secondary.ts)
 * with its own configuration (src/config/domains.ts), guest or replica,
 * epochs, stream, heartbeat channel and output buffer; they share only the
 * process's transport (its TLS credentials) and monitor. One domain's end
 * (fenced, switched over, superseded) stops its node alone; a domain that
 * fails to start is logged and the others run; a signal stops them all, in
 * parallel, each in order.
 * How each domain ended (endings) makes the process's exit status
 * (src/cli/domains.ts).
 */
import { PrecopyGate } from '../checkpoint/precopy-gate.js';
import type { DomainPlan } from '../config/domains.js';
import { createBinding } from '../domain/bindings.js';
import { ErrorCodes, TandemError, type ErrorCode } from '../errors.js';
import type { MonitorAttach } from '../monitor/attach.js';
import type { Transport } from '../transport/transport.js';
import type { Logger } from '../util/logger.js';
import { PrimaryNode, type PrimaryMode } from './primary.js';
import { SecondaryNode } from './secondary.js';

/** How a domain ended (or never ran). */
export type DomainEnd =
  /** Refused at its start: another node serves the domain, or did last. */
  | 'refused'
  /** Failed to start for another reason. */
  | 'failed'
  /** Another node serves it now (a primary fenced, a promoted secondary superseded). */
  | 'fenced'
  /** Handed over to the secondary at an operator's switchover. */
  | 'switchover'
  /** Stopped in order on a signal. */
  | 'stopped';

/** Refusals at a primary's start that mean another node serves the domain, or did last. */
const ANOTHER_SERVES = new Set<ErrorCode>([ErrorCodes.FENCED, ErrorCodes.ARBITER_STALE, ErrorCodes.ARBITER_HELD]);

/** One domain's node as the runner drives it. */
interface DomainLife<Node> {
  readonly node: Node;
  start(): Promise<void>;
  /** Resolves when the node must stop on its own: how it ended, and its stop. */
  ownEnd(): Promise<{ end: DomainEnd; stop: () => Promise<void> }>;
  stop(signal: string): Promise<void>;
}

export interface DomainsOptions {
  plans: readonly DomainPlan[];
  transport: Transport;
  logger: Logger;
  /** The process's one monitor, every domain's source under its name; undefined: none (a node never starts its own here). */
  monitor?: MonitorAttach;
}

/** The nodes of every domain: started, watched and stopped together, each ending alone. */
abstract class Domains<Node> {
  private readonly lives = new Map<string, DomainLife<Node>>();
  private readonly running = new Set<string>();
  private readonly ends = new Map<string, DomainEnd>();
  private allEnded: () => void = () => {};
  private readonly ended = new Promise<void>((resolve) => (this.allEnded = resolve));
  private stopping = false;
  /** While domains start, one that ends at once does not end the runner: others may still be starting. */
  private starting = true;
  /** Stops of domains that ended on their own, still going: a signal's stop waits for them too. */
  private readonly endingAlone = new Set<Promise<void>>();

  constructor(protected readonly options: DomainsOptions) {}

  protected abstract life(plan: DomainPlan, logger: Logger): DomainLife<Node>;

  /** The node of each domain that started (and may since have ended), by name. */
  get nodes(): ReadonlyMap<string, Node> {
    return new Map([...this.lives].map(([name, life]) => [name, life.node]));
  }

  /** The domains still running. */
  get runningDomains(): readonly string[] {
    return [...this.running];
  }

  /** How each domain that ended (or never ran) ended, by name. */
  get endings(): ReadonlyMap<string, DomainEnd> {
    return this.ends;
  }

  /**
   * Starts every domain at once. One that fails is logged with its name
   * and stopped; the others run. Rejects only when none started (with the
   * first domain's error, a TandemError FENCED if every one was refused
   * because another node serves it).
   */
  async start(): Promise<void> {
    const { plans, logger } = this.options;
    const errors: unknown[] = [];
    await Promise.all(
      plans.map(async (plan) => {
        const log = logger.child({ domain: plan.name });
        const life = this.life(plan, log);
        try {
          await life.start();
        } catch (err) {
          errors.push(err);
          const refused = err instanceof TandemError && ANOTHER_SERVES.has(err.code as ErrorCode);
          this.ends.set(plan.name, refused ? 'refused' : 'failed');
          log.error({ err }, `domain ${plan.name} did not start: ${err instanceof Error ? err.message : String(err)}; the other domains run`);
          // Whatever it started before it failed (a heartbeat channel, a listener) goes: it must hold no port or guest.
          await life.stop('its start failed').catch((e: unknown) => log.warn({ err: e }, `domain ${plan.name}: stopping what it started failed`));
          return;
        }
        this.lives.set(plan.name, life);
        this.running.add(plan.name);
        void life.ownEnd().then(({ end, stop }) => {
          const ending = this.endAlone(plan.name, end, stop, log);
          this.endingAlone.add(ending);
          void ending.finally(() => this.endingAlone.delete(ending));
        });
      }),
    );
    this.starting = false;
    if (this.lives.size > 0) {
      const notStarted = [...this.ends].filter(([, e]) => e === 'failed' || e === 'refused').map(([name]) => name);
      logger.info({ domains: [...this.running], notStarted }, `${this.running.size} of ${plans.length} domains running`);
      // Every one that started has ended already (fenced at once).
      if (this.running.size === 0) this.allEnded();
      return;
    }
    this.allEnded();
    const refusedAll = [...this.ends.values()].every((e) => e === 'refused');
    const names = plans.map((p) => p.name).join(', ');
    throw new TandemError(refusedAll ? ErrorCodes.FENCED : ErrorCodes.DOMAINS_NONE_STARTED, `no domain started (${names}): ${errors.map((e) => (e instanceof Error ? e.message : String(e))).join('; ')}`, { cause: errors[0] });
  }

  /** One domain ends on its own (fenced, switched over, superseded): only its node stops. */
  private async endAlone(name: string, end: DomainEnd, stop: () => Promise<void>, log: Logger): Promise<void> {
    // A signal's stop took it already.
    if (this.stopping || !this.running.delete(name)) return;
    this.ends.set(name, end);
    try {
      await stop();
    } catch (err) {
      log.error({ err }, `domain ${name}: its stop failed: ${err instanceof Error ? err.message : String(err)}`);
    }
    log.info({ end, running: this.running.size }, `domain ${name} ended (${end}); ${this.running.size} domains still running`);
    if (this.running.size === 0 && !this.starting) this.allEnded();
  }

  /** Resolves once no domain runs any more (each ended on its own, its stop done), or after stop(). */
  async whenAllEnded(): Promise<void> {
    await this.ended;
    // Two domains ending together: the last to leave the running set may finish its stop before the other.
    await Promise.all(this.endingAlone);
  }

  /** Stops every domain still running, all at once, each in order; one whose stop fails does not hold the others. */
  async stop(signal: string): Promise<void> {
    this.stopping = true;
    const names = [...this.running];
    this.running.clear();
    await Promise.all(
      names.map(async (name) => {
        try {
          await this.lives.get(name)!.stop(signal);
        } catch (err) {
          this.options.logger.error({ err, domain: name }, `domain ${name}: its stop failed: ${err instanceof Error ? err.message : String(err)}`);
        }
        this.ends.set(name, 'stopped');
      }),
    );
    await Promise.all(this.endingAlone);
    this.allEnded();
  }
}

export interface PrimaryDomainsOptions extends DomainsOptions {
  /** The command's --mode: a domain's own `mode` wins. */
  mode: PrimaryMode;
}

/** `tandem primary` with domains: a PrimaryNode per domain. */
export class PrimaryDomains extends Domains<PrimaryNode> {
  /** The domains' pre-copies take turns: all at once, they would starve each other and every domain's heartbeats. */
  private readonly precopyTurns = new PrecopyGate();

  constructor(private readonly primaryOptions: PrimaryDomainsOptions) {
    super(primaryOptions);
  }

  protected life(plan: DomainPlan, logger: Logger): DomainLife<PrimaryNode> {
    const { transport, monitor } = this.options;
    const node = new PrimaryNode({ cfg: plan.cfg, mode: plan.mode ?? this.primaryOptions.mode, binding: createBinding(plan.cfg.domain), transport, logger, monitor, precopyTurns: this.precopyTurns });
    return {
      node,
      start: async () => void (await node.start()),
      ownEnd: () =>
        Promise.race([
          node.whenFenced().then((f) => ({ end: 'fenced' as const, stop: () => node.stop({ kind: 'fenced', ...f }) })),
          node.whenSwitchoverAsked().then(() => ({ end: 'switchover' as const, stop: () => node.stop({ kind: 'switchover' }) })),
        ]),
      stop: (signal) => node.stop({ kind: 'signal', signal }),
    };
  }
}

export interface SecondaryDomainsOptions extends DomainsOptions {
  /** The command's --mode: a domain's own `mode` wins. */
  mode: 'remus' | 'colo';
}

/** `tandem secondary` with domains: a SecondaryNode per domain, each promoted on its own. */
export class SecondaryDomains extends Domains<SecondaryNode> {
  /** After a failover with failback, the promoted domains' pre-copies to their new standby take turns too. */
  private readonly precopyTurns = new PrecopyGate();

  constructor(private readonly secondaryOptions: SecondaryDomainsOptions) {
    super(secondaryOptions);
  }

  protected life(plan: DomainPlan, logger: Logger): DomainLife<SecondaryNode> {
    const { transport, monitor } = this.options;
    const node = new SecondaryNode({ cfg: plan.cfg, mode: plan.mode ?? this.secondaryOptions.mode, binding: createBinding(plan.cfg.domain), transport, logger, monitor, precopyTurns: this.precopyTurns });
    return {
      node,
      start: async () => void (await node.start()),
      ownEnd: () =>
        node.whenSuperseded().then((h) => ({
          end: 'fenced' as const,
          stop: () => {
            logger.fatal({ node: h.node, generation: h.generation }, `superseded: node ${h.node} serves domain ${plan.name} at generation ${h.generation}; this node stops serving it at once`);
            return node.stop('superseded');
          },
        })),
      stop: (signal) => node.stop(signal),
    };
  }
}
