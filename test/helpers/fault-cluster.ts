/**
 * The pieces of a fault test, on a Topology (./netns.ts): real etcd members
 * in their own namespaces, real `tandem secondary` and `tandem primary`
 * processes in theirs (with `--arbiter etcd://...`), and the client agent
 * (./ns-agent.ts) running the split-brain ledger against both nodes'
 * service addresses.
 *
 * Every configuration file comes from tandemConfig(). Each cluster has its
 * own CA (`tandem certs init`): the nodes' channels run over mutual TLS and
 * etcd (clients and peers) over HTTPS with client certificates, as between
 * real hosts.
 */
import type { ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { ETCD_CERT_NAME, certsInit, tlsPaths } from '../../src/transport/certs.js';
import { onJsonLines, type JsonLine } from '../../src/util/json-lines.js';
import { CLI } from './cli.js';
import { ETCD_BINARY } from './etcd.js';
import { Topology, type NodeName } from './netns.js';
import { startAgent, type Agent, type ArbiterRecord, type EtcdTlsPaths } from './ns-agent.js';
import type { LedgerVerdict } from './split-ledger.js';
import { until } from './wait.js';

export const PORTS = { replication: 7700, heartbeat: 7701, primaryService: 6379, secondaryService: 6380, etcdClient: 2379, etcdPeer: 2380 } as const;
export const PREFIX = '/tandem';

/** Timings a test may shorten (everything else is the shipped default). */
export interface Timings {
  heartbeatIntervalMs: number;
  heartbeatTimeoutMs: number;
  leaseMs: number;
  /** The primary's wait for an ack before it gives its standby up. */
  ackTimeoutMs: number;
  retryMs: number;
  intervalMs: number;
}

export const DEFAULT_TIMINGS: Timings = { heartbeatIntervalMs: 50, heartbeatTimeoutMs: 250, leaseMs: 2000, ackTimeoutMs: 5000, retryMs: 1000, intervalMs: 50 };

export interface NodeConfigInput {
  role: 'primary' | 'secondary';
  topo: Topology;
  /** The guest's name at the arbiter (both nodes of a pair the same). */
  domain: string;
  /** This node's name at the arbiter. */
  name: string;
  timings: Timings;
  memoryMib: number;
  /** The cluster's `tandem certs init` directory (nodes alpha and beta). */
  certs: string;
}

/**
 * The one function that writes a node's configuration. Addresses are the
 * namespaces' own (primary `p`, secondary `s`); etcd's endpoints come with
 * `--arbiter` on the command line, as an operator would give them.
 */
export function tandemConfig(c: NodeConfigInput): Record<string, unknown> {
  const { topo, timings: t } = c;
  const s = topo.ip('s');
  const doc: Record<string, unknown> = {
    log_level: 'info',
    heartbeat: { interval_ms: t.heartbeatIntervalMs, timeout_ms: t.heartbeatTimeoutMs },
    domain: { type: 'sim', memory_mib: c.memoryMib, disk_mib: 1 },
    // etcd is reached over HTTPS with the node's own certificate (the tls section's, by default).
    arbiter: { node: c.name, domain: c.domain, prefix: PREFIX, lease_ms: t.leaseMs, timeout_ms: 500 },
    // Mutual TLS between the hosts: plain TCP's `insecure: true` is refused off loopback.
    tls: { dir: c.certs, name: c.name, peer: c.name === 'alpha' ? 'beta' : 'alpha' },
  };
  if (c.role === 'secondary') {
    doc.secondary = { listen: `${s}:${PORTS.replication}`, heartbeat: `${s}:${PORTS.heartbeat}`, service: `${s}:${PORTS.secondaryService}` };
  } else {
    doc.primary = {
      secondary: `${s}:${PORTS.replication}`,
      heartbeat: `${s}:${PORTS.heartbeat}`,
      service: `${topo.ip('p')}:${PORTS.primaryService}`,
      interval_ms: t.intervalMs,
      ack_timeout_ms: t.ackTimeoutMs,
      retry_ms: t.retryMs,
    };
  }
  return doc;
}

// ---------------------------------------------------------------- processes

export interface NsProcess {
  readonly name: string;
  child: ChildProcess;
  lines: JsonLine[];
  /** The last lines of its log, for a failing test's message. */
  tail: (n?: number) => string;
  waitLine: (pred: (l: JsonLine) => boolean, what: string, timeoutMs?: number) => Promise<JsonLine>;
  /** Exit code (or signal name) once it exited. */
  exit: Promise<number | string>;
  exited: () => boolean;
  signal: (sig: NodeJS.Signals) => void;
}

/** A `tandem` process (or anything logging JSON lines on stderr) in a namespace. */
export function spawnIn(topo: Topology, node: NodeName, name: string, argv: string[]): NsProcess {
  const child = topo.spawn(node, argv);
  const lines: JsonLine[] = [];
  const waiters = new Set<{ pred: (l: JsonLine) => boolean; resolve: (l: JsonLine) => void }>();
  let raw = '';
  child.stderr!.on('data', (d: Buffer) => (raw = (raw + d.toString()).slice(-20_000)));
  child.stdout!.resume();
  onJsonLines(child.stderr!, (l) => {
    lines.push(l);
    for (const w of [...waiters]) if (w.pred(l)) w.resolve(l);
  });
  let done = false;
  const exit = new Promise<number | string>((resolve) => child.once('exit', (code, sig) => resolve(code ?? sig ?? 'unknown'))).then((v) => {
    done = true;
    return v;
  });
  const tail = (n = 25): string => {
    const shown = lines.slice(-n).map((l) => `  ${name} ${String(l.msg)}`);
    // A process that died before its logger existed said why in plain text.
    return shown.length > 0 ? shown.join('\n') : `  ${name} (no JSON lines) ${raw.slice(-2000)}`;
  };
  const waitLine = (pred: (l: JsonLine) => boolean, what: string, timeoutMs = 30_000): Promise<JsonLine> => {
    const seen = lines.find(pred);
    if (seen !== undefined) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const w = {
        pred,
        resolve: (l: JsonLine) => {
          clearTimeout(timer);
          waiters.delete(w);
          resolve(l);
        },
      };
      const timer = setTimeout(() => {
        waiters.delete(w);
        reject(new Error(`${name}: timed out after ${timeoutMs} ms waiting for ${what}\n${tail()}`));
      }, timeoutMs);
      waiters.add(w);
      void exit.then((code) =>
        setTimeout(() => {
          if (!waiters.has(w)) return;
          waiters.delete(w);
          clearTimeout(timer);
          reject(new Error(`${name} exited (${code}) while waiting for ${what}\n${tail()}`));
        }, 50),
      );
    });
  };
  return {
    name,
    child,
    lines,
    tail,
    waitLine,
    exit,
    exited: () => done,
    signal: (sig) => {
      if (!done && child.pid !== undefined) process.kill(child.pid, sig);
    },
  };
}

