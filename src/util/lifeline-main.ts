/**
 * The guard process of lifeline.ts: `node lifeline-main.js GRACE_MS`, its
 * stdin the pipe from the process it guards, one pid a line. When the pipe
 * closes it ends every listed process still alive (the same start time as
 * when it was listed): SIGTERM, then SIGKILL after GRACE_MS. Hangups and
 * interrupts aimed at the guarded process's group are not for it: only the
 * pipe's end makes it act.
 */
import { readFileSync } from 'node:fs';

const MAX_CHILDREN = 4096;
const MAX_LINE = 16;
const POLL_MS = 50;

for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(sig, () => undefined);

const graceArg = process.argv[2] ?? '';
const graceMs = Number(graceArg);
if (!/^\d{1,6}$/.test(graceArg) || graceMs > 600_000) {
  process.stderr.write(`lifeline: expected a grace period of 0..600000 ms, got ${JSON.stringify(process.argv[2])}\n`);
  process.exit(2);
}

/** pid -> its start time in clock ticks since boot, from /proc/PID/stat. */
const children = new Map<number, string>();

/** The start time of a live process (a zombie holds nothing and cannot be signalled away), or undefined. */
function startTime(pid: number): string | undefined {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // The command name, in parentheses, may itself hold spaces and parentheses: count from the last one.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  if (fields[0] === 'Z' || fields[0] === 'X') return undefined;
  // Field 22 of stat(5); fields[0] is field 3.
  return fields[19];
}

function alive(): number[] {
  return [...children].filter(([pid, start]) => startTime(pid) === start).map(([pid]) => pid);
}

function signal(pids: number[], sig: NodeJS.Signals): void {
  for (const pid of pids) {
    try {
      process.kill(pid, sig);
    } catch {
      // Gone in the meantime.
    }
  }
}

async function endAll(): Promise<void> {
  signal(alive(), 'SIGTERM');
  const deadline = Date.now() + graceMs;
  while (alive().length > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, POLL_MS));
  signal(alive(), 'SIGKILL');
  process.exit(0);
}

let pending = '';
process.stdin.setEncoding('latin1');
process.stdin.on('data', (chunk: string) => {
  const lines = (pending + chunk).split('\n');
  pending = lines.pop()!;
  // A line never ends: it is not a pid, and must not grow without bound.
  if (pending.length > MAX_LINE) pending = '';
  for (const line of lines) {
    if (!/^[1-9]\d{0,9}$/.test(line) || children.size >= MAX_CHILDREN) continue;
    const pid = Number(line);
    const start = startTime(pid);
    if (start !== undefined) children.set(pid, start);
  }
});
process.stdin.on('end', () => void endAll());
process.stdin.on('error', () => void endAll());
