/**
 * Issue 13's benchmark, in the Xen lab (one boot of a real Xen 4.17 host
 * under QEMU, TCG: absolute times mean little, ratios in the same boot do):
 * Xen's own `xl remus -F -n -d -i 200` (no output commit, no disk
 * buffering: all Debian's libxl can do) against Tandem protecting the same
 * PVH guest at the same interval with output commit on the vif, alternating
 * runs (bench/xen/remus.sh). Goals, Tandem against Xen:
 * - checkpoints per second >= 2.5x;
 * - fraction of time the guest is stopped <= 1/2;
 * - failover (protector SIGKILLed and its domain destroyed -> first reply
 *   from the backup's guest) <= 1/3.
 * Both systems are measured by the same sampler of Xen's domain info.
 * Tandem's failover includes its failure detector's timeout (1000 ms
 * here); Xen's has none (its receiver fails over at the end of its input).
 */
import { labValues, runInLab } from '../test-xen/lab.js';
import { median, type Benchmark, type Comparison } from '../src/bench/stats.js';

const SYSTEMS = ['xen', 'tandem'] as const;

export const xen: Benchmark = {
  name: 'xen',
  description: 'Tandem vs xl remus on a real Xen guest in the lab (checkpoints/s, stopped fraction, failover)',
  async run(ctx) {
    const started = performance.now();
    const rounds = ctx.rounds ?? (ctx.quick ? 1 : 2);
    const window = ctx.quick ? 15 : 30;
    ctx.log(`xen: booting the lab; ${rounds} round(s) of ${window} s per system`);
    const r = await runInLab(`XEN_BENCH_ROUNDS=${rounds} XEN_BENCH_SECONDS=${window} bash bench/xen/remus.sh`, { timeoutS: 600 + rounds * 2 * (window + 300) });
    const v = labValues(r.stdout);
    if (r.status !== 0 || v.get('done') !== '1') throw new Error(`the lab run failed (exit ${r.status}):\n${r.stdout}\n${r.stderr.slice(-3000)}`);
    const num = (k: string): number => Number(v.get(k));
    const series = (sys: string, k: string): number[] => Array.from({ length: rounds }, (_, i) => num(`${sys}${i + 1}_${k}`));
    const figures = Object.fromEntries(
      SYSTEMS.map((s) => [s, { rate: series(s, 'suspends_per_s'), stopped: series(s, 'stopped_fraction'), failover: series(s, 'failover_ms') }]),
    ) as Record<(typeof SYSTEMS)[number], { rate: number[]; stopped: number[]; failover: number[] }>;
    const x = figures.xen;
    const t = figures.tandem;
    const paired = (a: number[], b: number[]): number => median(a.map((ai, i) => ai / b[i]));
    const comparisons: Comparison[] = [
      {
        subject: 'tandem-checkpoints',
        baseline: 'xen-checkpoints',
        label: `checkpoints/s at interval 200 ms: Tandem ${median(t.rate).toFixed(2)} vs xl remus ${median(x.rate).toFixed(2)} (medians over ${rounds} runs each)`,
        ratio: median(t.rate) / median(x.rate),
        pairedRatio: paired(t.rate, x.rate),
        target: { min: 2.5, text: '>= 2.5x', pass: median(t.rate) / median(x.rate) >= 2.5 },
      },
      {
        subject: 'tandem-stopped',
        baseline: 'xen-stopped',
        label: `fraction of time the guest is stopped: Tandem ${median(t.stopped).toFixed(2)} vs xl remus ${median(x.stopped).toFixed(2)} (Xen's / Tandem's shown as ratio)`,
        ratio: median(x.stopped) / median(t.stopped),
        pairedRatio: paired(x.stopped, t.stopped),
        target: { min: 2, text: "Tandem's <= 1/2 of Xen's", pass: median(t.stopped) <= median(x.stopped) / 2 },
      },
      {
        subject: 'tandem-failover',
        baseline: 'xen-failover',
        label: `failover to the first reply: Tandem ${median(t.failover).toFixed(0)} ms (detector timeout 1000 ms included) vs xl remus ${median(x.failover).toFixed(0)} ms (Xen's / Tandem's shown as ratio)`,
        ratio: median(x.failover) / median(t.failover),
        pairedRatio: paired(x.failover, t.failover),
        target: { min: 3, text: "Tandem's <= 1/3 of Xen's", pass: median(t.failover) <= median(x.failover) / 3 },
      },
    ];
    const notes = SYSTEMS.flatMap((s) => [
      `${s}: checkpoints/s ${figures[s].rate.join(', ')}; stopped ${figures[s].stopped.join(', ')}; failover ms ${figures[s].failover.join(', ')}; own count ${series(s, 'own_checkpoints').join(', ')}`,
    ]);
    return { name: 'xen', title: 'Tandem vs xl remus on a real Xen 4.17 guest (lab, TCG, same boot)', params: { rounds, windowS: window, intervalMs: 200 }, cases: [], comparisons, notes, elapsedMs: performance.now() - started };
  },
};
