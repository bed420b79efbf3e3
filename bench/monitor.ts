/**
 * The monitor's cost to checkpointing: a real engine checkpoints a busy sim
 * guest to a real secondary over loopback (5 ms interval) with
 * - no monitor,
 * - a monitor with 10 reading WebSocket clients,
 * - the same plus one client that never reads,
 * while a noisy comparator publishes a 16 KiB divergence report per epoch
 * (so the stuck client's buffers really fill and it gets sampled).
 * Conditions alternate round by round. Targets: the guest's pause and the
 * epoch time do not grow with a stuck client.
 */
import { randomBytes } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import { filter, firstValueFrom, take, toArray } from 'rxjs';
import WebSocket from 'ws';
import { DeviceSet } from '../src/checkpoint/devices.js';
import { PrimaryEngine } from '../src/checkpoint/engine.js';
import { ModeController } from '../src/checkpoint/mode.js';
import { DEFAULT_PRECOPY } from '../src/checkpoint/precopy.js';
import type { EpochMetrics } from '../src/checkpoint/session.js';
import { percentile, type BenchResult, type Benchmark } from '../src/bench/stats.js';
import { SimBinding } from '../src/domain/sim/binding.js';
import { MonitorServer } from '../src/monitor/http.js';
import { PrimarySource } from '../src/monitor/source.js';
import { SecondaryServer } from '../src/secondary/server.js';
import { tcpTransport } from '../src/transport/tcp.js';
import { createLogger } from '../src/util/logger.js';
import { xorshift32 } from '../src/util/xorshift.js';

type Condition = 'none' | 'readers' | 'readers+stuck';
const CONDITIONS: readonly Condition[] = ['none', 'readers', 'readers+stuck'];
const logger = createLogger('silent');
const READERS = 10;

async function stuckClient(url: URL): Promise<Socket> {
  const socket = connect({ host: url.hostname, port: Number(url.port) });
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  socket.write(`GET /ws HTTP/1.1\r\nHost: ${url.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n\r\n`);
  await new Promise<void>((resolve) => socket.once('data', () => resolve()));
  socket.pause();
  return socket;
}

interface Run {
  epochs: EpochMetrics[];
  sampled: number;
  cut: number;
}

async function runOnce(condition: Condition, epochs: number): Promise<Run> {
  const binding = new SimBinding({ pages: 4096, vcpus: 1, diskBytes: 4096 });
  const primary = binding.primary(logger);
  const domain = primary.sim;
  const server = new SecondaryServer({ replica: binding.replica(logger), transport: tcpTransport, listen: { host: '127.0.0.1', port: 0 }, logger });
  const { port } = await server.start();
  const mode = new ModeController('remus', { mode: 'remus', intervalMs: 5, reason: 'bench' });
  const engine = new PrimaryEngine(
    { domain: primary.domain, devices: new DeviceSet(), mode, transport: tcpTransport, logger },
    { secondary: { host: '127.0.0.1', port }, minIntervalMs: 1, maxIntervalMs: 0, ackTimeoutMs: 30_000, connectTimeoutMs: 5000, retryMs: 50, streamVersion: 3, precopy: DEFAULT_PRECOPY },
  );
  let monitor: MonitorServer | undefined;
  const clients: WebSocket[] = [];
  let stuck: Socket | undefined;
  const data = Buffer.alloc(64, 7);
  const next = xorshift32(1);
  const guest = setInterval(() => {
    domain.run(() => {
      for (let i = 0; i < 32; i++) domain.write(next() % (domain.ram.length - 64), data);
    });
  }, 1);
  try {
    if (condition !== 'none') {
      monitor = new MonitorServer({ host: '127.0.0.1', port: 0, source: new PrimarySource({ engine, mode }), logger, auth: { token: undefined, allowRemoteRead: false } });
      await monitor.start();
      const ws = new URL('ws', monitor.url.replace(/^http/, 'ws'));
      for (let i = 0; i < READERS; i++) {
        const c = new WebSocket(ws);
        await new Promise((resolve, reject) => c.once('open', resolve).once('error', reject));
        c.on('message', () => undefined);
        clients.push(c);
      }
      if (condition === 'readers+stuck') stuck = await stuckClient(ws);
    }
    const report = `c: ${'x'.repeat(16 * 1024)}`;
    const noise = engine.metrics$.subscribe(() => monitor?.hub.publish({ type: 'divergence', connection: 'c', reason: report }));
    engine.start();
    await firstValueFrom(engine.state$.pipe(filter((s) => s.state === 'protected')));
    const got = await firstValueFrom(engine.metrics$.pipe(take(epochs), toArray()));
    noise.unsubscribe();
    return { epochs: got, sampled: monitor?.hub.stats.sampled ?? 0, cut: monitor?.hub.stats.cutSlow ?? 0 };
  } finally {
    clearInterval(guest);
    await engine.stop();
    stuck?.destroy();
    for (const c of clients) c.terminate();
    await monitor?.stop();
    await server.stop();
  }
}

