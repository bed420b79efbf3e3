/**
 * proxy: Tandem's COLO comparator (`tandem proxy`, its own process) next to
 * QEMU's colo-compare (qemu-system-x86_64 -machine none), same run, same
 * traces, same driver, both through their four loopback sockets:
 *
 *   - compared packet pairs per second: identical primary/secondary TCP
 *     traces, 1 flow and 100 flows, 118- and 1454-byte frames. The driver
 *     keeps a window of pairs in flight (below colo-compare's default
 *     1024-frame queue, which drops beyond it) and stops the clock when the
 *     last primary frame comes out of outdev;
 *   - added latency of a matched pair: the secondary frame is sent, then its
 *     twin; the time from writing the primary frame to reading it back from
 *     outdev, one pair at a time;
 *   - mismatch -> DO_CHECKPOINT: a diverging pair; the time from writing the
 *     primary frame to reading DO_CHECKPOINT from notify (then
 *     COLO_CHECKPOINT, and its flush, reset the state), after a warm-up of
 *     the same exchange for every peer (3,000 for the Node peers, whose
 *     JIT needs them; 50 for colo-compare, compiled C, whose mismatches
 *     take ~44 ms each: it also gets 300 samples, not 1,000). End to end this includes two
 *     loopback hops and two process wakeups, which a do-nothing Node
 *     process (the floor) measures alone; Tandem's own share, from the read
 *     that brought the frame to DO_CHECKPOINT written, comes from its
 *     Prometheus histogram (`tandem proxy --metrics`) over the same samples.
 *
 * The machine is shared and noisy: rounds alternate between the two
 * comparators and the figures are medians, with the paired ratio next to them.
 * Each shape starts with warm-up rounds for both (their rates are printed,
 * not counted), and each side's range over the counted rounds is printed
 * with which side swung more: a ratio that moves between runs says there
 * which comparator moved.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { ComparatorClient, type ComparatorAddresses } from '../proxy/client.js';
import { tcp, udp } from '../proxy/craft.js';
import { encodeFrame } from '../proxy/framing.js';
import { NotifyWords } from '../proxy/notify.js';
import { ColoCompareProcess, qemuAvailable } from '../proxy/qemu.js';
import { caseResult, compare, median, nowNs, type BenchContext, type BenchResult, type Benchmark, type CaseResult, type Comparison } from '../src/bench/stats.js';

const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const FLOOR = fileURLToPath(new URL('./proxy-floor.js', import.meta.url));
const TARGET_RATIO = 2;
const TARGET_P99_MS = 1;
/** Pairs in flight: below colo-compare's default max_queue_size (1024 per queue). */
const WINDOW = 512;
const BATCH = 64;
/** colo-compare is compiled C, warm after a few exchanges; each of its mismatches takes ~44 ms, so it gets fewer samples too. */
const QEMU_WARMUP = 50;
const QEMU_MISMATCH_SAMPLES = 300;
/** Mismatch samples per turn when Tandem and the floor alternate. */
const MISMATCH_BLOCK = 100;
const ETH_IP_TCP = 14 + 20 + 20;

interface Peer {
  name: 'tandem' | 'qemu' | 'floor';
  label: string;
  client: ComparatorClient;
  /** Tandem's Prometheus endpoint. */
  metricsUrl?: string;
  stop: () => Promise<void>;
}

const TANDEM_ARGS = [CLI, 'proxy', '--primary-in', '127.0.0.1:0', '--secondary-in', '127.0.0.1:0', '--outdev', '127.0.0.1:0', '--notify', '127.0.0.1:0', '--metrics', '127.0.0.1:0', '--compare-timeout', '60000', '--log-level', 'warn'];

/** `tandem proxy`, or the do-nothing floor: Node processes that print their four ports. */
async function startNodePeer(which: 'tandem' | 'floor'): Promise<Peer> {
  const child: ChildProcess = spawn(process.execPath, which === 'tandem' ? TANDEM_ARGS : [FLOOR], { stdio: ['ignore', 'pipe', 'inherit'] });
  const line = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('\n')) resolve(out.slice(0, out.indexOf('\n')));
    });
    child.once('exit', (code) => reject(new Error(`tandem proxy exited with ${code}`)));
  });
  const ports = [...line.matchAll(/=127\.0\.0\.1:(\d+)/g)].map((m) => Number(m[1]));
  const at = (port: number): { host: string; port: number } => ({ host: '127.0.0.1', port });
  const addresses: ComparatorAddresses = { primaryIn: at(ports[0]), secondaryIn: at(ports[1]), outdev: at(ports[2]), notify: at(ports[3]) };
  const client = await connectClient(addresses);
  return {
    name: which,
    label: which === 'tandem' ? 'Tandem proxy' : 'floor: Node, no comparing',
    client,
    metricsUrl: ports[4] === undefined ? undefined : `http://127.0.0.1:${ports[4]}/metrics`,
    stop: async () => {
      client.stop();
      const gone = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await gone;
    },
  };
}

