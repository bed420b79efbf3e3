/**
 * Shared fixtures for the src/stream tests.
 *
 * The golden hex below is written by hand from the record layouts in Xen's
 * libxc-migration-stream (revision 3) and libxl-migration-stream (revision 2)
 * specs: one group of hex digits per field, integers little-endian in records
 * and the domain header, big-endian in the image and libxl headers. None of it
 * is produced by Tandem's encoder, so the encoder can be checked against it.
 */
import assert from 'node:assert/strict';
import { StreamError, type ErrorCode } from '../../src/errors.js';
import { StreamDecoder, type DecoderOptions, type StreamItem } from '../../src/stream/decoder.js';
import { StreamEncoder } from '../../src/stream/encoder.js';
import { DomainType, PAGE_SIZE, PageType, type Layer } from '../../src/stream/format.js';
import type { DomainHeader } from '../../src/stream/headers.js';
import type { Framing } from '../../src/stream/layout.js';
import type { LibxcRecord, LibxlRecord, StreamRecord } from '../../src/stream/records.js';
import { uniform } from '../../src/util/xorshift.js';

// ---------------------------------------------------------------------------
// Hex helpers
// ---------------------------------------------------------------------------

/** Joins hex fragments into a Buffer; whitespace and `|` are ignored. */
export function hex(...parts: string[]): Buffer {
  const s = parts.join('').replace(/[\s|]/g, '');
  if (!/^(?:[0-9a-fA-F]{2})*$/.test(s)) throw new Error(`malformed hex fixture near "${s.slice(0, 32)}"`);
  return Buffer.from(s, 'hex');
}

/** `byte` (two hex digits) repeated `n` times, as hex. */
export const rep = (byte: string, n: number): string => byte.repeat(n);

/** A 4 KiB page filled with one byte value. */
export const page = (fill: number): Buffer => Buffer.alloc(PAGE_SIZE, fill);

// ---------------------------------------------------------------------------
// Golden headers
// ---------------------------------------------------------------------------

/** Image header: marker, id "XENF", version, options (u16), reserved (u16 + u32); big-endian. */
export const IMAGE_HEADER_V2_HEX = 'ffffffff ffffffff | 58454e46 | 00000002 | 0000 | 0000 | 00000000';
export const IMAGE_HEADER_V3_HEX = 'ffffffff ffffffff | 58454e46 | 00000003 | 0000 | 0000 | 00000000';
/** Domain header: type (u32), page_shift (u16), reserved (u16), xen_major, xen_minor; little-endian. */
export const DOMAIN_HEADER_HVM_417_HEX = '02000000 | 0c00 | 0000 | 04000000 | 11000000';
export const DOMAIN_HEADER_PV_417_HEX = '01000000 | 0c00 | 0000 | 04000000 | 11000000';
/** libxl header: ident "LibxlFmt", version 2, options; big-endian. */
export const LIBXL_HEADER_HEX = '4c6962786c466d74 | 00000002 | 00000000';
/** The same with the "legacy format" option bit (bit 1) set. */
export const LIBXL_HEADER_LEGACY_HEX = '4c6962786c466d74 | 00000002 | 00000002';

export const HVM_417: DomainHeader = { type: DomainType.X86_HVM, pageShift: 12, xenMajor: 4, xenMinor: 17 };
export const PV_417: DomainHeader = { type: DomainType.X86_PV, pageShift: 12, xenMajor: 4, xenMinor: 17 };

// ---------------------------------------------------------------------------
// Golden records: header (type, body_length), body, zero padding to 8 octets
// ---------------------------------------------------------------------------

export interface Golden<R extends StreamRecord = StreamRecord> {
  layer: Layer;
  /** The whole framed record. */
  hex: string;
  /** What decoding it must yield. */
  record: R;
}

const xc = <R extends LibxcRecord>(hexText: string, record: R): Golden<R> => ({ layer: 'libxc', hex: hexText, record });
const xl = <R extends LibxlRecord>(hexText: string, record: R): Golden<R> => ({ layer: 'libxl', hex: hexText, record });

