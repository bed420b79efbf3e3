/**
 * Page compression under load (`npm run bench compression`): while
 * redis-benchmark writes to the sim guest's key-value service, the engine
 * checkpoints the guest to a real secondary (in a worker thread, as another
 * host would be) with compression off and with xbzrle, in the same run,
 * runs interleaved. Each run measures:
 *
 * - bytes per epoch at a fixed cadence (an epoch every `cadenceMs`): the
 *   stream bytes of each epoch, suspend through CHECKPOINT_END, over the
 *   epochs of the phase;
 * - the maximum epoch rate: epochs back to back (the next requested as
 *   soon as one is acked), epochs per second.
 *
 * Both modes see the same load, so compare the medians of the runs and
 * their ranges; the machine is shared, so the spread says how noisy it was.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import os from 'node:os';
import { filter, firstValueFrom, type Subscription } from 'rxjs';
import { DeviceSet } from '../checkpoint/devices.js';
import { PrimaryEngine } from '../checkpoint/engine.js';
import { ModeController } from '../checkpoint/mode.js';
import type { EpochMetrics } from '../checkpoint/session.js';
import { SimBinding } from '../domain/sim/binding.js';
import { PAGE_SIZE } from '../stream/format.js';
import { tcpTransport } from '../transport/tcp.js';
import { createLogger } from '../util/logger.js';
import { startPeer } from './engine.js';
import { median } from './stats.js';

export type CompressionMode = 'none' | 'xbzrle';

export interface CompressionRun {
  mode: CompressionMode;
  /** Mean stream bytes per epoch at the fixed cadence. */
  bytesPerEpoch: number;
  /** Mean dirty pages per epoch at the fixed cadence. */
  pagesPerEpoch: number;
  cadenceEpochs: number;
  /** Back-to-back epochs per second. */
  epochsPerS: number;
  /** Back to back: mean dirty pages, stream bytes, and ms from suspend to ack per epoch, with its parts (paused, sending, waiting for the ack). */
  burst: { pagesPerEpoch: number; bytesPerEpoch: number; totalMs: number; pauseMs: number; sendMs: number; ackMs: number };
  /** Pages by encoding over the cadence phase (xbzrle only). */
  encodings?: { raw: number; zero: number; delta: number };
  /** 1-minute load average when the run started. */
  load1: number;
}

export interface CompressionBenchOptions {
  quick: boolean;
  runs?: number;
  log: (line: string) => void;
}

const MIB = 2 ** 20;
const logger = createLogger('silent');
export const COMPRESSION_GUEST_MIB = 64;
const CACHE_MIB = 64;

/** redis-benchmark writing without pause until stopped: the load both modes see. */
function startLoad(port: number): { stop: () => Promise<void> } {
  let running = true;
  let child: ChildProcess | undefined;
  const loop = (async () => {
    while (running) {
      child = spawn('redis-benchmark', ['-p', String(port), '-t', 'set,incr,mset', '-n', '50000', '-c', '20', '-r', '20000', '-d', '64', '-q'], { stdio: 'ignore' });
      await new Promise((resolve) => child!.on('close', resolve));
    }
  })();
  return {
    stop: async () => {
      running = false;
      child?.kill('SIGTERM');
      await loop;
    },
  };
}

/** One run of one mode: a fresh guest, secondary and engine; the cadence phase, then the back-to-back phase. */
async function oneRun(mode: CompressionMode, phaseMs: number): Promise<CompressionRun> {
  const load1 = os.loadavg()[0];
  const binding = new SimBinding({ pages: (COMPRESSION_GUEST_MIB * MIB) / PAGE_SIZE, vcpus: 1, diskBytes: MIB });
  const guest = binding.primary(logger);
  const service = await guest.serveTcp();
  const secondary = await startPeer({ role: 'secondary', mib: COMPRESSION_GUEST_MIB });
  const engine = new PrimaryEngine(
    { domain: guest.domain, devices: new DeviceSet(), mode: new ModeController('remus', { mode: 'manual', intervalMs: 1000, reason: 'bench' }), transport: tcpTransport, logger },
    {
      secondary: { host: '127.0.0.1', port: secondary.port },
      minIntervalMs: 0,
      maxIntervalMs: 0,
      ackTimeoutMs: 30_000,
      connectTimeoutMs: 5000,
      retryMs: 1000,
      streamVersion: 3,
      precopy: { targetDirtyPages: 50, maxIterations: 5, shrinkRatio: 1 },
      compression: mode === 'xbzrle' ? { cachePages: (CACHE_MIB * MIB) / PAGE_SIZE } : undefined,
    },
  );
  let sub: Subscription | undefined;
  const load = startLoad(service.port);
  try {
    engine.start();
    await firstValueFrom(engine.state$.pipe(filter((s) => s.state === 'protected')));
    // Warm-up at the cadence (the cache fills, the JIT settles), then the measured phases.
    const cadenceMs = 20;
    const phase = (ms: number, paced: boolean): Promise<EpochMetrics[]> =>
      new Promise((resolve) => {
        const seen: EpochMetrics[] = [];
        const t0 = performance.now();
        let requestedAt = t0;
        const request = (): void => {
          requestedAt = performance.now();
          engine.requestCheckpoint('bench');
        };
        sub = engine.metrics$.subscribe((m) => {
          seen.push(m);
          const now = performance.now();
          if (now - t0 >= ms) {
            sub?.unsubscribe();
            resolve(seen);
            return;
          }
          if (!paced) request();
          else setTimeout(request, Math.max(0, cadenceMs - (now - requestedAt)));
        });
        request();
      });
    await phase(phaseMs / 2, true);
    const paced = await phase(phaseMs, true);
    const t0 = performance.now();
    const burst = await phase(phaseMs, false);
    const epochsPerS = burst.length / ((performance.now() - t0) / 1000);
    const sum = (f: (m: EpochMetrics) => number, of = paced): number => of.reduce((n, m) => n + f(m), 0);
    const burstMean = (f: (m: EpochMetrics) => number): number => sum(f, burst) / burst.length;
    const run: CompressionRun = {
      mode,
      bytesPerEpoch: sum((m) => m.bytes) / paced.length,
      pagesPerEpoch: sum((m) => m.dirtyPages) / paced.length,
      cadenceEpochs: paced.length,
      epochsPerS,
      burst: { pagesPerEpoch: burstMean((m) => m.dirtyPages), bytesPerEpoch: burstMean((m) => m.bytes), totalMs: burstMean((m) => m.totalMs), pauseMs: burstMean((m) => m.pauseUs / 1000), sendMs: burstMean((m) => m.sendMs), ackMs: burstMean((m) => m.ackMs) },
      load1,
    };
    if (mode === 'xbzrle') run.encodings = { raw: sum((m) => m.compression?.raw ?? 0), zero: sum((m) => m.compression?.zero ?? 0), delta: sum((m) => m.compression?.delta ?? 0) };
    return run;
  } finally {
    sub?.unsubscribe();
    await load.stop();
    await engine.stop();
    await secondary.stop();
    await guest.stop();
  }
}

