/**
 * A helper process inside a network namespace (the client's), and the test's
 * handle on it. A test process lives in the host's namespace and cannot open
 * a socket in another; this agent does it for it: the split-brain ledger
 * (./split-ledger.ts), one-off RESP commands, reads of the arbiter's record
 * in etcd, and connections that squat on a port. Requests and answers are
 * JSON lines on its stdin and stdout.
 *
 * The file is both: imported, it gives startAgent(); run with the
 * AGENT_FLAG argument (as `ip netns exec NS node ns-agent.js AGENT_FLAG`),
 * it serves. The test runner also loads every file under dist/test as a
 * test file; without the flag nothing happens then. The agent exits when its
 * stdin closes, so it never outlives the test that started it.
 */
import type { ChildProcess } from 'node:child_process';
import { connect, type Socket } from 'node:net';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { readFileSync } from 'node:fs';
import { EtcdClient } from '../../src/arbiter/etcd.js';
import type { Topology, NodeName } from './netns.js';
import { SplitLedger, command, type LedgerStatus, type LedgerVerdict, type RespValue, type SplitLedgerOptions } from './split-ledger.js';

const AGENT_FLAG = '--tandem-ns-agent';
const AGENT_FILE = fileURLToPath(import.meta.url);

/** PEM files of a client of the cluster's etcd (HTTPS with a client certificate). */
export interface EtcdTlsPaths {
  ca: string;
  cert: string;
  key: string;
}

export interface ArbiterRecord {
  node: string;
  generation: number;
  protected: boolean;
}

export interface SquatOptions {
  host: string;
  port: number;
  /** Idle connections (send nothing). */
  idle: number;
  /** Connections that send one byte a second (never a whole prelude). */
  drip: number;
  /** Open a new connection whenever one is closed (a persistent squatter). */
  reconnect: boolean;
}

export interface SquatReport {
  opened: number;
  /** Closed by the server (or failed): each was a slot it took back. */
  closedByServer: number;
  /** Longest a connection stayed open, ms. */
  longestHeldMs: number;
}

type Request =
  | { op: 'ledger-start'; options: Omit<SplitLedgerOptions, 'now'> }
  | { op: 'ledger-mark' }
  | { op: 'ledger-status' }
  | { op: 'ledger-verify'; timeoutMs: number }
  | { op: 'command'; host: string; port: number; args: string[]; timeoutMs: number }
  | { op: 'arbiter'; endpoints: { host: string; port: number }[]; prefix: string; domain: string; tls: EtcdTlsPaths }
  | { op: 'squat'; options: SquatOptions }
  | { op: 'squat-stop' };

// ---------------------------------------------------------------- agent side

class Squatter {
  /** Open connections and when each opened. */
  private readonly sockets = new Map<Socket, number>();
  private stopped = false;
  readonly report: SquatReport = { opened: 0, closedByServer: 0, longestHeldMs: 0 };

  constructor(private readonly o: SquatOptions) {
    for (let i = 0; i < o.idle; i++) this.open(false);
    for (let i = 0; i < o.drip; i++) this.open(true);
  }

  private open(drip: boolean): void {
    if (this.stopped) return;
    const s = connect({ host: this.o.host, port: this.o.port });
    const opened = performance.now();
    this.report.opened++;
    this.sockets.set(s, opened);
    let timer: NodeJS.Timeout | undefined;
    if (drip) {
      // One byte a second, of something that is not a prelude's end: never enough to be judged.
      timer = setInterval(() => s.write('T'), 1000);
    }
    s.on('error', () => {});
    s.on('close', () => {
      clearInterval(timer);
      this.sockets.delete(s);
      this.report.longestHeldMs = Math.max(this.report.longestHeldMs, Math.round(performance.now() - opened));
      if (this.stopped) return;
      this.report.closedByServer++;
      if (this.o.reconnect) setTimeout(() => this.open(drip), 20);
    });
  }

  stop(): SquatReport {
    this.stopped = true;
    // Still open now counts too: held since it opened.
    const now = performance.now();
    for (const [s, opened] of this.sockets) {
      this.report.longestHeldMs = Math.max(this.report.longestHeldMs, Math.round(now - opened));
      s.destroy();
    }
    return this.report;
  }
}

