/**
 * Errors of the guest NIC wire format (src/net/wire.ts): its codes live in
 * the one table in src/errors.ts; this names the subset it raises.
 */
import { ErrorCodes, TandemError } from '../errors.js';

export const NetErrorCodes = {
  /**
   * A frame that is not an IPv4 TCP segment, or whose lengths do not fit its
   * bytes. One code for all: the error's `kind` says which, and the callers
   * (the guest's stack, the COLO front) count and drop such frames alike.
   */
  NET_BAD_FRAME: ErrorCodes.NET_BAD_FRAME,
} as const;

export type NetErrorCode = (typeof NetErrorCodes)[keyof typeof NetErrorCodes];

export type WireErrorKind = 'short' | 'not-ipv4-tcp' | 'bad-length' | 'fragment';

export class WireError extends TandemError<NetErrorCode> {

  constructor(
    readonly kind: WireErrorKind,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(NetErrorCodes.NET_BAD_FRAME, message, options);
  }

  override get name(): string {
    return 'WireError';
  }
}