export const msg = (re: RegExp) => (l: JsonLine): boolean => re.test(String(l.msg));

// ---------------------------------------------------------------- etcd

export interface NsEtcd {
  members: NodeName[];
  endpoints: { host: string; port: number }[];
  /** The agent's client certificate for etcd. */
  client: EtcdTlsPaths;
  url: string;
  procs: (NsProcess | undefined)[];
  kill(i: number): Promise<void>;
  start(i: number): void;
}

function startEtcdIn(topo: Topology, members: NodeName[], certs: string): NsEtcd {
  const url = (node: NodeName, port: number): string => `https://${topo.ip(node)}:${port}`;
  // Clients and peers alike: HTTPS with certificates of the cluster's CA (etcd.crt names every member's address).
  const etcdFiles = tlsPaths(certs, ETCD_CERT_NAME);
  const tlsFlags = ['--cert-file', etcdFiles.cert, '--key-file', etcdFiles.key, '--trusted-ca-file', etcdFiles.ca, '--client-cert-auth'];
  const peerFlags = ['--peer-cert-file', etcdFiles.cert, '--peer-key-file', etcdFiles.key, '--peer-trusted-ca-file', etcdFiles.ca, '--peer-client-cert-auth'];
  const initialCluster = members.map((m) => `${m}=${url(m, PORTS.etcdPeer)}`).join(',');
  const procs: (NsProcess | undefined)[] = members.map(() => undefined);
  const launch = (i: number): void => {
    const m = members[i];
    // Timings as test/helpers/etcd.ts's: elections in about half a second, leases of one second and up.
    procs[i] = spawnIn(topo, m, `etcd-${m}`, [
      ETCD_BINARY,
      '--name', m,
      '--data-dir', join(topo.dir, `etcd-${m}`),
      '--listen-client-urls', url(m, PORTS.etcdClient),
      '--advertise-client-urls', url(m, PORTS.etcdClient),
      '--listen-peer-urls', url(m, PORTS.etcdPeer),
      '--initial-advertise-peer-urls', url(m, PORTS.etcdPeer),
      '--initial-cluster', initialCluster,
      '--initial-cluster-state', 'new',
      '--initial-cluster-token', topo.id,
      '--heartbeat-interval', '50',
      '--election-timeout', '500',
      '--log-level', 'warn',
      ...tlsFlags,
      ...peerFlags,
    ]);
  };
  members.forEach((_, i) => launch(i));
  return {
    members,
    endpoints: members.map((m) => ({ host: topo.ip(m), port: PORTS.etcdClient })),
    client: tlsPaths(certs, 'agent'),
    url: `etcd://${members.map((m) => `${topo.ip(m)}:${PORTS.etcdClient}`).join(',')}`,
    procs,
    async kill(i) {
      const p = procs[i];
      procs[i] = undefined;
      if (p === undefined || p.exited()) return;
      p.signal('SIGKILL');
      await p.exit;
    },
    start(i) {
      if (procs[i] === undefined) launch(i);
    },
  };
}

