/**
 * Typed records of both stream layers: one union, one parse switch, one
 * encode switch. Parsing validates each body as the specs require; framing
 * (type, length, padding) lives in decoder.ts and encoder.ts.
 */
import { ErrorCodes, StreamError } from '../errors.js';
import { SegmentCursor, joinSegments } from './chunks.js';
import {
  CPUID_LEAF_SIZE,
  EMULATOR_HEADER_SIZE,
  HVM_PARAM_SIZE,
  LibxcType,
  LibxlType,
  MSR_ENTRY_SIZE,
  PAGE_SIZE,
  PFN_BITS,
  TSC_INFO_SIZE,
  TandemType,
  VCPU_HEADER_SIZE,
  X86_PV_INFO_SIZE,
  isValidPageType,
  pageTypeHasData,
  type Layer,
} from './format.js';
import { MAX_DELTA_BYTES, PageEncoding, checkXbzrle } from './xbzrle.js';

export interface CpuidLeaf {
  leaf: number;
  subleaf: number;
  a: number;
  b: number;
  c: number;
  d: number;
}
export interface MsrEntry {
  idx: number;
  flags: number;
  val: bigint;
}
export interface HvmParam {
  index: bigint;
  value: bigint;
}

export type VcpuRecordType = 'X86_PV_VCPU_BASIC' | 'X86_PV_VCPU_EXTENDED' | 'X86_PV_VCPU_XSAVE' | 'X86_PV_VCPU_MSRS';

export type LibxcRecord =
  | { layer: 'libxc'; type: 'END' | 'VERIFY' | 'CHECKPOINT' | 'STATIC_DATA_END' }
  | {
      layer: 'libxc';
      type: 'PAGE_DATA';
      /** PFNs, in record order. */
      pfns: number[];
      /** Page type (PageType) of each pfn. */
      types: number[];
      /** One page for each pfn whose type carries data, in order; views where possible. */
      pages: Buffer[];
    }
  | { layer: 'libxc'; type: 'X86_PV_INFO'; guestWidth: number; ptLevels: number }
  | { layer: 'libxc'; type: 'X86_PV_P2M_FRAMES'; startPfn: number; endPfn: number; frames: bigint[] }
  | { layer: 'libxc'; type: VcpuRecordType; vcpuId: number; context: Buffer }
  | { layer: 'libxc'; type: 'SHARED_INFO'; data: Buffer }
  | { layer: 'libxc'; type: 'X86_TSC_INFO'; mode: number; khz: number; nsec: bigint; incarnation: number }
  | { layer: 'libxc'; type: 'HVM_CONTEXT'; data: Buffer }
  | { layer: 'libxc'; type: 'HVM_PARAMS'; params: HvmParam[] }
  | { layer: 'libxc'; type: 'CHECKPOINT_DIRTY_PFN_LIST'; pfns: bigint[] }
  | { layer: 'libxc'; type: 'X86_CPUID_POLICY'; leaves: CpuidLeaf[] }
  | { layer: 'libxc'; type: 'X86_MSR_POLICY'; msrs: MsrEntry[] }
  | {
      layer: 'libxc';
      type: 'TANDEM_PAGE_XBZRLE';
      /** PFNs, strictly ascending. */
      pfns: number[];
      /** PageEncoding of each pfn. */
      encodings: number[];
      /** What each pfn carries: the raw page, nothing (zero), or its delta; views where possible. */
      payloads: Buffer[];
    }
  | { layer: 'libxc'; type: 'OPTIONAL'; code: number; data: Buffer };

export type LibxlRecord =
  | { layer: 'libxl'; type: 'END' | 'LIBXC_CONTEXT' | 'CHECKPOINT_END' }
  | { layer: 'libxl'; type: 'EMULATOR_XENSTORE_DATA'; emulatorId: number; index: number; entries: [string, string][] }
  | { layer: 'libxl'; type: 'EMULATOR_CONTEXT'; emulatorId: number; index: number; data: Buffer }
  | { layer: 'libxl'; type: 'CHECKPOINT_STATE'; controlId: number }
  | { layer: 'libxl'; type: 'OPTIONAL'; code: number; data: Buffer };

export type StreamRecord = LibxcRecord | LibxlRecord;

/** Numeric type code of a record. */
export function recordCode(rec: StreamRecord): number {
  if (rec.type === 'OPTIONAL') return rec.code;
  if (rec.type === 'TANDEM_PAGE_XBZRLE') return TandemType.TANDEM_PAGE_XBZRLE;
  return rec.layer === 'libxc' ? LibxcType[rec.type] : LibxlType[rec.type];
}

