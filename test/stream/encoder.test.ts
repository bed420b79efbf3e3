import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { ErrorCode } from '../../src/errors.js';
import { StreamEncoder, byteLength, frameRecord } from '../../src/stream/encoder.js';
import { PageType } from '../../src/stream/format.js';
import type { StreamRecord } from '../../src/stream/records.js';
import {
  DOMAIN_HEADER_HVM_417_HEX,
  DOMAIN_HEADER_PV_417_HEX,
  GOLDEN_LIBXL_STREAM_PARTS,
  HVM_417,
  IMAGE_HEADER_V2_HEX,
  LIBXC,
  LIBXL,
  PV_417,
  StreamBuilder,
  assertStreamError,
  decodeChunks,
  goldenLibxlStream,
  hex,
  page,
} from './fixtures.js';

const END: StreamRecord = { layer: 'libxc', type: 'END' };
const STATIC_END: StreamRecord = { layer: 'libxc', type: 'STATIC_DATA_END' };
const CHECKPOINT: StreamRecord = { layer: 'libxc', type: 'CHECKPOINT' };
const LIBXC_CONTEXT: StreamRecord = { layer: 'libxl', type: 'LIBXC_CONTEXT' };
const onePage = (pfn: number, fill: number): StreamRecord => ({ layer: 'libxc', type: 'PAGE_DATA', pfns: [pfn], types: [PageType.NOTAB], pages: [page(fill)] });

/** An encoder past the libxc headers (and STATIC_DATA_END for v3). */
function hvmEncoder(version: 2 | 3): StreamEncoder {
  const e = new StreamEncoder('libxc');
  e.imageHeader(version);
  e.domainHeader(HVM_417);
  if (version === 3) e.record(STATIC_END);
  return e;
}

describe('golden streams', () => {
  test('a libxl v3 HVM stream is byte-identical to the hand-written one', () => {
    const b = new StreamBuilder('libxl');
    for (const { item } of GOLDEN_LIBXL_STREAM_PARTS) {
      if (item.kind === 'libxl-header') b.libxlHeader();
      else if (item.kind === 'image-header') b.imageHeader(item.header.version);
      else if (item.kind === 'domain-header') b.domainHeader(item.header);
      else b.record(item.record);
    }
    const golden = goldenLibxlStream().bytes;
    assert.equal(b.bytes().toString('hex'), golden.toString('hex'));
    assert.equal(b.encoder.position, golden.length);
    assert.equal(b.encoder.done, true);
  });

  test('a libxc v2 HVM stream is byte-identical to the hand-written one', () => {
    const e = new StreamEncoder('libxc');
    const chunks = [
      ...e.imageHeader(2),
      ...e.domainHeader(HVM_417),
      ...e.record(LIBXC.PAGE_DATA.record),
      ...e.record(LIBXC.X86_TSC_INFO.record),
      ...e.record(LIBXC.HVM_PARAMS.record),
      ...e.record(LIBXC.HVM_CONTEXT.record),
      ...e.record(LIBXC.END.record),
    ];
    const golden = hex(IMAGE_HEADER_V2_HEX, DOMAIN_HEADER_HVM_417_HEX, LIBXC.PAGE_DATA.hex, LIBXC.X86_TSC_INFO.hex, LIBXC.HVM_PARAMS.hex, LIBXC.HVM_CONTEXT.hex, LIBXC.END.hex);
    assert.equal(Buffer.concat(chunks).toString('hex'), golden.toString('hex'));
    assert.equal(e.position, golden.length);
    assert.equal(byteLength(chunks), golden.length);
  });

  test('a libxc v2 PV stream is byte-identical to the hand-written one', () => {
    const e = new StreamEncoder('libxc');
    const recs = [LIBXC.X86_PV_INFO, LIBXC.X86_PV_P2M_FRAMES, LIBXC.PAGE_DATA, LIBXC.X86_TSC_INFO, LIBXC.SHARED_INFO, LIBXC.X86_PV_VCPU_BASIC, LIBXC.X86_PV_VCPU_EXTENDED, LIBXC.X86_PV_VCPU_XSAVE, LIBXC.X86_PV_VCPU_MSRS, LIBXC.VERIFY, LIBXC.END];
    const chunks = [...e.imageHeader(2), ...e.domainHeader(PV_417), ...recs.flatMap((g) => e.record(g.record))];
    const golden = hex(IMAGE_HEADER_V2_HEX, DOMAIN_HEADER_PV_417_HEX, ...recs.map((g) => g.hex));
    assert.equal(Buffer.concat(chunks).toString('hex'), golden.toString('hex'));
  });
});

