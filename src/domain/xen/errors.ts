/**
 * Errors of the Xen binding's two wire protocols (xenstore, and the callback
 * protocol of libxl-save-helper): their codes live in the one table in
 * src/errors.ts; this names the subsets each raises.
 */
import { ErrorCodes, TandemError } from '../../errors.js';

export const XenstoreErrorCodes = {
  /** A message from xenstored that breaks the protocol (unknown type, a payload of the wrong shape, a reply nobody asked for). */
  XENSTORE_BAD_MESSAGE: ErrorCodes.XENSTORE_BAD_MESSAGE,
  /** A header announcing more than XENSTORE_PAYLOAD_MAX (4096) bytes, or a request that would. */
  XENSTORE_TOO_LARGE: ErrorCodes.XENSTORE_TOO_LARGE,
  /** The decoder already failed on this connection and accepts nothing more. */
  XENSTORE_DECODER_STOPPED: ErrorCodes.XENSTORE_DECODER_STOPPED,
  /** A request refused before it was sent: a bad path, token, value, domid or transaction id. */
  XENSTORE_BAD_REQUEST: ErrorCodes.XENSTORE_BAD_REQUEST,
  /** xenstored answered ENOENT: the node does not exist (or the transaction is unknown). */
  XENSTORE_NOENT: ErrorCodes.XENSTORE_NOENT,
  /** xenstored answered EAGAIN: a transaction conflicted with another writer; start it again. */
  XENSTORE_AGAIN: ErrorCodes.XENSTORE_AGAIN,
  /** xenstored answered with another errno name (EACCES, EINVAL, E2BIG, ...). */
  XENSTORE_REPLY_ERROR: ErrorCodes.XENSTORE_REPLY_ERROR,
  /** No reply within the request's timeout. */
  XENSTORE_TIMEOUT: ErrorCodes.XENSTORE_TIMEOUT,
  /** Too many requests in flight: refused rather than queued without bound. */
  XENSTORE_QUEUE_FULL: ErrorCodes.XENSTORE_QUEUE_FULL,
  /** The connection is closed (xenstored exited or restarted, or a protocol error ended it). */
  XENSTORE_CLOSED: ErrorCodes.XENSTORE_CLOSED,
  /** The socket could not be opened. */
  XENSTORE_CONNECT_FAILED: ErrorCodes.XENSTORE_CONNECT_FAILED,
  /** Options out of range. */
  XENSTORE_BAD_OPTIONS: ErrorCodes.XENSTORE_BAD_OPTIONS,
} as const;

export type XenstoreErrorCode = (typeof XenstoreErrorCodes)[keyof typeof XenstoreErrorCodes];

export class XenstoreError extends TandemError<XenstoreErrorCode> {
  /** Byte offset in the connection's input of the message at fault; absent outside decoding. */
  readonly offset: number | undefined;

  constructor(code: XenstoreErrorCode, message: string, options?: { cause?: unknown; offset?: number }) {
    super(code, options?.offset === undefined ? message : `xenstore message at offset ${options.offset}: ${message}`, options);
    this.offset = options?.offset;
  }

  override get name(): string {
    return 'XenstoreError';
  }
}

/**
 * xenstored answered a request with an ERROR message. `errno` is the name it
 * sent ("ENOENT", "EAGAIN", ...); the code tells the two a caller acts on
 * (ENOENT, EAGAIN) from the rest.
 */
export class XenstoreReplyError extends XenstoreError {
  constructor(
    readonly errno: string,
    /** The request that failed, e.g. `READ /local/domain/5/control/shutdown`. */
    readonly request: string,
  ) {
    const code = errno === 'ENOENT' ? XenstoreErrorCodes.XENSTORE_NOENT : errno === 'EAGAIN' ? XenstoreErrorCodes.XENSTORE_AGAIN : XenstoreErrorCodes.XENSTORE_REPLY_ERROR;
    super(code, `xenstored refused ${request}: ${errno}`);
  }

  override get name(): string {
    return 'XenstoreReplyError';
  }
}

