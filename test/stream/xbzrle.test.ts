/**
 * TANDEM_PAGE_XBZRLE: the delta codec (src/stream/xbzrle.ts) against hex
 * fixtures and random pages, the record (records.ts) against a golden
 * framing and every refusal, decoding it split at every byte, and the
 * decode of its pages against their previous content (xbzrle-pages.ts).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ErrorCodes } from '../../src/errors.js';
import { frameRecord } from '../../src/stream/encoder.js';
import { MAX_PFN, PAGE_SIZE, TandemType } from '../../src/stream/format.js';
import { encodeRecordBody, parseRecord, recordCode, type ParseLimits, type StreamRecord } from '../../src/stream/records.js';
import { MAX_DELTA_BYTES, PageEncoding, ZERO_PAGE, applyXbzrle, checkXbzrle, encodeXbzrle } from '../../src/stream/xbzrle.js';
import { applyXbzrlePages, type XbzrleRecord } from '../../src/stream/xbzrle-pages.js';
import { xorshift32 } from '../../src/util/xorshift.js';
import { assertStreamError, decodeChunks, hex, page, rep, splitAt, StreamBuilder, HVM_417 } from './fixtures.js';

const LIMITS: ParseLimits = { maxPagesPerRecord: 1024, maxPfn: MAX_PFN };
const SITE = { offset: 4096, name: 'libxc TANDEM_PAGE_XBZRLE' };

/** `base` with the bytes at `at` replaced. */
function edited(base: Buffer, edits: [number, number[]][]): Buffer {
  const p = Buffer.from(base);
  for (const [at, bytes] of edits) Buffer.from(bytes).copy(p, at);
  return p;
}

function encode(pageNow: Buffer, base: Buffer): Buffer | undefined {
  const out = Buffer.alloc(MAX_DELTA_BYTES + 16, 0xee);
  const n = encodeXbzrle(pageNow, base, out, 8);
  return n < 0 ? undefined : out.subarray(8, 8 + n);
}

describe('delta codec: hex fixtures', () => {
  const base = page(0x11);
  const CASES: [string, Buffer, string | undefined][] = [
    ['unchanged: the empty delta', base, ''],
    ['first byte: skip 0, 1 literal', edited(base, [[0, [0xaa]]]), '00 01 aa'],
    ['3 bytes at 200: a 2-byte skip varint', edited(base, [[200, [0xaa, 0xbb, 0xcc]]]), 'c801 03 aabbcc'],
    ['a gap of 2 equal bytes is folded into the literal', edited(base, [[10, [0xaa]], [13, [0xbb]]]), '0a 04 aa1111bb'],
    ['a gap of 3 starts a new run', edited(base, [[10, [0xaa]], [14, [0xbb]]]), '0a 01 aa | 03 01 bb'],
    ['the last byte: skip 4095', edited(base, [[4095, [0x00]]]), 'ff1f 01 00'],
    ['128 literal bytes: a 2-byte length varint', edited(base, [[0, Array.from({ length: 128 }, () => 0x22)]]), `00 8001 ${rep('22', 128)}`],
    ['a page that differs everywhere: not smaller than a page, so raw', page(0x22), undefined],
  ];
  for (const [name, now, want] of CASES) {
    test(name, () => {
      const got = encode(now, base);
      if (want === undefined) {
        assert.equal(got, undefined);
        return;
      }
      assert.equal(got!.toString('hex'), hex(want).toString('hex'));
      assert.equal(checkXbzrle(got!), undefined);
      const target = Buffer.from(base);
      assert.equal(applyXbzrle(got!, target), undefined);
      assert.ok(target.equals(now));
    });
  }

  test('unaligned pages encode the same as aligned ones', () => {
    const slab = Buffer.alloc(2 * PAGE_SIZE + 3);
    const now = slab.subarray(1, 1 + PAGE_SIZE);
    const old = slab.subarray(PAGE_SIZE + 2, 2 * PAGE_SIZE + 2);
    old.fill(0x11);
    edited(base, [[4000, [1, 2, 3]], [7, [9]]]).copy(now);
    assert.equal(encode(now, old)!.toString('hex'), encode(Buffer.from(now), Buffer.from(old))!.toString('hex'));
  });
});

