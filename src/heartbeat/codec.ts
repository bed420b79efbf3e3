/**
 * Heartbeat frames: fixed-size, little-endian, 48 octets, so a reader never
 * has to trust a length field and the decoder never holds more than one
 * frame. Layout:
 *
 * | off | size | field |
 * |---|---|---|
 * | 0  | 4 | magic `TDHB` |
 * | 4  | 1 | version (1) |
 * | 5  | 1 | type (1 = HEARTBEAT) |
 * | 6  | 1 | role of the sender (1 = primary, 2 = secondary) |
 * | 7  | 1 | intent: 0 running, 1 leaving and standing the peer down (do not take over), 2 leaving and handing over (take over now) |
 * | 8  | 4 | sender incarnation (non-zero, new on every start) |
 * | 12 | 1 | flags: bit 0 stranded (a primary only: it holds its output, having neither a replica that acks it nor the arbiter's authority to release it alone); other bits zero |
 * | 13 | 3 | reserved, zero |
 * | 16 | 8 | generation (fencing) |
 * | 24 | 8 | sequence (per incarnation, from 0) |
 * | 32 | 8 | sender's last committed (primary) / acked (secondary) epoch |
 * | 40 | 8 | sender's monotonic clock, µs (only comparable with itself) |
 *
 * u64 fields carry numbers below 2^53 so they stay exact in a JS number;
 * a frame with more is malformed rather than silently rounded.
 */
import { HeartbeatError, HeartbeatErrorCodes as C } from './errors.js';

export const FRAME_SIZE = 48;
export const MAGIC = Buffer.from('TDHB', 'latin1');
export const VERSION = 1;

export const MessageType = { HEARTBEAT: 1 } as const;
export type Role = 'primary' | 'secondary';
/** Why a sender is leaving: an orderly stop says what the peer should do about it. */
export type Intent = 'running' | 'stand-down' | 'hand-over';
const INTENT_CODE: Record<Intent, number> = { running: 0, 'stand-down': 1, 'hand-over': 2 };
const INTENTS: readonly Intent[] = ['running', 'stand-down', 'hand-over'];
const ROLE_CODE: Record<Role, number> = { primary: 1, secondary: 2 };

export interface Heartbeat {
  role: Role;
  incarnation: number;
  generation: number;
  sequence: number;
  epoch: number;
  /** Sender's monotonic time in µs. */
  sentAtUs: number;
  /** Absent: running. */
  intent?: Intent;
  /**
   * A primary that can serve nothing: no replica acks its output and the
   * arbiter gives it no authority to release output alone. Its secondary may
   * ask the arbiter for the domain (absent: false).
   */
  stranded?: boolean;
}

const FLAG_STRANDED = 0x01;

const U64_FIELDS = [
  ['generation', 16],
  ['sequence', 24],
  ['epoch', 32],
  ['sentAtUs', 40],
] as const;

function writeU64(buf: Buffer, value: number, at: number, field: string): void {
  if (!Number.isSafeInteger(value) || value < 0) throw new HeartbeatError(C.HEARTBEAT_BAD_FIELD, `${field} ${value} is not an integer in 0..2^53-1`);
  buf.writeUInt32LE(value % 2 ** 32, at);
  buf.writeUInt32LE(Math.floor(value / 2 ** 32), at + 4);
}

export function encodeHeartbeat(hb: Heartbeat): Buffer {
  if (!Number.isInteger(hb.incarnation) || hb.incarnation < 1 || hb.incarnation > 0xffffffff) {
    throw new HeartbeatError(C.HEARTBEAT_BAD_FIELD, `incarnation ${hb.incarnation} is not in 1..2^32-1`);
  }
  const buf = Buffer.alloc(FRAME_SIZE);
  MAGIC.copy(buf, 0);
  buf[4] = VERSION;
  buf[5] = MessageType.HEARTBEAT;
  buf[6] = ROLE_CODE[hb.role];
  buf[7] = INTENT_CODE[hb.intent ?? 'running'];
  if (hb.stranded === true) {
    if (hb.role !== 'primary') throw new HeartbeatError(C.HEARTBEAT_BAD_FIELD, 'only a primary is stranded');
    buf[12] = FLAG_STRANDED;
  }
  buf.writeUInt32LE(hb.incarnation, 8);
  for (const [field, at] of U64_FIELDS) writeU64(buf, hb[field], at, field);
  return buf;
}

