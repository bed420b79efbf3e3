/**
 * Statistics and timing for the benchmarks: order statistics over samples,
 * throughput and ratio helpers, and an interleaved runner that times several
 * subjects round by round (warm-up first), so that a baseline and the code
 * under test see the same machine conditions on a shared, noisy host.
 *
 * Also the shapes every benchmark returns to bench/run.ts.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

// ---------------------------------------------------------------------------
// Order statistics
// ---------------------------------------------------------------------------

const sorted = (xs: readonly number[]): number[] => [...xs].sort((a, b) => a - b);

/**
 * p-th percentile (0..100) by linear interpolation between closest ranks
 * (numpy's default), so percentile(xs, 50) equals median(xs).
 */
export function percentile(xs: readonly number[], p: number): number {
  if (xs.length === 0) throw new RangeError('percentile of no samples');
  if (!(p >= 0 && p <= 100)) throw new RangeError(`percentile ${p} outside 0..100`);
  const s = sorted(xs);
  const rank = (p / 100) * (s.length - 1);
  const lo = Math.floor(rank);
  const hi = Math.ceil(rank);
  return s[lo] + (s[hi] - s[lo]) * (rank - lo);
}

export const median = (xs: readonly number[]): number => percentile(xs, 50);

export interface Summary {
  n: number;
  min: number;
  p50: number;
  p99: number;
  max: number;
  mean: number;
}

export function summarize(xs: readonly number[]): Summary {
  const s = sorted(xs);
  return {
    n: s.length,
    min: s[0],
    p50: percentile(s, 50),
    p99: percentile(s, 99),
    max: s[s.length - 1],
    mean: s.reduce((a, b) => a + b, 0) / s.length,
  };
}

// ---------------------------------------------------------------------------
// Throughput and ratios
// ---------------------------------------------------------------------------

/** MB/s (MB = 10^6 bytes) for `bytes` handled in `ns` nanoseconds. */
export const mbPerSec = (bytes: number, ns: number): number => (bytes * 1e3) / ns;

export const nsToMs = (ns: number): number => ns / 1e6;

/** a / b, NaN when b is 0. */
export const ratio = (a: number, b: number): number => (b === 0 ? Number.NaN : a / b);

/**
 * Median over rounds of the per-round throughput ratio subject/baseline for
 * equal byte counts (= baseline time / subject time). Pairing each subject
 * round with the baseline round next to it cancels slow drift of the host.
 */
export function pairedRatio(subjectNs: readonly number[], baselineNs: readonly number[]): number {
  const n = Math.min(subjectNs.length, baselineNs.length);
  const rs: number[] = [];
  for (let i = 0; i < n; i++) rs.push(ratio(baselineNs[i], subjectNs[i]));
  return median(rs);
}

// ---------------------------------------------------------------------------
// Timing
// ---------------------------------------------------------------------------

/** Monotonic clock in nanoseconds. */
export const nowNs = (): bigint => process.hrtime.bigint();

let gcFn: (() => void) | undefined;
let gcProbed = false;

/**
 * Runs a full garbage collection if one can be forced (node --expose-gc, or
 * enabled here at run time), e.g. once after building a benchmark's inputs.
 * Returns false if GC cannot be forced. Think twice before forcing one before
 * every timed run: code that allocates runs markedly slower just after a
 * full GC than in the steady state (see bench/stream-decode.ts).
 */
export function collectGarbage(): boolean {
  if (!gcProbed) {
    gcProbed = true;
    const existing: unknown = (globalThis as { gc?: unknown }).gc;
    if (typeof existing === 'function') {
      gcFn = existing as () => void;
    } else {
      try {
        setFlagsFromString('--expose-gc');
        const fn: unknown = runInNewContext('gc');
        if (typeof fn === 'function') gcFn = fn as () => void;
      } catch {
        gcFn = undefined;
      }
    }
  }
  if (gcFn === undefined) return false;
  gcFn();
  return true;
}

/** One thing to time: `run` does the work once and returns a value derived from its result. */
export interface Subject {
  id: string;
  run: () => number;
}

export interface RoundsOptions {
  /** Untimed rounds of every subject first (JIT, caches, page faults). */
  warmup: number;
  /** Timed rounds always run. */
  minRounds: number;
  /** More rounds run while the budget lasts, up to this many. */
  maxRounds: number;
  /** Wall-clock budget for the timed rounds, in ms. */
  budgetMs: number;
  /** Called before every run, timed or not, outside the timed region. */
  beforeEach?: () => void;
  /** Called after every timed round, e.g. for progress output. */
  onRound?: (round: number, elapsedMs: number) => void;
}