export interface ParseLimits {
  /** Pages one PAGE_DATA record may describe (Xen batches at most 1024). */
  maxPagesPerRecord: number;
  /** Highest PFN accepted. */
  maxPfn: number;
}

export interface RecordSite {
  offset: number;
  name: string;
}

const fail = (code: (typeof ErrorCodes)[keyof typeof ErrorCodes], detail: string, site: RecordSite): never => {
  throw new StreamError(code, detail, { offset: site.offset, record: site.name });
};

function expectLength(len: number, want: number, site: RecordSite): void {
  if (len !== want) fail(ErrorCodes.RECORD_BAD_LENGTH, `body length ${len}, expected ${want}`, site);
}

function expectMultiple(len: number, unit: number, min: number, site: RecordSite): void {
  if (len < min || len % unit !== 0) {
    fail(ErrorCodes.RECORD_BAD_LENGTH, `body length ${len}, expected a multiple of ${unit} of at least ${min}`, site);
  }
}

/** u64 read as a JS number, for fields known to fit in 53 bits after masking. */
const readU64 = (b: Buffer, at: number): bigint => b.readBigUInt64LE(at);

/**
 * Parses and validates one record body. `segments` are views of the body
 * (padding excluded) as it arrived; `length` is its byte count.
 */
export function parseRecord(
  layer: Layer,
  code: number,
  segments: readonly Buffer[],
  length: number,
  limits: ParseLimits,
  site: RecordSite,
): StreamRecord {
  if (layer === 'libxc' && code === LibxcType.PAGE_DATA) return parsePageData(segments, length, limits, site);
  if (layer === 'libxc' && code === TandemType.TANDEM_PAGE_XBZRLE) return parseXbzrlePages(segments, length, limits, site);
  const body = joinSegments(segments, length);
  return layer === 'libxc' ? parseLibxc(code, body, site) : parseLibxl(code, body, site);
}

function parsePageData(segments: readonly Buffer[], length: number, limits: ParseLimits, site: RecordSite): LibxcRecord {
  // "count (C) | (reserved)"; "Count is strictly > 0."
  if (length < 16) fail(ErrorCodes.RECORD_BAD_LENGTH, `body length ${length}, expected at least 16`, site);
  const cur = new SegmentCursor(segments);
  const head = cur.read(8);
  const count = head.readUInt32LE(0);
  if (head.readUInt32LE(4) !== 0) fail(ErrorCodes.RECORD_RESERVED_NONZERO, 'reserved field is not zero', site);
  if (count === 0) fail(ErrorCodes.RECORD_BAD_FIELD, 'count is 0; a PAGE_DATA record describes at least one page', site);
  if (count > limits.maxPagesPerRecord) {
    fail(ErrorCodes.RECORD_TOO_LARGE, `count ${count} exceeds the limit of ${limits.maxPagesPerRecord} pages`, site);
  }
  if (length < 8 + count * 8) fail(ErrorCodes.RECORD_BAD_LENGTH, `body length ${length} too short for ${count} pfns`, site);
  const words = cur.read(count * 8);
  const pfns = new Array<number>(count);
  const types = new Array<number>(count);
  let withData = 0;
  for (let i = 0; i < count; i++) {
    const lo = words.readUInt32LE(i * 8);
    const hi = words.readUInt32LE(i * 8 + 4);
    const type = hi >>> 28;
    // Bits 59-52 are reserved: hi bits 27-20.
    if ((hi & 0x0ff00000) !== 0) fail(ErrorCodes.RECORD_RESERVED_NONZERO, `reserved bits set in pfn[${i}]`, site);
    if (!isValidPageType(type)) fail(ErrorCodes.RECORD_BAD_PAGE_TYPE, `unrecognised page type 0x${type.toString(16)} in pfn[${i}]`, site);
    const pfn = (hi & 0x000fffff) * 2 ** 32 + lo;
    if (pfn > limits.maxPfn) fail(ErrorCodes.RECORD_BAD_FIELD, `pfn[${i}] 0x${pfn.toString(16)} exceeds the limit 0x${limits.maxPfn.toString(16)}`, site);
    pfns[i] = pfn;
    types[i] = type;
    if (pageTypeHasData(type)) withData++;
  }
  const want = 8 + count * 8 + withData * PAGE_SIZE;
  if (length !== want) {
    fail(ErrorCodes.RECORD_BAD_LENGTH, `body length ${length}, expected ${want} for ${count} pfns with ${withData} data pages`, site);
  }
  const pages = new Array<Buffer>(withData);
  for (let i = 0; i < withData; i++) pages[i] = cur.read(PAGE_SIZE);
  return { layer: 'libxc', type: 'PAGE_DATA', pfns, types, pages };
}

