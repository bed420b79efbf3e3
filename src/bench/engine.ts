/**
 * Engine benchmarks (`tandem bench engine`, and part of `npm run bench`):
 *
 * - pause: the paused part of an epoch (suspend to resume, through the
 *   checkpoint session and the sim's libxc saver, the engine's own code) for
 *   100 ... 50,000 dirty pages, next to gathering the same pages with a
 *   plain memory copy in the same rounds;
 * - ram_scaling: the same pause at a fixed dirty count in a 256 MiB and a
 *   4 GiB guest;
 * - stream: pre-copy throughput primary -> real secondary over loopback TCP
 *   (encode, send, parse, apply, ack), next to raw loopback TCP throughput;
 * - max_epochs_per_s: back-to-back epochs of 100 dirty pages through the
 *   whole engine (trigger pipeline, link, secondary, ack).
 *
 * Every figure comes with its same-run baseline: this machine is shared and
 * noisy, so compare ratios and medians.
 */
import { once } from 'node:events';
import { connect } from 'node:net';
import { Worker } from 'node:worker_threads';
import { filter, firstValueFrom } from 'rxjs';
import type { Arbiter } from '../arbiter/arbiter.js';
import { ArbiterDevice } from '../arbiter/device.js';
import { DeviceSet } from '../checkpoint/devices.js';
import { PrimaryEngine } from '../checkpoint/engine.js';
import { ModeController } from '../checkpoint/mode.js';
import { precopyPolicy } from '../checkpoint/precopy.js';
import { CheckpointSession } from '../checkpoint/session.js';
import { remusEpochs } from '../checkpoint/strategies.js';
import type { PrimaryGuest, SyntheticLoad } from '../domain/binding.js';
import { SimBinding } from '../domain/sim/binding.js';
import { SecondaryServer } from '../secondary/server.js';
import { PAGE_SIZE } from '../stream/format.js';
import { ReplicationLink } from '../transport/link.js';
import { tcpTransport } from '../transport/tcp.js';
import type { Transport } from '../transport/transport.js';
import { createLogger } from '../util/logger.js';
import { xorshift32 } from '../util/xorshift.js';
import { median, percentile } from './stats.js';
import type { StreamPeerData } from './stream-peer.js';

export interface PauseRow {
  dirty_pages: number;
  pause_ms_p50: number;
  pause_ms_p99: number;
  gather_ms: number;
}

export interface EngineBenchResult {
  pause: PauseRow[];
  /** loopback_spread: the raw rate's upper quartile over its lower one, across counted rounds; a steady baseline stays near 1. */
  stream: { mb_per_s: number; loopback_mb_per_s: number; loopback_spread: number };
  max_epochs_per_s: number;
  ram_scaling: { dirty_pages: number; pause_ms_small: number; pause_ms_large: number; large_mib: number };
}

export interface EngineBenchOptions {
  quick: boolean;
  log: (line: string) => void;
  /** Filled with every sample (ms), keyed by case, for callers that want distributions. */
  samples?: Record<string, number[]>;
}

const MIB = 2 ** 20;
const logger = createLogger('silent');
const now = (): number => performance.now();

/** `n` distinct pfns below `pages`, from a seeded generator, ascending. */
function distinctPfns(pages: number, n: number, seed: number): Uint32Array {
  const next = xorshift32(seed);
  const chosen = new Set<number>();
  while (chosen.size < n) chosen.add(next() % pages);
  return Uint32Array.from(chosen).sort();
}

/** The sim, as `tandem` builds it from `domain: {type: sim}` (src/domain/bindings.ts), typed as the sim. */
const simBinding = (mib: number): SimBinding => new SimBinding({ pages: (mib * MIB) / 4096, vcpus: 1, diskBytes: MIB });

/** A sim guest of `mib` MiB whose every page has been written, for the engine to checkpoint. */
export function simGuest(mib: number): PrimaryGuest & { synthetic: SyntheticLoad } {
  const guest = simBinding(mib).primary(logger);
  if (guest.synthetic === undefined) throw new Error('the sim binding offers no synthetic load');
  const all = new Uint32Array(guest.domain.info.pages);
  for (let i = 0; i < all.length; i++) all[i] = i;
  guest.synthetic.touch(all, 0x11);
  return guest;
}

/** A checkpoint session whose target takes everything at once: its epochs cost what the engine costs, not a link. */
async function localSession(guest: PrimaryGuest): Promise<CheckpointSession> {
  const session = new CheckpointSession({
    domain: guest.domain,
    devices: new DeviceSet(),
    target: { write: () => Promise.resolve(), flushed: () => Promise.resolve(), held: () => Promise.resolve() },
    strategy: remusEpochs,
    version: 3,
    precopyPolicy: () => 'stop-and-copy',
    now,
  });
  await session.precopy();
  return session;
}

