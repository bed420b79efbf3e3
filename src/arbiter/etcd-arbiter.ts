/**
 * The arbiter on etcd. Per domain, two keys under the prefix:
 *
 *   PREFIX/DOMAIN/owner       {"node": N, "generation": G}, attached to N's lease
 *   PREFIX/DOMAIN/generation  {"node": N, "generation": G}, no lease: who ran last
 *
 * The owner key exists only while its node renews the lease; etcd deletes it
 * when the lease runs out. The generation key outlives it and makes every
 * take a compare-and-swap: a node takes the domain only in a txn that
 * checks that no owner exists (create revision 0) and that the generation
 * key is the one it read (mod revision), and writes both. Two nodes racing
 * for one domain: one txn wins, the other changes nothing.
 *
 * The lease's validity is judged from this side's monotonic clock: a renewal
 * sent at t and answered with a TTL of T seconds keeps the lease live until
 * at least t + T on etcd's clock (etcd counts from when it got the renewal,
 * after t), so `valid()` holds until t + T minus a margin for clock rate.
 * It is computed at each call, not by a timer, so a node whose event loop
 * stalled past that instant finds it invalid before releasing anything.
 */
import { EventEmitter } from 'node:events';
import { monotonicClock, type Clock } from '../heartbeat/clock.js';
import type { Logger } from '../util/logger.js';
import type { Arbiter, ArbiterEvents, Holder } from './arbiter.js';
import type { EtcdClient, KeyValue, TxnResult } from './etcd.js';
import { ArbiterError, ArbiterErrorCodes as C } from './errors.js';

export interface EtcdArbiterOptions {
  client: EtcdClient;
  /** Key prefix, e.g. /tandem. */
  prefix: string;
  /** The domain's name: one owner per domain. */
  domain: string;
  /** This node's name (its certificate's name when TLS is on). */
  node: string;
  /** The lease's TTL, ms (etcd counts whole seconds: rounded up). */
  leaseMs: number;
  clock?: Clock;
  logger?: Logger;
}

/** Names in keys and records: what a certificate name or domain name may be. */
export const ARBITER_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;
const MAX_RECORD_BYTES = 512;
/** Part of the TTL given up to clock-rate differences between this host and etcd's leader. */
const CLOCK_MARGIN = 0.05;
/** A node restarting while its previous run's lease still runs waits this many TTLs for it, at most. */
const OWN_LEASE_WAITS = 1.5;

interface Snapshot {
  owner: { kv: KeyValue; holder: Holder } | undefined;
  last: { kv: KeyValue; holder: Holder } | undefined;
}

export class EtcdArbiter extends EventEmitter<ArbiterEvents> implements Arbiter {
  readonly kind = 'etcd';
  private lease: { id: string; generation: number } | undefined;
  /** Monotonic ms until which the lease is known to be live (0: not held). */
  private liveUntil = 0;
  private announced = false;
  private cancelRenew: (() => void) | undefined;
  private cancelLapse: (() => void) | undefined;
  private stopped = false;
  private renewing: Promise<void> | undefined;

  constructor(private readonly options: EtcdArbiterOptions) {
    super();
  }

  get description(): string {
    return `etcd at ${this.options.client.endpoint}, key ${this.ownerKey}`;
  }

  private get clock(): Clock {
    return this.options.clock ?? monotonicClock;
  }

  private get ownerKey(): string {
    return `${this.options.prefix}/${this.options.domain}/owner`;
  }

  private get lastKey(): string {
    return `${this.options.prefix}/${this.options.domain}/generation`;
  }

  private get ttlS(): number {
    return Math.max(1, Math.ceil(this.options.leaseMs / 1000));
  }

  /** Checks the options; acquire() and claim() call it first. */
  validate(): void {
    const { prefix, domain, node, leaseMs } = this.options;
    if (!/^\/[A-Za-z0-9._/-]{0,200}$/.test(prefix) || prefix.endsWith('/')) throw new ArbiterError(C.ARBITER_BAD_OPTIONS, `arbiter key prefix: expected /NAME[/NAME...], got ${JSON.stringify(prefix)}`);
    if (!ARBITER_NAME.test(domain)) throw new ArbiterError(C.ARBITER_BAD_OPTIONS, `arbiter domain name: expected ${ARBITER_NAME.source}, got ${JSON.stringify(domain)}`);
    if (!ARBITER_NAME.test(node)) throw new ArbiterError(C.ARBITER_BAD_OPTIONS, `arbiter node name: expected ${ARBITER_NAME.source}, got ${JSON.stringify(node)}`);
    if (!Number.isInteger(leaseMs) || leaseMs < 1000 || leaseMs > 600_000) throw new ArbiterError(C.ARBITER_BAD_OPTIONS, `arbiter lease: expected 1000..600000 ms, got ${leaseMs}`);
    this.options.client.validate();
  }

  valid(): boolean {
    return this.lease !== undefined && this.clock.now() < this.liveUntil;
  }

