/**
 * Remus's epoch policies with the real processes: redis-benchmark (-c 20)
 * SET and GET, one request per client in flight and 16 (-P 16), through
 * `tandem primary` + `tandem secondary` in Remus mode with `--policy output`
 * (min_interval_ms 0 and 1) and with `--policy timer`, next to `--mode none`
 * (one unprotected guest), all in the same run, rounds interleaved,
 * so the shared machine's drift hits each alike.
 *
 * Remus holds every reply until the epoch covering it is acked, so a
 * closed-loop client's throughput is bounded by how long its replies wait.
 * Target (issue 15): under the output policy at least 50 % of unprotected
 * throughput, with at most 1 ms added to the median latency and 5 ms to the
 * 99th percentile (redis-benchmark's own percentiles, medians over rounds).
 *
 * The timer policy at the default 50 ms interval serves about 20 requests
 * per interval without pipelining (each client waits an interval per
 * request): at 100,000 requests one run would take minutes, so it runs
 * TIMER_REQUESTS; throughput is a rate, and its figure is no less exact.
 *
 * Each cluster first serves a short warm-up of each test (Node's first
 * requests run in the interpreter), not measured.
 */
import { cluster, redisBenchmark, type RedisFigures } from '../src/bench/cluster.js';
import { median, type BenchResult, type Benchmark, type Comparison } from '../src/bench/stats.js';

interface Subject {
  id: string;
  /** Remus policy; undefined: --mode none. */
  policy?: 'output' | 'timer';
  /** primary.min_interval_ms. */
  minIntervalMs: number;
}
interface Test {
  id: string;
  test: 'set' | 'get';
  pipeline: number;
}

const TESTS: readonly Test[] = [
  { id: 'SET', test: 'set', pipeline: 1 },
  { id: 'GET', test: 'get', pipeline: 1 },
  { id: 'SET -P 16', test: 'set', pipeline: 16 },
  { id: 'GET -P 16', test: 'get', pipeline: 16 },
];

/** The Remus interval of both policies: the configuration's default. */
const INTERVAL_MS = 50;

/**
 * The output policy with min_interval_ms 0 (each epoch starts as soon as
 * the last is acked) and at the configuration's default, 1 ms (an epoch
 * that took less waits out the rest), to show what the bound costs.
 */
const SUBJECTS: readonly Subject[] = [
  { id: 'none', minIntervalMs: 1 },
  { id: 'output', policy: 'output', minIntervalMs: 0 },
  { id: 'output min 1 ms', policy: 'output', minIntervalMs: 1 },
  { id: 'timer', policy: 'timer', minIntervalMs: 1 },
];
const TIMER_REQUESTS = 5_000;
const TARGET = { ratio: 0.5, addedP50Ms: 1, addedP99Ms: 5 };

const range = (xs: readonly number[], digits: number): string => `${Math.min(...xs).toFixed(digits)}..${Math.max(...xs).toFixed(digits)}`;

export const remusPolicy: Benchmark = {
  name: 'remus-policy',
  description: 'redis-benchmark SET/GET (-P 1, 16) through Remus --policy output / timer vs none (real processes, same run)',
  async run(ctx): Promise<BenchResult> {
    const started = performance.now();
    const rounds = ctx.rounds ?? (ctx.quick ? 1 : 3);
    const n = ctx.quick ? 20_000 : 100_000;
    const timerN = ctx.quick ? 2_000 : TIMER_REQUESTS;
    const warmup = ctx.quick ? 2_000 : 5_000;
    const runs = new Map<string, RedisFigures[]>();
    const key = (s: string, t: Test): string => `${s} ${t.id}`;
    for (let r = 0; r < rounds; r++) {
      for (const subject of SUBJECTS) {
        const { policy, minIntervalMs } = subject;
        const requests = policy === 'timer' ? timerN : n;
        const c = await cluster(policy === undefined ? 'none' : 'remus', INTERVAL_MS, { policy, minIntervalMs });
        try {
          for (const t of [TESTS[0], TESTS[1]]) await redisBenchmark(c.port, t.test, Math.min(warmup, requests / 5), 1);
          for (const t of TESTS) {
            const f = await redisBenchmark(c.port, t.test, requests, t.pipeline);
            runs.set(key(subject.id, t), [...(runs.get(key(subject.id, t)) ?? []), f]);
            ctx.log(`  round ${r + 1} ${subject.id} ${t.id}: ${f.rps} req/s, p50 ${f.p50ms} ms, p99 ${f.p99ms} ms`);
          }
        } finally {
          await c.stop();
        }
      }
    }
    const comparisons: Comparison[] = [];
    const notes: string[] = [];
    for (const t of TESTS) {
      const base = runs.get(key('none', t))!;
      const b = { rps: median(base.map((f) => f.rps)), p50: median(base.map((f) => f.p50ms)), p99: median(base.map((f) => f.p99ms)) };
      notes.push(`${t.id} none: ${b.rps.toFixed(0)} req/s (${range(base.map((f) => f.rps), 0)}), p50 ${b.p50.toFixed(2)} ms, p99 ${b.p99.toFixed(2)} ms`);
      for (const s of SUBJECTS.slice(1).map((x) => x.id)) {
        const fs = runs.get(key(s, t))!;
        const rps = median(fs.map((f) => f.rps));
        const addedP50 = median(fs.map((f) => f.p50ms)) - b.p50;
        const addedP99 = median(fs.map((f) => f.p99ms)) - b.p99;
        const ratio = rps / b.rps;
        const c: Comparison = {
          subject: `${s} ${t.id}`,
          baseline: `none ${t.id}`,
          label: `${t.id} ${s}: ${rps.toFixed(0)} req/s (${range(fs.map((f) => f.rps), 0)}), p50 +${addedP50.toFixed(2)} ms, p99 +${addedP99.toFixed(2)} ms`,
          ratio,
          pairedRatio: median(fs.map((f, i) => f.rps / base[i].rps)),
        };
        if (s === 'output') {
          const pass = ratio >= TARGET.ratio && addedP50 <= TARGET.addedP50Ms && addedP99 <= TARGET.addedP99Ms;
          c.target = { min: TARGET.ratio, text: `>= ${TARGET.ratio * 100}%, +p50 <= ${TARGET.addedP50Ms} ms, +p99 <= ${TARGET.addedP99Ms} ms`, pass };
        }
        comparisons.push(c);
      }
    }
    notes.push(
      `medians of ${rounds} round(s), ranges min..max; added latency = policy's median percentile - none's; the timer policy runs ${timerN} requests per test (see bench/remus-policy.ts)`,
      'all processes (both nodes, redis-benchmark) share this machine; on a shared 2-core host rounds vary by tens of per cent',
    );
    return {
      name: 'remus-policy',
      title: 'Remus epoch policies vs unprotected (real processes)',
      params: { rounds, requests: n, timerRequests: timerN, clients: 20, intervalMs: INTERVAL_MS },
      cases: [],
      comparisons,
      notes,
      elapsedMs: performance.now() - started,
    };
  },
};