export interface CompressionBenchResult {
  runs: CompressionRun[];
  /** Medians and ranges over the runs, per mode. */
  summary: Record<CompressionMode, { bytesPerEpoch: Stat; epochsPerS: Stat; pagesPerEpoch: Stat }>;
  /** none / xbzrle bytes per epoch (medians). */
  byteRatio: number;
  /** xbzrle / none max epoch rate (medians). */
  rateRatio: number;
}

export interface Stat {
  median: number;
  min: number;
  max: number;
}

const stat = (xs: number[]): Stat => ({ median: median(xs), min: Math.min(...xs), max: Math.max(...xs) });

export async function benchCompression(opts: CompressionBenchOptions): Promise<CompressionBenchResult> {
  const runs = opts.runs ?? (opts.quick ? 3 : 5);
  const phaseMs = opts.quick ? 2000 : 4000;
  const all: CompressionRun[] = [];
  for (let r = 0; r < runs; r++) {
    // Alternating which mode goes first, so a drift in the machine's load hits both alike.
    const order: CompressionMode[] = r % 2 === 0 ? ['none', 'xbzrle'] : ['xbzrle', 'none'];
    for (const mode of order) {
      const run = await oneRun(mode, phaseMs);
      all.push(run);
      const enc = run.encodings === undefined ? '' : ` (pages: ${run.encodings.delta} delta, ${run.encodings.zero} zero, ${run.encodings.raw} raw)`;
      opts.log(
        `  run ${r + 1} ${mode.padEnd(6)}: ${Math.round(run.bytesPerEpoch)} bytes/epoch, ${run.pagesPerEpoch.toFixed(1)} dirty pages/epoch over ${run.cadenceEpochs} epochs${enc}; ${run.epochsPerS.toFixed(0)} epochs/s back to back (${run.burst.pagesPerEpoch.toFixed(1)} pages, ${Math.round(run.burst.bytesPerEpoch)} bytes, ${run.burst.totalMs.toFixed(2)} ms each: paused ${run.burst.pauseMs.toFixed(2)}, waiting for the suspend and sending pages after the resume ${(run.burst.totalMs - run.burst.pauseMs - run.burst.sendMs - run.burst.ackMs).toFixed(2)}, end records ${run.burst.sendMs.toFixed(2)}, ack ${run.burst.ackMs.toFixed(2)}); load ${run.load1.toFixed(2)}`,
      );
    }
  }
  const of = (mode: CompressionMode, f: (r: CompressionRun) => number): Stat => stat(all.filter((r) => r.mode === mode).map(f));
  const summary = {
    none: { bytesPerEpoch: of('none', (r) => r.bytesPerEpoch), epochsPerS: of('none', (r) => r.epochsPerS), pagesPerEpoch: of('none', (r) => r.pagesPerEpoch) },
    xbzrle: { bytesPerEpoch: of('xbzrle', (r) => r.bytesPerEpoch), epochsPerS: of('xbzrle', (r) => r.epochsPerS), pagesPerEpoch: of('xbzrle', (r) => r.pagesPerEpoch) },
  };
  return {
    runs: all,
    summary,
    byteRatio: summary.none.bytesPerEpoch.median / summary.xbzrle.bytesPerEpoch.median,
    rateRatio: summary.xbzrle.epochsPerS.median / summary.none.epochsPerS.median,
  };
}
