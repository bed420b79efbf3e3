/**
 * The xenstore wire protocol (Xen's public io/xs_wire.h and
 * docs/misc/xenstore.txt), as a pure codec: requests encoded to bytes,
 * bytes decoded to messages, payloads parsed by the request they answer.
 * No I/O; the client over xenstored's socket is xenstore.ts.
 *
 * Every message, both ways, is a 16-byte little-endian header
 *
 * | off | size | field |
 * |---|---|---|
 * | 0  | 4 | type (the table below) |
 * | 4  | 4 | req_id: echoed in the reply; 0 in a WATCH_EVENT |
 * | 8  | 4 | tx_id: transaction, 0 outside one |
 * | 12 | 4 | len: payload bytes that follow, at most 4096 |
 *
 * then `len` bytes of payload: NUL-terminated strings, except a WRITE's value
 * and a READ's reply, which are raw bytes. xenstored kills a connection that
 * sends more than 4096 bytes of payload, so the encoder refuses to; the
 * decoder refuses a header announcing more before it buffers any of it.
 */
import { XenstoreError, XenstoreErrorCodes as C } from './errors.js';

export const HEADER_SIZE = 16;
/** XENSTORE_PAYLOAD_MAX: the payload limit, both directions. */
export const PAYLOAD_MAX = 4096;
/** XENSTORE_ABS_PATH_MAX: the longest absolute path xenstored accepts. */
export const ABS_PATH_MAX = 3072;
/** Domain ids are 0..DOMID_FIRST_RESERVED-1 (0x7ff0 and up name special domains). */
export const DOMID_MAX = 0x7fef;

/**
 * Every message type of Xen 4.17's xs_wire.h (an enum counted from 0; 20 was
 * XS_RESTRICT, removed). The client sends READ, WRITE, WATCH, UNWATCH,
 * TRANSACTION_START/END and RESUME; the rest are here so that a message of
 * any type the daemon knows is named, and a type it does not is refused.
 */
export const XsType = {
  CONTROL: 0,
  DIRECTORY: 1,
  READ: 2,
  GET_PERMS: 3,
  WATCH: 4,
  UNWATCH: 5,
  TRANSACTION_START: 6,
  TRANSACTION_END: 7,
  INTRODUCE: 8,
  RELEASE: 9,
  GET_DOMAIN_PATH: 10,
  WRITE: 11,
  MKDIR: 12,
  RM: 13,
  SET_PERMS: 14,
  WATCH_EVENT: 15,
  ERROR: 16,
  IS_DOMAIN_INTRODUCED: 17,
  RESUME: 18,
  SET_TARGET: 19,
  RESET_WATCHES: 21,
  DIRECTORY_PART: 22,
} as const;
export type XsTypeName = keyof typeof XsType;

const TYPE_NAMES = new Map<number, XsTypeName>(Object.entries(XsType).map(([name, code]) => [code, name as XsTypeName]));

export const typeName = (code: number): string => TYPE_NAMES.get(code) ?? `type ${code}`;

/** One message off the wire; `offset` is where its header starts in the connection. */
export interface XsMessage {
  type: number;
  reqId: number;
  txId: number;
  payload: Buffer;
  offset: number;
}

/** The requests the client sends. */
export type XsRequest =
  | { type: 'READ'; path: string }
  | { type: 'WRITE'; path: string; value: Buffer | string }
  | { type: 'WATCH'; path: string; token: string }
  | { type: 'UNWATCH'; path: string; token: string }
  | { type: 'TRANSACTION_START' }
  | { type: 'TRANSACTION_END'; commit: boolean }
  | { type: 'RESUME'; domid: number };
export type XsRequestType = XsRequest['type'];

/** A reply, parsed by the request it answers. */
export type XsReply =
  | { kind: 'error'; errno: string }
  | { kind: 'ok' }
  | { kind: 'value'; value: Buffer }
  | { kind: 'transaction'; txId: number };