describe('delta codec: refusals, each named', () => {
  const CASES: [string, string, RegExp][] = [
    ['ends inside a run header', '00', /ends inside a run header/],
    ['ends inside a varint', '80', /ends inside a varint/],
    ['a varint of 3 bytes', '808001 01 aa', /longer than 2 bytes/],
    ['a varint not in its shortest form', '8000 01 aa', /shortest form/],
    ['an empty literal', '05 00', /empty literal/],
    ['a second run that skips nothing', '00 01 aa 00 01 bb', /skips nothing after a literal/],
    ['a literal past the end of the page', 'ff1f 02 aabb', /page offset 4095, past the end of the page/],
    ['a skip past the end of the page', 'ff7f 01 aa', /past the end of the page/],
    ['fewer literal bytes than announced', '00 05 aabb', /announces 5 literal bytes, 2 remain/],
  ];
  for (const [name, bytes, want] of CASES) {
    test(name, () => {
      assert.match(checkXbzrle(hex(bytes)) ?? 'accepted', want);
    });
  }
  test('a delta as large as a page is refused before it is walked', () => {
    assert.match(checkXbzrle(Buffer.alloc(PAGE_SIZE)) ?? 'accepted', /not smaller than a page/);
  });
});

describe('delta codec: properties over random pages (seeded)', () => {
  test('every delta the encoder writes is canonical, under a page, and rebuilds the page exactly', () => {
    const next = xorshift32(0x5eed);
    const base = Buffer.alloc(PAGE_SIZE);
    const now = Buffer.alloc(PAGE_SIZE);
    let raw = 0;
    for (let round = 0; round < 3000; round++) {
      for (let i = 0; i < PAGE_SIZE; i++) base[i] = next() & 0xff;
      base.copy(now);
      // From a few scattered bytes to most of the page, in runs of varied length.
      const edits = 1 + (next() % (round % 10 === 0 ? 6000 : 40));
      for (let k = 0; k < edits; k++) {
        const at = next() % PAGE_SIZE;
        const len = 1 + (next() % 8);
        for (let j = at; j < Math.min(PAGE_SIZE, at + len); j++) now[j] = next() & 0xff;
      }
      const delta = encode(now, base);
      if (delta === undefined) {
        raw++;
        continue;
      }
      assert.ok(delta.length <= MAX_DELTA_BYTES);
      assert.equal(checkXbzrle(delta), undefined, `round ${round}`);
      const target = Buffer.from(base);
      applyXbzrle(delta, target);
      assert.ok(target.equals(now), `round ${round}: the delta did not rebuild the page`);
    }
    assert.ok(raw > 0 && raw < 1000, `${raw} pages fell back to raw`);
  });

  test('random bytes as a delta: refused with a reason, or a page rebuilt inside its bounds; never a throw', () => {
    const next = xorshift32(0xbad);
    for (let round = 0; round < 20000; round++) {
      const delta = Buffer.alloc(next() % 40);
      for (let i = 0; i < delta.length; i++) delta[i] = round % 2 === 0 ? next() & 0xff : next() & 0x8f;
      const target = Buffer.alloc(PAGE_SIZE, 0x5a);
      const wrong = applyXbzrle(delta, target);
      assert.ok(wrong === undefined || typeof wrong === 'string');
      assert.equal(target.length, PAGE_SIZE);
    }
  });
});

// ---------------------------------------------------------------------------

const DELTA = hex('05 02 aabb');
const GOLDEN_HEX = [
  '05540080 30100000', // type 0x80005405, length 8 + 3 * 12 + 4 + 0 + 4096 = 4144
  '03000000 00000000', // count 3, reserved
  '05000000 00000000 | 0200 | 0400', // pfn 5: delta of 4 bytes
  '06000000 00000000 | 0100 | 0000', // pfn 6: zero page
  '07000000 01000000 | 0000 | 0010', // pfn 0x1_0000_0007: raw page
  '0502aabb', // the delta
  rep('11', 4096), // the raw page
  // 8 + 4144 = 4152: a multiple of 8, no padding
].join('');
const GOLDEN: XbzrleRecord = {
  layer: 'libxc',
  type: 'TANDEM_PAGE_XBZRLE',
  pfns: [5, 6, 0x1_0000_0007],
  encodings: [PageEncoding.DELTA, PageEncoding.ZERO, PageEncoding.RAW],
  payloads: [DELTA, Buffer.alloc(0), page(0x11)],
};

