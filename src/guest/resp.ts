/**
 * RESP2, the Redis protocol, as far as the sim guest's service speaks it:
 * an incremental request parser and the reply serializers. No I/O here.
 *
 * The parser is a byte-at-a-time state machine over whatever chunks arrive,
 * so a request split at any offset parses the same. Lengths are checked as
 * their digits arrive, before anything is allocated for them, and a bulk
 * argument that lies within one received chunk is handed out as a view into
 * that chunk (no copy); only one that straddles chunks is gathered.
 */
import { GuestErrorCodes, RespProtocolError, type GuestErrorCode } from './errors.js';

export interface RespLimits {
  /** Largest bulk argument. Redis allows 512 MiB; a sim guest's RAM is smaller. */
  maxBulkLength: number;
  /** Most arguments in one multibulk request. */
  maxArrayLength: number;
  /** Longest inline request line: its bytes before the LF, a CR included. */
  maxInlineLength: number;
  /** Most bytes one request (headers and data) may span: bounds what a connection can make the parser hold. */
  maxRequestBytes: number;
}

export const DEFAULT_RESP_LIMITS: Readonly<RespLimits> = {
  maxBulkLength: 64 * 1024 * 1024,
  maxArrayLength: 1024 * 1024,
  maxInlineLength: 64 * 1024,
  maxRequestBytes: 160 * 1024 * 1024,
};

/** One request: the command name and its arguments, as raw bytes. */
export type RespCommand = Buffer[];

export interface FeedResult {
  /** Complete requests, in order (empty and null multibulks produce none). */
  commands: RespCommand[];
  /** Set once the input is malformed; `commands` holds what preceded the error. */
  error: RespProtocolError | undefined;
}

const CR = 0x0d;
const LF = 0x0a;
const STAR = 0x2a;
const DOLLAR = 0x24;
const MINUS = 0x2d;
const ZERO = 0x30;
const NINE = 0x39;
/** Digits a negative multibulk count may have: anything up to -(2^63) is an "empty" request for Redis. */
const MAX_NEGATIVE_DIGITS = 19;

const enum State {
  Start,
  ArrayCount,
  BulkDollar,
  BulkLength,
  BulkData,
  BulkCr,
  BulkLf,
  Inline,
}

export class RespParser {
  private readonly limits: RespLimits;
  private state = State.Start;
  private consumed = 0;
  private failure: RespProtocolError | undefined = undefined;
  private requestStart = 0;
  private args: Buffer[] = [];
  private argsWanted = 0;
  // The length being read, digit by digit.
  private num = 0;
  private digits = 0;
  private negative = false;
  private sawCr = false;
  // The bulk argument being read.
  private bulkLength = 0;
  private bulkParts: Buffer[] = [];
  private bulkHave = 0;
  private bulk: Buffer | undefined = undefined;
  // The inline line being read.
  private lineParts: Buffer[] = [];
  private lineHave = 0;

  constructor(limits: Partial<RespLimits> = {}) {
    this.limits = { ...DEFAULT_RESP_LIMITS, ...limits };
  }

  /** The error that stopped the parser, if any. */
  get error(): RespProtocolError | undefined {
    return this.failure;
  }

  /**
   * Bytes fed so far that formed complete requests (or empty ones): where
   * the request still being read begins. A caller that keeps its own copy of
   * the input can drop everything before this.
   */
  get completeBytes(): number {
    return this.state === State.Start ? this.consumed : this.requestStart;
  }

  /** True between requests: everything fed so far formed complete requests. */
  get atBoundary(): boolean {
    return this.state === State.Start && this.failure === undefined;
  }

  /** Bytes of an incomplete request held in copies or views (not counting complete requests already returned). */
  get bufferedBytes(): number {
    return this.bulkHave + this.lineHave;
  }

