/**
 * The arbiter as a checkpoint device of the primary: it tells the arbiter
 * when the node is protected and when it is not, at the points of the epoch
 * cycle where that becomes true, so the epoch loop knows nothing of it.
 *
 * - setup: a change of the record still in flight (the previous session's
 *   unprotect) is given one attempt to finish, so the new stream carries
 *   the generation the arbiter holds (the engine reads `generation` after
 *   setup).
 * - commit, first of a session: the replica holds this generation's
 *   checkpoint and the other devices release only acked output since their
 *   setup, so the record may say "protected" (in the background: an epoch
 *   never waits for etcd).
 * - teardown: protection is gone; output no replica holds may have to
 *   leave, which the arbiter allows only after it moved the record to the
 *   next generation.
 */
import type { CheckpointDevice } from '../checkpoint/devices.js';
import type { Arbiter } from './arbiter.js';

export class ArbiterDevice implements CheckpointDevice {
  readonly name = 'arbiter';
  /** The generation this session's stream carries (undefined: no session, or already recorded). */
  private pending: number | undefined;

  constructor(private readonly arbiter: Pick<Arbiter, 'generation' | 'protect' | 'unprotect' | 'settled' | 'beginSession'>) {}

  async setup(): Promise<void> {
    await this.arbiter.settled();
    this.pending = this.arbiter.beginSession();
  }

  commit(): void {
    if (this.pending === undefined) return;
    const generation = this.pending;
    this.pending = undefined;
    this.arbiter.protect(generation);
  }

  teardown(): void {
    this.pending = undefined;
    this.arbiter.unprotect();
  }
}
