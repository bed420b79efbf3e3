/**
 * The arbiter on etcd. Per domain, two keys under the prefix, both holding
 * {"node": N, "generation": G, "protected": P}:
 *
 *   PREFIX/DOMAIN/owner       attached to N's lease: who serves now
 *   PREFIX/DOMAIN/generation  no lease: who ran last, and how
 *
 * The owner key exists only while its node renews the lease; etcd deletes it
 * when the lease runs out. The generation key outlives it. Every change is
 * one txn that compares both keys' revisions with what the node read and
 * writes both: two nodes racing (a primary moving to its next generation to
 * release output alone, a secondary taking over) cannot both win.
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
import type { Arbiter, ArbiterEvents, ArbiterView, Holder } from './arbiter.js';
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

/** A change of this node's record: to unprotected (the next generation if it was protected), to protected at a generation, or the same again (after the lease ended). */
type Want = { kind: 'unprotected' } | { kind: 'protected'; generation: number } | { kind: 'same' };

/** Wait between attempts at a change of the record etcd did not take (unreachable, or a race). */
const RETRY_MS = 200;

export class EtcdArbiter extends EventEmitter<ArbiterEvents> implements Arbiter {
  readonly kind = 'etcd';
  private lease: string | undefined;
  /** Monotonic ms until which the lease is known to be live (0: not held). */
  private liveUntil = 0;
  /** What etcd holds for this node, as last confirmed. */
  private record: { generation: number; protected: boolean } | undefined;
  /** A change of the record not yet confirmed. */
  private want: Want | undefined;
  private changing: Promise<void> | undefined;
  /** Resolved after each attempt at a change (settled() waits for one). */
  private attempted: Array<() => void> = [];
  private failing = false;
  /** A change failed without an answer: it may still land, so the next attempt writes even if etcd shows what is wanted (its revision then defeats the old one). */
  private uncertain = false;
  private announced = false;
  private cancelRenew: (() => void) | undefined;
  private cancelLapse: (() => void) | undefined;
  private cancelRetry: (() => void) | undefined;
  private stopped = false;
  private renewing: Promise<void> | undefined;
  /** The owner as the last read found it. */
  private seen: Holder | undefined;

  constructor(private readonly options: EtcdArbiterOptions) {
    super();
  }

  get description(): string {
    return `etcd at ${this.options.client.endpoint}, key ${this.ownerKey}`;
  }

  get generation(): number {
    return this.record?.generation ?? 0;
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
    // Not while any change is asked for or might still land: a "protected" sent earlier whose answer is
    // pending (or was lost) can reach etcd after output no replica holds has left, and let a replica take over without it.
    return this.lease !== undefined && this.clock.now() < this.liveUntil && this.record?.protected === false && this.want === undefined && !this.uncertain;
  }

  async acquire(): Promise<number> {
    this.validate();
    const { node } = this.options;
    const started = this.clock.now();
    for (let attempt = 0; ; attempt++) {
      const snap = await this.readAtStart(started);
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
      const generation = (last?.generation ?? 0) + 1;
      if (await this.take(snap, generation)) {
        this.stopped = false;
        this.options.logger?.info({ generation, ttlS: this.ttlS }, `arbiter: this node holds the domain at generation ${generation} (lease ${this.ttlS} s, ${this.description})`);
        return generation;
      }
      // Lost a race: read again and decide again.
    }
  }

  /**
   * The record, read for acquire(): an etcd that does not answer is asked
   * again for up to one lease period, so a node that starts during a blip
   * (an election, a slow disk, a loaded host) starts, rather than exiting.
   * Only the read is retried: it changes nothing, and a node that never gets
   * an answer still fails, with etcd's error, and serves nothing.
   */
  private async readAtStart(started: number): Promise<Snapshot> {
    for (let tries = 1; ; tries++) {
      try {
        return await this.snapshot();
      } catch (err) {
        const waited = this.clock.now() - started;
        if (!(err instanceof ArbiterError) || err.code !== C.ARBITER_UNREACHABLE || waited >= this.ttlS * 1000) throw err;
        if (tries === 1) this.options.logger?.warn({ codes: [err.code] }, `arbiter: etcd does not answer (${err.message}); asking again for up to ${this.ttlS} s before giving up`);
        await this.sleep(Math.min(250, this.ttlS * 100));
      }
    }
  }