export const monitorBench: Benchmark = {
  name: 'monitor',
  description: 'epoch pause and time with no monitor, 10 reading clients, and a client that never reads',
  async run(ctx): Promise<BenchResult> {
    const started = performance.now();
    const rounds = Math.max(1, ctx.rounds ?? (ctx.quick ? 1 : 3));
    const epochs = ctx.quick ? 300 : 1500;
    const pause: Record<Condition, number[]> = { none: [], readers: [], 'readers+stuck': [] };
    const total: Record<Condition, number[]> = { none: [], readers: [], 'readers+stuck': [] };
    let sampled = 0;
    let cut = 0;
    for (let r = 0; r < rounds; r++) {
      const order = r % 2 === 0 ? CONDITIONS : [...CONDITIONS].reverse();
      for (const c of order) {
        const run = await runOnce(c, epochs);
        for (const m of run.epochs) {
          pause[c].push(m.pauseUs / 1000);
          total[c].push(m.totalMs);
        }
        if (c === 'readers+stuck') {
          sampled += run.sampled;
          cut += run.cut;
        }
        ctx.log(`  round ${r + 1} ${c}: pause p99 ${percentile(run.epochs.map((m) => m.pauseUs / 1000), 99).toFixed(3)} ms, epoch p99 ${percentile(run.epochs.map((m) => m.totalMs), 99).toFixed(2)} ms`);
      }
    }
    const p = (xs: number[], q: number): number => percentile(xs, q);
    const compare = (subject: Condition, baseline: Condition, what: 'pause' | 'epoch'): BenchResult['comparisons'][number] => {
      const xs = what === 'pause' ? pause : total;
      const s = p(xs[subject], 99);
      const b = p(xs[baseline], 99);
      // Noise floor: a shared 2-core host moves p99s by a fraction of a millisecond between runs.
      const allowed = b * 1.5 + (what === 'pause' ? 0.2 : 1);
      return {
        subject: `${subject} ${what}`,
        baseline: `${baseline} ${what}`,
        label: `${what} p99 ${s.toFixed(3)} ms with ${subject} vs ${b.toFixed(3)} ms with ${baseline} (p50 ${p(xs[subject], 50).toFixed(3)} vs ${p(xs[baseline], 50).toFixed(3)})`,
        ratio: s / b,
        pairedRatio: Number.NaN,
        target: { min: 0, text: `p99 <= 1.5 x ${baseline} + ${what === 'pause' ? '0.2' : '1'} ms`, pass: s <= allowed },
      };
    };
    return {
      name: 'monitor',
      title: 'monitor cost to checkpoints (real engine and secondary, 5 ms interval, 16 KiB report per epoch)',
      params: { rounds, epochs, clients: READERS },
      cases: [],
      comparisons: [compare('readers+stuck', 'readers', 'pause'), compare('readers+stuck', 'readers', 'epoch'), compare('readers', 'none', 'pause'), compare('readers', 'none', 'epoch')],
      notes: [`the stuck client: ${sampled} deliveries sampled, cut ${cut} time(s) over ${rounds} round(s)`],
      elapsedMs: performance.now() - started,
    };
  },
};
