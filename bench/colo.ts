/**
 * COLO throughput with the real processes: redis-benchmark GET and SET
 * (-c 20) through `tandem primary --mode colo` (both replicas running, every
 * reply compared before it leaves) next to `--mode none` (one unprotected
 * guest), measured in the same run, rounds interleaved. Target: COLO at
 * least 80 % of unprotected throughput. Both replicas share this machine's
 * cores with each other and with redis-benchmark; on two hosts the
 * secondary's work would not take the primary's CPU.
 *
 * Both modes run the default guest (256 MiB, no domain section in the
 * configuration), as `tandem primary --mode colo` does for a user: with a
 * 64 MiB guest COLO measured about 0.9 of none, with the default about
 * 0.5-0.65 (issue 15), and the target is about the default.
 *
 * Each cluster first serves a warm-up run of each test, the same for both
 * modes, before the measured ones: a freshly started Node process runs its
 * first requests in the interpreter, and COLO has three such processes on
 * the request path (front and comparator, the secondary, redis-benchmark's
 * peer) where `none` has one. The warm-up figures are printed as the cold
 * comparison; the target is about the service in its steady state.
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
    const warmup = n / 2;
    const runs: Record<string, RedisFigures[]> = {};
    const cold: Record<string, RedisFigures[]> = {};
    for (let r = 0; r < rounds; r++) {
      for (const mode of ['none', 'colo'] as const) {
        // The guest a user runs: the configuration's default size (256 MiB), not a smaller one that flatters COLO.
        const c = await cluster(mode, 25, { memoryMib: 'default' });
        try {
          for (const t of ['set', 'get'] as const) {
            const w = await redisBenchmark(c.port, t, warmup);
            (cold[`${mode}-${t}`] ??= []).push(w);
            ctx.log(`  round ${r + 1} ${mode} ${t} warm-up (${warmup} requests): ${w.rps} req/s, p50 ${w.p50ms} ms`);
          }
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
    const notes = (['set', 'get'] as const).map((t) => {
      const c = median(cold[`colo-${t}`].map((f) => f.rps));
      const b = median(cold[`none-${t}`].map((f) => f.rps));
      return `cold ${t.toUpperCase()} (each cluster's first ${warmup} requests, not measured against the target): colo ${c.toFixed(0)} vs none ${b.toFixed(0)} req/s (${(c / b).toFixed(2)})`;
    });
    return { name: 'colo', title: 'COLO vs unprotected throughput (real processes)', params: { rounds, requests: n, warmup, clients: 20 }, cases: [], comparisons, notes, elapsedMs: performance.now() - started };
  },
};
