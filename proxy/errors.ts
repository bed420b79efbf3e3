/**
 * Errors of the COLO proxy: its codes live in the one table in
 * src/errors.ts; this names the subset the proxy raises.
 */
import { ErrorCodes, TandemError } from '../src/errors.js';

export const ProxyErrorCodes = {
  /** A record length of 0, or a vnet header length beyond the record. */
  PROXY_FRAME_BAD_LENGTH: ErrorCodes.PROXY_FRAME_BAD_LENGTH,
  /** A record longer than the limit (69,632 bytes, QEMU's NET_BUFSIZE). */
  PROXY_FRAME_TOO_LARGE: ErrorCodes.PROXY_FRAME_TOO_LARGE,
  /** The input ended inside a record. */
  PROXY_FRAME_TRUNCATED: ErrorCodes.PROXY_FRAME_TRUNCATED,
  /** The decoder already failed on this connection and accepts nothing more. */
  PROXY_DECODER_STOPPED: ErrorCodes.PROXY_DECODER_STOPPED,
  /** An Ethernet frame whose headers contradict their own lengths. */
  PROXY_PACKET_MALFORMED: ErrorCodes.PROXY_PACKET_MALFORMED,
  /** A notify message that is not one of the protocol's words. */
  PROXY_NOTIFY_BAD_MESSAGE: ErrorCodes.PROXY_NOTIFY_BAD_MESSAGE,
  /** An option out of range (a timeout, a limit, an address). */
  PROXY_BAD_OPTIONS: ErrorCodes.PROXY_BAD_OPTIONS,
  /** A listening socket could not be bound. */
  PROXY_LISTEN_FAILED: ErrorCodes.PROXY_LISTEN_FAILED,
  /** A frame was dropped because a queue or the connection table was full. */
  PROXY_FRAME_DROPPED: ErrorCodes.PROXY_FRAME_DROPPED,
} as const;

export type ProxyErrorCode = (typeof ProxyErrorCodes)[keyof typeof ProxyErrorCodes];

export class ProxyError extends TandemError<ProxyErrorCode> {
  /** Byte offset in the connection's input of the record at fault; absent outside decoding. */
  readonly offset: number | undefined;

  constructor(code: ProxyErrorCode, message: string, options?: { cause?: unknown; offset?: number }) {
    super(code, options?.offset === undefined ? message : `record at offset ${options.offset}: ${message}`, options);
    this.offset = options?.offset;
  }

  override get name(): string {
    return 'ProxyError';
  }
}
