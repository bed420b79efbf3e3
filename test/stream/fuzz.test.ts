/**
 * Fuzz tests for StreamDecoder, and for the ImageReader that puts an xl
 * header decoder in front of it: whatever bytes arrive, in whatever chunks,
 * they must either decode them or throw a StreamError with a stable code;
 * never crash with another exception, hang, or buffer a body whose length
 * they have not checked. With endAtCheckpoint, an input may also end cleanly
 * right after a CHECKPOINT_END, and nowhere else.
 *
 * The corpus is built here, deterministically: sim-domain saves (libxc v2/v3,
 * libxl plain and checkpointed), hand-encoded PV streams, and xl save files
 * (an xl header with a JSON config, then a libxl stream; one Remus-shaped,
 * without END). Each fuzz case
 * is derived from (seed, case index) alone, so a failure names the seed and
 * the case and can be replayed on its own:
 *
 *   TANDEM_FUZZ_SEED=0x... TANDEM_FUZZ_ONLY=<case> node --test dist/test/stream/fuzz.test.js
 *
 * (TANDEM_FUZZ_CASES=<n> runs more or fewer cases.) The cases run in worker
 * threads watched by the main thread, so a decoder that loops forever is
 * terminated and reported instead of hanging the test run.
 */
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import test from 'node:test';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';

import { DeviceSet } from '../../src/checkpoint/devices.js';
import { runBeforeEachSuspend, saveDomain } from '../../src/checkpoint/save.js';
import { CheckpointSession } from '../../src/checkpoint/session.js';
import { remusEpochs } from '../../src/checkpoint/strategies.js';
import { SimProtectedDomain } from '../../src/domain/sim/binding.js';
import { SimWorkload } from '../../src/domain/sim/workload.js';
import { SimDomain } from '../../src/domain/sim/domain.js';
import { ErrorCodes, StreamError } from '../../src/errors.js';
import { DEFAULT_DECODER_LIMITS, StreamDecoder, type DecoderLimits, type StreamEnd } from '../../src/stream/decoder.js';
import { StreamEncoder } from '../../src/stream/encoder.js';
import { ImageReader, type ImageItem } from '../../src/stream/image-reader.js';
import { describeXlConfig, summarizeXlConfig } from '../../src/stream/xl-config.js';
import { DEFAULT_XL_LIMITS, XL_FIXED_SIZE, encodeXlHeader, isXlMagicPrefix, type XlHeaderLimits } from '../../src/stream/xl-header.js';
import { wrapInXlSaveFile } from '../../src/stream/xl-writer.js';
import {
  DOMAIN_HEADER_SIZE,
  DomainType,
  EmulatorId,
  IMAGE_HEADER_SIZE,
  LIBXL_HEADER_SIZE,
  LibxcType,
  LibxlType,
  MAX_PFN,
  PAGE_SIZE,
  PageType,
  RECORD_HEADER_SIZE,
  TandemFeature,
  alignUp,
  pageTypeHasData,
  recordTypeName,
  type Layer,
} from '../../src/stream/format.js';
import type { Framing } from '../../src/stream/layout.js';
import type { LibxcRecord, StreamRecord } from '../../src/stream/records.js';
import { PageEncoding, applyXbzrle } from '../../src/stream/xbzrle.js';
import { uniform } from '../../src/util/xorshift.js';

// ---------------------------------------------------------------------------
// Parameters
// ---------------------------------------------------------------------------

const DEFAULT_SEED = 0x7a6d5eed;
const DEFAULT_CASES = 10_000;
/** A single case taking longer than this is reported: a hang detector, not a speed test. */
const CASE_BUDGET_MS = 2000;
/** No progress from a worker for this long: it is stuck in one case, so it is terminated. */
const WATCHDOG_MS = 10_000;
const WORKERS = 2;
/** Probability that a failing case also checks that the decoder stays failed. */
const STICKY_SAMPLE = 0.3;
/** Failures are grouped by kind; this many cases of each kind are reported in full. */
const EXAMPLES_PER_FAILURE = 2;

const TIGHT_LIMITS: Readonly<DecoderLimits> = { maxRecordBytes: 1 << 20, maxPagesPerRecord: 256, maxPfn: MAX_PFN };

const ALL_CODES = new Set<string>(Object.values(ErrorCodes));

function envInt(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`${name}=${raw} is not a non-negative integer`);
  return n;
}

const hex = (n: number): string => `0x${(n >>> 0).toString(16).padStart(8, '0')}`;

// ---------------------------------------------------------------------------
// Seeded PRNG (the project's xorshift32, with the picks the mutators need)
// ---------------------------------------------------------------------------

class Rng {
  /** Uniform in [0, 1). */
  readonly next: () => number;

  constructor(seed: number) {
    this.next = uniform(seed);
  }

  /** Integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  /** Integer in [lo, hi]. */
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }

  chance(p: number): boolean {
    return this.next() < p;
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)];
  }

  u32(): number {
    return (this.int(0x10000) * 0x10000 + this.int(0x10000)) >>> 0;
  }

  bytes(n: number): Buffer {
    const b = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) b[i] = this.int(256);
    return b;
  }
}

