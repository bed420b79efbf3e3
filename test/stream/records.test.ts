import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { ErrorCode } from '../../src/errors.js';
import { frameRecord } from '../../src/stream/encoder.js';
import { LibxcType, LibxlType, MAX_PFN, PageType, type Layer } from '../../src/stream/format.js';
import { encodePageDataHead, encodeRecordBody, parseRecord, recordCode, type ParseLimits, type StreamRecord } from '../../src/stream/records.js';
import { CHECKPOINT_STATE_LEN8_HEX, LIBXC, LIBXL, assertStreamError, goldenParts, hex, page, rep, type Golden } from './fixtures.js';

const LIMITS: ParseLimits = { maxPagesPerRecord: 1024, maxPfn: MAX_PFN };
const SITE = { offset: 4096, name: 'the record' };

/** The numeric type of each golden record, from the spec's type tables. */
const SPEC_CODES: Record<string, number> = {
  'libxc END': 0x00,
  'libxc PAGE_DATA': 0x01,
  'libxc X86_PV_INFO': 0x02,
  'libxc X86_PV_P2M_FRAMES': 0x03,
  'libxc X86_PV_VCPU_BASIC': 0x04,
  'libxc X86_PV_VCPU_EXTENDED': 0x05,
  'libxc X86_PV_VCPU_XSAVE': 0x06,
  'libxc SHARED_INFO': 0x07,
  'libxc X86_TSC_INFO': 0x08,
  'libxc HVM_CONTEXT': 0x09,
  'libxc HVM_PARAMS': 0x0a,
  'libxc X86_PV_VCPU_MSRS': 0x0c,
  'libxc VERIFY': 0x0d,
  'libxc CHECKPOINT': 0x0e,
  'libxc CHECKPOINT_DIRTY_PFN_LIST': 0x0f,
  'libxc STATIC_DATA_END': 0x10,
  'libxc X86_CPUID_POLICY': 0x11,
  'libxc X86_MSR_POLICY': 0x12,
  'libxc OPTIONAL': 0x80000123,
  'libxl END': 0x00,
  'libxl LIBXC_CONTEXT': 0x01,
  'libxl EMULATOR_XENSTORE_DATA': 0x02,
  'libxl EMULATOR_CONTEXT': 0x03,
  'libxl CHECKPOINT_END': 0x04,
  'libxl CHECKPOINT_STATE': 0x05,
  'libxl OPTIONAL': 0x80000001,
};

const goldens: [string, Golden][] = [
  ...Object.entries(LIBXC).map(([k, g]): [string, Golden] => [`libxc ${k}`, g]),
  ...Object.entries(LIBXL).map(([k, g]): [string, Golden] => [`libxl ${k}`, g]),
];

const parseBody = (layer: Layer, code: number, body: Buffer | string, limits: ParseLimits = LIMITS): StreamRecord => {
  const b = typeof body === 'string' ? hex(body) : body;
  return parseRecord(layer, code, [b], b.length, limits, SITE);
};

function refuses(layer: Layer, code: number, body: Buffer | string, want: ErrorCode, limits: ParseLimits = LIMITS): void {
  assertStreamError(() => parseBody(layer, code, body, limits), { code: want, offset: SITE.offset, record: SITE.name });
}

describe('golden records', () => {
  test('every record type of both specs has a golden fixture', () => {
    assert.deepEqual(goldens.map(([name]) => name).sort(), Object.keys(SPEC_CODES).sort());
    const libxcCovered = new Set(Object.keys(LIBXC));
    for (const name of Object.keys(LibxcType)) if (name !== 'TOOLSTACK') assert.ok(libxcCovered.has(name), `libxc ${name}`);
    const libxlCovered = new Set(Object.keys(LIBXL));
    for (const name of Object.keys(LibxlType)) assert.ok(libxlCovered.has(name), `libxl ${name}`);
  });

  for (const [name, g] of goldens) {
    describe(name, () => {
      test('encodes to the golden bytes', () => {
        const framed = Buffer.concat(frameRecord(recordCode(g.record), encodeRecordBody(g.record)));
        assert.equal(framed.toString('hex'), hex(g.hex).toString('hex'));
      });

      test('the golden bytes decode to the typed record', () => {
        const { code, length, body, framed } = goldenParts(g);
        assert.equal(code, SPEC_CODES[name]);
        assert.equal(recordCode(g.record), SPEC_CODES[name]);
        assert.equal(framed.length % 8, 0, 'whole record is a multiple of 8 octets');
        assert.ok(framed.subarray(8 + length).every((b) => b === 0), 'padding is zero');
        assert.deepEqual(parseRecord(g.layer, code, [body], length, LIMITS, SITE), g.record);
      });
    });
  }
});

