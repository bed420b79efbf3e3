/**
 * The role-change hook runner (src/node/role-hooks.ts) with real
 * executables: what a hook is given (argv and TANDEM_* environment), runs
 * one at a time in the order of the changes, a hook past its timeout killed
 * with everything it started, its output in the log and bounded, failures
 * logged with their status, and a wrong path refused at start.
 */
import assert from 'node:assert/strict';
import { chmodSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Writable } from 'node:stream';
import { after, describe, test } from 'node:test';
import { pino, type Logger } from 'pino';
import { TandemError } from '../../src/errors.js';
import { RoleHooks, type RoleHooksOptions } from '../../src/node/role-hooks.js';
import { tempDir } from '../helpers/cli.js';
import { hookRuns, writeRecordingHook } from '../helpers/hook-recorder.js';
import { until } from '../helpers/wait.js';

const tmp = tempDir('tandem-hooks-');
after(() => tmp.cleanup());

function capturing(): { logger: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString().split('\n')) if (l.trim() !== '') lines.push(JSON.parse(l) as Record<string, unknown>);
      done();
    },
  });
  return { logger: pino({ level: 'debug' }, sink), lines };
}

let scripts = 0;
/** An executable file with `body` (a shebang line first). */
function script(body: string): string {
  const file = tmp.path(`hook-${++scripts}`);
  writeFileSync(file, body);
  chmodSync(file, 0o755);
  return file;
}

/** The recording hook (../helpers/hook-recorder.ts) in a file of its own. */
const recordingHook = (out: string, sleepMs = 0): string => writeRecordingHook(tmp.path(`hook-${++scripts}`), out, sleepMs);

const runs = hookRuns;

/** Dead: no such process, or a zombie (an orphan's parent here may be an init that never reaps). */
function gone(pid: number): boolean {
  try {
    return /^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return true;
  }
}

function hooks(path: string, logger: Logger, more: Partial<RoleHooksOptions> = {}): RoleHooks {
  return new RoleHooks({ path, timeoutMs: 10_000, domain: 'vm7', node: 'alpha', floatingAddress: '10.1.2.3/24 dev eth0', logger, ...more });
}

