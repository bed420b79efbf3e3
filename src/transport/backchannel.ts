/**
 * The back-channel: secondary -> primary, on the reverse direction of the
 * replication connection, so the forward direction stays a pure Xen stream
 * a Xen reader can consume. It carries records framed like the stream's
 * (u32 type, u32 body length, body, zero padding to 8 octets), without a
 * header, as Xen's own COLO back-channel does:
 *
 * - TANDEM_ACK (0x80005401, in the optional range so no Xen reader chokes):
 *   the secondary applied (or refused) checkpoint `epoch`;
 * - TANDEM_FEATURES (0x80005406), first on a stream the secondary took:
 *   the stream records it decodes beyond Xen's (TandemFeature bits, u32,
 *   then a u32 reserved), so a primary never sends one to a peer that
 *   cannot read it. A secondary that sends none offers nothing;
 * - libxl CHECKPOINT_STATE (0x5) and libxc CHECKPOINT_DIRTY_PFN_LIST (0xf),
 *   the COLO handshake records, as Xen sends them. Their bodies are the
 *   stream's own (src/stream/records.ts), so both directions share one
 *   codec; only TANDEM_ACK, which no stream carries, is coded here.
 */
import { ErrorCodes, StreamError } from '../errors.js';
import { ChunkQueue } from '../stream/chunks.js';
import { frameRecord } from '../stream/encoder.js';
import { KNOWN_FEATURES, LibxcType, LibxlType, RECORD_HEADER_SIZE, TandemType, alignUp, isOptionalType } from '../stream/format.js';
import { encodeRecordBody, parseRecord, recordCode, type ParseLimits, type StreamRecord } from '../stream/records.js';

export const BackType = {
  CHECKPOINT_STATE: LibxlType.CHECKPOINT_STATE,
  CHECKPOINT_DIRTY_PFN_LIST: LibxcType.CHECKPOINT_DIRTY_PFN_LIST,
  TANDEM_ACK: TandemType.TANDEM_ACK,
  TANDEM_FEATURES: TandemType.TANDEM_FEATURES,
} as const;

export const FEATURES_BODY_BYTES = 8;

export const AckStatus = {
  /** The checkpoint is applied: the replica is at this epoch. */
  APPLIED: 0,
  /** The epoch did not fit the secondary's buffer limit; it was discarded. Start over with a fresh pre-copy. */
  OVER_BUFFER_LIMIT: 1,
  /** The stream was malformed; the epoch was discarded and the connection is closing. */
  STREAM_ERROR: 2,
} as const;
export type AckStatusCode = (typeof AckStatus)[keyof typeof AckStatus];

export const MAX_ACK_REASON = 256;
/** Largest back-channel record accepted: a dirty-pfn list for a 4 GiB guest. */
export const MAX_BACK_RECORD = 8 * 1024 * 1024;

export type BackChannelRecord =
  | { type: 'ACK'; epoch: number; status: AckStatusCode; reason: string }
  /** TandemFeature bits; bits this side does not know are dropped as it reads them (a newer secondary may offer more). */
  | { type: 'FEATURES'; features: number }
  | { type: 'CHECKPOINT_STATE'; controlId: number }
  | { type: 'CHECKPOINT_DIRTY_PFN_LIST'; pfns: Uint32Array };

export function encodeBackRecord(rec: BackChannelRecord): Buffer {
  switch (rec.type) {
    case 'ACK': {
      const reason = Buffer.from(rec.reason.slice(0, MAX_ACK_REASON), 'utf8').subarray(0, MAX_ACK_REASON);
      const body = Buffer.alloc(16 + reason.length);
      body.writeUInt32LE(rec.epoch % 2 ** 32, 0);
      body.writeUInt32LE(Math.floor(rec.epoch / 2 ** 32), 4);
      body.writeUInt32LE(rec.status, 8);
      body.writeUInt32LE(reason.length, 12);
      reason.copy(body, 16);
      return Buffer.concat(frameRecord(BackType.TANDEM_ACK, [body]));
    }
    case 'FEATURES': {
      const body = Buffer.alloc(FEATURES_BODY_BYTES);
      body.writeUInt32LE(rec.features >>> 0, 0);
      return Buffer.concat(frameRecord(BackType.TANDEM_FEATURES, [body]));
    }
    case 'CHECKPOINT_STATE':
      return encodeStreamRecord({ layer: 'libxl', type: 'CHECKPOINT_STATE', controlId: rec.controlId });
    case 'CHECKPOINT_DIRTY_PFN_LIST':
      return encodeStreamRecord({ layer: 'libxc', type: 'CHECKPOINT_DIRTY_PFN_LIST', pfns: Array.from(rec.pfns, (pfn) => BigInt(pfn)) });
  }
}

const encodeStreamRecord = (rec: StreamRecord): Buffer => Buffer.concat(frameRecord(recordCode(rec), encodeRecordBody(rec)));

/** Only CHECKPOINT_STATE and CHECKPOINT_DIRTY_PFN_LIST are parsed by records.ts here; the limits bound PAGE_DATA, which never travels this way. */
const NO_PAGE_DATA: ParseLimits = { maxPagesPerRecord: 0, maxPfn: 0 };