describe('record fields', () => {
  test('PAGE_DATA: 52-bit pfns, types and which pfns carry pages', () => {
    const { body, length } = goldenParts(LIBXC.PAGE_DATA);
    const rec = parseRecord('libxc', 1, [body], length, LIMITS, SITE);
    assert.ok(rec.type === 'PAGE_DATA');
    assert.deepEqual(rec.pfns, [0x1234, 0x56, 0xf12345678, 4503599627370495]);
    assert.ok(rec.pfns[2] > 2 ** 32);
    assert.deepEqual(rec.types, [0x0, 0xf, 0x1, 0xe]);
    assert.equal(rec.pages.length, 2);
    assert.ok(rec.pages[0].every((b) => b === 0xaa));
    assert.ok(rec.pages[1].every((b) => b === 0x5b));
    // Pages are views of the body, not copies.
    assert.equal(rec.pages[0].buffer, body.buffer);
    assert.equal(rec.pages[0].byteOffset, body.byteOffset + 40);
    assert.equal(rec.pages[1].byteOffset, body.byteOffset + 40 + 4096);
  });

  test('PAGE_DATA parses the same from a body cut into many segments', () => {
    const { body, length } = goldenParts(LIBXC.PAGE_DATA);
    for (const size of [1, 3, 7, 8, 100, 4095, 4096, 4097]) {
      const segs: Buffer[] = [];
      for (let at = 0; at < body.length; at += size) segs.push(Buffer.from(body.subarray(at, at + size)));
      assert.deepEqual(parseRecord('libxc', 1, segs, length, LIMITS, SITE), LIBXC.PAGE_DATA.record, `segments of ${size}`);
    }
  });

  test('PAGE_DATA with every page type that carries no data has no pages', () => {
    const rec = parseBody('libxc', 1, '03000000 00000000 | 01000000 000000d0 | 02000000 000000e0 | 03000000 000000f0');
    assert.deepEqual(rec, { layer: 'libxc', type: 'PAGE_DATA', pfns: [1, 2, 3], types: [0xd, 0xe, 0xf], pages: [] });
  });

  test('PAGE_DATA accepts every defined page type', () => {
    for (const t of [0x0, 0x1, 0x2, 0x3, 0x4, 0x9, 0xa, 0xb, 0xc]) {
      const rec = parseBody('libxc', 1, `01000000 00000000 | 05000000 000000${t.toString(16)}0 | ${rep('cd', 4096)}`);
      assert.ok(rec.type === 'PAGE_DATA');
      assert.deepEqual([rec.pfns, rec.types, rec.pages.length], [[5], [t], 1]);
    }
  });

  test('encodePageDataHead packs type and the 52-bit pfn', () => {
    assert.equal(
      encodePageDataHead([0x1234, 0x56, 0xf12345678, MAX_PFN], [PageType.NOTAB, PageType.XTAB, PageType.L1TAB, PageType.XALLOC]).toString('hex'),
      hex('04000000 00000000 | 34120000 00000000 | 56000000 000000f0 | 78563412 0f000010 | ffffffff ffff0fe0').toString('hex'),
    );
    // One type for all pfns.
    assert.equal(encodePageDataHead([1, 2], PageType.L2TAB_PIN).toString('hex'), hex('02000000 00000000 | 01000000 000000a0 | 02000000 000000a0').toString('hex'));
  });

  test('PAGE_DATA encoding passes pages by reference', () => {
    const pages = [page(1), page(2)];
    const body = encodeRecordBody({ layer: 'libxc', type: 'PAGE_DATA', pfns: [3, 4], types: [0, 0], pages });
    assert.equal(body.length, 3);
    assert.equal(body[1], pages[0]);
    assert.equal(body[2], pages[1]);
  });

  test('vcpu records with zero-length context are tolerated (errata 1)', () => {
    for (const [code, type] of [
      [4, 'X86_PV_VCPU_BASIC'],
      [5, 'X86_PV_VCPU_EXTENDED'],
      [6, 'X86_PV_VCPU_XSAVE'],
      [0xc, 'X86_PV_VCPU_MSRS'],
    ] as const) {
      assert.deepEqual(parseBody('libxc', code, '07000000 00000000'), { layer: 'libxc', type, vcpuId: 7, context: Buffer.alloc(0) });
    }
  });

  test('HVM_PARAMS with count 0 is tolerated (errata 1)', () => {
    assert.deepEqual(parseBody('libxc', 0xa, '00000000 00000000'), { layer: 'libxc', type: 'HVM_PARAMS', params: [] });
  });

  test('an empty CHECKPOINT_DIRTY_PFN_LIST has no pfns', () => {
    assert.deepEqual(parseBody('libxc', 0xf, ''), { layer: 'libxc', type: 'CHECKPOINT_DIRTY_PFN_LIST', pfns: [] });
  });

  test('X86_PV_INFO for a 32-bit guest with 3 levels', () => {
    assert.deepEqual(parseBody('libxc', 2, '04 03 0000 00000000'), { layer: 'libxc', type: 'X86_PV_INFO', guestWidth: 4, ptLevels: 3 });
  });

  test('EMULATOR_XENSTORE_DATA with no key/value data', () => {
    assert.deepEqual(parseBody('libxl', 2, '00000000 05000000'), { layer: 'libxl', type: 'EMULATOR_XENSTORE_DATA', emulatorId: 0, index: 5, entries: [] });
    const enc = Buffer.concat(encodeRecordBody({ layer: 'libxl', type: 'EMULATOR_XENSTORE_DATA', emulatorId: 0, index: 5, entries: [] }));
    assert.equal(enc.toString('hex'), '0000000005000000');
  });

  test('EMULATOR_CONTEXT accepts every defined emulator id', () => {
    for (const id of [0, 1, 2]) {
      assert.deepEqual(parseBody('libxl', 3, `0${id}000000 00000000 | 99`), { layer: 'libxl', type: 'EMULATOR_CONTEXT', emulatorId: id, index: 0, data: hex('99') });
    }
  });

  test('CHECKPOINT_STATE also decodes from the spec-drawn 8-byte body', () => {
    const framed = hex(CHECKPOINT_STATE_LEN8_HEX);
    assert.equal(framed.readUInt32LE(4), 8);
    assert.deepEqual(parseRecord('libxl', 5, [framed.subarray(8)], 8, LIMITS, SITE), { layer: 'libxl', type: 'CHECKPOINT_STATE', controlId: 2 });
  });

  test('CHECKPOINT_STATE: every control id', () => {
    for (const id of [0, 1, 2, 3]) {
      assert.deepEqual(parseBody('libxl', 5, `0${id}000000`), { layer: 'libxl', type: 'CHECKPOINT_STATE', controlId: id });
      assert.equal(Buffer.concat(encodeRecordBody({ layer: 'libxl', type: 'CHECKPOINT_STATE', controlId: id })).toString('hex'), `0${id}000000`);
    }
  });

  test('unknown optional records keep their type code and raw body', () => {
    assert.deepEqual(parseBody('libxc', 0xffffffff, 'aabb'), { layer: 'libxc', type: 'OPTIONAL', code: 0xffffffff, data: hex('aabb') });
    assert.deepEqual(parseBody('libxl', 0x80000000, ''), { layer: 'libxl', type: 'OPTIONAL', code: 0x80000000, data: Buffer.alloc(0) });
  });
});