  async acquire(): Promise<number> {
    this.validate();
    const { node } = this.options;
    const started = this.clock.now();
    for (let attempt = 0; ; attempt++) {
      const snap = await this.snapshot();
      if (snap.owner !== undefined) {
        const o = snap.owner.holder;
        // Our own previous run (a restart): its lease runs out by itself, soon.
        if (o.node === node && this.clock.now() - started < OWN_LEASE_WAITS * this.ttlS * 1000) {
          if (attempt === 0) this.options.logger?.warn({ generation: o.generation }, `arbiter: this node's previous run still holds the domain (generation ${o.generation}); waiting for its lease to end`);
          await this.sleep(Math.min(500, this.ttlS * 250));
          continue;
        }
        throw new ArbiterError(C.ARBITER_HELD, `the domain is held by node ${o.node} at generation ${o.generation} (its lease is live): this node does not serve it`);
      }
      const last = snap.last?.holder;
      if (last !== undefined && last.node !== node) {
        throw new ArbiterError(
          C.ARBITER_STALE,
          `the domain last ran on node ${last.node} at generation ${last.generation}: this node's copy of the guest is older; start it as the secondary of ${last.node}`,
        );
      }
      const generation = await this.take(snap, (last?.generation ?? 0) + 1);
      if (generation !== undefined) return generation;
      // Lost a race: read again and decide again.
    }
  }

  async claim(from: number): Promise<number> {
    this.validate();
    const snap = await this.snapshot();
    if (snap.owner !== undefined) {
      const o = snap.owner.holder;
      throw new ArbiterError(C.ARBITER_HELD, `node ${o.node} holds the domain at generation ${o.generation} and renews its lease: it is alive to the arbiter, so this node does not take over`);
    }
    const last = snap.last?.holder;
    if (last !== undefined && last.generation !== from) {
      throw new ArbiterError(
        C.ARBITER_STALE,
        `the domain last ran at generation ${last.generation} (node ${last.node}), but this replica holds checkpoints of generation ${from}: it is not the latest copy`,
      );
    }
    const generation = await this.take(snap, from + 1);
    if (generation === undefined) throw new ArbiterError(C.ARBITER_HELD, 'another node took the domain at the same moment: this node does not take over');
    return generation;
  }

  async holder(): Promise<Holder | undefined> {
    return (await this.snapshot()).owner?.holder;
  }

  async stop(options: { release?: boolean } = {}): Promise<void> {
    this.stopped = true;
    this.cancelRenew?.();
    this.cancelLapse?.();
    await this.renewing;
    const lease = this.lease;
    this.lease = undefined;
    this.liveUntil = 0;
    try {
      if (lease !== undefined && options.release === true) {
        await this.options.client.revoke(lease.id);
        this.options.logger?.info({ generation: lease.generation }, 'arbiter: released the domain');
      }
    } finally {
      this.options.client.close();
    }
  }

  /** The owner and last-run keys, read together (one revision). */
  private async snapshot(): Promise<Snapshot> {
    const r = await this.options.client.txn([], [{ range: { key: this.ownerKey } }, { range: { key: this.lastKey } }], []);
    const [owner, last] = r.ranges;
    return {
      owner: owner === undefined ? undefined : { kv: owner, holder: readHolder(owner, this.ownerKey) },
      last: last === undefined ? undefined : { kv: last, holder: readHolder(last, this.lastKey) },
    };
  }

  /** Takes the domain at `generation` if nobody took it since `snap`; undefined if somebody did. */
  private async take(snap: Snapshot, generation: number): Promise<number | undefined> {
    if (!Number.isSafeInteger(generation)) throw new ArbiterError(C.ARBITER_BAD_OPTIONS, `no generation is left after ${generation - 1}: generations end at 2^53-1`);
    const { client, node } = this.options;
    const sentAt = this.clock.now();
    const lease = await client.grant(this.ttlS);
    const value = Buffer.from(JSON.stringify({ node, generation }));
    let result: TxnResult;
    try {
      result = await client.txn(
        [
          { key: this.ownerKey, target: 'CREATE', createRevision: 0 },
          { key: this.lastKey, target: 'MOD', modRevision: snap.last?.kv.modRevision ?? 0 },
        ],
        [{ put: { key: this.ownerKey, value, lease: lease.id } }, { put: { key: this.lastKey, value } }],
        [{ range: { key: this.ownerKey } }],
      );
    } catch (err) {
      // Unknown outcome: the lease is ours alone, so ending it undoes whatever the txn did.
      await client.revoke(lease.id).catch(() => {});
      throw err;
    }
    if (!result.succeeded) {
      await client.revoke(lease.id).catch(() => {});
      return undefined;
    }
    this.lease = { id: lease.id, generation };
    this.stopped = false;
    this.extend(sentAt, lease.ttlS);
    this.options.logger?.info({ generation, ttlS: lease.ttlS }, `arbiter: this node holds the domain at generation ${generation} (lease ${lease.ttlS} s, ${this.description})`);
    this.scheduleRenew(lease.ttlS * 1000 / 3);
    return generation;
  }

