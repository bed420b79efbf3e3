/**
 * The time source the failure detector runs on. Injected so the detector's
 * transition times can be tested exactly on virtual time, and so it reads a
 * monotonic clock in production (wall-clock steps must never kill a peer).
 */
export interface Clock {
  /** Monotonic milliseconds. */
  now(): number;
  /** Runs `fn` once after `ms`; returns a function that cancels it. */
  setTimer(ms: number, fn: () => void): () => void;
}

export const monotonicClock: Clock = {
  now: () => performance.now(),
  setTimer(ms, fn) {
    const t = setTimeout(fn, ms);
    return () => clearTimeout(t);
  },
};

/**
 * Virtual time for tests: nothing moves until advance(). Timers due at the
 * same instant run in the order they were set, each seeing now() equal to
 * its own due time.
 */
export class ManualClock implements Clock {
  private current = 0;
  private seq = 0;
  private readonly timers = new Map<number, { at: number; fn: () => void }>();

  now(): number {
    return this.current;
  }

  setTimer(ms: number, fn: () => void): () => void {
    const id = this.seq++;
    this.timers.set(id, { at: this.current + Math.max(0, ms), fn });
    return () => this.timers.delete(id);
  }

  /** Moves time forward by `ms`, running every timer that falls due on the way. */
  advance(ms: number): void {
    const end = this.current + ms;
    for (;;) {
      let nextId = -1;
      let nextAt = Infinity;
      for (const [id, t] of this.timers) if (t.at < nextAt) [nextId, nextAt] = [id, t.at];
      if (nextId < 0 || nextAt > end) break;
      const t = this.timers.get(nextId)!;
      this.timers.delete(nextId);
      // Never backwards: after a jump(), timers run late, at the jumped-to time.
      this.current = Math.max(this.current, nextAt);
      t.fn();
    }
    this.current = Math.max(this.current, end);
  }

  /** Moves time forward by `ms` without running timers, as a stalled process sees it; the next advance() runs them, late. */
  jump(ms: number): void {
    this.current += ms;
  }

  /** Timers still pending (tests check nothing leaks after stop()). */
  get pending(): number {
    return this.timers.size;
  }
}
