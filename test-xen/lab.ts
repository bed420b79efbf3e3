/**
 * Runs a command in the Xen lab (scripts/xen-lab run) from a test: boots real
 * Xen 4.17 host(s) under QEMU, runs COMMAND in host 1's dom0, and returns its
 * exit status and output. The lab's own progress goes to this process's
 * stderr as it comes, so a slow or failed boot is visible in the test log.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const XEN_LAB = fileURLToPath(new URL('../../scripts/xen-lab', import.meta.url));

export interface LabResult {
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
}

export interface LabOptions {
  hosts?: 1 | 2;
  /** The command's own bound in dom0 (scripts/xen-lab run --timeout). */
  timeoutS?: number;
}

// Past the command's bound, the boot and the build: if even that passes,
// the lab is stuck; SIGTERM lets scripts/xen-lab kill its QEMU itself.
const BOOT_AND_BUILD_S = 600;

export function runInLab(command: string, options: LabOptions = {}): Promise<LabResult> {
  const timeoutS = options.timeoutS ?? 900;
  const args = ['run', '--hosts', String(options.hosts ?? 1), '--timeout', String(timeoutS), command];
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn(XEN_LAB, args, { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => {
      err.push(d);
      process.stderr.write(d);
    });
    const hard = setTimeout(() => {
      child.kill('SIGTERM');
      setTimeout(() => child.kill('SIGKILL'), 30_000).unref();
    }, (timeoutS + BOOT_AND_BUILD_S) * 1000);
    child.on('error', (e) => {
      clearTimeout(hard);
      reject(e);
    });
    child.on('close', (status, signal) => {
      clearTimeout(hard);
      resolve({
        status, signal, ms: Date.now() - started,
        stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8'),
      });
    });
  });
}

/** The "LAB key value" lines a lab script printed, as a map (a later line wins). */
export function labValues(stdout: string): Map<string, string> {
  const values = new Map<string, string>();
  for (const line of stdout.split('\n')) {
    const m = /^LAB (\S+) ?(.*)$/.exec(line);
    if (m) values.set(m[1], m[2]);
  }
  return values;
}

/**
 * One lab run shared by the tests of a file: the first test to call
 * booted() starts it, every test awaits it and asserts on it, so when the
 * lab cannot boot each test fails with the lab's own account (none is
 * skipped or merely cancelled). The run's script reports "LAB key value"
 * lines, read with get() and num().
 */
export class SharedLabRun {
  private run: Promise<LabResult> | undefined;
  private result: LabResult | undefined;
  private values = new Map<string, string>();

  constructor(private readonly command: string, private readonly options: LabOptions = {}) {}

  async booted(): Promise<LabResult> {
    this.run ??= runInLab(this.command, this.options);
    this.result = await this.run;
    this.values = labValues(this.result.stdout);
    assert.equal(this.result.status, 0, `the lab run failed\n${this.context()}`);
    return this.result;
  }

  /** What a failed assertion prints: everything the run said. */
  context(): string {
    const r = this.result;
    if (!r) return '(the lab run has not finished)';
    return `exit ${r.status}${r.signal ? ` (${r.signal})` : ''}\n--- stdout:\n${r.stdout}\n--- stderr (tail):\n${r.stderr.slice(-6000)}`;
  }

  get(key: string): string {
    const value = this.values.get(key);
    assert.ok(value !== undefined, `dom0 never reported ${key}\n${this.context()}`);
    return value;
  }

  num(key: string): number {
    const n = Number(this.get(key));
    assert.ok(Number.isFinite(n), `${key} is not a number: ${this.values.get(key)}\n${this.context()}`);
    return n;
  }
}
