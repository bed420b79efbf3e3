/**
 * Lockout after repeated wrong tokens from one address. The control token
 * is the only thing between a network peer and "fail over now", so guessing
 * it must be slow: after `maxFailures` wrong tokens within `windowMs` an
 * address is refused for `lockoutMs`, and during that time its tokens are
 * not even compared (a right guess then tells it nothing). A right token
 * clears the address's record. The table of addresses is bounded: past
 * `maxTracked`, the oldest record goes.
 */

export interface ThrottleOptions {
  maxFailures: number;
  windowMs: number;
  lockoutMs: number;
  maxTracked: number;
  /** Milliseconds on any clock that does not go backwards. */
  now: () => number;
}

export const THROTTLE_DEFAULTS = { maxFailures: 5, windowMs: 60_000, lockoutMs: 60_000, maxTracked: 10_000 } as const;

interface Record {
  /** Times of the recent failures, oldest first (at most maxFailures). */
  failures: number[];
  lockedUntil: number;
}

export class FailureThrottle {
  private readonly records = new Map<string, Record>();

  constructor(private readonly options: ThrottleOptions) {}

  /** Milliseconds `key` stays locked out; 0 when it may try. */
  lockedFor(key: string): number {
    const r = this.records.get(key);
    if (r === undefined) return 0;
    const left = r.lockedUntil - this.options.now();
    return left > 0 ? left : 0;
  }

  /** A wrong token from `key`; true when this one starts a lockout. */
  fail(key: string): boolean {
    const { maxFailures, windowMs, lockoutMs, maxTracked, now } = this.options;
    const t = now();
    let r = this.records.get(key);
    if (r === undefined) {
      if (this.records.size >= maxTracked) this.records.delete(this.records.keys().next().value!);
      r = { failures: [], lockedUntil: 0 };
      this.records.set(key, r);
    }
    while (r.failures.length > 0 && r.failures[0] <= t - windowMs) r.failures.shift();
    r.failures.push(t);
    if (r.failures.length < maxFailures) return false;
    r.failures = [];
    r.lockedUntil = t + lockoutMs;
    return true;
  }

  /** The right token from `key`: forget its failures. */
  succeed(key: string): void {
    this.records.delete(key);
  }

  /** Addresses with a record (failures or a lockout). */
  get tracked(): number {
    return this.records.size;
  }
}
