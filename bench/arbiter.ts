/**
 * What the etcd arbiter costs a protected primary's epochs, next to no
 * arbiter, in the same run, rounds interleaved and alternating in order:
 *
 * - max epochs/s: back-to-back epochs of 100 dirty pages through the whole
 *   engine to a secondary in a worker thread (as in the engine and tls
 *   benchmarks), the engine's devices being the arbiter's checkpoint device
 *   over a real etcd, or over no arbiter, as `tandem primary` runs it with
 *   `arbiter: none`;
 * - the demo's primary (real processes, mutual TLS, the client ledger as
 *   load) at the default 25 ms interval: epochs per second, the pause
 *   (suspend to resume) and the epoch (suspend to ack) p50/p99, read from
 *   the primary's own epoch log lines.
 *
 * The arbiter works beside the epochs, not in them (a record change once
 * per protection session, a lease renewal every third of the lease), so the
 * expected cost is nil; this shows whether it is. No target: issue 12 asks
 * for the figure. One etcd for the whole run, as in bench/failover.ts.
 */
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Arbiter } from '../src/arbiter/arbiter.js';
import { EtcdClient } from '../src/arbiter/etcd.js';
import { EtcdArbiter } from '../src/arbiter/etcd-arbiter.js';
import { startEtcd } from '../src/arbiter/local-etcd.js';
import { NoArbiter } from '../src/arbiter/none.js';
import { EPOCH_RATE_MIB, epochRate, startPeer } from '../src/bench/engine.js';
import { median, pairedRatio, percentile, type BenchResult, type Benchmark, type Comparison } from '../src/bench/stats.js';
import { runDemo } from '../src/demo/run.js';
import { tcpTransport } from '../src/transport/tcp.js';
import type { Address } from '../src/util/address.js';

type Kind = 'none' | 'etcd';
const LABEL: Record<Kind, string> = { none: 'no arbiter', etcd: 'etcd arbiter' };
/** Epochs at the start of a demo's protection left out: the first ones carry the pre-copy's tail and a cold JIT. */
const SKIP_EPOCHS = 20;

/** Rounds of `both` in alternating order (none first on even rounds), so neither always runs first. */
async function interleaved<T>(rounds: number, both: (kind: Kind, round: number) => Promise<T>, onRound: (r: number, got: Record<Kind, T>) => void): Promise<Record<Kind, T[]>> {
  const out: Record<Kind, T[]> = { none: [], etcd: [] };
  for (let r = 0; r < rounds; r++) {
    const got = {} as Record<Kind, T>;
    for (const kind of (r % 2 === 0 ? ['none', 'etcd'] : ['etcd', 'none']) as Kind[]) got[kind] = await both(kind, r);
    out.none.push(got.none);
    out.etcd.push(got.etcd);
    onRound(r, got);
  }
  return out;
}

/** An arbiter holding a domain of its own at `etcd`, as a primary's does once it started. */
async function etcdArbiter(etcd: Address[], domain: string): Promise<EtcdArbiter> {
  const arbiter = new EtcdArbiter({ client: new EtcdClient({ endpoints: etcd, timeoutMs: 500 }), prefix: '/tandem-bench', domain, node: 'bench-primary', leaseMs: 2000 });
  arbiter.validate();
  await arbiter.acquire();
  return arbiter;
}

/** One max-rate measurement with the arbiter of `kind`; the etcd one must have recorded itself protected, or it measured nothing. */
async function rateOnce(kind: Kind, seconds: number, port: number, etcd: Address[], round: number): Promise<number> {
  const arbiter: Arbiter = kind === 'none' ? new NoArbiter(1) : await etcdArbiter(etcd, `rate-${round}`);
  try {
    const rate = await epochRate(seconds, port, tcpTransport, arbiter);
    if (kind === 'etcd' && !(await arbiter.holder())?.protected) throw new Error('the arbiter never recorded the primary protected: its device did not run');
    return rate;
  } finally {
    await arbiter.stop({ release: true });
  }
}

interface DemoEpochs {
  perSecond: number;
  pauseMs: number[];
  epochMs: number[];
}

/** The timer-triggered epochs of a demo primary's log, past the first SKIP_EPOCHS. */
function primaryEpochs(logs: string): DemoEpochs {
  const lines = readFileSync(join(logs, 'primary.log'), 'utf8').split('\n');
  const epochs = lines
    .filter((l) => l.includes('"msg":"epoch"'))
    .map((l) => JSON.parse(l) as { epoch: number; trigger: string; time: number; pauseUs: number; totalMs: number })
    .filter((m) => m.trigger !== 'precopy' && m.epoch > SKIP_EPOCHS);
  if (epochs.length < 2) throw new Error(`the demo's primary logged ${epochs.length} epochs past the first ${SKIP_EPOCHS} (logs: ${logs})`);
  const seconds = (epochs[epochs.length - 1].time - epochs[0].time) / 1000;
  return { perSecond: (epochs.length - 1) / seconds, pauseMs: epochs.map((m) => m.pauseUs / 1000), epochMs: epochs.map((m) => m.totalMs) };
}