export const LIBXC = {
  END: xc('00000000 00000000', { layer: 'libxc', type: 'END' }),
  PAGE_DATA: xc(
    [
      '01000000 28200000', // type 1, length 8 + 4 * 8 + 2 * 4096 = 8232
      '04000000 00000000', // count 4, reserved
      '34120000 00000000', // pfn 0x1234, type NOTAB (0x0)
      '56000000 000000f0', // pfn 0x56, type XTAB (0xf): no page data
      '78563412 0f000010', // pfn 0xf_1234_5678 (above 2^32), type L1TAB (0x1)
      'ffffffff ffff0fe0', // pfn 2^52 - 1, type XALLOC (0xe): no page data
      rep('aa', 4096), // page of pfn 0x1234
      rep('5b', 4096), // page of pfn 0xf_1234_5678
    ].join(''),
    {
      layer: 'libxc',
      type: 'PAGE_DATA',
      pfns: [0x1234, 0x56, 0xf_1234_5678, 2 ** 52 - 1],
      types: [PageType.NOTAB, PageType.XTAB, PageType.L1TAB, PageType.XALLOC],
      pages: [page(0xaa), page(0x5b)],
    },
  ),
  X86_PV_INFO: xc('02000000 08000000 | 08 04 0000 00000000', { layer: 'libxc', type: 'X86_PV_INFO', guestWidth: 8, ptLevels: 4 }),
  X86_PV_P2M_FRAMES: xc(
    '03000000 18000000 | 00000000 ff030000 | 4523010000000000 | 0100000001000000',
    { layer: 'libxc', type: 'X86_PV_P2M_FRAMES', startPfn: 0, endPfn: 1023, frames: [0x12345n, 0x1_0000_0001n] },
  ),
  X86_PV_VCPU_BASIC: xc(
    '04000000 0d000000 | 01000000 00000000 | 0102030405 | 000000',
    { layer: 'libxc', type: 'X86_PV_VCPU_BASIC', vcpuId: 1, context: hex('0102030405') },
  ),
  X86_PV_VCPU_EXTENDED: xc(
    '05000000 18000000 | 00000000 00000000 | 00112233445566778899aabbccddeeff',
    { layer: 'libxc', type: 'X86_PV_VCPU_EXTENDED', vcpuId: 0, context: hex('00112233445566778899aabbccddeeff') },
  ),
  X86_PV_VCPU_XSAVE: xc(
    '06000000 14000000 | 02000000 00000000 | c0ffee00 11111111 22222222 | 00000000',
    { layer: 'libxc', type: 'X86_PV_VCPU_XSAVE', vcpuId: 2, context: hex('c0ffee00 11111111 22222222') },
  ),
  X86_PV_VCPU_MSRS: xc(
    // One xen_domctl_vcpu_msr: index 0xc0000103 (TSC_AUX), reserved, value 7.
    '0c000000 18000000 | 03000000 00000000 | 030100c0 00000000 0700000000000000',
    { layer: 'libxc', type: 'X86_PV_VCPU_MSRS', vcpuId: 3, context: hex('030100c0 00000000 0700000000000000') },
  ),
  SHARED_INFO: xc('07000000 00100000' + rep('5a', 4096), { layer: 'libxc', type: 'SHARED_INFO', data: page(0x5a) }),
  X86_TSC_INFO: xc(
    '08000000 18000000 | 01000000 c0c62d00 | efcdab8967452301 | 07000000 00000000',
    { layer: 'libxc', type: 'X86_TSC_INFO', mode: 1, khz: 3_000_000, nsec: 0x0123_4567_89ab_cdefn, incarnation: 7 },
  ),
  HVM_CONTEXT: xc(
    '09000000 0d000000 | feedface cafebeef 0102030405 | 000000',
    { layer: 'libxc', type: 'HVM_CONTEXT', data: hex('feedface cafebeef 0102030405') },
  ),
  HVM_PARAMS: xc(
    '0a000000 28000000 | 02000000 00000000 | 0c00000000000000 fcff0f0000000000 | 0200000000000000 0000000001000000',
    {
      layer: 'libxc',
      type: 'HVM_PARAMS',
      params: [
        { index: 12n, value: 0xffffcn },
        { index: 2n, value: 0x1_0000_0000n },
      ],
    },
  ),
  VERIFY: xc('0d000000 00000000', { layer: 'libxc', type: 'VERIFY' }),
  CHECKPOINT: xc('0e000000 00000000', { layer: 'libxc', type: 'CHECKPOINT' }),
  CHECKPOINT_DIRTY_PFN_LIST: xc(
    '0f000000 10000000 | 1000000000000000 | 8967452301000000',
    { layer: 'libxc', type: 'CHECKPOINT_DIRTY_PFN_LIST', pfns: [0x10n, 0x1_2345_6789n] },
  ),
  STATIC_DATA_END: xc('10000000 00000000', { layer: 'libxc', type: 'STATIC_DATA_END' }),
  X86_CPUID_POLICY: xc(
    // Two xen_cpuid_leaf_t: leaf 0 ("GenuineIntel", max leaf 0xd), leaf 7 subleaf 0.
    '11000000 30000000 | 00000000 ffffffff 0d000000 47656e75 6e74656c 696e6549 | 07000000 00000000 00000000 01000000 00000000 00000000',
    {
      layer: 'libxc',
      type: 'X86_CPUID_POLICY',
      leaves: [
        { leaf: 0, subleaf: 0xffffffff, a: 0xd, b: 0x756e6547, c: 0x6c65746e, d: 0x49656e69 },
        { leaf: 7, subleaf: 0, a: 0, b: 1, c: 0, d: 0 },
      ],
    },
  ),
  X86_MSR_POLICY: xc(
    // Two xen_msr_entry_t: idx, flags, val.
    '12000000 20000000 | ce000000 00000000 0000008000000000 | 0a010000 00000000 0000000001000000',
    {
      layer: 'libxc',
      type: 'X86_MSR_POLICY',
      msrs: [
        { idx: 0xce, flags: 0, val: 0x8000_0000n },
        { idx: 0x10a, flags: 0, val: 0x1_0000_0000n },
      ],
    },
  ),
  OPTIONAL: xc('23010080 03000000 | abcdef | 0000000000', { layer: 'libxc', type: 'OPTIONAL', code: 0x80000123, data: hex('abcdef') }),
} as const;