describe('frameRecord', () => {
  test('header, body parts by reference, zero padding', () => {
    const body = [hex('0102'), hex('030405')];
    const framed = frameRecord(0x09, body);
    assert.equal(framed.length, 4);
    assert.equal(framed[1], body[0]);
    assert.equal(framed[2], body[1]);
    assert.equal(Buffer.concat(framed).toString('hex'), hex('09000000 05000000 | 0102 030405 | 000000').toString('hex'));
  });

  test('no padding chunk when the body is a multiple of 8', () => {
    const framed = frameRecord(0x0a, [Buffer.alloc(16, 1)]);
    assert.equal(framed.length, 2);
    assert.equal(Buffer.concat(framed).toString('hex'), '0a000000' + '10000000' + '01'.repeat(16));
    assert.equal(Buffer.concat(frameRecord(0, [])).toString('hex'), '0000000000000000');
  });

  test('optional type codes keep bit 31', () => {
    assert.equal(Buffer.concat(frameRecord(0xfedcba98, [hex('ff')])).toString('hex'), hex('98badcfe 01000000 | ff 00000000000000').toString('hex'));
  });

  test('every padding length from 0 to 7', () => {
    for (let len = 0; len < 16; len++) {
      const framed = Buffer.concat(frameRecord(0x80000000, [Buffer.alloc(len, 0xee)]));
      assert.equal(framed.length, 8 + Math.ceil(len / 8) * 8, `length ${len}`);
      assert.ok(framed.subarray(8 + len).every((b) => b === 0));
    }
  });
});

describe('StreamEncoder state', () => {
  test('position, layer and done follow the stream', () => {
    const e = new StreamEncoder('libxl');
    assert.deepEqual([e.position, e.layer, e.done], [0, 'libxl', false]);
    e.libxlHeader();
    assert.equal(e.position, 16);
    e.record(LIBXC_CONTEXT);
    assert.deepEqual([e.position, e.layer], [24, 'libxc']);
    e.imageHeader(3);
    e.domainHeader(HVM_417);
    e.record(STATIC_END);
    assert.equal(e.position, 72);
    const pageChunks = e.record(onePage(0, 1));
    assert.equal(e.position, 72 + 8 + 16 + 4096);
    assert.equal(byteLength(pageChunks), 8 + 16 + 4096);
    e.record(CHECKPOINT);
    assert.equal(e.layer, 'libxl');
    e.record({ layer: 'libxl', type: 'CHECKPOINT_END' });
    assert.equal(e.layer, 'libxc');
    e.record(END);
    assert.deepEqual([e.layer, e.done], ['libxl', false]);
    e.record({ layer: 'libxl', type: 'END' });
    assert.equal(e.done, true);
  });

  test('page data is passed through, not copied', () => {
    const e = hvmEncoder(3);
    const p = page(9);
    const chunks = e.record({ layer: 'libxc', type: 'PAGE_DATA', pfns: [5], types: [0], pages: [p] });
    assert.ok(chunks.includes(p));
  });
});

