/**
 * What a command started ends with it, even when the command dies without
 * a chance to stop it (SIGKILL, the OOM killer, a crash). A guard process
 * (lifeline-main.ts), in a session of its own so that the signals of the
 * command's terminal or process group do not reach it, holds the read end
 * of a pipe from this process and the list of children to end. The kernel
 * closes the pipe when this process exits, however it exits; the guard
 * then sends every child on the list that is still alive SIGTERM, and
 * SIGKILL to those still alive after the grace period, and exits.
 *
 * A child is known by its pid and its start time (/proc/PID/stat), so a pid
 * reused by an unrelated process is never signalled. Not covered: a child
 * spawned in the instant between fork and watch() when this process is
 * killed (microseconds), the guard itself being SIGKILLed, and what a
 * child started in turn (each child answers for its own: a tandem node
 * stops its helpers on SIGTERM).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import type { Socket } from 'node:net';
import { fileURLToPath } from 'node:url';

const GUARD = fileURLToPath(new URL('./lifeline-main.js', import.meta.url));
export const DEFAULT_GRACE_MS = 5000;

export class Lifeline {
  private guard: ChildProcess | undefined;
  /** This end of the pipe the guard reads (a socket pair, as node makes stdio pipes). */
  private pipe: Socket | undefined;

  constructor(private readonly graceMs = DEFAULT_GRACE_MS) {}

  /** Starts the guard; rejects if it cannot run. */
  async start(): Promise<void> {
    const guard = spawn(process.execPath, [GUARD, String(this.graceMs)], { detached: true, stdio: ['pipe', 'ignore', 'ignore'] });
    await new Promise<void>((resolve, reject) => {
      guard.once('spawn', resolve);
      guard.once('error', reject);
    });
    const pipe = guard.stdin as Socket;
    // A guard gone early (killed) must not take this process with an EPIPE.
    pipe.on('error', () => undefined);
    // Neither the guard nor its pipe keeps this process alive: the pipe is meant to close with it.
    guard.unref();
    pipe.unref();
    this.guard = guard;
    this.pipe = pipe;
  }

  /** The pid of the guard process (for tests and logs). */
  get pid(): number | undefined {
    return this.guard?.pid;
  }

  /** Puts `child` on the guard's list: should this process die, the guard ends it. */
  watch(child: ChildProcess): void {
    const pid = child.pid;
    // Not started (spawn failed): there is nothing to end.
    if (pid === undefined || this.pipe === undefined) return;
    this.pipe.write(`${pid}\n`);
  }

  /**
   * Closes the pipe: the guard ends whatever on its list is still alive and
   * exits. For when this process stopped its children itself.
   */
  stop(): void {
    this.pipe?.end();
    this.pipe = undefined;
    this.guard = undefined;
  }
}