/** The golden record with its body edited: `edit(body)` changes a copy. */
function mutated(edit: (body: Buffer) => Buffer): Buffer {
  return edit(Buffer.from(hex(GOLDEN_HEX).subarray(8)));
}

const parse = (body: Buffer, limits: ParseLimits = LIMITS): StreamRecord => parseRecord('libxc', TandemType.TANDEM_PAGE_XBZRLE, [body], body.length, limits, SITE);

describe('TANDEM_PAGE_XBZRLE record', () => {
  test('golden framing: encodes to the fixture, parses back to the record', () => {
    const framed = Buffer.concat(frameRecord(recordCode(GOLDEN), encodeRecordBody(GOLDEN)));
    assert.equal(framed.toString('hex'), hex(GOLDEN_HEX).toString('hex'));
    assert.deepEqual(parse(framed.subarray(8)), GOLDEN);
  });

  test('the raw page and the delta are views of the body when it lies in one chunk', () => {
    const body = hex(GOLDEN_HEX).subarray(8);
    const rec = parse(body) as XbzrleRecord;
    assert.equal(rec.payloads[2].buffer, body.buffer);
    assert.equal(rec.payloads[0].buffer, body.buffer);
  });

  const le16 = (body: Buffer, at: number, v: number): Buffer => {
    body.writeUInt16LE(v, at);
    return body;
  };
  const ENTRY = (i: number): number => 8 + i * 12;
  const REFUSALS: [string, () => Buffer, string, RegExp, ParseLimits?][] = [
    ['shorter than one entry', () => hex('01000000 00000000'), ErrorCodes.RECORD_BAD_LENGTH, /at least 20/],
    ['reserved field set', () => mutated((b) => (b.writeUInt32LE(1, 4), b)), ErrorCodes.RECORD_RESERVED_NONZERO, /reserved/],
    ['count 0', () => mutated((b) => (b.writeUInt32LE(0, 0), b)), ErrorCodes.RECORD_BAD_FIELD, /count is 0/],
    ['count over the limit', () => mutated((b) => b), ErrorCodes.RECORD_TOO_LARGE, /count 3 exceeds the limit of 2/, { maxPagesPerRecord: 2, maxPfn: MAX_PFN }],
    ['count beyond the body', () => mutated((b) => (b.writeUInt32LE(1000, 0), b)), ErrorCodes.RECORD_BAD_LENGTH, /too short for 1000 page entries/],
    ['bits above the 52-bit pfn', () => mutated((b) => (b.writeUInt32LE(0x0010_0000, ENTRY(0) + 4), b)), ErrorCodes.RECORD_RESERVED_NONZERO, /entry\[0\]/],
    ['a pfn over the replica', () => mutated((b) => b), ErrorCodes.RECORD_BAD_FIELD, /entry\[2\] pfn 0x100000007 exceeds the limit 0xffff/, { maxPagesPerRecord: 1024, maxPfn: 0xffff }],
    ['pfns not ascending', () => mutated((b) => (b.writeUInt32LE(5, ENTRY(1)), b)), ErrorCodes.RECORD_BAD_FIELD, /entry\[1\] pfn 0x5 does not ascend/],
    ['an unknown encoding', () => mutated((b) => le16(b, ENTRY(1) + 8, 7)), ErrorCodes.RECORD_BAD_DELTA, /entry\[1\] \(pfn 0x6\): unknown encoding 7/],
    ['a raw page of the wrong size', () => mutated((b) => le16(b, ENTRY(2) + 10, 4095)), ErrorCodes.RECORD_BAD_DELTA, /raw page of 4095 bytes/],
    ['a zero page with payload', () => mutated((b) => le16(b, ENTRY(1) + 10, 1)), ErrorCodes.RECORD_BAD_DELTA, /zero page with 1 payload bytes/],
    ['a delta as large as a page', () => mutated((b) => le16(b, ENTRY(0) + 10, 4096)), ErrorCodes.RECORD_BAD_DELTA, /delta of 4096 bytes, not smaller than a page/],
    ['payload lengths that do not fill the body', () => mutated((b) => le16(b, ENTRY(0) + 10, 3)), ErrorCodes.RECORD_BAD_LENGTH, /expected 4143 for 3 entries/],
    ['a body cut short', () => mutated((b) => b.subarray(0, b.length - 1)), ErrorCodes.RECORD_BAD_LENGTH, /body length 4143, expected 4144/],
    ['a delta run past the end of the page', () => mutated((b) => ((b[44] = 0xff), (b[45] = 0x1f), (b[46] = 0x02), b)), ErrorCodes.RECORD_BAD_DELTA, /entry\[0\] \(pfn 0x5\): run at byte 0 writes 2 bytes at page offset 4095, past the end/],
    ['a delta with fewer literal bytes than announced', () => mutated((b) => ((b[45] = 0x03), b)), ErrorCodes.RECORD_BAD_DELTA, /announces 3 literal bytes, 2 remain/],
  ];
  for (const [name, body, code, detail, limits] of REFUSALS) {
    test(`refused: ${name}`, () => {
      const err = assertStreamError(() => parse(body(), limits), { code: code as never, offset: SITE.offset, record: SITE.name });
      assert.match(err.message, detail);
    });
  }

  test('encoding refuses what would not decode: a delta as large as a page, pfns out of order', () => {
    assert.throws(() => encodeRecordBody({ ...GOLDEN, payloads: [Buffer.alloc(PAGE_SIZE), Buffer.alloc(0), page(1)] }), RangeError);
    assert.throws(() => encodeRecordBody({ ...GOLDEN, pfns: [6, 5, 7] }), RangeError);
  });
});

