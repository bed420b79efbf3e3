/**
 * Errors raised by the sim guest's key-value service, with stable codes.
 *
 * The codes live in the one table in src/errors.ts (they are API: never
 * rename one, add new ones); this names the subset the guest raises.
 */
import { ErrorCodes, TandemError } from '../errors.js';

export const GuestErrorCodes = {
  // RESP request parsing: the connection that sent the bytes is closed.
  PROTOCOL_MULTIBULK_LENGTH: ErrorCodes.GUEST_PROTOCOL_MULTIBULK_LENGTH,
  PROTOCOL_BULK_LENGTH: ErrorCodes.GUEST_PROTOCOL_BULK_LENGTH,
  PROTOCOL_EXPECTED_BULK: ErrorCodes.GUEST_PROTOCOL_EXPECTED_BULK,
  PROTOCOL_BULK_CRLF: ErrorCodes.GUEST_PROTOCOL_BULK_CRLF,
  PROTOCOL_INLINE_TOO_BIG: ErrorCodes.GUEST_PROTOCOL_INLINE_TOO_BIG,
  PROTOCOL_UNBALANCED_QUOTES: ErrorCodes.GUEST_PROTOCOL_UNBALANCED_QUOTES,
  PROTOCOL_REQUEST_TOO_BIG: ErrorCodes.GUEST_PROTOCOL_REQUEST_TOO_BIG,
  // The store in guest RAM
  STORE_NOT_FOUND: ErrorCodes.GUEST_STORE_NOT_FOUND,
  STORE_BAD_VERSION: ErrorCodes.GUEST_STORE_BAD_VERSION,
  STORE_CORRUPT: ErrorCodes.GUEST_STORE_CORRUPT,
  STORE_BAD_OPTIONS: ErrorCodes.GUEST_STORE_BAD_OPTIONS,
  STORE_OOM: ErrorCodes.GUEST_STORE_OOM,
  // The TCP front of the service
  SERVER_BAD_OPTIONS: ErrorCodes.GUEST_SERVER_BAD_OPTIONS,
  SERVER_COMMAND_FAILED: ErrorCodes.GUEST_SERVER_COMMAND_FAILED,
  // The append-only file on the guest's disk
  AOF_NOT_FOUND: ErrorCodes.GUEST_AOF_NOT_FOUND,
  AOF_CORRUPT: ErrorCodes.GUEST_AOF_CORRUPT,
  AOF_FULL: ErrorCodes.GUEST_AOF_FULL,
} as const;

export type GuestErrorCode = (typeof GuestErrorCodes)[keyof typeof GuestErrorCodes];

export class GuestError extends TandemError<GuestErrorCode> {
  override get name(): string {
    return 'GuestError';
  }
}

/**
 * Malformed RESP input. `message` is the text Redis would send after `-ERR `
 * (`Protocol error: ...`), so the server can reply with it verbatim.
 */
export class RespProtocolError extends GuestError {
  /** Byte offset in the connection's input of the byte at fault. */
  readonly offset: number;

  constructor(code: GuestErrorCode, message: string, offset: number) {
    super(code, message);
    this.offset = offset;
  }

  override get name(): string {
    return 'RespProtocolError';
  }
}

/**
 * The store's heap (or its key slots) cannot hold what a command needs. It is
 * thrown before the command has written anything, so the store is unchanged.
 */
export class StoreFullError extends GuestError {
  constructor(detail: string) {
    super(GuestErrorCodes.STORE_OOM, `guest store out of memory: ${detail}`);
  }

  override get name(): string {
    return 'StoreFullError';
  }
}
