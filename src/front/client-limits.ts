/**
 * How many clients a front serves and when an idle one gives up its slot,
 * for both fronts (Remus's ServiceFront and the ColoFront): the options,
 * their defaults and bounds, and the counts a front reports.
 *
 * The policy, as Redis's `maxclients`/`timeout` and nginx's reuse of idle
 * keep-alive connections have it:
 *
 *   - at most `maxConnections` clients; one more is refused with Redis's
 *     `-ERR max number of clients reached` ...
 *   - ... unless a client has been idle at least `evictIdleMs`: then the one
 *     idle longest is closed and the newcomer takes its slot. So idle
 *     connections, however many, never keep a client out for longer than
 *     that; a client that is using its connection is never touched.
 *   - `idleTimeoutMs` (0: off, the default, as Redis's `timeout 0`) closes a
 *     client idle that long even when slots are free.
 *
 * Idle means no byte either way and nothing owed to it: a client with a
 * reply held for a commit, or released and not yet taken by its socket, is
 * never idle (output commit must not lose a reply it already decided to
 * give). Closing an idle client is a plain close (FIN), as Redis's timeout:
 * there is no reply it waits for that it could mistake the close for.
 */
import { FrontError, FrontErrorCodes } from './errors.js';

export interface ClientLimitOptions {
  /** Client connections at once (default 1000). */
  maxConnections?: number;
  /** At the limit, a newcomer evicts the client idle longest if it has been idle this long (default 10 s; 0: any idle client). */
  evictIdleMs?: number;
  /** A client idle this long is closed even below the limit; 0 turns it off (the default). */
  idleTimeoutMs?: number;
}

export type ClientLimits = Required<ClientLimitOptions>;

export const DEFAULT_FRONT_MAX_CONNECTIONS = 1000;
/**
 * Long enough that a client between two commands of a session, or waiting
 * on a command the guest takes seconds over, is not taken for idle; short
 * enough that a flood of idle connections holds a newcomer off for seconds,
 * not for ever.
 */
export const DEFAULT_FRONT_EVICT_IDLE_MS = 10_000;
/** A week: beyond it a timeout is as good as none, and the number stays far from timer limits. */
export const MAX_FRONT_IDLE_MS = 7 * 24 * 3600 * 1000;

/** The limits with their defaults, or FRONT_BAD_OPTIONS saying which is out of range. */
export function clientLimits(options: ClientLimitOptions, maxConnectionsCap: number): ClientLimits {
  const limits: ClientLimits = {
    maxConnections: options.maxConnections ?? DEFAULT_FRONT_MAX_CONNECTIONS,
    evictIdleMs: options.evictIdleMs ?? DEFAULT_FRONT_EVICT_IDLE_MS,
    idleTimeoutMs: options.idleTimeoutMs ?? 0,
  };
  const check = (name: keyof ClientLimits, min: number, max: number): void => {
    const v = limits[name];
    if (!Number.isInteger(v) || v < min || v > max) throw new FrontError(FrontErrorCodes.FRONT_BAD_OPTIONS, `${name} must be an integer in ${min}..${max}, got ${v}`);
  };
  check('maxConnections', 1, maxConnectionsCap);
  check('evictIdleMs', 0, MAX_FRONT_IDLE_MS);
  check('idleTimeoutMs', 0, MAX_FRONT_IDLE_MS);
  return limits;
}

/**
 * How often the idle timeout is looked at: a tenth of it, so a client is
 * closed at most 10% late, but not more than once a second nor more often
 * than every 10 ms (as Redis's clientsCron, a second's precision is plenty).
 */
export const idleSweepMs = (idleTimeoutMs: number): number => Math.min(1000, Math.max(10, Math.floor(idleTimeoutMs / 10)));

/** What a front reports of its client slots (the monitor's service-client metrics read it). */
export interface FrontClientStats {
  connections: number;
  maxConnections: number;
  accepted: number;
  /** Newcomers refused at the limit: no client was idle long enough to give up its slot. */
  refused: number;
  /** Idle clients closed to admit a newcomer. */
  evicted: number;
  /** Clients closed by the idle timeout. */
  timedOut: number;
}

/** What a front logs (through a BurstLog, so a flood costs a line per window). */
export type LimitEvent = 'refused' | 'evicted' | 'timed-out';

/** The summary line of a window of limit events. */
export function summarizeLimitEvents(what: string, max: number): (counts: Partial<Record<LimitEvent, number>>, windowMs: number) => string {
  return (counts, windowMs) => {
    const parts: string[] = [];
    if (counts.evicted) parts.push(`${counts.evicted} idle clients evicted for new ones`);
    if (counts['timed-out']) parts.push(`${counts['timed-out']} idle clients timed out`);
    if (counts.refused) parts.push(`${counts.refused} clients refused (none idle long enough)`);
    return `${what} (max_clients ${max}), in the last ${Math.round(windowMs / 1000)} s: ${parts.join(', ')}`;
  };
}