/** Seed of one case: a hash of the run seed and the case index. */
function caseSeed(seed: number, index: number): number {
  let h = (seed ^ Math.imul(index + 1, 0x9e3779b1)) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

// ---------------------------------------------------------------------------
// Seed corpus
// ---------------------------------------------------------------------------

interface CorpusEntry {
  name: string;
  framing: Framing;
  /** 'xl': an xl header comes first, read through the ImageReader. */
  container: 'xl' | 'none';
  /** The stream has no END (Remus): it is whole only under Xen's rule, with endAtCheckpoint. */
  endAtCheckpoint: boolean;
  bytes: Buffer;
  /** Offsets of every header field of an xl header, of every header and record, and the end of the stream. */
  boundaries: number[];
}

/** What the fuzz drives: StreamDecoder itself, or the ImageReader (xl header decoder, then StreamDecoder). */
interface Reader {
  push(chunk: Buffer): readonly ImageItem[];
  end(): StreamEnd;
  readonly done: boolean;
  readonly framing: Framing | undefined;
}

interface ReaderSpec {
  kind: 'stream' | 'image';
  /** StreamDecoder only; the ImageReader detects. */
  format: Framing | 'auto';
  limits: DecoderLimits;
  xlLimits: XlHeaderLimits;
  endAtCheckpoint: boolean;
}

function openReader(s: ReaderSpec): Reader {
  if (s.kind === 'image') return new ImageReader({ limits: s.limits, xlLimits: s.xlLimits, endAtCheckpoint: s.endAtCheckpoint });
  return new StreamDecoder({ format: s.format, limits: s.limits, endAtCheckpoint: s.endAtCheckpoint });
}

/** The reader an unmutated input of the corpus needs: the ImageReader for an xl file. */
const specFor = (bytes: Buffer, limits: DecoderLimits, endAtCheckpoint: boolean): ReaderSpec => ({
  kind: isXlMagicPrefix(bytes) ? 'image' : 'stream',
  format: 'auto',
  limits,
  xlLimits: DEFAULT_XL_LIMITS,
  endAtCheckpoint,
});

/** Field offsets of an xl header: byte order, mandatory flags, optional flags, optional length, config length, config. */
const XL_FIELDS = [32, 36, 40, 44, 48, 52];

/** Fixed clock so the sim's TSC_INFO, and so the corpus, is deterministic. */
const FIXED_NOW = (): bigint => 1_700_000_000_123_456_789n;

const DEFAULT_LIMITS: DecoderLimits = { ...DEFAULT_DECODER_LIMITS };

function decodeWhole(bytes: Buffer, limits: DecoderLimits = DEFAULT_LIMITS, endAtCheckpoint = false): { items: ImageItem[]; framing: Framing; end: StreamEnd } {
  const dec = openReader(specFor(bytes, limits, endAtCheckpoint));
  const items = [...dec.push(bytes)];
  const end = dec.end();
  assert.ok(dec.framing, 'framing known after a whole stream');
  return { items, framing: dec.framing, end };
}

function entry(name: string, bytes: Buffer, endAtCheckpoint = false): CorpusEntry {
  const { items, framing } = decodeWhole(bytes, DEFAULT_LIMITS, endAtCheckpoint);
  const xl = isXlMagicPrefix(bytes);
  return { name, framing, container: xl ? 'xl' : 'none', endAtCheckpoint, bytes, boundaries: [...(xl ? XL_FIELDS : []), ...items.map((i) => i.offset), bytes.length] };
}

interface SimStreamOptions {
  pages: number;
  framing: Framing;
  version: 2 | 3;
  checkpoints: number;
  batchPages: number;
  seed: number;
}

async function simStream(o: SimStreamOptions): Promise<CorpusEntry> {
  const domain = new SimDomain({ pages: o.pages, vcpus: 2, now: FIXED_NOW });
  const guest = new SimWorkload(domain, o.seed);
  guest.boot();
  const parts: Buffer[] = [];
  // Page data is lent by reference until the guest runs again: copy it now.
  const saved = runBeforeEachSuspend(new SimProtectedDomain(domain, { recordPages: o.batchPages }), () => guest.run(5));
  await saveDomain(saved, { framing: o.framing, version: o.version, checkpoints: o.checkpoints }, (chunks) => parts.push(Buffer.concat(chunks)));
  const name = `sim ${o.framing} v${o.version} ${o.pages} pages, ${o.checkpoints} checkpoints`;
  return entry(name, Buffer.concat(parts));
}

/**
 * A sim Remus stream as a primary with compression sends it to a secondary
 * that offered it: epochs after the first carry TANDEM_PAGE_XBZRLE (deltas,
 * zero and raw pages). The target holds every epoch at once.
 */
async function compressedSimStream(pages: number, checkpoints: number, batchPages: number, seed: number): Promise<CorpusEntry> {
  const domain = new SimDomain({ pages, vcpus: 1, now: FIXED_NOW });
  const guest = new SimWorkload(domain, seed);
  guest.boot();
  const parts: Buffer[] = [];
  const session = new CheckpointSession({
    domain: runBeforeEachSuspend(new SimProtectedDomain(domain, { recordPages: batchPages }), () => guest.run(5)),
    devices: new DeviceSet(),
    target: {
      // Copied now: page data is lent by reference until the guest runs again.
      write: (chunks) => (parts.push(Buffer.concat(chunks)), Promise.resolve()),
      flushed: () => Promise.resolve(),
      held: () => Promise.resolve(),
      peerFeatures: () => TandemFeature.PAGE_XBZRLE,
    },
    strategy: remusEpochs,
    version: 3,
    precopyPolicy: () => 'stop-and-copy',
    now: () => 0,
    compression: { cachePages: pages },
  });
  await session.precopy();
  for (let e = 1; e < checkpoints; e++) await session.checkpoint('operator');
  await session.end();
  const bytes = Buffer.concat(parts);
  const { items } = decodeWhole(bytes);
  assert.ok(items.some((i) => i.kind === 'record' && i.record.type === 'TANDEM_PAGE_XBZRLE'), 'the compressed corpus entry carries compressed pages');
  return entry(`sim libxl v3 ${pages} pages, ${checkpoints} checkpoints, TANDEM_PAGE_XBZRLE`, bytes);
}

function patternPage(seed: number): Buffer {
  const b = Buffer.alloc(PAGE_SIZE);
  for (let i = 0; i < PAGE_SIZE; i += 4) b.writeUInt32LE(Math.imul(seed + 1, 0x01000193) ^ i, i);
  return b;
}

function pageData(pfns: number[], types: number[], seed: number): LibxcRecord {
  const pages = pfns.filter((_, i) => pageTypeHasData(types[i])).map((pfn, i) => patternPage(seed + pfn + i));
  return { layer: 'libxc', type: 'PAGE_DATA', pfns, types, pages };
}

/** vCPU, shared-info and TSC records that close a PV epoch. */
function pvEpochEnd(epoch: number): LibxcRecord[] {
  const recs: LibxcRecord[] = [];
  for (let vcpu = 0; vcpu < 2; vcpu++) {
    recs.push(
      { layer: 'libxc', type: 'X86_PV_VCPU_BASIC', vcpuId: vcpu, context: Buffer.alloc(64, 0x10 + vcpu + epoch) },
      { layer: 'libxc', type: 'X86_PV_VCPU_EXTENDED', vcpuId: vcpu, context: Buffer.alloc(12, 0x20 + vcpu) },
      // Errata 1: a header-only vcpu record.
      { layer: 'libxc', type: 'X86_PV_VCPU_XSAVE', vcpuId: vcpu, context: Buffer.alloc(0) },
      { layer: 'libxc', type: 'X86_PV_VCPU_MSRS', vcpuId: vcpu, context: Buffer.alloc(32, 0x30 + vcpu) },
    );
  }
  recs.push(
    { layer: 'libxc', type: 'SHARED_INFO', data: patternPage(0x5100 + epoch) },
    { layer: 'libxc', type: 'X86_TSC_INFO', mode: 1, khz: 2_400_000, nsec: 123_456_789n * BigInt(epoch + 1), incarnation: epoch },
  );
  return recs;
}

/** A PV-shaped stream written with the StreamEncoder; libxl framing adds checkpoints and device-model records. */
function pvStream(framing: Framing, version: 2 | 3, checkpoints: number): CorpusEntry {
  const enc = new StreamEncoder(framing);
  const out: Buffer[] = [];
  const put = (chunks: Buffer[]): void => {
    out.push(...chunks);
  };
  const rec = (r: StreamRecord): void => put(enc.record(r));
  const deviceModel = (epoch: number): void => {
    rec({
      layer: 'libxl',
      type: 'EMULATOR_XENSTORE_DATA',
      emulatorId: EmulatorId.QEMU_TRADITIONAL,
      index: 0,
      entries: [
        ['physmap/1/start_addr', 'f0000000'],
        ['device-model/7/state', `running ${epoch}`],
      ],
    });
    rec({ layer: 'libxl', type: 'EMULATOR_CONTEXT', emulatorId: EmulatorId.QEMU_TRADITIONAL, index: 0, data: Buffer.from(`QEVM state ${epoch}`, 'latin1') });
  };

  if (framing === 'libxl') {
    put(enc.libxlHeader());
    rec({ layer: 'libxl', type: 'LIBXC_CONTEXT' });
  }
  put(enc.imageHeader(version));
  put(enc.domainHeader({ type: DomainType.X86_PV, pageShift: 12, xenMajor: 4, xenMinor: version === 3 ? 17 : 6 }));
  rec({ layer: 'libxc', type: 'X86_PV_INFO', guestWidth: version === 3 ? 8 : 4, ptLevels: version === 3 ? 4 : 3 });
  if (version === 3) {
    rec({ layer: 'libxc', type: 'X86_CPUID_POLICY', leaves: [{ leaf: 0, subleaf: 0xffffffff, a: 0xd, b: 0x756e6547, c: 0x6c65746e, d: 0x49656e69 }] });
    rec({ layer: 'libxc', type: 'X86_MSR_POLICY', msrs: [{ idx: 0xce, flags: 0, val: 0x80000000n }] });
    rec({ layer: 'libxc', type: 'STATIC_DATA_END' });
  }
  rec({ layer: 'libxc', type: 'X86_PV_P2M_FRAMES', startPfn: 0, endPfn: 2 ** 20 + 7, frames: [0x1234n, 0xfffff00001n] });
  const P = PageType;
  rec(pageData([0, 1, 2, 3, 4, 5, 6, 7], [P.NOTAB, P.L1TAB, P.L2TAB, P.L3TAB, P.L4TAB, P.BROKEN, P.XALLOC, P.XTAB], 1));
  rec(pageData([2 ** 20, 2 ** 20 + 1, 2 ** 20 + 2, 2 ** 20 + 3, 2 ** 20 + 4], [P.L1TAB_PIN, P.XTAB, P.L2TAB_PIN, P.L3TAB_PIN, P.L4TAB_PIN], 2));
  rec(pageData([9], [P.XTAB], 3));
  rec({ layer: 'libxc', type: 'OPTIONAL', code: 0x80000123, data: Buffer.from('opt13', 'latin1') });
  for (const r of pvEpochEnd(0)) rec(r);
  for (let epoch = 1; epoch <= checkpoints; epoch++) {
    rec({ layer: 'libxc', type: 'CHECKPOINT' });
    deviceModel(epoch);
    rec({ layer: 'libxl', type: 'CHECKPOINT_STATE', controlId: epoch % 4 });
    rec({ layer: 'libxl', type: 'OPTIONAL', code: 0x80000042, data: Buffer.from([1, 2, 3]) });
    rec({ layer: 'libxl', type: 'CHECKPOINT_END' });
    rec(pageData([epoch, 2 ** 20 + epoch], [P.NOTAB, P.XTAB], 10 + epoch));
    for (const r of pvEpochEnd(epoch)) rec(r);
  }
  if (version === 2) rec({ layer: 'libxc', type: 'VERIFY' });
  rec({ layer: 'libxc', type: 'END' });
  if (framing === 'libxl') {
    deviceModel(checkpoints + 1);
    rec({ layer: 'libxl', type: 'END' });
  }
  assert.ok(enc.done);
  const name = `encoder PV ${framing} v${version}, ${checkpoints} checkpoints`;
  return entry(name, Buffer.concat(out));
}

/** A small libxl domain config, as libxl writes it (c_info, b_info); small so that mutations often land in the header. */
const XL_CONFIG = JSON.stringify({ c_info: { type: 'pvh', name: 'fuzz' }, b_info: { max_vcpus: 2, max_memkb: 65536, target_memkb: 65536 } });

/** `stream` (a corpus entry's bytes) in an xl header; `remus`: its closing libxc END and libxl END cut, as a Remus stream has none. */
function xlEntry(name: string, stream: Buffer, options: { config?: string; remus?: boolean } = {}): CorpusEntry {
  const body = options.remus ? stream.subarray(0, stream.length - 2 * RECORD_HEADER_SIZE) : stream;
  return entry(name, Buffer.concat(wrapInXlSaveFile([body], { configJson: options.config })), options.remus ?? false);
}

async function buildCorpus(): Promise<CorpusEntry[]> {
  const xlPlain = await simStream({ pages: 8, framing: 'libxl', version: 3, checkpoints: 0, batchPages: 8, seed: 17 });
  const xlRemus = await simStream({ pages: 8, framing: 'libxl', version: 2, checkpoints: 2, batchPages: 4, seed: 18 });
  return [
    await simStream({ pages: 16, framing: 'libxc', version: 2, checkpoints: 0, batchPages: 5, seed: 11 }),
    await simStream({ pages: 16, framing: 'libxc', version: 3, checkpoints: 0, batchPages: 7, seed: 12 }),
    await simStream({ pages: 24, framing: 'libxl', version: 3, checkpoints: 0, batchPages: 8, seed: 13 }),
    await simStream({ pages: 16, framing: 'libxl', version: 3, checkpoints: 3, batchPages: 4, seed: 14 }),
    await simStream({ pages: 16, framing: 'libxl', version: 2, checkpoints: 3, batchPages: 6, seed: 15 }),
    await simStream({ pages: 16, framing: 'libxc', version: 3, checkpoints: 3, batchPages: 3, seed: 16 }),
    await compressedSimStream(16, 4, 5, 19),
    pvStream('libxc', 3, 0),
    pvStream('libxc', 2, 0),
    pvStream('libxl', 3, 2),
    xlEntry('xl save file, libxl v3 8 pages', xlPlain.bytes, { config: XL_CONFIG }),
    xlEntry('xl save file without config, libxl v3 8 pages', xlPlain.bytes),
    xlEntry('xl-framed Remus stream, libxl v2 8 pages, 2 checkpoints, no END', xlRemus.bytes, { config: XL_CONFIG, remus: true }),
  ];
}

/** Made once per process (main thread and each worker): the saves are quick, and the same every time. */
const CORPUS = await buildCorpus();

/** Re-encodes decoded items with a fresh StreamEncoder. */
function reencode(framing: Framing, items: readonly ImageItem[]): Buffer {
  const enc = new StreamEncoder(framing);
  const out: Buffer[] = [];
  for (const item of items) {
    switch (item.kind) {
      case 'xl-header': {
        // The corpus's configs are JSON the encoder wrote: the text before the NUL.
        const config = item.header.config;
        out.push(encodeXlHeader({ configJson: config && config.length > 0 ? config.subarray(0, config.length - 1).toString('utf8') : undefined }));
        break;
      }
      case 'libxl-header':
        out.push(...enc.libxlHeader());
        break;
      case 'image-header':
        out.push(...enc.imageHeader(item.header.version));
        break;
      case 'domain-header':
        out.push(...enc.domainHeader(item.header));
        break;
      case 'record':
        out.push(...enc.record(item.record));
        break;
    }
  }
  return Buffer.concat(out);
}

// ---------------------------------------------------------------------------
// Mutations
// ---------------------------------------------------------------------------

type Mutator = (r: Rng, b: Buffer, src: CorpusEntry, corpus: readonly CorpusEntry[]) => [Buffer, string];

const INTERESTING_U32 = [0, 1, 4, 7, 8, 15, 16, 24, 0xff, 0x1000, 0x1008, 0xffff, 0x7fffffff, 0x80000000, 0x80000001, 0xfffffff0, 0xfffffff8, 0xfffffffe, 0xffffffff];
const TYPE_CODES = [
  ...Object.values(LibxcType),
  ...Object.values(LibxlType),
  0x13,
  0x7fffffff,
  0x80000000,
  0x80000001,
  0x8000000e,
  0xffffffff,
];

/** An offset in b: half the time near a header/record boundary of the source, where the structure is. */
function pickOffset(r: Rng, len: number, src: CorpusEntry): number {
  if (len === 0) return 0;
  if (r.chance(0.5)) return Math.min(len - 1, r.pick(src.boundaries) + r.int(24));
  return r.int(len);
}

/** A cut point in [0, len]: a boundary or anywhere. */
function pickCut(r: Rng, len: number, src: CorpusEntry): number {
  if (r.chance(0.5)) return Math.min(len, r.pick(src.boundaries));
  return r.int(len + 1);
}

const flipBits: Mutator = (r, b, src) => {
  if (b.length === 0) return [b, 'flip(empty)'];
  const out = Buffer.from(b);
  const at: string[] = [];
  for (let k = r.range(1, 8); k > 0; k--) {
    const off = pickOffset(r, out.length, src);
    const bit = r.int(8);
    out[off] ^= 1 << bit;
    at.push(`${off}.${bit}`);
  }
  return [out, `flip-bits[${at.join(',')}]`];
};

const overwriteBytes: Mutator = (r, b, src) => {
  if (b.length === 0) return [b, 'overwrite(empty)'];
  const out = Buffer.from(b);
  const at: string[] = [];
  for (let k = r.range(1, 8); k > 0; k--) {
    const off = pickOffset(r, out.length, src);
    out[off] = r.chance(0.3) ? r.pick([0x00, 0xff, 0x7f, 0x80]) : r.int(256);
    at.push(`${off}=${out[off]}`);
  }
  return [out, `overwrite[${at.join(',')}]`];
};

function interestingFor(r: Rng, cur: number): number {
  const roll = r.int(3);
  if (roll === 0) return (cur + r.pick([1, -1, 8, -8, 4, -4, PAGE_SIZE, -PAGE_SIZE])) >>> 0;
  if (roll === 1) return r.pick(INTERESTING_U32);
  return r.u32();
}

const setU32: Mutator = (r, b, src) => {
  if (b.length < 4) return [b, 'u32(short)'];
  const out = Buffer.from(b);
  const off = Math.min(pickOffset(r, out.length, src) & ~3, (out.length - 4) & ~3);
  const bigEndian = r.chance(0.2); // the image and libxl headers are big-endian
  const cur = bigEndian ? out.readUInt32BE(off) : out.readUInt32LE(off);
  const v = interestingFor(r, cur);
  if (bigEndian) out.writeUInt32BE(v, off);
  else out.writeUInt32LE(v, off);
  return [out, `u32${bigEndian ? 'be' : 'le'}@${off}=${hex(v)}`];
};

/** Rewrites the type or the length field of a record header. */
const setHeaderField: Mutator = (r, b, src) => {
  const starts = src.boundaries.filter((o) => o + RECORD_HEADER_SIZE <= b.length);
  if (starts.length === 0) return [b, 'header(none)'];
  const out = Buffer.from(b);
  const at = r.pick(starts);
  if (r.chance(0.5)) {
    const v = r.pick(TYPE_CODES);
    out.writeUInt32LE(v, at);
    return [out, `type@${at}=${hex(v)}`];
  }
  const v = interestingFor(r, out.readUInt32LE(at + 4));
  out.writeUInt32LE(v, at + 4);
  return [out, `length@${at + 4}=${hex(v)}`];
};

const truncate: Mutator = (r, b, src) => {
  const cut = r.chance(0.5) ? Math.max(0, pickCut(r, b.length, src) - r.int(9)) : r.int(b.length + 1);
  return [b.subarray(0, cut), `truncate@${cut}`];
};

/** [start, end) of a slice: whole records between two boundaries, or random. */
function pickSlice(r: Rng, len: number, src: CorpusEntry): [number, number] {
  const bounds = src.boundaries.filter((o) => o <= len);
  if (bounds.length >= 2 && r.chance(0.5)) {
    const i = r.int(bounds.length - 1);
    const j = Math.min(bounds.length - 1, i + r.range(1, 3));
    return [bounds[i], bounds[j]];
  }
  const start = r.int(len + 1);
  return [start, Math.min(len, start + r.range(1, r.chance(0.7) ? 64 : 8192))];
}

const duplicateSlice: Mutator = (r, b, src) => {
  const [s, e] = pickSlice(r, b.length, src);
  const at = r.chance(0.5) ? e : pickCut(r, b.length, src);
  return [Buffer.concat([b.subarray(0, at), b.subarray(s, e), b.subarray(at)]), `dup[${s},${e})@${at}`];
};

const deleteSlice: Mutator = (r, b, src) => {
  const [s, e] = pickSlice(r, b.length, src);
  return [Buffer.concat([b.subarray(0, s), b.subarray(e)]), `delete[${s},${e})`];
};

const splice: Mutator = (r, b, src, corpus) => {
  const other = r.pick(corpus);
  const cutA = pickCut(r, b.length, src);
  const cutB = pickCut(r, other.bytes.length, other);
  return [Buffer.concat([b.subarray(0, cutA), other.bytes.subarray(cutB)]), `splice(${cutA} | ${other.name} @${cutB})`];
};

const insertBytes: Mutator = (r, b, src) => {
  const at = pickCut(r, b.length, src);
  const n = r.chance(0.5) ? 8 * r.range(1, 4) : r.range(1, 64);
  const fill = r.int(3);
  const bytes = fill === 0 ? Buffer.alloc(n) : fill === 1 ? Buffer.alloc(n, 0xff) : r.bytes(n);
  return [Buffer.concat([b.subarray(0, at), bytes, b.subarray(at)]), `insert(${n} bytes ${['zero', 'ones', 'random'][fill]})@${at}`];
};

const MUTATORS: readonly [number, Mutator][] = [
  [3, flipBits],
  [2, overwriteBytes],
  [3, setU32],
  [3, setHeaderField],
  [1, truncate],
  [1, duplicateSlice],
  [1, deleteSlice],
  [1, splice],
  [1, insertBytes],
];
const MUTATOR_WEIGHT = MUTATORS.reduce((n, [w]) => n + w, 0);

function pickMutator(r: Rng): Mutator {
  let x = r.int(MUTATOR_WEIGHT);
  for (const [w, m] of MUTATORS) {
    if (x < w) return m;
    x -= w;
  }
  return MUTATORS[0][1];
}

// ---------------------------------------------------------------------------
// One fuzz case
// ---------------------------------------------------------------------------

interface FuzzCase {
  seed: number;
  index: number;
  source: string;
  steps: string[];
  input: Buffer;
  limits: DecoderLimits;
  spec: ReaderSpec;
  /** Continues the case's stream of random numbers: chunking, sampling. */
  rng: Rng;
}

/** xl header limits low enough that the corpus's own headers hit them. */
const TIGHT_XL_LIMITS: readonly XlHeaderLimits[] = [
  { maxConfigBytes: 0, maxOptionalBytes: 4 },
  { maxConfigBytes: 16, maxOptionalBytes: 64 },
  { maxConfigBytes: 4096, maxOptionalBytes: 3 },
  { maxConfigBytes: 4096, maxOptionalBytes: 0 },
];

function makeCase(corpus: readonly CorpusEntry[], seed: number, index: number): FuzzCase {
  const rng = new Rng(caseSeed(seed, index));
  const src = rng.pick(corpus);
  let input = src.bytes;
  const steps: string[] = [];
  const count = rng.chance(0.6) ? 1 : rng.range(2, 4);
  for (let k = 0; k < count; k++) {
    const [out, what] = pickMutator(rng)(rng, input, src, corpus);
    input = out;
    steps.push(what);
  }
  let limits = TIGHT_LIMITS;
  const roll = rng.next();
  if (roll < 0.15) {
    // Tighter still, so corpus records themselves hit the limits.
    limits = { maxRecordBytes: rng.pick([0, 8, 64, PAGE_SIZE, 2 * PAGE_SIZE + 24, 20_000]), maxPagesPerRecord: rng.range(1, 4), maxPfn: MAX_PFN };
  } else if (roll < 0.2) {
    limits = { ...TIGHT_LIMITS, maxPfn: rng.pick([0, 15, 2 ** 20]) };
  }
  const format: Framing | 'auto' = rng.chance(0.9) ? 'auto' : rng.pick(['libxc', 'libxl'] as const);
  // An xl file needs the ImageReader; a bare stream goes to it now and then too (its detection is fuzzed as well).
  const kind = src.container === 'xl' || rng.chance(0.1) ? 'image' : 'stream';
  const endAtCheckpoint = src.endAtCheckpoint || rng.chance(0.2);
  const xlLimits = rng.chance(0.15) ? rng.pick(TIGHT_XL_LIMITS) : DEFAULT_XL_LIMITS;
  const spec: ReaderSpec = { kind, format: kind === 'image' ? 'auto' : format, limits, xlLimits, endAtCheckpoint };
  return { seed, index, source: src.name, steps, input, limits, spec, rng };
}

function describeCase(c: FuzzCase): string {
  const l = c.limits;
  return (
    `case #${c.index} (seed ${hex(c.seed)}): ${c.source} -> ${c.steps.join(' + ')}; ${c.input.length} bytes, ` +
    `${c.spec.kind === 'image' ? 'ImageReader' : `StreamDecoder format ${c.spec.format}`}${c.spec.endAtCheckpoint ? ', endAtCheckpoint' : ''}, ` +
    `limits {maxRecordBytes ${l.maxRecordBytes}, maxPagesPerRecord ${l.maxPagesPerRecord}, maxPfn ${l.maxPfn}}, ` +
    `xl limits {maxConfigBytes ${c.spec.xlLimits.maxConfigBytes}, maxOptionalBytes ${c.spec.xlLimits.maxOptionalBytes}}; ` +
    `replay: TANDEM_FUZZ_SEED=${hex(c.seed)} TANDEM_FUZZ_ONLY=${c.index} node --test dist/test/stream/fuzz.test.js`
  );
}

function errorText(err: unknown): string {
  if (err instanceof Error) return err.stack ?? `${err.name}: ${err.message}`;
  return `non-Error thrown: ${String(err)}`;
}

/** What every error out of the decoder must look like. */
function checkStreamError(err: unknown, pushed: number, what: string): asserts err is StreamError {
  if (!(err instanceof StreamError)) {
    const name = err instanceof Error ? `${err.name}: ${err.message.split('\n', 1)[0]}` : typeof err;
    throw new Error(`${what} threw ${name}, not a StreamError\n${errorText(err)}`, { cause: err });
  }
  assert.ok(ALL_CODES.has(err.code), `${what}: code ${String(err.code)} is not one of ErrorCodes`);
  assert.equal(err.name, 'StreamError');
  assert.ok(Number.isSafeInteger(err.offset) && err.offset >= 0, `${what}: offset ${err.offset} is not a non-negative integer (${err.message})`);
  assert.ok(err.offset <= pushed, `${what}: offset ${err.offset} beyond the ${pushed} bytes pushed (${err.message})`);
  assert.ok(!/[\r\n]/.test(err.message), `${what}: message contains a newline: ${JSON.stringify(err.message)}`);
}

/** Each item starts where the previous one ended and stays within the limits; returns its end. */
function checkItem(item: ImageItem, expectOffset: number, pushed: number, limits: DecoderLimits, xlLimits: XlHeaderLimits): number {
  assert.equal(item.offset, expectOffset, `${item.kind} starts at ${item.offset}, the previous item ended at ${expectOffset}`);
  assert.ok(item.end <= pushed, `${item.kind} ends at ${item.end}, beyond the ${pushed} bytes pushed`);
  const size = item.end - item.offset;
  switch (item.kind) {
    case 'xl-header': {
      const h = item.header;
      assert.equal(item.offset, 0, 'the xl header opens the input');
      assert.equal(size, h.size);
      assert.equal(size, XL_FIXED_SIZE + h.optionalLength);
      assert.ok(h.optionalLength <= xlLimits.maxOptionalBytes, `optional data ${h.optionalLength} bytes, limit ${xlLimits.maxOptionalBytes}`);
      assert.ok((h.config?.length ?? 0) <= xlLimits.maxConfigBytes, `config ${h.config?.length} bytes, limit ${xlLimits.maxConfigBytes}`);
      assert.equal(h.optionalLength, h.config === undefined ? 0 : 4 + h.config.length + h.tailLength);
      // Whatever the config holds, inspect's summary of it is one line, and never throws.
      const line = describeXlConfig(summarizeXlConfig(h));
      assert.ok(!/\p{Cc}/u.test(line), `config summary with a control character: ${JSON.stringify(line)}`);
      break;
    }
    case 'libxl-header':
      assert.equal(size, LIBXL_HEADER_SIZE);
      break;
    case 'image-header':
      assert.equal(size, IMAGE_HEADER_SIZE);
      break;
    case 'domain-header':
      assert.equal(size, DOMAIN_HEADER_SIZE);
      break;
    case 'record': {
      const rec = item.record;
      const name = `${rec.layer} ${rec.type} at ${item.offset}`;
      assert.ok(item.length <= limits.maxRecordBytes, `${name}: body ${item.length} bytes exceeds maxRecordBytes ${limits.maxRecordBytes}`);
      assert.equal(size, RECORD_HEADER_SIZE + alignUp(item.length), `${name}: framed size`);
      if (rec.layer === 'libxc' && rec.type === 'PAGE_DATA') {
        const count = rec.pfns.length;
        assert.ok(count >= 1 && count <= limits.maxPagesPerRecord, `${name}: ${count} pfns, limit ${limits.maxPagesPerRecord}`);
        assert.equal(rec.types.length, count);
        assert.ok(rec.pages.length <= count, `${name}: more pages than pfns`);
        for (const pfn of rec.pfns) assert.ok(pfn <= limits.maxPfn, `${name}: pfn ${pfn} above maxPfn ${limits.maxPfn}`);
        for (const page of rec.pages) assert.equal(page.length, PAGE_SIZE, `${name}: page of ${page.length} bytes`);
        assert.equal(item.length, 8 + 8 * count + PAGE_SIZE * rec.pages.length, `${name}: body length vs pfns and pages`);
      }
      if (rec.layer === 'libxc' && rec.type === 'TANDEM_PAGE_XBZRLE') {
        const count = rec.pfns.length;
        assert.ok(count >= 1 && count <= limits.maxPagesPerRecord, `${name}: ${count} pfns, limit ${limits.maxPagesPerRecord}`);
        assert.ok(rec.encodings.length === count && rec.payloads.length === count);
        let payload = 0;
        for (let i = 0; i < count; i++) {
          assert.ok(rec.pfns[i] <= limits.maxPfn && (i === 0 || rec.pfns[i] > rec.pfns[i - 1]), `${name}: pfn ${rec.pfns[i]} out of bounds or order`);
          payload += rec.payloads[i].length;
          // Whatever passed the parser decodes to exactly one page, within it.
          const target = Buffer.alloc(PAGE_SIZE);
          if (rec.encodings[i] === PageEncoding.DELTA) assert.equal(applyXbzrle(rec.payloads[i], target), undefined, `${name}: entry ${i} accepted but does not apply`);
          else assert.equal(rec.payloads[i].length, rec.encodings[i] === PageEncoding.RAW ? PAGE_SIZE : 0, `${name}: entry ${i} payload`);
          assert.equal(target.length, PAGE_SIZE);
        }
        assert.equal(item.length, 8 + 12 * count + payload, `${name}: body length vs entries and payloads`);
      }
      break;
    }
  }
  return item.end;
}

/** 'checkpoint': ended cleanly right after a CHECKPOINT_END (endAtCheckpoint only). */
type Outcome = 'done' | 'checkpoint' | 'incomplete' | 'error';

interface CaseResult {
  outcome: Outcome;
  code: string | undefined;
  items: number;
  sticky: boolean;
  ms: number;
}

const EMPTY = Buffer.alloc(0);

/** After an error the decoder stays failed: push() throws ERR_STREAM_FAILED caused by the first error. */
function checkSticky(dec: Reader, first: StreamError, c: FuzzCase, pushed: number): void {
  const more = c.rng.chance(0.5) && pushed < c.input.length ? c.input.subarray(pushed, pushed + c.rng.range(1, 4096)) : c.rng.chance(0.5) ? EMPTY : c.rng.bytes(c.rng.range(1, 32));
  for (let round = 0; round < 2; round++) {
    let thrown: unknown;
    try {
      dec.push(more);
    } catch (err) {
      thrown = err;
    }
    assert.ok(thrown !== undefined, `push() after ${first.code} returned instead of throwing ERR_STREAM_FAILED`);
    checkStreamError(thrown, pushed + more.length, 'push() after an error');
    assert.equal(thrown.code, ErrorCodes.STREAM_FAILED, `push() after ${first.code} threw ${thrown.code}`);
    assert.equal(thrown.cause, first, 'ERR_STREAM_FAILED carries the original error as cause');
    assert.equal(thrown.offset, first.offset, 'ERR_STREAM_FAILED reports the offset of the original error');
  }
  let ended: unknown;
  try {
    dec.end();
  } catch (err) {
    ended = err;
  }
  assert.ok(ended !== undefined, `end() after ${first.code} returned`);
  checkStreamError(ended, pushed, 'end() after an error');
  assert.ok(ended === first || ended.cause === first, 'end() after an error reports the original error');
}

interface Verdict {
  outcome: Outcome;
  /** The first error, from push() or end(). */
  error: StreamError | undefined;
  /** `kind@offset-end` of every item decoded. */
  items: string[];
  pushed: number;
  decoder: Reader;
}

/**
 * Decodes `input` in the chunk sizes `nextSize` gives (with an empty push
 * slipped in where `emptyPush` says so), checking every item, the error if
 * any, and end(); throws only when an invariant is broken.
 */
function decodeChecked(input: Buffer, spec: ReaderSpec, nextSize: () => number, emptyPush: () => boolean = () => false): Verdict {
  const dec = openReader(spec);
  const items: string[] = [];
  let last: ImageItem | undefined;
  let pushed = 0;
  let expectOffset = 0;
  let failure: unknown;
  try {
    do {
      const chunk = input.subarray(pushed, pushed + nextSize());
      pushed += chunk.length;
      for (const item of dec.push(chunk)) {
        expectOffset = checkItem(item, expectOffset, pushed, spec.limits, spec.xlLimits);
        items.push(`${item.kind === 'record' ? `${item.record.layer} ${item.record.type}` : item.kind}@${item.offset}-${item.end}`);
        last = item;
      }
      if (emptyPush()) dec.push(EMPTY);
    } while (pushed < input.length);
  } catch (err) {
    if (err instanceof assert.AssertionError) throw err;
    failure = err;
  }
  if (failure !== undefined) {
    checkStreamError(failure, pushed, 'push()');
    assert.notEqual(failure.code, ErrorCodes.STREAM_FAILED, 'the first error is ERR_STREAM_FAILED');
    return { outcome: 'error', error: failure, items, pushed, decoder: dec };
  }
  if (dec.done) {
    assert.equal(expectOffset, input.length, `the decoder reports done without decoding the whole input\nlast item ${items.at(-1) ?? '(none)'}, input ${input.length} bytes`);
    const outer = dec.framing;
    assert.ok(
      last?.kind === 'record' && last.record.type === 'END' && last.record.layer === outer,
      `the decoder reports done, but its last item is not the ${outer} END record\nlast item ${items.at(-1) ?? '(none)'}`,
    );
    try {
      dec.end();
    } catch (err) {
      throw new Error(`end() threw although the decoder reports done:\n${errorText(err)}`, { cause: err });
    }
    return { outcome: 'done', error: undefined, items, pushed, decoder: dec };
  }
  let ended: StreamEnd | undefined;
  try {
    ended = dec.end();
  } catch (err) {
    failure = err;
  }
  if (ended !== undefined) {
    // Only Xen's rule lets an input end short of END, and only right after a CHECKPOINT_END.
    assert.ok(spec.endAtCheckpoint, `end() returned ${JSON.stringify(ended)} without endAtCheckpoint although the decoder does not report done`);
    assert.equal(ended.kind, 'checkpoint', 'end() returned END although the decoder does not report done');
    assert.equal(expectOffset, input.length, `a clean end at a checkpoint with bytes left undecoded\nlast item ${items.at(-1) ?? '(none)'}, input ${input.length} bytes`);
    assert.ok(
      last?.kind === 'record' && last.record.layer === 'libxl' && last.record.type === 'CHECKPOINT_END',
      `a clean end at a checkpoint whose last item is not CHECKPOINT_END\nlast item ${items.at(-1) ?? '(none)'}`,
    );
    assert.ok(ended.checkpoint >= 1);
    return { outcome: 'checkpoint', error: undefined, items, pushed, decoder: dec };
  }
  assert.ok(failure !== undefined, 'end() returned nothing');
  checkStreamError(failure, pushed, 'end()');
  assert.equal(failure.code, ErrorCodes.STREAM_TRUNCATED, `end() of an incomplete stream threw ${failure.code}`);
  return { outcome: 'incomplete', error: failure, items, pushed, decoder: dec };
}

const verdictText = (v: Verdict): string =>
  v.error === undefined ? `${v.outcome} after ${v.items.length} items` : `${v.outcome} ${v.error.code} at offset ${v.error.offset} (${v.error.message})`;

/** Chunking must not change the result: same outcome, same first error, same items when done. */
function assertSameVerdict(chunked: Verdict, whole: Verdict, how: string): void {
  const same =
    chunked.outcome === whole.outcome &&
    chunked.error?.code === whole.error?.code &&
    chunked.error?.offset === whole.error?.offset &&
    ((chunked.outcome !== 'done' && chunked.outcome !== 'checkpoint') || chunked.items.join() === whole.items.join());
  assert.ok(same, `decoding depends on chunking (${chunked.outcome} vs ${whole.outcome})\n${how} gives ${verdictText(chunked)}; one whole push gives ${verdictText(whole)}`);
}

function runCase(c: FuzzCase): CaseResult {
  const { input, rng, spec } = c;
  const t0 = performance.now();
  const mode = rng.next();
  const chunkSize = (): number => (mode < 0.1 ? Math.max(1, input.length) : mode < 0.15 ? rng.range(1, 16) : rng.range(1, 4096));
  const chunked = decodeChecked(input, spec, chunkSize, () => rng.chance(0.02));
  const whole = decodeChecked(input, spec, () => Math.max(1, input.length));
  assertSameVerdict(chunked, whole, mode < 0.1 ? 'one whole push' : mode < 0.15 ? 'chunks of 1..16 bytes' : 'chunks of 1..4096 bytes');
  let sticky = false;
  if (chunked.error !== undefined && rng.chance(STICKY_SAMPLE)) {
    checkSticky(chunked.decoder, chunked.error, c, chunked.pushed);
    sticky = true;
  }
  return { outcome: chunked.outcome, code: chunked.error?.code, items: chunked.items.length, sticky, ms: performance.now() - t0 };
}

// ---------------------------------------------------------------------------
// Worker side
// ---------------------------------------------------------------------------

interface WorkerInput {
  role: 'tandem-stream-fuzz';
  slot: number;
  seed: number;
  /** Case indices first, first + stride, ... below end. */
  first: number;
  end: number;
  stride: number;
  /** Int32 pairs per slot: case in progress, cases started. */
  heartbeat: SharedArrayBuffer;
}

interface WorkerStats {
  cases: number;
  outcomes: Record<Outcome, number>;
  codes: Record<string, number>;
  items: number;
  bytes: number;
  sticky: number;
  maxMs: number;
  maxMsCase: number;
  totalMs: number;
}

interface WorkerFailure {
  /** The kind of failure: first line of the message, numbers elided. */
  signature: string;
  count: number;
  /** Full reports of the first few cases of this kind. */
  examples: { index: number; detail: string }[];
}

interface WorkerDone {
  type: 'done';
  stats: WorkerStats;
  failures: WorkerFailure[];
}

const signatureOf = (message: string): string => (message.split('\n', 1)[0] ?? '').replace(/0x[0-9a-f]+|\d+/gi, 'N').slice(0, 160);

function fuzzWorker(input: WorkerInput): void {
  const port = parentPort;
  if (port === null) throw new Error('fuzz worker without a parent port');
  const corpus = CORPUS;
  const beat = new Int32Array(input.heartbeat);
  const stats: WorkerStats = { cases: 0, outcomes: { done: 0, checkpoint: 0, incomplete: 0, error: 0 }, codes: {}, items: 0, bytes: 0, sticky: 0, maxMs: 0, maxMsCase: -1, totalMs: 0 };
  const failures = new Map<string, WorkerFailure>();
  const report = (index: number, message: string, c: FuzzCase): void => {
    const signature = signatureOf(message);
    let f = failures.get(signature);
    if (f === undefined) failures.set(signature, (f = { signature, count: 0, examples: [] }));
    f.count++;
    if (f.examples.length < EXAMPLES_PER_FAILURE) f.examples.push({ index, detail: `${describeCase(c)}\n${message}` });
  };
  for (let i = input.first; i < input.end; i += input.stride) {
    Atomics.store(beat, input.slot * 2, i);
    Atomics.add(beat, input.slot * 2 + 1, 1);
    const c = makeCase(corpus, input.seed, i);
    stats.cases++;
    stats.bytes += c.input.length;
    try {
      const r = runCase(c);
      stats.outcomes[r.outcome]++;
      if (r.code !== undefined) stats.codes[r.code] = (stats.codes[r.code] ?? 0) + 1;
      stats.items += r.items;
      if (r.sticky) stats.sticky++;
      stats.totalMs += r.ms;
      if (r.ms > stats.maxMs) {
        stats.maxMs = r.ms;
        stats.maxMsCase = i;
      }
      if (r.ms > CASE_BUDGET_MS) report(i, `decoding took ${r.ms.toFixed(0)} ms, over the ${CASE_BUDGET_MS} ms hang budget`, c);
    } catch (err) {
      report(i, errorText(err), c);
    }
  }
  const done: WorkerDone = { type: 'done', stats, failures: [...failures.values()] };
  port.postMessage(done);
}

// ---------------------------------------------------------------------------
// Main side: watchdog over the workers
// ---------------------------------------------------------------------------

async function runFuzzWorkers(seed: number, first: number, end: number, corpusForReports: () => CorpusEntry[]): Promise<WorkerDone[]> {
  const workers = Math.max(1, Math.min(WORKERS, end - first));
  const heartbeat = new SharedArrayBuffer(8 * workers);
  const beat = new Int32Array(heartbeat);
  const started: Worker[] = [];
  const results: (WorkerDone | undefined)[] = new Array<WorkerDone | undefined>(workers).fill(undefined);
  let timer: NodeJS.Timeout | undefined;
  try {
    return await new Promise<WorkerDone[]>((resolve, reject) => {
      const lastBeat = Array.from({ length: workers }, () => ({ count: -1, at: performance.now() }));
      const fail = (err: Error): void => {
        for (const w of started) void w.terminate();
        reject(err);
      };
      for (let slot = 0; slot < workers; slot++) {
        const data: WorkerInput = { role: 'tandem-stream-fuzz', slot, seed, first: first + slot, end, stride: workers, heartbeat };
        const w = new Worker(new URL(import.meta.url), { workerData: data, resourceLimits: { maxOldGenerationSizeMb: 512 } });
        started.push(w);
        w.on('message', (msg: WorkerDone) => {
          results[slot] = msg;
          if (results.every((r) => r !== undefined)) resolve(results);
        });
        w.on('error', (err: Error) => fail(new Error(`fuzz worker ${slot} died in case #${Atomics.load(beat, slot * 2)}: ${errorText(err)}`)));
        w.on('exit', (code: number) => {
          if (results[slot] === undefined) fail(new Error(`fuzz worker ${slot} exited with code ${code} before reporting (case #${Atomics.load(beat, slot * 2)})`));
        });
      }
      timer = setInterval(() => {
        const now = performance.now();
        for (let slot = 0; slot < workers; slot++) {
          if (results[slot] !== undefined) continue;
          const count = Atomics.load(beat, slot * 2 + 1);
          if (count !== lastBeat[slot].count) {
            lastBeat[slot] = { count, at: now };
          } else if (now - lastBeat[slot].at > WATCHDOG_MS) {
            const index = Atomics.load(beat, slot * 2);
            const what = count === 0 ? 'worker start-up' : describeCase(makeCase(corpusForReports(), seed, index));
            fail(new Error(`decoder hang: no progress for ${WATCHDOG_MS} ms in ${what}`));
            return;
          }
        }
      }, 250);
    });
  } finally {
    if (timer !== undefined) clearInterval(timer);
    await Promise.all(started.map((w) => w.terminate()));
  }
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

/**
 * Tiny hand-made streams, valid and with a zero-length record made to
 * announce a body: the decoder must finish that record before the layout's
 * next phase (image header after LIBXC_CONTEXT, end of stream after END).
 */
function smallStreams(): [string, Buffer][] {
  const hvm = { type: DomainType.X86_HVM, pageShift: 12, xenMajor: 4, xenMinor: 17 };
  const libxcEnc = new StreamEncoder('libxc');
  const libxc = Buffer.concat([...libxcEnc.imageHeader(2), ...libxcEnc.domainHeader(hvm), ...libxcEnc.record({ layer: 'libxc', type: 'END' })]);
  const libxlEnc = new StreamEncoder('libxl');
  const libxl = Buffer.concat([
    ...libxlEnc.libxlHeader(),
    ...libxlEnc.record({ layer: 'libxl', type: 'LIBXC_CONTEXT' }),
    ...libxlEnc.imageHeader(3),
    ...libxlEnc.domainHeader(hvm),
    ...libxlEnc.record({ layer: 'libxc', type: 'X86_CPUID_POLICY', leaves: [{ leaf: 0, subleaf: 0, a: 1, b: 2, c: 3, d: 4 }] }),
    ...libxlEnc.record({ layer: 'libxc', type: 'STATIC_DATA_END' }),
    ...libxlEnc.record({ layer: 'libxc', type: 'END' }),
    ...libxlEnc.record({ layer: 'libxl', type: 'END' }),
  ]);
  /** `input` with the u32 at `at` set to `v`, then `tail` appended. */
  const patch = (input: Buffer, at: number, v: number, tail: Buffer = EMPTY): Buffer => {
    const out = Buffer.concat([input, tail]);
    out.writeUInt32LE(v, at);
    return out;
  };
  const libxcEnd = libxc.length - RECORD_HEADER_SIZE;
  const libxlEnd = libxl.length - RECORD_HEADER_SIZE;
  const libxcEndInLibxl = libxlEnd - RECORD_HEADER_SIZE;
  const libxcContext = LIBXL_HEADER_SIZE;
  const xl = (config?: string): Buffer => Buffer.concat(wrapInXlSaveFile([libxl], { configJson: config }));
  /** An xl header whose optional data carries 8 bytes after the config (xl skips them). */
  const xlTail = (): Buffer => {
    const header = encodeXlHeader({ configJson: '{}' });
    header.writeUInt32LE(header.readUInt32LE(44) + 8, 44);
    return Buffer.concat([header, Buffer.from('tail0123'), libxl]);
  };
  return [
    ['libxc v2 HVM', libxc],
    ['libxl v3 HVM', libxl],
    ['libxc END announces 8 bytes, none follow', patch(libxc, libxcEnd + 4, 8)],
    ['libxc END announces 8 bytes, 8 zero bytes follow', patch(libxc, libxcEnd + 4, 8, Buffer.alloc(8))],
    ['libxc END announces 4 bytes, 4 + 4 padding follow', patch(libxc, libxcEnd + 4, 4, Buffer.from([1, 2, 3, 4, 0, 0, 0, 0]))],
    ['libxc END announces 0xfff0 bytes, 8 follow', patch(libxc, libxcEnd + 4, 0xfff0, Buffer.alloc(8, 0xee))],
    ['libxl END announces 8 bytes, none follow', patch(libxl, libxlEnd + 4, 8)],
    ['libxl END announces 8 bytes, 8 zero bytes follow', patch(libxl, libxlEnd + 4, 8, Buffer.alloc(8))],
    ['libxc END inside libxl announces 8 bytes', patch(libxl, libxcEndInLibxl + 4, 8)],
    ['libxl LIBXC_CONTEXT announces the 40 header bytes after it', patch(libxl, libxcContext + 4, IMAGE_HEADER_SIZE + DOMAIN_HEADER_SIZE)],
    ['libxl LIBXC_CONTEXT announces 8 bytes', patch(libxl, libxcContext + 4, 8)],
    ['xl header with a config, then libxl v3 HVM', xl(XL_CONFIG)],
    ['xl header without a config, then libxl v3 HVM', xl()],
    ['xl header with 8 bytes after its config, then libxl v3 HVM', xlTail()],
    ['xl header whose config length overruns its optional data', patch(xl('{}'), 48, 100)],
    ['xl header whose optional data is 2 bytes', patch(xl(), 44, 2)],
  ];
}

function registerTests(): void {
  const seed = envInt('TANDEM_FUZZ_SEED', DEFAULT_SEED) >>> 0;
  const only = process.env.TANDEM_FUZZ_ONLY;
  const cases = envInt('TANDEM_FUZZ_CASES', DEFAULT_CASES);
  const first = only === undefined || only === '' ? 0 : envInt('TANDEM_FUZZ_ONLY', 0);
  const end = only === undefined || only === '' ? cases : first + 1;
  /** The coverage checks below hold for the default seed's default run (and any longer one). */
  const fullRun = first === 0 && end >= DEFAULT_CASES;

  const corpus = (): CorpusEntry[] => CORPUS;

  test('seed corpus: every stream round-trips byte-identically through its reader and the encoders', async (t) => {
    const rng = new Rng(seed);
    for (const e of corpus()) {
      await t.test(e.name, () => {
        const whole = decodeWhole(e.bytes, DEFAULT_LIMITS, e.endAtCheckpoint);
        assert.equal(whole.framing, e.framing);
        assert.equal(whole.end.kind, e.endAtCheckpoint ? 'checkpoint' : 'end');
        assert.ok(reencode(whole.framing, whole.items).equals(e.bytes), 'whole-buffer decode re-encodes to the original bytes');

        // The same through random chunking (page data then arrives as views of several chunks).
        const dec = openReader(specFor(e.bytes, DEFAULT_LIMITS, e.endAtCheckpoint));
        const items: ImageItem[] = [];
        for (let at = 0; at < e.bytes.length; ) {
          const n = rng.range(1, 4096);
          items.push(...dec.push(e.bytes.subarray(at, at + n)));
          at += n;
        }
        assert.deepEqual(dec.end(), whole.end);
        assert.equal(dec.done, !e.endAtCheckpoint);
        assert.equal(items.length, whole.items.length);
        assert.ok(reencode(e.framing, items).equals(e.bytes), 'chunked decode re-encodes to the original bytes');

        // The corpus is valid under the tight fuzz limits too, so mutations start from a decodable stream.
        decodeWhole(e.bytes, TIGHT_LIMITS, e.endAtCheckpoint);
      });
    }
    const names = corpus().map((e) => e.name);
    assert.ok(names.some((n) => n.includes('libxc v2')) && names.some((n) => n.includes('libxc v3')));
    assert.ok(names.some((n) => n.includes('libxl') && n.includes(' 0 checkpoints')) && names.some((n) => n.includes('libxl') && n.includes(' 3 checkpoints')));
    assert.ok(corpus().some((e) => e.container === 'xl' && e.endAtCheckpoint) && corpus().some((e) => e.container === 'xl' && !e.endAtCheckpoint));
  });

  test(`mutated streams (seed ${hex(seed)}, cases ${first}..${end - 1}) decode or fail with a StreamError; never crash, hang or exceed the limits`, { timeout: 600_000 }, async (t) => {
    const t0 = performance.now();
    const done = await runFuzzWorkers(seed, first, end, corpus);
    const wall = performance.now() - t0;
    const failures = new Map<string, WorkerFailure>();
    for (const f of done.flatMap((d) => d.failures)) {
      const seen = failures.get(f.signature);
      if (seen === undefined) failures.set(f.signature, { ...f, examples: [...f.examples] });
      else {
        seen.count += f.count;
        seen.examples.push(...f.examples);
      }
    }
    const stats = done.map((d) => d.stats);
    const sum = (f: (s: WorkerStats) => number): number => stats.reduce((n, s) => n + f(s), 0);
    const codes: Record<string, number> = {};
    for (const s of stats) for (const [k, v] of Object.entries(s.codes)) codes[k] = (codes[k] ?? 0) + v;
    const slowest = stats.reduce((a, b) => (b.maxMs > a.maxMs ? b : a));
    t.diagnostic(
      `${sum((s) => s.cases)} cases, ${(sum((s) => s.bytes) / 2 ** 20).toFixed(1)} MiB, ${sum((s) => s.items)} headers and records decoded; ` +
        `outcomes: ${sum((s) => s.outcomes.done)} done, ${sum((s) => s.outcomes.checkpoint)} ended at a checkpoint, ` +
        `${sum((s) => s.outcomes.incomplete)} incomplete, ${sum((s) => s.outcomes.error)} error; ` +
        `${sum((s) => s.sticky)} sticky-error checks; slowest case #${slowest.maxMsCase} ${slowest.maxMs.toFixed(1)} ms; ` +
        `decode time ${sum((s) => s.totalMs).toFixed(0)} ms, wall ${wall.toFixed(0)} ms`,
    );
    t.diagnostic(`error codes: ${JSON.stringify(codes)}`);
    const failing = [...failures.values()].sort((a, b) => b.count - a.count);
    const failed = failing.reduce((n, f) => n + f.count, 0);
    assert.equal(
      failed,
      0,
      `${failed} failing case(s) of ${failing.length} kind(s):\n` +
        failing
          .map((f) => {
            const examples = f.examples.sort((a, b) => a.index - b.index).slice(0, EXAMPLES_PER_FAILURE);
            return `\n== ${f.count} x ${f.signature}\n\n${examples.map((e) => e.detail).join('\n\n')}`;
          })
          .join('\n'),
    );
    assert.equal(sum((s) => s.cases), end - first);
    if (fullRun) {
      // The fuzzer reaches deep: successes, truncations and a spread of errors.
      assert.ok(sum((s) => s.outcomes.done) > 0, 'some mutated streams still decode');
      assert.ok(sum((s) => s.outcomes.incomplete) > 0, 'some mutated streams are truncated');
      assert.ok(sum((s) => s.outcomes.checkpoint) > 0, 'some mutated streams end cleanly at a checkpoint');
      const xlCodes = Object.keys(codes).filter((code) => code.startsWith('ERR_XL_'));
      assert.ok(xlCodes.length >= 5, `only ${xlCodes.length} distinct xl header error codes reached: ${xlCodes.join(', ')}`);
      assert.ok(Object.keys(codes).length >= 15, `only ${Object.keys(codes).length} distinct error codes reached`);
      assert.ok(sum((s) => s.sticky) >= 100, 'the sticky-error check ran on a sample');
    }
  });

  test('a record header announcing a ~4 GiB body is refused (ERR_RECORD_TOO_LARGE; ERR_RECORD_BAD_LENGTH for marker records) as soon as its 8 bytes arrive, without allocating', () => {
    const byName = (part: string): CorpusEntry => {
      const e = corpus().find((c) => c.name.includes(part));
      assert.ok(e, part);
      return e;
    };
    /** The stream up to the end of the first item matching `pred`. */
    const after = (e: CorpusEntry, pred: (item: ImageItem) => boolean): Buffer => {
      const hit = decodeWhole(e.bytes).items.find(pred);
      assert.ok(hit, `no such item in ${e.name}`);
      return e.bytes.subarray(0, hit.end);
    };
    const isRecord =
      (layer: Layer, type: string) =>
      (item: ImageItem): boolean =>
        item.kind === 'record' && item.record.layer === layer && item.record.type === type;
    const isKind = (kind: ImageItem['kind']) => (item: ImageItem) => item.kind === kind;

    const sites: { name: string; prefix: Buffer; layer: Layer; codes: number[] }[] = [
      {
        name: 'libxc v2 HVM, first record',
        prefix: after(byName('sim libxc v2'), isKind('domain-header')),
        layer: 'libxc',
        codes: [LibxcType.PAGE_DATA, LibxcType.HVM_CONTEXT, LibxcType.HVM_PARAMS, LibxcType.X86_TSC_INFO, LibxcType.END, 0x80000abc],
      },
      { name: 'libxc v3 HVM, static data', prefix: after(byName('sim libxc v3'), isKind('domain-header')), layer: 'libxc', codes: [LibxcType.X86_CPUID_POLICY, LibxcType.X86_MSR_POLICY, LibxcType.STATIC_DATA_END] },
      { name: 'libxc v3 HVM, after STATIC_DATA_END', prefix: after(byName('sim libxc v3'), isRecord('libxc', 'STATIC_DATA_END')), layer: 'libxc', codes: [LibxcType.PAGE_DATA, LibxcType.HVM_CONTEXT] },
      { name: 'libxc v3 PV, static data', prefix: after(byName('encoder PV libxc v3'), isKind('domain-header')), layer: 'libxc', codes: [LibxcType.X86_PV_INFO] },
      {
        name: 'libxc v3 PV, after X86_PV_P2M_FRAMES',
        prefix: after(byName('encoder PV libxc v3'), isRecord('libxc', 'X86_PV_P2M_FRAMES')),
        layer: 'libxc',
        codes: [LibxcType.PAGE_DATA, LibxcType.SHARED_INFO, LibxcType.X86_PV_VCPU_BASIC, LibxcType.X86_PV_VCPU_XSAVE],
      },
      {
        name: 'libxl, first record',
        prefix: after(byName('sim libxl v3 24 pages'), isKind('libxl-header')),
        layer: 'libxl',
        codes: [LibxlType.LIBXC_CONTEXT, LibxlType.EMULATOR_XENSTORE_DATA, LibxlType.EMULATOR_CONTEXT, LibxlType.CHECKPOINT_STATE, 0x80000001],
      },
      { name: 'libxl-framed libxc, first record', prefix: after(byName('sim libxl v2 16 pages, 3'), isKind('domain-header')), layer: 'libxc', codes: [LibxcType.PAGE_DATA, LibxcType.HVM_PARAMS] },
      {
        name: 'libxl, after a libxc CHECKPOINT',
        prefix: after(byName('sim libxl v3 16 pages, 3'), isRecord('libxc', 'CHECKPOINT')),
        layer: 'libxl',
        codes: [LibxlType.EMULATOR_CONTEXT, LibxlType.CHECKPOINT_STATE, LibxlType.CHECKPOINT_END, 0x80000042],
      },
      { name: 'libxl, after libxc END', prefix: after(byName('sim libxl v3 24 pages'), isRecord('libxc', 'END')), layer: 'libxl', codes: [LibxlType.EMULATOR_CONTEXT, LibxlType.END] },
    ];
    const HUGE = [0xffffffff, 0xfffffffe, 0xfffffff8, 0xfffffff0, 0xf0000000, 0x80000000, 0x7fffffff];
    const limitSets: Partial<DecoderLimits>[] = [{}, TIGHT_LIMITS];

    const header = (code: number, length: number): Buffer => {
      const h = Buffer.alloc(RECORD_HEADER_SIZE);
      h.writeUInt32LE(code, 0);
      h.writeUInt32LE(length, 4);
      return h;
    };
    // Marker records (END, CHECKPOINT, ...) have an empty body by definition: any
    // announced length is refused at the header, as a bad length rather than a large one.
    const EMPTY_BODY: Record<Layer, number[]> = {
      libxc: [LibxcType.END, LibxcType.VERIFY, LibxcType.CHECKPOINT, LibxcType.STATIC_DATA_END],
      libxl: [LibxlType.END, LibxlType.LIBXC_CONTEXT, LibxlType.CHECKPOINT_END],
    };
    const isEmptyBody = (layer: Layer, code: number): boolean => EMPTY_BODY[layer].includes(code);
    const expectTooLarge = (site: (typeof sites)[number], code: number, length: number) => (err: unknown) => {
      checkStreamError(err, site.prefix.length + RECORD_HEADER_SIZE, 'push() of a huge record header');
      const want = isEmptyBody(site.layer, code) ? ErrorCodes.RECORD_BAD_LENGTH : ErrorCodes.RECORD_TOO_LARGE;
      assert.equal(err.code, want, `${site.name}, ${recordTypeName(site.layer, code)} length ${hex(length)}: ${err.message}`);
      assert.equal(err.offset, site.prefix.length);
      assert.equal(err.record, `${site.layer} ${recordTypeName(site.layer, code)}`);
      return true;
    };

    const before = process.memoryUsage().arrayBuffers;
    let checked = 0;
    for (const site of sites) {
      for (const code of site.codes) {
        for (const length of HUGE) {
          for (const limits of limitSets) {
            // The whole header in one push.
            const dec = new StreamDecoder({ limits });
            dec.push(site.prefix);
            assert.throws(() => dec.push(header(code, length)), expectTooLarge(site, code, length));
            // Byte by byte: the first seven bytes are accepted, the eighth throws.
            const slow = new StreamDecoder({ limits });
            slow.push(site.prefix);
            const h = header(code, length);
            for (let i = 0; i < RECORD_HEADER_SIZE - 1; i++) assert.deepEqual(slow.push(h.subarray(i, i + 1)), []);
            assert.throws(() => slow.push(h.subarray(RECORD_HEADER_SIZE - 1)), expectTooLarge(site, code, length));
            assert.throws(
              () => slow.push(Buffer.alloc(PAGE_SIZE)),
              (err: unknown) =>
                err instanceof StreamError &&
                err.code === ErrorCodes.STREAM_FAILED &&
                err.cause instanceof StreamError &&
                err.cause.code === (isEmptyBody(site.layer, code) ? ErrorCodes.RECORD_BAD_LENGTH : ErrorCodes.RECORD_TOO_LARGE),
            );
            checked += 2;
          }
        }
        // At the limit the header is accepted (the decoder waits for the body); one byte over, refused.
        if (!isEmptyBody(site.layer, code)) {
          const atLimit = new StreamDecoder({ limits: TIGHT_LIMITS });
          atLimit.push(site.prefix);
          assert.deepEqual(atLimit.push(header(code, TIGHT_LIMITS.maxRecordBytes)), []);
        }
        const overLimit = new StreamDecoder({ limits: TIGHT_LIMITS });
        overLimit.push(site.prefix);
        assert.throws(() => overLimit.push(header(code, TIGHT_LIMITS.maxRecordBytes + 1)), expectTooLarge(site, code, TIGHT_LIMITS.maxRecordBytes + 1));
      }
    }
    const grown = process.memoryUsage().arrayBuffers - before;
    assert.ok(checked >= 300, `${checked} huge headers checked`);
    assert.ok(grown < 4 * 2 ** 20, `arrayBuffers grew by ${(grown / 2 ** 20).toFixed(1)} MiB across ${checked} huge record headers`);
  });

  test('two-chunk splits decode exactly like one whole push (corpus near every boundary; small streams at every offset)', () => {
    // Unmutated inputs: the xl ones go to the ImageReader; all under Xen's end rule, which a whole stream does not need.
    const spec = (input: Buffer): ReaderSpec => specFor(input, TIGHT_LIMITS, true);
    const whole = (input: Buffer): Verdict => decodeChecked(input, spec(input), () => Math.max(1, input.length));
    const split = (input: Buffer, at: number): Verdict => {
      const sizes = [at, input.length - at];
      return decodeChecked(input, spec(input), () => Math.max(1, sizes.shift() ?? 1));
    };
    let checked = 0;
    for (const e of corpus()) {
      const reference = whole(e.bytes);
      assert.equal(reference.outcome, e.endAtCheckpoint ? 'checkpoint' : 'done', e.name);
      const points = new Set<number>();
      for (const b of e.boundaries) for (const d of [-1, 0, 1, 4, 8, 9]) if (b + d > 0 && b + d < e.bytes.length) points.add(b + d);
      for (const at of points) {
        assertSameVerdict(split(e.bytes, at), reference, `${e.name} split at ${at}`);
        checked++;
      }
    }
    for (const [name, input] of smallStreams()) {
      const reference = whole(input);
      for (let at = 1; at < input.length; at++) {
        assertSameVerdict(split(input, at), reference, `${name}, split at ${at}`);
        checked++;
      }
    }
    assert.ok(checked > 1000, `${checked} splits`);
  });

  test('an END record that announces a body is refused at its header, never taken as the end', () => {
    let checked = 0;
    for (const [name, input] of smallStreams()) {
      if (!name.includes('announces 8 bytes, none follow')) continue;
      const dec = new StreamDecoder();
      assert.throws(
        () => dec.push(input),
        (err: unknown) => err instanceof StreamError && err.code === ErrorCodes.RECORD_BAD_LENGTH && err.offset === input.length - RECORD_HEADER_SIZE,
        `${name}: the END header must be refused`,
      );
      assert.equal(dec.done, false, name);
      assert.throws(() => dec.end(), (err: unknown) => err instanceof StreamError && err.code === ErrorCodes.RECORD_BAD_LENGTH);
      checked++;
    }
    assert.ok(checked > 0, 'the corpus has END records announcing a body');
  });
}

if (isMainThread) {
  registerTests();
} else {
  const input = workerData as WorkerInput | undefined;
  if (input?.role === 'tandem-stream-fuzz') fuzzWorker(input);
}
