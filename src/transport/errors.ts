/**
 * Errors of the channels between the hosts: their codes live in the one
 * table in src/errors.ts; this names the subset the transport and the
 * replication link raise.
 */
import { ErrorCodes, TandemError } from '../errors.js';

export const TransportErrorCodes = {
  /** The peer could not be reached (refused, unreachable, reset while connecting). */
  TRANSPORT_CONNECT_FAILED: ErrorCodes.TRANSPORT_CONNECT_FAILED,
  /** The peer did not answer within the connect timeout. */
  TRANSPORT_CONNECT_TIMEOUT: ErrorCodes.TRANSPORT_CONNECT_TIMEOUT,
  /** A listening address could not be bound. */
  TRANSPORT_LISTEN_FAILED: ErrorCodes.TRANSPORT_LISTEN_FAILED,
  /**
   * A TLS handshake failed or its certificate chain was refused: no
   * certificate, another CA, expired, a protocol below TLS 1.3, plain TCP,
   * no handshake within the timeout, or the peer refused ours.
   */
  TRANSPORT_TLS_REFUSED: ErrorCodes.TRANSPORT_TLS_REFUSED,
  /** The peer's certificate chains to the CA but names another node than the configured peer. */
  TRANSPORT_PEER_MISMATCH: ErrorCodes.TRANSPORT_PEER_MISMATCH,
  /** What answered at the secondary's address speaks another protocol (HTTP, SSH, TLS to a plain-TCP primary, ...). */
  TRANSPORT_PEER_NOT_TANDEM: ErrorCodes.TRANSPORT_PEER_NOT_TANDEM,
  /** `tandem certs init` could not write its files (one exists already, the directory is not writable). */
  CERTS_INIT_FAILED: ErrorCodes.CERTS_INIT_FAILED,
  /** The replication link failed or closed, or the secondary broke its back-channel protocol. */
  LINK_FAILED: ErrorCodes.LINK_FAILED,
  /** The COLO net link failed or its peer broke the framing. */
  COLO_NET_LINK_FAILED: ErrorCodes.COLO_NET_LINK_FAILED,
} as const;

export type TransportErrorCode = (typeof TransportErrorCodes)[keyof typeof TransportErrorCodes];

export class TransportError extends TandemError<TransportErrorCode> {
  override get name(): string {
    return 'TransportError';
  }
}