describe('record body validation', () => {
  describe('PAGE_DATA', () => {
    test('a header-only body (count 0, no pfns) is too short', () => {
      refuses('libxc', 1, '00000000 00000000', 'ERR_RECORD_BAD_LENGTH');
    });

    test('count 0 is refused', () => {
      refuses('libxc', 1, '00000000 00000000 | 01000000 000000f0', 'ERR_RECORD_BAD_FIELD');
    });

    test('reserved field of the header must be zero', () => {
      refuses('libxc', 1, '01000000 01000000 | 01000000 000000f0', 'ERR_RECORD_RESERVED_NONZERO');
    });

    test('count above maxPagesPerRecord is refused', () => {
      const limits = { ...LIMITS, maxPagesPerRecord: 2 };
      const two = '02000000 00000000 | 01000000 000000f0 | 02000000 000000f0';
      assert.equal(parseBody('libxc', 1, two, limits).type, 'PAGE_DATA');
      refuses('libxc', 1, '03000000 00000000 | 01000000 000000f0 | 02000000 000000f0 | 03000000 000000f0', 'ERR_RECORD_TOO_LARGE', limits);
    });

    test('each reserved bit (59-52) of a pfn word is refused', () => {
      for (let bit = 52; bit <= 59; bit++) {
        const b = hex('02000000 00000000 | 01000000 000000f0 | 02000000 000000f0');
        b.writeBigUInt64LE(0xf000000000000002n | (1n << BigInt(bit)), 16);
        refuses('libxc', 1, b, 'ERR_RECORD_RESERVED_NONZERO');
      }
    });

    test('reserved page types 5..8 are refused', () => {
      for (const t of [5, 6, 7, 8]) {
        refuses('libxc', 1, `01000000 00000000 | 09000000 000000${t}0 | ${rep('00', 4096)}`, 'ERR_RECORD_BAD_PAGE_TYPE');
        refuses('libxc', 1, `01000000 00000000 | 09000000 000000${t}0`, 'ERR_RECORD_BAD_PAGE_TYPE');
      }
    });

    test('a pfn above the configured maxPfn is refused; maxPfn itself is accepted', () => {
      const limits = { ...LIMITS, maxPfn: 0xfffff };
      assert.equal(parseBody('libxc', 1, '01000000 00000000 | ffff0f00 000000f0', limits).type, 'PAGE_DATA');
      refuses('libxc', 1, '01000000 00000000 | 00001000 000000f0', 'ERR_RECORD_BAD_FIELD', limits);
      // Above 2^32 via the high word.
      refuses('libxc', 1, '01000000 00000000 | 00000000 010000f0', 'ERR_RECORD_BAD_FIELD', limits);
    });

    test('wrong lengths are refused', () => {
      // count 2, one pfn word
      refuses('libxc', 1, '02000000 00000000 | 01000000 000000f0', 'ERR_RECORD_BAD_LENGTH');
      // a NOTAB pfn without its page
      refuses('libxc', 1, '01000000 00000000 | 01000000 00000000', 'ERR_RECORD_BAD_LENGTH');
      // a page one byte short / long
      refuses('libxc', 1, `01000000 00000000 | 01000000 00000000 | ${rep('11', 4095)}`, 'ERR_RECORD_BAD_LENGTH');
      refuses('libxc', 1, `01000000 00000000 | 01000000 00000000 | ${rep('11', 4097)}`, 'ERR_RECORD_BAD_LENGTH');
      // an XTAB pfn followed by a page it does not have
      refuses('libxc', 1, `01000000 00000000 | 01000000 000000f0 | ${rep('11', 4096)}`, 'ERR_RECORD_BAD_LENGTH');
      // less than the count/reserved header
      refuses('libxc', 1, '01000000', 'ERR_RECORD_BAD_LENGTH');
    });
  });

  test('fixed-size empty records refuse a body', () => {
    for (const code of [0x0, 0xd, 0xe, 0x10]) {
      refuses('libxc', code, '00000000 00000000', 'ERR_RECORD_BAD_LENGTH');
      refuses('libxc', code, '00', 'ERR_RECORD_BAD_LENGTH');
    }
    for (const code of [0x0, 0x1, 0x4]) {
      refuses('libxl', code, '00000000', 'ERR_RECORD_BAD_LENGTH');
    }
  });

  test('X86_PV_INFO', () => {
    refuses('libxc', 2, '', 'ERR_RECORD_BAD_LENGTH');
    refuses('libxc', 2, '08 04 0000', 'ERR_RECORD_BAD_LENGTH');
    refuses('libxc', 2, '08 04 0000 00000000 00000000', 'ERR_RECORD_BAD_LENGTH');
    refuses('libxc', 2, '02 04 0000 00000000', 'ERR_RECORD_BAD_FIELD');
    refuses('libxc', 2, '08 02 0000 00000000', 'ERR_RECORD_BAD_FIELD');
    refuses('libxc', 2, '08 05 0000 00000000', 'ERR_RECORD_BAD_FIELD');
    refuses('libxc', 2, '08 04 0100 00000000', 'ERR_RECORD_RESERVED_NONZERO');
    refuses('libxc', 2, '08 04 0000 00000080', 'ERR_RECORD_RESERVED_NONZERO');
  });

  test('X86_PV_P2M_FRAMES', () => {
    refuses('libxc', 3, '', 'ERR_RECORD_BAD_LENGTH');
    refuses('libxc', 3, '00000000', 'ERR_RECORD_BAD_LENGTH');
    refuses('libxc', 3, '00000000 ff010000 | 01000000', 'ERR_RECORD_BAD_LENGTH');
    refuses('libxc', 3, '00020000 ff010000 | 0100000000000000', 'ERR_RECORD_BAD_FIELD');
  });

  test('vcpu records', () => {
    for (const code of [4, 5, 6, 0xc]) {
      refuses('libxc', code, '01000000', 'ERR_RECORD_BAD_LENGTH');
      refuses('libxc', code, '01000000 01000000 | aabb', 'ERR_RECORD_RESERVED_NONZERO');
    }
  });

  test('SHARED_INFO is exactly one page', () => {
    refuses('libxc', 7, '', 'ERR_RECORD_BAD_LENGTH');
    refuses('libxc', 7, rep('00', 4095), 'ERR_RECORD_BAD_LENGTH');
    refuses('libxc', 7, rep('00', 4104), 'ERR_RECORD_BAD_LENGTH');
  });

  test('X86_TSC_INFO', () => {
    refuses('libxc', 8, rep('00', 16), 'ERR_RECORD_BAD_LENGTH');
    refuses('libxc', 8, rep('00', 32), 'ERR_RECORD_BAD_LENGTH');
    refuses('libxc', 8, '01000000 c0c62d00 | efcdab8967452301 | 07000000 01000000', 'ERR_RECORD_RESERVED_NONZERO');
  });

  test('HVM_CONTEXT must not be empty', () => {
    refuses('libxc', 9, '', 'ERR_RECORD_BAD_LENGTH');
  });

  test('HVM_PARAMS', () => {
    refuses('libxc', 0xa, '', 'ERR_RECORD_BAD_LENGTH');
    refuses('libxc', 0xa, '01000000', 'ERR_RECORD_BAD_LENGTH');
    refuses('libxc', 0xa, '02000000 00000000 | 0100000000000000 0200000000000000', 'ERR_RECORD_BAD_LENGTH');
    refuses('libxc', 0xa, '00000000 00000000 | 0100000000000000 0200000000000000', 'ERR_RECORD_BAD_LENGTH');
    refuses('libxc', 0xa, '01000000 01000000 | 0100000000000000 0200000000000000', 'ERR_RECORD_RESERVED_NONZERO');
  });

  test('CHECKPOINT_DIRTY_PFN_LIST is a whole number of u64s', () => {
    refuses('libxc', 0xf, '0100000000000000 01000000', 'ERR_RECORD_BAD_LENGTH');
  });

  test('X86_CPUID_POLICY is one or more 24-byte leaves', () => {
    refuses('libxc', 0x11, '', 'ERR_RECORD_BAD_LENGTH');
    refuses('libxc', 0x11, rep('00', 20), 'ERR_RECORD_BAD_LENGTH');
    refuses('libxc', 0x11, rep('00', 25), 'ERR_RECORD_BAD_LENGTH');
    refuses('libxc', 0x11, rep('00', 56), 'ERR_RECORD_BAD_LENGTH');
  });

  test('X86_MSR_POLICY is one or more 16-byte entries', () => {
    refuses('libxc', 0x12, '', 'ERR_RECORD_BAD_LENGTH');
    refuses('libxc', 0x12, rep('00', 8), 'ERR_RECORD_BAD_LENGTH');
    refuses('libxc', 0x12, rep('00', 24), 'ERR_RECORD_BAD_LENGTH');
  });

  test('TOOLSTACK is deprecated', () => {
    refuses('libxc', 0xb, '', 'ERR_RECORD_DEPRECATED');
    refuses('libxc', 0xb, 'deadbeef', 'ERR_RECORD_DEPRECATED');
  });

  test('emulator records need the 8-byte sub-header', () => {
    refuses('libxl', 2, '', 'ERR_RECORD_BAD_LENGTH');
    refuses('libxl', 2, '02000000', 'ERR_RECORD_BAD_LENGTH');
    refuses('libxl', 3, '02000000 000000', 'ERR_RECORD_BAD_LENGTH');
  });

  test('emulator id 3 and above are refused', () => {
    for (const id of ['03000000', 'ffffffff']) {
      refuses('libxl', 2, `${id} 00000000 | 6100 6200`, 'ERR_RECORD_BAD_FIELD');
      refuses('libxl', 3, `${id} 00000000 | 51`, 'ERR_RECORD_BAD_FIELD');
    }
  });

  test('xenstore data must be NUL terminated', () => {
    refuses('libxl', 2, '02000000 00000000 | 6100 62', 'ERR_RECORD_BAD_FIELD');
  });

  test('xenstore data must be key/value pairs', () => {
    refuses('libxl', 2, '02000000 00000000 | 6100', 'ERR_RECORD_BAD_FIELD');
    refuses('libxl', 2, '02000000 00000000 | 6100 6200 6300', 'ERR_RECORD_BAD_FIELD');
  });

  test('xenstore keys are alphanumeric ASCII and -/_@', () => {
    for (const key of ['612062' /* "a b" */, '612e62' /* "a.b" */, '613a' /* "a:" */, '' /* empty */, 'e9' /* latin1 é */]) {
      refuses('libxl', 2, `02000000 00000000 | ${key}00 7600`, 'ERR_RECORD_BAD_FIELD');
    }
  });

  test('xenstore values are printable ASCII', () => {
    refuses('libxl', 2, '02000000 00000000 | 6b00 0100', 'ERR_RECORD_BAD_FIELD');
    refuses('libxl', 2, '02000000 00000000 | 6b00 ff00', 'ERR_RECORD_BAD_FIELD');
  });

  test('CHECKPOINT_STATE', () => {
    refuses('libxl', 5, '', 'ERR_RECORD_BAD_LENGTH');
    refuses('libxl', 5, '0200', 'ERR_RECORD_BAD_LENGTH');
    refuses('libxl', 5, '02000000 00000000 00000000', 'ERR_RECORD_BAD_LENGTH');
    refuses('libxl', 5, '02000000 01000000', 'ERR_RECORD_RESERVED_NONZERO');
    refuses('libxl', 5, '04000000', 'ERR_RECORD_BAD_FIELD');
    refuses('libxl', 5, 'ffffffff 00000000', 'ERR_RECORD_BAD_FIELD');
  });
});

