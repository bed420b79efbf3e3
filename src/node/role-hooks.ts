/**
 * Role-change hooks (`hooks.role_change`, `--on-role-change`,
 * docs/failover.md): an operator's executable, run at every change of this
 * node's role, to move what Tandem does not (a DNS record, a load
 * balancer's pool, a page to someone).
 *
 * The hook is run without a shell (the path is executed as it is), with
 * the event, the domain, the generation, the role and the reason as its
 * arguments and the same as TANDEM_* environment variables. Runs are one
 * at a time, in the order the changes happened; one that outlives
 * `hooks.timeout_ms` is killed (its whole process group: SIGTERM, then
 * SIGKILL). Its output goes to the log, bounded; a failure is logged with
 * its exit status. Nothing waits for a hook but the node's own stop (which
 * waits for the runs queued, each bounded by the timeout): a failing or
 * hanging hook never delays or stops a failover.
 */
import { spawn } from 'node:child_process';
import { constants } from 'node:fs';
import { access, stat } from 'node:fs/promises';
import type { TandemConfig } from '../config/config.js';
import { ConfigError, ErrorCodes, TandemError } from '../errors.js';
import type { Logger } from '../util/logger.js';

/** What happened to this node. */
export type RoleEvent = 'serving' | 'standby' | 'promoted' | 'protected' | 'unprotected' | 'fenced' | 'stand-down' | 'switchover' | 'stopped';

/** What the node is after the event. */
export type Role = 'primary' | 'secondary' | 'fenced' | 'stopped';

export const ROLE_AFTER: Readonly<Record<RoleEvent, Role>> = {
  serving: 'primary',
  standby: 'secondary',
  promoted: 'primary',
  protected: 'primary',
  unprotected: 'primary',
  fenced: 'fenced',
  'stand-down': 'stopped',
  switchover: 'stopped',
  stopped: 'stopped',
};

export interface RoleChange {
  event: RoleEvent;
  /** The generation this node holds (or, fenced, held) the domain at. */
  generation: number;
  reason: string;
  /** HOST:PORT the guest is served on, when it is. */
  service?: string;
}

export interface RoleHooksOptions {
  /** The executable (absolute). */
  path: string;
  timeoutMs: number;
  /** The protected domain's name (arbiter.domain). */
  domain: string;
  /** This node's name, when it has one. */
  node?: string;
  /** The floating address's description, when one is configured. */
  floatingAddress?: string;
  logger: Logger;
  /** For TANDEM_TIME (default Date.now). */
  now?: () => number;
  /** Between SIGTERM and SIGKILL of a run past its timeout (default 1000 ms). */
  killGraceMs?: number;
  /** The most of each of stdout and stderr kept for the log (default 4096 bytes). */
  maxOutputBytes?: number;
  /** Changes waiting behind a running hook; past it the oldest waiting is dropped, said in the log (default 32). */
  maxQueued?: number;
}

/** The longest reason passed: argv and the environment are not the place for a page of text. */
const MAX_REASON_CHARS = 1000;

/** `text` with each run of control characters (NUL, newlines, escapes) made one space. */
function printable(text: string): string {
  let out = '';
  let gap = false;
  for (const ch of text) {
    const c = ch.codePointAt(0)!;
    const control = c < 0x20 || c === 0x7f;
    if (!control) out += ch;
    else if (!gap) out += ' ';
    gap = control;
  }
  return out;
}

interface Queued extends RoleChange {
  sequence: number;
  at: number;
}

/** A hook's output as kept for the log: the first bytes, and how many more there were. */
class Capped {
  private readonly chunks: Buffer[] = [];
  private kept = 0;
  private dropped = 0;

  constructor(private readonly max: number) {}

  add(chunk: Buffer): void {
    const room = this.max - this.kept;
    if (room > 0) {
      const part = chunk.subarray(0, room);
      this.chunks.push(part);
      this.kept += part.length;
    }
    this.dropped += Math.max(0, chunk.length - Math.max(0, room));
  }

  text(): string | undefined {
    if (this.kept === 0 && this.dropped === 0) return undefined;
    const text = Buffer.concat(this.chunks).toString('utf8').trimEnd();
    return this.dropped > 0 ? `${text}... (${this.dropped} more bytes not kept)` : text;
  }
}

export class RoleHooks {
  private readonly queued: Queued[] = [];
  private running: Promise<void> | undefined;
  private sequence = 0;
  private stopped = false;

  constructor(private readonly options: RoleHooksOptions) {}

  /** Checks that the hook is an executable file: a wrong path stops the node at start, not at its failover. */
  async start(): Promise<void> {
    const { path } = this.options;
    try {
      const s = await stat(path);
      if (!s.isFile()) throw new Error('not a regular file');
      await access(path, constants.X_OK);
    } catch (err) {
      throw new ConfigError(`hooks.role_change: ${path} is not an executable file: ${(err as Error).message}`, { cause: err });
    }
  }

  /** Queues a run for `change`, behind any before it; returns at once. */
  notify(change: RoleChange): void {
    const { logger } = this.options;
    if (this.stopped) {
      logger.warn({ hook: { event: change.event } }, `role-change hook not run for ${change.event}: the node has stopped its hooks`);
      return;
    }
    const maxQueued = this.options.maxQueued ?? 32;
    this.queued.push({ ...change, sequence: ++this.sequence, at: (this.options.now ?? Date.now)() });
    while (this.queued.length > maxQueued) {
      const lost = this.queued.shift()!;
      logger.error({ hook: { event: lost.event, sequence: lost.sequence } }, `role-change hook falling behind: ${lost.event} (#${lost.sequence}) dropped unrun, ${maxQueued} changes wait behind a running hook`);
    }
    this.pump();
  }

