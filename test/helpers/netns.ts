/**
 * A small network made of Linux network namespaces, for tests that break it:
 * one namespace per node (a primary, a secondary, etcd members, a client),
 * each with one interface `eth0` on a private /24, joined by veth pairs to a
 * bridge that lives in a namespace of its own. Nothing touches the host's
 * network: every device is created inside a namespace of this run, and goes
 * when its namespace is deleted.
 *
 * Faults are made where a real network makes them:
 *
 * - packet drops (partitions, one-way and per-port drops, random loss) by
 *   nftables on the bridge's forward hook, so neither end sees anything but
 *   silence (a drop in a node's own output hook would hand its connect() an
 *   EPERM at once, which no real partition does). The rules are one model,
 *   rendered as a whole and swapped in one nft transaction at every change;
 * - link down/up by the bridge-side end of the node's veth (the node's eth0
 *   loses carrier, as with a pulled cable);
 * - rate limits by tc htb on both ends of a node's veth (a slow link: its
 *   queue delays what crosses it), and delay by tc netem where the kernel
 *   has it;
 * - resets by `ss -K`, which aborts the sockets in the kernel and sends the
 *   peer a RST;
 * - SIGSTOP/SIGCONT/SIGKILL of a process, by its pid (`ip netns exec` execs
 *   the command, so the child's pid is the program's own).
 *
 * Names are unique per run (the pid and random bytes), so concurrent runs
 * never meet. cleanup() kills every process in the run's namespaces (found
 * by `ip netns pids`, so grandchildren too), deletes the namespaces and the
 * run's temporary directory; it is idempotent, the test calls it from its
 * `after`, and it is registered on process 'exit'. For a test process killed
 * outright (SIGKILL, or a signal nothing handles, where no 'exit' handler
 * runs), a detached watchdog shell does the same once the test process is
 * gone.
 */
