/**
 * One errors module with stable codes. Code strings are API: operators grep
 * logs for them and tests assert on them, so never rename one; add new ones.
 */

export const ErrorCodes = {
  // Stream framing and headers
  STREAM_BAD_MARKER: 'ERR_STREAM_BAD_MARKER',
  STREAM_BAD_IDENT: 'ERR_STREAM_BAD_IDENT',
  STREAM_BAD_VERSION: 'ERR_STREAM_BAD_VERSION',
  STREAM_BAD_OPTIONS: 'ERR_STREAM_BAD_OPTIONS',
  STREAM_RESERVED_NONZERO: 'ERR_STREAM_RESERVED_NONZERO',
  STREAM_BAD_DOMAIN_TYPE: 'ERR_STREAM_BAD_DOMAIN_TYPE',
  STREAM_BAD_PAGE_SHIFT: 'ERR_STREAM_BAD_PAGE_SHIFT',
  STREAM_UNKNOWN_FORMAT: 'ERR_STREAM_UNKNOWN_FORMAT',
  STREAM_TRUNCATED: 'ERR_STREAM_TRUNCATED',
  STREAM_TRAILING_DATA: 'ERR_STREAM_TRAILING_DATA',
  STREAM_FAILED: 'ERR_STREAM_FAILED',
  // Records
  RECORD_UNKNOWN_MANDATORY: 'ERR_RECORD_UNKNOWN_MANDATORY',
  RECORD_TOO_LARGE: 'ERR_RECORD_TOO_LARGE',
  RECORD_BAD_LENGTH: 'ERR_RECORD_BAD_LENGTH',
  RECORD_BAD_PADDING: 'ERR_RECORD_BAD_PADDING',
  RECORD_BAD_FIELD: 'ERR_RECORD_BAD_FIELD',
  RECORD_RESERVED_NONZERO: 'ERR_RECORD_RESERVED_NONZERO',
  RECORD_WRONG_DOMAIN_TYPE: 'ERR_RECORD_WRONG_DOMAIN_TYPE',
  RECORD_BAD_PAGE_TYPE: 'ERR_RECORD_BAD_PAGE_TYPE',
  RECORD_OUT_OF_ORDER: 'ERR_RECORD_OUT_OF_ORDER',
  RECORD_NOT_IN_VERSION: 'ERR_RECORD_NOT_IN_VERSION',
  RECORD_DEPRECATED: 'ERR_RECORD_DEPRECATED',
  STREAM_NOT_CHECKPOINTED: 'ERR_STREAM_NOT_CHECKPOINTED',
  // Replication
  REPLICA_MISMATCH: 'ERR_REPLICA_MISMATCH',
  LINK_FAILED: 'ERR_LINK_FAILED',
  NOTHING_TO_FAIL_OVER: 'ERR_NOTHING_TO_FAIL_OVER',
  FENCED: 'ERR_FENCED',
  EPOCH_REFUSED: 'ERR_EPOCH_REFUSED',
  // Sim guest service (src/guest)
  GUEST_PROTOCOL_MULTIBULK_LENGTH: 'ERR_GUEST_PROTOCOL_MULTIBULK_LENGTH',
  GUEST_PROTOCOL_BULK_LENGTH: 'ERR_GUEST_PROTOCOL_BULK_LENGTH',
  GUEST_PROTOCOL_EXPECTED_BULK: 'ERR_GUEST_PROTOCOL_EXPECTED_BULK',
  GUEST_PROTOCOL_BULK_CRLF: 'ERR_GUEST_PROTOCOL_BULK_CRLF',
  GUEST_PROTOCOL_INLINE_TOO_BIG: 'ERR_GUEST_PROTOCOL_INLINE_TOO_BIG',
  GUEST_PROTOCOL_UNBALANCED_QUOTES: 'ERR_GUEST_PROTOCOL_UNBALANCED_QUOTES',
  GUEST_PROTOCOL_REQUEST_TOO_BIG: 'ERR_GUEST_PROTOCOL_REQUEST_TOO_BIG',
  GUEST_STORE_NOT_FOUND: 'ERR_GUEST_STORE_NOT_FOUND',
  GUEST_STORE_BAD_VERSION: 'ERR_GUEST_STORE_BAD_VERSION',
  GUEST_STORE_CORRUPT: 'ERR_GUEST_STORE_CORRUPT',
  GUEST_STORE_BAD_OPTIONS: 'ERR_GUEST_STORE_BAD_OPTIONS',
  GUEST_STORE_OOM: 'ERR_GUEST_STORE_OOM',
  GUEST_SERVER_BAD_OPTIONS: 'ERR_GUEST_SERVER_BAD_OPTIONS',
  GUEST_SERVER_COMMAND_FAILED: 'ERR_GUEST_SERVER_COMMAND_FAILED',
  // Service front (src/front)
  FRONT_BAD_OPTIONS: 'ERR_FRONT_BAD_OPTIONS',
  FRONT_LISTEN_FAILED: 'ERR_FRONT_LISTEN_FAILED',
  FRONT_OUTPUT_DROPPED: 'ERR_FRONT_OUTPUT_DROPPED',
  // Heartbeat channel (src/heartbeat)
  HEARTBEAT_BAD_MAGIC: 'ERR_HEARTBEAT_BAD_MAGIC',
  HEARTBEAT_BAD_VERSION: 'ERR_HEARTBEAT_BAD_VERSION',
  HEARTBEAT_BAD_TYPE: 'ERR_HEARTBEAT_BAD_TYPE',
  HEARTBEAT_BAD_ROLE: 'ERR_HEARTBEAT_BAD_ROLE',
  HEARTBEAT_RESERVED_NONZERO: 'ERR_HEARTBEAT_RESERVED_NONZERO',
  HEARTBEAT_BAD_FIELD: 'ERR_HEARTBEAT_BAD_FIELD',
  HEARTBEAT_DECODER_STOPPED: 'ERR_HEARTBEAT_DECODER_STOPPED',
  HEARTBEAT_BAD_OPTIONS: 'ERR_HEARTBEAT_BAD_OPTIONS',
  HEARTBEAT_LISTEN_FAILED: 'ERR_HEARTBEAT_LISTEN_FAILED',
  // Monitoring and control (src/monitor)
  MONITOR_BAD_OPTIONS: 'ERR_MONITOR_BAD_OPTIONS',
  MONITOR_LISTEN_FAILED: 'ERR_MONITOR_LISTEN_FAILED',
  MONITOR_BAD_MESSAGE: 'ERR_MONITOR_BAD_MESSAGE',
  MONITOR_UNAUTHORIZED: 'ERR_MONITOR_UNAUTHORIZED',
  MONITOR_UNSUPPORTED: 'ERR_MONITOR_UNSUPPORTED',
  MONITOR_ACTION_FAILED: 'ERR_MONITOR_ACTION_FAILED',
  MONITOR_BAD_EVENT: 'ERR_MONITOR_BAD_EVENT',
  MONITOR_UNREACHABLE: 'ERR_MONITOR_UNREACHABLE',
  // Configuration and command line
  CONFIG_INVALID: 'ERR_CONFIG_INVALID',
} as const;

export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes];

export class TandemError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }

  override get name(): string {
    return 'TandemError';
  }
}

export interface StreamErrorContext {
  /** Byte offset in the stream of the header or record at fault. */
  offset: number;
  /** Record name (e.g. `libxc PAGE_DATA`) or header name; absent if unknown. */
  record?: string;
}

/**
 * A malformed migration stream. Carries the byte offset and the record so an
 * operator can open the file in a hex editor at the right place.
 */
export class StreamError extends TandemError {
  readonly offset: number;
  readonly record: string | undefined;

  constructor(code: ErrorCode, detail: string, ctx: StreamErrorContext, options?: { cause?: unknown }) {
    const where = ctx.record === undefined ? `offset ${ctx.offset}` : `${ctx.record} at offset ${ctx.offset}`;
    super(code, `${where}: ${detail}`, options);
    this.offset = ctx.offset;
    this.record = ctx.record;
  }

  override get name(): string {
    return 'StreamError';
  }
}

export class ConfigError extends TandemError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCodes.CONFIG_INVALID, message, options);
  }

  override get name(): string {
    return 'ConfigError';
  }
}
