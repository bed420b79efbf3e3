import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { StreamError } from '../../src/errors.js';
import { StreamDecoder, type DecoderOptions, type StreamItem } from '../../src/stream/decoder.js';
import { PageType } from '../../src/stream/format.js';
import {
  CHECKPOINT_STATE_LEN8_HEX,
  DOMAIN_HEADER_HVM_417_HEX,
  IMAGE_HEADER_V2_HEX,
  IMAGE_HEADER_V3_HEX,
  LIBXC,
  LIBXC_V2_HVM_PREFIX,
  LIBXC_V2_PV_PREFIX,
  LIBXC_V3_HVM_PREFIX,
  LIBXC_V3_PV_PREFIX,
  LIBXL,
  LIBXL_HEADER_HEX,
  LIBXL_HEADER_LEGACY_HEX,
  LIBXL_V3_HVM_PREFIX,
  StreamBuilder,
  assertStreamError,
  bytewise,
  checkpointedStream,
  compressedStream,
  decodeChunks,
  decodeError,
  goldenLibxlStream,
  hex,
  hvmStream,
  page,
  pvStream,
  randomChunks,
  rawRecord,
  rawRecordHeader,
  rep,
  splitAt,
  type ErrorWant,
} from './fixtures.js';

const cat = (...parts: (Buffer | string)[]): Buffer => Buffer.concat(parts.map((p) => (typeof p === 'string' ? hex(p) : p)));

/** Decodes `input` pushed as one Buffer and checks the decoder's final state. */
function decodeWhole(input: Buffer, options?: DecoderOptions): { items: StreamItem[]; decoder: StreamDecoder } {
  const decoder = new StreamDecoder(options);
  const items = decoder.push(input);
  decoder.end();
  assert.equal(decoder.done, true);
  assert.equal(decoder.position, input.length);
  return { items, decoder };
}

/** Every PAGE_DATA record among the items. */
function pageRecords(items: StreamItem[]): { pages: Buffer[]; offset: number }[] {
  const out: { pages: Buffer[]; offset: number }[] = [];
  for (const it of items) if (it.kind === 'record' && it.record.type === 'PAGE_DATA') out.push({ pages: it.record.pages, offset: it.offset });
  return out;
}

// ---------------------------------------------------------------------------

describe('golden stream', () => {
  test('the hand-written libxl v3 HVM stream decodes to the expected items', () => {
    const { bytes, items } = goldenLibxlStream();
    const { items: got, decoder } = decodeWhole(bytes);
    assert.deepEqual(got, items);
    assert.equal(decoder.framing, 'libxl');
    assert.equal(decoder.checkpoints, 0);
  });

  test('item offsets and ends tile the stream', () => {
    const { bytes } = goldenLibxlStream();
    const { items } = decodeWhole(bytes);
    let at = 0;
    for (const it of items) {
      assert.equal(it.offset, at);
      assert.ok(it.end > it.offset);
      if (it.kind === 'record') assert.equal(it.end - it.offset, 8 + Math.ceil(it.length / 8) * 8);
      at = it.end;
    }
    assert.equal(at, bytes.length);
    assert.deepEqual(
      items.map((it) => it.kind === 'record' ? `${it.record.layer} ${it.record.type}` : it.kind),
      [
        'libxl-header',
        'libxl LIBXC_CONTEXT',
        'image-header',
        'domain-header',
        'libxc X86_CPUID_POLICY',
        'libxc X86_MSR_POLICY',
        'libxc STATIC_DATA_END',
        'libxc PAGE_DATA',
        'libxc X86_TSC_INFO',
        'libxc HVM_PARAMS',
        'libxc HVM_CONTEXT',
        'libxc END',
        'libxl EMULATOR_XENSTORE_DATA',
        'libxl EMULATOR_CONTEXT',
        'libxl END',
      ],
    );
  });

  test('the legacy option of the libxl header is reported', () => {
    const bytes = cat(LIBXL_HEADER_LEGACY_HEX, LIBXL.LIBXC_CONTEXT.hex, IMAGE_HEADER_V2_HEX, DOMAIN_HEADER_HVM_417_HEX, LIBXC.END.hex, LIBXL.END.hex);
    const { items } = decodeWhole(bytes);
    assert.deepEqual(items[0], { kind: 'libxl-header', offset: 0, end: 16, header: { version: 2, legacy: true } });
  });

  test('optional records of both layers, CHECKPOINT_STATE (4- and 8-byte bodies) and VERIFY', () => {
    const bytes = cat(
      LIBXL_HEADER_HEX,
      LIBXL.OPTIONAL.hex, // 16
      LIBXL.CHECKPOINT_STATE.hex, // 32
      LIBXL.LIBXC_CONTEXT.hex, // 48
      IMAGE_HEADER_V3_HEX, // 56
      DOMAIN_HEADER_HVM_417_HEX, // 80
      LIBXC.OPTIONAL.hex, // 96
      LIBXC.STATIC_DATA_END.hex, // 112
      LIBXC.VERIFY.hex, // 120
      LIBXC.END.hex, // 128
      CHECKPOINT_STATE_LEN8_HEX, // 136
      LIBXL.END.hex, // 152
    );
    const { items } = decodeWhole(bytes);
    const records = items.filter((it) => it.kind === 'record').map((it) => [it.offset, it.record]);
    assert.deepEqual(records, [
      [16, LIBXL.OPTIONAL.record],
      [32, LIBXL.CHECKPOINT_STATE.record],
      [48, LIBXL.LIBXC_CONTEXT.record],
      [96, LIBXC.OPTIONAL.record],
      [112, LIBXC.STATIC_DATA_END.record],
      [120, LIBXC.VERIFY.record],
      [128, LIBXC.END.record],
      [136, LIBXL.CHECKPOINT_STATE.record],
      [152, LIBXL.END.record],
    ]);
  });
});

// ---------------------------------------------------------------------------