export const SaveHelperErrorCodes = {
  /** A message body of the wrong shape: too short, a string without its NUL, bytes left over. */
  SAVE_HELPER_BAD_MESSAGE: ErrorCodes.SAVE_HELPER_BAD_MESSAGE,
  /** A message type the protocol does not have. */
  SAVE_HELPER_UNKNOWN_TYPE: ErrorCodes.SAVE_HELPER_UNKNOWN_TYPE,
  /** A known message where the protocol does not allow it (a restore message while saving, a callback not enabled, anything but a log after complete). */
  SAVE_HELPER_UNEXPECTED_MESSAGE: ErrorCodes.SAVE_HELPER_UNEXPECTED_MESSAGE,
  /** The decoder already failed on this helper's output and accepts nothing more. */
  SAVE_HELPER_DECODER_STOPPED: ErrorCodes.SAVE_HELPER_DECODER_STOPPED,
  /** Arguments for the helper out of range (a domid, an fd, flags). */
  SAVE_HELPER_BAD_OPTIONS: ErrorCodes.SAVE_HELPER_BAD_OPTIONS,
  /** The helper could not be started. */
  SAVE_HELPER_SPAWN_FAILED: ErrorCodes.SAVE_HELPER_SPAWN_FAILED,
  /** The helper exited (or was killed) before it completed, or exited badly after. */
  SAVE_HELPER_EXITED: ErrorCodes.SAVE_HELPER_EXITED,
  /** The helper completed with a non-zero retval: libxc's save or restore failed. */
  SAVE_HELPER_FAILED: ErrorCodes.SAVE_HELPER_FAILED,
  /** A handler the parent supplied (suspend, checkpoint, ...) failed; the helper was told so. */
  SAVE_HELPER_CALLBACK_FAILED: ErrorCodes.SAVE_HELPER_CALLBACK_FAILED,
  /** The drained stream outgrew its in-memory bound: its consumer is not keeping up. */
  SAVE_HELPER_STREAM_OVERFLOW: ErrorCodes.SAVE_HELPER_STREAM_OVERFLOW,
  /** The parent stopped the helper (abort()). */
  SAVE_HELPER_ABORTED: ErrorCodes.SAVE_HELPER_ABORTED,
} as const;

export type SaveHelperErrorCode = (typeof SaveHelperErrorCodes)[keyof typeof SaveHelperErrorCodes];

/** What is known about the helper when it failed; every field is optional because a codec error knows none of it. */
export interface SaveHelperFailureContext {
  cause?: unknown;
  /** Byte offset in the helper's stdout of the message at fault. */
  offset?: number;
  /** Exit code, or null when a signal ended it. */
  exitCode?: number | null;
  signal?: NodeJS.Signals | null;
  /** complete's retval and errno. */
  retval?: number;
  errno?: number;
  /** The helper's last log messages (and stderr lines), oldest first. */
  lastLogs?: readonly string[];
}

export class SaveHelperError extends TandemError<SaveHelperErrorCode> {
  /** The message without the log lines appended to it. */
  readonly detail: string;
  readonly offset: number | undefined;
  readonly exitCode: number | null | undefined;
  readonly signal: NodeJS.Signals | null | undefined;
  readonly retval: number | undefined;
  readonly errno: number | undefined;
  readonly lastLogs: readonly string[];

  constructor(code: SaveHelperErrorCode, message: string, ctx: SaveHelperFailureContext = {}) {
    const where = ctx.offset === undefined ? message : `helper message at offset ${ctx.offset}: ${message}`;
    const logs = ctx.lastLogs ?? [];
    super(code, logs.length === 0 ? where : `${where}; last log lines:\n  ${logs.join('\n  ')}`, ctx.cause === undefined ? undefined : { cause: ctx.cause });
    this.detail = where;
    this.offset = ctx.offset;
    this.exitCode = ctx.exitCode;
    this.signal = ctx.signal;
    this.retval = ctx.retval;
    this.errno = ctx.errno;
    this.lastLogs = logs;
  }

  override get name(): string {
    return 'SaveHelperError';
  }
}

export const XenErrorCodes = {
  /** The hypercall co-process cannot start, or cannot open Xen's control interface (no Xen, no privilege, no xen-utils-4.17). */
  XEN_XC_UNAVAILABLE: ErrorCodes.XEN_XC_UNAVAILABLE,
  /** A hypercall failed (its error names the operation and the domain). */
  XEN_XC_FAILED: ErrorCodes.XEN_XC_FAILED,
  /** The co-process answered something that is not a reply to what was asked: it is stopped. */
  XEN_XC_BAD_REPLY: ErrorCodes.XEN_XC_BAD_REPLY,
  /** No reply in time. */
  XEN_XC_TIMEOUT: ErrorCodes.XEN_XC_TIMEOUT,
  /** The co-process is gone (exited, or stopped after a bad reply). */
  XEN_XC_CLOSED: ErrorCodes.XEN_XC_CLOSED,
  /** No such domain, or it is dying. */
  XEN_NO_DOMAIN: ErrorCodes.XEN_NO_DOMAIN,
  /** The guest did not suspend: it never acknowledged the request, or did not shut down for suspend in time. */
  XEN_SUSPEND_FAILED: ErrorCodes.XEN_SUSPEND_FAILED,
  /** A save of a Xen domain failed (the cause says where). */
  XEN_SAVE_FAILED: ErrorCodes.XEN_SAVE_FAILED,
  /** The output buffer of a guest's vif could not be set up, or a block or release failed. */
  XEN_NETBUF_FAILED: ErrorCodes.XEN_NETBUF_FAILED,
  /** Xen's restore (xl migrate-receive) refused the stream, exited, or did not finish a failover in time. */
  XEN_RESTORE_FAILED: ErrorCodes.XEN_RESTORE_FAILED,
} as const;

export type XenErrorCode = (typeof XenErrorCodes)[keyof typeof XenErrorCodes];

export class XenError extends TandemError<XenErrorCode> {
  override get name(): string {
    return 'XenError';
  }
}
