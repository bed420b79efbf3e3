/**
 * `tandem demo`: the whole system on one machine. A secondary and a primary
 * (real `tandem` processes, so the primary can really be killed), the
 * moving service address in front of them, a client ledger (and optionally
 * redis-benchmark) as load, and a summary at the end.
 *
 * Everything it starts ends with it: aborted (`signal`: the command's
 * SIGINT, SIGTERM or SIGHUP), it stops the load, the nodes and etcd before
 * it rejects; and every process it starts is on a lifeline
 * (src/util/lifeline.ts), which ends them should the demo die without
 * stopping them (SIGKILL).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdtempSync, rmSync, writeFileSync, type WriteStream } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { ArbiterError, ArbiterErrorCodes } from '../arbiter/errors.js';
import { ETCD_BINARY, freePort, startEtcd } from '../arbiter/local-etcd.js';
import { CA_KEY_FILE, certsInit } from '../transport/certs.js';
import { formatAddress, type Address } from '../util/address.js';
import { onJsonLines } from '../util/json-lines.js';
import { Lifeline } from '../util/lifeline.js';
import { demoMonitorFlag, demoMonitors, monitorUrlOf } from '../monitor/wire.js';
import { Ledger } from './ledger.js';
import { ServiceIp } from './service-ip.js';

const CLI = fileURLToPath(new URL('../cli/main.js', import.meta.url));
/** Past the nodes' warning for certificates about to expire. */
const DEMO_CERT_DAYS = 60;

export interface DemoOptions {
  service: Address;
  mode: 'remus' | 'colo' | 'none';
  load: 'none' | 'benchmark';
  durationS: number;
  killPrimaryAfterS: number | undefined;
  memoryMib: number;
  intervalMs: number;
  /** Dashboards: the primary's here, the secondary's on the next port. */
  monitor?: Address;
  /** Certificates for the channels between the nodes; without, the demo makes its own in its directory. */
  tls?: DemoTls;
  /**
   * Who may serve (docs/failover.md, "The arbiter"): none, each node decides
   * alone (the default); etcd, a local etcd the demo starts and stops; or
   * the client addresses of an etcd the caller runs (each run takes a domain
   * of its own there, so runs can share it).
   */
  arbiter?: DemoArbiter;
  /** Progress lines for a person (stderr when --json). */
  say: (line: string) => void;
  /** Aborted, the demo stops everything it started and rejects with the signal's reason. */
  signal?: AbortSignal;
}

export type DemoArbiter = 'none' | 'etcd' | { etcd: Address[] };

/** A `tandem certs init` directory and the names the primary and the secondary run as. */
export interface DemoTls {
  dir: string;
  primary: string;
  secondary: string;
}

export interface DemoSummary {
  mode: string;
  service: string;
  arbiter: 'none' | 'etcd';
  /** The generation the arbiter recorded the primary protected at (null without an arbiter). */
  primary_generation: number | null;
  /** The generation the survivor took the domain at (null without an arbiter, or no failover). */
  survivor_generation: number | null;
  epochs: number;
  acked_writes: number;
  lost_acked_writes: number;
  failover_ms: number | null;
  failed_over: boolean;
  longest_reply_gap_ms: number;
  client_errors: number;
  logs: string;
}

export interface Node {
  child: ChildProcess;
  lines: (fn: (line: Record<string, unknown>) => void) => void;
  closed: Promise<void>;
}

/** Starts a tandem process, teeing its JSON log lines to a file and to listeners. */
export function startNode(args: string[], logFile: string): Node {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  const out: WriteStream = createWriteStream(logFile);
  const listeners: ((line: Record<string, unknown>) => void)[] = [];
  // Every byte goes to the log file, including a one-line error that is not a log line.
  child.stderr.on('data', (d: Buffer) => out.write(d));
  onJsonLines(child.stderr, (line) => {
    for (const l of listeners) l(line);
  });
  const closed = new Promise<void>((resolve) => child.once('close', () => resolve()));
  void closed.then(() => out.end());
  return { child, lines: (fn) => listeners.push(fn), closed };
}

export function waitFor<T>(node: Node, pick: (line: Record<string, unknown>) => T | undefined, what: string, timeoutMs = 60_000): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`demo: timed out waiting for ${what}`)), timeoutMs);
    timer.unref(); // a wait that is over must not keep the process alive
    node.lines((line) => {
      const v = pick(line);
      if (v !== undefined) {
        clearTimeout(timer);
        resolve(v);
      }
    });
    void node.closed.then(() => reject(new Error(`demo: a tandem process exited while waiting for ${what}`)));
  });
}