describe('StreamEncoder refuses what the layout forbids', () => {
  /** Asserts the refusal and that the encoder's position did not move. */
  function refused(e: StreamEncoder, write: () => unknown, code: ErrorCode, record: string): void {
    const before = e.position;
    assertStreamError(write, { code, offset: before, record });
    assert.equal(e.position, before);
  }

  test('records before the headers, and headers out of order', () => {
    const e = new StreamEncoder('libxc');
    refused(e, () => e.record(END), 'ERR_RECORD_OUT_OF_ORDER', 'libxc END');
    refused(e, () => e.domainHeader(HVM_417), 'ERR_RECORD_OUT_OF_ORDER', 'domain header');
    refused(e, () => e.libxlHeader(), 'ERR_RECORD_OUT_OF_ORDER', 'libxl header');
    e.imageHeader(3);
    refused(e, () => e.imageHeader(3), 'ERR_RECORD_OUT_OF_ORDER', 'image header');
  });

  test('a libxc record before LIBXC_CONTEXT in a libxl stream', () => {
    const e = new StreamEncoder('libxl');
    e.libxlHeader();
    refused(e, () => e.record(onePage(1, 1)), 'ERR_RECORD_OUT_OF_ORDER', 'libxc PAGE_DATA');
    refused(e, () => e.imageHeader(3), 'ERR_RECORD_OUT_OF_ORDER', 'image header');
  });

  test('v2 streams get no v3 records', () => {
    const e = hvmEncoder(2);
    refused(e, () => e.record(STATIC_END), 'ERR_RECORD_NOT_IN_VERSION', 'libxc STATIC_DATA_END');
    refused(e, () => e.record(LIBXC.X86_CPUID_POLICY.record), 'ERR_RECORD_NOT_IN_VERSION', 'libxc X86_CPUID_POLICY');
    refused(e, () => e.record(LIBXC.X86_MSR_POLICY.record), 'ERR_RECORD_NOT_IN_VERSION', 'libxc X86_MSR_POLICY');
  });

  test('v3: page data before STATIC_DATA_END', () => {
    const e = new StreamEncoder('libxc');
    e.imageHeader(3);
    e.domainHeader(HVM_417);
    refused(e, () => e.record(onePage(1, 1)), 'ERR_RECORD_OUT_OF_ORDER', 'libxc PAGE_DATA');
  });

  test('PV records for an HVM domain, HVM records for a PV domain', () => {
    const hvm = hvmEncoder(3);
    refused(hvm, () => hvm.record(LIBXC.SHARED_INFO.record), 'ERR_RECORD_WRONG_DOMAIN_TYPE', 'libxc SHARED_INFO');
    refused(hvm, () => hvm.record(LIBXC.X86_PV_VCPU_BASIC.record), 'ERR_RECORD_WRONG_DOMAIN_TYPE', 'libxc X86_PV_VCPU_BASIC');
    const pv = new StreamEncoder('libxc');
    pv.imageHeader(2);
    pv.domainHeader(PV_417);
    refused(pv, () => pv.record(LIBXC.HVM_CONTEXT.record), 'ERR_RECORD_WRONG_DOMAIN_TYPE', 'libxc HVM_CONTEXT');
    refused(pv, () => pv.record(LIBXC.HVM_PARAMS.record), 'ERR_RECORD_WRONG_DOMAIN_TYPE', 'libxc HVM_PARAMS');
  });

  test('CHECKPOINT_DIRTY_PFN_LIST cannot be written to a forward stream', () => {
    const e = hvmEncoder(3);
    refused(e, () => e.record(LIBXC.CHECKPOINT_DIRTY_PFN_LIST.record), 'ERR_RECORD_OUT_OF_ORDER', 'libxc CHECKPOINT_DIRTY_PFN_LIST');
  });

  test('libxl ordering: CHECKPOINT_END, LIBXC_CONTEXT, END', () => {
    const e = new StreamEncoder('libxl');
    e.libxlHeader();
    refused(e, () => e.record(LIBXL.CHECKPOINT_END.record), 'ERR_RECORD_OUT_OF_ORDER', 'libxl CHECKPOINT_END');
    refused(e, () => e.record(LIBXL.END.record), 'ERR_RECORD_OUT_OF_ORDER', 'libxl END');
    e.record(LIBXC_CONTEXT);
    e.imageHeader(3);
    e.domainHeader(HVM_417);
    e.record(STATIC_END);
    e.record(CHECKPOINT);
    refused(e, () => e.record(LIBXC_CONTEXT), 'ERR_RECORD_OUT_OF_ORDER', 'libxl LIBXC_CONTEXT');
    refused(e, () => e.record(LIBXL.END.record), 'ERR_RECORD_OUT_OF_ORDER', 'libxl END');
    refused(e, () => e.record(END), 'ERR_RECORD_OUT_OF_ORDER', 'libxc END');
  });

  test('nothing after the final END', () => {
    const e = hvmEncoder(3);
    e.record(END);
    assert.equal(e.done, true);
    refused(e, () => e.record(END), 'ERR_STREAM_TRAILING_DATA', 'libxc END');
    refused(e, () => e.record(LIBXC.OPTIONAL.record), 'ERR_STREAM_TRAILING_DATA', 'libxc OPTIONAL_0x80000123');
  });

  test('unknown mandatory record codes', () => {
    const e = hvmEncoder(3);
    refused(e, () => e.record({ layer: 'libxc', type: 'OPTIONAL', code: 0x42, data: hex('00') }), 'ERR_RECORD_UNKNOWN_MANDATORY', 'libxc UNKNOWN_0x00000042');
  });

  test('after a refusal the encoder carries on, and the stream decodes', () => {
    const b = new StreamBuilder('libxc');
    b.imageHeader(3).domainHeader(HVM_417);
    assert.throws(() => b.record(onePage(1, 1)), { code: 'ERR_RECORD_OUT_OF_ORDER' });
    b.record(STATIC_END, onePage(1, 1), END);
    assert.deepEqual(decodeChunks([b.bytes()]), b.items);
  });
});

