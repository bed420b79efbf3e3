/**
 * COLO throughput with the real processes: redis-benchmark GET and SET
 * (-c 20) through `tandem primary --mode colo` (both replicas running, every
 * reply compared before it leaves) next to `--mode none` (one unprotected
 * guest), measured in the same run, rounds interleaved. Target: COLO at
 * least 80 % of unprotected throughput. Both replicas share this machine's
 * cores with each other and with redis-benchmark; on two hosts the
 * secondary's work would not take the primary's CPU.
 */
import { cluster, redisBenchmark, type RedisFigures } from '../src/bench/cluster.js';
import { median, type BenchResult, type Benchmark } from '../src/bench/stats.js';

export const colo: Benchmark = {
  name: 'colo',
  description: 'redis-benchmark GET/SET through COLO vs none (real processes, same run)',
  async run(ctx): Promise<BenchResult> {
    const started = performance.now();
    const rounds = ctx.rounds ?? (ctx.quick ? 1 : 3);
    const n = ctx.quick ? 5_000 : 20_000;
    const runs: Record<string, RedisFigures[]> = {};
    for (let r = 0; r < rounds; r++) {
      for (const mode of ['none', 'colo'] as const) {
        const c = await cluster(mode, 25);
        try {
          for (const t of ['set', 'get'] as const) {
            const f = await redisBenchmark(c.port, t, n);
            (runs[`${mode}-${t}`] ??= []).push(f);
            ctx.log(`  round ${r + 1} ${mode} ${t}: ${f.rps} req/s, p50 ${f.p50ms} ms`);
          }
        } finally {
          await c.stop();
        }
      }
    }
    const comparisons: BenchResult['comparisons'] = [];
    for (const t of ['set', 'get'] as const) {
      const c = median(runs[`colo-${t}`].map((f) => f.rps));
      const b = median(runs[`none-${t}`].map((f) => f.rps));
      const cp50 = median(runs[`colo-${t}`].map((f) => f.p50ms));
      const bp50 = median(runs[`none-${t}`].map((f) => f.p50ms));
      comparisons.push({
        subject: `colo-${t}`,
        baseline: `none-${t}`,
        label: `${t.toUpperCase()} colo: ${c.toFixed(0)} req/s, p50 ${cp50} ms vs none ${b.toFixed(0)} req/s, p50 ${bp50} ms (medians of ${rounds}, same run)`,
        ratio: c / b,
        pairedRatio: median(runs[`colo-${t}`].map((f, i) => f.rps / runs[`none-${t}`][i].rps)),
        target: { min: 0.8, text: '>= 80% of unprotected throughput', pass: c / b >= 0.8 },
      });
    }
    return { name: 'colo', title: 'COLO vs unprotected throughput (real processes)', params: { rounds, requests: n, clients: 20 }, cases: [], comparisons, notes: [], elapsedMs: performance.now() - started };
  },
};
