/**
 * Failover on the secondary: when the primary is declared dead, stop taking
 * checkpoints (a torn epoch is discarded), resume the guest from the last
 * complete epoch and serve its service. The survivor runs unprotected until
 * a new secondary protects it, and says so loudly.
 */
import { EventEmitter } from 'node:events';
import type { AddressInfo } from 'node:net';
import type { PersistenceCheck, PromotedGuest, PromoteOptions, ReplicaGuest } from '../domain/binding.js';
import { ErrorCodes, TandemError } from '../errors.js';
import type { Address } from '../util/address.js';
import type { Logger } from '../util/logger.js';

/** What the promoter needs of the secondary server: which epoch the replica holds, and a way to stop taking checkpoints. */
export interface ReplicaHolder {
  readonly lastEpoch: number;
  readonly state: string;
  stop(): Promise<void>;
}

/** How often a takeover still under way says so. */
const PROGRESS_EVERY_MS = 10_000;

export interface PromoterOptions {
  secondary: ReplicaHolder;
  /**
   * Takes the primary's role for this node (the next fencing generation) and
   * returns it; throws if it cannot. Called only once the promotion's own
   * checks passed, so a failover that cannot happen takes nothing.
   */
  claim?: () => number | Promise<number>;
  /** The replica the binding resumes and serves. */
  replica: Pick<ReplicaGuest, 'promote' | 'stop'>;
  /** Check the guest's persistent state against its memory before serving (slow: for verification runs). */
  verifyPersistence?: boolean;
  /** Where the guest's service is served once promoted. */
  service: Address;
  /**
   * Resumes and serves the guest (default: the replica's promote(), which
   * serves it unprotected). The secondary node gives one that serves it as
   * a protected primary when a new standby is configured.
   */
  serve?: (options: PromoteOptions) => Promise<PromotedGuest & { standby?: string }>;
  logger: Logger;
  now?: () => number;
  /** How often a takeover still under way says which step it is at (default 10 s). */
  progressEveryMs?: number;
}

export interface Promotion {
  epoch: number;
  /** The generation this node serves as (when a claim was made). */
  generation?: number;
  /** With verifyPersistence: whether the replica's disk replays to its RAM. */
  persistence?: PersistenceCheck;
  service: AddressInfo;
  /** From promote() to serving, ms. */
  tookMs: number;
}

/** For observers (the monitor): a failover starting, done, or refused. */
export interface PromoterEvents {
  promoting: [{ reason: string; epoch: number }];
  promoted: [Promotion & { reason: string }];
  refused: [{ reason: string; error: Error }];
}

export class Promoter extends EventEmitter<PromoterEvents> {
  private promoted: Promotion | undefined;
  private inflight: Promise<Promotion> | undefined;
  private lastRefusal: string | undefined;

  constructor(private readonly options: PromoterOptions) {
    super();
  }

  get promotion(): Promotion | undefined {
    return this.promoted;
  }

  /** A promotion is done or under way: a second one would only join it. */
  get engaged(): boolean {
    return this.promoted !== undefined || this.inflight !== undefined;
  }

  /** Resumes the guest from the replica's last complete epoch and serves it. */
  async promote(reason: string): Promise<Promotion> {
    if (this.promoted) return this.promoted;
    // An operator's failover and the detector's may race: both get the one promotion.
    this.inflight ??= this.doPromote(reason)
      .catch((err: unknown) => {
        this.emit('refused', { reason, error: err instanceof Error ? err : new Error(String(err)) });
        throw err;
      })
      .finally(() => (this.inflight = undefined));
    return this.inflight;
  }

