/**
 * Errors of the monitor: its codes live in the one table in src/errors.ts;
 * this names the subset the monitor raises. Each code is also what a
 * WebSocket client gets back in an error reply, so clients can branch on it.
 */
import { ErrorCodes, TandemError } from '../errors.js';

export const MonitorErrorCodes = {
  /** An option is out of range, or a non-loopback bind has no token. */
  MONITOR_BAD_OPTIONS: ErrorCodes.MONITOR_BAD_OPTIONS,
  /** The monitor could not listen on its address. */
  MONITOR_LISTEN_FAILED: ErrorCodes.MONITOR_LISTEN_FAILED,
  /** A client message is not JSON, too large, or not a known request shape. */
  MONITOR_BAD_MESSAGE: ErrorCodes.MONITOR_BAD_MESSAGE,
  /** A control action without the right token, or a read the policy refuses. */
  MONITOR_UNAUTHORIZED: ErrorCodes.MONITOR_UNAUTHORIZED,
  /** Too many wrong tokens from this address lately: refused without looking at the token. */
  MONITOR_RATE_LIMITED: ErrorCodes.MONITOR_RATE_LIMITED,
  /** This process cannot do that action (e.g. fail over from the primary). */
  MONITOR_UNSUPPORTED: ErrorCodes.MONITOR_UNSUPPORTED,
  /** The node offers the action but refuses it in its present state (e.g. a switchover with no current replica); nothing was done. */
  MONITOR_REFUSED: ErrorCodes.MONITOR_REFUSED,
  /** The action was accepted but failed while running. */
  MONITOR_ACTION_FAILED: ErrorCodes.MONITOR_ACTION_FAILED,
  /** An event does not match the published schema (a client-side check). */
  MONITOR_BAD_EVENT: ErrorCodes.MONITOR_BAD_EVENT,
  /** `tandem watch` / `status` could not reach a monitor. */
  MONITOR_UNREACHABLE: ErrorCodes.MONITOR_UNREACHABLE,
  /** A request names a domain this monitor does not show (the message lists those it does). */
  MONITOR_UNKNOWN_DOMAIN: ErrorCodes.MONITOR_UNKNOWN_DOMAIN,
  /** A request without `domain` to a monitor showing several: which one is meant cannot be guessed. */
  MONITOR_DOMAIN_REQUIRED: ErrorCodes.MONITOR_DOMAIN_REQUIRED,
  /** A source attached under a domain name another source already has. */
  MONITOR_DOMAIN_ATTACHED: ErrorCodes.MONITOR_DOMAIN_ATTACHED,
} as const;

export type MonitorErrorCode = (typeof MonitorErrorCodes)[keyof typeof MonitorErrorCodes];

export class MonitorError extends TandemError<MonitorErrorCode> {
  override get name(): string {
    return 'MonitorError';
  }
}