  /** A renewal sent at `sentAt` was granted `ttlS`: live until then, less the margin. */
  private extend(sentAt: number, ttlS: number): void {
    this.liveUntil = Math.max(this.liveUntil, sentAt + ttlS * 1000 * (1 - CLOCK_MARGIN));
    if (!this.announced) {
      this.announced = true;
      this.emit('authority', { valid: true, reason: 'lease live' });
    }
    // Told when it lapses, for logs and to hold output; valid() does not wait for this timer.
    this.cancelLapse?.();
    this.cancelLapse = this.clock.setTimer(this.liveUntil - this.clock.now(), () => this.lapse('the lease was not renewed in time (arbiter unreachable?)'));
  }

  private lapse(reason: string): void {
    if (!this.announced) return;
    if (this.valid()) {
      // Timers run on the event loop's cached time and may fire a little early: look again when it is due.
      this.cancelLapse = this.clock.setTimer(Math.max(1, this.liveUntil - this.clock.now()), () => this.lapse(reason));
      return;
    }
    this.announced = false;
    this.options.logger?.error({ reason }, `arbiter: lease lapsed: ${reason}; output no replica holds is held from now on`);
    this.emit('authority', { valid: false, reason });
  }

  private scheduleRenew(ms: number): void {
    this.cancelRenew?.();
    if (this.stopped) return;
    this.cancelRenew = this.clock.setTimer(ms, () => {
      this.renewing = this.renew().finally(() => (this.renewing = undefined));
    });
  }

  private async renew(): Promise<void> {
    const lease = this.lease;
    if (lease === undefined || this.stopped) return;
    const period = (this.ttlS * 1000) / 3;
    const sentAt = this.clock.now();
    try {
      const ttl = await this.options.client.keepAlive(lease.id);
      if (this.stopped || this.lease !== lease) return;
      if (ttl > 0) {
        this.extend(sentAt, ttl);
        this.scheduleRenew(period);
        return;
      }
      // etcd no longer has the lease: the owner key went with it.
      this.liveUntil = 0;
      this.lapse('etcd says the lease has ended');
      await this.retake(lease.generation);
    } catch (err) {
      if (this.stopped) return;
      this.options.logger?.warn({ err }, `arbiter: lease renewal failed: ${err instanceof Error ? err.message : String(err)}`);
      // Try again soon, well before the lease would run out.
      this.scheduleRenew(Math.min(250, period / 2));
    }
  }

  /** After our lease ended: take the domain back at our generation if nobody else took it, or learn that somebody did. */
  private async retake(generation: number): Promise<void> {
    const snap = await this.snapshot();
    const owner = snap.owner?.holder;
    const last = snap.last?.holder;
    if ((owner !== undefined && owner.node !== this.options.node) || (last !== undefined && last.generation > generation)) {
      const by = owner ?? last!;
      this.lease = undefined;
      this.options.logger?.fatal({ node: by.node, generation: by.generation }, `arbiter: node ${by.node} holds the domain at generation ${by.generation}: this node is superseded`);
      this.emit('superseded', by);
      return;
    }
    if (owner !== undefined) {
      // Ours, under a lease we lost track of: it ends by itself; try again after.
      this.scheduleRenew(Math.min(500, this.ttlS * 250));
      return;
    }
    const sentAt = this.clock.now();
    const { client, node } = this.options;
    const lease = await client.grant(this.ttlS);
    const value = Buffer.from(JSON.stringify({ node, generation }));
    const r = await client.txn(
      [
        { key: this.ownerKey, target: 'CREATE', createRevision: 0 },
        { key: this.lastKey, target: 'MOD', modRevision: snap.last?.kv.modRevision ?? 0 },
      ],
      [{ put: { key: this.ownerKey, value, lease: lease.id } }],
      [],
    );
    if (!r.succeeded) {
      await client.revoke(lease.id).catch(() => {});
      this.scheduleRenew(0);
      return;
    }
    this.lease = { id: lease.id, generation };
    this.extend(sentAt, lease.ttlS);
    this.options.logger?.warn({ generation }, `arbiter: took the domain back at generation ${generation} after its lease ended`);
    this.scheduleRenew((lease.ttlS * 1000) / 3);
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => this.clock.setTimer(ms, resolve));
  }
}

/** A record of the owner or generation key, checked: it decides who serves. */
function readHolder(kv: KeyValue, key: string): Holder {
  const fail = (why: string): never => {
    throw new ArbiterError(C.ARBITER_BAD_RESPONSE, `etcd key ${key} holds ${why}: not a Tandem arbiter record (another program uses this prefix?)`);
  };
  if (kv.value.length > MAX_RECORD_BYTES) fail(`${kv.value.length} bytes`);
  let v: unknown;
  try {
    v = JSON.parse(kv.value.toString('utf8'));
  } catch {
    return fail('something that is not JSON');
  }
  if (typeof v !== 'object' || v === null) return fail('something that is not an object');
  const { node, generation } = v as Record<string, unknown>;
  if (typeof node !== 'string' || !ARBITER_NAME.test(node)) fail('no valid node name');
  if (typeof generation !== 'number' || !Number.isSafeInteger(generation) || generation < 1) fail('no valid generation (1..2^53-1)');
  return { node: node as string, generation: generation as number };
}