describe('TANDEM_PAGE_XBZRLE in a stream', () => {
  const stream = (): StreamBuilder =>
    new StreamBuilder('libxc')
      .imageHeader(3)
      .domainHeader(HVM_417)
      .record({ layer: 'libxc', type: 'STATIC_DATA_END' }, GOLDEN, { layer: 'libxc', type: 'END' });

  test('split at every byte, it decodes to the same record (a payload across chunks is copied)', () => {
    const b = stream();
    const bytes = b.bytes();
    for (let k = 0; k <= bytes.length; k++) assert.deepEqual(decodeChunks(splitAt(bytes, k)), b.items, `split at ${k}`);
  });

  test('a length announcing more than a record of 1024 pages can hold is refused at its header', () => {
    const b = stream();
    const bytes = Buffer.from(b.bytes());
    const rec = b.items.find((i) => i.kind === 'record' && i.record.type === 'TANDEM_PAGE_XBZRLE')!;
    bytes.writeUInt32LE(8 + 1024 * (12 + 4096) + 8, rec.offset + 4);
    assert.throws(() => decodeChunks([bytes.subarray(0, rec.offset + 8)]), (e: Error & { code?: string }) => e.code === ErrorCodes.RECORD_TOO_LARGE);
  });
});

describe('applyXbzrlePages', () => {
  test('the delta applied in the page itself; zero and raw pages written together, in order', () => {
    const target = page(0x33);
    const writes: [number[], Buffer[]][] = [];
    applyXbzrlePages(GOLDEN, (pfn) => (pfn === 5 ? target : assert.fail(`no writable page ${pfn} asked for`)), (pfns, pages) => writes.push([pfns, pages]));
    assert.ok(target.equals(edited(page(0x33), [[5, [0xaa, 0xbb]]])));
    assert.equal(writes.length, 1, 'the zero and the raw page in one write');
    assert.deepEqual(writes[0][0], [6, 0x1_0000_0007]);
    assert.ok(writes[0][1][0].equals(ZERO_PAGE));
    assert.ok(writes[0][1][1].equals(page(0x11)));
  });

  test('a whole page written earlier in the record is in place before a delta on it', () => {
    const ram = new Map<number, Buffer>([[9, page(0x00)]]);
    const rec: XbzrleRecord = { layer: 'libxc', type: 'TANDEM_PAGE_XBZRLE', pfns: [9, 9], encodings: [PageEncoding.RAW, PageEncoding.DELTA], payloads: [page(0x44), DELTA] };
    applyXbzrlePages(rec, (pfn) => ram.get(pfn)!, (pfns, pages) => pfns.forEach((pfn, i) => pages[i].copy(ram.get(pfn)!)));
    assert.ok(ram.get(9)!.equals(edited(page(0x44), [[5, [0xaa, 0xbb]]])));
  });
});