/**
 * Pause samples (ms) of whole epochs at `count` dirty pages and, given a
 * buffer as large as the guest's RAM, gather samples (ms) of copying the
 * same pages out of it, interleaved round by round.
 */
async function measurePause(
  guest: PrimaryGuest & { synthetic: SyntheticLoad },
  session: CheckpointSession,
  count: number,
  rounds: number,
  ram?: Buffer,
): Promise<{ pause: number[]; gather: number[] }> {
  const gatherDest = Buffer.allocUnsafe(ram === undefined ? 0 : count * PAGE_SIZE);
  const pause: number[] = [];
  const gather: number[] = [];
  for (let r = -2; r < rounds; r++) {
    const pfns = distinctPfns(guest.domain.info.pages, count, 1000 + r);
    guest.synthetic.touch(pfns, r);
    const m = await session.checkpoint('operator');
    if (m.dirtyPages !== count) throw new Error(`epoch ${m.epoch} carried ${m.dirtyPages} pages, dirtied ${count}`);
    if (r < 0) continue;
    pause.push(m.pauseUs / 1000);
    if (ram === undefined) continue;
    // Baseline: a plain memory copy of the same pages.
    const t0 = now();
    for (let i = 0; i < pfns.length; i++) ram.copy(gatherDest, i * PAGE_SIZE, pfns[i] * PAGE_SIZE, pfns[i] * PAGE_SIZE + PAGE_SIZE);
    gather.push(now() - t0);
  }
  return { pause, gather };
}

/** Starts a stream-peer worker; resolves with its port and a way to end it. */
export async function startPeer(data: StreamPeerData): Promise<{ port: number; stop: () => Promise<number> }> {
  const worker = new Worker(new URL('./stream-peer.js', import.meta.url), { workerData: data });
  const [msg] = (await once(worker, 'message')) as [{ port?: number; error?: string }];
  if (msg.port === undefined) throw new Error(`stream peer failed: ${msg.error}`);
  return { port: msg.port, stop: () => worker.terminate() };
}

/** Raw loopback TCP: `bytes` in 1 MiB writes to the sink peer; ms until it confirms receipt. */
async function loopbackMs(port: number, bytes: number): Promise<number> {
  const chunk = Buffer.alloc(MIB, 0x5a);
  const sock = connect({ port, host: '127.0.0.1', noDelay: true });
  await once(sock, 'connect');
  const confirmed = once(sock, 'data');
  const head = Buffer.alloc(8);
  head.writeBigUInt64LE(BigInt(bytes));
  const t0 = now();
  sock.write(head);
  for (let sent = 0; sent < bytes; sent += MIB) {
    if (!sock.write(sent + MIB <= bytes ? chunk : chunk.subarray(0, bytes - sent))) await once(sock, 'drain');
  }
  await confirmed;
  const ms = now() - t0;
  sock.destroy();
  return ms;
}

/** One pre-copy of an idle guest to a real secondary: stream bytes and ms to the first ack. */
export async function precopyOnce(guest: PrimaryGuest, port: number, transport: Transport = tcpTransport): Promise<{ bytes: number; ms: number }> {
  const link = new ReplicationLink({ transport, secondary: { host: '127.0.0.1', port }, connectTimeoutMs: 5000, ackTimeoutMs: 60_000 });
  await link.start();
  const session = new CheckpointSession({
    domain: guest.domain,
    devices: new DeviceSet(),
    target: link,
    strategy: remusEpochs,
    version: 3,
    precopyPolicy: precopyPolicy({ targetDirtyPages: 1 << 30, maxIterations: 1, shrinkRatio: 1 }),
    now,
  });
  const t0 = now();
  await session.precopy();
  const ms = now() - t0;
  const bytes = session.bytesSent;
  await session.end();
  await link.stop();
  return { bytes, ms };
}

/** Most the raw baseline's upper quartile may be over its lower one for the stream's ratio to count. */
const MAX_LOOPBACK_SPREAD = 1.5;

/** The stream measurement's warm-up: at least two rounds and this long, at most STREAM_MAX_WARMUPS rounds. */
const STREAM_WARMUP_MS = 4000;
const STREAM_MAX_WARMUPS = 12;