export const LIBXL = {
  END: xl('00000000 00000000', { layer: 'libxl', type: 'END' }),
  LIBXC_CONTEXT: xl('01000000 00000000', { layer: 'libxl', type: 'LIBXC_CONTEXT' }),
  EMULATOR_XENSTORE_DATA: xl(
    [
      '02000000 27000000', // length 8 + 31 = 39
      '02000000 00000000', // emulator_id 2 (QEMU upstream), index 0
      '706879736d61702f312f73697a65 00', // "physmap/1/size"
      '383030303030 00', // "800000"
      '785f79407a2d30 00', // "x_y@z-0"
      '00', // ""
      '00', // padding
    ].join(''),
    {
      layer: 'libxl',
      type: 'EMULATOR_XENSTORE_DATA',
      emulatorId: 2,
      index: 0,
      entries: [
        ['physmap/1/size', '800000'],
        ['x_y@z-0', ''],
      ],
    },
  ),
  EMULATOR_CONTEXT: xl(
    // emulator_id 1 (QEMU traditional), index 1, a 9-byte blob, 7 bytes of padding.
    '03000000 11000000 | 01000000 01000000 | 5145564d 00000003 78 | 00000000000000',
    { layer: 'libxl', type: 'EMULATOR_CONTEXT', emulatorId: 1, index: 1, data: hex('5145564d 00000003 78') },
  ),
  CHECKPOINT_END: xl('04000000 00000000', { layer: 'libxl', type: 'CHECKPOINT_END' }),
  /** Body is the bare u32 control_id, as libxl writes it; 4 bytes of padding. */
  CHECKPOINT_STATE: xl('05000000 04000000 | 02000000 | 00000000', { layer: 'libxl', type: 'CHECKPOINT_STATE', controlId: 2 }),
  OPTIONAL: xl('01000080 08000000 | 0123456789abcdef', { layer: 'libxl', type: 'OPTIONAL', code: 0x80000001, data: hex('0123456789abcdef') }),
} as const;

/** CHECKPOINT_STATE drawn as in the spec: control_id and 4 octets of zero padding inside the body. */
export const CHECKPOINT_STATE_LEN8_HEX = '05000000 08000000 | 02000000 00000000';

/** Type code and body of a golden record, read straight from its hex. */
export function goldenParts(g: Golden): { code: number; length: number; body: Buffer; framed: Buffer } {
  const framed = hex(g.hex);
  const code = framed.readUInt32LE(0);
  const length = framed.readUInt32LE(4);
  return { code, length, body: framed.subarray(8, 8 + length), framed };
}