export interface XsWatchEvent {
  path: string;
  token: string;
}

const bad = (detail: string): never => {
  throw new XenstoreError(C.XENSTORE_BAD_REQUEST, detail);
};

/** xenstored's valid_chars(): what a node name may contain. */
const PATH_CHARS = /^[A-Za-z0-9\-/_@]*$/;

/**
 * Checks a path the way xenstored's is_valid_nodename() will, so a bad one is
 * refused here with a clear error rather than as an EINVAL from the daemon.
 * Socket clients must use absolute paths (relative ones are for domains).
 * `watch`: special watch paths (`@releaseDomain`, `@introduceDomain`, with an
 * optional `/DOMID`) are allowed too.
 */
export function checkPath(path: string, options: { watch?: boolean } = {}): void {
  if (typeof path !== 'string' || path.length === 0) bad('a path must be a non-empty string');
  if (path.includes('\0')) bad(`path ${JSON.stringify(path)} contains a NUL`);
  const bytes = Buffer.byteLength(path);
  if (bytes > ABS_PATH_MAX) bad(`path of ${bytes} bytes is longer than xenstore's ${ABS_PATH_MAX}`);
  if (!PATH_CHARS.test(path)) bad(`path ${JSON.stringify(path)} has characters xenstore refuses (only A-Z a-z 0-9 - / _ @)`);
  const special = options.watch === true && path.startsWith('@');
  if (!special && !path.startsWith('/')) bad(`path ${JSON.stringify(path)} is not absolute`);
  if (path.includes('//')) bad(`path ${JSON.stringify(path)} has an empty component`);
  if (path.length > 1 && path.endsWith('/')) bad(`path ${JSON.stringify(path)} ends in /`);
}

/** Watch tokens are ours to choose; the protocol only needs them free of NULs. */
export function checkToken(token: string): void {
  if (typeof token !== 'string' || token.length === 0) bad('a watch token must be a non-empty string');
  if (token.includes('\0')) bad(`watch token ${JSON.stringify(token)} contains a NUL`);
}

export function checkDomid(domid: number): void {
  if (!Number.isInteger(domid) || domid < 0 || domid > DOMID_MAX) bad(`domid ${domid} is not in 0..${DOMID_MAX}`);
}

const U32_MAX = 0xffffffff;
const isU32 = (n: number): boolean => Number.isInteger(n) && n >= 0 && n <= U32_MAX;

const cstr = (s: string): Buffer => Buffer.from(`${s}\0`, 'utf8');

/** A header and payload as bytes. Refuses a payload xenstored would kill the connection for. */
export function encodeMessage(type: number, reqId: number, txId: number, payload: Buffer): Buffer {
  if (!isU32(type) || !isU32(reqId) || !isU32(txId)) bad(`header fields must be u32 (type ${type}, req_id ${reqId}, tx_id ${txId})`);
  if (payload.length > PAYLOAD_MAX) {
    throw new XenstoreError(C.XENSTORE_TOO_LARGE, `${typeName(type)} payload of ${payload.length} bytes exceeds xenstore's ${PAYLOAD_MAX}`);
  }
  const out = Buffer.allocUnsafe(HEADER_SIZE + payload.length);
  out.writeUInt32LE(type, 0);
  out.writeUInt32LE(reqId, 4);
  out.writeUInt32LE(txId, 8);
  out.writeUInt32LE(payload.length, 12);
  payload.copy(out, HEADER_SIZE);
  return out;
}

/**
 * A request's bytes. `txId` places it in a transaction: allowed (and only
 * meaningful) for READ and WRITE, required for TRANSACTION_END, refused
 * elsewhere (xenstored ignores it on WATCH and forbids it on TRANSACTION_START).
 */