/** TANDEM_PAGE_XBZRLE: count and reserved, then per page a u64 pfn, a u16 encoding and a u16 payload length. */
export const XBZRLE_HEAD_BYTES = 8;
export const XBZRLE_ENTRY_BYTES = 12;

/**
 * Every length is checked against the body before anything is read out of
 * it, and every delta is walked against the page bound here, at the
 * record: what reaches the replica can always be applied, one page per
 * entry, never more.
 */
function parseXbzrlePages(segments: readonly Buffer[], length: number, limits: ParseLimits, site: RecordSite): LibxcRecord {
  if (length < XBZRLE_HEAD_BYTES + XBZRLE_ENTRY_BYTES) fail(ErrorCodes.RECORD_BAD_LENGTH, `body length ${length}, expected at least ${XBZRLE_HEAD_BYTES + XBZRLE_ENTRY_BYTES}`, site);
  const cur = new SegmentCursor(segments);
  const head = cur.read(XBZRLE_HEAD_BYTES);
  const count = head.readUInt32LE(0);
  if (head.readUInt32LE(4) !== 0) fail(ErrorCodes.RECORD_RESERVED_NONZERO, 'reserved field is not zero', site);
  if (count === 0) fail(ErrorCodes.RECORD_BAD_FIELD, 'count is 0; the record describes at least one page', site);
  if (count > limits.maxPagesPerRecord) fail(ErrorCodes.RECORD_TOO_LARGE, `count ${count} exceeds the limit of ${limits.maxPagesPerRecord} pages`, site);
  const tableEnd = XBZRLE_HEAD_BYTES + count * XBZRLE_ENTRY_BYTES;
  if (length < tableEnd) fail(ErrorCodes.RECORD_BAD_LENGTH, `body length ${length} too short for ${count} page entries`, site);
  const table = cur.read(count * XBZRLE_ENTRY_BYTES);
  const pfns = new Array<number>(count);
  const encodings = new Array<number>(count);
  const lengths = new Array<number>(count);
  let payloadBytes = 0;
  for (let i = 0; i < count; i++) {
    const at = i * XBZRLE_ENTRY_BYTES;
    const lo = table.readUInt32LE(at);
    const hi = table.readUInt32LE(at + 4);
    if (hi >= 2 ** (PFN_BITS - 32)) fail(ErrorCodes.RECORD_RESERVED_NONZERO, `bits above the pfn set in entry[${i}]`, site);
    const pfn = hi * 2 ** 32 + lo;
    if (pfn > limits.maxPfn) fail(ErrorCodes.RECORD_BAD_FIELD, `entry[${i}] pfn 0x${pfn.toString(16)} exceeds the limit 0x${limits.maxPfn.toString(16)}`, site);
    // Ascending, so a pfn comes once and the entries apply in any order to the same result.
    if (i > 0 && pfn <= pfns[i - 1]) fail(ErrorCodes.RECORD_BAD_FIELD, `entry[${i}] pfn 0x${pfn.toString(16)} does not ascend (after 0x${pfns[i - 1].toString(16)})`, site);
    const encoding = table.readUInt16LE(at + 8);
    const len = table.readUInt16LE(at + 10);
    const wrong =
      encoding === PageEncoding.RAW
        ? len !== PAGE_SIZE && `a raw page of ${len} bytes, expected ${PAGE_SIZE}`
        : encoding === PageEncoding.ZERO
          ? len !== 0 && `a zero page with ${len} payload bytes, expected 0`
          : encoding === PageEncoding.DELTA
            ? len > MAX_DELTA_BYTES && `a delta of ${len} bytes, not smaller than a page`
            : `unknown encoding ${encoding}`;
    if (wrong !== false) fail(ErrorCodes.RECORD_BAD_DELTA, `entry[${i}] (pfn 0x${pfn.toString(16)}): ${wrong}`, site);
    pfns[i] = pfn;
    encodings[i] = encoding;
    lengths[i] = len;
    payloadBytes += len;
  }
  if (length !== tableEnd + payloadBytes) {
    fail(ErrorCodes.RECORD_BAD_LENGTH, `body length ${length}, expected ${tableEnd + payloadBytes} for ${count} entries with ${payloadBytes} payload bytes`, site);
  }
  const payloads = new Array<Buffer>(count);
  for (let i = 0; i < count; i++) {
    const payload = cur.read(lengths[i]);
    if (encodings[i] === PageEncoding.DELTA) {
      const wrong = checkXbzrle(payload);
      if (wrong !== undefined) fail(ErrorCodes.RECORD_BAD_DELTA, `entry[${i}] (pfn 0x${pfns[i].toString(16)}): ${wrong}`, site);
    }
    payloads[i] = payload;
  }
  return { layer: 'libxc', type: 'TANDEM_PAGE_XBZRLE', pfns, encodings, payloads };
}