  async claim(from: number): Promise<number> {
    this.validate();
    const { client } = this.options;
    // The lease is asked for alongside the read: a failover waits for two round trips to etcd, not three.
    // Validity counts from when the grant was sent, not answered: etcd's TTL starts somewhere in between.
    const sentAt = this.clock.now();
    const [first, lease] = await Promise.all([this.snapshot(), client.grant(this.ttlS).then((l) => ({ ...l, sentAt }))]);
    let snap = first;
    for (let attempt = 1; ; attempt++) {
      const refused = this.refusal(snap, from);
      if (refused !== undefined) {
        client.revoke(lease.id).catch(() => {});
        throw refused;
      }
      const generation = from + 1;
      if (await this.take(snap, generation, lease)) {
        this.stopped = false;
        const o = snap.owner?.holder;
        this.options.logger?.warn({ generation, from }, `arbiter: this node took the domain at generation ${generation} from ${o === undefined ? 'a lapsed lease' : `node ${o.node}, protected at ${from}`}`);
        return generation;
      }
      // The record changed between the read and the swap (the primary moved on, or another claim won): decide again on what it is now.
      if (attempt === 3) throw new ArbiterError(C.ARBITER_HELD, 'the domain\'s record kept changing under this claim: this node does not take over');
      snap = await this.snapshot();
    }
  }

  /** Why the replica of generation `from` may not take over, given `snap` (undefined: it may). */
  private refusal(snap: Snapshot, from: number): ArbiterError | undefined {
    const last = snap.last?.holder;
    // Our own claim whose answer was lost (and whose lease we revoked): it landed; take it up again.
    if (last !== undefined && last.node === this.options.node && last.generation === from + 1 && snap.owner === undefined) return undefined;
    if (last === undefined) return new ArbiterError(C.ARBITER_STALE, `etcd holds no record of the domain (key ${this.lastKey}): whether this replica is the latest copy is unknown`);
    if (last.generation !== from) {
      return new ArbiterError(C.ARBITER_STALE, `the domain is at generation ${last.generation} (node ${last.node}), but this replica holds checkpoints of generation ${from}: it is not the latest copy`);
    }
    const o = snap.owner?.holder;
    if (o !== undefined && !(o.protected && o.generation === from)) {
      return new ArbiterError(C.ARBITER_HELD, `node ${o.node} serves the domain unprotected at generation ${o.generation} and renews its lease: it is alive to the arbiter, so this node does not take over`);
    }
    return undefined;
  }

  protect(generation: number): void {
    this.change({ kind: 'protected', generation });
  }

  unprotect(): void {
    if (this.record?.protected === false && this.want === undefined) return;
    this.change({ kind: 'unprotected' });
  }

  /**
   * A new session streams at the record's generation. A move to the next one
   * that etcd has not taken is dropped: the record still says "protected at
   * G", and the new session's replica, at G, may take over from it. That is
   * safe because the old replica of G cannot be elsewhere: a primary streams
   * to one configured address for its whole run, and one secondary per
   * domain listens there, so the new session's replica is the old one's
   * process (which gave its replica up to accept the stream) or a restart of
   * it (which has none).
   */
  beginSession(): number {
    if (this.want?.kind === 'unprotected' && this.changing === undefined) {
      this.want = undefined;
      this.cancelRetry?.();
      this.cancelRetry = undefined;
      this.announce();
    }
    return this.generation;
  }

  settled(): Promise<void> {
    if (this.changing === undefined) return Promise.resolve();
    return new Promise((resolve) => this.attempted.push(resolve));
  }

  async holder(): Promise<Holder | undefined> {
    return (await this.snapshot()).owner?.holder;
  }