const fail = (code: (typeof ErrorCodes)[keyof typeof ErrorCodes], detail: string, offset: number, record?: string): never => {
  throw new StreamError(code, detail, { offset, record: record === undefined ? undefined : `back-channel ${record}` });
};

/** Incremental decoder for the back-channel; stops for good on the first error. */
export class BackChannelDecoder {
  private readonly queue = new ChunkQueue();
  private offset = 0;
  private failure: StreamError | undefined;

  push(chunk: Buffer): BackChannelRecord[] {
    if (this.failure) throw new StreamError(ErrorCodes.STREAM_FAILED, `back-channel decoder stopped: ${this.failure.message}`, { offset: this.failure.offset }, { cause: this.failure });
    this.queue.push(chunk);
    const out: BackChannelRecord[] = [];
    try {
      while (this.queue.length >= RECORD_HEADER_SIZE) {
        const head = this.queue.peek(RECORD_HEADER_SIZE);
        const type = head.readUInt32LE(0);
        const length = head.readUInt32LE(4);
        const name = BACK_NAMES.get(type) ?? `type 0x${type.toString(16)}`;
        const known = BACK_NAMES.has(type);
        if (!known && !isOptionalType(type)) fail(ErrorCodes.RECORD_UNKNOWN_MANDATORY, 'unknown mandatory record type', this.offset, name);
        if (length > MAX_BACK_RECORD) fail(ErrorCodes.RECORD_TOO_LARGE, `body length ${length} exceeds ${MAX_BACK_RECORD}`, this.offset, name);
        const total = RECORD_HEADER_SIZE + alignUp(length);
        if (this.queue.length < total) break;
        const at = this.offset;
        const rec = this.queue.takeContiguous(total);
        this.offset += total;
        const body = rec.subarray(RECORD_HEADER_SIZE, RECORD_HEADER_SIZE + length);
        for (let i = RECORD_HEADER_SIZE + length; i < total; i++) if (rec[i] !== 0) fail(ErrorCodes.RECORD_BAD_PADDING, 'padding contains non-zero bytes', at, name);
        if (known) out.push(parseBack(type, body, at, name));
      }
    } catch (err) {
      if (err instanceof StreamError) this.failure = err;
      throw err;
    }
    return out;
  }
}

const BACK_NAMES = new Map<number, string>(Object.entries(BackType).map(([name, code]) => [code as number, name]));

function parseBack(type: number, body: Buffer, at: number, name: string): BackChannelRecord {
  switch (type) {
    case BackType.TANDEM_FEATURES: {
      if (body.length !== FEATURES_BODY_BYTES) fail(ErrorCodes.RECORD_BAD_LENGTH, `body length ${body.length}, expected ${FEATURES_BODY_BYTES}`, at, name);
      if (body.readUInt32LE(4) !== 0) fail(ErrorCodes.RECORD_RESERVED_NONZERO, 'reserved field is not zero', at, name);
      return { type: 'FEATURES', features: body.readUInt32LE(0) & KNOWN_FEATURES };
    }
    case BackType.TANDEM_ACK: {
      if (body.length < 16) fail(ErrorCodes.RECORD_BAD_LENGTH, `body length ${body.length}, expected at least 16`, at, name);
      const hi = body.readUInt32LE(4);
      if (hi >= 2 ** 21) fail(ErrorCodes.RECORD_BAD_FIELD, 'epoch beyond 2^53', at, name);
      const status = body.readUInt32LE(8);
      if (status > AckStatus.STREAM_ERROR) fail(ErrorCodes.RECORD_BAD_FIELD, `unknown ack status ${status}`, at, name);
      const reasonLen = body.readUInt32LE(12);
      if (reasonLen > MAX_ACK_REASON || 16 + reasonLen !== body.length) fail(ErrorCodes.RECORD_BAD_LENGTH, `reason length ${reasonLen} does not match the body`, at, name);
      return { type: 'ACK', epoch: hi * 2 ** 32 + body.readUInt32LE(0), status: status as AckStatusCode, reason: body.toString('utf8', 16) };
    }
    case BackType.CHECKPOINT_STATE: {
      const rec = parseRecord('libxl', type, [body], body.length, NO_PAGE_DATA, { offset: at, name: `back-channel ${name}` });
      if (rec.type !== 'CHECKPOINT_STATE') throw new Error(`records.ts parsed libxl type 0x${type.toString(16)} as ${rec.type}`);
      return { type: 'CHECKPOINT_STATE', controlId: rec.controlId };
    }
    default: {
      const rec = parseRecord('libxc', type, [body], body.length, NO_PAGE_DATA, { offset: at, name: `back-channel ${name}` });
      if (rec.type !== 'CHECKPOINT_DIRTY_PFN_LIST') throw new Error(`records.ts parsed libxc type 0x${type.toString(16)} as ${rec.type}`);
      // The replica's dirty log and writePages() speak u32 pfns: a larger one cannot name a page of it.
      const pfns = new Uint32Array(rec.pfns.length);
      for (let i = 0; i < pfns.length; i++) {
        if (rec.pfns[i] >= 2n ** 32n) fail(ErrorCodes.RECORD_BAD_FIELD, `pfn[${i}] beyond 2^32 pages`, at, name);
        pfns[i] = Number(rec.pfns[i]);
      }
      return { type: 'CHECKPOINT_DIRTY_PFN_LIST', pfns };
    }
  }
}