/** Encodes a TANDEM_PAGE_XBZRLE head and entry table; the payloads follow as given. */
export function encodeXbzrleHead(pfns: ArrayLike<number>, encodings: ArrayLike<number>, payloads: readonly Buffer[]): Buffer {
  const count = pfns.length;
  const b = Buffer.allocUnsafe(XBZRLE_HEAD_BYTES + count * XBZRLE_ENTRY_BYTES);
  b.writeUInt32LE(count, 0);
  b.writeUInt32LE(0, 4);
  for (let i = 0; i < count; i++) {
    const at = XBZRLE_HEAD_BYTES + i * XBZRLE_ENTRY_BYTES;
    b.writeUInt32LE(pfns[i] % 2 ** 32, at);
    b.writeUInt32LE(Math.floor(pfns[i] / 2 ** 32), at + 4);
    b.writeUInt16LE(encodings[i], at + 8);
    b.writeUInt16LE(payloads[i].length, at + 10);
  }
  return b;
}

const VCPU_TYPES: Partial<Record<number, VcpuRecordType>> = {
  [LibxcType.X86_PV_VCPU_BASIC]: 'X86_PV_VCPU_BASIC',
  [LibxcType.X86_PV_VCPU_EXTENDED]: 'X86_PV_VCPU_EXTENDED',
  [LibxcType.X86_PV_VCPU_XSAVE]: 'X86_PV_VCPU_XSAVE',
  [LibxcType.X86_PV_VCPU_MSRS]: 'X86_PV_VCPU_MSRS',
};