/**
 * A whole libxl v3 HVM stream, by hand: header, LIBXC_CONTEXT, libxc image
 * and domain headers, static data, one PAGE_DATA, the end-of-stream HVM
 * records, libxc END, the emulator records and libxl END.
 */
/** A stream item without its position. */
export type ItemAt0 = StreamItem extends infer T ? (T extends StreamItem ? Omit<T, 'offset' | 'end'> : never) : never;

export const GOLDEN_LIBXL_STREAM_PARTS: readonly { hex: string; item: ItemAt0 }[] = [
  { hex: LIBXL_HEADER_HEX, item: { kind: 'libxl-header', header: { version: 2, legacy: false } } },
  ...[LIBXL.LIBXC_CONTEXT].map(recordPart),
  { hex: IMAGE_HEADER_V3_HEX, item: { kind: 'image-header', header: { version: 3 } } },
  { hex: DOMAIN_HEADER_HVM_417_HEX, item: { kind: 'domain-header', header: HVM_417 } },
  ...[
    LIBXC.X86_CPUID_POLICY,
    LIBXC.X86_MSR_POLICY,
    LIBXC.STATIC_DATA_END,
    LIBXC.PAGE_DATA,
    LIBXC.X86_TSC_INFO,
    LIBXC.HVM_PARAMS,
    LIBXC.HVM_CONTEXT,
    LIBXC.END,
    LIBXL.EMULATOR_XENSTORE_DATA,
    LIBXL.EMULATOR_CONTEXT,
    LIBXL.END,
  ].map(recordPart),
];

function recordPart(g: Golden): { hex: string; item: ItemAt0 } {
  return { hex: g.hex, item: { kind: 'record', length: goldenParts(g).length, record: g.record } };
}

/** The hand-written stream and the items (with offsets) it decodes to. */
export function goldenLibxlStream(): { bytes: Buffer; items: StreamItem[] } {
  const items: StreamItem[] = [];
  const parts: Buffer[] = [];
  let at = 0;
  for (const p of GOLDEN_LIBXL_STREAM_PARTS) {
    const b = hex(p.hex);
    parts.push(b);
    items.push({ ...p.item, offset: at, end: at + b.length });
    at += b.length;
  }
  return { bytes: Buffer.concat(parts), items };
}

// ---------------------------------------------------------------------------
// Raw builders for malformed input (independent of the encoder)
// ---------------------------------------------------------------------------

/** A framed record: header with body_length = body length, then `padding` (zeros to 8 octets by default). */
export function rawRecord(type: number, body: Buffer | string = '', padding?: Buffer | string): Buffer {
  const b = typeof body === 'string' ? hex(body) : body;
  const head = Buffer.alloc(8);
  head.writeUInt32LE(type >>> 0, 0);
  head.writeUInt32LE(b.length, 4);
  const pad = padding === undefined ? Buffer.alloc((8 - (b.length % 8)) % 8) : typeof padding === 'string' ? hex(padding) : padding;
  return Buffer.concat([head, b, pad]);
}

/** Only a record header announcing `length` bytes. */
export function rawRecordHeader(type: number, length: number): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32LE(type >>> 0, 0);
  head.writeUInt32LE(length >>> 0, 4);
  return head;
}

/** libxc v2 HVM: image + domain headers (40 bytes); records may follow. */
export const LIBXC_V2_HVM_PREFIX = (): Buffer => hex(IMAGE_HEADER_V2_HEX, DOMAIN_HEADER_HVM_417_HEX);
/** libxc v3 HVM up to and including STATIC_DATA_END (48 bytes). */
export const LIBXC_V3_HVM_PREFIX = (): Buffer => hex(IMAGE_HEADER_V3_HEX, DOMAIN_HEADER_HVM_417_HEX, LIBXC.STATIC_DATA_END.hex);
/** libxc v2 PV up to X86_PV_INFO (56 bytes). */
export const LIBXC_V2_PV_PREFIX = (): Buffer => hex(IMAGE_HEADER_V2_HEX, DOMAIN_HEADER_PV_417_HEX, LIBXC.X86_PV_INFO.hex);
/** libxc v3 PV up to and including X86_PV_P2M_FRAMES (96 bytes). */
export const LIBXC_V3_PV_PREFIX = (): Buffer =>
  hex(IMAGE_HEADER_V3_HEX, DOMAIN_HEADER_PV_417_HEX, LIBXC.X86_PV_INFO.hex, LIBXC.STATIC_DATA_END.hex, LIBXC.X86_PV_P2M_FRAMES.hex);