export const portOf = (text: unknown): number | undefined => {
  const m = typeof text === 'string' ? /:(\d+)$/.exec(text) : null;
  return m ? Number(m[1]) : undefined;
};

/** The etcd the demo's nodes are given, and how to let it go. */
interface DemoEtcd {
  endpoints: Address[];
  /** Its processes, when the demo started it. */
  children: ChildProcess[];
  /** For the demo's output. */
  where: string;
  stop: () => Promise<void>;
}

/** Starts the demo's own etcd, or takes the caller's; undefined without an arbiter. */
async function demoEtcd(choice: DemoArbiter): Promise<DemoEtcd | undefined> {
  if (choice === 'none') return undefined;
  if (choice !== 'etcd') return { endpoints: choice.etcd, children: [], where: `etcd at ${choice.etcd.map(formatAddress).join(',')}`, stop: () => Promise.resolve() };
  try {
    const cluster = await startEtcd(1);
    const children = cluster.members.flatMap((m) => (m.child === undefined ? [] : [m.child]));
    return { endpoints: cluster.endpoints, children, where: `etcd at ${formatAddress(cluster.endpoints[0])} (started for this demo)`, stop: () => cluster.stop() };
  } catch (err) {
    throw new ArbiterError(ArbiterErrorCodes.ARBITER_UNREACHABLE, `demo --arbiter etcd: could not start a local etcd (${ETCD_BINARY}, Debian's etcd-server): ${(err as Error).message}`, { cause: err });
  }
}

/** The primary's line once the record says its replica may take over at once, and the survivor's once it took the domain. */
const HOLDS = /^arbiter: protected at generation/;
const TOOK = /^arbiter: this node took the domain/;

export async function runDemo(o: DemoOptions): Promise<DemoSummary> {
  const arbiter = o.arbiter ?? 'none';
  // Nothing for an arbiter to decide between: the guest runs alone.
  if (arbiter !== 'none' && o.mode === 'none') throw new ArbiterError(ArbiterErrorCodes.ARBITER_BAD_OPTIONS, 'demo: an arbiter decides between a primary and its standby; mode none has no standby');
  o.signal?.throwIfAborted();
  const lifeline = new Lifeline();
  await lifeline.start();
  try {
    // First, so a refused etcd leaves nothing behind. Not cut short by the signal: its processes are known (and
    // go on the lifeline) only once it is up; a demo killed while etcd starts leaves it running.
    const etcd = await demoEtcd(arbiter);
    for (const c of etcd?.children ?? []) lifeline.watch(c);
    try {
      o.signal?.throwIfAborted();
      return await runNodes(o, etcd, lifeline);
    } finally {
      // After the nodes (runNodes stops them): they release the domain on the way out.
      await etcd?.stop();
    }
  } finally {
    lifeline.stop();
  }
}

/** `p`, or the abort's reason as soon as `signal` is aborted; a rejection of `p` left behind is not unhandled. */
function unlessAborted<T>(p: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (signal === undefined) return p;
  p.catch(() => undefined);
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason as Error);
    if (signal.aborted) return onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