// ---------------------------------------------------------------- the cluster

export interface ClusterOptions {
  /** etcd members: 1, or 3 for a test that needs a majority of etcd. */
  etcdMembers?: 1 | 3;
}

export interface PairOptions {
  timings?: Partial<Timings>;
  memoryMib?: number;
  /** Counters the ledger keeps (one client each). */
  keys?: number;
  /** Start the ledger once protected (default true). */
  ledger?: boolean;
  requestTimeoutMs?: number;
  slackMs?: number;
  hopMs?: number;
  thinkMs?: number;
  /** Extra arguments to the primary (e.g. to point it elsewhere). */
  primaryArgs?: string[];
  /** Wait for the primary to be protected (default true). */
  waitProtected?: boolean;
  /** Changes a node's configuration document (snake_case keys) before it is written. */
  amend?: (role: 'primary' | 'secondary', doc: Record<string, unknown>) => void;
}

export class FaultCluster {
  readonly topo: Topology;
  readonly etcd: NsEtcd;
  readonly agent: Agent;
  private pairs = 0;

  private constructor(
    topo: Topology,
    etcd: NsEtcd,
    agent: Agent,
    readonly certs: string,
  ) {
    this.topo = topo;
    this.etcd = etcd;
    this.agent = agent;
  }

  /** Namespaces p, s, e0 (e1, e2), c; etcd up with a leader; the agent in c. */
  static async create(options: ClusterOptions = {}): Promise<FaultCluster> {
    const etcdNodes = options.etcdMembers === 3 ? ['e0', 'e1', 'e2'] : ['e0'];
    const topo = Topology.create({ nodes: ['p', 's', ...etcdNodes, 'c'] });
    try {
      const agent = startAgent(topo, 'c');
      // One CA per cluster: the nodes' channels, etcd's HTTPS (server, peers) and the agent's reads of it.
      const certs = join(topo.dir, 'tls');
      await certsInit(certs, { nodes: ['alpha', 'beta', 'agent'], days: 2, etcd: etcdNodes.map((n) => topo.ip(n)) });
      const etcd = startEtcdIn(topo, etcdNodes, certs);
      await until(
        async () => {
          const dead = etcd.procs.find((p) => p?.exited());
          if (dead !== undefined) throw new Error(`etcd exited at start (Debian's etcd-server installed?):\n${dead.tail()}`);
          return agent.arbiter(etcd.endpoints, etcd.client, 'health').then(
            () => true,
            () => false,
          );
        },
        'etcd to elect a leader',
        30_000,
        100,
      );
      return new FaultCluster(topo, etcd, agent, certs);
    } catch (err) {
      topo.cleanup();
      throw err;
    }
  }