describe('TANDEM_PAGE_XBZRLE fuzzed (seeded): a StreamError or whole pages applied in place, never a crash', () => {
  test('20,000 mutations of a record with many deltas, parsed whole and split in two', () => {
    const next = xorshift32(0xf00d);
    // A record of 40 entries: deltas of varied shape, zero and raw pages.
    const base = page(0x11);
    const pfns: number[] = [];
    const encodings: number[] = [];
    const payloads: Buffer[] = [];
    for (let i = 0; i < 40; i++) {
      pfns.push(i * 3);
      const kind = i % 5;
      if (kind === 3) {
        encodings.push(PageEncoding.ZERO);
        payloads.push(Buffer.alloc(0));
      } else if (kind === 4 && i < 10) {
        encodings.push(PageEncoding.RAW);
        payloads.push(page(i));
      } else {
        const now = edited(base, [[next() % 4000, [1, 2, 3, 4, 5]], [next() % 4000, [9]], [next() % 4090, Array.from({ length: 5 + (next() % 150) }, () => next() & 0xff)]]);
        encodings.push(PageEncoding.DELTA);
        payloads.push(Buffer.from(encode(now, base)!));
      }
    }
    const body = Buffer.concat(encodeRecordBody({ layer: 'libxc', type: 'TANDEM_PAGE_XBZRLE', pfns, encodings, payloads }));
    const INTERESTING = [0, 1, 0x7f, 0x80, 0xff, 0x10, 0x0f, 0x1f];
    const outcomes = new Map<string, number>();
    for (let round = 0; round < 20000; round++) {
      const b = Buffer.from(body);
      for (let k = 1 + (next() % 4); k > 0; k--) {
        // Mostly in the deltas (past the entry table), sometimes in the table.
        const at = next() % 4 === 0 ? next() % (8 + 40 * 12) : next() % b.length;
        b[at] = next() % 2 === 0 ? INTERESTING[next() % INTERESTING.length] : next() & 0xff;
      }
      const cut = next() % 8 === 0 ? b.subarray(0, next() % b.length) : b;
      const split = next() % cut.length || 1;
      const segments = [cut.subarray(0, split), cut.subarray(split)];
      let rec: StreamRecord | undefined;
      try {
        rec = parseRecord('libxc', TandemType.TANDEM_PAGE_XBZRLE, segments, cut.length, LIMITS, SITE);
      } catch (err) {
        assert.ok(err instanceof Error && 'code' in err, `round ${round}: ${String(err)}`);
        const code = (err as { code: string }).code;
        outcomes.set(code, (outcomes.get(code) ?? 0) + 1);
        continue;
      }
      outcomes.set('accepted', (outcomes.get('accepted') ?? 0) + 1);
      // Applied in place, as the secondary does: every entry lands as one whole page, no other page touched.
      const r = rec as XbzrleRecord;
      const ram = new Map<number, Buffer>();
      let landed = 0;
      applyXbzrlePages(
        r,
        (pfn) => {
          if (!ram.has(pfn)) ram.set(pfn, Buffer.from(base));
          landed++;
          return ram.get(pfn)!;
        },
        (ps, pages) => {
          assert.equal(ps.length, pages.length);
          for (const p of pages) assert.equal(p.length, PAGE_SIZE);
          landed += ps.length;
        },
      );
      assert.equal(landed, r.pfns.length);
      for (const p of ram.values()) assert.equal(p.length, PAGE_SIZE);
    }
    assert.ok((outcomes.get(ErrorCodes.RECORD_BAD_DELTA) ?? 0) > 1000, JSON.stringify([...outcomes]));
    assert.ok((outcomes.get('accepted') ?? 0) > 100, JSON.stringify([...outcomes]));
  });
});