  view(): ArbiterView {
    const seen = this.seen;
    return { kind: 'etcd', holder: seen?.node ?? null, generation: seen?.generation ?? null, protected: seen?.protected ?? false, authority: this.valid() };
  }

  async stop(options: { release?: boolean } = {}): Promise<void> {
    this.stopped = true;
    this.cancelRenew?.();
    this.cancelLapse?.();
    this.cancelRetry?.();
    await this.renewing;
    await this.changing;
    const lease = this.lease;
    this.lease = undefined;
    this.liveUntil = 0;
    try {
      if (lease !== undefined && options.release === true) {
        await this.options.client.revoke(lease);
        this.options.logger?.info({ generation: this.generation }, 'arbiter: released the domain');
      }
    } finally {
      this.options.client.close();
    }
  }

  /** The owner and last-run keys, read together (one revision). */
  private async snapshot(): Promise<Snapshot> {
    const r = await this.options.client.txn([], [{ range: { key: this.ownerKey } }, { range: { key: this.lastKey } }], []);
    const [owner, last] = r.ranges;
    const snap = {
      owner: owner === undefined ? undefined : { kv: owner, holder: readHolder(owner, this.ownerKey) },
      last: last === undefined ? undefined : { kv: last, holder: readHolder(last, this.lastKey) },
    };
    this.seen = snap.owner?.holder;
    return snap;
  }

  /**
   * Writes this node's record (owner under its lease, and last run) if both
   * keys are as `snap` read them; false if somebody changed either since.
   * Without a lease of ours on etcd, takes a new one (or `granted`).
   */
  private async take(snap: Snapshot, generation: number, granted?: { id: string; ttlS: number; sentAt: number }, isProtected = false): Promise<boolean> {
    if (!Number.isSafeInteger(generation)) throw new ArbiterError(C.ARBITER_BAD_OPTIONS, `no generation is left after ${generation - 1}: generations end at 2^53-1`);
    const { client, node } = this.options;
    const ownerIsOurs = snap.owner !== undefined && this.lease !== undefined && snap.owner.kv.lease === this.lease;
    let fresh = granted;
    if (!ownerIsOurs && fresh === undefined) {
      const sentAt = this.clock.now();
      fresh = { ...(await client.grant(this.ttlS)), sentAt };
    }
    const leaseId = ownerIsOurs ? this.lease! : fresh!.id;
    const value = Buffer.from(JSON.stringify({ node, generation, protected: isProtected }));
    let result: TxnResult;
    try {
      result = await client.txn(
        [
          snap.owner === undefined ? { key: this.ownerKey, target: 'CREATE', createRevision: 0 } : { key: this.ownerKey, target: 'MOD', modRevision: snap.owner.kv.modRevision },
          { key: this.lastKey, target: 'MOD', modRevision: snap.last?.kv.modRevision ?? 0 },
        ],
        [{ put: { key: this.ownerKey, value, lease: leaseId } }, { put: { key: this.lastKey, value } }],
        [],
      );
    } catch (err) {
      // Unknown outcome. A new lease is ours alone, so ending it undoes the owner key the txn may have written.
      if (fresh !== undefined) await client.revoke(fresh.id).catch(() => {});
      throw err;
    }
    if (!result.succeeded) {
      if (fresh !== undefined) await client.revoke(fresh.id).catch(() => {});
      return false;
    }
    const before = this.record?.generation;
    this.record = { generation, protected: isProtected };
    if (fresh !== undefined) {
      this.lease = fresh.id;
      this.extend(fresh.sentAt, fresh.ttlS);
      this.scheduleRenew((fresh.ttlS * 1000) / 3);
    }
    if (before !== undefined && before !== generation) this.emit('generation', generation);
    this.announce();
    return true;
  }

  /** Asks for a change of the record; the latest ask wins. */
  private change(want: Want): void {
    if (this.record === undefined || this.stopped) return;
    this.want = want;
    this.announce();
    this.cancelRetry?.();
    this.cancelRetry = undefined;
    this.changing ??= this.applyChanges().finally(() => {
      this.changing = undefined;
      for (const resolve of this.attempted.splice(0)) resolve();
    });
  }

