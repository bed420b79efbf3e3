/**
 * Errors of the checkpoint engine: its codes live in the one table in
 * src/errors.ts; this names the subset the engine raises. Each ends a
 * protection session; the engine then starts over with a fresh pre-copy.
 */
import { ErrorCodes, TandemError } from '../errors.js';

export const CheckpointErrorCodes = {
  /** The secondary acked an epoch with a refusal (over its buffer limit, or a stream it could not apply). */
  EPOCH_REFUSED: ErrorCodes.EPOCH_REFUSED,
  /** No ack for an epoch within the ack timeout. */
  ACK_TIMEOUT: ErrorCodes.ACK_TIMEOUT,
  /** The precopy policy aborted the live pre-copy. */
  PRECOPY_ABORTED: ErrorCodes.PRECOPY_ABORTED,
  /** The COLO secondary's back-channel handshake did not go as COLO's does. */
  COLO_HANDSHAKE: ErrorCodes.COLO_HANDSHAKE,
  /** A checkpoint device's hook failed; the message names the device and the hook. */
  CHECKPOINT_DEVICE_FAILED: ErrorCodes.CHECKPOINT_DEVICE_FAILED,
  /** A session was driven out of order (a checkpoint before the pre-copy, after the end). */
  SESSION_STATE: ErrorCodes.SESSION_STATE,
  /** A checkpoint mode this run does not allow (colo in a Remus run), or a bad interval. */
  MODE_UNAVAILABLE: ErrorCodes.MODE_UNAVAILABLE,
} as const;

export type CheckpointErrorCode = (typeof CheckpointErrorCodes)[keyof typeof CheckpointErrorCodes];

export class CheckpointError extends TandemError<CheckpointErrorCode> {
  override get name(): string {
    return 'CheckpointError';
  }
}

/** The secondary refused epoch `epoch` with ack status `status`. */
export class EpochRefusedError extends CheckpointError {
  constructor(
    message: string,
    readonly epoch: number,
    readonly status: number,
  ) {
    super(CheckpointErrorCodes.EPOCH_REFUSED, message);
  }

  override get name(): string {
    return 'EpochRefusedError';
  }
}