  /** Parses `chunk`; after an error it returns that error again and parses nothing more. */
  feed(chunk: Buffer): FeedResult {
    const commands: RespCommand[] = [];
    if (this.failure !== undefined) return { commands, error: this.failure };
    const base = this.consumed;
    const n = chunk.length;
    let i = 0;
    const fail = (code: GuestErrorCode, message: string): FeedResult => {
      this.failure = new RespProtocolError(code, `Protocol error: ${message}`, base + i);
      this.dropRequest();
      return { commands, error: this.failure };
    };
    while (i < n) {
      switch (this.state) {
        case State.Start:
          this.requestStart = base + i;
          if (chunk[i] === STAR) {
            i++;
            this.startNumber(State.ArrayCount);
          } else {
            this.state = State.Inline;
          }
          break;

        case State.ArrayCount:
        case State.BulkLength: {
          const isArray = this.state === State.ArrayCount;
          const code = isArray ? GuestErrorCodes.PROTOCOL_MULTIBULK_LENGTH : GuestErrorCodes.PROTOCOL_BULK_LENGTH;
          const what = isArray ? 'invalid multibulk length' : 'invalid bulk length';
          const limit = isArray ? this.limits.maxArrayLength : this.limits.maxBulkLength;
          let done = false;
          while (i < n && !done) {
            const c = chunk[i];
            if (this.sawCr) {
              if (c !== LF || this.digits === 0) return fail(code, what);
              done = true;
            } else if (c === CR) {
              if (this.digits === 0) return fail(code, what);
              this.sawCr = true;
            } else if (c === MINUS && this.digits === 0 && !this.negative) {
              // A negative bulk length is never valid; a negative count is a null request.
              if (!isArray) return fail(code, what);
              this.negative = true;
            } else if (c >= ZERO && c <= NINE) {
              // No leading zeros, as Redis's strict integer parse: "0" is fine, "01" and "-0" are not.
              if (this.digits > 0 && this.num === 0) return fail(code, what);
              if (this.negative && this.digits === 0 && c === ZERO) return fail(code, what);
              this.num = this.num * 10 + (c - ZERO);
              this.digits++;
              // Refused as soon as the digits say too much: nothing is allocated for a length never accepted.
              if (!this.negative && this.num > limit) return fail(code, what);
              if (this.negative && this.digits > MAX_NEGATIVE_DIGITS) return fail(code, what);
            } else {
              return fail(code, what);
            }
            i++;
          }
          if (!done) break;
          if (isArray) {
            if (this.negative || this.num === 0) {
              this.state = State.Start;
            } else {
              this.argsWanted = this.num;
              this.args = [];
              this.state = State.BulkDollar;
            }
          } else {
            const spanned = base + i - this.requestStart;
            if (spanned + this.num + 2 > this.limits.maxRequestBytes) {
              return fail(GuestErrorCodes.PROTOCOL_REQUEST_TOO_BIG, `request larger than ${this.limits.maxRequestBytes} bytes`);
            }
            this.bulkLength = this.num;
            this.bulkParts = [];
            this.bulkHave = 0;
            this.state = State.BulkData;
          }
          break;
        }

        case State.BulkDollar: {
          const c = chunk[i];
          if (c !== DOLLAR) return fail(GuestErrorCodes.PROTOCOL_EXPECTED_BULK, `expected '$', got '${printable(c)}'`);
          i++;
          this.startNumber(State.BulkLength);
          break;
        }

        case State.BulkData: {
          const want = this.bulkLength - this.bulkHave;
          const avail = n - i;
          if (this.bulkHave === 0 && avail >= want) {
            this.bulk = chunk.subarray(i, i + want);
            i += want;
            this.state = State.BulkCr;
          } else {
            const take = Math.min(want, avail);
            this.bulkParts.push(chunk.subarray(i, i + take));
            this.bulkHave += take;
            i += take;
            if (this.bulkHave === this.bulkLength) {
              this.bulk = Buffer.concat(this.bulkParts, this.bulkLength);
              this.bulkParts = [];
              this.bulkHave = 0;
              this.state = State.BulkCr;
            }
          }
          break;
        }

        case State.BulkCr:
        case State.BulkLf: {
          const expected = this.state === State.BulkCr ? CR : LF;
          if (chunk[i] !== expected) return fail(GuestErrorCodes.PROTOCOL_BULK_CRLF, 'expected CRLF after bulk data');
          i++;
          if (expected === CR) {
            this.state = State.BulkLf;
            break;
          }
          this.args.push(this.bulk!);
          this.bulk = undefined;
          if (this.args.length === this.argsWanted) {
            commands.push(this.args);
            this.args = [];
            this.state = State.Start;
          } else {
            this.state = State.BulkDollar;
          }
          break;
        }

        case State.Inline: {
          const nl = chunk.indexOf(LF, i);
          const end = nl === -1 ? n : nl;
          if (this.lineHave + (end - i) > this.limits.maxInlineLength) {
            i = Math.min(end, i + this.limits.maxInlineLength - this.lineHave);
            return fail(GuestErrorCodes.PROTOCOL_INLINE_TOO_BIG, 'too big inline request');
          }
          const part = chunk.subarray(i, end);
          if (nl === -1) {
            this.lineParts.push(part);
            this.lineHave += part.length;
            i = n;
            break;
          }
          let line = this.lineParts.length === 0 ? part : Buffer.concat([...this.lineParts, part]);
          this.lineParts = [];
          this.lineHave = 0;
          if (line.length > 0 && line[line.length - 1] === CR) line = line.subarray(0, line.length - 1);
          const args = splitInline(line);
          if (args === undefined) return fail(GuestErrorCodes.PROTOCOL_UNBALANCED_QUOTES, 'unbalanced quotes in request');
          i = nl + 1;
          if (args.length > 0) commands.push(args);
          this.state = State.Start;
          break;
        }
      }
    }
    this.consumed = base + n;
    return { commands, error: undefined };
  }

