/**
 * A parent for lifeline.test.ts: `node lifeline-parent.js GRACE_MS FILE`
 * starts a Lifeline with that grace period, spawns two children it watches
 * (one that ends on SIGTERM; one that ignores it, noting in FILE that it got
 * it) and one it does not, prints their pids as one JSON line once all run,
 * and waits to be killed.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { Lifeline } from '../../src/util/lifeline.js';

const [graceMs, file] = [Number(process.argv[2]), process.argv[3]];
// `node --test dist/test/` runs every file under a test directory: alone, without its operands, this one has nothing to do.
if (file === undefined) process.exit(0);
const lifeline = new Lifeline(graceMs);
await lifeline.start();
const stay = "setInterval(() => {}, 1000); process.stdout.write('ready\\n');";
const child = (code: string) => spawn(process.execPath, ['-e', code], { stdio: ['ignore', 'pipe', 'ignore'] });
const polite = child(stay);
const stubborn = child(`process.on('SIGTERM', () => require('node:fs').appendFileSync(${JSON.stringify(file)}, 'SIGTERM\\n')); ${stay}`);
const unwatched = child(stay);
// Each has its handlers in place before anyone may signal it.
await Promise.all([polite, stubborn, unwatched].map((c) => once(c.stdout, 'data')));
lifeline.watch(polite);
lifeline.watch(stubborn);
process.stdout.write(`${JSON.stringify({ polite: polite.pid, stubborn: stubborn.pid, unwatched: unwatched.pid, guard: lifeline.pid })}\n`);
setInterval(() => {}, 1000);