const STREAMS: [string, () => StreamBuilder][] = [
  ['plain libxc v2 HVM', () => hvmStream('libxc', 2)],
  ['plain libxc v3 HVM', () => hvmStream('libxc', 3)],
  ['plain libxl v2 HVM', () => hvmStream('libxl', 2)],
  ['plain libxl v3 HVM', () => hvmStream('libxl', 3)],
  ['checkpointed libxl v3, 4 epochs', () => checkpointedStream(3, 4)],
  ['checkpointed libxl v2, 2 epochs', () => checkpointedStream(2, 2)],
  ['PV libxc v3', () => pvStream(3)],
  ['PV libxc v2', () => pvStream(2)],
];

describe('round trips', () => {
  for (const [name, build] of STREAMS) {
    test(name, () => {
      const b = build();
      const bytes = b.bytes();
      const { items, decoder } = decodeWhole(bytes);
      assert.deepEqual(items, b.items);
      assert.equal(decoder.framing, name.includes('libxl') ? 'libxl' : 'libxc');
      // The encoder's own chunk list (pages as separate chunks) decodes the same.
      assert.deepEqual(decodeChunks(b.chunks), b.items);
      // So does a forced format.
      assert.deepEqual(decodeChunks([bytes], { format: decoder.framing }), b.items);
    });
  }

  test('the checkpointed stream counts its checkpoints', () => {
    const b = checkpointedStream(3, 4);
    const d = new StreamDecoder();
    const items = d.push(b.bytes());
    d.end();
    assert.equal(d.checkpoints, 4);
    assert.equal(items.filter((it) => it.kind === 'record' && it.record.type === 'CHECKPOINT_END').length, 4);
    assert.equal(items.filter((it) => it.kind === 'record' && it.record.type === 'PAGE_DATA').length, 4);
  });

  test('decoder state as a stream arrives', () => {
    const bytes = hvmStream('libxl', 3).bytes();
    const d = new StreamDecoder();
    assert.deepEqual([d.framing, d.done, d.position, d.checkpoints], [undefined, false, 0, 0]);
    assert.deepEqual(d.push(bytes.subarray(0, 7)), []);
    assert.deepEqual([d.framing, d.position], [undefined, 0]);
    const first = d.push(bytes.subarray(7, 30));
    assert.deepEqual(
      first.map((it) => it.kind),
      ['libxl-header', 'record'],
    );
    assert.deepEqual([d.framing, d.position, d.done], ['libxl', 24, false]);
    d.push(bytes.subarray(30));
    assert.deepEqual([d.position, d.done], [bytes.length, true]);
    d.end();
  });

  test('pushing empty chunks changes nothing', () => {
    const b = hvmStream('libxc', 3);
    const bytes = b.bytes();
    const d = new StreamDecoder();
    const items: StreamItem[] = [];
    for (const piece of splitAt(bytes, 100)) {
      items.push(...d.push(Buffer.alloc(0)), ...d.push(piece));
    }
    items.push(...d.push(Buffer.alloc(0)));
    d.end();
    assert.deepEqual(items, b.items);
  });
});

// ---------------------------------------------------------------------------