  private async applyChanges(): Promise<void> {
    while (this.want !== undefined && !this.stopped) {
      const want = this.want;
      try {
        const done = await this.apply(want);
        if (this.failing) this.options.logger?.info('arbiter: reachable again; the domain\'s record is current');
        this.failing = false;
        if (done && this.want === want) this.want = undefined;
      } catch (err) {
        if (!this.failing) this.options.logger?.warn({ err }, `arbiter: cannot change the domain's record (${want.kind}): ${err instanceof Error ? err.message : String(err)}; output no replica holds stays held; retrying`);
        this.failing = true;
        this.uncertain = true;
        // settled() resolves only once this run is over (change()'s finally): a session's setup
        // resuming earlier would find the failed move still in flight, keep it, and see it land
        // later under the new stream's generation.
        // Again after a pause, unless a newer ask comes first (change() starts a new run then).
        this.cancelRetry = this.clock.setTimer(RETRY_MS, () => {
          this.cancelRetry = undefined;
          if (this.want !== undefined && this.changing === undefined) this.change(this.want);
        });
        return;
      } finally {
        this.announce();
      }
    }
  }

  /** One attempt at `want`: true once the record is as wanted, false if a race means reading again. */
  private async apply(want: Want): Promise<boolean> {
    const { node } = this.options;
    const snap = await this.snapshot();
    const owner = snap.owner?.holder;
    const last = snap.last?.holder;
    const mine = this.record!;
    if ((owner !== undefined && owner.node !== node) || last === undefined || last.node !== node || last.generation < mine.generation) {
      this.supersede(owner !== undefined && owner.node !== node ? owner : (last ?? { node: '(nobody: the record is gone)', generation: mine.generation, protected: false }));
      return true;
    }
    // The record etcd holds for us may be ahead of ours (a change whose answer was lost took effect).
    const current = { generation: last.generation, protected: last.protected };
    let target: { generation: number; protected: boolean };
    if (want.kind === 'unprotected') {
      target = current.protected ? { generation: current.generation + 1, protected: false } : current;
    } else if (want.kind === 'protected') {
      // Our own move to a next generation, sent and never answered, landed after this stream began at
      // the generation we had confirmed. Nothing left this node at the newer one (no authority without
      // its answer) and no replica of it exists: it is void, and the record goes back to the stream's.
      const unansweredMove = current.generation > want.generation && !current.protected && mine.generation === want.generation;
      if (unansweredMove) {
        this.options.logger?.warn({ stream: want.generation, generation: current.generation }, `arbiter: a move to generation ${current.generation} whose answer was lost took effect; nothing was served at it, so the record goes back to generation ${want.generation}, protected, as this stream's replica holds`);
      } else if (current.generation !== want.generation) {
        this.options.logger?.warn(
          { stream: want.generation, generation: current.generation },
          `arbiter: the stream carries generation ${want.generation} but the domain moved to ${current.generation} meanwhile: its replica could never take over; protecting again with a new stream`,
        );
        this.record = current;
        this.emit('restream', { stream: want.generation, generation: current.generation });
        return true;
      }
      target = { generation: want.generation, protected: true };
    } else {
      target = current;
    }
    if (!this.uncertain && owner !== undefined && snap.owner!.kv.lease === this.lease && sameRecord(target, current) && sameRecord(owner, current)) {
      this.record = current;
      return true;
    }
    const took = await this.take(snap, target.generation, undefined, target.protected);
    // Written over the revision an earlier, unanswered change compared with: that one can no longer land.
    if (took) this.uncertain = false;
    if (took && target.generation !== mine.generation) {
      this.options.logger?.warn({ generation: target.generation }, `arbiter: unprotected: the domain moved to generation ${target.generation}, so the replica of generation ${mine.generation} can no longer take over; output no replica holds may leave`);
    } else if (took && want.kind === 'protected') {
      this.options.logger?.info({ generation: target.generation }, `arbiter: protected at generation ${target.generation}: its replica may take over at once`);
    } else if (took && want.kind === 'same') {
      this.options.logger?.warn({ generation: target.generation }, `arbiter: took the domain back at generation ${target.generation} after its lease ended`);
    }
    return took;
  }