/** libxl header, LIBXC_CONTEXT, libxc v3 HVM headers and STATIC_DATA_END (72 bytes). */
export const LIBXL_V3_HVM_PREFIX = (): Buffer =>
  hex(LIBXL_HEADER_HEX, LIBXL.LIBXC_CONTEXT.hex, IMAGE_HEADER_V3_HEX, DOMAIN_HEADER_HVM_417_HEX, LIBXC.STATIC_DATA_END.hex);

// ---------------------------------------------------------------------------
// Encoder-built streams, with the items decoding must give back
// ---------------------------------------------------------------------------

/** Writes a stream with StreamEncoder and records the item each step must decode to. */
export class StreamBuilder {
  readonly encoder: StreamEncoder;
  readonly chunks: Buffer[] = [];
  readonly items: StreamItem[] = [];

  constructor(framing: Framing) {
    this.encoder = new StreamEncoder(framing);
  }

  libxlHeader(): this {
    const at = this.encoder.position;
    this.chunks.push(...this.encoder.libxlHeader());
    this.items.push({ kind: 'libxl-header', offset: at, end: this.encoder.position, header: { version: 2, legacy: false } });
    return this;
  }

  imageHeader(version: 2 | 3): this {
    const at = this.encoder.position;
    this.chunks.push(...this.encoder.imageHeader(version));
    this.items.push({ kind: 'image-header', offset: at, end: this.encoder.position, header: { version } });
    return this;
  }

  domainHeader(h: DomainHeader): this {
    const at = this.encoder.position;
    this.chunks.push(...this.encoder.domainHeader(h));
    this.items.push({ kind: 'domain-header', offset: at, end: this.encoder.position, header: { ...h } });
    return this;
  }

  record(...recs: StreamRecord[]): this {
    for (const rec of recs) {
      const at = this.encoder.position;
      const chunks = this.encoder.record(rec);
      this.chunks.push(...chunks);
      this.items.push({ kind: 'record', offset: at, end: this.encoder.position, length: chunks[0].readUInt32LE(4), record: rec });
    }
    return this;
  }

  bytes(): Buffer {
    return Buffer.concat(this.chunks);
  }
}

export const CPUID_POLICY: LibxcRecord = LIBXC.X86_CPUID_POLICY.record;
export const MSR_POLICY: LibxcRecord = LIBXC.X86_MSR_POLICY.record;

const tsc = (nsec: bigint): LibxcRecord => ({ layer: 'libxc', type: 'X86_TSC_INFO', mode: 0, khz: 2_400_000, nsec, incarnation: 1 });
const hvmParams: LibxcRecord = {
  layer: 'libxc',
  type: 'HVM_PARAMS',
  params: [
    { index: 1n, value: 0xfeffen },
    { index: 4n, value: 3n },
  ],
};
const hvmContext = (fill: number, length: number): LibxcRecord => ({ layer: 'libxc', type: 'HVM_CONTEXT', data: Buffer.alloc(length, fill) });
const xenstore: LibxlRecord = {
  layer: 'libxl',
  type: 'EMULATOR_XENSTORE_DATA',
  emulatorId: 2,
  index: 0,
  entries: [
    ['physmap/f0000000/start_addr', 'f0000000'],
    ['physmap/f0000000/size', '800000'],
    ['physmap/f0000000/name', 'vga.vram'],
  ],
};
const emulatorContext = (fill: number): LibxlRecord => ({ layer: 'libxl', type: 'EMULATOR_CONTEXT', emulatorId: 2, index: 0, data: Buffer.alloc(37, fill) });

/** libxc static data for v3 (CPUID and MSR policies, STATIC_DATA_END); nothing for v2. */
function staticData(b: StreamBuilder, version: 2 | 3): void {
  if (version === 3) b.record(CPUID_POLICY, MSR_POLICY, { layer: 'libxc', type: 'STATIC_DATA_END' });
}

