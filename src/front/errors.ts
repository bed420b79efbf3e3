/**
 * Errors of the service front. Kept here (not in src/errors.ts, which another
 * part of the tree owns) with stable codes in the same ERR_* style, so they
 * can be merged into ErrorCodes later without changing what callers see.
 */
export const FrontErrorCodes = {
  /** An option is out of range (a limit, an address). */
  FRONT_BAD_OPTIONS: 'ERR_FRONT_BAD_OPTIONS',
  /** The front could not listen on the service address. */
  FRONT_LISTEN_FAILED: 'ERR_FRONT_LISTEN_FAILED',
  /** Held output was discarded under the 'drop' teardown policy; the connection is cut. */
  FRONT_OUTPUT_DROPPED: 'ERR_FRONT_OUTPUT_DROPPED',
} as const;

export type FrontErrorCode = (typeof FrontErrorCodes)[keyof typeof FrontErrorCodes];

export class FrontError extends Error {
  readonly code: FrontErrorCode;

  constructor(code: FrontErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }

  override get name(): string {
    return 'FrontError';
  }
}
