/**
 * `npm run bench` entry for the checkpoint engine: runs src/bench/engine.ts
 * (the same code as `tandem bench engine`) and reports its pause cases with
 * their same-run gather baselines and the targets.
 */
import { benchEngine, engineTargets } from '../src/bench/engine.js';
import { PAGE_SIZE } from '../src/stream/format.js';
import { caseResult, type BenchResult, type Benchmark } from '../src/bench/stats.js';

export const engine: Benchmark = {
  name: 'engine',
  description: 'checkpoint pause vs gather, RAM scaling, stream vs raw TCP, epochs/s',
  async run(ctx): Promise<BenchResult> {
    const started = performance.now();
    const samples: Record<string, number[]> = {};
    const r = await benchEngine({ quick: ctx.quick, log: ctx.log, samples });
    const ns = (ms: number[]): number[] => ms.map((x) => x * 1e6);
    const cases = r.pause.flatMap((row) => [
      caseResult(`gather-${row.dirty_pages}`, `gather (memcpy baseline, same run), ${row.dirty_pages} pages`, row.dirty_pages * PAGE_SIZE, ns(samples[`gather-${row.dirty_pages}`]), true),
      caseResult(`pause-${row.dirty_pages}`, `epoch pause, ${row.dirty_pages} dirty pages`, row.dirty_pages * PAGE_SIZE, ns(samples[`pause-${row.dirty_pages}`])),
    ]);
    const targets = engineTargets(r);
    return {
      name: 'engine',
      title: 'checkpoint engine: pause, RAM scaling, stream throughput, epoch rate',
      params: { quick: ctx.quick, largeMib: r.ram_scaling.large_mib },
      cases,
      comparisons: targets.map((t) => ({ subject: t.what, baseline: '', label: `${t.what}: ${t.value}`, ratio: Number.NaN, pairedRatio: Number.NaN, target: { min: 0, text: t.target, pass: t.pass } })),
      notes: [`tandem bench engine --json: ${JSON.stringify(r)}`],
      elapsedMs: performance.now() - started,
    };
  },
};
