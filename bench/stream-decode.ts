/**
 * stream-decode: StreamDecoder throughput on a PAGE_DATA-heavy checkpointed
 * stream, next to plain memory-copy speed of the same bytes measured in the
 * same run.
 *
 * The stream is what a Remus primary sends: libxl framing, libxc v3, HVM; a
 * live pass over all of guest memory plus dirty pages in the first epoch,
 * dirty pages in later ones, each epoch closed by TSC_INFO / HVM_PARAMS /
 * HVM_CONTEXT / CHECKPOINT and libxl's emulator records / CHECKPOINT_END;
 * then libxc END and libxl END. PAGE_DATA records carry 1024 pages (Xen's
 * batch size).
 *
 * It is cut into 64 KiB chunks (socket-sized reads: pages straddling a chunk
 * boundary are copied by the decoder) and into 1 MiB chunks, outside the
 * timed region (subarray views, no copy). For each chunk size, every round
 * times, back to back and in alternating order:
 *   - decode: a fresh StreamDecoder fed every chunk; the consumer counts the
 *     pages and reads one byte of each, as a receiver handing pages on would;
 *   - memcpy baseline: the same chunks copied into a preallocated buffer of
 *     the stream's size, the way a receiver would stage them.
 * Every timed decode is checked afterwards against the expected page count
 * and byte sum, and one untimed decode per chunk size is checked page by page.
 */
import { randomFillSync } from 'node:crypto';
import { StreamDecoder } from '../src/stream/decoder.js';
import { StreamEncoder } from '../src/stream/encoder.js';
import { DomainType, EmulatorId, PAGE_SIZE, PageType } from '../src/stream/format.js';
import type { CpuidLeaf, HvmParam, MsrEntry, StreamRecord } from '../src/stream/records.js';
import {
  caseResult,
  collectGarbage,
  compare,
  runRounds,
  type BenchContext,
  type BenchResult,
  type Benchmark,
  type CaseResult,
  type Comparison,
  type Subject,
} from '../src/bench/stats.js';
import { xorshift32 } from '../src/util/xorshift.js';

const KiB = 1024;
const MiB = 1024 * KiB;
/** Xen's PAGE_DATA batch. */
const BATCH = 1024;
/** Target: decode at least this fraction of memcpy throughput. */
const TARGET_RATIO = 0.5;
/** Untimed rounds of every subject before timing: JIT tiers, heap in steady state. */
const WARMUP = 3;

interface StreamShape {
  /** Guest memory in pages: the live pass sends all of it. */
  guestPages: number;
  /** Dirty pages sent per checkpoint. */
  dirtyPages: number;
  checkpoints: number;
}

const FULL: StreamShape = { guestPages: 16 * 1024, dirtyPages: 4 * 1024, checkpoints: 4 }; // 32768 pages, ~128 MiB
const QUICK: StreamShape = { guestPages: 4 * 1024, dirtyPages: 1024, checkpoints: 4 }; // 8192 pages, ~32 MiB

interface BuiltStream {
  bytes: Buffer;
  /** Guest memory the pages were taken from. */
  ram: Buffer;
  /** PFN of every page in stream order. */
  pfns: number[];
  records: number;
  pageRecords: number;
  checkpoints: number;
}

/** `n` distinct pfns below `limit`, ascending (Xen walks the dirty bitmap in pfn order). */
function dirtySet(rand: () => number, n: number, limit: number): number[] {
  const picked = new Uint8Array(limit);
  let left = n;
  while (left > 0) {
    const pfn = rand() % limit;
    if (picked[pfn] === 0) {
      picked[pfn] = 1;
      left--;
    }
  }
  const out: number[] = [];
  for (let pfn = 0; pfn < limit; pfn++) if (picked[pfn] === 1) out.push(pfn);
  return out;
}