describe('encoder-side checks', () => {
  test('malformed PAGE_DATA is a RangeError', () => {
    const bad: StreamRecord[] = [
      { layer: 'libxc', type: 'PAGE_DATA', pfns: [], types: [], pages: [] },
      { layer: 'libxc', type: 'PAGE_DATA', pfns: [1, 2], types: [0], pages: [page(0)] },
      { layer: 'libxc', type: 'PAGE_DATA', pfns: [1], types: [0], pages: [] },
      { layer: 'libxc', type: 'PAGE_DATA', pfns: [1], types: [0xf], pages: [page(0)] },
      { layer: 'libxc', type: 'PAGE_DATA', pfns: [1], types: [0], pages: [Buffer.alloc(4095)] },
      { layer: 'libxc', type: 'PAGE_DATA', pfns: [1], types: [5], pages: [page(0)] },
      { layer: 'libxc', type: 'PAGE_DATA', pfns: [1], types: [16], pages: [] },
      { layer: 'libxc', type: 'PAGE_DATA', pfns: [-1], types: [0xf], pages: [] },
      { layer: 'libxc', type: 'PAGE_DATA', pfns: [2 ** 52], types: [0xf], pages: [] },
    ];
    for (const rec of bad) assert.throws(() => encodeRecordBody(rec), RangeError, JSON.stringify({ ...rec, pages: undefined }));
  });

  test('SHARED_INFO must be one page and HVM_CONTEXT non-empty', () => {
    assert.throws(() => encodeRecordBody({ layer: 'libxc', type: 'SHARED_INFO', data: Buffer.alloc(100) }), RangeError);
    assert.throws(() => encodeRecordBody({ layer: 'libxc', type: 'HVM_CONTEXT', data: Buffer.alloc(0) }), RangeError);
  });
});
