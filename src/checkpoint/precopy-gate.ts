/**
 * Pre-copies of one process take turns. Every domain a process runs shares
 * its one event loop; a pre-copy sends the whole guest as fast as the link
 * takes it, so several at once (every domain starting, or every one
 * re-protecting after its secondary came back) share the loop between them
 * and with the heartbeats of every other domain, and none finishes sooner.
 * Worse, a heartbeat starved long enough ends a session, whose next attempt
 * starts its pre-copy over: many domains can keep each other from ever
 * being protected.
 *
 * A turn is bounded, though: a pre-copy that has held it `turnMs` (its
 * secondary slow, or stalled behind a partition) lets the next one start
 * beside it, so one domain's trouble never keeps another unprotected.
 */
export interface PrecopyTurns {
  /**
   * Runs `precopy` once it is this caller's turn (at once if nobody else's
   * is running); `onWait` is told, before run() returns, when it must wait.
   * An abort while waiting rejects with the signal's reason.
   */
  run<T>(precopy: () => Promise<T>, options?: { signal?: AbortSignal; onWait?: () => void }): Promise<T>;
}

/** The default bound on one pre-copy's turn: a 4 GiB guest at a few hundred MB/s. */
export const DEFAULT_TURN_MS = 10_000;

export class PrecopyGate implements PrecopyTurns {
  private running = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(
    private readonly turnMs = DEFAULT_TURN_MS,
    private readonly concurrency = 1,
  ) {}

  /** Pre-copies waiting for their turn. */
  get queued(): number {
    return this.waiting.length;
  }

  async run<T>(precopy: () => Promise<T>, options: { signal?: AbortSignal; onWait?: () => void } = {}): Promise<T> {
    await this.turn(options.signal, options.onWait);
    let released = false;
    const release = (): void => {
      if (released) return;
      released = true;
      clearTimeout(timer);
      this.running--;
      this.waiting.shift()?.();
    };
    // Past its turn, the slot goes to the next one; the pre-copy itself goes on.
    const timer = setTimeout(release, this.turnMs);
    timer.unref();
    try {
      return await precopy();
    } finally {
      release();
    }
  }

  private turn(signal: AbortSignal | undefined, onWait: (() => void) | undefined): Promise<void> {
    if (signal?.aborted) return Promise.reject(signal.reason as Error);
    if (this.running < this.concurrency) {
      this.running++;
      return Promise.resolve();
    }
    onWait?.();
    return new Promise<void>((resolve, reject) => {
      const go = (): void => {
        signal?.removeEventListener('abort', abort);
        this.running++;
        resolve();
      };
      const abort = (): void => {
        const i = this.waiting.indexOf(go);
        if (i >= 0) this.waiting.splice(i, 1);
        reject(signal!.reason as Error);
      };
      signal?.addEventListener('abort', abort, { once: true });
      this.waiting.push(go);
    });
  }
}