function buildStream(shape: StreamShape): BuiltStream {
  const rand = xorshift32(0x7a4d3e11);
  const ram = Buffer.allocUnsafe(shape.guestPages * PAGE_SIZE);
  randomFillSync(ram);
  const page = (pfn: number): Buffer => ram.subarray(pfn * PAGE_SIZE, (pfn + 1) * PAGE_SIZE);

  const enc = new StreamEncoder('libxl');
  const parts: Buffer[] = [];
  const pfnsSent: number[] = [];
  let records = 0;
  let pageRecords = 0;
  const emit = (chunks: Buffer[]): void => {
    for (const c of chunks) parts.push(c);
  };
  const rec = (r: StreamRecord): void => {
    emit(enc.record(r));
    records++;
  };
  const sendPages = (pfns: readonly number[]): void => {
    for (let i = 0; i < pfns.length; i += BATCH) {
      const batch = pfns.slice(i, i + BATCH);
      rec({ layer: 'libxc', type: 'PAGE_DATA', pfns: batch, types: batch.map(() => PageType.NOTAB), pages: batch.map(page) });
      pageRecords++;
      for (const pfn of batch) pfnsSent.push(pfn);
    }
  };

  // Static part, as Xen 4.17's saver writes it for an HVM guest.
  emit(enc.libxlHeader());
  rec({ layer: 'libxl', type: 'LIBXC_CONTEXT' });
  emit(enc.imageHeader(3));
  emit(enc.domainHeader({ type: DomainType.X86_HVM, pageShift: 12, xenMajor: 4, xenMinor: 17 }));
  const leaves: CpuidLeaf[] = Array.from({ length: 48 }, (_, i) => ({ leaf: i < 32 ? i : 0x80000000 + i - 32, subleaf: 0, a: rand(), b: rand(), c: rand(), d: rand() }));
  const msrs: MsrEntry[] = [
    { idx: 0xce, flags: 0, val: 0x80000000n },
    { idx: 0x10a, flags: 0, val: 0x0c000e08n },
  ];
  rec({ layer: 'libxc', type: 'X86_CPUID_POLICY', leaves });
  rec({ layer: 'libxc', type: 'X86_MSR_POLICY', msrs });
  rec({ layer: 'libxc', type: 'STATIC_DATA_END' });

  // Device-model and vCPU state: sizes of a small HVM guest with QEMU upstream.
  const hvmContext = Buffer.allocUnsafe(11_000); // not a multiple of 8: padded
  randomFillSync(hvmContext);
  const qemuState = Buffer.allocUnsafe(160 * KiB + 12);
  randomFillSync(qemuState);
  const params: HvmParam[] = [1n, 2n, 5n, 6n, 12n, 17n, 18n, 19n, 20n, 21n, 22n, 27n].map((index) => ({ index, value: BigInt(rand()) }));
  const xenstore: [string, string][] = [
    ['physmap/f0000000/start_addr', 'f0000000'],
    ['physmap/f0000000/size', '1000000'],
    ['physmap/f0000000/name', 'vga.vram'],
  ];

  const all = Array.from({ length: shape.guestPages }, (_, pfn) => pfn);
  for (let cp = 1; cp <= shape.checkpoints; cp++) {
    if (cp === 1) sendPages(all); // live pass
    sendPages(dirtySet(rand, shape.dirtyPages, shape.guestPages));
    rec({ layer: 'libxc', type: 'X86_TSC_INFO', mode: 0, khz: 2_400_000, nsec: BigInt(cp) * 1_000_000_000n, incarnation: cp });
    rec({ layer: 'libxc', type: 'HVM_PARAMS', params });
    rec({ layer: 'libxc', type: 'HVM_CONTEXT', data: hvmContext });
    rec({ layer: 'libxc', type: 'CHECKPOINT' });
    rec({ layer: 'libxl', type: 'EMULATOR_XENSTORE_DATA', emulatorId: EmulatorId.QEMU_UPSTREAM, index: 0, entries: xenstore });
    rec({ layer: 'libxl', type: 'EMULATOR_CONTEXT', emulatorId: EmulatorId.QEMU_UPSTREAM, index: 0, data: qemuState });
    rec({ layer: 'libxl', type: 'CHECKPOINT_END' });
  }
  rec({ layer: 'libxc', type: 'END' });
  rec({ layer: 'libxl', type: 'END' });
  if (!enc.done) throw new Error('bench stream is incomplete');

  const bytes = Buffer.concat(parts, enc.position);
  return { bytes, ram, pfns: pfnsSent, records, pageRecords, checkpoints: shape.checkpoints };
}

/** Zero-copy slices of `size` bytes (the last may be shorter). */
function chunk(bytes: Buffer, size: number): Buffer[] {
  const out: Buffer[] = [];
  for (let at = 0; at < bytes.length; at += size) out.push(bytes.subarray(at, Math.min(bytes.length, at + size)));
  return out;
}

interface Tally {
  pages: number;
  /** Sum of the first byte of every page. */
  touched: number;
  records: number;
}

