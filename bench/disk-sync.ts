/**
 * The first checkpoint of a protection session with a disk already written:
 * the guest's pause, and the time from start to protected, when the disk's
 * full sync goes live ahead of the memory pre-copy (what the engine does)
 * against the same mirror with its live sync hidden, so the whole sync rides
 * in the first checkpoint (what it did before). Both through the real engine
 * to a real secondary over loopback TCP, alternating, in the same run.
 */
import { DeviceSet, type CheckpointDevice } from '../src/checkpoint/devices.js';
import { PrimaryEngine } from '../src/checkpoint/engine.js';
import { DEFAULT_PRECOPY } from '../src/checkpoint/precopy.js';
import { ModeController } from '../src/checkpoint/mode.js';
import type { EpochMetrics } from '../src/checkpoint/session.js';
import { DiskMirror } from '../src/disk/mirror.js';
import { DISK_BLOCK_SIZE } from '../src/disk/record.js';
import { DiskReplica } from '../src/disk/replica.js';
import { SimBinding } from '../src/domain/sim/binding.js';
import { SecondaryServer } from '../src/secondary/server.js';
import { tcpTransport } from '../src/transport/tcp.js';
import { createLogger } from '../src/util/logger.js';
import { median, type BenchResult, type Benchmark } from '../src/bench/stats.js';

const logger = createLogger('silent');
const PAGES = 4096; // 16 MiB of RAM

type How = 'live' | 'in-checkpoint';

/** The mirror as it was before live sync: every hook but liveSync. */
function withoutLiveSync(m: DiskMirror): CheckpointDevice {
  return { name: m.name, setup: () => m.setup(), postsuspend: (e) => m.postsuspend(e), records: (e) => m.records(e), teardown: () => m.teardown() };
}

async function firstCheckpoint(diskMib: number, how: How): Promise<{ pauseMs: number; protectedMs: number; first: EpochMetrics }> {
  const bytes = diskMib * 1024 * 1024;
  const binding = new SimBinding({ pages: PAGES, vcpus: 1, diskBytes: bytes, liveBatchPages: 256 });
  const guest = binding.primary(logger);
  const disk = guest.disk;
  // Every block written: the case of a guest that ran unprotected for a while.
  const block = Buffer.alloc(DISK_BLOCK_SIZE, 0xa5);
  for (let at = 0; at < bytes; at += DISK_BLOCK_SIZE) disk.write(at, block);
  const replica = binding.replica(logger);
  const secondary = new SecondaryServer({ replica, transport: tcpTransport, listen: { host: '127.0.0.1', port: 0 }, devices: [new DiskReplica(replica.disks)], logger });
  const { port } = await secondary.start();
  const mirror = new DiskMirror({ disk });
  const devices = new DeviceSet([how === 'live' ? mirror : withoutLiveSync(mirror)]);
  const engine = new PrimaryEngine(
    { domain: guest.domain, devices, mode: new ModeController('remus', { mode: 'remus', intervalMs: 1000, reason: 'bench' }), transport: tcpTransport, logger },
    { secondary: { host: '127.0.0.1', port }, minIntervalMs: 1, maxIntervalMs: 0, ackTimeoutMs: 30_000, connectTimeoutMs: 5000, retryMs: 100, streamVersion: 3, precopy: DEFAULT_PRECOPY },
  );
  try {
    const started = performance.now();
    const first = await new Promise<EpochMetrics>((resolve) => {
      engine.metrics$.subscribe((m) => {
        if (m.epoch === 1) resolve(m);
      });
      engine.start();
    });
    return { pauseMs: first.pauseUs / 1000, protectedMs: performance.now() - started, first };
  } finally {
    await engine.stop();
    await secondary.stop();
  }
}

export const diskSync: Benchmark = {
  name: 'disk-sync',
  description: "first checkpoint's pause with a written disk: live full sync vs full sync in the checkpoint",
  async run(ctx): Promise<BenchResult> {
    const started = performance.now();
    const rounds = ctx.rounds ?? (ctx.quick ? 3 : 7);
    const sizes = ctx.quick ? [16] : [16, 64];
    const comparisons: BenchResult['comparisons'] = [];
    const notes: string[] = [];
    for (const mib of sizes) {
      const pause: Record<How, number[]> = { live: [], 'in-checkpoint': [] };
      const ready: Record<How, number[]> = { live: [], 'in-checkpoint': [] };
      await firstCheckpoint(mib, 'live'); // warm-up
      for (let r = 0; r < rounds; r++) {
        for (const how of r % 2 === 0 ? (['live', 'in-checkpoint'] as const) : (['in-checkpoint', 'live'] as const)) {
          const x = await firstCheckpoint(mib, how);
          pause[how].push(x.pauseMs);
          ready[how].push(x.protectedMs);
          ctx.log(`  ${mib} MiB disk, ${how}: first pause ${x.pauseMs.toFixed(2)} ms, protected after ${x.protectedMs.toFixed(0)} ms, epoch 1 ${x.first.bytes} bytes`);
        }
      }
      const live = median(pause.live);
      const base = median(pause['in-checkpoint']);
      // How many times shorter the pause is live: >= 4 is the target.
      const r = base / live;
      comparisons.push({
        subject: `live-${mib}`,
        baseline: `in-checkpoint-${mib}`,
        label: `${mib} MiB written disk: first-checkpoint pause ${live.toFixed(2)} ms live vs ${base.toFixed(2)} ms with the sync in the checkpoint (same run, medians of ${rounds}); protected after ${median(ready.live).toFixed(0)} vs ${median(ready['in-checkpoint']).toFixed(0)} ms`,
        ratio: r,
        pairedRatio: Number.NaN,
        target: { min: 4, text: 'in-checkpoint pause / live pause >= 4', pass: r >= 4 },
      });
      notes.push(`${mib} MiB pauses (ms) live: ${pause.live.map((x) => x.toFixed(2)).join(', ')}; in-checkpoint: ${pause['in-checkpoint'].map((x) => x.toFixed(2)).join(', ')}`);
    }
    return { name: 'disk-sync', title: 'disk full sync: live vs in the first checkpoint', params: { rounds, ramMib: (PAGES * 4096) / 2 ** 20 }, cases: [], comparisons, notes, elapsedMs: performance.now() - started };
  },
};