async function startQemu(): Promise<Peer> {
  const q = await ColoCompareProcess.start({ compareTimeoutMs: 60_000 });
  const client = await connectClient(q.addresses);
  return {
    name: 'qemu',
    label: 'QEMU colo-compare (baseline)',
    client,
    stop: async () => {
      client.stop();
      await q.stop();
    },
  };
}

async function connectClient(a: ComparatorAddresses): Promise<ComparatorClient> {
  const c = new ComparatorClient(a);
  await c.start();
  await c.init();
  await c.ready();
  return c;
}

/** Pre-encoded batches of identical primary/secondary records. */
interface Trace {
  pairs: number;
  frameBytes: number;
  primary: Buffer[];
  secondary: Buffer[];
}

/** `seq` holds each flow's next sequence number and is advanced, so consecutive traces continue the flows. */
function buildTrace(pairs: number, flows: number, frameBytes: number, seq: number[], sport: number): Trace {
  const payload = Buffer.alloc(frameBytes - ETH_IP_TCP, 0x5a);
  const primary: Buffer[] = [];
  const secondary: Buffer[] = [];
  for (let i = 0; i < pairs; i += BATCH) {
    const recs: Buffer[] = [];
    for (let j = i; j < Math.min(pairs, i + BATCH); j++) {
      const flow = j % flows;
      recs.push(encodeFrame(tcp({ src: '10.0.0.2', dst: '10.0.0.9', sport, dport: 20000 + flow, seq: seq[flow], ack: 1, payload })));
      seq[flow] = (seq[flow] + payload.length) >>> 0;
    }
    const b = Buffer.concat(recs);
    primary.push(b);
    secondary.push(b);
  }
  return { pairs, frameBytes, primary, secondary };
}

/** Counts records on outdev without decoding them (the driver must stay cheap). */
class RecordCounter {
  count = 0;
  private need = 4;
  private inHeader = true;
  private hdr = Buffer.alloc(4);
  private fill = 0;

  push(chunk: Buffer): void {
    let at = 0;
    while (at < chunk.length) {
      if (this.inHeader) {
        const k = Math.min(4 - this.fill, chunk.length - at);
        chunk.copy(this.hdr, this.fill, at, at + k);
        this.fill += k;
        at += k;
        if (this.fill === 4) {
          this.fill = 0;
          this.need = this.hdr.readUInt32BE(0);
          this.inHeader = false;
        }
      } else {
        const k = Math.min(this.need, chunk.length - at);
        this.need -= k;
        at += k;
        if (this.need === 0) {
          this.inHeader = true;
          this.count++;
        }
      }
    }
  }
}

/** Sends the trace with a window of pairs in flight; resolves with the ns until the last release. */
function throughputRound(peer: Peer, trace: Trace): Promise<number> {
  const out = peer.client.socket('outdev');
  const pri = peer.client.socket('primary');
  const sec = peer.client.socket('secondary');
  const counter = new RecordCounter();
  return new Promise((resolve) => {
    let next = 0;
    const t0 = nowNs();
    const pump = (): void => {
      while (next < trace.primary.length && next * BATCH - counter.count < WINDOW) {
        sec.write(trace.secondary[next]);
        pri.write(trace.primary[next]);
        next++;
      }
    };
    const onData = (chunk: Buffer): void => {
      counter.push(chunk);
      if (counter.count >= trace.pairs) {
        out.off('data', onData);
        resolve(Number(nowNs() - t0));
        return;
      }
      pump();
    };
    // Raw counting replaces the client's frame decoding for the round.
    out.removeAllListeners('data');
    out.on('data', onData);
    pump();
  });
}

/** One matched pair at a time: ns from writing the primary frame to its release. */
async function latencySamples(peer: Peer, n: number, dportBase: number): Promise<number[]> {
  const out: number[] = [];
  const c = peer.client;
  for (let i = 0; i < n; i++) {
    const f = udp({ src: '10.0.0.2', dst: '10.0.0.9', sport: 53, dport: dportBase + (i % 50), payload: Buffer.from(`pair ${i}`) });
    c.sendSecondary(f);
    const back = c.released(f);
    // Let the secondary frame be read first, as in a steady stream where the twin is waiting.
    await new Promise((r) => setImmediate(r));
    const t0 = nowNs();
    c.sendPrimary(f);
    await back;
    out.push(Number(nowNs() - t0));
  }
  return out;
}