describe('split invariance', () => {
  const SPLIT: [string, () => StreamBuilder][] = [
    ['checkpointed libxl v3, 3 epochs', () => checkpointedStream(3, 3)],
    ['checkpointed libxl v2, 2 epochs', () => checkpointedStream(2, 2)],
    ['plain libxl v3 HVM', () => hvmStream('libxl', 3)],
    ['PV libxc v2', () => pvStream(2)],
    ['checkpointed libxl v3 with TANDEM_PAGE_XBZRLE, 2 epochs', () => compressedStream(2)],
  ];

  for (const [name, build] of SPLIT) {
    describe(name, () => {
      const b = build();
      const bytes = b.bytes();

      test('two pieces, split at every offset', () => {
        assert.ok(bytes.length < 12 * 1024, `keep the stream small (${bytes.length} bytes)`);
        for (let k = 0; k <= bytes.length; k++) {
          assert.deepEqual(decodeChunks(splitAt(bytes, k)), b.items, `split at ${k}`);
        }
      });

      test('one byte at a time', () => {
        assert.deepEqual(decodeChunks(bytewise(bytes)), b.items);
      });

      test('random chunk sizes (fixed seeds)', () => {
        for (const [seed, max] of [
          [1, 16],
          [2, 100],
          [3, 700],
          [4, 5000],
          [0xc0ffee, 33],
        ]) {
          assert.deepEqual(decodeChunks(randomChunks(bytes, seed, max)), b.items, `seed ${seed}, chunks of 1..${max}`);
        }
      });
    });
  }

  test('errors are the same however the input is split', () => {
    const ckpt = checkpointedStream(3, 3);
    const ckptBytes = ckpt.bytes();
    // Epoch 2's PAGE_DATA: make its first pfn word a reserved page type.
    const epoch2 = ckpt.items.filter((it) => it.kind === 'record' && it.record.type === 'PAGE_DATA')[1];
    const badType = Buffer.from(ckptBytes);
    badType[epoch2.offset + 8 + 8 + 7] = 0x50;
    // A non-zero padding byte in the last HVM_CONTEXT.
    const ctx = ckpt.items.filter((it) => it.kind === 'record' && it.record.type === 'HVM_CONTEXT').at(-1)!;
    const badPad = Buffer.from(ckptBytes);
    badPad[ctx.end - 1] = 1;
    const plain = hvmStream('libxc', 3).bytes();

    const cases: [string, Buffer, ErrorWant][] = [
      ['reserved page type in epoch 2', badType, { code: 'ERR_RECORD_BAD_PAGE_TYPE', offset: epoch2.offset, record: 'libxc PAGE_DATA' }],
      ['padding', badPad, { code: 'ERR_RECORD_BAD_PADDING', offset: ctx.offset, record: 'libxc HVM_CONTEXT' }],
      ['trailing data', cat(plain, '00'), { code: 'ERR_STREAM_TRAILING_DATA', offset: plain.length, record: undefined }],
      // PAGE_DATA follows the headers (40), CPUID (56), MSR (40) and STATIC_DATA_END (8).
      ['truncated inside a page', plain.subarray(0, 2000), { code: 'ERR_STREAM_TRUNCATED', offset: 144, record: undefined }],
      ['unknown mandatory record', cat(LIBXC_V3_HVM_PREFIX(), rawRecord(0x13, 'aabbccdd'), LIBXC.END.hex), { code: 'ERR_RECORD_UNKNOWN_MANDATORY', offset: 48, record: 'libxc UNKNOWN_0x00000013' }],
      ['bad embedded image header', cat(LIBXL_HEADER_HEX, LIBXL.LIBXC_CONTEXT.hex, 'ffffffff ffffffff | 58454e46 | 00000004 | 0000 0000 00000000'), { code: 'ERR_STREAM_BAD_VERSION', offset: 24, record: 'libxc image header' }],
    ];
    for (const [name, bytes, want] of cases) {
      assert.deepEqual(decodeError([bytes]), want, `${name}: whole`);
      for (let k = 0; k <= bytes.length; k++) assert.deepEqual(decodeError(splitAt(bytes, k)), want, `${name}: split at ${k}`);
      assert.deepEqual(decodeError(bytewise(bytes)), want, `${name}: bytewise`);
    }
  });

  // StreamLayout.record() moves the layout on at a record's header (e.g.
  // LIBXC_CONTEXT to 'image-header', the final END to 'done'); a body on such
  // a marker record must be refused there and then, not read as the next
  // header or as trailing data depending on where the input was cut.
  test('marker records announcing a body are refused at their header, however split', () => {
    const cases: [string, Buffer, ErrorWant][] = [
      [
        'LIBXC_CONTEXT with a body',
        cat(LIBXL_HEADER_HEX, rawRecord(0x01, '0000000000000000'), IMAGE_HEADER_V3_HEX, DOMAIN_HEADER_HVM_417_HEX),
        { code: 'ERR_RECORD_BAD_LENGTH', offset: 16, record: 'libxl LIBXC_CONTEXT' },
      ],
      ['libxc END with a body', cat(LIBXC_V3_HVM_PREFIX(), rawRecord(0x00, '0000000000000000')), { code: 'ERR_RECORD_BAD_LENGTH', offset: 48, record: 'libxc END' }],
      ['libxl END with a body', cat(LIBXL_V3_HVM_PREFIX(), LIBXC.END.hex, rawRecord(0x00, '00000000')), { code: 'ERR_RECORD_BAD_LENGTH', offset: 80, record: 'libxl END' }],
      ['CHECKPOINT with a body', cat(LIBXL_V3_HVM_PREFIX(), rawRecord(0x0e, 'aa'), LIBXL.CHECKPOINT_END.hex), { code: 'ERR_RECORD_BAD_LENGTH', offset: 72, record: 'libxc CHECKPOINT' }],
      // The final END announces 8 bytes that never come.
      ['final END announcing a missing body', cat(LIBXC_V3_HVM_PREFIX(), rawRecordHeader(0x00, 8)), { code: 'ERR_RECORD_BAD_LENGTH', offset: 48, record: 'libxc END' }],
    ];
    for (const [name, bytes, want] of cases) {
      for (let k = 0; k <= bytes.length; k++) assert.deepEqual(decodeError(splitAt(bytes, k)), want, `${name}: split at ${k}`);
    }
    for (const [code, layer, prefix] of [
      [0x00, 'libxc END', LIBXC_V3_HVM_PREFIX()],
      [0x0d, 'libxc VERIFY', LIBXC_V3_HVM_PREFIX()],
      [0x0e, 'libxc CHECKPOINT', LIBXC_V3_HVM_PREFIX()],
      [0x10, 'libxc STATIC_DATA_END', cat(IMAGE_HEADER_V3_HEX, DOMAIN_HEADER_HVM_417_HEX)],
      [0x01, 'libxl LIBXC_CONTEXT', hex(LIBXL_HEADER_HEX)],
      [0x04, 'libxl CHECKPOINT_END', cat(LIBXL_V3_HVM_PREFIX(), LIBXC.CHECKPOINT.hex)],
      [0x00, 'libxl END', cat(LIBXL_V3_HVM_PREFIX(), LIBXC.END.hex)],
    ] as const) {
      const d = new StreamDecoder();
      d.push(prefix);
      assertStreamError(() => d.push(rawRecordHeader(code, 8)), { code: 'ERR_RECORD_BAD_LENGTH', offset: prefix.length, record: layer }, layer);
    }
  });
});

// ---------------------------------------------------------------------------