  /** The arbiter's record of a domain, read through the agent. */
  arbiter(domain: string): Promise<{ owner: ArbiterRecord | null; last: ArbiterRecord | null }> {
    return this.agent.arbiter(this.etcd.endpoints, this.etcd.client, domain, PREFIX);
  }

  /**
   * A fresh pair on a domain name of its own: the secondary, then the
   * primary; protected, recorded protected at the arbiter, and (unless told
   * otherwise) a ledger writing through it.
   */
  async startPair(options: PairOptions = {}): Promise<Pair> {
    const n = ++this.pairs;
    const domain = `vm${n}`;
    const timings = { ...DEFAULT_TIMINGS, ...options.timings };
    const memoryMib = options.memoryMib ?? 8;
    const file = (role: 'primary' | 'secondary'): string => {
      const f = join(this.topo.dir, `pair${n}-${role}.yaml`);
      const doc = tandemConfig({ role, topo: this.topo, domain, name: role === 'primary' ? 'alpha' : 'beta', timings, memoryMib, certs: this.certs });
      options.amend?.(role, doc);
      writeFileSync(f, stringify(doc));
      return f;
    };
    const pair = new Pair(this, n, domain, timings, file('primary'), file('secondary'));
    await pair.startSecondary().waitLine(msg(/^secondary listening/), 'the secondary to listen');
    pair.startPrimary(options.primaryArgs);
    if (options.waitProtected !== false) await pair.waitProtected(1);
    if (options.ledger !== false) await pair.startLedger(options);
    return pair;
  }

  cleanup(): void {
    this.agent.stop();
    this.topo.cleanup();
  }
}

export class Pair {
  secondary!: NsProcess;
  primary!: NsProcess;
  /** Every primary process this pair ran (a restart adds one). */
  readonly primaries: NsProcess[] = [];
  readonly secondaries: NsProcess[] = [];

  constructor(
    readonly cluster: FaultCluster,
    readonly n: number,
    readonly domain: string,
    readonly timings: Timings,
    readonly primaryConfig: string,
    readonly secondaryConfig: string,
  ) {}

  get topo(): Topology {
    return this.cluster.topo;
  }

  get agent(): Agent {
    return this.cluster.agent;
  }

  /** Starts a secondary process (again, for a restart: a fresh, empty replica) in s. */
  startSecondary(): NsProcess {
    const p = spawnIn(this.topo, 's', `secondary#${this.secondaries.length + 1}`, [process.execPath, CLI, 'secondary', '--config', this.secondaryConfig, '--arbiter', this.cluster.etcd.url]);
    this.secondaries.push(p);
    this.secondary = p;
    return p;
  }

  /** Starts a primary process (again, for a restart) in p. */
  startPrimary(extra: string[] = []): NsProcess {
    const p = spawnIn(this.topo, 'p', `primary#${this.primaries.length + 1}`, [process.execPath, CLI, 'primary', '--config', this.primaryConfig, '--arbiter', this.cluster.etcd.url, ...extra]);
    this.primaries.push(p);
    this.primary = p;
    return p;
  }

  /** The primary serves protected, and the arbiter records it protected at `generation` (or any, if undefined). */
  async waitProtected(generation: number | undefined, timeoutMs = 30_000): Promise<void> {
    await this.primary.waitLine((l) => l.state === 'protected', 'protection', timeoutMs);
    await until(
      async () => {
        const r = await this.arbiter();
        return r.owner !== null && r.owner.node === 'alpha' && r.owner.protected && (generation === undefined || r.owner.generation === generation);
      },
      `the arbiter to record alpha protected${generation === undefined ? '' : ` at generation ${generation}`}`,
      timeoutMs,
      50,
    ).catch(async (err: unknown) => {
      throw new Error(`${(err as Error).message}: ${JSON.stringify(await this.arbiter().catch(() => null))}\n${this.logs()}`, { cause: err });
    });
  }

