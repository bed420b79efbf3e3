/**
 * `npm run bench` entry for page compression (issue 15, "less on the
 * wire"): runs src/bench/compression.ts and reports bytes per epoch and the
 * maximum epoch rate with compression off and with xbzrle, same run,
 * medians and ranges over the runs, against the targets: at least
 * 3x fewer bytes per epoch, at most 10 % lower maximum epoch rate.
 */
import { benchCompression, COMPRESSION_GUEST_MIB, type Stat } from '../src/bench/compression.js';
import type { BenchResult, Benchmark } from '../src/bench/stats.js';

const range = (s: Stat, digits = 0): string => `${s.median.toFixed(digits)} (${s.min.toFixed(digits)}..${s.max.toFixed(digits)})`;
/** (max - min) / median: how far apart the runs of one subject were. */
const spread = (s: Stat): string => `${Math.round(((s.max - s.min) / s.median) * 100)} %`;

export const compression: Benchmark = {
  name: 'compression',
  description: 'bytes/epoch and max epochs/s, compression none vs xbzrle, under redis-benchmark (same run)',
  async run(ctx): Promise<BenchResult> {
    const started = performance.now();
    const r = await benchCompression({ quick: ctx.quick, runs: ctx.rounds, log: ctx.log });
    const { none, xbzrle } = r.summary;
    const runs = r.runs.length / 2;
    return {
      name: 'compression',
      title: `page compression under redis-benchmark (${COMPRESSION_GUEST_MIB} MiB sim guest, secondary in a worker thread)`,
      params: { quick: ctx.quick, runs, guestMib: COMPRESSION_GUEST_MIB },
      cases: [],
      comparisons: [
        {
          subject: 'xbzrle bytes/epoch',
          baseline: 'none bytes/epoch',
          label: `bytes/epoch at a 20 ms cadence: none ${range(none.bytesPerEpoch)}, xbzrle ${range(xbzrle.bytesPerEpoch)}; none/xbzrle ${r.byteRatio.toFixed(2)}x (medians of ${runs})`,
          ratio: r.byteRatio,
          pairedRatio: Number.NaN,
          target: { min: 3, text: '>= 3x fewer bytes per epoch', pass: r.byteRatio >= 3 },
        },
        {
          subject: 'xbzrle epochs/s',
          baseline: 'none epochs/s',
          label: `max epochs/s back to back: none ${range(none.epochsPerS)}, xbzrle ${range(xbzrle.epochsPerS)}; xbzrle/none ${r.rateRatio.toFixed(2)} (medians of ${runs})`,
          ratio: r.rateRatio,
          pairedRatio: Number.NaN,
          target: { min: 0.9, text: '<= 10 % lower max epoch rate', pass: r.rateRatio >= 0.9 },
        },
      ],
      notes: [
        `dirty pages/epoch at the cadence: none ${range(none.pagesPerEpoch, 1)}, xbzrle ${range(xbzrle.pagesPerEpoch, 1)}`,
        `spread between runs ((max-min)/median): bytes/epoch none ${spread(none.bytesPerEpoch)}, xbzrle ${spread(xbzrle.bytesPerEpoch)}; epochs/s none ${spread(none.epochsPerS)}, xbzrle ${spread(xbzrle.epochsPerS)}; 1-min load average at the runs' starts ${Math.min(...r.runs.map((x) => x.load1)).toFixed(2)}..${Math.max(...r.runs.map((x) => x.load1)).toFixed(2)}`,
        `runs: ${JSON.stringify(r.runs)}`,
      ],
      elapsedMs: performance.now() - started,
    };
  },
};