describe('zero copy', () => {
  test('pages pushed in one Buffer are views of it', () => {
    const b = hvmStream('libxc', 3);
    const input = b.bytes();
    const d = new StreamDecoder();
    const items = d.push(input);
    d.end();
    const recs = pageRecords(items);
    assert.equal(recs.length, 1);
    const [p0, p1] = recs[0].pages;
    assert.equal(p0.buffer, input.buffer);
    assert.equal(p1.buffer, input.buffer);
    // PAGE_DATA record: 8 header + 8 count + 3 pfn words, then the pages.
    assert.equal(p0.byteOffset, input.byteOffset + recs[0].offset + 8 + 8 + 24);
    assert.equal(p1.byteOffset, p0.byteOffset + 4096);
    assert.ok(p0.every((x) => x === 0x11) && p1.every((x) => x === 0x22));
  });

  test('every record body of a PV stream pushed in one Buffer is a view of it', () => {
    const input = pvStream(3).bytes();
    const { items } = decodeWhole(input);
    let checked = 0;
    for (const it of items) {
      if (it.kind !== 'record') continue;
      const r = it.record;
      const views = r.type === 'PAGE_DATA' ? r.pages : r.type === 'SHARED_INFO' ? [r.data] : 'context' in r ? [r.context] : [];
      for (const v of views) {
        assert.equal(v.buffer, input.buffer, `${r.type} at ${it.offset}`);
        checked++;
      }
    }
    assert.equal(checked, 1 + 1 + 8);
  });

  test('pages pushed as the encoder emitted them are the very page buffers', () => {
    const pages = [page(1), page(2), page(3)];
    const b = new StreamBuilder('libxc');
    b.imageHeader(3).domainHeader({ type: 2, pageShift: 12, xenMajor: 4, xenMinor: 17 }).record({ layer: 'libxc', type: 'STATIC_DATA_END' });
    b.record({ layer: 'libxc', type: 'PAGE_DATA', pfns: [10, 11, 12], types: [0, 0, 0], pages }, { layer: 'libxc', type: 'END' });
    const d = new StreamDecoder();
    const items: StreamItem[] = [];
    for (const c of b.chunks) items.push(...d.push(c));
    d.end();
    const got = pageRecords(items)[0].pages;
    for (let i = 0; i < 3; i++) {
      assert.equal(got[i].buffer, pages[i].buffer);
      assert.equal(got[i].byteOffset, pages[i].byteOffset);
      assert.equal(got[i].length, 4096);
    }
  });

  test('a page split across two pushes is copied, the others stay views', () => {
    const b = hvmStream('libxc', 3);
    const input = b.bytes();
    const pageAt = pageRecords(b.items)[0].offset + 8 + 8 + 24; // record header, count, 3 pfn words
    assert.equal(pageAt, 184);
    const [a, bPart] = [input.subarray(0, pageAt + 100), input.subarray(pageAt + 100)];
    const d = new StreamDecoder();
    const items = [...d.push(a), ...d.push(bPart)];
    d.end();
    const [p0, p1] = pageRecords(items)[0].pages;
    assert.ok(p0.every((x) => x === 0x11));
    assert.notEqual(p0.buffer, input.buffer);
    assert.equal(p1.buffer, input.buffer);
    assert.equal(p1.byteOffset, input.byteOffset + pageAt + 4096);
  });
});

// ---------------------------------------------------------------------------