function parseLibxc(code: number, body: Buffer, site: RecordSite): LibxcRecord {
  const len = body.length;
  switch (code) {
    case LibxcType.END:
    case LibxcType.VERIFY:
    case LibxcType.CHECKPOINT:
    case LibxcType.STATIC_DATA_END: {
      expectLength(len, 0, site);
      const type = code === LibxcType.END ? 'END' : code === LibxcType.VERIFY ? 'VERIFY' : code === LibxcType.CHECKPOINT ? 'CHECKPOINT' : 'STATIC_DATA_END';
      return { layer: 'libxc', type };
    }
    case LibxcType.X86_PV_INFO: {
      expectLength(len, X86_PV_INFO_SIZE, site);
      const guestWidth = body.readUInt8(0);
      const ptLevels = body.readUInt8(1);
      if (guestWidth !== 4 && guestWidth !== 8) fail(ErrorCodes.RECORD_BAD_FIELD, `guest width ${guestWidth}, expected 4 or 8`, site);
      if (ptLevels !== 3 && ptLevels !== 4) fail(ErrorCodes.RECORD_BAD_FIELD, `pt_levels ${ptLevels}, expected 3 or 4`, site);
      if (body.readUInt16LE(2) !== 0 || body.readUInt32LE(4) !== 0) fail(ErrorCodes.RECORD_RESERVED_NONZERO, 'reserved field is not zero', site);
      return { layer: 'libxc', type: 'X86_PV_INFO', guestWidth, ptLevels };
    }
    case LibxcType.X86_PV_P2M_FRAMES: {
      expectMultiple(len, 8, 8, site);
      const startPfn = body.readUInt32LE(0);
      const endPfn = body.readUInt32LE(4);
      if (endPfn < startPfn) fail(ErrorCodes.RECORD_BAD_FIELD, `p2m_end_pfn ${endPfn} below p2m_start_pfn ${startPfn}`, site);
      const frames: bigint[] = [];
      for (let at = 8; at < len; at += 8) frames.push(readU64(body, at));
      return { layer: 'libxc', type: 'X86_PV_P2M_FRAMES', startPfn, endPfn, frames };
    }
    case LibxcType.X86_PV_VCPU_BASIC:
    case LibxcType.X86_PV_VCPU_EXTENDED:
    case LibxcType.X86_PV_VCPU_XSAVE:
    case LibxcType.X86_PV_VCPU_MSRS: {
      // Errata 1: zero-content vcpu records (header only) are tolerated.
      if (len < VCPU_HEADER_SIZE) fail(ErrorCodes.RECORD_BAD_LENGTH, `body length ${len}, expected at least ${VCPU_HEADER_SIZE}`, site);
      if (body.readUInt32LE(4) !== 0) fail(ErrorCodes.RECORD_RESERVED_NONZERO, 'reserved field is not zero', site);
      return { layer: 'libxc', type: VCPU_TYPES[code]!, vcpuId: body.readUInt32LE(0), context: body.subarray(VCPU_HEADER_SIZE) };
    }
    case LibxcType.SHARED_INFO:
      // "This record should be exactly 1 page long."
      expectLength(len, PAGE_SIZE, site);
      return { layer: 'libxc', type: 'SHARED_INFO', data: body };
    case LibxcType.X86_TSC_INFO:
      expectLength(len, TSC_INFO_SIZE, site);
      if (body.readUInt32LE(20) !== 0) fail(ErrorCodes.RECORD_RESERVED_NONZERO, 'reserved field is not zero', site);
      return {
        layer: 'libxc',
        type: 'X86_TSC_INFO',
        mode: body.readUInt32LE(0),
        khz: body.readUInt32LE(4),
        nsec: readU64(body, 8),
        incarnation: body.readUInt32LE(16),
      };
    case LibxcType.HVM_CONTEXT:
      if (len === 0) fail(ErrorCodes.RECORD_BAD_LENGTH, 'empty HVM context', site);
      return { layer: 'libxc', type: 'HVM_CONTEXT', data: body };
    case LibxcType.HVM_PARAMS: {
      if (len < 8) fail(ErrorCodes.RECORD_BAD_LENGTH, `body length ${len}, expected at least 8`, site);
      const count = body.readUInt32LE(0);
      if (body.readUInt32LE(4) !== 0) fail(ErrorCodes.RECORD_RESERVED_NONZERO, 'reserved field is not zero', site);
      expectLength(len, 8 + count * HVM_PARAM_SIZE, site);
      const params: HvmParam[] = [];
      for (let i = 0; i < count; i++) {
        params.push({ index: readU64(body, 8 + i * 16), value: readU64(body, 16 + i * 16) });
      }
      return { layer: 'libxc', type: 'HVM_PARAMS', params };
    }
    case LibxcType.CHECKPOINT_DIRTY_PFN_LIST: {
      // "The count of pfns is: record->length/sizeof(uint64_t)."
      expectMultiple(len, 8, 0, site);
      const pfns: bigint[] = [];
      for (let at = 0; at < len; at += 8) pfns.push(readU64(body, at));
      return { layer: 'libxc', type: 'CHECKPOINT_DIRTY_PFN_LIST', pfns };
    }
    case LibxcType.X86_CPUID_POLICY: {
      expectMultiple(len, CPUID_LEAF_SIZE, CPUID_LEAF_SIZE, site);
      const leaves: CpuidLeaf[] = [];
      for (let at = 0; at < len; at += CPUID_LEAF_SIZE) {
        leaves.push({
          leaf: body.readUInt32LE(at),
          subleaf: body.readUInt32LE(at + 4),
          a: body.readUInt32LE(at + 8),
          b: body.readUInt32LE(at + 12),
          c: body.readUInt32LE(at + 16),
          d: body.readUInt32LE(at + 20),
        });
      }
      return { layer: 'libxc', type: 'X86_CPUID_POLICY', leaves };
    }
    case LibxcType.X86_MSR_POLICY: {
      expectMultiple(len, MSR_ENTRY_SIZE, MSR_ENTRY_SIZE, site);
      const msrs: MsrEntry[] = [];
      for (let at = 0; at < len; at += MSR_ENTRY_SIZE) {
        msrs.push({ idx: body.readUInt32LE(at), flags: body.readUInt32LE(at + 4), val: readU64(body, at + 8) });
      }
      return { layer: 'libxc', type: 'X86_MSR_POLICY', msrs };
    }
    case LibxcType.TOOLSTACK:
      return fail(ErrorCodes.RECORD_DEPRECATED, 'TOOLSTACK records are deprecated and must not appear in a stream', site);
    default:
      return { layer: 'libxc', type: 'OPTIONAL', code, data: body };
  }
}