/** Decodes one whole frame; `offset` is where it started in the connection, for the error. */
export function decodeFrame(frame: Buffer, offset = 0): Heartbeat {
  const fail = (code: (typeof C)[keyof typeof C], detail: string): never => {
    throw new HeartbeatError(code, detail, { offset });
  };
  if (frame.length !== FRAME_SIZE) fail(C.HEARTBEAT_BAD_FIELD, `frame is ${frame.length} octets, expected ${FRAME_SIZE}`);
  if (!frame.subarray(0, 4).equals(MAGIC)) fail(C.HEARTBEAT_BAD_MAGIC, `magic 0x${frame.subarray(0, 4).toString('hex')}, expected 0x${MAGIC.toString('hex')}`);
  if (frame[4] !== VERSION) fail(C.HEARTBEAT_BAD_VERSION, `version ${frame[4]}, expected ${VERSION}`);
  if (frame[5] !== MessageType.HEARTBEAT) fail(C.HEARTBEAT_BAD_TYPE, `message type ${frame[5]}`);
  const role: Role | undefined = frame[6] === 1 ? 'primary' : frame[6] === 2 ? 'secondary' : undefined;
  if (role === undefined) return fail(C.HEARTBEAT_BAD_ROLE, `role ${frame[6]}`);
  const intent = INTENTS[frame[7]];
  if (intent === undefined) fail(C.HEARTBEAT_BAD_FIELD, `intent ${frame[7]}, expected 0..2`);
  const flags = frame[12];
  if ((flags & ~FLAG_STRANDED) !== 0) fail(C.HEARTBEAT_BAD_FIELD, `flags 0x${flags.toString(16).padStart(2, '0')}: unknown bits set`);
  const stranded = (flags & FLAG_STRANDED) !== 0;
  if (stranded && role !== 'primary') fail(C.HEARTBEAT_BAD_FIELD, `the stranded flag from a ${role}: only a primary is stranded`);
  if (frame.readUIntLE(13, 3) !== 0) fail(C.HEARTBEAT_RESERVED_NONZERO, 'reserved octets are not zero');
  const incarnation = frame.readUInt32LE(8);
  if (incarnation === 0) fail(C.HEARTBEAT_BAD_FIELD, 'incarnation is zero');
  const u64 = (at: number, field: string): number => {
    const hi = frame.readUInt32LE(at + 4);
    if (hi >= 2 ** 21) fail(C.HEARTBEAT_BAD_FIELD, `${field} is beyond 2^53`);
    return hi * 2 ** 32 + frame.readUInt32LE(at);
  };
  return {
    role,
    incarnation,
    generation: u64(16, 'generation'),
    sequence: u64(24, 'sequence'),
    epoch: u64(32, 'epoch'),
    sentAtUs: u64(40, 'sentAtUs'),
    ...(intent === 'running' ? {} : { intent }),
    ...(stranded ? { stranded } : {}),
  };
}

/**
 * Incremental decoder for one connection, fed chunks split anywhere. It holds
 * at most one partial frame, so a peer cannot make it buffer more than
 * FRAME_SIZE octets. After the first bad frame it stops for good: a byte
 * stream that was wrong once cannot be trusted to be back in step.
 */
export class HeartbeatDecoder {
  private readonly partial = Buffer.alloc(FRAME_SIZE);
  private filled = 0;
  private offset = 0;
  private failure: HeartbeatError | undefined;

  /** Octets taken in so far (whole frames and the partial one). */
  get consumed(): number {
    return this.offset + this.filled;
  }

  push(chunk: Buffer): Heartbeat[] {
    if (this.failure) {
      throw new HeartbeatError(C.HEARTBEAT_DECODER_STOPPED, `decoder stopped: ${this.failure.message}`, { cause: this.failure, offset: this.failure.offset });
    }
    const out: Heartbeat[] = [];
    let at = 0;
    try {
      while (at < chunk.length) {
        if (this.filled === 0 && chunk.length - at >= FRAME_SIZE) {
          out.push(decodeFrame(chunk.subarray(at, at + FRAME_SIZE), this.offset));
          at += FRAME_SIZE;
          this.offset += FRAME_SIZE;
          continue;
        }
        const n = Math.min(FRAME_SIZE - this.filled, chunk.length - at);
        chunk.copy(this.partial, this.filled, at, at + n);
        this.filled += n;
        at += n;
        if (this.filled < FRAME_SIZE) break;
        out.push(decodeFrame(this.partial, this.offset));
        this.filled = 0;
        this.offset += FRAME_SIZE;
      }
    } catch (err) {
      if (err instanceof HeartbeatError) this.failure = err;
      throw err;
    }
    return out;
  }
}