export function encodeRequest(req: XsRequest, reqId: number, txId = 0): Buffer {
  if (!isU32(txId)) bad(`tx_id ${txId} is not a u32`);
  let payload: Buffer;
  switch (req.type) {
    case 'READ':
      checkPath(req.path);
      payload = cstr(req.path);
      break;
    case 'WRITE': {
      checkPath(req.path);
      // The value is raw bytes after the path's NUL, not NUL-terminated.
      const value = typeof req.value === 'string' ? Buffer.from(req.value, 'utf8') : req.value;
      if (!Buffer.isBuffer(value)) bad('a value must be a string or a Buffer');
      payload = Buffer.concat([cstr(req.path), value]);
      break;
    }
    case 'WATCH':
    case 'UNWATCH':
      checkPath(req.path, { watch: true });
      checkToken(req.token);
      payload = Buffer.concat([cstr(req.path), cstr(req.token)]);
      break;
    case 'TRANSACTION_START':
      payload = cstr('');
      break;
    case 'TRANSACTION_END':
      if (txId === 0) bad('TRANSACTION_END needs the transaction id');
      payload = cstr(req.commit ? 'T' : 'F');
      break;
    case 'RESUME':
      checkDomid(req.domid);
      payload = cstr(String(req.domid));
      break;
    default:
      return bad(`unknown request ${JSON.stringify((req as { type?: unknown }).type)}`);
  }
  if (txId !== 0 && req.type !== 'READ' && req.type !== 'WRITE' && req.type !== 'TRANSACTION_END') {
    bad(`${req.type} cannot be part of a transaction`);
  }
  return encodeMessage(XsType[req.type], reqId, txId, payload);
}

/** The payload as NUL-terminated strings, or undefined when it does not end in a NUL. */
function splitStrings(payload: Buffer): string[] | undefined {
  if (payload.length === 0 || payload[payload.length - 1] !== 0) return undefined;
  return payload.subarray(0, payload.length - 1).toString('latin1').split('\0');
}

const protocolError = (msg: XsMessage, detail: string): never => {
  throw new XenstoreError(C.XENSTORE_BAD_MESSAGE, `${typeName(msg.type)}: ${detail}`, { offset: msg.offset });
};

/** An errno name as xs_wire.h's table spells them (EINVAL ... E2BIG, EPERM); newer daemons may add names, so any E-word is taken. */
const ERRNO_NAME = /^E[A-Z0-9]{1,31}$/;
const OK = Buffer.from('OK\0', 'latin1');

/**
 * Parses the reply to a request of type `request`: an ERROR (the errno name),
 * or the request's own type with the payload it is defined to carry.
 * Anything else breaks the protocol (XENSTORE_BAD_MESSAGE).
 */
export function parseReply(request: XsRequestType, msg: XsMessage): XsReply {
  if (msg.type === XsType.ERROR) {
    const parts = splitStrings(msg.payload);
    if (parts === undefined || parts.length !== 1 || !ERRNO_NAME.test(parts[0])) {
      return protocolError(msg, `payload ${JSON.stringify(msg.payload.toString('latin1'))} is not one errno name and its NUL`);
    }
    return { kind: 'error', errno: parts[0] };
  }
  if (msg.type !== XsType[request]) return protocolError(msg, `is not a reply to ${request}`);
  switch (request) {
    case 'READ':
      return { kind: 'value', value: msg.payload };
    case 'TRANSACTION_START': {
      const parts = splitStrings(msg.payload);
      const id = parts?.length === 1 && /^[0-9]{1,10}$/.test(parts[0]) ? Number(parts[0]) : NaN;
      if (!(id >= 1 && id <= U32_MAX)) return protocolError(msg, `payload ${JSON.stringify(msg.payload.toString('latin1'))} is not a transaction id in 1..2^32-1`);
      return { kind: 'transaction', txId: id };
    }
    case 'WRITE':
    case 'WATCH':
    case 'UNWATCH':
    case 'TRANSACTION_END':
    case 'RESUME':
      if (!msg.payload.equals(OK)) return protocolError(msg, `payload ${JSON.stringify(msg.payload.toString('latin1'))} is not "OK"`);
      return { kind: 'ok' };
  }
}