function parseEmulatorHeader(body: Buffer, site: RecordSite): { emulatorId: number; index: number } {
  if (body.length < EMULATOR_HEADER_SIZE) fail(ErrorCodes.RECORD_BAD_LENGTH, `body length ${body.length}, expected at least ${EMULATOR_HEADER_SIZE}`, site);
  const emulatorId = body.readUInt32LE(0);
  // 0x3 and above are "Reserved for future emulators".
  if (emulatorId > 2) fail(ErrorCodes.RECORD_BAD_FIELD, `unrecognised emulator id 0x${emulatorId.toString(16)}`, site);
  return { emulatorId, index: body.readUInt32LE(4) };
}

/** Keys are "strictly alphanumeric ASCII and -/_@"; values human-readable ASCII. */
const XS_KEY = /^[A-Za-z0-9\-/_@]+$/;
const XS_VALUE = /^[\x20-\x7e\t\n\r]*$/;

function parseXenstoreData(data: Buffer, site: RecordSite): [string, string][] {
  if (data.length === 0) return [];
  if (data[data.length - 1] !== 0) fail(ErrorCodes.RECORD_BAD_FIELD, 'xenstore data is not NUL terminated', site);
  const parts = data.subarray(0, data.length - 1).toString('latin1').split('\0');
  if (parts.length % 2 !== 0) fail(ErrorCodes.RECORD_BAD_FIELD, `xenstore data has ${parts.length} strings, expected key/value pairs`, site);
  const entries: [string, string][] = [];
  for (let i = 0; i < parts.length; i += 2) {
    if (!XS_KEY.test(parts[i])) fail(ErrorCodes.RECORD_BAD_FIELD, `xenstore key #${i / 2} has characters outside [A-Za-z0-9-/_@]`, site);
    if (!XS_VALUE.test(parts[i + 1])) fail(ErrorCodes.RECORD_BAD_FIELD, `xenstore value of ${parts[i]} is not printable ASCII`, site);
    entries.push([parts[i], parts[i + 1]]);
  }
  return entries;
}

function parseLibxl(code: number, body: Buffer, site: RecordSite): LibxlRecord {
  const len = body.length;
  switch (code) {
    case LibxlType.END:
    case LibxlType.LIBXC_CONTEXT:
    case LibxlType.CHECKPOINT_END: {
      expectLength(len, 0, site);
      const type = code === LibxlType.END ? 'END' : code === LibxlType.LIBXC_CONTEXT ? 'LIBXC_CONTEXT' : 'CHECKPOINT_END';
      return { layer: 'libxl', type };
    }
    case LibxlType.EMULATOR_XENSTORE_DATA: {
      const h = parseEmulatorHeader(body, site);
      return { layer: 'libxl', type: 'EMULATOR_XENSTORE_DATA', ...h, entries: parseXenstoreData(body.subarray(EMULATOR_HEADER_SIZE), site) };
    }
    case LibxlType.EMULATOR_CONTEXT: {
      const h = parseEmulatorHeader(body, site);
      return { layer: 'libxl', type: 'EMULATOR_CONTEXT', ...h, data: body.subarray(EMULATOR_HEADER_SIZE) };
    }
    case LibxlType.CHECKPOINT_STATE: {
      // libxl writes a bare u32 (length 4); the spec draws it with 4 octets of padding (length 8).
      if (len !== 4 && len !== 8) fail(ErrorCodes.RECORD_BAD_LENGTH, `body length ${len}, expected 4 or 8`, site);
      if (len === 8 && body.readUInt32LE(4) !== 0) fail(ErrorCodes.RECORD_RESERVED_NONZERO, 'padding field is not zero', site);
      const controlId = body.readUInt32LE(0);
      if (controlId > 3) fail(ErrorCodes.RECORD_BAD_FIELD, `unknown control_id ${controlId}`, site);
      return { layer: 'libxl', type: 'CHECKPOINT_STATE', controlId };
    }
    default:
      return { layer: 'libxl', type: 'OPTIONAL', code, data: body };
  }
}

// ---------------------------------------------------------------------------
// Encoding: record body as a list of buffers (page data passed by reference).
// ---------------------------------------------------------------------------

function u32s(...vals: number[]): Buffer {
  const b = Buffer.allocUnsafe(vals.length * 4);
  vals.forEach((v, i) => b.writeUInt32LE(v, i * 4));
  return b;
}

