/**
 * No arbiter (`arbiter: none`): for one machine, or a demo. Each node
 * decides alone, from heartbeats: a partition that cuts both the heartbeat
 * and the replication link makes the secondary fail over while the primary
 * goes on serving, and both serve. Said at start, in the log and on the
 * dashboard.
 */
import { EventEmitter } from 'node:events';
import type { Arbiter, ArbiterEvents, ArbiterView, Holder } from './arbiter.js';
import { ArbiterError, ArbiterErrorCodes as C } from './errors.js';

export const NO_ARBITER_WARNING = 'no arbiter (arbiter: none): a partition between the hosts can make both serve the guest (split brain); use an etcd arbiter between two hosts';

export class NoArbiter extends EventEmitter<ArbiterEvents> implements Arbiter {
  readonly kind = 'none';
  readonly description = 'none';

  /** `generation`: what the primary serves as (primary.generation in the config). */
  constructor(private current: number) {
    super();
  }

  /** The configured one, or the one a failover took. */
  get generation(): number {
    return this.current;
  }

  valid(): boolean {
    return true;
  }

  // Without an arbiter the generation is the configured one for the whole run.
  protect(): void {}

  unprotect(): void {}

  settled(): Promise<void> {
    return Promise.resolve();
  }

  beginSession(): number {
    return this.current;
  }

  acquire(): Promise<number> {
    return Promise.resolve(this.current);
  }

  claim(from: number): Promise<number> {
    const next = from + 1;
    if (!Number.isSafeInteger(next)) return Promise.reject(new ArbiterError(C.ARBITER_BAD_OPTIONS, `no generation is left after ${from}: generations end at 2^53-1`));
    this.current = next;
    return Promise.resolve(next);
  }

  view(): ArbiterView {
    return { kind: 'none', holder: null, generation: null, protected: false, authority: true };
  }

  holder(): Promise<Holder | undefined> {
    return Promise.resolve(undefined);
  }

  stop(): Promise<void> {
    return Promise.resolve();
  }
}
