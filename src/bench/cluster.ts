/**
 * Real-process clusters for the benchmarks: a secondary and a primary
 * started as `tandem` processes, and redis-benchmark against their service.
 * The pair talks mutual TLS with certificates of its own, as a deployment
 * does, so the figures include what TLS costs.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { portOf, startNode, waitFor, type Node } from '../demo/run.js';
import { certsInit } from '../transport/certs.js';

export interface RedisFigures {
  rps: number;
  p50ms: number;
  /** From redis-benchmark's CSV report. */
  p99ms: number;
}

/** One redis-benchmark run (-c 20; `pipeline` requests per client in flight, -P) of `test` against the service on `port`. */
export async function redisBenchmark(port: number, test: 'set' | 'get', n: number, pipeline = 1): Promise<RedisFigures> {
  const out = await new Promise<string>((resolve, reject) => {
    const b = spawn('redis-benchmark', ['-p', String(port), '-t', test, '-n', String(n), '-c', '20', '-P', String(pipeline), '--csv'], { stdio: ['ignore', 'pipe', 'ignore'] });
    let text = '';
    b.stdout.on('data', (d: Buffer) => (text += d.toString()));
    b.on('error', reject);
    b.on('close', (code) => (code === 0 ? resolve(text) : reject(new Error(`redis-benchmark exited ${code}`))));
  });
  return readCsv(out);
}

/**
 * redis-benchmark 7's --csv: a header line, then
 * "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms".
 */
export function readCsv(out: string): RedisFigures {
  const lines = out.split(/\r?\n/).filter((l) => l.startsWith('"'));
  const header = lines[0]?.split(',').map((c) => c.replaceAll('"', ''));
  const row = lines[1]?.split(',').map((c) => c.replaceAll('"', ''));
  const at = (name: string): number => {
    const i = header?.indexOf(name) ?? -1;
    const v = i < 0 || row === undefined ? Number.NaN : Number(row[i]);
    if (!Number.isFinite(v)) throw new Error(`cannot read ${name} from redis-benchmark's output: ${JSON.stringify(out.slice(0, 300))}`);
    return v;
  };
  return { rps: at('rps'), p50ms: at('p50_latency_ms'), p99ms: at('p99_latency_ms') };
}

export interface ClusterOptions {
  /** primary.policy (Remus): when epochs start. */
  policy?: 'output' | 'timer';
  /** primary.min_interval_ms (default 1). */
  minIntervalMs?: number;
  /** Guest RAM, MiB (default 64); `default`: the configuration's default, what a user runs without a domain section. */
  memoryMib?: number | 'default';
}

/** A secondary (unless `none`) and a primary as real processes, protected, serving on an ephemeral port. */
export async function cluster(mode: 'remus' | 'colo' | 'none', intervalMs: number, options: ClusterOptions = {}): Promise<{ port: number; primary: Node; stop: () => Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), 'tandem-bench-'));
  const config = join(dir, 'tandem.yaml');
  const memory = options.memoryMib ?? 64;
  writeFileSync(config, `${memory === 'default' ? '' : `domain:\n  memory_mib: ${memory}\n`}primary:\n  interval_ms: ${intervalMs}\n  min_interval_ms: ${options.minIntervalMs ?? 1}\nsecondary:\n  listen: 127.0.0.1:0\n  service: 127.0.0.1:0\n`);
  const nodes: Node[] = [];
  const args = ['primary', '--config', config, '--mode', mode, '--service', '127.0.0.1:0'];
  if (options.policy !== undefined) args.push('--policy', options.policy);
  if (mode !== 'none') {
    const certs = join(dir, 'tls');
    await certsInit(certs, { nodes: ['primary', 'secondary'], days: 60 });
    args.push('--tls', certs, '--name', 'primary', '--peer', 'secondary');
    const sec = startNode(['secondary', '--config', config, '--mode', mode, '--tls', certs, '--name', 'secondary', '--peer', 'primary'], join(dir, 'secondary.log'));
    nodes.push(sec);
    const l = waitFor(sec, (x) => (typeof x.port === 'number' && /listening/.test(String(x.msg)) ? x.port : undefined), 'secondary');
    const h = waitFor(sec, (x) => portOf(x.heartbeat), 'heartbeat');
    const net = mode === 'colo' ? waitFor(sec, (x) => portOf(x.net), 'COLO net link') : Promise.resolve(0);
    const [sp, hp, np] = await Promise.all([l, h, net]);
    args.push('--secondary', `127.0.0.1:${sp}`, '--heartbeat', `127.0.0.1:${hp}`);
    if (mode === 'colo') args.push('--colo-net', `127.0.0.1:${np}`);
  }
  const pri = startNode(args, join(dir, 'primary.log'));
  nodes.push(pri);
  const service = waitFor(pri, (x) => portOf(x.service), 'service');
  if (mode !== 'none') await waitFor(pri, (x) => (x.state === 'protected' ? true : undefined), 'protection');
  const port = await service;
  return {
    port,
    primary: pri,
    stop: async () => {
      for (const n of nodes) n.child.kill('SIGTERM');
      await Promise.all(nodes.map((n) => n.closed));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