  private startNumber(state: State): void {
    this.state = state;
    this.num = 0;
    this.digits = 0;
    this.negative = false;
    this.sawCr = false;
  }

  private dropRequest(): void {
    this.args = [];
    this.bulkParts = [];
    this.bulkHave = 0;
    this.bulk = undefined;
    this.lineParts = [];
    this.lineHave = 0;
  }
}

function printable(c: number): string {
  return c >= 0x20 && c < 0x7f ? String.fromCharCode(c) : `\\x${c.toString(16).padStart(2, '0')}`;
}

function isSpace(c: number): boolean {
  // C isspace(): space, \t, \n, \v, \f, \r
  return c === 0x20 || (c >= 0x09 && c <= 0x0d);
}

function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x61 + 10;
  if (c >= 0x41 && c <= 0x46) return c - 0x41 + 10;
  return -1;
}

const ESCAPES: Record<number, number> = { 0x6e: 0x0a, 0x72: 0x0d, 0x74: 0x09, 0x62: 0x08, 0x61: 0x07 };

/**
 * Splits an inline request as redis-cli users expect: whitespace separates
 * arguments; "double quotes" take \n \r \t \b \a \xHH and \<c> escapes;
 * 'single quotes' take \' only. A closing quote must end its argument.
 * Returns undefined for unbalanced quotes.
 */
