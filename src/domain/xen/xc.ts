/**
 * The few privileged host operations the Xen binding makes itself:
 * hypercalls (domain info, fast resume, pause, unpause) through Xen's own
 * Python bindings, and the plug qdisc's block and release over rtnetlink,
 * all through one persistent co-process (xc-ops.py; docs/xen.md,
 * "Hypercalls"). Nothing here is
 * loaded unless a Xen domain is used: the sim and `npm ci` never need Xen.
 *
 * The co-process is a peer like any other: its replies are parsed from
 * bounded lines, checked against the request in flight, and a reply that is
 * not one (bad JSON, an id nobody asked for, a line beyond the bound) stops
 * it for good (XEN_XC_BAD_REPLY) and fails every request in flight. Requests
 * are answered in order (the co-process is one loop), each within a timeout.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { XenError, XenErrorCodes as C } from './errors.js';

export const DEFAULT_PYTHON = '/usr/bin/python3';
export const DEFAULT_XEN_PYTHON_PATH = '/usr/lib/xen-4.17/lib/python';
const SCRIPT = fileURLToPath(new URL('./xc-ops.py', import.meta.url));
/** A reply line longer than this is not one. */
const MAX_REPLY_LINE = 16 * 1024;
const DEFAULT_TIMEOUT_MS = 10_000;
const MAX_PENDING = 64;

/** Xen's SHUTDOWN_suspend: the reason a domain that suspended itself gives. */
export const SHUTDOWN_SUSPEND = 2;

export interface DomainInfo {
  dying: boolean;
  crashed: boolean;
  shutdown: boolean;
  paused: boolean;
  blocked: boolean;
  running: boolean;
  /** Meaningful only while `shutdown`. */
  shutdownReason: number;
  /** Memory reservation, KiB (when the bindings say). */
  memKb?: number;
  /** vCPUs online (when the bindings say). */
  vcpus?: number;
}

export interface XcOpsOptions {
  /** Default /usr/bin/python3 (the Python Debian's xen-utils-4.17 bindings are built for). */
  python?: string;
  /** Where xen.lowlevel lives (default Debian's /usr/lib/xen-4.17/lib/python). */
  xenPythonPath?: string;
  /** Run this instead (a test's stand-in): the file and its arguments. */
  command?: { file: string; args: string[] };
  timeoutMs?: number;
}

type Op = 'info' | 'resume' | 'pause' | 'unpause';
export type PlugAction = 'block' | 'release' | 'release-all';

interface Pending {
  id: number;
  what: string;
  resolve: (result: unknown) => void;
  reject: (err: XenError) => void;
  timer: NodeJS.Timeout;
}

export class XcOps {
  /** Starts the co-process and waits for it to have opened Xen's control interface. */
  static async start(options: XcOpsOptions = {}): Promise<XcOps> {
    const command = options.command ?? { file: options.python ?? DEFAULT_PYTHON, args: ['-s', '-B', SCRIPT, options.xenPythonPath ?? DEFAULT_XEN_PYTHON_PATH] };
    const child = spawn(command.file, command.args, { stdio: ['pipe', 'pipe', 'pipe'] });
    const ops = new XcOps(child, options.timeoutMs ?? DEFAULT_TIMEOUT_MS);
    await ops.ready;
    return ops;
  }

  private readonly pending: Pending[] = [];
  private nextId = 1;
  private partial = '';
  private failure: XenError | undefined;
  private stderrTail = '';
  private readonly ready: Promise<void>;
  private onReady: { resolve: () => void; reject: (err: XenError) => void } | undefined;