describe('bad input', () => {
  const errs = (bytes: Buffer, want: ErrorWant, options?: DecoderOptions): StreamError => assertStreamError(() => decodeChunks([bytes], options), want);
  const IMG = 'libxc image header';
  const DOM = 'libxc domain header';
  const XLH = 'libxl header';

  describe('headers', () => {
    test('bad marker', () => {
      errs(cat('ffffffff fffffff7 | 58454e46 00000003 0000 0000 00000000', DOMAIN_HEADER_HVM_417_HEX), { code: 'ERR_STREAM_BAD_MARKER', offset: 0, record: IMG }, { format: 'libxc' });
      errs(cat(LIBXL_HEADER_HEX, LIBXL.LIBXC_CONTEXT.hex, '7fffffff ffffffff | 58454e46 00000003 0000 0000 00000000'), { code: 'ERR_STREAM_BAD_MARKER', offset: 24, record: IMG });
    });

    test('bad ident', () => {
      errs(cat('ffffffff ffffffff | 46454e58 00000003 0000 0000 00000000'), { code: 'ERR_STREAM_BAD_IDENT', offset: 0, record: IMG });
    });

    test('bad version 1 and 4', () => {
      for (const v of ['00000001', '00000004']) {
        errs(cat(`ffffffff ffffffff | 58454e46 ${v} 0000 0000 00000000`), { code: 'ERR_STREAM_BAD_VERSION', offset: 0, record: IMG });
        errs(cat(LIBXL_HEADER_HEX, LIBXL.LIBXC_CONTEXT.hex, `ffffffff ffffffff | 58454e46 ${v} 0000 0000 00000000`), { code: 'ERR_STREAM_BAD_VERSION', offset: 24, record: IMG });
      }
    });

    test('reserved option bits and the big-endian bit', () => {
      errs(cat('ffffffff ffffffff | 58454e46 00000003 | 0004 | 0000 00000000'), { code: 'ERR_STREAM_BAD_OPTIONS', offset: 0, record: IMG });
      errs(cat('ffffffff ffffffff | 58454e46 00000003 | 0001 | 0000 00000000'), { code: 'ERR_STREAM_BAD_OPTIONS', offset: 0, record: IMG });
    });

    test('reserved header fields', () => {
      errs(cat('ffffffff ffffffff | 58454e46 00000003 | 0000 | 0001 | 00000000'), { code: 'ERR_STREAM_RESERVED_NONZERO', offset: 0, record: IMG });
      errs(cat('ffffffff ffffffff | 58454e46 00000003 | 0000 | 0000 | 00010000'), { code: 'ERR_STREAM_RESERVED_NONZERO', offset: 0, record: IMG });
      errs(cat(IMAGE_HEADER_V3_HEX, '02000000 0c00 0100 04000000 11000000'), { code: 'ERR_STREAM_RESERVED_NONZERO', offset: 24, record: DOM });
    });

    test('bad domain type', () => {
      errs(cat(IMAGE_HEADER_V3_HEX, '03000000 0c00 0000 04000000 11000000'), { code: 'ERR_STREAM_BAD_DOMAIN_TYPE', offset: 24, record: DOM });
      errs(cat(LIBXL_HEADER_HEX, LIBXL.LIBXC_CONTEXT.hex, IMAGE_HEADER_V3_HEX, '00000000 0c00 0000 04000000 11000000'), { code: 'ERR_STREAM_BAD_DOMAIN_TYPE', offset: 48, record: DOM });
    });

    test('bad page shift', () => {
      errs(cat(IMAGE_HEADER_V2_HEX, '02000000 0d00 0000 04000000 11000000'), { code: 'ERR_STREAM_BAD_PAGE_SHIFT', offset: 24, record: DOM });
    });

    test('libxl header: bad ident, version, options', () => {
      errs(cat('4c6962786c466d75 00000002 00000000'), { code: 'ERR_STREAM_BAD_IDENT', offset: 0, record: XLH }, { format: 'libxl' });
      errs(cat(IMAGE_HEADER_V3_HEX), { code: 'ERR_STREAM_BAD_IDENT', offset: 0, record: XLH }, { format: 'libxl' });
      errs(cat('4c6962786c466d74 00000001 00000000'), { code: 'ERR_STREAM_BAD_VERSION', offset: 0, record: XLH });
      errs(cat('4c6962786c466d74 00000003 00000000'), { code: 'ERR_STREAM_BAD_VERSION', offset: 0, record: XLH });
      errs(cat('4c6962786c466d74 00000002 00000004'), { code: 'ERR_STREAM_BAD_OPTIONS', offset: 0, record: XLH });
      errs(cat('4c6962786c466d74 00000002 00000001'), { code: 'ERR_STREAM_BAD_OPTIONS', offset: 0, record: XLH });
    });

    test('unknown stream format (auto-detect)', () => {
      errs(cat('4c6962786c466d54 00000002 00000000'), { code: 'ERR_STREAM_UNKNOWN_FORMAT', offset: 0, record: undefined });
      // A legacy image starts with a zero bit in its first 8 octets.
      errs(cat(rep('00', 64)), { code: 'ERR_STREAM_UNKNOWN_FORMAT', offset: 0, record: undefined });
      // Detected as soon as 8 bytes are in, whatever follows.
      const d = new StreamDecoder();
      d.push(hex('ffffff'));
      assertStreamError(() => d.push(hex('0000000000')), { code: 'ERR_STREAM_UNKNOWN_FORMAT', offset: 0, record: undefined });
    });

    test('forced format mismatch', () => {
      errs(hvmStream('libxl', 3).bytes(), { code: 'ERR_STREAM_BAD_MARKER', offset: 0, record: IMG }, { format: 'libxc' });
    });
  });

  describe('records', () => {
    test('unknown mandatory record type, refused on its header alone', () => {
      const d = new StreamDecoder();
      d.push(LIBXC_V3_HVM_PREFIX());
      assertStreamError(() => d.push(rawRecordHeader(0x13, 16)), { code: 'ERR_RECORD_UNKNOWN_MANDATORY', offset: 48, record: 'libxc UNKNOWN_0x00000013' });
      const x = new StreamDecoder();
      x.push(hex(LIBXL_HEADER_HEX));
      assertStreamError(() => x.push(rawRecordHeader(0x06, 0)), { code: 'ERR_RECORD_UNKNOWN_MANDATORY', offset: 16, record: 'libxl UNKNOWN_0x00000006' });
    });

    test('TOOLSTACK (deprecated)', () => {
      errs(cat(LIBXC_V3_HVM_PREFIX(), rawRecord(0x0b, 'aabbccdd'), LIBXC.END.hex), { code: 'ERR_RECORD_DEPRECATED', offset: 48, record: 'libxc TOOLSTACK' });
    });

    test('non-zero padding', () => {
      errs(cat(LIBXC_V3_HVM_PREFIX(), rawRecord(0x09, 'feedface cafebeef 0102030405', '000001'), LIBXC.END.hex), { code: 'ERR_RECORD_BAD_PADDING', offset: 48, record: 'libxc HVM_CONTEXT' });
      errs(cat(LIBXL_V3_HVM_PREFIX(), LIBXC.END.hex, rawRecord(0x03, '02000000 00000000 | 51', '80000000000000'), LIBXL.END.hex), { code: 'ERR_RECORD_BAD_PADDING', offset: 80, record: 'libxl EMULATOR_CONTEXT' });
      errs(cat(LIBXC_V3_HVM_PREFIX(), rawRecord(0x80000001, '', ''), rawRecord(0x80000002, 'aa', '00000000000001'), LIBXC.END.hex), { code: 'ERR_RECORD_BAD_PADDING', offset: 56, record: 'libxc OPTIONAL_0x80000002' });
    });

    test('record too large: refused on its 8-byte header, without the body', () => {
      const cases: [Buffer, number, string][] = [
        [LIBXC_V3_HVM_PREFIX(), 0x09, 'libxc HVM_CONTEXT'],
        [LIBXC_V3_HVM_PREFIX(), 0x80001234, 'libxc OPTIONAL_0x80001234'],
        [LIBXC_V3_HVM_PREFIX(), 0x01, 'libxc PAGE_DATA'],
        [cat(LIBXL_V3_HVM_PREFIX(), LIBXC.END.hex), 0x03, 'libxl EMULATOR_CONTEXT'],
      ];
      for (const [prefix, code, name] of cases) {
        const d = new StreamDecoder();
        assert.equal(d.push(prefix).length > 0, true);
        assertStreamError(() => d.push(rawRecordHeader(code, 0xfffffff0)), { code: 'ERR_RECORD_TOO_LARGE', offset: prefix.length, record: name });
      }
    });

    test('record size limits are configurable and inclusive', () => {
      const limits = { maxRecordBytes: 1024 };
      const ok = new StreamDecoder({ limits });
      ok.push(LIBXC_V3_HVM_PREFIX());
      const got = ok.push(rawRecord(0x09, Buffer.alloc(1024, 1)));
      assert.equal(got.length, 1);
      const big = new StreamDecoder({ limits });
      big.push(LIBXC_V3_HVM_PREFIX());
      assertStreamError(() => big.push(rawRecordHeader(0x09, 1025)), { code: 'ERR_RECORD_TOO_LARGE', offset: 48, record: 'libxc HVM_CONTEXT' });
      // PAGE_DATA is bounded by maxPagesPerRecord: count, pfn words and pages.
      const pages = new StreamDecoder({ limits: { maxPagesPerRecord: 2 } });
      pages.push(LIBXC_V3_HVM_PREFIX());
      assert.deepEqual(pages.push(rawRecordHeader(0x01, 8 + 2 * (8 + 4096))), []);
      const pages2 = new StreamDecoder({ limits: { maxPagesPerRecord: 2 } });
      pages2.push(LIBXC_V3_HVM_PREFIX());
      assertStreamError(() => pages2.push(rawRecordHeader(0x01, 8 + 2 * (8 + 4096) + 8)), { code: 'ERR_RECORD_TOO_LARGE', offset: 48, record: 'libxc PAGE_DATA' });
    });

    describe('PAGE_DATA', () => {
      const pd = (body: string): Buffer => cat(LIBXC_V3_HVM_PREFIX(), rawRecord(0x01, body), LIBXC.END.hex);
      const want = (code: ErrorWant['code']): ErrorWant => ({ code, offset: 48, record: 'libxc PAGE_DATA' });

      test('count 0', () => {
        errs(pd('00000000 00000000 | 01000000 000000f0'), want('ERR_RECORD_BAD_FIELD'));
      });

      test('count above maxPagesPerRecord', () => {
        const body = '03000000 00000000 | 01000000 000000f0 | 02000000 000000f0 | 03000000 000000f0';
        assert.equal(decodeChunks([pd(body)], { limits: { maxPagesPerRecord: 3 } }).length, 5);
        errs(pd(body), want('ERR_RECORD_TOO_LARGE'), { limits: { maxPagesPerRecord: 2 } });
      });

      test('reserved bits in a pfn word', () => {
        errs(pd('02000000 00000000 | 01000000 000000f0 | 02000000 000010f0'), want('ERR_RECORD_RESERVED_NONZERO'));
        errs(pd('01000000 00000000 | 01000000 0000f0f0'), want('ERR_RECORD_RESERVED_NONZERO'));
      });

      test('page types 5..8', () => {
        for (const t of [5, 6, 7, 8]) errs(pd(`01000000 00000000 | 01000000 000000${t}0 | ${rep('00', 4096)}`), want('ERR_RECORD_BAD_PAGE_TYPE'));
      });

      test('pfn above a configured maxPfn', () => {
        const limits = { maxPfn: 0x1_0000_0000 };
        assert.equal(decodeChunks([pd('01000000 00000000 | 00000000 010000f0')], { limits }).length, 5);
        errs(pd('01000000 00000000 | 01000000 010000f0'), want('ERR_RECORD_BAD_FIELD'), { limits });
      });

      test('wrong length', () => {
        errs(pd(`01000000 00000000 | 01000000 00000000 | ${rep('00', 4088)}`), want('ERR_RECORD_BAD_LENGTH'));
        errs(pd(`01000000 00000000 | 01000000 000000f0 | ${rep('00', 8)}`), want('ERR_RECORD_BAD_LENGTH'));
        errs(pd('01000000 00000000'), want('ERR_RECORD_BAD_LENGTH'));
      });

      test('a bad pfn deep in a checkpointed stream is reported at its record', () => {
        const b = checkpointedStream(3, 3);
        const bytes = b.bytes();
        const third = b.items.filter((it) => it.kind === 'record' && it.record.type === 'PAGE_DATA')[2];
        bytes[third.offset + 8 + 8 + 8 + 7] |= 0x01; // reserved bit 56 of pfn[1]
        errs(bytes, { code: 'ERR_RECORD_RESERVED_NONZERO', offset: third.offset, record: 'libxc PAGE_DATA' });
      });
    });

    test('wrong lengths for fixed-size records', () => {
      errs(cat(LIBXC_V3_HVM_PREFIX(), rawRecord(0x08, rep('00', 16)), LIBXC.END.hex), { code: 'ERR_RECORD_BAD_LENGTH', offset: 48, record: 'libxc X86_TSC_INFO' });
      errs(cat(LIBXC_V3_HVM_PREFIX(), rawRecord(0x0d, '00'), LIBXC.END.hex), { code: 'ERR_RECORD_BAD_LENGTH', offset: 48, record: 'libxc VERIFY' });
      errs(cat(LIBXC_V2_HVM_PREFIX(), rawRecord(0x00, '00000000')), { code: 'ERR_RECORD_BAD_LENGTH', offset: 40, record: 'libxc END' });
      errs(cat(IMAGE_HEADER_V2_HEX, '01000000 0c00 0000 04000000 11000000', rawRecord(0x02, '08 04 0000 00000000 00000000'), LIBXC.END.hex), { code: 'ERR_RECORD_BAD_LENGTH', offset: 40, record: 'libxc X86_PV_INFO' });
      errs(cat(LIBXC_V3_PV_PREFIX(), rawRecord(0x07, rep('00', 4088)), LIBXC.END.hex), { code: 'ERR_RECORD_BAD_LENGTH', offset: 96, record: 'libxc SHARED_INFO' });
      errs(cat(LIBXL_V3_HVM_PREFIX(), LIBXC.CHECKPOINT.hex, rawRecord(0x04, '00000000'), LIBXC.END.hex), { code: 'ERR_RECORD_BAD_LENGTH', offset: 80, record: 'libxl CHECKPOINT_END' });
      errs(cat(LIBXL_HEADER_HEX, rawRecord(0x01, '00000000 00000000'), IMAGE_HEADER_V3_HEX), { code: 'ERR_RECORD_BAD_LENGTH', offset: 16, record: 'libxl LIBXC_CONTEXT' });
    });

    test('v2 stream with STATIC_DATA_END, CPUID or MSR policy', () => {
      for (const [g, name] of [
        [LIBXC.STATIC_DATA_END, 'STATIC_DATA_END'],
        [LIBXC.X86_CPUID_POLICY, 'X86_CPUID_POLICY'],
        [LIBXC.X86_MSR_POLICY, 'X86_MSR_POLICY'],
      ] as const) {
        errs(cat(LIBXC_V2_HVM_PREFIX(), g.hex, LIBXC.END.hex), { code: 'ERR_RECORD_NOT_IN_VERSION', offset: 40, record: `libxc ${name}` });
        errs(cat(LIBXC_V2_PV_PREFIX(), g.hex, LIBXC.END.hex), { code: 'ERR_RECORD_NOT_IN_VERSION', offset: 56, record: `libxc ${name}` });
      }
    });

    test('v3 stream with PAGE_DATA before STATIC_DATA_END', () => {
      errs(cat(IMAGE_HEADER_V3_HEX, DOMAIN_HEADER_HVM_417_HEX, LIBXC.X86_CPUID_POLICY.hex, LIBXC.PAGE_DATA.hex), { code: 'ERR_RECORD_OUT_OF_ORDER', offset: 40 + 56, record: 'libxc PAGE_DATA' });
    });

    test('PV records in an HVM stream', () => {
      for (const name of ['X86_PV_INFO', 'X86_PV_P2M_FRAMES', 'X86_PV_VCPU_BASIC', 'X86_PV_VCPU_EXTENDED', 'X86_PV_VCPU_XSAVE', 'X86_PV_VCPU_MSRS', 'SHARED_INFO'] as const) {
        errs(cat(LIBXC_V3_HVM_PREFIX(), LIBXC[name].hex, LIBXC.END.hex), { code: 'ERR_RECORD_WRONG_DOMAIN_TYPE', offset: 48, record: `libxc ${name}` });
      }
    });

    test('HVM records in a PV stream', () => {
      for (const name of ['HVM_CONTEXT', 'HVM_PARAMS'] as const) {
        errs(cat(LIBXC_V3_PV_PREFIX(), LIBXC[name].hex, LIBXC.END.hex), { code: 'ERR_RECORD_WRONG_DOMAIN_TYPE', offset: 96, record: `libxc ${name}` });
      }
    });

    test('CHECKPOINT_DIRTY_PFN_LIST in a forward stream', () => {
      errs(cat(LIBXC_V3_HVM_PREFIX(), LIBXC.CHECKPOINT_DIRTY_PFN_LIST.hex, LIBXC.END.hex), { code: 'ERR_RECORD_OUT_OF_ORDER', offset: 48, record: 'libxc CHECKPOINT_DIRTY_PFN_LIST' });
    });

    test('CHECKPOINT_END without a preceding CHECKPOINT', () => {
      errs(cat(LIBXL_HEADER_HEX, LIBXL.CHECKPOINT_END.hex), { code: 'ERR_RECORD_OUT_OF_ORDER', offset: 16, record: 'libxl CHECKPOINT_END' });
      errs(cat(LIBXL_V3_HVM_PREFIX(), LIBXC.END.hex, LIBXL.CHECKPOINT_END.hex), { code: 'ERR_RECORD_OUT_OF_ORDER', offset: 80, record: 'libxl CHECKPOINT_END' });
    });

    test('a second LIBXC_CONTEXT', () => {
      errs(cat(LIBXL_V3_HVM_PREFIX(), LIBXC.CHECKPOINT.hex, LIBXL.LIBXC_CONTEXT.hex, IMAGE_HEADER_V3_HEX), { code: 'ERR_RECORD_OUT_OF_ORDER', offset: 80, record: 'libxl LIBXC_CONTEXT' });
    });

    test('libxl END before libxc END', () => {
      errs(cat(LIBXL_V3_HVM_PREFIX(), LIBXC.CHECKPOINT.hex, LIBXL.END.hex), { code: 'ERR_RECORD_OUT_OF_ORDER', offset: 80, record: 'libxl END' });
      errs(cat(LIBXL_HEADER_HEX, LIBXL.END.hex), { code: 'ERR_RECORD_OUT_OF_ORDER', offset: 16, record: 'libxl END' });
    });

    describe('libxl records', () => {
      const xl = (rec: Buffer): Buffer => cat(LIBXL_V3_HVM_PREFIX(), LIBXC.END.hex, rec, LIBXL.END.hex);
      const want = (code: ErrorWant['code'], name: string): ErrorWant => ({ code, offset: 80, record: `libxl ${name}` });

      test('xenstore data not NUL terminated', () => {
        errs(xl(rawRecord(0x02, '02000000 00000000 | 6100 62')), want('ERR_RECORD_BAD_FIELD', 'EMULATOR_XENSTORE_DATA'));
      });

      test('xenstore data with an odd number of strings', () => {
        errs(xl(rawRecord(0x02, '02000000 00000000 | 6100 6200 6300')), want('ERR_RECORD_BAD_FIELD', 'EMULATOR_XENSTORE_DATA'));
      });

      test('xenstore key with bad characters', () => {
        errs(xl(rawRecord(0x02, '02000000 00000000 | 61 2a 62 00 7600')), want('ERR_RECORD_BAD_FIELD', 'EMULATOR_XENSTORE_DATA'));
      });

      test('emulator id 3', () => {
        errs(xl(rawRecord(0x03, '03000000 00000000 | 51')), want('ERR_RECORD_BAD_FIELD', 'EMULATOR_CONTEXT'));
        errs(xl(rawRecord(0x02, '03000000 00000000')), want('ERR_RECORD_BAD_FIELD', 'EMULATOR_XENSTORE_DATA'));
      });

      test('CHECKPOINT_STATE: bad length, padding, control id above 3', () => {
        errs(xl(rawRecord(0x05, '')), want('ERR_RECORD_BAD_LENGTH', 'CHECKPOINT_STATE'));
        errs(xl(rawRecord(0x05, '01000000 00000000 00000000')), want('ERR_RECORD_BAD_LENGTH', 'CHECKPOINT_STATE'));
        errs(xl(rawRecord(0x05, '01000000 00000001')), want('ERR_RECORD_RESERVED_NONZERO', 'CHECKPOINT_STATE'));
        errs(xl(rawRecord(0x05, '04000000')), want('ERR_RECORD_BAD_FIELD', 'CHECKPOINT_STATE'));
        // Control id 3 in either body length is fine.
        for (const body of ['03000000', '03000000 00000000']) {
          const item = decodeChunks([xl(rawRecord(0x05, body))]).at(-2);
          assert.ok(item?.kind === 'record');
          assert.deepEqual([item.offset, item.record], [80, { layer: 'libxl', type: 'CHECKPOINT_STATE', controlId: 3 }]);
        }
      });
    });
  });

  describe('stream ends', () => {
    test('trailing bytes after the final END', () => {
      const plain = hvmStream('libxc', 3).bytes();
      errs(cat(plain, '00'), { code: 'ERR_STREAM_TRAILING_DATA', offset: plain.length, record: undefined });
      const xl = hvmStream('libxl', 2).bytes();
      errs(cat(xl, LIBXL.END.hex), { code: 'ERR_STREAM_TRAILING_DATA', offset: xl.length, record: undefined });
      // In a later push.
      const d = new StreamDecoder();
      d.push(plain);
      assert.equal(d.done, true);
      assertStreamError(() => d.push(hex('00000000 00000000')), { code: 'ERR_STREAM_TRAILING_DATA', offset: plain.length, record: undefined });
    });

    test('truncated stream: end() throws ERR_STREAM_TRUNCATED', () => {
      const b = checkpointedStream(3, 2);
      const bytes = b.bytes();
      const records = b.items.filter((it) => it.kind === 'record');
      const pageRec = records.find((it) => it.record.type === 'PAGE_DATA')!;
      const ckptEnd = records.find((it) => it.record.type === 'CHECKPOINT_END')!;
      const ctx = records.find((it) => it.record.type === 'HVM_CONTEXT')!;
      const cases: [string, number, number][] = [
        ['no input', 0, 0],
        ['at a record boundary (after the domain header)', 64, 64],
        ['inside a PAGE_DATA body', pageRec.offset + 100, pageRec.offset],
        ['inside padding', ctx.end - 1, ctx.offset],
        ['right after a CHECKPOINT_END', ckptEnd.end, ckptEnd.end],
        ['just before libxl END', bytes.length - 8, bytes.length - 8],
      ];
      for (const [name, cut, offset] of cases) {
        const d = new StreamDecoder();
        d.push(bytes.subarray(0, cut));
        assert.equal(d.done, false, name);
        assertStreamError(() => d.end(), { code: 'ERR_STREAM_TRUNCATED', offset, record: undefined }, name);
      }
    });

    test('truncation inside a header or record header is reported at that item', () => {
      const bytes = hvmStream('libxl', 3).bytes();
      const cases: [string, number, number][] = [
        ['inside the auto-detect bytes', 5, 0],
        ['inside the libxl header', 12, 0],
        ['inside the image header', 24 + 10, 24],
        ['inside the domain header', 48 + 3, 48],
        ['inside a record header', 64 + 5, 64],
      ];
      for (const [name, cut, offset] of cases) {
        const d = new StreamDecoder();
        d.push(bytes.subarray(0, cut));
        assertStreamError(() => d.end(), { code: 'ERR_STREAM_TRUNCATED', offset, record: undefined }, name);
      }
    });

    test('end() on a complete stream is quiet, also when called twice', () => {
      const d = new StreamDecoder();
      d.push(hvmStream('libxc', 2).bytes());
      d.end();
      d.end();
      assert.equal(d.done, true);
    });
  });

  describe('after an error', () => {
    test('further pushes throw ERR_STREAM_FAILED caused by the first error', () => {
      const d = new StreamDecoder();
      const first = assertStreamError(() => d.push(cat(LIBXC_V3_HVM_PREFIX(), rawRecord(0x09, 'aa', '00000000000001'))), {
        code: 'ERR_RECORD_BAD_PADDING',
        offset: 48,
        record: 'libxc HVM_CONTEXT',
      });
      for (const more of [LIBXC.END.hex, '', '00']) {
        const failed = assertStreamError(() => d.push(hex(more)), { code: 'ERR_STREAM_FAILED', offset: 48, record: undefined });
        assert.equal(failed.cause, first);
      }
      // end() throws the original error again.
      assert.throws(() => d.end(), (err) => err === first);
      assert.equal(d.done, false);
    });

    test('also after a truncation reported by end()', () => {
      const d = new StreamDecoder();
      d.push(LIBXC_V3_HVM_PREFIX());
      const first = assertStreamError(() => d.end(), { code: 'ERR_STREAM_TRUNCATED', offset: 48, record: undefined });
      const failed = assertStreamError(() => d.push(hex(LIBXC.END.hex)), { code: 'ERR_STREAM_FAILED', offset: 48, record: undefined });
      assert.equal(failed.cause, first);
    });
  });
});