/** Encodes a PAGE_DATA header and pfn array; the pages follow as given. */
export function encodePageDataHead(pfns: ArrayLike<number>, types: ArrayLike<number> | number): Buffer {
  const count = pfns.length;
  const b = Buffer.allocUnsafe(8 + count * 8);
  b.writeUInt32LE(count, 0);
  b.writeUInt32LE(0, 4);
  for (let i = 0; i < count; i++) {
    const pfn = pfns[i];
    const type = typeof types === 'number' ? types : types[i];
    b.writeUInt32LE(pfn % 2 ** 32, 8 + i * 8);
    b.writeUInt32LE(((type << 28) | Math.floor(pfn / 2 ** 32)) >>> 0, 12 + i * 8);
  }
  return b;
}

/**
 * Joins views that lie back to back in the same memory into one view (no
 * copy): staged pages, and runs of consecutive pfns in guest RAM, then go to
 * the socket as one iovec entry instead of one per page.
 */
export function coalesceAdjacent(parts: readonly Buffer[]): Buffer[] {
  const out: Buffer[] = [];
  let i = 0;
  while (i < parts.length) {
    const first = parts[i];
    let end = first.byteOffset + first.length;
    let j = i + 1;
    while (j < parts.length && parts[j].buffer === first.buffer && parts[j].byteOffset === end) {
      end += parts[j].length;
      j++;
    }
    out.push(j === i + 1 ? first : Buffer.from(first.buffer, first.byteOffset, end - first.byteOffset));
    i = j;
  }
  return out;
}

/** Checks what the encoder would otherwise write wrong; a bug here is ours, not the peer's. */
function assertEncodable(cond: boolean, what: string): void {
  if (!cond) throw new RangeError(`cannot encode record: ${what}`);
}

