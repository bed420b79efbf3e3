/**
 * Errors of the service front: its codes live in the one table in
 * src/errors.ts; this names the subset the front raises.
 */
import { ErrorCodes, TandemError } from '../errors.js';

export const FrontErrorCodes = {
  /** An option is out of range (a limit, an address). */
  FRONT_BAD_OPTIONS: ErrorCodes.FRONT_BAD_OPTIONS,
  /** The front could not listen on the service address. */
  FRONT_LISTEN_FAILED: ErrorCodes.FRONT_LISTEN_FAILED,
  /** Held output was discarded under the 'drop' teardown policy; the connection is cut. */
  FRONT_OUTPUT_DROPPED: ErrorCodes.FRONT_OUTPUT_DROPPED,
} as const;

export type FrontErrorCode = (typeof FrontErrorCodes)[keyof typeof FrontErrorCodes];

export class FrontError extends TandemError<FrontErrorCode> {
  override get name(): string {
    return 'FrontError';
  }
}