  private supersede(by: Holder): void {
    if (this.stopped) return;
    this.stopped = true;
    this.lease = undefined;
    this.liveUntil = 0;
    this.want = undefined;
    this.cancelRenew?.();
    this.options.logger?.fatal({ node: by.node, generation: by.generation }, `arbiter: node ${by.node} holds the domain at generation ${by.generation}: this node is superseded`);
    this.announce();
    this.emit('superseded', by);
  }

  /** A renewal sent at `sentAt` was granted `ttlS`: live until then, less the margin. */
  private extend(sentAt: number, ttlS: number): void {
    this.liveUntil = Math.max(this.liveUntil, sentAt + ttlS * 1000 * (1 - CLOCK_MARGIN));
    // Told when it lapses, for logs and to hold output; valid() does not wait for this timer.
    this.cancelLapse?.();
    this.cancelLapse = this.clock.setTimer(this.liveUntil - this.clock.now(), () => this.lapse());
  }

  private lapse(): void {
    if (this.valid()) {
      // Timers run on the event loop's cached time and may fire a little early: look again when it is due.
      this.cancelLapse = this.clock.setTimer(Math.max(1, this.liveUntil - this.clock.now()), () => this.lapse());
      return;
    }
    if (this.lease !== undefined && this.clock.now() >= this.liveUntil && !this.stopped) {
      this.options.logger?.error(`arbiter: lease lapsed: it was not renewed in time (arbiter unreachable?); output no replica holds is held from now on`);
    }
    this.announce();
  }

  /** Tells listeners when valid() changed. */
  private announce(): void {
    const valid = this.valid();
    if (valid === this.announced) return;
    this.announced = valid;
    const reason = valid
      ? 'lease live, serving unprotected'
      : this.stopped
        ? 'superseded or stopped'
        : this.clock.now() >= this.liveUntil
          ? 'lease not live'
          : this.want !== undefined
            ? `the arbiter has not confirmed the change to ${this.want.kind}`
            : 'protected: only acked output leaves';
    this.emit('authority', { valid, reason });
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
      const ttl = await this.options.client.keepAlive(lease);
      if (this.stopped || this.lease !== lease) return;
      if (ttl > 0) {
        this.extend(sentAt, ttl);
        // A secondary that took over moved the owner key onto its own lease, which ours outlives: look.
        const snap = await this.snapshot();
        if (this.stopped || this.lease !== lease) return;
        const by = [snap.owner?.holder, snap.last?.holder].find((h) => h !== undefined && h.node !== this.options.node);
        if (by !== undefined) {
          this.supersede(by);
          return;
        }
        this.scheduleRenew(period);
        return;
      }
      // etcd no longer has the lease: the owner key went with it. Write the record again under a new one, or learn who took it.
      this.lease = undefined;
      this.liveUntil = 0;
      this.lapse();
      this.change(this.want ?? { kind: 'same' });
    } catch (err) {
      if (this.stopped) return;
      this.options.logger?.warn({ err }, `arbiter: lease renewal failed: ${err instanceof Error ? err.message : String(err)}`);
      // Try again soon, well before the lease would run out.
      this.scheduleRenew(Math.min(250, period / 2));
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => this.clock.setTimer(ms, resolve));
  }
}

function sameRecord(a: { generation: number; protected: boolean }, b: { generation: number; protected: boolean }): boolean {
  return a.generation === b.generation && a.protected === b.protected;
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
  const { node, generation, protected: isProtected } = v as Record<string, unknown>;
  if (typeof node !== 'string' || !ARBITER_NAME.test(node)) fail('no valid node name');
  if (typeof generation !== 'number' || !Number.isSafeInteger(generation) || generation < 1) fail('no valid generation (1..2^53-1)');
  if (typeof isProtected !== 'boolean') fail('no valid "protected" (true or false)');
  return { node: node as string, generation: generation as number, protected: isProtected as boolean };
}