  private async doPromote(reason: string): Promise<Promotion> {
    const { secondary, logger } = this.options;
    const now = this.options.now ?? (() => performance.now());
    const t0 = now();
    // lastEpoch is 0 whenever the replica holds no checkpoint to go back to (never synced, or a new stream's pre-copy gave it up).
    if (secondary.lastEpoch < 1) {
      const err = new TandemError(ErrorCodes.NOTHING_TO_FAIL_OVER, `cannot fail over (${reason}): the replica holds no complete checkpoint (state ${secondary.state})`);
      logger.fatal({ err, reason }, err.message);
      throw err;
    }
    let generation: number | undefined;
    try {
      generation = await this.options.claim?.();
    } catch (err) {
      const refused = new TandemError(ErrorCodes.NOTHING_TO_FAIL_OVER, `cannot fail over (${reason}): ${err instanceof Error ? err.message : String(err)}`, { cause: err });
      // A refusal the rule retries (the primary's lease still live) is said once, not at every retry.
      if (refused.message !== this.lastRefusal) logger.error({ err: refused, reason }, refused.message);
      this.lastRefusal = refused.message;
      throw refused;
    }
    const why = generation === undefined ? reason : `${reason}; taking over as generation ${generation}`;
    this.emit('promoting', { reason: why, epoch: secondary.lastEpoch });
    // A takeover can wait long on the hypervisor (Xen builds the domain from the last checkpoint):
    // while it does, the log says which step it is at, so a stuck one is not silence.
    const progress = { step: 'stopping the replication listener' };
    const watch = setInterval(() => logger.warn({ step: progress.step, ms: Math.round(now() - t0) }, `failover still under way after ${Math.round((now() - t0) / 1000)} s: ${progress.step}`), this.options.progressEveryMs ?? PROGRESS_EVERY_MS);
    watch.unref();
    try {
      return await this.takeOver(reason, why, generation, now, t0, progress);
    } catch (err) {
      // Said already, and fatally: the replica lost its checkpoint while its stream stopped.
      if (err instanceof TandemError && err.code === ErrorCodes.NOTHING_TO_FAIL_OVER) throw err;
      // Past the claim the domain is this node's, and it is not served: the loudest thing a node says.
      const failed = new TandemError(ErrorCodes.FAILOVER_FAILED, `FAILOVER FAILED (${why}): ${err instanceof Error ? err.message : String(err)}; the guest is served nowhere`, { cause: err });
      logger.fatal({ err: failed, reason, generation, step: progress.step }, failed.message);
      throw failed;
    } finally {
      clearInterval(watch);
    }
  }

  private async takeOver(reason: string, why: string, generation: number | undefined, now: () => number, t0: number, progress: { step: string }): Promise<Promotion> {
    const { secondary, replica, logger } = this.options;
    // No more checkpoints: whatever epoch was arriving is discarded, and a
    // late primary cannot overwrite the guest we are about to run. An epoch
    // already whole and loading commits first, so the epoch is read after.
    await secondary.stop();
    const epoch = secondary.lastEpoch;
    if (epoch < 1) {
      const err = new TandemError(ErrorCodes.NOTHING_TO_FAIL_OVER, `cannot fail over (${reason}): the replica lost its checkpoint while its stream stopped (state ${secondary.state})`);
      logger.fatal({ err, reason }, err.message);
      throw err;
    }
    const serve = this.options.serve ?? ((o: PromoteOptions): Promise<PromotedGuest & { standby?: string }> => replica.promote(o));
    progress.step = `resuming the guest from epoch ${epoch} and waiting for its service`;
    const guest = await serve({ service: this.options.service, verifyPersistence: this.options.verifyPersistence });
    const persistence = guest.persistence;
    if (persistence !== undefined) logger.info({ epoch, ...persistence }, `the guest's persistent state ${persistence.consistent ? 'matches' : 'DIFFERS from'} its memory`);
    const address = guest.service;
    this.promoted = { epoch, service: address, tookMs: now() - t0 };
    if (generation !== undefined) this.promoted.generation = generation;
    if (persistence !== undefined) this.promoted.persistence = persistence;
    logger.error(
      { epoch, reason, service: `${address.address}:${address.port}`, tookMs: this.promoted.tookMs },
      `FAILED OVER (${why}): the guest runs here from epoch ${epoch}, serving ${address.address}:${address.port}; ${guest.standby === undefined ? 'UNPROTECTED: no standby' : `unprotected until ${guest.standby} holds a checkpoint`}`,
    );
    this.emit('promoted', { ...this.promoted, reason: why });
    return this.promoted;
  }

  async stop(): Promise<void> {
    await this.options.replica.stop();
  }
}
