/**
 * Many domains per controller, as users run it: one `tandem secondary` and
 * one `tandem primary` process (mutual TLS, Remus at a 25 ms interval, the
 * default policy), each running 1, 4 or 8 sim domains of 256 MiB from one
 * `domains:` list, every domain under its own redis-benchmark (-c 20 SET)
 * at once. The figures come from the primary's one monitor: the epoch events
 * it streams, each naming its domain (what an operator's dashboard reads).
 *
 * Per domain: the guest's pause per epoch (p50, p99) and epochs/s over the
 * load window; for the host: how many of its cores were busy, and the two
 * tandem processes' own CPU. Target (issue 15): at 8 domains, every
 * domain's pause p99 within 1.5x the single-domain p99 measured in the same
 * run. The load generators share the machine with both nodes, as they
 * would not between two real hosts: the CPU figures say how much of the
 * host that leaves.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import { startNode, waitFor, type Node } from '../src/demo/run.js';
import { median, percentile, type BenchResult, type Benchmark, type Comparison } from '../src/bench/stats.js';
import { monitorUrlOf } from '../src/monitor/wire.js';
import { certsInit } from '../src/transport/certs.js';

const INTERVAL_MS = 25;
const MEMORY_MIB = 256;
const TARGET_P99 = 1.5;

/** `count` distinct free loopback ports (all held open until every one is chosen). */
async function freePorts(count: number): Promise<number[]> {
  const servers: Server[] = [];
  try {
    for (let i = 0; i < count; i++) {
      const s = createServer();
      await new Promise<void>((resolve, reject) => s.once('error', reject).listen(0, '127.0.0.1', resolve));
      servers.push(s);
    }
    return servers.map((s) => (s.address() as { port: number }).port);
  } finally {
    await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  }
}

interface DomainPorts {
  name: string;
  service: number;
  listen: number;
  heartbeat: number;
  secondaryService: number;
}

/** One configuration file both processes read, as examples/domains.yaml has it. */
function configText(domains: readonly DomainPorts[]): string {
  const lines = ['primary:', `  interval_ms: ${INTERVAL_MS}`, 'domains:'];
  for (const d of domains) {
    lines.push(
      `  - name: ${d.name}`,
      '    domain:',
      `      memory_mib: ${MEMORY_MIB}`,
      '    primary:',
      `      service: 127.0.0.1:${d.service}`,
      `      secondary: 127.0.0.1:${d.listen}`,
      `      heartbeat: 127.0.0.1:${d.heartbeat}`,
      '    secondary:',
      `      listen: 127.0.0.1:${d.listen}`,
      `      heartbeat: 127.0.0.1:${d.heartbeat}`,
      `      service: 127.0.0.1:${d.secondaryService}`,
    );
  }
  return `${lines.join('\n')}\n`;
}

/** Jiffies the whole host spent busy and in all, from /proc/stat. */
function hostTicks(): { busy: number; total: number } {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const total = f.reduce((a, b) => a + b, 0);
  return { busy: total - f[3] - (f[4] ?? 0), total };
}

/** A process's user + system time, in clock ticks (USER_HZ, 100 a second on Linux). */
function processTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(f[11]) + Number(f[12]);
}
const USER_HZ = 100;

interface Figures {
  domains: number;
  /** Per domain: pause p50 and p99 (ms), epochs/s. */
  perDomain: { name: string; pauseP50: number; pauseP99: number; epochsPerSec: number; epochs: number }[];
  /** Cores busy on the host over the window. */
  hostCores: number;
  primaryCores: number;
  secondaryCores: number;
}