/** A WATCH_EVENT's payload: the path that changed and the token of the watch it matched. */
export function parseWatchEvent(msg: XsMessage): XsWatchEvent {
  if (msg.type !== XsType.WATCH_EVENT) return protocolError(msg, 'is not a WATCH_EVENT');
  const parts = splitStrings(msg.payload);
  if (parts === undefined || parts.length !== 2 || parts[0].length === 0) {
    return protocolError(msg, 'payload is not a path and a token, each with its NUL');
  }
  return { path: parts[0], token: parts[1] };
}

/**
 * Incremental decoder for one connection, fed chunks split anywhere. A header
 * is checked (known type, length within 4096) as soon as its 16 bytes are in,
 * before the decoder waits for the payload, so it never holds more than one
 * message of at most 4112 bytes. After the first error it stops for good:
 * bytes after a broken header cannot be trusted to be back in step.
 */
export class XenstoreDecoder {
  private readonly partial = Buffer.alloc(HEADER_SIZE + PAYLOAD_MAX);
  private filled = 0;
  /** Payload length of the message in `partial`, once its header is checked. */
  private expect: number | undefined;
  private offset = 0;
  private failure: XenstoreError | undefined;

  /** Bytes taken in so far. */
  get consumed(): number {
    return this.offset + this.filled;
  }

  get failed(): XenstoreError | undefined {
    return this.failure;
  }

  /**
   * Feeds bytes; returns the messages they complete. Messages are appended to
   * `out` as they complete, so when the chunk also holds a bad header, a
   * caller that passed its own array still has those before it.
   */
  push(chunk: Buffer, out: XsMessage[] = []): XsMessage[] {
    if (this.failure) {
      throw new XenstoreError(C.XENSTORE_DECODER_STOPPED, `decoder stopped: ${this.failure.message}`, { cause: this.failure });
    }
    try {
      let at = 0;
      while (at < chunk.length) {
        if (this.expect === undefined) {
          const n = Math.min(HEADER_SIZE - this.filled, chunk.length - at);
          chunk.copy(this.partial, this.filled, at, at + n);
          this.filled += n;
          at += n;
          if (this.filled < HEADER_SIZE) break;
          this.expect = this.checkHeader();
        }
        const need = HEADER_SIZE + this.expect - this.filled;
        const n = Math.min(need, chunk.length - at);
        chunk.copy(this.partial, this.filled, at, at + n);
        this.filled += n;
        at += n;
        if (n < need) break;
        out.push(this.emit());
      }
    } catch (err) {
      if (err instanceof XenstoreError) this.failure = err;
      throw err;
    }
    return out;
  }

  private checkHeader(): number {
    const type = this.partial.readUInt32LE(0);
    const len = this.partial.readUInt32LE(12);
    if (!TYPE_NAMES.has(type)) throw new XenstoreError(C.XENSTORE_BAD_MESSAGE, `unknown message type ${type}`, { offset: this.offset });
    if (len > PAYLOAD_MAX) {
      throw new XenstoreError(C.XENSTORE_TOO_LARGE, `${typeName(type)} announces ${len} bytes of payload, more than xenstore's ${PAYLOAD_MAX}`, { offset: this.offset });
    }
    return len;
  }

  private emit(): XsMessage {
    const len = this.expect ?? 0;
    const msg: XsMessage = {
      type: this.partial.readUInt32LE(0),
      reqId: this.partial.readUInt32LE(4),
      txId: this.partial.readUInt32LE(8),
      // A copy: `partial` is reused for the next message.
      payload: Buffer.from(this.partial.subarray(HEADER_SIZE, HEADER_SIZE + len)),
      offset: this.offset,
    };
    this.offset += HEADER_SIZE + len;
    this.filled = 0;
    this.expect = undefined;
    return msg;
  }
}