export function encodeRecordBody(rec: StreamRecord): Buffer[] {
  if (rec.layer === 'libxl') return encodeLibxlBody(rec);
  switch (rec.type) {
    case 'END':
    case 'VERIFY':
    case 'CHECKPOINT':
    case 'STATIC_DATA_END':
      return [];
    case 'PAGE_DATA': {
      assertEncodable(rec.pfns.length > 0 && rec.pfns.length === rec.types.length, 'pfns and types must be non-empty and equal in length');
      let withData = 0;
      for (let i = 0; i < rec.types.length; i++) {
        assertEncodable(isValidPageType(rec.types[i]) && Number.isInteger(rec.pfns[i]) && rec.pfns[i] >= 0 && rec.pfns[i] < 2 ** PFN_BITS, `bad pfn/type at ${i}`);
        if (pageTypeHasData(rec.types[i])) withData++;
      }
      assertEncodable(withData === rec.pages.length && rec.pages.every((p) => p.length === PAGE_SIZE), 'one 4 KiB page per data-bearing pfn');
      return [encodePageDataHead(rec.pfns, rec.types), ...coalesceAdjacent(rec.pages)];
    }
    case 'TANDEM_PAGE_XBZRLE': {
      const n = rec.pfns.length;
      assertEncodable(n > 0 && n === rec.encodings.length && n === rec.payloads.length, 'pfns, encodings and payloads non-empty and equal in length');
      for (let i = 0; i < n; i++) {
        const pfn = rec.pfns[i];
        assertEncodable(Number.isInteger(pfn) && pfn >= 0 && pfn < 2 ** PFN_BITS && (i === 0 || pfn > rec.pfns[i - 1]), `pfn at ${i} in range and ascending`);
        const len = rec.payloads[i].length;
        const e = rec.encodings[i];
        const fits = e === PageEncoding.RAW ? len === PAGE_SIZE : e === PageEncoding.ZERO ? len === 0 : e === PageEncoding.DELTA && len <= MAX_DELTA_BYTES;
        assertEncodable(fits, `payload of entry ${i} fits its encoding`);
      }
      return [encodeXbzrleHead(rec.pfns, rec.encodings, rec.payloads), ...coalesceAdjacent(rec.payloads.filter((p) => p.length > 0))];
    }
    case 'X86_PV_INFO': {
      assertEncodable((rec.guestWidth === 4 || rec.guestWidth === 8) && (rec.ptLevels === 3 || rec.ptLevels === 4), 'guest width 4 or 8, pt_levels 3 or 4');
      const b = Buffer.alloc(X86_PV_INFO_SIZE);
      b.writeUInt8(rec.guestWidth, 0);
      b.writeUInt8(rec.ptLevels, 1);
      return [b];
    }
    case 'X86_PV_P2M_FRAMES': {
      assertEncodable(rec.endPfn >= rec.startPfn, 'p2m_end_pfn not below p2m_start_pfn');
      const b = Buffer.allocUnsafe(8 + rec.frames.length * 8);
      b.writeUInt32LE(rec.startPfn, 0);
      b.writeUInt32LE(rec.endPfn, 4);
      rec.frames.forEach((f, i) => b.writeBigUInt64LE(f, 8 + i * 8));
      return [b];
    }
    case 'X86_PV_VCPU_BASIC':
    case 'X86_PV_VCPU_EXTENDED':
    case 'X86_PV_VCPU_XSAVE':
    case 'X86_PV_VCPU_MSRS':
      return [u32s(rec.vcpuId, 0), rec.context];
    case 'SHARED_INFO':
      assertEncodable(rec.data.length === PAGE_SIZE, 'SHARED_INFO is one page');
      return [rec.data];
    case 'X86_TSC_INFO': {
      const b = Buffer.alloc(TSC_INFO_SIZE);
      b.writeUInt32LE(rec.mode, 0);
      b.writeUInt32LE(rec.khz, 4);
      b.writeBigUInt64LE(rec.nsec, 8);
      b.writeUInt32LE(rec.incarnation, 16);
      return [b];
    }
    case 'HVM_CONTEXT':
      assertEncodable(rec.data.length > 0, 'HVM_CONTEXT is not empty');
      return [rec.data];
    case 'HVM_PARAMS': {
      const b = Buffer.allocUnsafe(8 + rec.params.length * HVM_PARAM_SIZE);
      b.writeUInt32LE(rec.params.length, 0);
      b.writeUInt32LE(0, 4);
      rec.params.forEach((p, i) => {
        b.writeBigUInt64LE(p.index, 8 + i * 16);
        b.writeBigUInt64LE(p.value, 16 + i * 16);
      });
      return [b];
    }
    case 'CHECKPOINT_DIRTY_PFN_LIST': {
      const b = Buffer.allocUnsafe(rec.pfns.length * 8);
      rec.pfns.forEach((p, i) => b.writeBigUInt64LE(p, i * 8));
      return [b];
    }
    case 'X86_CPUID_POLICY': {
      const b = Buffer.allocUnsafe(rec.leaves.length * CPUID_LEAF_SIZE);
      rec.leaves.forEach((l, i) => {
        const at = i * CPUID_LEAF_SIZE;
        b.writeUInt32LE(l.leaf, at);
        b.writeUInt32LE(l.subleaf, at + 4);
        b.writeUInt32LE(l.a, at + 8);
        b.writeUInt32LE(l.b, at + 12);
        b.writeUInt32LE(l.c, at + 16);
        b.writeUInt32LE(l.d, at + 20);
      });
      return [b];
    }
    case 'X86_MSR_POLICY': {
      const b = Buffer.allocUnsafe(rec.msrs.length * MSR_ENTRY_SIZE);
      rec.msrs.forEach((m, i) => {
        b.writeUInt32LE(m.idx, i * 16);
        b.writeUInt32LE(m.flags, i * 16 + 4);
        b.writeBigUInt64LE(m.val, i * 16 + 8);
      });
      return [b];
    }
    case 'OPTIONAL':
      return [rec.data];
  }
}

function encodeLibxlBody(rec: LibxlRecord): Buffer[] {
  switch (rec.type) {
    case 'END':
    case 'LIBXC_CONTEXT':
    case 'CHECKPOINT_END':
      return [];
    case 'EMULATOR_XENSTORE_DATA': {
      assertEncodable(rec.emulatorId <= 2, 'emulator id 0..2');
      assertEncodable(rec.entries.every(([k, v]) => XS_KEY.test(k) && XS_VALUE.test(v)), 'xenstore keys of [A-Za-z0-9-/_@], printable values');
      const text = rec.entries.map(([k, v]) => `${k}\0${v}\0`).join('');
      return [u32s(rec.emulatorId, rec.index), Buffer.from(text, 'latin1')];
    }
    case 'EMULATOR_CONTEXT':
      assertEncodable(rec.emulatorId <= 2, 'emulator id 0..2');
      return [u32s(rec.emulatorId, rec.index), rec.data];
    case 'CHECKPOINT_STATE':
      assertEncodable(Number.isInteger(rec.controlId) && rec.controlId >= 0 && rec.controlId <= 3, 'control id 0..3');
      // Byte-exact with libxl: the body is the bare u32 control id.
      return [u32s(rec.controlId)];
    case 'OPTIONAL':
      return [rec.data];
  }
}