describe('PAGE_DATA types through the decoder', () => {
  test('pfns above 2^32 and every page type survive a round trip', () => {
    const types = [PageType.NOTAB, PageType.L1TAB, PageType.L2TAB, PageType.L3TAB, PageType.L4TAB, PageType.L1TAB_PIN, PageType.L2TAB_PIN, PageType.L3TAB_PIN, PageType.L4TAB_PIN, PageType.BROKEN, PageType.XALLOC, PageType.XTAB];
    const pfns = types.map((_, i) => 0xf_ffff_0000_0000 + i);
    const pages = types.slice(0, 9).map((_, i) => page(i));
    const b = new StreamBuilder('libxc');
    b.imageHeader(3).domainHeader({ type: 1, pageShift: 12, xenMajor: 4, xenMinor: 17 });
    b.record({ layer: 'libxc', type: 'X86_PV_INFO', guestWidth: 8, ptLevels: 4 }, { layer: 'libxc', type: 'STATIC_DATA_END' });
    b.record({ layer: 'libxc', type: 'X86_PV_P2M_FRAMES', startPfn: 0, endPfn: 0, frames: [1n] });
    b.record({ layer: 'libxc', type: 'PAGE_DATA', pfns, types, pages }, { layer: 'libxc', type: 'END' });
    assert.deepEqual(decodeChunks([b.bytes()]), b.items);
  });
});
