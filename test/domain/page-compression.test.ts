/**
 * The primary's page cache (src/domain/page-cache.ts) and compressor
 * (page-compressor.ts), with the secondary's decode (xbzrle-pages.ts), over
 * random page histories from seeded generators. What must hold: after every
 * epoch the secondary commits, its replica equals the primary's pages at
 * that epoch, exactly; whatever happened before: epochs torn (the secondary
 * dropped them), epochs applied whose ack was lost (the primary cannot know
 * they were), the cache evicting, a new stream starting over.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { PageCache } from '../../src/domain/page-cache.js';
import { PageCompressor, type CompressionStats } from '../../src/domain/page-compressor.js';
import { frameRecord } from '../../src/stream/encoder.js';
import { MAX_PFN, PAGE_SIZE, TandemType } from '../../src/stream/format.js';
import { encodeRecordBody, parseRecord } from '../../src/stream/records.js';
import { applyXbzrlePages, type XbzrleRecord } from '../../src/stream/xbzrle-pages.js';
import { PageEncoding } from '../../src/stream/xbzrle.js';
import { xorshift32 } from '../../src/util/xorshift.js';

const page = (fill: number): Buffer => Buffer.alloc(PAGE_SIZE, fill);

describe('PageCache', () => {
  test('staged pages are seen at once, kept only on commit', () => {
    const c = new PageCache(4);
    c.stage(1, page(1));
    assert.ok(c.lookup(1)!.equals(page(1)));
    assert.equal(c.size, 0);
    c.commit();
    assert.equal(c.size, 1);
    assert.ok(c.lookup(1)!.equals(page(1)));
    assert.equal(c.stagedPages, 0);
  });

  test('commit copies: the staged view may change afterwards', () => {
    const c = new PageCache(4);
    const p = page(7);
    c.stage(3, p);
    c.commit();
    p.fill(8);
    assert.ok(c.lookup(3)!.equals(page(7)));
  });

  test("discard forgets the epoch's pages altogether, committed content included: the secondary may hold either", () => {
    const c = new PageCache(4);
    c.stage(1, page(1));
    c.stage(2, page(2));
    c.commit();
    c.stage(2, page(22));
    c.stage(3, page(3));
    c.discard();
    assert.ok(c.lookup(1)!.equals(page(1)));
    assert.equal(c.lookup(2), undefined);
    assert.equal(c.lookup(3), undefined);
    assert.equal(c.size, 1);
    // A slot given back is reused before anything is evicted.
    for (const pfn of [4, 5, 6]) c.stage(pfn, page(pfn));
    c.commit();
    assert.equal(c.size, 4);
    assert.equal(c.evictions, 0);
  });

  test('bounded: the least recently used page goes first; a lookup counts as a use', () => {
    const c = new PageCache(3);
    for (const pfn of [1, 2, 3]) c.stage(pfn, page(pfn));
    c.commit();
    c.lookup(1);
    c.stage(4, page(4));
    c.commit();
    assert.equal(c.size, 3);
    assert.equal(c.evictions, 1);
    assert.equal(c.lookup(2), undefined, 'pfn 2 was the least recently used');
    for (const pfn of [1, 3, 4]) assert.ok(c.lookup(pfn)!.equals(page(pfn)), `pfn ${pfn} kept`);
  });

  test('an epoch larger than the cache keeps its last pages', () => {
    const c = new PageCache(2);
    for (const pfn of [1, 2, 3, 4, 5]) c.stage(pfn, page(pfn));
    c.commit();
    assert.equal(c.size, 2);
    assert.ok(c.lookup(5)!.equals(page(5)) && c.lookup(4)!.equals(page(4)));
  });

  test('clear empties it; a capacity below one page is refused', () => {
    const c = new PageCache(2);
    c.stage(1, page(1));
    c.commit();
    c.clear();
    assert.equal(c.size, 0);
    assert.equal(c.lookup(1), undefined);
    assert.throws(() => new PageCache(0), RangeError);
  });
});

describe('PageCompressor', () => {
  test('unchanged: an empty delta; zeros: a zero page; unknown: raw; changed a little: a delta', () => {
    const cache = new PageCache(8);
    for (const pfn of [0, 1, 3]) cache.stage(pfn, page(0x11));
    cache.commit();
    const z = new PageCompressor(cache);
    z.beginEpoch(4);
    const changed = page(0x11);
    changed[100] = 0x99;
    const rec = z.record([0, 1, 2, 3], [page(0x11), page(0), page(0x22), changed]);
    assert.deepEqual(rec.encodings, [PageEncoding.DELTA, PageEncoding.ZERO, PageEncoding.RAW, PageEncoding.DELTA]);
    assert.deepEqual(rec.payloads.map((p) => p.length), [0, 0, PAGE_SIZE, 3]);
    assert.deepEqual(z.stats, { raw: 1, zero: 1, delta: 2, deltaBytes: 3 });
    assert.equal(cache.stagedPages, 4);
  });
});

// ---------------------------------------------------------------------------

type Fate = 'commit' | 'torn' | 'ack-lost' | 'restart';

interface HistoryTotals extends CompressionStats {
  epochs: number;
  fates: Record<Fate, number>;
  evictions: number;
  wire: number;
  plain: number;
}

/**
 * One random history: a guest of `pages` pages, epochs of random dirty
 * sets written in random ways, sent as records of random sizes through the
 * real encode and parse (split at a random byte), applied to a replica as
 * the secondary does, with a random fate per epoch.
 */
