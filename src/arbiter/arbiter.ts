/**
 * The arbiter decides who may serve a domain. Two nodes that cannot hear
 * each other cannot tell a dead peer from a cut link; a third party they
 * both reach can. It holds, per domain, which node serves it and at which
 * generation, and a node keeps that claim only while it renews a lease.
 *
 * The rules the nodes keep (docs/failover.md, "The arbiter"):
 *
 * - A primary serves only after it holds the domain (acquire()); a
 *   secondary fails over only after it took the domain at the next
 *   generation (claim()), which it can do only once the primary's lease has
 *   run out. A claim that cannot happen takes nothing.
 * - Output that a replica holds (acked by the secondary) may always be
 *   released: a secondary that acks is not serving. Output that no replica
 *   holds (the primary runs unprotected) is released only while `valid()`:
 *   while the lease is known to be live. A primary cut off from the arbiter
 *   and from its secondary therefore stops answering before the lease ends,
 *   and the secondary can only take over after it ends.
 * - A node that learns that another took the domain ('superseded') is
 *   fenced: it stops serving at once.
 */
import type { EventEmitter } from 'node:events';

/** Who serves a domain, as the arbiter records it. */
export interface Holder {
  node: string;
  generation: number;
}

export interface ArbiterEvents {
  /** The authority to release unreplicated output came or went (`valid()` changed), and why. */
  authority: [{ valid: boolean; reason: string }];
  /** Another node holds the domain now, at a newer generation: this node must stop serving. */
  superseded: [Holder];
}

export interface Arbiter extends EventEmitter<ArbiterEvents> {
  readonly kind: 'etcd' | 'none';
  /** Whether this node may release output that no replica holds, now (computed at each call). */
  valid(): boolean;
  /** Says where the arbiter is, for logs and status (never a secret). */
  readonly description: string;
  /**
   * A primary starting: takes the domain and resolves with the generation
   * to serve as. Rejects (ARBITER_HELD, ARBITER_STALE) when another node
   * holds it or ran it last.
   */
  acquire(): Promise<number>;
  /**
   * A secondary failing over: takes the domain at the generation after
   * `from` (the generation of the primary whose checkpoints the replica
   * holds). Rejects, taking nothing, while that primary's lease is live or
   * when another generation ran since.
   */
  claim(from: number): Promise<number>;
  /** Who holds the domain, as the arbiter says now (undefined: nobody). */
  holder(): Promise<Holder | undefined>;
  /**
   * Stops renewing. `release: true` (an orderly stop, once nothing is served
   * any more) ends the lease at once, so a standby can take over without
   * waiting for it to run out.
   */
  stop(options?: { release?: boolean }): Promise<void>;
}

/** What gates output no replica holds: asked at every release, told of changes to release what it held. */
export type Authority = Pick<Arbiter, 'valid' | 'on' | 'off'>;