describe('StreamEncoder refuses malformed records without moving on', () => {
  const malformed: [string, StreamRecord][] = [
    ['no pfns', { layer: 'libxc', type: 'PAGE_DATA', pfns: [], types: [], pages: [] }],
    ['fewer types than pfns', { layer: 'libxc', type: 'PAGE_DATA', pfns: [1, 2], types: [0], pages: [page(0)] }],
    ['a missing page', { layer: 'libxc', type: 'PAGE_DATA', pfns: [1, 2], types: [0, 0], pages: [page(0)] }],
    ['a page for an XTAB pfn', { layer: 'libxc', type: 'PAGE_DATA', pfns: [1], types: [PageType.XTAB], pages: [page(0)] }],
    ['a short page', { layer: 'libxc', type: 'PAGE_DATA', pfns: [1], types: [0], pages: [Buffer.alloc(4000)] }],
    ['reserved page type 7', { layer: 'libxc', type: 'PAGE_DATA', pfns: [1], types: [7], pages: [page(0)] }],
    ['pfn 2^52', { layer: 'libxc', type: 'PAGE_DATA', pfns: [2 ** 52], types: [PageType.XTAB], pages: [] }],
    ['negative pfn', { layer: 'libxc', type: 'PAGE_DATA', pfns: [-5], types: [PageType.XTAB], pages: [] }],
    ['SHARED_INFO not a page', { layer: 'libxc', type: 'SHARED_INFO', data: Buffer.alloc(64) }],
  ];

  for (const [name, rec] of malformed) {
    test(name, () => {
      const b = new StreamBuilder('libxc');
      b.imageHeader(2).domainHeader(PV_417).record(LIBXC.X86_PV_INFO.record);
      const before = b.encoder.position;
      // v2 PV: had the layout seen this PAGE_DATA it would have been refused
      // for its order and ended static data; a RangeError must come first.
      assert.throws(() => b.encoder.record(rec), RangeError);
      assert.equal(b.encoder.position, before);
      assert.equal(b.encoder.layer, 'libxc');
      b.record(LIBXC.X86_PV_P2M_FRAMES.record, onePage(3, 3), END);
      assert.deepEqual(decodeChunks([b.bytes()]), b.items);
    });
  }

  test('HVM_CONTEXT must not be empty', () => {
    const e = hvmEncoder(3);
    const before = e.position;
    assert.throws(() => e.record({ layer: 'libxc', type: 'HVM_CONTEXT', data: Buffer.alloc(0) }), RangeError);
    assert.equal(e.position, before);
    e.record(LIBXC.HVM_CONTEXT.record);
    assert.equal(e.position, before + 24);
  });

  test('non-integer or negative page types and pfns are RangeErrors', () => {
    const bad: StreamRecord[] = [
      { layer: 'libxc', type: 'PAGE_DATA', pfns: [1], types: [-1], pages: [page(0)] },
      { layer: 'libxc', type: 'PAGE_DATA', pfns: [1], types: [2.5], pages: [page(0)] },
      { layer: 'libxc', type: 'PAGE_DATA', pfns: [1.5], types: [PageType.NOTAB], pages: [page(0)] },
    ];
    for (const rec of bad) {
      const e = hvmEncoder(3);
      assert.throws(() => e.record(rec), RangeError, JSON.stringify({ ...rec, pages: rec.type === 'PAGE_DATA' ? rec.pages.length : 0 }));
      assert.equal(e.position, 48);
    }
  });
});
