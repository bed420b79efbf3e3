/**
 * Xen's restore of a Remus stream, fed only whole checkpoints (EpochGate):
 * `xl migrate-receive -r -e` reads the xl-framed stream on its stdin,
 * creates the domain paused (`NAME--incoming`) and restores through Xen's
 * helper; libxc buffers each epoch after the first and applies it at its
 * CHECKPOINT. When its stdin ends right after a CHECKPOINT_END, it fails
 * over: it builds the domain from that checkpoint, finishes it (xenstore,
 * device hotplug), renames it and unpauses it, and exits 0.
 *
 * - give(): an epoch's bytes into the pipe, resolved once the pipe took them
 *   (in Xen's hands: the secondary acks then). Backpressure is the pipe's.
 * - failover(): ends stdin and waits for the domain to run (bounded).
 * - abort(): stops without failing over: the receiver is killed and the
 *   half-built domain destroyed.
 *
 * The receiver never outlives Tandem (see GUARD).
 */
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import { once } from 'node:events';
import type { Readable, Writable } from 'node:stream';
import { XenError, XenErrorCodes as C } from './errors.js';
import { encodeXlHeader } from '../../stream/xl-header.js';
import { DEFAULT_XL } from './tool.js';
import { DEFAULT_PYTHON } from './xc.js';

export interface XenRestoreOptions {
  xl?: string;
  /** The failover's bound: restore of the last checkpoint, device hotplug, unpause (default 120 s). */
  failoverTimeoutMs?: number;
  /** The domain's libxl JSON: given, Tandem writes the xl header itself (a replication stream has none); absent, the input carries it (a file). */
  configJson?: string;
  /** The Python that runs the receiver's guard (default /usr/bin/python3). */
  python?: string;
}

/**
 * The receiver dies with Tandem, by the kernel's hand (PR_SET_PDEATHSIG):
 * were Tandem killed, its end of the pipe would close, and xl takes the end
 * of its input for the order to fail over, which would run the domain here
 * while the primary may still run it. Killed, xl leaves the domain paused
 * and half-built (`NAME--incoming`), which the next stream's restore
 * clears. Checked against the parent's pid after the prctl: a parent that
 * died before it would not be noticed otherwise.
 */
const GUARD = [
  'import ctypes, os, signal, sys',
  'if ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL) != 0: sys.exit("prctl(PR_SET_PDEATHSIG) failed")',
  'if os.getppid() != int(sys.argv[1]): sys.exit("the parent is gone")',
  'os.execvp(sys.argv[2], sys.argv[2:])',
].join('\n');

export class XenRestore {
  private readonly child: ChildProcessByStdio<Writable, Readable, Readable>;
  private log = '';
  private readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private pipeError: Error | undefined;

  constructor(private readonly options: XenRestoreOptions = {}) {
    this.child = spawn(options.python ?? DEFAULT_PYTHON, ['-c', GUARD, String(process.pid), options.xl ?? DEFAULT_XL, 'migrate-receive', '-r', '-e'], { stdio: ['pipe', 'pipe', 'pipe'] });
    const keep = (d: Buffer): void => {
      // libxc's per-5% progress lines would crowd out what matters.
      const text = d.toString('utf8').replace(/^xc: progress.*\n?/gm, '');
      this.log = (this.log + text).slice(-4096);
    };
    this.child.stdout.on('data', keep);
    this.child.stderr.on('data', keep);
    this.child.stdin.on('error', (err) => (this.pipeError ??= err));
    this.exited = new Promise((resolve) => this.child.once('close', (code, signal) => resolve({ code, signal })));
    this.child.once('error', (err) => (this.pipeError ??= err));
    if (options.configJson !== undefined) this.child.stdin.write(encodeXlHeader({ configJson: options.configJson }));
  }

  /** The receiver's last lines (its own and Xen's). */
  get lastLog(): string {
    return this.log.trim().split('\n').slice(-6).join(' | ');
  }

  /** Hands an epoch's bytes to Xen; resolves once the pipe has taken them. */
  async give(chunks: readonly Buffer[]): Promise<void> {
    if (this.pipeError !== undefined) throw new XenError(C.XEN_RESTORE_FAILED, `Xen's restore is gone: ${this.pipeError.message}; ${this.lastLog}`, { cause: this.pipeError });
    const stdin = this.child.stdin;
    for (const c of chunks) {
      if (!stdin.write(c)) await Promise.race([once(stdin, 'drain'), this.exited.then(() => Promise.reject(new XenError(C.XEN_RESTORE_FAILED, `Xen's restore exited while taking the stream: ${this.lastLog}`)))]);
    }
    // The last write's callback: the bytes left this process for the pipe.
    await new Promise<void>((resolve, reject) => stdin.write(Buffer.alloc(0), (err) => (err ? reject(new XenError(C.XEN_RESTORE_FAILED, `writing to Xen's restore: ${err.message}`, { cause: err })) : resolve())));
  }

  /** Ends the stream at the last checkpoint given: Xen builds the domain from it and runs it. */
  async failover(): Promise<void> {
    this.child.stdin.end();
    const ms = this.options.failoverTimeoutMs ?? 120_000;
    let timer: NodeJS.Timeout | undefined;
    const result = await Promise.race([this.exited, new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), ms)))]);
    clearTimeout(timer);
    if (result === 'timeout') {
      this.child.kill('SIGKILL');
      throw new XenError(C.XEN_RESTORE_FAILED, `Xen's restore did not finish the failover within ${ms} ms: ${this.lastLog}`);
    }
    if (result.code !== 0) throw new XenError(C.XEN_RESTORE_FAILED, `Xen's restore failed the failover (${result.signal ?? `exit ${result.code}`}): ${this.lastLog}`);
  }

  /** Stops without failing over; `name`: the domain's name, whose `--incoming` copy is destroyed. */
  async abort(name?: string): Promise<void> {
    this.child.kill('SIGKILL');
    // A receiver that never started (no xl here) may never report its close.
    await Promise.race([this.exited, new Promise((r) => setTimeout(r, 2000).unref())]);
    if (name === undefined) return;
    const d = spawn(this.options.xl ?? DEFAULT_XL, ['destroy', `${name}--incoming`], { stdio: 'ignore' });
    await once(d, 'close').catch(() => undefined);
  }
}
