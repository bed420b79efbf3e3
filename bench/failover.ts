/**
 * Issue 4's benchmarks, with the real processes:
 * - failover time: SIGKILL of the primary -> first reply from the survivor,
 *   p50/p99 over >= 20 runs of `tandem demo` (50 ms heartbeats, 250 ms timeout);
 * - redis-benchmark through the front in Remus mode at 25 ms and 100 ms
 *   intervals, next to `--mode none` measured in the same run.
 */
import { cluster, redisBenchmark, type RedisFigures } from '../src/bench/cluster.js';
import { runDemo } from '../src/demo/run.js';
import { percentile, median, type BenchResult, type Benchmark } from '../src/bench/stats.js';

export const failover: Benchmark = {
  name: 'failover',
  description: 'failover time (SIGKILL -> first reply) and redis-benchmark through Remus vs none',
  async run(ctx): Promise<BenchResult> {
    const started = performance.now();
    const trials = ctx.rounds ?? (ctx.quick ? 5 : 20);
    const times: number[] = [];
    let lost = 0;
    for (let i = 0; i < trials; i++) {
      const s = await runDemo({ service: { host: '127.0.0.1', port: 0 }, mode: 'remus', load: 'none', durationS: 2, killPrimaryAfterS: 1, memoryMib: 16, intervalMs: 25, say: () => {} });
      if (s.failover_ms !== null) times.push(s.failover_ms);
      lost += s.lost_acked_writes;
      ctx.log(`  failover run ${i + 1}: ${s.failover_ms} ms, lost acked writes ${s.lost_acked_writes}`);
    }
    // Closed-loop clients wait one epoch per request under Remus, so the
    // request counts shrink with the interval to keep each run ~10 s.
    const scale = ctx.quick ? 0.25 : 1;
    const requests = { none: 40_000 * scale, 'remus-25ms': 8_000 * scale, 'remus-100ms': 2_000 * scale };
    const figures: Record<string, RedisFigures> = {};
    for (const [label, mode, interval] of [['none', 'none', 25], ['remus-25ms', 'remus', 25], ['remus-100ms', 'remus', 100]] as const) {
      const n = requests[label];
      const c = await cluster(mode, interval);
      try {
        for (const t of ['set', 'get'] as const) {
          figures[`${label}-${t}`] = await redisBenchmark(c.port, t, n);
          ctx.log(`  ${label} ${t}: ${figures[`${label}-${t}`].rps} req/s, p50 ${figures[`${label}-${t}`].p50ms} ms`);
        }
      } finally {
        await c.stop();
      }
    }
    const p99 = percentile(times, 99);
    const comparisons: BenchResult['comparisons'] = [
      { subject: 'failover', baseline: '', label: `failover p50 ${median(times).toFixed(0)} ms, p99 ${p99.toFixed(0)} ms over ${times.length} runs (lost acked writes: ${lost})`, ratio: Number.NaN, pairedRatio: Number.NaN, target: { min: 0, text: 'p99 <= 300 ms', pass: p99 <= 300 } },
    ];
    for (const interval of [25, 100]) {
      for (const t of ['set', 'get'] as const) {
        const r = figures[`remus-${interval}ms-${t}`];
        const b = figures[`none-${t}`];
        const added = r.p50ms - b.p50ms;
        comparisons.push({
          subject: `remus-${interval}ms-${t}`,
          baseline: `none-${t}`,
          label: `${t.toUpperCase()} remus ${interval} ms: ${r.rps.toFixed(0)} req/s, p50 ${r.p50ms} ms vs none ${b.rps.toFixed(0)} req/s, p50 ${b.p50ms} ms (same run)`,
          ratio: r.rps / b.rps,
          pairedRatio: Number.NaN,
          target: { min: 0, text: `added p50 ${added.toFixed(2)} ms <= interval + 2 ms`, pass: added <= interval + 2 },
        });
      }
    }
    return { name: 'failover', title: 'failover time and output-commit latency (real processes)', params: { trials, requests: JSON.stringify(requests) }, cases: [], comparisons, notes: [`failover samples (ms): ${times.join(', ')}`], elapsedMs: performance.now() - started };
  },
};
