/**
 * Who may read and who may control. Control always needs the token; reading
 * is open to loopback clients unless `loopbackRead` is false, and to remote
 * ones only when `allowRemoteRead` (otherwise the reader presents the token:
 * a Bearer header, or for a browser's WebSocket the TOKEN_PROTOCOL
 * subprotocol, since browsers cannot set headers on one).
 *
 * Tokens are compared as SHA-256 digests with timingSafeEqual: the digests
 * have a fixed length, so neither the comparison time nor an early length
 * check tells an attacker anything about the token. Wrong tokens from one
 * address lock it out for a while (FailureThrottle).
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { isLoopback } from '../util/address.js';
import { FailureThrottle, THROTTLE_DEFAULTS, type ThrottleOptions } from './throttle.js';

export interface AuthPolicy {
  /** The control token; without one, every control action is refused. */
  token: string | undefined;
  /** Remote clients may read without the token. */
  allowRemoteRead: boolean;
  /** Loopback clients may read without the token (default true). */
  loopbackRead?: boolean;
  /** Lockout after wrong tokens (defaults: THROTTLE_DEFAULTS, Date.now). */
  throttle?: Partial<ThrottleOptions>;
}

/**
 * A presented token, judged: `ok`; `missing` (none given); `wrong`;
 * `unconfigured` (this node has no token, so nothing passes); `locked`
 * (too many wrong ones from this address lately; not compared).
 */
export type TokenVerdict = 'ok' | 'missing' | 'wrong' | 'unconfigured' | 'locked';

/** The WebSocket subprotocol every client may offer; the monitor selects it. */
export const EVENTS_PROTOCOL = 'tandem.v1';
/** A subprotocol carrying the token, base64url-encoded: `tandem-token.<base64url>`. */
export const TOKEN_PROTOCOL_PREFIX = 'tandem-token.';

/** The token in a Sec-WebSocket-Protocol list, if one is offered. */
export function tokenFromProtocols(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  for (const p of header.split(',')) {
    const v = p.trim();
    if (v.startsWith(TOKEN_PROTOCOL_PREFIX)) return Buffer.from(v.slice(TOKEN_PROTOCOL_PREFIX.length), 'base64url').toString('utf8');
  }
  return undefined;
}

const digest = (text: string): Buffer => createHash('sha256').update(text, 'utf8').digest();

export class MonitorAuth {
  private readonly expected: Buffer | undefined;
  private readonly throttle: FailureThrottle;

  constructor(private readonly policy: AuthPolicy) {
    this.expected = policy.token === undefined ? undefined : digest(policy.token);
    this.throttle = new FailureThrottle({ ...THROTTLE_DEFAULTS, now: Date.now, ...policy.throttle });
  }

  get hasToken(): boolean {
    return this.expected !== undefined;
  }

  /** True only for the configured token; always false when none is configured. */
  checkToken(presented: unknown): boolean {
    if (this.expected === undefined || typeof presented !== 'string') return false;
    return timingSafeEqual(digest(presented), this.expected);
  }

  /**
   * Judges a token presented from `address` (the peer's IP), counting a
   * wrong one against it. Every place a token is presented goes through
   * here, so guesses over HTTP and WebSocket share one budget.
   */
  verify(presented: unknown, address: string | undefined): TokenVerdict {
    const key = addressKey(address);
    if (this.throttle.lockedFor(key) > 0) return 'locked';
    if (this.expected === undefined) return 'unconfigured';
    if (typeof presented !== 'string' || presented === '') return 'missing';
    if (this.checkToken(presented)) {
      this.throttle.succeed(key);
      return 'ok';
    }
    this.throttle.fail(key);
    return 'wrong';
  }

  /** Milliseconds before `address` may present a token again (0: now). */
  lockedFor(address: string | undefined): number {
    return this.throttle.lockedFor(addressKey(address));
  }

  /** May this client read events, status and metrics? A token, if one is needed, is verified (and counted). */
  readAccess(remoteAddress: string | undefined, presented: unknown): 'ok' | 'denied' | 'locked' {
    if (this.policy.allowRemoteRead || ((this.policy.loopbackRead ?? true) && isLoopback(remoteAddress))) return 'ok';
    const v = this.verify(presented, remoteAddress);
    return v === 'ok' ? 'ok' : v === 'locked' ? 'locked' : 'denied';
  }

  /** readAccess() is 'ok'. */
  mayRead(remoteAddress: string | undefined, presented: unknown): boolean {
    return this.readAccess(remoteAddress, presented) === 'ok';
  }
}

/** One record per host, whatever the port or IPv4-mapped spelling. */
function addressKey(address: string | undefined): string {
  if (address === undefined) return 'unknown';
  return address.startsWith('::ffff:') ? address.slice(7) : address;
}

/** The token from an `Authorization: Bearer TOKEN` header, if any. */
export function bearer(header: string | undefined): string | undefined {
  const m = header === undefined ? null : /^Bearer\s+(\S+)\s*$/i.exec(header);
  return m ? m[1] : undefined;
}