import { spawn, spawnSync, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A node's short name in the topology (p, s, e0, c...): its namespace's suffix and its interface's name on the bridge. */
export type NodeName = string;

export interface TopologyOptions {
  /** The nodes, in order: node i gets host address i + 1 on the subnet. */
  nodes: NodeName[];
  /** First three octets of the /24 (private; every namespace has its own stack, so runs may share it). */
  subnet?: string;
}

/** Packets crossing the bridge that a rule drops: from a node (or any), to a node (or any), optionally one TCP port, optionally a random share only. */
export interface DropRule {
  from?: NodeName;
  to?: NodeName;
  /** Only TCP segments to this port (the listening side's port: one direction of a connection). */
  dport?: number;
  /** Only TCP segments from this port (the other direction of connections to it). */
  sport?: number;
  /** Drop this percentage at random (1..99); absent: every packet. */
  lossPct?: number;
  /** Spare SYN-ACKs: connections still open, so what the other side sends on them arrives (see dropAnswers). */
  spareSynAck?: boolean;
  /** Only packets whose IP length is in [min, max] bytes (to pick one kind of message out of a conversation). */
  ipLength?: [number, number];
}

/** Undoes one fault. */
export type Undo = () => void;

export interface ImpairOptions {
  /** Random loss both ways on the node's link, % (nftables, on the bridge). */
  lossPct?: number;
  /** Rate limit both ways, kbit/s (tc htb: a queue that delays what exceeds it). */
  rateKbit?: number;
  /** Fixed delay both ways, ms (tc netem: needs the kernel's sch_netem). */
  delayMs?: number;
}

const IFACE = 'eth0';
const BRIDGE = 'br0';
const TABLE = 'tandem_fault';

/** Runs a command synchronously; throws with its stderr when it fails. */
function run(argv: string[], input?: string): string {
  const r = spawnSync(argv[0], argv.slice(1), { input, encoding: 'utf8', timeout: 20_000 });
  if (r.error !== undefined) throw new Error(`${argv.join(' ')}: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`${argv.join(' ')} failed (status ${r.status}): ${r.stderr.trim() || r.stdout.trim()}`);
  return r.stdout;
}

/** The same, for cleanup: failures are expected (already gone) and ignored. */
function tryRun(argv: string[]): string {
  const r = spawnSync(argv[0], argv.slice(1), { encoding: 'utf8', timeout: 20_000 });
  return r.status === 0 ? r.stdout : '';
}

export class Topology {
  /** This run's prefix: every namespace's name starts with it. */
  readonly id: string;
  /** The run's temporary directory (configuration files, data directories), removed by cleanup(). */
  readonly dir: string;
  private readonly addresses = new Map<NodeName, string>();
  private readonly rules = new Map<number, DropRule>();
  private nextRule = 1;
  private readonly children = new Set<ChildProcess>();
  /** Links with a qdisc of ours, and which impairment put it there. */
  private readonly impaired = new Map<NodeName, symbol>();
  private watchdog: ChildProcess | undefined;
  private cleaned = false;
  private readonly onExit = (): void => this.cleanup();

  private constructor(
    readonly nodes: readonly NodeName[],
    subnet: string,
  ) {
    this.id = `tf${process.pid.toString(36)}${randomBytes(3).toString('hex')}`;
    this.dir = mkdtempSync(join(tmpdir(), `tandem-${this.id}-`));
    nodes.forEach((n, i) => this.addresses.set(n, `${subnet}.${i + 1}`));
  }

  /** Makes the namespaces, the bridge and the links; undoes what it made if any step fails. */
  static create(options: TopologyOptions): Topology {
    const nodes = options.nodes;
    if (new Set(nodes).size !== nodes.length || nodes.some((n) => n === 'br' || !/^[a-z][a-z0-9]{0,7}$/.test(n))) throw new Error(`topology: node names must be distinct, short and lowercase: ${nodes.join(', ')}`);
    if (nodes.length > 200) throw new Error('topology: at most 200 nodes on one /24');
    const topo = new Topology(nodes, options.subnet ?? '10.213.7');
    // Registered before anything exists, so a failure half-way still cleans up.
    process.on('exit', topo.onExit);
    topo.startWatchdog();
    try {
      topo.build();
    } catch (err) {
      topo.cleanup();
      const why = err instanceof Error ? err.message : String(err);
      // Not a skip: a machine that cannot run these tests must say why.
      throw new Error(`cannot build the test network (these tests need root, iproute2's ip, nftables and tc): ${why}`, { cause: err });
    }
    return topo;
  }

  /** The namespace of a node (or of the bridge: 'br', a name no node may have). */
  ns(node: NodeName): string {
    if (node !== 'br' && !this.addresses.has(node)) throw new Error(`topology: no node ${node}`);
    return `${this.id}-${node}`;
  }

  /** A node's IPv4 address. */
  ip(node: NodeName): string {
    const a = this.addresses.get(node);
    if (a === undefined) throw new Error(`topology: no node ${node}`);
    return a;
  }

  private get namespaces(): string[] {
    return [...this.nodes.map((n) => this.ns(n)), this.ns('br')];
  }

  private build(): void {
    const br = this.ns('br');
    for (const ns of this.namespaces) run(['ip', 'netns', 'add', ns]);
    run(['ip', '-n', br, 'link', 'add', BRIDGE, 'type', 'bridge']);
    run(['ip', '-n', br, 'link', 'set', BRIDGE, 'up']);
    for (const node of this.nodes) {
      const ns = this.ns(node);
      // Made inside the bridge's namespace, the node's end moved straight into its own: no device ever exists on the host.
      run(['ip', '-n', br, 'link', 'add', `v-${node}`, 'type', 'veth', 'peer', 'name', IFACE, 'netns', ns]);
      run(['ip', '-n', br, 'link', 'set', `v-${node}`, 'master', BRIDGE, 'up']);
      run(['ip', '-n', ns, 'link', 'set', 'lo', 'up']);
      run(['ip', '-n', ns, 'addr', 'add', `${this.ip(node)}/24`, 'dev', IFACE]);
      run(['ip', '-n', ns, 'link', 'set', IFACE, 'up']);
    }
    // The rule table exists from the start (empty), so every later change is one atomic swap.
    this.applyRules();
  }

  /**
   * A detached shell that outlives a test process killed outright and then
   * removes what this run made. cleanup() ends it (by its pid) when it ran
   * itself.
   */
  private startWatchdog(): void {
    const script = [
      'parent=$1; dir=$2; shift 2',
      'while kill -0 "$parent" 2>/dev/null; do sleep 0.5; done',
      'for ns in "$@"; do for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done; done',
      'for ns in "$@"; do ip netns del "$ns" 2>/dev/null; done',
      'rm -rf "$dir"',
    ].join('\n');
    const w = spawn('sh', ['-c', script, 'tandem-netns-watchdog', String(process.pid), this.dir, ...this.namespaces], { detached: true, stdio: 'ignore' });
    w.on('error', () => {});
    w.unref();
    this.watchdog = w;
  }

  /**
   * Runs a long-lived program inside a node's namespace. Its pid is the
   * program's (ip netns exec execs it), so signals reach it directly.
   */
  spawn(node: NodeName, argv: string[], options: SpawnOptions = {}): ChildProcess {
    if (this.cleaned) throw new Error('topology: already cleaned up');
    const child = spawn('ip', ['netns', 'exec', this.ns(node), ...argv], { stdio: ['ignore', 'pipe', 'pipe'], ...options });
    this.children.add(child);
    child.once('exit', () => this.children.delete(child));
    return child;
  }

  /** Runs a short command inside a node's namespace and returns its stdout; throws when it fails. */
  exec(node: NodeName, argv: string[], input?: string): string {
    return run(['ip', 'netns', 'exec', this.ns(node), ...argv], input);
  }

  // ---- faults ----

  /** Drops packets crossing the bridge as `rule` says, until the returned undo (or healAll()). */
  drop(rule: DropRule): Undo {
    for (const n of [rule.from, rule.to]) if (n !== undefined) this.ip(n);
    if (rule.lossPct !== undefined && !(Number.isInteger(rule.lossPct) && rule.lossPct >= 1 && rule.lossPct <= 99)) throw new Error(`topology: lossPct ${rule.lossPct} is not in 1..99`);
    const id = this.nextRule++;
    this.rules.set(id, rule);
    this.applyRules();
    return () => {
      if (this.rules.delete(id) && !this.cleaned) this.applyRules();
    };
  }

  /** No packet between a and b, either way (each still reaches everyone else). */
  partition(a: NodeName, b: NodeName): Undo {
    return this.many([this.drop({ from: a, to: b }), this.drop({ from: b, to: a })]);
  }

  /** Cuts a node off from every other node (its link stays up: silence, not carrier loss). */
  isolate(node: NodeName): Undo {
    return this.many([this.drop({ from: node }), this.drop({ to: node })]);
  }

  /** Packets from `from` to `to` are dropped; the other way goes through. With `dport`, only TCP segments to that port of `to`. */
  dropOneWay(from: NodeName, to: NodeName, options: { dport?: number } = {}): Undo {
    return this.drop({ from, to, dport: options.dport });
  }

  /**
   * What `server` sends to `client` is lost, except the SYN-ACK that opens
   * a connection: the client's requests arrive and are acted on, their
   * answers never come back (each request's outcome unknown to its sender).
   */
  dropAnswers(server: NodeName, client: NodeName): Undo {
    return this.drop({ from: server, to: client, spareSynAck: true });
  }

  /** Every TCP segment of connections to `port` on `server` from `client`, both ways (the port is cut off, the rest of the link is not). */
  cutPort(client: NodeName, server: NodeName, port: number): Undo {
    return this.many([this.drop({ from: client, to: server, dport: port }), this.drop({ from: server, to: client, sport: port })]);
  }

  /** The node's link goes down (its eth0 loses carrier), until the undo. */
  linkDown(node: NodeName): Undo {
    run(['ip', '-n', this.ns('br'), 'link', 'set', `v-${node}`, 'down']);
    return () => this.linkUp(node);
  }

  linkUp(node: NodeName): void {
    if (!this.cleaned) run(['ip', '-n', this.ns('br'), 'link', 'set', `v-${node}`, 'up']);
  }

  /**
   * A bad link on the node's side: random loss, a rate limit and/or delay,
   * both ways. Delay needs tc netem, which some kernels lack: then this
   * throws, naming it (a test that asks for delay fails, it never skips).
   */
  impair(node: NodeName, options: ImpairOptions): Undo {
    const undos: Undo[] = [];
    if (options.lossPct !== undefined) undos.push(this.drop({ from: node, lossPct: options.lossPct }), this.drop({ to: node, lossPct: options.lossPct }));
    if (options.rateKbit !== undefined || options.delayMs !== undefined) {
      // One qdisc per link: a newer impairment replaces an older one, whose undo then leaves it alone.
      this.clearQdisc(node);
      const token = Symbol(node);
      this.impaired.set(node, token);
      for (const [ns, dev] of [[this.ns(node), IFACE], [this.ns('br'), `v-${node}`]] as const) {
        if (options.delayMs !== undefined) {
          const rate = options.rateKbit === undefined ? [] : ['rate', `${options.rateKbit}kbit`];
          try {
            run(['tc', '-n', ns, 'qdisc', 'add', 'dev', dev, 'root', 'netem', 'delay', `${options.delayMs}ms`, ...rate]);
          } catch (err) {
            this.clearQdisc(node);
            throw new Error(`tc netem is not available here (the kernel needs sch_netem for a delay): ${(err as Error).message}`, { cause: err });
          }
        } else {
          // htb's one class takes everything: its queue is the slow link's.
          run(['tc', '-n', ns, 'qdisc', 'add', 'dev', dev, 'root', 'handle', '1:', 'htb', 'default', '1']);
          run(['tc', '-n', ns, 'class', 'add', 'dev', dev, 'parent', '1:', 'classid', '1:1', 'htb', 'rate', `${options.rateKbit}kbit`, 'burst', '16k']);
        }
      }
      undos.push(() => {
        if (this.impaired.get(node) === token) this.clearQdisc(node);
      });
    }
    return this.many(undos);
  }

  private clearQdisc(node: NodeName): void {
    if (!this.impaired.delete(node) || this.cleaned) return;
    tryRun(['tc', '-n', this.ns(node), 'qdisc', 'del', 'dev', IFACE, 'root']);
    tryRun(['tc', '-n', this.ns('br'), 'qdisc', 'del', 'dev', `v-${node}`, 'root']);
  }

  /**
   * Aborts the node's established TCP connections (all, or those to `peer`,
   * and/or with `port` at either end): the kernel drops them and sends each
   * peer a RST. Returns how many sockets it aborted, as ss listed them.
   */
  resetTcp(node: NodeName, options: { peer?: NodeName; port?: number } = {}): number {
    const filter: string[] = ['state', 'established'];
    if (options.peer !== undefined) filter.push('dst', this.ip(options.peer));
    if (options.port !== undefined) filter.push('(', 'sport', '=', `:${options.port}`, 'or', 'dport', '=', `:${options.port}`, ')');
    const out = this.exec(node, ['ss', '-K', '-t', '-n', '-H', ...filter]);
    return out.split('\n').filter((l) => l.trim() !== '').length;
  }

  /** Every drop rule and link impairment removed, every link up. */
  healAll(): void {
    if (this.cleaned) return;
    this.rules.clear();
    this.applyRules();
    for (const node of [...this.impaired.keys()]) this.clearQdisc(node);
    for (const node of this.nodes) run(['ip', '-n', this.ns('br'), 'link', 'set', `v-${node}`, 'up']);
  }

  /** What the bridge drops now, as nft lists it (for a failing test's message). */
  describeRules(): string {
    return [...this.rules.values()].map((r) => this.ruleText(r)).join('; ') || '(none)';
  }

  /** One undo for several faults. */
  many(undos: Undo[]): Undo {
    return () => {
      for (const u of undos) u();
    };
  }

  private ruleText(r: DropRule): string {
    const parts: string[] = [];
    if (r.from !== undefined) parts.push(`ip saddr ${this.ip(r.from)}`);
    if (r.to !== undefined) parts.push(`ip daddr ${this.ip(r.to)}`);
    if (r.dport !== undefined) parts.push(`tcp dport ${r.dport}`);
    if (r.sport !== undefined) parts.push(`tcp sport ${r.sport}`);
    if (r.spareSynAck === true) parts.push('tcp flags & (syn | ack) != syn | ack');
    if (r.ipLength !== undefined) parts.push(`ip length ${r.ipLength[0]}-${r.ipLength[1]}`);
    if (r.lossPct !== undefined) parts.push(`numgen random mod 100 < ${r.lossPct}`);
    // A rule with no address at all would drop the bridge's every packet: say so rather than do it.
    if (r.from === undefined && r.to === undefined) throw new Error('topology: a drop rule needs from or to');
    return `${parts.join(' ')} drop`;
  }

  /** The whole rule set, swapped in one transaction (declare, delete, define: nft's idiom for an atomic replace). */
  private applyRules(): void {
    const rules = [...this.rules.values()].map((r) => `    ${this.ruleText(r)}`).join('\n');
    const text = [
      `table bridge ${TABLE}`,
      `delete table bridge ${TABLE}`,
      `table bridge ${TABLE} {`,
      '  chain forward {',
      '    type filter hook forward priority 0; policy accept;',
      rules,
      '  }',
      '}',
      '',
    ].join('\n');
    this.exec('br', ['nft', '-f', '-'], text);
  }

  /**
   * Kills every process in the run's namespaces, deletes the namespaces and
   * the temporary directory. Idempotent; safe from an 'exit' handler (all
   * synchronous).
   */
  cleanup(): void {
    if (this.cleaned) return;
    this.cleaned = true;
    process.off('exit', this.onExit);
    for (const child of this.children) {
      try {
        child.kill('SIGKILL');
      } catch {
        // already gone
      }
    }
    for (const ns of this.namespaces) {
      for (const pid of tryRun(['ip', 'netns', 'pids', ns]).split(/\s+/).filter(Boolean)) {
        try {
          process.kill(Number(pid), 'SIGKILL');
        } catch {
          // already gone
        }
      }
    }
    for (const ns of this.namespaces) tryRun(['ip', 'netns', 'del', ns]);
    rmSync(this.dir, { recursive: true, force: true });
    // Nothing left for the watchdog to do.
    if (this.watchdog?.pid !== undefined) {
      try {
        process.kill(this.watchdog.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }

  /** This run's namespaces that still exist (for a test that checks cleanup). */
  remaining(): string[] {
    const listed = tryRun(['ip', 'netns', 'list']);
    return listed
      .split('\n')
      .map((l) => l.split(' ')[0])
      .filter((n) => n.startsWith(`${this.id}-`));
  }
}