/** An HVM stream (about 8.5 KiB): two data pages, an XTAB pfn, TSC, params, context, END; libxl adds emulator records. */
export function hvmStream(framing: Framing, version: 2 | 3): StreamBuilder {
  const b = new StreamBuilder(framing);
  if (framing === 'libxl') b.libxlHeader().record({ layer: 'libxl', type: 'LIBXC_CONTEXT' });
  b.imageHeader(version).domainHeader(HVM_417);
  staticData(b, version);
  b.record(
    { layer: 'libxc', type: 'PAGE_DATA', pfns: [0, 0x1_0000_0002, 7], types: [PageType.NOTAB, PageType.NOTAB, PageType.XTAB], pages: [page(0x11), page(0x22)] },
    tsc(123_456_789n),
    hvmParams,
    hvmContext(0x33, 1021),
    { layer: 'libxc', type: 'END' },
  );
  if (framing === 'libxl') b.record(xenstore, emulatorContext(0x44), { layer: 'libxl', type: 'END' });
  return b;
}

/**
 * A checkpointed (Remus-style) libxl stream: each epoch is libxc PAGE_DATA,
 * TSC, params, context and CHECKPOINT, then libxl emulator records and
 * CHECKPOINT_END; finally libxc END and libxl END. One data page in all, so
 * the stream stays small (about 6 KiB for three epochs).
 */
export function checkpointedStream(version: 2 | 3, epochs: number): StreamBuilder {
  const b = new StreamBuilder('libxl');
  b.libxlHeader().record({ layer: 'libxl', type: 'LIBXC_CONTEXT' }).imageHeader(version).domainHeader(HVM_417);
  staticData(b, version);
  for (let e = 0; e < epochs; e++) {
    if (e === 0) {
      b.record({ layer: 'libxc', type: 'PAGE_DATA', pfns: [0, 1, 2], types: [PageType.NOTAB, PageType.XTAB, PageType.BROKEN], pages: [page(0x60)] });
    } else {
      b.record({ layer: 'libxc', type: 'PAGE_DATA', pfns: [e, 0x2_0000_0000 + e], types: [PageType.XALLOC, PageType.XTAB], pages: [] });
    }
    b.record(tsc(BigInt(e) * 1_000_000n), hvmParams, hvmContext(0x70 + e, 61 + e), { layer: 'libxc', type: 'CHECKPOINT' });
    if (e === 0) b.record(xenstore);
    b.record(emulatorContext(0x80 + e), { layer: 'libxl', type: 'CHECKPOINT_END' });
  }
  b.record({ layer: 'libxc', type: 'END' }, { layer: 'libxl', type: 'END' });
  return b;
}

/**
 * A checkpointed stream whose epochs after the first carry their pages as
 * TANDEM_PAGE_XBZRLE (a delta, a zero page, a raw page), as a primary with
 * compression sends to a secondary that offered it. About 4.5 KiB per epoch.
 */
export function compressedStream(epochs: number): StreamBuilder {
  const b = new StreamBuilder('libxl');
  b.libxlHeader().record({ layer: 'libxl', type: 'LIBXC_CONTEXT' }).imageHeader(3).domainHeader(HVM_417);
  staticData(b, 3);
  for (let e = 0; e < epochs; e++) {
    if (e === 0) {
      b.record({ layer: 'libxc', type: 'PAGE_DATA', pfns: [0, 1], types: [PageType.NOTAB, PageType.XTAB], pages: [page(0x60)] });
    } else {
      // Delta: skip e, 3 literal bytes; then a zero page; then a raw one.
      const delta = Buffer.from([e, 3, 0xa0 + e, 0xb0 + e, 0xc0 + e]);
      b.record({ layer: 'libxc', type: 'TANDEM_PAGE_XBZRLE', pfns: [0, 1, 0x2_0000_0000 + e], encodings: [2, 1, 0], payloads: [delta, Buffer.alloc(0), page(0x90 + e)] });
    }
    b.record(tsc(BigInt(e) * 1_000_000n), hvmParams, hvmContext(0x70 + e, 61 + e), { layer: 'libxc', type: 'CHECKPOINT' });
    if (e === 0) b.record(xenstore);
    b.record(emulatorContext(0x80 + e), { layer: 'libxl', type: 'CHECKPOINT_END' });
  }
  b.record({ layer: 'libxc', type: 'END' }, { layer: 'libxl', type: 'END' });
  return b;
}