/** A pair of processes with `n` domains, loaded for `windowMs`; the figures of that window. */
async function measure(n: number, windowMs: number, log: (l: string) => void): Promise<Figures> {
  const dir = mkdtempSync(join(tmpdir(), 'tandem-bench-domains-'));
  const nodes: Node[] = [];
  const loads: ChildProcess[] = [];
  let ws: WebSocket | undefined;
  try {
    const ports = await freePorts(4 * n);
    const domains: DomainPorts[] = Array.from({ length: n }, (_, i) => ({ name: `d${i + 1}`, service: ports[4 * i], listen: ports[4 * i + 1], heartbeat: ports[4 * i + 2], secondaryService: ports[4 * i + 3] }));
    const config = join(dir, 'tandem.yaml');
    writeFileSync(config, configText(domains));
    const certs = join(dir, 'tls');
    await certsInit(certs, { nodes: ['primary', 'secondary'], days: 60 });
    const sec = startNode(['secondary', '--config', config, '--tls', certs, '--name', 'secondary', '--peer', 'primary'], join(dir, 'secondary.log'));
    nodes.push(sec);
    const listening = new Set<string>();
    await waitFor(sec, (l) => (typeof l.domain === 'string' && /heartbeat channel listening/.test(String(l.msg)) && listening.add(l.domain).size === n ? true : undefined), `all ${n} domains' secondaries`, 120_000);
    const pri = startNode(['primary', '--config', config, '--tls', certs, '--name', 'primary', '--peer', 'secondary', '--monitor', '127.0.0.1:0'], join(dir, 'primary.log'));
    nodes.push(pri);
    const monitor = waitFor(pri, (l) => monitorUrlOf(l), 'the monitor', 120_000);
    const protectedNow = new Set<string>();
    await waitFor(pri, (l) => (typeof l.domain === 'string' && l.state === 'protected' && protectedNow.add(l.domain).size === n ? true : undefined), `all ${n} domains protected`, 180_000);
    const url = new URL('ws', await monitor);
    url.protocol = 'ws:';
    const pauses = new Map<string, number[]>(domains.map((d) => [d.name, []]));
    let measuring = false;
    ws = new WebSocket(url);
    ws.on('message', (data) => {
      if (!measuring) return;
      const e = JSON.parse((data as Buffer).toString()) as { type?: string; domain?: string; pauseUs?: number | null };
      if (e.type === 'epoch' && typeof e.domain === 'string' && typeof e.pauseUs === 'number') pauses.get(e.domain)?.push(e.pauseUs / 1000);
    });
    await new Promise<void>((resolve, reject) => ws!.once('open', resolve).once('error', reject));
    // Each domain its own load, for longer than the window: it is stopped when the window ends.
    for (const d of domains) {
      loads.push(spawn('redis-benchmark', ['-p', String(d.service), '-t', 'set', '-n', '10000000', '-c', '20', '-q'], { stdio: 'ignore' }));
    }
    // The clients connect and the first epochs under load settle before the window opens.
    await new Promise((r) => setTimeout(r, 2000));
    const h0 = hostTicks();
    const p0 = processTicks(pri.child.pid!);
    const s0 = processTicks(sec.child.pid!);
    measuring = true;
    const t0 = performance.now();
    await new Promise((r) => setTimeout(r, windowMs));
    measuring = false;
    const seconds = (performance.now() - t0) / 1000;
    const h1 = hostTicks();
    const cores = cpus().length;
    const figures: Figures = {
      domains: n,
      perDomain: domains.map((d) => {
        const xs = pauses.get(d.name)!;
        if (xs.length === 0) throw new Error(`domain ${d.name}: no epoch in the ${seconds.toFixed(1)} s window`);
        return { name: d.name, pauseP50: median(xs), pauseP99: percentile(xs, 99), epochsPerSec: xs.length / seconds, epochs: xs.length };
      }),
      hostCores: ((h1.busy - h0.busy) / (h1.total - h0.total)) * cores,
      primaryCores: (processTicks(pri.child.pid!) - p0) / USER_HZ / seconds,
      secondaryCores: (processTicks(sec.child.pid!) - s0) / USER_HZ / seconds,
    };
    log(`  ${n} domain(s): pause p99 ${figures.perDomain.map((d) => d.pauseP99.toFixed(2)).join(' / ')} ms, epochs/s ${figures.perDomain.map((d) => d.epochsPerSec.toFixed(0)).join(' / ')}, host ${figures.hostCores.toFixed(2)} cores busy`);
    return figures;
  } finally {
    ws?.terminate();
    for (const l of loads) l.kill('SIGKILL');
    for (const node of nodes.reverse()) {
      node.child.kill('SIGTERM');
      await node.closed;
    }
    rmSync(dir, { recursive: true, force: true });
  }
}

