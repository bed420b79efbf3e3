/**
 * The arbiter decides who may serve a domain. Two nodes that cannot hear
 * each other cannot tell a dead peer from a cut link; a third party they
 * both reach can. It holds, per domain, the node that serves it, at which
 * generation, and whether that node is protected; a node keeps the record
 * only while it renews a lease. Every change is a compare-and-swap.
 *
 * The rules the nodes keep (docs/failover.md, "The arbiter"):
 *
 * - A primary serves only after it holds the domain (acquire()).
 * - While protected, a primary releases only output the secondary acked,
 *   and the record says so (protect(g), once the stream of generation g had
 *   its first checkpoint acked). A secondary whose replica holds generation
 *   g may then take the domain at once (claim(g)): it stops acking first,
 *   so the primary's output stops by itself; no lease has to run out.
 * - Output no replica holds is released only while `valid()`: the record
 *   says "unprotected" at this node's generation and the lease is known to
 *   be live. Losing protection (unprotect()) moves the record to the next
 *   generation first, so the replica of the previous one can never be
 *   promoted over output it does not hold: the primary's swap and the
 *   secondary's claim cannot both succeed.
 * - A node that learns that another took the domain ('superseded') is
 *   fenced: it stops serving at once.
 */
import type { EventEmitter } from 'node:events';

/** Who serves a domain, as the arbiter records it. */
export interface Holder {
  node: string;
  generation: number;
  /** The holder releases only output a replica of `generation` acked: that replica may take over at once. */
  protected: boolean;
}

export interface ArbiterEvents {
  /** The authority to release unreplicated output came or went (`valid()` changed), and why. */
  authority: [{ valid: boolean; reason: string }];
  /** Another node holds the domain now, at a newer generation: this node must stop serving. */
  superseded: [Holder];
  /** This node's generation changed (it lost protection and moved to the next): streams and heartbeats carry it. */
  generation: [number];
  /** The stream in progress carries a generation the record has left: its replica can never take over; start a new stream. */
  restream: [{ stream: number; generation: number }];
}

export interface Arbiter extends EventEmitter<ArbiterEvents> {
  readonly kind: 'etcd' | 'none';
  /** Whether this node may release output that no replica holds, now (computed at each call). */
  valid(): boolean;
  /** The generation this node holds the domain at, as the arbiter confirmed it (0 before acquire()). */
  readonly generation: number;
  /**
   * The stream of `generation` had its first checkpoint acked and only acked
   * output leaves from now on: record it, so its replica may take over at
   * once. In the background; never delays an epoch.
   */
  protect(generation: number): void;
  /**
   * Protection ended: output no replica holds may have to leave. Moves the
   * record to the next generation (unprotected) in the background; `valid()`
   * stays false until the arbiter confirmed it.
   */
  unprotect(): void;
  /** Resolves once no change of the record is in flight (or one attempt at it failed): a new stream then carries `generation`. */
  settled(): Promise<void>;
  /**
   * A protection session begins (after settled()): returns the generation
   * its stream carries. A move to the next generation not yet confirmed is
   * dropped: nothing was released at it, and this session's first checkpoint
   * records the current generation protected.
   */
  beginSession(): number;
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
   * holds). At once when that primary recorded itself protected at `from`;
   * rejects, taking nothing, while it serves unprotected under a live lease
   * (ARBITER_HELD) or when the domain moved past `from` (ARBITER_STALE).
   */
  claim(from: number): Promise<number>;
  /** Who holds the domain, as the arbiter says now (undefined: nobody). */
  holder(): Promise<Holder | undefined>;
  /** What this node last learned, without asking (holder() and every renewal refresh it). */
  view(): ArbiterView;
  /**
   * Stops renewing. `release: true` (an orderly stop, once nothing is served
   * any more) ends the lease at once, so a standby can take over without
   * waiting for it to run out.
   */
  stop(options?: { release?: boolean }): Promise<void>;
}

/** Who may serve, as this node knows it now (for status, the dashboard and metrics). */
export interface ArbiterView {
  kind: 'none' | 'etcd';
  /** The node etcd last said serves the domain (null: nobody, or not known). */
  holder: string | null;
  /** Its generation (null: not known). */
  generation: number | null;
  /** The holder recorded itself protected: its replica may take over at once. */
  protected: boolean;
  /** This node may release output no replica holds, now. */
  authority: boolean;
}

/** What gates output no replica holds: asked at every release, told of changes to release what it held. */
export type Authority = Pick<Arbiter, 'valid' | 'on' | 'off'>;
