/**
 * The lifeline (src/util/lifeline.ts): a process SIGKILLed without a chance
 * to stop its children still has them ended, by its guard: SIGTERM first,
 * SIGKILL for one that ignores it; a child not on the list is left alone
 * (so it is the guard that ended the others, not a process group's fate).
 * The guard takes only pids from its pipe, one a line, and nothing else.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { after, test } from 'node:test';
import { tempDir } from '../helpers/cli.js';
import { until } from '../helpers/wait.js';
import { gone } from '../cli/process-tree.js';

const PARENT = fileURLToPath(new URL('./lifeline-parent.js', import.meta.url));
const GUARD = fileURLToPath(new URL('../../src/util/lifeline-main.js', import.meta.url));
const tmp = tempDir('tandem-lifeline-');
after(() => tmp.cleanup());

const killLater = (pid: number | undefined): void => {
  after(() => {
    try {
      if (pid !== undefined) process.kill(pid, 'SIGKILL');
    } catch {
      // Already gone.
    }
  });
};

test('a SIGKILLed parent: its guard ends the children it was given, SIGKILL for one that ignores SIGTERM, and leaves the rest alone', { timeout: 60_000 }, async () => {
  const noted = tmp.path('stubborn');
  const parent = spawn(process.execPath, [PARENT, '500', noted], { stdio: ['ignore', 'pipe', 'inherit'] });
  killLater(parent.pid);
  const [line] = (await once(parent.stdout, 'data')) as [Buffer];
  const pids = JSON.parse(line.toString()) as { polite: number; stubborn: number; unwatched: number; guard: number };
  for (const pid of Object.values(pids)) killLater(pid);
  for (const [name, pid] of Object.entries(pids)) assert.equal(gone(pid), false, `${name} runs`);

  parent.kill('SIGKILL');
  await until(() => gone(pids.polite) && gone(pids.stubborn), 'the watched children to end', 30_000, 20);
  await until(() => gone(pids.guard), 'the guard to exit', 30_000, 20);
  assert.equal(readFileSync(noted, 'utf8'), 'SIGTERM\n', 'the stubborn child was asked first, then killed');
  assert.equal(gone(pids.unwatched), false, 'a child not on the list was left alone');
});

test('the guard takes pids, one a line, and ignores anything else; a bad grace period is refused', { timeout: 60_000 }, async () => {
  const sleeper = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
  killLater(sleeper.pid);
  const bystander = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
  killLater(bystander.pid);
  const guard = spawn(process.execPath, [GUARD, '1000'], { stdio: ['pipe', 'ignore', 'pipe'] });
  killLater(guard.pid);
  const exited = new Promise<number | null>((resolve) => guard.once('exit', (code) => resolve(code)));
  await once(guard, 'spawn');
  // Garbage around a real pid: words, zero, a number too long, the bystander's pid glued to text, a line that never ends.
  guard.stdin.write(`abc\n0\n-1\n12345678901234\n${bystander.pid} \nx${bystander.pid}\n${sleeper.pid}\n`);
  guard.stdin.write('9'.repeat(100_000));
  guard.stdin.end();
  assert.equal(await exited, 0);
  await until(() => gone(sleeper.pid!), 'the listed process to end', 30_000, 20);
  assert.equal(gone(bystander.pid!), false, 'a pid inside a malformed line was taken');

  for (const bad of ['', '-5', '1.5', 'soon', '600001']) {
    const g = spawn(process.execPath, [GUARD, bad], { stdio: ['pipe', 'ignore', 'pipe'] });
    killLater(g.pid);
    let err = '';
    g.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const [code] = (await once(g, 'exit')) as [number | null];
    assert.equal(code, 2, bad);
    assert.match(err, /^lifeline: expected a grace period of 0\.\.600000 ms, got /, bad);
  }
});