async function measureStream(mib: number, rounds: number, log: (l: string) => void): Promise<EngineBenchResult['stream']> {
  const guest = simGuest(mib);
  const secondary = await startPeer({ role: 'secondary', mib });
  const sink = await startPeer({ role: 'sink', mib: 0 });
  const stream: number[] = [];
  const raw: number[] = [];
  try {
    // Warm-up, at least two rounds and STREAM_WARMUP_MS: the first touch of the replica's memory
    // faults every page in, the JIT settles, and on this virtual machine memory touched anew (the
    // kernel's socket buffers, Node's read buffers) is slow for seconds after a large allocation:
    // raw TCP ran at a fifth of its speed for the first 2-3 s of a run.
    const warmupEnds = now() + STREAM_WARMUP_MS;
    let warmups = 0;
    while (stream.length < rounds) {
      const counted = (warmups >= 2 && now() >= warmupEnds) || warmups >= STREAM_MAX_WARMUPS;
      const p = await precopyOnce(guest, secondary.port);
      // One raw send swings more than the stream does from round to round (the scheduler,
      // the kernel's buffers): each round's baseline is the median of three, taken after the stream's.
      const l = median([await loopbackMs(sink.port, p.bytes), await loopbackMs(sink.port, p.bytes), await loopbackMs(sink.port, p.bytes)]);
      if (counted) {
        stream.push(p.bytes / (p.ms * 1000));
        raw.push(p.bytes / (l * 1000));
      } else warmups++;
      log(`  stream ${counted ? `round ${stream.length}` : `warm-up ${warmups}`}: ${(p.bytes / 1e6).toFixed(0)} MB in ${p.ms.toFixed(0)} ms; raw loopback ${l.toFixed(0)} ms`);
    }
  } finally {
    await secondary.stop();
    await sink.stop();
  }
  // Quartiles, not the extremes: one slow round is what the medians absorb; a baseline slow for a third of the run is not.
  const spread = percentile(raw, 75) / percentile(raw, 25);
  return { mb_per_s: Math.round(median(stream)), loopback_mb_per_s: Math.round(median(raw)), loopback_spread: Math.round(spread * 100) / 100 };
}

/** The guest and replica size of the epoch-rate measurement. */
export const EPOCH_RATE_MIB = 64;

async function measureEpochRate(seconds: number): Promise<number> {
  const replica = simBinding(EPOCH_RATE_MIB).replica(logger);
  const server = new SecondaryServer({ replica, transport: tcpTransport, listen: { host: '127.0.0.1', port: 0 }, logger });
  const { port } = await server.start();
  const rate = await epochRate(seconds, port, tcpTransport);
  await server.stop();
  return rate;
}

/**
 * Back-to-back epochs of 100 dirty pages from a fresh EPOCH_RATE_MIB guest to
 * the secondary at `port` over `transport`, for `seconds` after the first
 * checkpoint: epochs per second. Given an arbiter (already holding the
 * domain), its checkpoint device runs in every epoch and the stream carries
 * its generation, as in `tandem primary`.
 */
export async function epochRate(seconds: number, port: number, transport: Transport, arbiter?: Arbiter): Promise<number> {
  const guest = simBinding(EPOCH_RATE_MIB).primary(logger);
  const devices = new DeviceSet(arbiter === undefined ? [] : [new ArbiterDevice(arbiter)]);
  const engine = new PrimaryEngine(
    { domain: guest.domain, devices, mode: new ModeController('remus', { mode: 'manual', intervalMs: 1000, reason: 'bench' }), transport, logger },
    {
      secondary: { host: '127.0.0.1', port },
      minIntervalMs: 0,
      maxIntervalMs: 0,
      ackTimeoutMs: 10_000,
      connectTimeoutMs: 5000,
      retryMs: 1000,
      streamVersion: 3,
      precopy: { targetDirtyPages: 50, maxIterations: 5, shrinkRatio: 1 },
      generation: arbiter === undefined ? undefined : () => arbiter.generation,
    },
  );
  const synthetic = guest.synthetic;
  const pfns = distinctPfns(guest.domain.info.pages, 100, 77);
  let value = 0;
  let counted = 0;
  let t0 = 0;
  let stopAt = Number.POSITIVE_INFINITY;
  const finished = new Promise<number>((resolve) => {
    engine.metrics$.subscribe((m) => {
      if (m.epoch === 1) t0 = now();
      else if (m.dirtyPages !== 100) throw new Error(`epoch ${m.epoch} carried ${m.dirtyPages} pages, expected 100`);
      else counted++;
      if (now() >= stopAt) {
        resolve(counted / ((now() - t0) / 1000));
        return;
      }
      if (m.epoch === 1) stopAt = t0 + seconds * 1000;
      // The guest dirties 100 pages, then the next epoch is requested at once.
      synthetic.touch(pfns, ++value);
      engine.requestCheckpoint('bench');
    });
  });
  engine.start();
  await firstValueFrom(engine.state$.pipe(filter((s) => s.state === 'protected')));
  const rate = await finished;
  await engine.stop();
  return Math.round(rate);
}