/** A PV-shaped libxc stream (about 8.5 KiB) with every PV record type. */
export function pvStream(version: 2 | 3): StreamBuilder {
  const b = new StreamBuilder('libxc');
  b.imageHeader(version).domainHeader(PV_417);
  b.record({ layer: 'libxc', type: 'X86_PV_INFO', guestWidth: 8, ptLevels: 4 });
  staticData(b, version);
  b.record(
    { layer: 'libxc', type: 'X86_PV_P2M_FRAMES', startPfn: 0, endPfn: 511, frames: [0x1234n] },
    {
      layer: 'libxc',
      type: 'PAGE_DATA',
      pfns: [0x1234, 1, 2, 3, 4],
      types: [PageType.L4TAB_PIN, PageType.XTAB, PageType.BROKEN, PageType.XALLOC, PageType.XTAB],
      pages: [page(0x99)],
    },
    tsc(42n),
    { layer: 'libxc', type: 'SHARED_INFO', data: page(0x07) },
  );
  for (const vcpuId of [0, 1]) {
    b.record(
      { layer: 'libxc', type: 'X86_PV_VCPU_BASIC', vcpuId, context: Buffer.alloc(100 + vcpuId, 0xb0) },
      { layer: 'libxc', type: 'X86_PV_VCPU_EXTENDED', vcpuId, context: Buffer.alloc(0) },
      { layer: 'libxc', type: 'X86_PV_VCPU_XSAVE', vcpuId, context: Buffer.alloc(27, 0xb2) },
      { layer: 'libxc', type: 'X86_PV_VCPU_MSRS', vcpuId, context: Buffer.alloc(16, 0xb3) },
    );
  }
  b.record({ layer: 'libxc', type: 'END' });
  return b;
}

// ---------------------------------------------------------------------------
// Decoding and error helpers
// ---------------------------------------------------------------------------

/** Decodes the chunks in order, then declares the end of input. */
export function decodeChunks(chunks: readonly Buffer[], options?: DecoderOptions): StreamItem[] {
  const d = new StreamDecoder(options);
  const out: StreamItem[] = [];
  for (const c of chunks) out.push(...d.push(c));
  d.end();
  return out;
}

export interface ErrorWant {
  code: ErrorCode;
  offset: number;
  record: string | undefined;
}

/** Asserts `fn` throws a StreamError with exactly this code, offset and record name. */
export function assertStreamError(fn: () => unknown, want: ErrorWant, label?: string): StreamError {
  const pre = label === undefined ? '' : `${label}: `;
  let threw = false;
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    threw = true;
    caught = err;
  }
  assert.ok(threw, `${pre}expected ${want.code}, but nothing was thrown`);
  assert.ok(caught instanceof StreamError, `${pre}expected a StreamError, got ${String(caught)}`);
  assert.deepEqual({ code: caught.code, offset: caught.offset, record: caught.record }, want, pre + caught.message);
  return caught;
}

/** What a decoder made of some chunks: the error (if any) it ended with. */
export function decodeError(chunks: readonly Buffer[], options?: DecoderOptions): ErrorWant | undefined {
  try {
    decodeChunks(chunks, options);
    return undefined;
  } catch (err) {
    if (!(err instanceof StreamError)) throw err;
    return { code: err.code, offset: err.offset, record: err.record };
  }
}

// ---------------------------------------------------------------------------
// Splitting input
// ---------------------------------------------------------------------------

/** Two copies: bytes [0, k) and [k, end). Copies, so no chunk shares memory with another. */
export const splitAt = (buf: Buffer, k: number): Buffer[] => [Buffer.from(buf.subarray(0, k)), Buffer.from(buf.subarray(k))];

/** One chunk per byte. */
export function bytewise(buf: Buffer): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < buf.length; i++) out.push(Buffer.from(buf.subarray(i, i + 1)));
  return out;
}

/** Copies of `buf` cut into chunks of 1..maxChunk bytes (sizes from a seeded PRNG). */
export function randomChunks(buf: Buffer, seed: number, maxChunk: number): Buffer[] {
  const rand = uniform(seed);
  const out: Buffer[] = [];
  for (let at = 0; at < buf.length; ) {
    const n = 1 + Math.floor(rand() * maxChunk);
    out.push(Buffer.from(buf.subarray(at, at + n)));
    at += n;
  }
  return out;
}