/** A demo of `seconds` without a kill; its primary's epochs. */
async function demoOnce(kind: Kind, seconds: number, etcd: Address[]): Promise<DemoEpochs> {
  const s = await runDemo({ service: { host: '127.0.0.1', port: 0 }, mode: 'remus', load: 'none', durationS: seconds, killPrimaryAfterS: undefined, memoryMib: 16, intervalMs: 25, arbiter: kind === 'none' ? 'none' : { etcd }, say: () => {} });
  try {
    if (kind === 'etcd' && s.primary_generation === null) throw new Error('the demo ran without its arbiter');
    return primaryEpochs(s.logs);
  } finally {
    rmSync(s.logs, { recursive: true, force: true });
  }
}

/** A comparison without a target: etcd's figure over none's. */
function costOf(what: string, etcd: number, none: number, paired: number, unit: string, digits: number): Comparison {
  return {
    subject: `${what} (etcd)`,
    baseline: `${what} (none)`,
    label: `${what}: ${LABEL.etcd} ${etcd.toFixed(digits)} vs ${LABEL.none} ${none.toFixed(digits)}${unit}`,
    ratio: etcd / none,
    pairedRatio: paired,
  };
}

/** Median of the per-round rate ratios subject/baseline: pairedRatio takes times, so rates go in the other way round. */
const pairedOf = (s: number[], b: number[]): number => pairedRatio(b, s);

export const arbiterBench: Benchmark = {
  name: 'arbiter',
  description: "the etcd arbiter's cost to epochs: max epochs/s, and a demo primary's epochs/s and pause, vs none (same run)",
  async run(ctx): Promise<BenchResult> {
    const started = performance.now();
    const rateRounds = ctx.rounds ?? (ctx.quick ? 2 : 6);
    const rateSeconds = ctx.quick ? 1 : 2;
    const demoRounds = ctx.rounds ?? (ctx.quick ? 1 : 3);
    const demoSeconds = ctx.quick ? 3 : 6;
    const etcd = await startEtcd(1);
    try {
      const peers = { none: await startPeer({ role: 'secondary', mib: EPOCH_RATE_MIB }), etcd: await startPeer({ role: 'secondary', mib: EPOCH_RATE_MIB }) };
      let rates: Record<Kind, number[]>;
      try {
        rates = await interleaved(rateRounds, (kind, r) => rateOnce(kind, rateSeconds, peers[kind].port, etcd.endpoints, r), (r, got) => ctx.log(`  max epochs/s round ${r + 1}: none ${got.none}, etcd ${got.etcd}`));
      } finally {
        await peers.none.stop();
        await peers.etcd.stop();
      }
      const demos = await interleaved(demoRounds, (kind) => demoOnce(kind, demoSeconds, etcd.endpoints), (r, got) =>
        ctx.log(`  demo round ${r + 1}: ${(['none', 'etcd'] as const).map((k) => `${k} ${got[k].perSecond.toFixed(1)} epochs/s, pause p50 ${median(got[k].pauseMs).toFixed(3)} ms p99 ${percentile(got[k].pauseMs, 99).toFixed(3)} ms`).join('; ')}`),
      );
      const pooled = (kind: Kind, pick: (d: DemoEpochs) => number[]): number[] => demos[kind].flatMap(pick);
      const rate = (kind: Kind): number[] => demos[kind].map((d) => d.perSecond);
      const pause = { none: pooled('none', (d) => d.pauseMs), etcd: pooled('etcd', (d) => d.pauseMs) };
      const epoch = { none: pooled('none', (d) => d.epochMs), etcd: pooled('etcd', (d) => d.epochMs) };
      const comparisons: Comparison[] = [
        costOf(`max epochs/s at 100 dirty pages (medians of ${rateRounds} x ${rateSeconds} s)`, median(rates.etcd), median(rates.none), pairedOf(rates.etcd, rates.none), '', 0),
        costOf(`demo primary epochs/s at 25 ms (medians of ${demoRounds} x ${demoSeconds} s)`, median(rate('etcd')), median(rate('none')), pairedOf(rate('etcd'), rate('none')), '', 1),
        costOf(`demo pause p50 (${pause.etcd.length} / ${pause.none.length} epochs)`, median(pause.etcd), median(pause.none), Number.NaN, ' ms', 3),
        costOf('demo pause p99', percentile(pause.etcd, 99), percentile(pause.none, 99), Number.NaN, ' ms', 3),
        costOf('demo epoch (suspend to ack) p50', median(epoch.etcd), median(epoch.none), Number.NaN, ' ms', 2),
        costOf('demo epoch (suspend to ack) p99', percentile(epoch.etcd, 99), percentile(epoch.none, 99), Number.NaN, ' ms', 2),
      ];
      return {
        name: 'arbiter',
        title: "the etcd arbiter's cost to a primary's epochs (real etcd; same run, rounds interleaved)",
        params: { quick: ctx.quick, rateRounds, rateSeconds, demoRounds, demoSeconds },
        cases: [],
        comparisons,
        notes: [`max epochs/s samples: none ${rates.none.join(', ')}; etcd ${rates.etcd.join(', ')}`, `demo epochs/s samples: none ${rate('none').map((x) => x.toFixed(1)).join(', ')}; etcd ${rate('etcd').map((x) => x.toFixed(1)).join(', ')}`],
        elapsedMs: performance.now() - started,
      };
    } finally {
      await etcd.stop();
    }
  },
};