  /** Resolves once every run queued so far has ended. */
  async drain(): Promise<void> {
    while (this.running !== undefined) await this.running;
  }

  /** Runs what is queued (each bounded by the timeout), then takes no more. */
  async stop(): Promise<void> {
    await this.drain();
    this.stopped = true;
  }

  private pump(): void {
    if (this.running !== undefined) return;
    const next = this.queued.shift();
    if (next === undefined) return;
    this.running = this.run(next).finally(() => {
      this.running = undefined;
      this.pump();
    });
  }

  private run(change: Queued): Promise<void> {
    const o = this.options;
    const role = ROLE_AFTER[change.event];
    // NUL cannot cross exec(); control characters are kept out of argv and the log alike.
    const reason = printable(change.reason).slice(0, MAX_REASON_CHARS);
    const args = [change.event, o.domain, String(change.generation), role, reason];
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      TANDEM_EVENT: change.event,
      TANDEM_DOMAIN: o.domain,
      TANDEM_GENERATION: String(change.generation),
      TANDEM_ROLE: role,
      TANDEM_REASON: reason,
      TANDEM_SEQUENCE: String(change.sequence),
      TANDEM_TIME: new Date(change.at).toISOString(),
    };
    for (const key of ['TANDEM_NODE', 'TANDEM_SERVICE', 'TANDEM_FLOATING_ADDRESS']) delete env[key];
    if (o.node !== undefined) env.TANDEM_NODE = o.node;
    if (change.service !== undefined) env.TANDEM_SERVICE = change.service;
    if (o.floatingAddress !== undefined) env.TANDEM_FLOATING_ADDRESS = o.floatingAddress;
    const what = `role-change hook ${o.path} (${change.event}, #${change.sequence})`;
    const fields = { event: change.event, sequence: change.sequence, generation: change.generation, role };
    const started = performance.now();
    return new Promise<void>((resolve) => {
      const out = new Capped(o.maxOutputBytes ?? 4096);
      const err = new Capped(o.maxOutputBytes ?? 4096);
      let timedOut = false;
      let done = false;
      // Its own process group, so a timeout kills what the hook started too (a shell script's children).
      const child = spawn(o.path, args, { env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
      const signalGroup = (sig: NodeJS.Signals): void => {
        try {
          if (child.pid !== undefined) process.kill(-child.pid, sig);
        } catch {
          // already gone
        }
      };
      const term = setTimeout(() => {
        timedOut = true;
        signalGroup('SIGTERM');
        // Whatever of the group outlives the grace, the leader among them or not.
        setTimeout(() => signalGroup('SIGKILL'), o.killGraceMs ?? 1000);
      }, o.timeoutMs);
      const finish = (log: () => void): void => {
        if (done) return;
        done = true;
        clearTimeout(term);
        log();
        resolve();
      };
      child.stdout.on('data', (d: Buffer) => out.add(d));
      child.stderr.on('data', (d: Buffer) => err.add(d));
      child.on('error', (e: NodeJS.ErrnoException) => {
        finish(() => {
          const error = new TandemError(ErrorCodes.HOOK_FAILED, `${what} could not be run: ${e.message}`, { cause: e });
          o.logger.error({ err: error, hook: fields }, error.message);
        });
      });
      child.on('exit', (code, signal) => {
        // Output still in the pipes is read; a pipe held open by something the hook left running is not waited for.
        const settle = setTimeout(() => {
          child.stdout.destroy();
          child.stderr.destroy();
        }, 200);
        settle.unref();
        const report = (): void =>
          finish(() => {
            clearTimeout(settle);
            const ms = Math.round(performance.now() - started);
            const output = { ...fields, ms, stdout: out.text(), stderr: err.text() };
            if (code === 0 && !timedOut) {
              o.logger.info({ hook: { ...output, status: 0 } }, `${what} exited 0 (${ms} ms)`);
              return;
            }
            const how = timedOut ? `killed after its timeout of ${o.timeoutMs} ms (${signal ?? `exit status ${code}`})` : signal !== null ? `killed by ${signal}` : `exited with status ${code}`;
            const error = new TandemError(ErrorCodes.HOOK_FAILED, `${what} ${how}`);
            o.logger.error({ err: error, hook: { ...output, status: code, signal } }, `${error.message}; the node goes on`);
          });
        // Only the pipes still open are waited for: one closed already fires no 'close' again.
        const open = [child.stdout, child.stderr].filter((s) => !s.closed);
        let left = open.length;
        if (left === 0) report();
        for (const s of open) {
          s.once('close', () => {
            if (--left === 0) report();
          });
        }
      });
    });
  }
}

/** The configuration's hook, if there is one. */
export function roleHooksFor(cfg: TandemConfig, logger: Logger): RoleHooks | undefined {
  const path = cfg.hooks.roleChange;
  if (path === undefined) return undefined;
  const f = cfg.floatingAddress;
  return new RoleHooks({
    path,
    timeoutMs: cfg.hooks.timeoutMs,
    domain: cfg.arbiter.domain,
    node: cfg.arbiter.node ?? cfg.tls.name,
    floatingAddress: f === undefined ? undefined : `${f.address} dev ${f.interface}`,
    logger,
  });
}