export async function benchEngine(opts: EngineBenchOptions): Promise<EngineBenchResult> {
  const { quick, log } = opts;
  const rounds = quick ? 15 : 41;
  // The throughput figures first, on a process with nothing to free yet: the
  // 4 GiB guest of the RAM scaling below, freed by a later garbage
  // collection, once slowed the raw TCP baseline (the main thread sends for
  // both) to a quarter of its speed for five rounds running.
  const stream = await measureStream(quick ? 64 : 256, quick ? 3 : 9, log);
  const max_epochs_per_s = await measureEpochRate(quick ? 1 : 3);
  log(`  epochs/s with 100 dirty pages: ${max_epochs_per_s}`);

  const small = simGuest(256);
  const smallSession = await localSession(small);
  // The gather baseline's memory: as large as the guest's, every page written.
  const smallRam = Buffer.alloc(256 * 2 ** 20, 0x11);

  const pause: PauseRow[] = [];
  for (const count of [100, 1000, 10_000, 50_000]) {
    const { pause: p, gather } = await measurePause(small, smallSession, count, count >= 10_000 ? Math.ceil(rounds / 2) : rounds, smallRam);
    if (opts.samples) {
      opts.samples[`pause-${count}`] = p;
      opts.samples[`gather-${count}`] = gather;
    }
    pause.push({ dirty_pages: count, pause_ms_p50: median(p), pause_ms_p99: percentile(p, 99), gather_ms: median(gather) });
    log(`  pause at ${count} dirty pages: p50 ${median(p).toFixed(3)} ms, gather ${median(gather).toFixed(3)} ms`);
  }

  const scalingDirty = 1000;
  const largeMib = quick ? 1024 : 4096;
  const large = simGuest(largeMib);
  const largeSession = await localSession(large);
  const smallSamples: number[] = [];
  const largeSamples: number[] = [];
  // Interleaved so both see the same machine conditions.
  for (let r = 0; r < 5; r++) {
    smallSamples.push(...(await measurePause(small, smallSession, scalingDirty, Math.ceil(rounds / 5))).pause);
    largeSamples.push(...(await measurePause(large, largeSession, scalingDirty, Math.ceil(rounds / 5))).pause);
  }
  await smallSession.end();
  await largeSession.end();
  if (opts.samples) {
    opts.samples['pause-256MiB'] = smallSamples;
    opts.samples[`pause-${largeMib}MiB`] = largeSamples;
  }
  const ram_scaling = { dirty_pages: scalingDirty, pause_ms_small: median(smallSamples), pause_ms_large: median(largeSamples), large_mib: largeMib };
  log(`  ram scaling at ${scalingDirty} dirty pages: 256 MiB ${ram_scaling.pause_ms_small.toFixed(3)} ms, ${largeMib} MiB ${ram_scaling.pause_ms_large.toFixed(3)} ms`);

  return { pause, stream, max_epochs_per_s, ram_scaling };
}

export interface TargetCheck {
  what: string;
  target: string;
  value: string;
  pass: boolean;
}

/** The issue's targets, checked against a result. */
export function engineTargets(r: EngineBenchResult): TargetCheck[] {
  const out: TargetCheck[] = r.pause.map((row) => ({
    what: `pause p50 at ${row.dirty_pages} dirty pages`,
    target: `<= 1.5 x gather (${row.gather_ms.toFixed(3)} ms) + 0.2 ms = ${(1.5 * row.gather_ms + 0.2).toFixed(3)} ms`,
    value: `${row.pause_ms_p50.toFixed(3)} ms`,
    pass: row.pause_ms_p50 <= 1.5 * row.gather_ms + 0.2,
  }));
  const scale = r.ram_scaling.pause_ms_large / r.ram_scaling.pause_ms_small;
  out.push({ what: `pause ${r.ram_scaling.large_mib} MiB / 256 MiB at ${r.ram_scaling.dirty_pages} dirty pages`, target: '<= 1.5', value: scale.toFixed(2), pass: scale <= 1.5 });
  const tput = r.stream.mb_per_s / r.stream.loopback_mb_per_s;
  // A baseline whose quartiles lie more than half apart was measured on a disturbed machine
  // (it has run at a fifth of its speed for seconds): no ratio against it counts as met.
  const steady = r.stream.loopback_spread <= MAX_LOOPBACK_SPREAD;
  out.push({
    what: 'stream / raw loopback TCP',
    target: `>= 0.70, raw steady (spread <= ${MAX_LOOPBACK_SPREAD})`,
    value: `${tput.toFixed(2)} (${r.stream.mb_per_s} vs ${r.stream.loopback_mb_per_s} MB/s; raw spread ${r.stream.loopback_spread.toFixed(2)}${steady ? '' : ', unsteady'})`,
    pass: tput >= 0.7 && steady,
  });
  out.push({ what: 'sustained epochs/s at 100 dirty pages', target: '>= 500', value: String(r.max_epochs_per_s), pass: r.max_epochs_per_s >= 500 });
  return out;
}