/** The nodes, the service address and the load, with `etcd` as their arbiter when given. */
async function runNodes(o: DemoOptions, etcd: DemoEtcd | undefined, lifeline: Lifeline): Promise<DemoSummary> {
  const until = <T>(p: Promise<T>): Promise<T> => unlessAborted(p, o.signal);
  const pause = (ms: number): Promise<void> => sleep(ms, undefined, { signal: o.signal });
  const dir = mkdtempSync(join(tmpdir(), 'tandem-demo-'));
  const config = join(dir, 'tandem.yaml');
  const yaml = [
    `domain:\n  memory_mib: ${o.memoryMib}`,
    `primary:\n  interval_ms: ${o.intervalMs}\n  retry_ms: 200`,
    `secondary:\n  listen: 127.0.0.1:0\n  service: 127.0.0.1:0`,
  ];
  // A domain of this run's own: runs sharing an etcd never meet each other's record.
  if (etcd !== undefined) yaml.push(`arbiter:\n  domain: demo-${basename(dir).slice('tandem-demo-'.length)}`);
  writeFileSync(config, `${yaml.join('\n')}\n`);
  // The demo's channels are mutual TLS like any deployment's, with a throwaway CA of its own (docs/security.md).
  const tls = o.tls ?? { dir: join(dir, 'tls'), primary: 'primary', secondary: 'secondary' };
  if (o.tls === undefined && o.mode !== 'none') {
    await certsInit(tls.dir, { nodes: [tls.primary, tls.secondary], days: DEMO_CERT_DAYS });
    // Nothing more is ever signed with it; a CA key next to the nodes' files is what a node warns about.
    rmSync(join(tls.dir, CA_KEY_FILE));
  }
  const tlsFlags = (name: string, peer: string): string[] => ['--tls', tls.dir, '--name', name, '--peer', peer];
  const nodes: Node[] = [];
  const serviceIp = new ServiceIp(o.service);
  let ledger: Ledger | undefined;
  let bench: ChildProcess | undefined;
  const dashboards: (Promise<string> | undefined)[] = [];
  const failed = (err: Error): string => `unavailable: ${err.message}`;
  try {
    const arbiterFlags = etcd === undefined ? [] : ['--arbiter', `etcd://${etcd.endpoints.map(formatAddress).join(',')}`];
    const monitors = o.monitor === undefined ? undefined : await demoMonitors(o.monitor, freePort);
    let secondary: Node | undefined;
    let secondaryPort = 0;
    let heartbeatPort = 0;
    let netPort = 0;
    const protect = o.mode !== 'none';
    if (protect) {
      secondary = startNode(['secondary', '--config', config, '--mode', o.mode, ...tlsFlags(tls.secondary, tls.primary), ...arbiterFlags, ...demoMonitorFlag(monitors, 'secondary')], join(dir, 'secondary.log'));
      nodes.push(secondary);
      lifeline.watch(secondary.child);
      dashboards.push(o.monitor && waitFor(secondary, monitorUrlOf, "the secondary's monitor").then((u) => `${u} (secondary: it survives a failover)`, failed));
      // Both listeners first: the lines may come in either order.
      const listening = waitFor(secondary, (l) => (typeof l.port === 'number' && /listening/.test(String(l.msg)) ? l.port : undefined), 'the secondary to listen');
      const beating = waitFor(secondary, (l) => portOf(l.heartbeat), "the secondary's heartbeat channel");
      const net = o.mode === 'colo' ? waitFor(secondary, (l) => portOf(l.net), "the secondary's COLO net link") : Promise.resolve(0);
      [secondaryPort, heartbeatPort, netPort] = await until(Promise.all([listening, beating, net]));
    }
    const primaryArgs = ['primary', '--config', config, '--mode', o.mode, '--service', '127.0.0.1:0', '--log-level', 'debug', ...demoMonitorFlag(monitors, 'primary')];
    if (protect) primaryArgs.push(...tlsFlags(tls.primary, tls.secondary), ...arbiterFlags, '--secondary', `127.0.0.1:${secondaryPort}`, '--heartbeat', `127.0.0.1:${heartbeatPort}`);
    if (o.mode === 'colo') primaryArgs.push('--colo-net', `127.0.0.1:${netPort}`);
    const primary = startNode(primaryArgs, join(dir, 'primary.log'));
    nodes.push(primary);
    lifeline.watch(primary.child);
    dashboards.unshift(o.monitor && waitFor(primary, monitorUrlOf, "the primary's monitor").then((u) => `${u} (primary)`, failed));
    let epochs = 0;
    primary.lines((l) => {
      if (l.msg === 'epoch' && typeof l.epoch === 'number') epochs = Math.max(epochs, l.epoch);
    });
    // All three at once: the lines may come in any order.
    const [guestPort, , primaryGeneration] = await until(Promise.all([
      waitFor(primary, (l) => portOf(l.service), "the guest's service"),
      protect ? waitFor(primary, (l) => (l.state === 'protected' ? true : undefined), 'protection') : undefined,
      // Only then may the secondary take over without waiting for the primary's lease to run out.
      etcd === undefined ? null : waitFor(primary, (l) => (HOLDS.test(String(l.msg)) && typeof l.generation === 'number' ? l.generation : undefined), 'the arbiter to record the primary protected'),
    ]));
    serviceIp.moveTo({ host: '127.0.0.1', port: guestPort });
    const bound = await until(serviceIp.start());
    const service = { host: o.service.host, port: bound.port };
    o.say(`service: redis-cli -h ${service.host} -p ${service.port}   (logs: ${dir})`);
    for (const d of dashboards) if (d) o.say(`dashboard: ${await until(d)}`);
    o.say(
      o.mode === 'remus'
        ? `protected: primary checkpoints every ${o.intervalMs} ms to the secondary`
        : o.mode === 'colo'
          ? 'protected (COLO): both replicas run; their replies are compared, a checkpoint is taken when they differ'
          : 'mode none: the guest runs unprotected',
    );
    if (protect) o.say(`channels between the nodes: mutual TLS 1.3 (certificates in ${tls.dir}; the primary is "${tls.primary}", the secondary "${tls.secondary}")`);
    if (etcd !== undefined) o.say(`arbiter: ${etcd.where}; the primary holds the domain at generation ${primaryGeneration}, recorded protected: the secondary may take over at once`);
    else if (protect) o.say('arbiter: none: each node decides alone from heartbeats (--arbiter etcd runs one)');

    let failoverMs: number | null = null;
    let failedOver = false;
    let killedAt = 0;
    let survivorGeneration: number | null = null;
    if (secondary) {
      secondary.lines((l) => {
        // The claim comes before the FAILED OVER line.
        if (TOOK.test(String(l.msg)) && typeof l.generation === 'number') survivorGeneration = l.generation;
        const port = /FAILED OVER/.test(String(l.msg)) ? portOf(l.service) : undefined;
        if (port === undefined) return;
        failedOver = true;
        serviceIp.moveTo({ host: '127.0.0.1', port });
        ledger?.failedOver();
        const moved = survivorGeneration === null ? '' : ` at generation ${survivorGeneration} (the arbiter moved the domain on from ${primaryGeneration})`;
        o.say(`failed over: the secondary serves from epoch ${String(l.epoch)}${moved}; the service address now leads there`);
      });
    }

    ledger = new Ledger(service);
    ledger.start();
    if (o.load === 'benchmark') {
      bench = spawn('redis-benchmark', ['-h', service.host, '-p', String(service.port), '-t', 'set,get,incr', '-l', '-q', '-c', '8', '-r', '10000'], { stdio: 'ignore' });
      bench.on('error', (err) => o.say(`redis-benchmark could not run: ${err.message} (install redis-tools)`));
      lifeline.watch(bench);
    }

    const t0 = performance.now();
    if (o.killPrimaryAfterS !== undefined && protect) {
      await pause(o.killPrimaryAfterS * 1000);
      killedAt = performance.now();
      o.say(`killing the primary (SIGKILL) after ${o.killPrimaryAfterS} s, at epoch ${epochs}`);
      primary.child.kill('SIGKILL');
      const sawReply = ledger.firstSurvivorAck();
      failoverMs = Math.round((await until(Promise.race([sawReply, new Promise<number>((r) => setTimeout(() => r(Number.NaN), 30_000).unref())]))) - killedAt);
      if (Number.isNaN(failoverMs)) failoverMs = null;
    }
    const left = o.durationS * 1000 - (performance.now() - t0);
    if (left > 0) await pause(left);
    ledger.stop();
    bench?.kill('SIGTERM');
    const result = await until(ledger.verify());
    return {
      mode: o.mode,
      service: formatAddress(service),
      arbiter: etcd === undefined ? 'none' : 'etcd',
      primary_generation: primaryGeneration,
      survivor_generation: survivorGeneration,
      epochs,
      acked_writes: result.ackedWrites,
      lost_acked_writes: result.lostAckedWrites,
      failover_ms: failoverMs,
      failed_over: failedOver,
      longest_reply_gap_ms: result.longestGapMs,
      client_errors: result.errors,
      logs: dir,
    };
  } finally {
    ledger?.stop();
    const benchGone = bench === undefined ? Promise.resolve() : exited(bench);
    bench?.kill('SIGKILL');
    await serviceIp.stop();
    for (const n of nodes) n.child.kill('SIGTERM');
    await Promise.all(nodes.map((n) => Promise.race([n.closed, new Promise((r) => setTimeout(r, 3000).unref())])));
    for (const n of nodes) n.child.kill('SIGKILL');
    // Gone, not just told to go: once the demo is over, nothing it started holds a port.
    await Promise.all([benchGone, ...nodes.map((n) => n.closed)]);
  }
}

/** Resolves when `child` has exited (at once if it has, or never started). */
function exited(child: ChildProcess): Promise<void> {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once('exit', () => resolve());
    child.once('error', () => resolve());
  });
}