describe('role-change hooks', () => {
  test('a hook gets the event, domain, generation, role and reason as arguments and as TANDEM_* variables', async () => {
    const out = tmp.path('args.jsonl');
    const { logger, lines } = capturing();
    const h = hooks(recordingHook(out), logger, { now: () => Date.UTC(2030, 0, 2, 3, 4, 5) });
    await h.start();
    h.notify({ event: 'promoted', generation: 5, reason: 'primary silent for 250 ms;\nnewline and\ttab', service: '10.1.2.3:6379' });
    h.notify({ event: 'fenced', generation: 5, reason: 'generation 6 serves the guest now' });
    await h.stop();
    const started = runs(out).filter((r) => r.phase === 'start');
    assert.equal(started.length, 2);
    assert.deepEqual(started[0].argv, ['promoted', 'vm7', '5', 'primary', 'primary silent for 250 ms; newline and tab']);
    assert.deepEqual(started[0].env, {
      TANDEM_EVENT: 'promoted',
      TANDEM_DOMAIN: 'vm7',
      TANDEM_GENERATION: '5',
      TANDEM_ROLE: 'primary',
      TANDEM_REASON: 'primary silent for 250 ms; newline and tab',
      TANDEM_SEQUENCE: '1',
      TANDEM_TIME: '2030-01-02T03:04:05.000Z',
      TANDEM_NODE: 'alpha',
      TANDEM_SERVICE: '10.1.2.3:6379',
      TANDEM_FLOATING_ADDRESS: '10.1.2.3/24 dev eth0',
    });
    assert.deepEqual(started[1].argv, ['fenced', 'vm7', '5', 'fenced', 'generation 6 serves the guest now']);
    assert.equal(started[1].env!.TANDEM_SEQUENCE, '2');
    assert.equal(started[1].env!.TANDEM_SERVICE, undefined, 'no service for a fenced node');
    const ok = lines.filter((l) => /role-change hook .* exited 0/.test(String(l.msg)));
    assert.equal(ok.length, 2, JSON.stringify(lines));
  });

  test('runs are one at a time, in the order of the changes', async () => {
    const out = tmp.path('order.jsonl');
    const { logger } = capturing();
    const h = hooks(recordingHook(out, 150), logger);
    await h.start();
    const events = ['serving', 'protected', 'unprotected', 'protected', 'stand-down'] as const;
    for (const event of events) h.notify({ event, generation: 1, reason: event });
    await h.stop();
    const seen = runs(out);
    // Each run's end comes before the next one's start: never two at once, never reordered.
    assert.deepEqual(
      seen.map((r) => (r.phase === 'start' ? `start ${r.env!.TANDEM_SEQUENCE} ${r.argv![0]}` : `end ${r.seq}`)),
      events.flatMap((e, i) => [`start ${i + 1} ${e}`, `end ${i + 1}`]),
    );
  });

  test('a hook past its timeout is killed with what it started (SIGTERM, then SIGKILL), logged, and the next one runs', async () => {
    const pids = tmp.path('pids');
    const out = tmp.path('after-timeout.txt');
    // For `promoted` it ignores SIGTERM (and so does the child it leaves running): only the SIGKILL of its group ends them.
    const stubborn = script(`#!/bin/sh
if [ "$1" = promoted ]; then
  trap '' TERM
  sleep 60 &
  echo "$$ $!" > ${pids}
  wait
fi
echo "$1 $5" >> ${out}
`);
    const { logger, lines } = capturing();
    const h = hooks(stubborn, logger, { timeoutMs: 300, killGraceMs: 200 });
    await h.start();
    h.notify({ event: 'promoted', generation: 2, reason: 'stuck' });
    h.notify({ event: 'fenced', generation: 2, reason: 'after the stuck one' });
    await h.stop();
    const killed = lines.find((l) => /killed after its timeout of 300 ms/.test(String(l.msg)));
    assert.ok(killed !== undefined, JSON.stringify(lines.map((l) => l.msg)));
    assert.equal((killed.err as { code?: string }).code, 'ERR_HOOK_FAILED');
    assert.match(String(killed.msg), /\(promoted, #1\).*\(SIGKILL\)/, 'SIGTERM was ignored: it took the SIGKILL');
    assert.equal(readFileSync(out, 'utf8'), 'fenced after the stuck one\n', 'the stuck run never got past its wait; the next one ran');
    const [shell, child] = readFileSync(pids, 'utf8').trim().split(' ').map(Number);
    for (const pid of [shell, child]) {
      await until(() => gone(pid), `process ${pid} of the hook's group to be gone`, 3000);
    }
  });

  test('output goes to the log, bounded; a failing hook is logged with its exit status and the runs go on', async () => {
    const noisy = script(`#!/bin/sh
head -c 100000 /dev/zero | tr '\\0' x
echo "something went wrong" >&2
exit 3
`);
    const out = tmp.path('after-failure.jsonl');
    const { logger, lines } = capturing();
    const h = hooks(noisy, logger, { maxOutputBytes: 64 });
    await h.start();
    h.notify({ event: 'unprotected', generation: 3, reason: 'the secondary is gone' });
    await h.drain();
    const failed = lines.find((l) => /exited with status 3/.test(String(l.msg)));
    assert.ok(failed !== undefined, JSON.stringify(lines.map((l) => l.msg)));
    assert.equal(failed.level, 50, 'logged as an error');
    const hook = failed.hook as { status: number; stdout: string; stderr: string; event: string };
    assert.equal(hook.status, 3);
    assert.equal(hook.event, 'unprotected');
    assert.equal(hook.stdout, `${'x'.repeat(64)}... (${100_000 - 64} more bytes not kept)`);
    assert.equal(hook.stderr, 'something went wrong');
    assert.equal((failed.err as { code?: string }).code, 'ERR_HOOK_FAILED');

    // A hook that is gone by the time it runs: said, and the next one runs.
    const gone = recordingHook(out);
    const h2 = hooks(gone, logger);
    await h2.start();
    const kept = readFileSync(gone);
    rmSync(gone);
    h2.notify({ event: 'fenced', generation: 3, reason: 'gone' });
    await h2.drain();
    assert.ok(lines.some((l) => /could not be run: .*ENOENT/.test(String(l.msg))), JSON.stringify(lines.map((l) => l.msg)));
    writeFileSync(gone, kept);
    chmodSync(gone, 0o755);
    h2.notify({ event: 'stopped', generation: 3, reason: 'back' });
    await h2.stop();
    assert.deepEqual(runs(out).filter((r) => r.phase === 'start').map((r) => r.argv![0]), ['stopped']);
    // Stopped: no more runs, said in the log.
    h2.notify({ event: 'serving', generation: 3, reason: 'late' });
    assert.ok(lines.some((l) => /not run for serving/.test(String(l.msg))));
  });

  test('a hook falling behind: the oldest waiting changes are dropped, said, and the order of the rest is kept', async () => {
    const out = tmp.path('behind.jsonl');
    const { logger, lines } = capturing();
    const h = hooks(recordingHook(out, 200), logger, { maxQueued: 2 });
    await h.start();
    for (let i = 1; i <= 5; i++) h.notify({ event: i % 2 === 0 ? 'unprotected' : 'protected', generation: i, reason: `change ${i}` });
    await h.stop();
    assert.deepEqual(runs(out).filter((r) => r.phase === 'start').map((r) => r.env!.TANDEM_SEQUENCE), ['1', '4', '5']);
    const dropped = lines.filter((l) => /falling behind/.test(String(l.msg))).map((l) => (l.hook as { sequence: number }).sequence);
    assert.deepEqual(dropped, [2, 3]);
  });

  test('a path that is not an executable file is refused at start, naming it', async () => {
    const { logger } = capturing();
    const plain = tmp.path('not-executable');
    writeFileSync(plain, '#!/bin/sh\n');
    chmodSync(plain, 0o644);
    const cases: [string, RegExp][] = [
      [tmp.path('absent'), /absent is not an executable file: ENOENT/],
      [tmp.dir, /is not an executable file: not a regular file/],
    ];
    // root may execute any file with an x bit; a file without one is refused to root too.
    cases.push([plain, /not-executable is not an executable file: EACCES/]);
    for (const [path, pattern] of cases) {
      await assert.rejects(hooks(path, logger).start(), (e: unknown) => e instanceof TandemError && e.code === 'ERR_CONFIG_INVALID' && /^hooks\.role_change: /.test(e.message) && pattern.test(e.message));
    }
  });
});
