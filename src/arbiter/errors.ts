/**
 * Errors of the arbiter: its codes live in the one table in src/errors.ts;
 * this names the subset the arbiter raises.
 */
import { ErrorCodes, TandemError } from '../errors.js';

export const ArbiterErrorCodes = {
  /** No endpoint answered within the request timeout (each was tried). */
  ARBITER_UNREACHABLE: ErrorCodes.ARBITER_UNREACHABLE,
  /** An endpoint answered with something that is not what etcd's gateway sends (not JSON, a field out of range, too large). */
  ARBITER_BAD_RESPONSE: ErrorCodes.ARBITER_BAD_RESPONSE,
  /** etcd answered with an error (an HTTP status other than 200). */
  ARBITER_REFUSED: ErrorCodes.ARBITER_REFUSED,
  /** Another node holds the domain, its lease live: this one may not serve. */
  ARBITER_HELD: ErrorCodes.ARBITER_HELD,
  /** The domain last ran on another node, at a newer generation: this node's copy of the guest is not the latest. */
  ARBITER_STALE: ErrorCodes.ARBITER_STALE,
  /** Options out of range (endpoints, lease, timeouts, names). */
  ARBITER_BAD_OPTIONS: ErrorCodes.ARBITER_BAD_OPTIONS,
} as const;

export type ArbiterErrorCode = (typeof ArbiterErrorCodes)[keyof typeof ArbiterErrorCodes];

export class ArbiterError extends TandemError<ArbiterErrorCode> {
  override get name(): string {
    return 'ArbiterError';
  }
}

/** A refusal that may pass by itself (a live lease running out, an arbiter coming back): worth asking again. */
export function isTransient(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 4; e = e.cause, depth++) {
    if (e instanceof ArbiterError) return e.code === ArbiterErrorCodes.ARBITER_HELD || e.code === ArbiterErrorCodes.ARBITER_UNREACHABLE || e.code === ArbiterErrorCodes.ARBITER_REFUSED;
  }
  return false;
}