  private constructor(
    private readonly child: ChildProcessWithoutNullStreams,
    private readonly timeoutMs: number,
  ) {
    this.ready = new Promise((resolve, reject) => (this.onReady = { resolve, reject }));
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (d: string) => this.onData(d));
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (d: string) => (this.stderrTail = (this.stderrTail + d).slice(-2048)));
    child.stdin.on('error', () => undefined); // a dead co-process: 'exit' says so
    child.on('error', (err) => this.fail(new XenError(C.XEN_XC_UNAVAILABLE, `cannot start the hypercall co-process: ${err.message}`, { cause: err })));
    child.on('exit', (code, signal) => {
      const how = signal === null ? `exit code ${code}` : `signal ${signal}`;
      const tail = this.stderrTail.trim().split('\n').slice(-3).join(' | ');
      this.fail(new XenError(this.onReady !== undefined ? C.XEN_XC_UNAVAILABLE : C.XEN_XC_CLOSED, `the hypercall co-process ended (${how})${tail ? `: ${tail}` : ''}`));
    });
  }

  /** The domain's state, or undefined when there is no such domain. */
  async info(domid: number): Promise<DomainInfo | undefined> {
    const r = await this.request('info', domid);
    if (r === null) return undefined;
    const o = r as Record<string, unknown>;
    // A reply of the wrong shape is not trusted, nor is anything after it.
    const bad = (detail: string): never => {
      const err = this.badReply(`info of domain ${domid}: ${detail}`);
      this.fail(err);
      throw err;
    };
    if (o === null || typeof o !== 'object') bad(`the result is ${JSON.stringify(r)}`);
    const flag = (k: string): boolean => {
      if (o[k] !== 0 && o[k] !== 1) bad(`field ${k} is ${JSON.stringify(o[k])}`);
      return o[k] === 1;
    };
    const reason = o.shutdown_reason;
    if (typeof reason !== 'number' || !Number.isInteger(reason) || reason < 0 || reason > 255) bad(`shutdown_reason is ${JSON.stringify(reason)}`);
    const count = (k: string, max: number): number | undefined => {
      const v = o[k];
      if (v === undefined) return undefined;
      if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0 || v > max) bad(`field ${k} is ${JSON.stringify(v)}`);
      return v as number;
    };
    const info: DomainInfo = { dying: flag('dying'), crashed: flag('crashed'), shutdown: flag('shutdown'), paused: flag('paused'), blocked: flag('blocked'), running: flag('running'), shutdownReason: reason as number };
    const memKb = count('mem_kb', 2 ** 40);
    const vcpus = count('online_vcpus', 8192);
    if (memKb !== undefined) info.memKb = memKb;
    if (vcpus !== undefined) info.vcpus = vcpus;
    return info;
  }

  /** Resumes a suspended domain; `fast`: cooperative (the guest's suspend call returns 1, no device reconnect). */
  async resume(domid: number, fast = true): Promise<void> {
    await this.request('resume', domid, { fast });
  }

  async pause(domid: number): Promise<void> {
    await this.request('pause', domid);
  }

  async unpause(domid: number): Promise<void> {
    await this.request('unpause', domid);
  }

  /** Ends the co-process (closing its stdin ends its loop). */
  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise((r) => this.child.once('exit', r));
    this.child.stdin.end();
    const kill = setTimeout(() => this.child.kill('SIGKILL'), 2000);
    await exited;
    clearTimeout(kill);
  }

  /**
   * The plug qdisc on interface `ifindex` (handle `handle`, at its root):
   * block closes the output queued so far behind a plug, release lets out
   * everything up to the oldest plug, release-all lets everything out and
   * stops plugging. Resolves once the kernel acknowledged it.
   */
  async plug(ifindex: number, handle: number, action: PlugAction): Promise<void> {
    const what = `plug ${action} on ifindex ${ifindex}`;
    if (!Number.isInteger(ifindex) || ifindex < 1 || ifindex >= 2 ** 31 || !Number.isInteger(handle) || handle < 1 || handle >= 2 ** 32) {
      throw new XenError(C.XEN_XC_FAILED, `${what}: not an interface index and qdisc handle (ifindex ${ifindex}, handle ${handle})`);
    }
    await this.send(what, { op: 'plug', ifindex, handle, action });
  }

  private request(op: Op, domid: number, extra: Record<string, unknown> = {}): Promise<unknown> {
    const what = `${op} of domain ${domid}`;
    if (!Number.isInteger(domid) || domid < 1 || domid >= 0x7ff0) return Promise.reject(new XenError(C.XEN_NO_DOMAIN, `${what}: not a guest's domain id (1..32751)`));
    return this.send(what, { op, domid, ...extra });
  }

  private send(what: string, payload: Record<string, unknown>): Promise<unknown> {
    if (this.failure !== undefined) return Promise.reject(new XenError(C.XEN_XC_CLOSED, `${what}: ${this.failure.message}`, { cause: this.failure }));
    if (this.pending.length >= MAX_PENDING) return Promise.reject(new XenError(C.XEN_XC_FAILED, `${what}: ${MAX_PENDING} requests already in flight`));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      // Every request in flight fails with it, each prefixed with its own words.
      const timer = setTimeout(() => this.fail(new XenError(C.XEN_XC_TIMEOUT, `no reply in ${this.timeoutMs} ms (the co-process is stopped)`)), this.timeoutMs);
      this.pending.push({ id, what, resolve, reject, timer });
      this.child.stdin.write(`${JSON.stringify({ id, ...payload })}\n`);
    });
  }

  private onData(d: string): void {
    if (this.failure !== undefined) return;
    const lines = (this.partial + d).split('\n');
    this.partial = lines.pop()!;
    if (this.partial.length > MAX_REPLY_LINE) {
      this.fail(this.badReply(`a reply line beyond ${MAX_REPLY_LINE} bytes`));
      return;
    }
    for (const line of lines) {
      if (this.failure !== undefined) return;
      if (line.length > MAX_REPLY_LINE) this.fail(this.badReply(`a reply line of ${line.length} bytes (most ${MAX_REPLY_LINE})`));
      else this.onLine(line);
    }
  }

  private onLine(line: string): void {
    let r: unknown;
    try {
      r = JSON.parse(line);
    } catch {
      this.fail(this.badReply(`a reply that is not JSON: ${JSON.stringify(line.slice(0, 80))}`));
      return;
    }
    if (r === null || typeof r !== 'object' || typeof (r as { ok?: unknown }).ok !== 'boolean') {
      this.fail(this.badReply(`a reply without "ok": ${JSON.stringify(line.slice(0, 80))}`));
      return;
    }
    const { id, ok, result, error } = r as { id: unknown; ok: boolean; result?: unknown; error?: unknown };
    const message = typeof error === 'string' ? error.slice(0, 512) : 'no reason given';
    if (this.onReady !== undefined) {
      const ready = this.onReady;
      this.onReady = undefined;
      if (id === 0 && ok && result === 'ready') ready.resolve();
      else {
        const err = new XenError(C.XEN_XC_UNAVAILABLE, ok ? 'the hypercall co-process did not say it was ready' : message);
        ready.reject(err);
        this.fail(err);
      }
      return;
    }
    const head = this.pending[0];
    if (head === undefined || id !== head.id) {
      this.fail(this.badReply(`a reply for request ${JSON.stringify(id)}, expected ${head === undefined ? 'none' : head.id}${ok ? '' : ` (${message})`}`));
      return;
    }
    this.pending.shift();
    clearTimeout(head.timer);
    if (ok) head.resolve(result);
    else head.reject(new XenError(C.XEN_XC_FAILED, message));
  }

  private badReply(detail: string): XenError {
    return new XenError(C.XEN_XC_BAD_REPLY, `hypercall co-process: ${detail}`);
  }

  /** Stops for good: every request in flight fails with `err` (its own words first). */
  private fail(err: XenError): void {
    if (this.failure !== undefined) return;
    this.failure = err;
    this.onReady?.reject(err);
    this.onReady = undefined;
    for (const p of this.pending.splice(0)) {
      clearTimeout(p.timer);
      p.reject(new XenError(err.code, `${p.what}: ${err.message}`, { cause: err }));
    }
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
  }
}