export interface RoundsResult {
  /** Nanoseconds per timed run, in round order, by subject id. */
  samples: Record<string, number[]>;
  rounds: number;
  elapsedMs: number;
  /** Sum of what the runs returned, so the work cannot be optimised away. */
  sink: number;
}

/**
 * Times every subject once per round, in alternating order (forward on even
 * rounds, reversed on odd ones) so none always runs first or after the same
 * neighbour. Samples of one round were taken back to back, which is what
 * makes the baseline/subject comparison fair on a noisy machine.
 */
export function runRounds(subjects: readonly Subject[], options: RoundsOptions): RoundsResult {
  if (subjects.length === 0) throw new RangeError('no subjects to time');
  if (options.minRounds < 1 || options.maxRounds < options.minRounds) throw new RangeError('need 1 <= minRounds <= maxRounds');
  let sink = 0;
  const samples: Record<string, number[]> = {};
  for (const s of subjects) samples[s.id] = [];

  for (let w = 0; w < options.warmup; w++) {
    for (const s of subjects) {
      options.beforeEach?.();
      sink += s.run();
    }
  }

  const start = nowNs();
  const elapsedMs = (): number => nsToMs(Number(nowNs() - start));
  let rounds = 0;
  while (rounds < options.minRounds || (rounds < options.maxRounds && elapsedMs() < options.budgetMs)) {
    const order = rounds % 2 === 0 ? subjects : [...subjects].reverse();
    for (const s of order) {
      options.beforeEach?.();
      const t0 = nowNs();
      const v = s.run();
      const t1 = nowNs();
      sink += v;
      samples[s.id].push(Number(t1 - t0));
    }
    rounds++;
    options.onRound?.(rounds, elapsedMs());
  }
  return { samples, rounds, elapsedMs: elapsedMs(), sink };
}

// ---------------------------------------------------------------------------
// What a benchmark reports
// ---------------------------------------------------------------------------

export interface BenchContext {
  /** Smaller inputs and fewer rounds. */
  quick: boolean;
  /** Overrides the benchmark's own round count (still at least 1). */
  rounds: number | undefined;
  /** Progress lines; bench/run.ts sends them to stderr. */
  log: (line: string) => void;
}

/** One timed subject, summarised. */
export interface CaseResult {
  id: string;
  label: string;
  /** True for a reference measurement (e.g. memcpy) rather than code under test. */
  baseline: boolean;
  /** Bytes handled per run. */
  bytes: number;
  rounds: number;
  /** Run time in ms. */
  ms: Summary;
  /** Throughput at the median run time, MB/s (10^6 bytes). */
  mbps: number;
  /** Throughput at the p99 (slow-tail) run time, MB/s. */
  mbpsP99: number;
  samplesMs: number[];
}

/** A subject measured against a baseline from the same run. */
export interface Comparison {
  subject: string;
  baseline: string;
  label: string;
  /** Median subject MB/s over median baseline MB/s. */
  ratio: number;
  /** Median of per-round ratios (see pairedRatio). */
  pairedRatio: number;
  /** Pass when ratio >= min. A failed target is reported, not an error. */
  target?: { min: number; text: string; pass: boolean };
}

export interface BenchResult {
  name: string;
  title: string;
  params: Record<string, string | number | boolean>;
  cases: CaseResult[];
  comparisons: Comparison[];
  notes: string[];
  elapsedMs: number;
}

export interface Benchmark {
  /** Selects it on the command line: `node dist/bench/run.js <name>`. */
  name: string;
  description: string;
  run: (ctx: BenchContext) => BenchResult | Promise<BenchResult>;
}

/** Summarises the samples of one subject. */
export function caseResult(id: string, label: string, bytes: number, samplesNs: readonly number[], baseline = false): CaseResult {
  const ms = summarize(samplesNs.map(nsToMs));
  return {
    id,
    label,
    baseline,
    bytes,
    rounds: samplesNs.length,
    ms,
    mbps: mbPerSec(bytes, ms.p50 * 1e6),
    mbpsP99: mbPerSec(bytes, ms.p99 * 1e6),
    samplesMs: samplesNs.map((ns) => Math.round(nsToMs(ns) * 1000) / 1000),
  };
}

/** Compares two timed subjects that handled the same bytes. */
export function compare(
  subject: CaseResult,
  baseline: CaseResult,
  samples: Record<string, readonly number[]>,
  label: string,
  minRatio?: number,
): Comparison {
  const r = ratio(subject.mbps, baseline.mbps);
  const out: Comparison = { subject: subject.id, baseline: baseline.id, label, ratio: r, pairedRatio: pairedRatio(samples[subject.id], samples[baseline.id]) };
  if (minRatio !== undefined) {
    out.target = { min: minRatio, text: `>= ${Math.round(minRatio * 100)}% of ${baseline.label}`, pass: r >= minRatio };
  }
  return out;
}