/** The timed consumer: decode every chunk, count pages, read one byte of each. */
function decodeAll(chunks: readonly Buffer[], tally: Tally): number {
  const dec = new StreamDecoder();
  let pages = 0;
  let touched = 0;
  let records = 0;
  for (let c = 0; c < chunks.length; c++) {
    const items = dec.push(chunks[c]);
    for (let i = 0; i < items.length; i++) {
      const item = items[i];
      if (item.kind !== 'record') continue;
      records++;
      const rec = item.record;
      if (rec.type === 'PAGE_DATA') {
        const ps = rec.pages;
        pages += ps.length;
        for (let j = 0; j < ps.length; j++) touched += ps[j][0];
      }
    }
  }
  dec.end();
  tally.pages = pages;
  tally.touched = touched;
  tally.records = records;
  return pages + touched;
}

/** The baseline: the same chunks copied into a preallocated staging buffer. */
function copyAll(chunks: readonly Buffer[], dest: Buffer): number {
  let at = 0;
  let touched = 0;
  for (let c = 0; c < chunks.length; c++) {
    const src = chunks[c];
    dest.set(src, at);
    touched += dest[at];
    at += src.length;
  }
  return at + touched;
}

/** Untimed full check: every page decoded equals the guest page it was sent from. */
function verifyDecode(stream: BuiltStream, chunks: readonly Buffer[]): Tally {
  const dec = new StreamDecoder();
  const tally: Tally = { pages: 0, touched: 0, records: 0 };
  let checkpoints = 0;
  for (const c of chunks) {
    for (const item of dec.push(c)) {
      if (item.kind !== 'record') continue;
      tally.records++;
      const rec = item.record;
      if (rec.type === 'CHECKPOINT') checkpoints++;
      if (rec.type !== 'PAGE_DATA') continue;
      for (let j = 0; j < rec.pages.length; j++) {
        const pfn = stream.pfns[tally.pages];
        if (rec.pfns[j] !== pfn) throw new Error(`page ${tally.pages}: pfn ${rec.pfns[j]}, expected ${pfn}`);
        const want = stream.ram.subarray(pfn * PAGE_SIZE, (pfn + 1) * PAGE_SIZE);
        if (!rec.pages[j].equals(want)) throw new Error(`page ${tally.pages} (pfn ${pfn}) decoded wrongly`);
        tally.touched += rec.pages[j][0];
        tally.pages++;
      }
    }
  }
  dec.end();
  if (tally.pages !== stream.pfns.length) throw new Error(`decoded ${tally.pages} pages, expected ${stream.pfns.length}`);
  if (tally.records !== stream.records) throw new Error(`decoded ${tally.records} records, expected ${stream.records}`);
  if (checkpoints !== stream.checkpoints || dec.checkpoints !== stream.checkpoints) throw new Error(`decoded ${checkpoints} checkpoints, expected ${stream.checkpoints}`);
  return tally;
}

/** Pages of the stream that straddle a chunk boundary (the decoder copies those). */
function straddling(stream: BuiltStream, size: number): number {
  // Locate every page in the stream by decoding once more; offsets follow from the record layout.
  let n = 0;
  const dec = new StreamDecoder();
  for (const item of dec.push(stream.bytes)) {
    if (item.kind !== 'record' || item.record.type !== 'PAGE_DATA') continue;
    // Body starts 8 bytes into the record: count/reserved, pfn words, then pages.
    const first = item.offset + 8 + 8 + item.record.pfns.length * 8;
    for (let j = 0; j < item.record.pages.length; j++) {
      const start = first + j * PAGE_SIZE;
      if (Math.floor(start / size) !== Math.floor((start + PAGE_SIZE - 1) / size)) n++;
    }
  }
  return n;
}

const fmtSize = (n: number): string => (n >= MiB ? `${n / MiB} MiB` : `${n / KiB} KiB`);