const worst = (f: Figures): number => Math.max(...f.perDomain.map((d) => d.pauseP99));
const mid = (f: Figures, k: 'pauseP50' | 'pauseP99' | 'epochsPerSec'): number => median(f.perDomain.map((d) => d[k]));

export const domains: Benchmark = {
  name: 'domains',
  description: `1, 4 and 8 sim domains (${MEMORY_MIB} MiB, Remus ${INTERVAL_MS} ms) in one primary and one secondary process, each under redis-benchmark SET: per-domain pause p99 and epochs/s vs one domain, host CPU`,
  async run(ctx): Promise<BenchResult> {
    const started = performance.now();
    const rounds = ctx.rounds ?? (ctx.quick ? 1 : 2);
    const windowMs = ctx.quick ? 5000 : 10_000;
    const counts = [1, 4, 8];
    const runs = new Map<number, Figures[]>(counts.map((n) => [n, []]));
    for (let r = 0; r < rounds; r++) {
      for (const n of counts) {
        ctx.log(`domains: round ${r + 1}/${rounds}, ${n} domain(s)`);
        runs.get(n)!.push(await measure(n, windowMs, ctx.log));
      }
    }
    const one = runs.get(1)!;
    const baseP99 = median(one.map(worst));
    const comparisons: Comparison[] = [];
    const notes: string[] = [];
    for (const n of counts) {
      const fs = runs.get(n)!;
      const p99 = median(fs.map(worst));
      notes.push(
        `${n} domain(s): pause p50 ${median(fs.map((f) => mid(f, 'pauseP50'))).toFixed(2)} ms, p99 (median domain) ${median(fs.map((f) => mid(f, 'pauseP99'))).toFixed(2)} ms, p99 (worst domain) ${p99.toFixed(2)} ms; ` +
          `epochs/s per domain ${median(fs.map((f) => mid(f, 'epochsPerSec'))).toFixed(1)} (of ${(1000 / INTERVAL_MS).toFixed(0)} the timer asks for); ` +
          `host ${median(fs.map((f) => f.hostCores)).toFixed(2)} of ${cpus().length} cores busy (primary ${median(fs.map((f) => f.primaryCores)).toFixed(2)}, secondary ${median(fs.map((f) => f.secondaryCores)).toFixed(2)}, the rest redis-benchmark and the host)`,
      );
      if (n === 1) continue;
      comparisons.push({
        subject: `${n} domains`,
        baseline: '1 domain',
        label: `pause p99 of the worst of ${n} domains ${p99.toFixed(2)} ms vs 1 domain ${baseP99.toFixed(2)} ms (${(p99 / baseP99).toFixed(2)}x); ratio = 1-domain p99 / ${n}-domain p99`,
        ratio: baseP99 / p99,
        pairedRatio: median(fs.map((f, i) => worst(one[i]) / worst(f))),
        target: n === 8 ? { min: 1 / TARGET_P99, text: `p99 <= ${TARGET_P99}x the single-domain p99`, pass: p99 <= TARGET_P99 * baseP99 } : undefined,
      });
    }
    notes.push(`medians over ${rounds} round(s) of a ${windowMs / 1000} s window under load; every domain's own redis-benchmark (-c 20 SET) runs on this host beside both nodes`);
    return {
      name: 'domains',
      title: 'Many domains per controller (real processes, one monitor)',
      params: { rounds, windowMs, intervalMs: INTERVAL_MS, memoryMib: MEMORY_MIB, clients: 20 },
      cases: [],
      comparisons,
      notes,
      elapsedMs: performance.now() - started,
    };
  },
};