function history(seed: number, pages: number, epochs: number, cachePages: number): HistoryTotals {
  const next = xorshift32(seed);
  const chance = (p: number): boolean => next() / 2 ** 32 < p;
  const guest = Buffer.alloc(pages * PAGE_SIZE);
  for (let i = 0; i < guest.length; i += 4) guest.writeUInt32LE(i % 3 === 0 ? next() : 0, i);
  const pageOf = (ram: Buffer, pfn: number): Buffer => ram.subarray(pfn * PAGE_SIZE, (pfn + 1) * PAGE_SIZE);
  // The stream's first checkpoint: the replica holds every page; the cache what epoch 1 staged (here, all of it).
  const replica = Buffer.from(guest);
  let cache = new PageCache(cachePages);
  let compressor = new PageCompressor(cache);
  const firstEpoch = (): void => {
    for (let pfn = 0; pfn < pages; pfn++) cache.stage(pfn, Buffer.from(pageOf(guest, pfn)));
    cache.commit();
  };
  firstEpoch();
  const totals: HistoryTotals = { raw: 0, zero: 0, delta: 0, deltaBytes: 0, epochs: 0, fates: { commit: 0, torn: 0, 'ack-lost': 0, restart: 0 }, evictions: 0, wire: 0, plain: 0 };
  /** Pages the secondary may not hold as the primary has them: sent again in the next epoch. */
  let unsure = new Set<number>();
  const earlier: Buffer[] = [];

  for (let epoch = 2; epoch <= epochs; epoch++) {
    // The guest writes: a few bytes, a run, zeros, all new, the same bytes again, or a page as it was some epochs ago.
    const dirty = new Set(unsure);
    const writes = 1 + (next() % Math.max(1, pages / 4));
    for (let w = 0; w < writes; w++) {
      const pfn = next() % pages;
      const p = pageOf(guest, pfn);
      const style = next() % 8;
      if (style <= 2) for (let k = 1 + (next() % 6); k > 0; k--) p[next() % PAGE_SIZE] = next() & 0xff;
      else if (style === 3) p.fill(next() & 0xff, next() % PAGE_SIZE, PAGE_SIZE);
      else if (style === 4) p.fill(0);
      else if (style === 5) for (let i = 0; i < PAGE_SIZE; i += 4) p.writeUInt32LE(next(), i);
      else if (style === 6 && earlier.length > 0) earlier[next() % earlier.length].copy(p);
      else p.copy(p); // written with what it held: dirty, unchanged
      if (chance(0.05)) earlier.push(Buffer.from(p));
      dirty.add(pfn);
    }
    const pfns = [...dirty].sort((a, b) => a - b);
    // Staged while paused: the copy the records are made from.
    const staged = pfns.map((pfn) => Buffer.from(pageOf(guest, pfn)));
    compressor.beginEpoch(pfns.length);
    const wire: Buffer[] = [];
    for (let i = 0; i < pfns.length; ) {
      const n = Math.min(pfns.length - i, 1 + (next() % 16));
      const rec = compressor.record(pfns.slice(i, i + n), staged.slice(i, i + n));
      wire.push(Buffer.concat(frameRecord(TandemType.TANDEM_PAGE_XBZRLE, encodeRecordBody(rec))));
      i += n;
    }
    totals.raw += compressor.stats.raw;
    totals.zero += compressor.stats.zero;
    totals.delta += compressor.stats.delta;
    totals.deltaBytes += compressor.stats.deltaBytes;
    totals.wire += wire.reduce((s, b) => s + b.length, 0);
    totals.plain += 16 + pfns.length * (8 + PAGE_SIZE);

    const roll = next() % 100;
    const fate: Fate = roll < 75 ? 'commit' : roll < 85 ? 'torn' : roll < 95 ? 'ack-lost' : 'restart';
    totals.fates[fate]++;
    totals.epochs++;
    const applies = fate === 'commit' || fate === 'ack-lost';
    if (applies) {
      // The secondary: parse each record (split at a random byte), apply in the replica's own pages as the records before left them.
      for (const framed of wire) {
        const body = framed.subarray(8, 8 + framed.readUInt32LE(4));
        const cut = next() % (body.length + 1);
        const rec = parseRecord('libxc', TandemType.TANDEM_PAGE_XBZRLE, [body.subarray(0, cut), body.subarray(cut)], body.length, { maxPagesPerRecord: 1024, maxPfn: MAX_PFN }, { offset: 0, name: 'r' }) as XbzrleRecord;
        applyXbzrlePages(rec, (pfn) => pageOf(replica, pfn), (ps, pages) => ps.forEach((pfn, i) => pages[i].copy(replica, pfn * PAGE_SIZE)));
      }
    }
    if (fate === 'commit') {
      cache.commit();
      unsure = new Set();
      assert.ok(replica.equals(guest), `seed ${seed}: the replica differs from the primary after epoch ${epoch}`);
    } else if (fate === 'restart') {
      // A new stream: a fresh pre-copy and first checkpoint; a fresh cache.
      guest.copy(replica);
      cache = new PageCache(cachePages);
      compressor = new PageCompressor(cache);
      firstEpoch();
      unsure = new Set();
    } else {
      cache.discard();
      unsure = dirty;
    }
    totals.evictions = Math.max(totals.evictions, cache.evictions);
  }
  return totals;
}

describe('compressed page histories (seeded): the replica equals the primary after every committed epoch', () => {
  const CASES: [string, number, number, number, number][] = [
    ['a cache larger than the guest', 1, 64, 400, 128],
    ['a cache of a quarter of the guest: evictions', 2, 64, 400, 16],
    ['a one-page cache', 3, 32, 300, 1],
    ['a larger guest', 4, 512, 150, 200],
  ];
  for (const [name, seed, pages, epochs, cachePages] of CASES) {
    test(`${name} (seed ${seed}, ${pages} pages, ${epochs} epochs, cache ${cachePages})`, () => {
      const t = history(seed, pages, epochs, cachePages);
      for (const f of ['commit', 'torn', 'ack-lost', 'restart'] as const) assert.ok(t.fates[f] > 0, `no ${f} epoch: ${JSON.stringify(t.fates)}`);
      assert.ok(t.delta > 0 && t.zero > 0 && t.raw > 0, JSON.stringify(t));
      if (cachePages < pages) assert.ok(t.evictions > 0, 'the cache never evicted');
    });
  }

  test('more seeds, smaller histories', () => {
    for (let seed = 100; seed < 140; seed++) history(seed, 48, 60, 1 + (seed % 40));
  });
});