function run(ctx: BenchContext): BenchResult {
  const started = process.hrtime.bigint();
  const shape = ctx.quick ? QUICK : FULL;
  const chunkSizes = [64 * KiB, 1 * MiB];

  ctx.log(`stream-decode: building a ${ctx.quick ? 'quick' : 'full'} stream...`);
  const stream = buildStream(shape);
  const total = stream.bytes.length;
  const dest = Buffer.alloc(total); // preallocated and faulted in before any timing
  const sets = chunkSizes.map((size) => ({ size, tag: fmtSize(size).replace(' ', ''), chunks: chunk(stream.bytes, size) }));

  ctx.log(`stream-decode: ${(total / MiB).toFixed(1)} MiB, ${stream.pfns.length} pages in ${stream.pageRecords} PAGE_DATA records, ${stream.records} records; verifying the decode...`);
  let expected: Tally | undefined;
  for (const set of sets) {
    const t = verifyDecode(stream, set.chunks);
    if (expected !== undefined && (t.touched !== expected.touched || t.pages !== expected.pages)) throw new Error('decodes at different chunk sizes disagree');
    expected = t;
  }
  const want = expected!;

  // One full GC now, so the setup's garbage is not collected inside a timed
  // run. Not before every run: right after a forced mark-compact, decode
  // rounds ran about 2x slower (and took a few hundred extra page faults
  // each) than in the steady state a receiver decoding a stream continuously
  // is in. The rounds measure the steady state instead, and each decode
  // round pays for the scavenges its own allocations cause.
  const gcBeforeWarmup = collectGarbage();
  // Rounds are short (tens of ms), so take many: the host is shared and noisy.
  const minRounds = Math.max(1, ctx.rounds ?? (ctx.quick ? 9 : 21));
  const maxRounds = Math.max(minRounds, ctx.rounds ?? (ctx.quick ? 41 : 151));
  const budgetMs = ctx.quick ? 4_000 : 20_000;

  const tallies: Tally[] = [];
  const subjects: Subject[] = sets.flatMap((set) => [
    { id: `memcpy-${set.tag}`, run: () => copyAll(set.chunks, dest) },
    {
      id: `decode-${set.tag}`,
      run: () => {
        const t: Tally = { pages: 0, touched: 0, records: 0 };
        const v = decodeAll(set.chunks, t);
        tallies.push(t);
        return v;
      },
    },
  ]);

  ctx.log(`stream-decode: timing ${subjects.map((s) => s.id).join(', ')}: ${minRounds}..${maxRounds} interleaved rounds, budget ${budgetMs / 1000} s`);
  const res = runRounds(subjects, {
    warmup: WARMUP,
    minRounds,
    maxRounds,
    budgetMs,
    onRound: (round, elapsedMs) => {
      if (round % 25 === 0) ctx.log(`stream-decode: ${round} rounds, ${(elapsedMs / 1000).toFixed(1)} s`);
    },
  });

  for (const t of tallies) {
    if (t.pages !== want.pages || t.touched !== want.touched || t.records !== want.records) {
      throw new Error(`a timed decode returned ${t.pages} pages / byte sum ${t.touched} / ${t.records} records, expected ${want.pages} / ${want.touched} / ${want.records}`);
    }
  }

  const cases: CaseResult[] = [];
  const comparisons: Comparison[] = [];
  for (const set of sets) {
    const base = caseResult(`memcpy-${set.tag}`, `memcpy baseline (same run), ${fmtSize(set.size)} chunks`, total, res.samples[`memcpy-${set.tag}`], true);
    const dec = caseResult(`decode-${set.tag}`, `decode, ${fmtSize(set.size)} chunks`, total, res.samples[`decode-${set.tag}`]);
    cases.push(base, dec);
    comparisons.push(compare(dec, base, res.samples, `decode / memcpy, ${fmtSize(set.size)} chunks`, TARGET_RATIO));
  }

  const notes = [
    `MB = 10^6 bytes; MB/s at the median round time; ratio = median decode MB/s / median memcpy MB/s (paired = median of per-round ratios).`,
    `Pages straddling a chunk boundary (copied by the decoder): ${sets.map((s) => `${fmtSize(s.size)}: ${straddling(stream, s.size)} of ${stream.pfns.length}`).join('; ')}.`,
    `Steady state: ${gcBeforeWarmup ? 'one full GC before the warm-up, then ' : ''}no forced GC between runs; a decode round pays for the GC its allocations cause.`,
  ];

  return {
    name: 'stream-decode',
    title: 'StreamDecoder throughput vs memcpy (PAGE_DATA-heavy checkpointed stream)',
    params: {
      streamBytes: total,
      pages: stream.pfns.length,
      pageDataRecords: stream.pageRecords,
      records: stream.records,
      checkpoints: stream.checkpoints,
      chunkSizes: chunkSizes.join(','),
      warmup: WARMUP,
      rounds: res.rounds,
      gcBeforeWarmup,
      sink: res.sink,
    },
    cases,
    comparisons,
    notes,
    elapsedMs: Number(process.hrtime.bigint() - started) / 1e6,
  };
}

export const streamDecode: Benchmark = {
  name: 'stream-decode',
  description: 'StreamDecoder MB/s on a ~128 MiB checkpointed stream in 64 KiB and 1 MiB chunks, vs memcpy of the same chunks',
  run,
};