  /** The ledger, against both nodes' service addresses, with keys of this pair's own. */
  async startLedger(options: PairOptions = {}): Promise<void> {
    const { topo } = this;
    await this.agent.startLedger({
      targets: [
        { node: 'p', host: topo.ip('p'), port: PORTS.primaryService },
        { node: 's', host: topo.ip('s'), port: PORTS.secondaryService },
      ],
      keys: options.keys ?? 8,
      prefix: `pair${this.n}`,
      requestTimeoutMs: options.requestTimeoutMs ?? 1000,
      slackMs: options.slackMs ?? 1000,
      hopMs: options.hopMs ?? 500,
      thinkMs: options.thinkMs ?? 10,
    });
    await this.waitAcks(20);
  }

  /** Until the ledger has `more` acknowledgements beyond what it has now. */
  async waitAcks(more: number, timeoutMs = 15_000): Promise<void> {
    const base = (await this.agent.ledgerStatus()).acked;
    await until(async () => (await this.agent.ledgerStatus()).acked >= base + more, `${more} more acknowledged writes`, timeoutMs, 50).catch(async (err: unknown) => {
      throw new Error(`${(err as Error).message}: ${JSON.stringify(await this.agent.ledgerStatus())}\n${this.logs()}`, { cause: err });
    });
  }

  arbiter(): Promise<{ owner: ArbiterRecord | null; last: ArbiterRecord | null }> {
    return this.cluster.arbiter(this.domain);
  }

  failedOver(): boolean {
    return this.secondary.lines.some(msg(/^FAILED OVER/));
  }

  /** Both nodes' last log lines and the bridge's drop rules: what a failing assertion should show. */
  logs(n = 25): string {
    return [...this.primaries.map((p) => p.tail(n)), ...this.secondaries.map((p) => p.tail(n)), `  network drops: ${this.topo.describeRules()}`].join('\n');
  }

  /** Kills both nodes (SIGKILL: the next pair uses another domain name, so nothing of this one matters any more). */
  async kill(): Promise<void> {
    for (const p of [...this.primaries, ...this.secondaries]) {
      if (p.exited()) continue;
      p.signal('SIGKILL');
      await p.exit;
    }
  }
}

/** The ledger's promise, asserted: no split brain, nothing acknowledged lost, exactly one node answering. */
export function ledgerProblems(v: LedgerVerdict): string[] {
  const problems: string[] = [];
  for (const a of v.anomalies) problems.push(`${a.kind}: ${a.detail}`);
  if (v.lostAckedWrites > 0) problems.push(`${v.lostAckedWrites} acknowledged increments lost: acked ${JSON.stringify(v.maxAcked)}, survivor ${JSON.stringify(v.values)}`);
  if (v.answered.length === 0) problems.push('no node answered the final read');
  return problems;
}

/**
 * Stops the ledger and asserts its verdict: no split brain, nothing
 * acknowledged lost, and (when given) exactly `survivor` answering the
 * final read. Returns the verdict for further checks.
 */
export async function assertLedger(pair: Pair, survivor?: 'p' | 's'): Promise<LedgerVerdict> {
  const v = await pair.agent.verifyLedger();
  const problems = ledgerProblems(v);
  if (survivor !== undefined && (v.answered.length !== 1 || v.answered[0] !== survivor)) problems.push(`expected only ${survivor} to answer the final read, answered: ${v.answered.join(', ') || 'nobody'}`);
  if (v.acked < 50) problems.push(`only ${v.acked} acknowledged writes: too little load to prove anything`);
  if (problems.length > 0) throw new Error(`ledger: ${problems.join('; ')}\n${JSON.stringify({ ...v, values: undefined, maxAcked: undefined })}\n${pair.logs()}`);
  return v;
}

/** The time (ms since the epoch, the processes' log clock) of the first line of `proc` matching, or undefined. */
export function lineTime(proc: NsProcess, re: RegExp): number | undefined {
  const l = proc.lines.find(msg(re));
  return l === undefined ? undefined : Number(l.time);
}

/** Waits for `pred`, failing with both nodes' logs. */
export async function waitFor(pair: Pair, pred: () => boolean | Promise<boolean>, what: string, timeoutMs: number): Promise<void> {
  try {
    await until(pred, what, timeoutMs, 25);
  } catch (err) {
    throw new Error(`${(err as Error).message}\n${pair.logs()}`, { cause: err });
  }
}
