/**
 * Errors of the heartbeat channel: its codes live in the one table in
 * src/errors.ts; this names the subset the channel raises.
 */
import { ErrorCodes, TandemError } from '../errors.js';

export const HeartbeatErrorCodes = {
  /** The frame does not start with the heartbeat magic: not our protocol. */
  HEARTBEAT_BAD_MAGIC: ErrorCodes.HEARTBEAT_BAD_MAGIC,
  /** A frame version this build does not speak. */
  HEARTBEAT_BAD_VERSION: ErrorCodes.HEARTBEAT_BAD_VERSION,
  /** Unknown message type. */
  HEARTBEAT_BAD_TYPE: ErrorCodes.HEARTBEAT_BAD_TYPE,
  /** Unknown sender role. */
  HEARTBEAT_BAD_ROLE: ErrorCodes.HEARTBEAT_BAD_ROLE,
  /** A reserved field is not zero. */
  HEARTBEAT_RESERVED_NONZERO: ErrorCodes.HEARTBEAT_RESERVED_NONZERO,
  /** A field is out of range (a u64 beyond 2^53, a zero incarnation). */
  HEARTBEAT_BAD_FIELD: ErrorCodes.HEARTBEAT_BAD_FIELD,
  /** The decoder already failed on this connection and accepts nothing more. */
  HEARTBEAT_DECODER_STOPPED: ErrorCodes.HEARTBEAT_DECODER_STOPPED,
  /** Options out of range (interval, timeout, generation, address). */
  HEARTBEAT_BAD_OPTIONS: ErrorCodes.HEARTBEAT_BAD_OPTIONS,
  /** The listening side could not bind its heartbeat port. */
  HEARTBEAT_LISTEN_FAILED: ErrorCodes.HEARTBEAT_LISTEN_FAILED,
  /** No generation is left to take (the highest heard is 2^53-1): promoting would overflow the field. */
  HEARTBEAT_GENERATIONS_EXHAUSTED: ErrorCodes.HEARTBEAT_GENERATIONS_EXHAUSTED,
} as const;

export type HeartbeatErrorCode = (typeof HeartbeatErrorCodes)[keyof typeof HeartbeatErrorCodes];

export class HeartbeatError extends TandemError<HeartbeatErrorCode> {
  /** Byte offset in the connection's input of the frame at fault; absent outside decoding. */
  readonly offset: number | undefined;

  constructor(code: HeartbeatErrorCode, message: string, options?: { cause?: unknown; offset?: number }) {
    super(code, options?.offset === undefined ? message : `heartbeat frame at offset ${options.offset}: ${message}`, options);
    this.offset = options?.offset;
  }

  override get name(): string {
    return 'HeartbeatError';
  }
}
