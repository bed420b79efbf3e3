/**
 * A role-change hook for tests (hooks.role_change, src/node/role-hooks.ts):
 * an executable node script that appends one JSON line per run to a file,
 * with the arguments it was given, its TANDEM_* environment and its pid,
 * and (after `sleepMs`) a line saying it ended.
 */
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';

export interface HookRun {
  phase: 'start' | 'end';
  /** On start: what the hook was given. */
  argv?: string[];
  env?: Record<string, string>;
  /** On end: the run's TANDEM_SEQUENCE. */
  seq?: string;
  at: number;
}

/** Writes the hook to `file` (made executable), recording into `out`. */
export function writeRecordingHook(file: string, out: string, sleepMs = 0): string {
  writeFileSync(
    file,
    `#!${process.execPath}
const fs = require('node:fs');
const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => k.startsWith('TANDEM_')));
fs.appendFileSync(${JSON.stringify(out)}, JSON.stringify({ phase: 'start', argv: process.argv.slice(2), env, at: Date.now() }) + '\\n');
setTimeout(() => fs.appendFileSync(${JSON.stringify(out)}, JSON.stringify({ phase: 'end', seq: env.TANDEM_SEQUENCE, at: Date.now() }) + '\\n'), ${sleepMs});
`,
  );
  chmodSync(file, 0o755);
  return file;
}

/** Every line the hook wrote so far. */
export function hookRuns(out: string): HookRun[] {
  if (!existsSync(out)) return [];
  return readFileSync(out, 'utf8')
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as HookRun);
}

/** The runs' starts: [event, domain, generation, role, reason] each. */
export const hookCalls = (out: string): HookRun[] => hookRuns(out).filter((r) => r.phase === 'start');