function serve(): void {
  let ledger: SplitLedger | undefined;
  let squatter: Squatter | undefined;
  const handle = async (req: Request): Promise<unknown> => {
    switch (req.op) {
      case 'ledger-start':
        ledger?.stop();
        ledger = new SplitLedger(req.options);
        ledger.start();
        return null;
      case 'ledger-mark':
        ledger!.setMark();
        return null;
      case 'ledger-status':
        return ledger!.status();
      case 'ledger-verify':
        return ledger!.verify(req.timeoutMs);
      case 'command':
        return command({ host: req.host, port: req.port }, req.args, req.timeoutMs);
      case 'arbiter': {
        const client = new EtcdClient({ endpoints: req.endpoints, timeoutMs: 1000, tls: { ca: readFileSync(req.tls.ca), cert: readFileSync(req.tls.cert), key: readFileSync(req.tls.key) } });
        try {
          const read = async (key: string): Promise<ArbiterRecord | null> => {
            const kv = await client.get(`${req.prefix}/${req.domain}/${key}`);
            return kv === undefined ? null : (JSON.parse(kv.value.toString('utf8')) as ArbiterRecord);
          };
          return { owner: await read('owner'), last: await read('generation') };
        } finally {
          client.close();
        }
      }
      case 'squat':
        squatter?.stop();
        squatter = new Squatter(req.options);
        return null;
      case 'squat-stop': {
        const r = squatter?.stop() ?? null;
        squatter = undefined;
        return r;
      }
    }
  };
  const lines = createInterface({ input: process.stdin });
  lines.on('line', (line) => {
    const { id, req } = JSON.parse(line) as { id: number; req: Request };
    handle(req).then(
      (result) => process.stdout.write(`${JSON.stringify({ id, ok: true, result })}\n`),
      (err: unknown) => process.stdout.write(`${JSON.stringify({ id, ok: false, error: err instanceof Error ? err.message : String(err) })}\n`),
    );
  });
  // The test is gone (or done): so is the agent.
  lines.on('close', () => process.exit(0));
}

if (process.argv[2] === AGENT_FLAG) serve();

// ---------------------------------------------------------------- test side

export class Agent {
  private seq = 0;
  private readonly waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private stderr = '';
  private exited: string | undefined;

  constructor(private readonly child: ChildProcess) {
    const lines = createInterface({ input: child.stdout! });
    lines.on('line', (line) => {
      let msg: { id: number; ok: boolean; result?: unknown; error?: string };
      try {
        msg = JSON.parse(line) as typeof msg;
      } catch {
        return;
      }
      const w = this.waiting.get(msg.id);
      if (w === undefined) return;
      this.waiting.delete(msg.id);
      if (msg.ok) w.resolve(msg.result);
      else w.reject(new Error(`agent: ${msg.error}`));
    });
    child.stderr!.on('data', (d: Buffer) => (this.stderr = (this.stderr + d.toString()).slice(-4000)));
    child.once('exit', (code, signal) => {
      this.exited = `the namespace agent exited (${signal ?? code}): ${this.stderr.trim()}`;
      for (const w of this.waiting.values()) w.reject(new Error(this.exited));
      this.waiting.clear();
    });
  }

  private call<T>(req: Request): Promise<T> {
    if (this.exited !== undefined) return Promise.reject(new Error(this.exited));
    const id = ++this.seq;
    return new Promise<T>((resolve, reject) => {
      this.waiting.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.child.stdin!.write(`${JSON.stringify({ id, req })}\n`);
    });
  }

  startLedger(options: Omit<SplitLedgerOptions, 'now'>): Promise<void> {
    return this.call({ op: 'ledger-start', options });
  }

  /** Marks now: ledgerStatus().firstAckAfterMarkMs then says how long the service took to answer again. */
  mark(): Promise<void> {
    return this.call({ op: 'ledger-mark' });
  }

  ledgerStatus(): Promise<LedgerStatus> {
    return this.call({ op: 'ledger-status' });
  }

  /** Stops the ledger's clients and judges (split-ledger.ts, verify()). */
  verifyLedger(timeoutMs = 3000): Promise<LedgerVerdict> {
    return this.call({ op: 'ledger-verify', timeoutMs });
  }

  command(host: string, port: number, args: string[], timeoutMs = 2000): Promise<RespValue> {
    return this.call({ op: 'command', host, port, args, timeoutMs });
  }

  /** The arbiter's owner key (who serves, under a lease) and generation key (who ran last), as etcd holds them now. */
  arbiter(endpoints: { host: string; port: number }[], tls: EtcdTlsPaths, domain: string, prefix = '/tandem'): Promise<{ owner: ArbiterRecord | null; last: ArbiterRecord | null }> {
    return this.call({ op: 'arbiter', endpoints, prefix, domain, tls });
  }

  squat(options: SquatOptions): Promise<void> {
    return this.call({ op: 'squat', options });
  }

  stopSquatting(): Promise<SquatReport | null> {
    return this.call({ op: 'squat-stop' });
  }

  stop(): void {
    this.child.stdin?.end();
    this.child.kill('SIGKILL');
  }
}

/** Starts the agent in `node`'s namespace (it dies with the topology's cleanup, or when the test process's end closes its stdin). */
export function startAgent(topo: Topology, node: NodeName): Agent {
  const child = topo.spawn(node, [process.execPath, AGENT_FILE, AGENT_FLAG], { stdio: ['pipe', 'pipe', 'pipe'] });
  return new Agent(child);
}