/** A diverging pair at a time: ns from writing the primary frame to DO_CHECKPOINT. */
async function mismatchSamples(peer: Peer, n: number): Promise<number[]> {
  const out: number[] = [];
  const c = peer.client;
  for (let i = 0; i < n; i++) {
    const flow = { src: '10.0.0.2', dst: '10.0.0.9', sport: 53, dport: 30000 + (i % 50) };
    const p = udp({ ...flow, payload: Buffer.from(`primary ${i}`) });
    c.sendSecondary(udp({ ...flow, payload: Buffer.from(`second. ${i}`) }));
    const requested = c.nextNotify(NotifyWords.DO_CHECKPOINT);
    await new Promise((r) => setImmediate(r));
    const t0 = nowNs();
    c.sendPrimary(p);
    await requested;
    out.push(Number(nowNs() - t0));
    const flushed = c.released(p);
    c.sendNotify(NotifyWords.CHECKPOINT_DONE);
    await flushed;
  }
  return out;
}

/** Cumulative counts of Tandem's mismatch decision histogram, by bucket bound in seconds. */
async function decisionBuckets(url: string): Promise<Map<number, number>> {
  const text = await (await fetch(url)).text();
  const out = new Map<number, number>();
  for (const m of text.matchAll(/^tandem_proxy_checkpoint_decision_seconds_bucket\{le="([^"]+)",reason="mismatch"\} (\d+)$/gm)) out.set(m[1] === '+Inf' ? Infinity : Number(m[1]), Number(m[2]));
  return out;
}

/** The bucket bound (ms) under which a fraction `q` of the decisions between two scrapes fell. */
function bucketQuantileMs(before: Map<number, number>, after: Map<number, number>, q: number): { boundMs: number; count: number; within1ms: number } {
  const bounds = [...after.keys()].sort((a, b) => a - b);
  const delta = (b: number): number => (after.get(b) ?? 0) - (before.get(b) ?? 0);
  const count = delta(Infinity);
  const bound = bounds.find((b) => delta(b) >= q * count) ?? Infinity;
  return { boundMs: bound * 1000, count, within1ms: count === 0 ? 0 : delta(1e-3) / count };
}

async function run(ctx: BenchContext): Promise<BenchResult> {
  const started = nowNs();
  if (!qemuAvailable()) throw new Error('qemu-system-x86_64 not found: apt-get install -y --no-install-recommends qemu-system-x86');
  const pairs = ctx.quick ? 4096 : 16384;
  const rounds = Math.max(1, ctx.rounds ?? (ctx.quick ? 3 : 7));
  const latencyN = ctx.quick ? 300 : 1000;
  const mismatchN = ctx.quick ? 300 : 1000;
  // Until V8 has compiled the hot paths of a Node peer (and of this driver), its samples measure the compiler.
  const nodeWarmup = ctx.quick ? 1500 : 3000;
  const warmup = (peer: Peer): number => (peer.name === 'qemu' ? QEMU_WARMUP : nodeWarmup);
  // A Node comparator reaches its steady rate only after some 50,000 pairs of a shape (V8 compiles its paths for
  // that shape's frames); a proxy that runs for months is measured there. Both sides get the same rounds first.
  const warmupRounds = ctx.quick ? 2 : 4;

  const loadBefore = os.loadavg()[0];
  ctx.log('proxy: starting tandem proxy and QEMU colo-compare...');
  const running: Peer[] = [];
  const start = async (p: Promise<Peer>): Promise<Peer> => {
    const peer = await p;
    running.push(peer);
    return peer;
  };
  const cases: CaseResult[] = [];
  const comparisons: Comparison[] = [];
  const notes: string[] = [];
  try {
    const tandem = await start(startNodePeer('tandem'));
    const qemu = await start(startQemu());
    const floor = await start(startNodePeer('floor'));
    const peers = [tandem, qemu];
    // Latency first: the throughput rounds then take outdev over with a raw record counter.
    ctx.log('proxy: latency of matched pairs and of mismatch -> DO_CHECKPOINT...');
    const lat: Record<string, number[]> = {};
    const mis: Record<string, number[]> = { tandem: [], qemu: [], floor: [] };
    for (const peer of peers) {
      await latencySamples(peer, warmup(peer), 50000);
      lat[peer.name] = await latencySamples(peer, latencyN, 50000);
    }
    for (const peer of [tandem, qemu, floor]) await mismatchSamples(peer, warmup(peer));
    // Tandem and the floor take turns in blocks, so the host's moods fall on both alike.
    const before = await decisionBuckets(tandem.metricsUrl!);
    for (let k = 0; k < mismatchN; k += MISMATCH_BLOCK) {
      for (const peer of [tandem, floor]) mis[peer.name].push(...(await mismatchSamples(peer, Math.min(MISMATCH_BLOCK, mismatchN - k))));
    }
    const after = await decisionBuckets(tandem.metricsUrl!);
    const decision = bucketQuantileMs(before, after, 0.99);
    const decisionP50 = bucketQuantileMs(before, after, 0.5);
    mis.qemu = await mismatchSamples(qemu, Math.min(mismatchN, QEMU_MISMATCH_SAMPLES));
    await floor.stop();
    running.splice(running.indexOf(floor), 1);
    cases.push(caseResult('mismatch-floor', `${floor.label}: primary write -> DO_CHECKPOINT (per frame)`, 0, mis.floor, true));
    for (const peer of peers) {
      const l = caseResult(`latency-${peer.name}`, `${peer.label}: matched pair, primary write -> outdev (per pair)`, 0, lat[peer.name], peer.name === 'qemu');
      const m = caseResult(`mismatch-${peer.name}`, `${peer.label}: mismatch, primary write -> DO_CHECKPOINT (per pair)`, 0, mis[peer.name], peer.name === 'qemu');
      cases.push(l, m);
    }
    const tm = cases.find((c) => c.id === 'mismatch-tandem')!;
    const fm = cases.find((c) => c.id === 'mismatch-floor')!;
    comparisons.push({
      subject: tm.id,
      baseline: tm.id,
      label: `mismatch -> DO_CHECKPOINT end to end p99 ${tm.ms.p99.toFixed(3)} ms (Tandem; do-nothing floor ${fm.ms.p99.toFixed(3)} ms); ratio = ${TARGET_P99_MS} ms / p99`,
      ratio: TARGET_P99_MS / tm.ms.p99,
      pairedRatio: TARGET_P99_MS / tm.ms.p99,
      target: { min: 1, text: `p99 <= ${TARGET_P99_MS} ms`, pass: tm.ms.p99 <= TARGET_P99_MS },
    });
    if (decision.count !== mismatchN) throw new Error(`Tandem's decision histogram counted ${decision?.count} mismatches, the driver saw ${mismatchN}`);
    comparisons.push({
      subject: 'decision-tandem',
      baseline: 'decision-tandem',
      label: `mismatch -> DO_CHECKPOINT inside Tandem's comparator (read to notify write, its histogram): p50 <= ${decisionP50.boundMs} ms, p99 <= ${decision.boundMs} ms, ${(decision.within1ms * 100).toFixed(1)}% within 1 ms; ratio = ${TARGET_P99_MS} ms / p99 bucket`,
      ratio: TARGET_P99_MS / decision.boundMs,
      pairedRatio: TARGET_P99_MS / decision.boundMs,
      target: { min: 1, text: `p99 <= ${TARGET_P99_MS} ms`, pass: decision.boundMs <= TARGET_P99_MS },
    });
    const shapes = [
      { flows: 1, bytes: 118 },
      { flows: 100, bytes: 118 },
      { flows: 1, bytes: 1454 },
      { flows: 100, bytes: 1454 },
    ];
    for (const shape of shapes) {
      const samples: Record<string, number[]> = { tandem: [], qemu: [] };
      // Each shape has flows of its own; rounds continue them, and both comparators get the same trace.
      const seq = new Array<number>(shape.flows).fill(1000);
      const warm: Record<string, number[]> = { tandem: [], qemu: [] };
      for (let r = 0; r < warmupRounds + rounds; r++) {
        const order = r % 2 === 0 ? peers : [...peers].reverse();
        const trace = buildTrace(pairs, shape.flows, shape.bytes, seq, 1000 + shapes.indexOf(shape));
        for (const peer of order) {
          const ns = await throughputRound(peer, trace);
          (r < warmupRounds ? warm : samples)[peer.name].push(ns);
        }
        ctx.log(`proxy: ${shape.flows} flow(s), ${shape.bytes}-byte frames: ${r < warmupRounds ? `warm-up ${r + 1}/${warmupRounds}` : `round ${r + 1 - warmupRounds}/${rounds}`}`);
      }
      const bytes = pairs * shape.bytes;
      const tag = `${shape.flows}f-${shape.bytes}B`;
      const t = caseResult(`tandem-${tag}`, `Tandem, ${shape.flows} flow(s), ${shape.bytes} B frames, ${pairs} pairs`, bytes, samples.tandem);
      const q = caseResult(`qemu-${tag}`, `colo-compare, ${shape.flows} flow(s), ${shape.bytes} B frames, ${pairs} pairs`, bytes, samples.qemu, true);
      cases.push(t, q);
      comparisons.push(compare(t, q, { [t.id]: samples.tandem, [q.id]: samples.qemu }, `pairs/s Tandem / colo-compare, ${shape.flows} flow(s), ${shape.bytes} B`, TARGET_RATIO));
      const pps = (c: CaseResult): string => `${Math.round(pairs / (c.ms.p50 / 1e3)).toLocaleString('en-US')}`;
      const ts = swing(pairs, samples.tandem);
      const qs = swing(pairs, samples.qemu);
      notes.push(
        `${shape.flows} flow(s), ${shape.bytes} B: Tandem ${pps(t)} pairs/s (rounds ${ts.text}) vs colo-compare ${pps(q)} pairs/s (rounds ${qs.text}); ` +
          `${ts.spread > qs.spread ? 'Tandem' : 'colo-compare'} swings more (max/min over rounds: Tandem ${ts.spread.toFixed(2)}, colo-compare ${qs.spread.toFixed(2)}); ` +
          `warm-up rounds, not counted: Tandem ${rates(pairs, warm.tandem)}, colo-compare ${rates(pairs, warm.qemu)} k pairs/s`,
      );
    }
    const ms = (xs: number[], p: 'p50' | 'p99'): string => (p === 'p50' ? median(xs) / 1e6 : [...xs].sort((a, b) => a - b)[Math.floor(0.99 * (xs.length - 1))] / 1e6).toFixed(3);
    notes.push(`added latency, matched pair: Tandem p50 ${ms(lat.tandem, 'p50')} / p99 ${ms(lat.tandem, 'p99')} ms vs colo-compare p50 ${ms(lat.qemu, 'p50')} / p99 ${ms(lat.qemu, 'p99')} ms (loopback round trip included in both)`);
    notes.push(`mismatch -> DO_CHECKPOINT: Tandem p50 ${ms(mis.tandem, 'p50')} / p99 ${ms(mis.tandem, 'p99')} ms vs colo-compare p50 ${ms(mis.qemu, 'p50')} / p99 ${ms(mis.qemu, 'p99')} ms; floor (a Node process that answers every frame with DO_CHECKPOINT, comparing nothing) p50 ${ms(mis.floor, 'p50')} / p99 ${ms(mis.floor, 'p99')} ms on this host in this run`);
    notes.push(`host load average (1 min) ${loadBefore.toFixed(2)} before, ${os.loadavg()[0].toFixed(2)} after, on ${os.cpus().length} CPUs: tail latencies on a busy host measure its scheduler as much as the comparator.`);
    notes.push(`throughput rows: MB/s counts one frame per pair; a window of ${WINDOW} pairs in flight, ${BATCH} pairs per write; the first ${warmupRounds} rounds of each shape warm up (their rates are in the notes above).`);
  } finally {
    for (const p of running) await p.stop();
  }
  return {
    name: 'proxy',
    title: 'COLO proxy: Tandem vs QEMU colo-compare, same traces, same run',
    params: { pairs, rounds, window: WINDOW, latencySamples: latencyN, mismatchSamples: mismatchN, warmupNode: nodeWarmup, warmupQemu: QEMU_WARMUP, qemuMismatchSamples: Math.min(mismatchN, QEMU_MISMATCH_SAMPLES), mismatchBlock: MISMATCH_BLOCK },
    cases,
    comparisons,
    notes,
    elapsedMs: Number(nowNs() - started) / 1e6,
  };
}

/**
 * How much one side's rate moved between the rounds of a shape: a ratio
 * that swings between runs is read against it (is it this side, or the
 * other, that moved?).
 */
/** Each round's rate, in thousands of pairs a second, in the order run. */
const rates = (pairs: number, samplesNs: readonly number[]): string => samplesNs.map((ns) => Math.round(pairs / (ns / 1e9) / 1000)).join('/');

function swing(pairs: number, samplesNs: readonly number[]): { spread: number; text: string } {
  const rates = samplesNs.map((ns) => pairs / (ns / 1e9)).sort((a, b) => a - b);
  const k = (x: number): string => `${Math.round(x / 1000)}k`;
  const lo = rates[0];
  const hi = rates[rates.length - 1];
  return { spread: hi / lo, text: `${k(lo)}..${k(hi)}` };
}

export const proxy: Benchmark = {
  name: 'proxy',
  description: 'COLO comparator: pairs/s and added latency, Tandem vs QEMU colo-compare (1/100 flows, 118/1454 B)',
  run,
};
