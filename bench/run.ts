/**
 * Benchmark runner: `npm run bench` (all benchmarks) or
 * `node dist/bench/run.js [name...] [--quick] [--json] [--rounds N]`.
 *
 * Benchmarks run one after another in one process. Progress goes to stderr;
 * stdout gets a human-readable table, or with --json exactly one JSON object.
 * A missed target is reported as FAIL but does not change the exit status:
 * the runner exits 0 unless a benchmark crashed (1) or the command line is
 * wrong (2).
 *
 * To add a benchmark, export a `Benchmark` (bench/stats.ts) from its own
 * file and list it in BENCHMARKS.
 *
 * The runner re-executes itself with a 64 MiB young generation: at V8's
 * default (1 MiB, growing) the measuring code's own scavenges, about a
 * millisecond each on this machine, landed inside latency samples and were
 * counted against whatever was being measured.
 */
import { spawnSync } from 'node:child_process';
import os from 'node:os';
import { parseArgs } from 'node:util';
import type { BenchResult, Benchmark } from '../src/bench/stats.js';
import { arbiterBench } from './arbiter.js';
import { colo } from './colo.js';
import { compression } from './compression.js';
import { diskSync } from './disk-sync.js';
import { engine } from './engine.js';
import { failover } from './failover.js';
import { monitorBench } from './monitor.js';
import { proxy } from './proxy.js';
import { remusPolicy } from './remus-policy.js';
import { domains } from './domains.js';
import { streamDecode } from './stream-decode.js';
import { tls } from './tls.js';
import { xen } from './xen.js';

/** Every benchmark, in the order `npm run bench` runs them. */
const BENCHMARKS: readonly Benchmark[] = [streamDecode, engine, compression, tls, arbiterBench, diskSync, failover, proxy, colo, remusPolicy, domains, monitorBench, xen];

const USAGE = `usage: node dist/bench/run.js [name...] [--quick] [--json] [--rounds N] [--list]

  name        run only these benchmarks (default: all)
  --quick     smaller inputs and fewer rounds
  --json      print one JSON object on stdout instead of the table
  --rounds N  timed rounds per subject (default: each benchmark's own)
  --list      list the benchmarks and exit

benchmarks:
${BENCHMARKS.map((b) => `  ${b.name.padEnd(16)}${b.description}`).join('\n')}`;

function fail(message: string): never {
  process.stderr.write(`bench: ${message}\n\n${USAGE}\n`);
  process.exit(2);
}

function parse(): { names: string[]; quick: boolean; json: boolean; rounds: number | undefined; list: boolean } {
  let parsed;
  try {
    parsed = parseArgs({
      allowPositionals: true,
      options: {
        quick: { type: 'boolean', default: false },
        json: { type: 'boolean', default: false },
        rounds: { type: 'string' },
        list: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
    });
  } catch (err) {
    return fail(err instanceof Error ? err.message : String(err));
  }
  const { values, positionals } = parsed;
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    process.exit(0);
  }
  let rounds: number | undefined;
  if (values.rounds !== undefined) {
    rounds = Number(values.rounds);
    if (!Number.isInteger(rounds) || rounds < 1) fail(`--rounds wants a positive integer, got ${values.rounds}`);
  }
  for (const name of positionals) {
    if (!BENCHMARKS.some((b) => b.name === name)) fail(`no benchmark named "${name}"`);
  }
  return { names: positionals, quick: values.quick, json: values.json, rounds, list: values.list };
}

// ---------------------------------------------------------------------------
// Table output
// ---------------------------------------------------------------------------

function table(header: string[], rows: string[][], rightAlign: boolean[]): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]): string => cells.map((c, i) => (rightAlign[i] ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join('  ').trimEnd();
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)];
}

const f1 = (x: number): string => x.toFixed(1);
const f2 = (x: number): string => x.toFixed(2);

function render(r: BenchResult): string[] {
  const out: string[] = [];
  out.push(`== ${r.name}: ${r.title}`);
  out.push(`   ${Object.entries(r.params).filter(([k]) => k !== 'sink').map(([k, v]) => `${k}=${String(v)}`).join(' ')}`);
  out.push('');
  const rows = r.cases.map((c) => [c.label, String(c.rounds), f2(c.ms.p50), f2(c.ms.p99), f2(c.ms.min), f1(c.mbps), f1(c.mbpsP99)]);
  out.push(...table(['case', 'rounds', 'p50 ms', 'p99 ms', 'min ms', 'MB/s (median)', 'MB/s (p99)'], rows, [false, true, true, true, true, true, true]));
  if (r.comparisons.length > 0) {
    out.push('');
    const crow = r.comparisons.map((c) => [
      c.label,
      f2(c.ratio),
      f2(c.pairedRatio),
      c.target?.text ?? '',
      c.target === undefined ? '' : c.target.pass ? 'PASS' : 'FAIL',
    ]);
    out.push(...table(['comparison', 'ratio', 'paired', 'target', 'result'], crow, [false, true, true, false, false]));
  }
  if (r.notes.length > 0) {
    out.push('');
    for (const n of r.notes) out.push(`note: ${n}`);
  }
  out.push(`(${(r.elapsedMs / 1000).toFixed(1)} s)`);
  return out;
}

// ---------------------------------------------------------------------------

async function main(): Promise<void> {
  const args = parse();
  if (args.list) {
    for (const b of BENCHMARKS) process.stdout.write(`${b.name}\t${b.description}\n`);
    return;
  }
  const selected = args.names.length === 0 ? BENCHMARKS : BENCHMARKS.filter((b) => args.names.includes(b.name));
  const log = (line: string): void => void process.stderr.write(`${line}\n`);
  const startedAt = new Date();
  const results: BenchResult[] = [];
  for (const bench of selected) {
    results.push(await bench.run({ quick: args.quick, rounds: args.rounds, log }));
    if (!args.json) process.stdout.write(`${render(results[results.length - 1]).join('\n')}\n\n`);
  }
  const targets = results.flatMap((r) => r.comparisons.flatMap((c) => (c.target === undefined ? [] : [c.target.pass])));
  const passed = targets.filter(Boolean).length;
  if (args.json) {
    const doc = {
      tool: 'tandem-bench',
      startedAt: startedAt.toISOString(),
      node: process.version,
      platform: `${os.platform()} ${os.arch()}`,
      cpus: os.cpus().length,
      cpuModel: os.cpus()[0]?.model ?? 'unknown',
      quick: args.quick,
      targets: { passed, failed: targets.length - passed },
      benchmarks: results,
    };
    process.stdout.write(`${JSON.stringify(doc)}\n`);
  } else {
    process.stdout.write(`targets: ${passed} of ${targets.length} met${targets.length > passed ? ' (a missed target does not fail the run)' : ''}\n`);
  }
}

const YOUNG_GENERATION_MIB = 64;

if (!process.execArgv.some((a) => a.startsWith('--max-semi-space-size'))) {
  const flags = [`--min-semi-space-size=${YOUNG_GENERATION_MIB}`, `--max-semi-space-size=${YOUNG_GENERATION_MIB}`];
  const r = spawnSync(process.execPath, [...flags, ...process.execArgv, process.argv[1], ...process.argv.slice(2)], { stdio: 'inherit' });
  process.exit(r.status ?? 1);
}

main().catch((err: unknown) => {
  process.stderr.write(`bench: crashed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