export function splitInline(line: Buffer): Buffer[] | undefined {
  const args: Buffer[] = [];
  const n = line.length;
  let i = 0;
  while (true) {
    while (i < n && isSpace(line[i])) i++;
    if (i >= n) return args;
    const out: number[] = [];
    let inDouble = false;
    let inSingle = false;
    let done = false;
    while (!done) {
      if (inDouble) {
        if (i >= n) return undefined;
        const c = line[i];
        if (c === 0x5c && i + 3 < n && line[i + 1] === 0x78 && hexValue(line[i + 2]) >= 0 && hexValue(line[i + 3]) >= 0) {
          out.push(hexValue(line[i + 2]) * 16 + hexValue(line[i + 3]));
          i += 3;
        } else if (c === 0x5c && i + 1 < n) {
          i++;
          out.push(ESCAPES[line[i]] ?? line[i]);
        } else if (c === 0x22) {
          if (i + 1 < n && !isSpace(line[i + 1])) return undefined;
          done = true;
        } else {
          out.push(c);
        }
      } else if (inSingle) {
        if (i >= n) return undefined;
        const c = line[i];
        if (c === 0x5c && i + 1 < n && line[i + 1] === 0x27) {
          i++;
          out.push(0x27);
        } else if (c === 0x27) {
          if (i + 1 < n && !isSpace(line[i + 1])) return undefined;
          done = true;
        } else {
          out.push(c);
        }
      } else if (i >= n) {
        break;
      } else {
        const c = line[i];
        if (isSpace(c) || c === 0) done = true;
        else if (c === 0x22) inDouble = true;
        else if (c === 0x27) inSingle = true;
        else out.push(c);
      }
      if (i < n) i++;
    }
    args.push(Buffer.from(out));
  }
}

// ---------------------------------------------------------------------------
// Replies

export const OK_REPLY = Buffer.from('+OK\r\n');
export const PONG_REPLY = Buffer.from('+PONG\r\n');
export const NULL_BULK_REPLY = Buffer.from('$-1\r\n');
export const NULL_ARRAY_REPLY = Buffer.from('*-1\r\n');
export const EMPTY_ARRAY_REPLY = Buffer.from('*0\r\n');
const SMALL_INTEGERS = Array.from({ length: 64 }, (_, k) => Buffer.from(`:${k}\r\n`));

/** A status line must not contain CR or LF; Redis replaces them with spaces too. */
function oneLine(text: string): string {
  return text.replace(/[\r\n]/g, ' ');
}

/** `+text`. */
export function simpleStringReply(text: string): Buffer {
  return Buffer.from(`+${oneLine(text)}\r\n`, 'latin1');
}

/**
 * `-message`, where message starts with its error word (`ERR ...`, `OOM ...`).
 * Encoded as latin1 so request bytes quoted in a message (decoded as latin1)
 * echo back byte for byte.
 */
export function errorReply(message: string): Buffer {
  return Buffer.from(`-${oneLine(message)}\r\n`, 'latin1');
}

/** `:n` for a 64-bit signed integer. */
export function integerReply(n: number | bigint): Buffer {
  if (typeof n === 'number' && n >= 0 && n < SMALL_INTEGERS.length && Number.isInteger(n)) return SMALL_INTEGERS[n];
  return Buffer.from(`:${n}\r\n`, 'latin1');
}

/** `$len` and the bytes (copied, so a view into guest RAM may be passed); null is the null bulk. */
export function bulkReply(data: Uint8Array | string | null): Buffer {
  if (data === null) return NULL_BULK_REPLY;
  const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
  const head = `$${bytes.length}\r\n`;
  const out = Buffer.allocUnsafe(head.length + bytes.length + 2);
  out.write(head, 0, 'latin1');
  out.set(bytes, head.length);
  out[out.length - 2] = CR;
  out[out.length - 1] = LF;
  return out;
}

/** `*n` and the already-encoded replies; null is the null array. */
export function arrayReply(items: readonly Buffer[] | null): Buffer {
  if (items === null) return NULL_ARRAY_REPLY;
  if (items.length === 0) return EMPTY_ARRAY_REPLY;
  return Buffer.concat([Buffer.from(`*${items.length}\r\n`, 'latin1'), ...items]);
}

/** An array of bulk strings (null entries are null bulks). */
export function bulkArrayReply(items: readonly (Uint8Array | string | null)[]): Buffer {
  return arrayReply(items.map(bulkReply));
}
