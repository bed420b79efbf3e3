/**
 * Failover and fencing with the real processes: the secondary takes over
 * when the primary's heartbeats stop, and an old primary that comes back
 * hears the newer generation and refuses to serve.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { after, test } from 'node:test';
import { CLI, tempDir } from '../helpers/cli.js';

const tmp = tempDir();
after(() => tmp.cleanup());

interface Proc {
  child: ChildProcess;
  lines: Record<string, unknown>[];
  stderr: () => string;
  waitLine: (pred: (l: Record<string, unknown>) => boolean, what: string) => Promise<Record<string, unknown>>;
  closed: Promise<number | null>;
}

function run(args: string[]): Proc {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  after(() => child.kill('SIGKILL'));
  const lines: Record<string, unknown>[] = [];
  let text = '';
  let rest = '';
  const waiters: { pred: (l: Record<string, unknown>) => boolean; resolve: (l: Record<string, unknown>) => void }[] = [];
  child.stderr.on('data', (d: Buffer) => {
    text += d.toString();
    const parts = (rest + d.toString()).split('\n');
    rest = parts.pop()!;
    for (const p of parts) {
      let l: Record<string, unknown>;
      try {
        l = JSON.parse(p) as Record<string, unknown>;
      } catch {
        continue;
      }
      lines.push(l);
      for (const w of [...waiters]) if (w.pred(l)) w.resolve(l);
    }
  });
  const closed = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
  return {
    child,
    lines,
    stderr: () => text,
    closed,
    waitLine: (pred, what) => {
      const hit = lines.find(pred);
      if (hit) return Promise.resolve(hit);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), 20_000);
        waiters.push({
          pred,
          resolve: (l) => {
            clearTimeout(timer);
            resolve(l);
          },
        });
      });
    },
  };
}

const portOf = (v: unknown): number => Number(String(v).split(':').at(-1));

test('the secondary takes over on heartbeat silence; the returning old primary is fenced', async () => {
  const config = tmp.path('t.yaml');
  writeFileSync(config, 'domain:\n  memory_mib: 4\nsecondary:\n  listen: 127.0.0.1:0\n  service: 127.0.0.1:0\n');
  const secondary = run(['secondary', '--config', config]);
  const listen = await secondary.waitLine((l) => /secondary listening/.test(String(l.msg)), 'the secondary');
  const hb = await secondary.waitLine((l) => l.heartbeat !== undefined, 'the heartbeat channel');
  const primaryArgs = ['primary', '--config', config, '--secondary', `127.0.0.1:${String(listen.port)}`, '--heartbeat', String(hb.heartbeat), '--service', '127.0.0.1:0'];
  const primary = run(primaryArgs);
  await primary.waitLine((l) => l.state === 'protected', 'protection');
  await secondary.waitLine((l) => l.peer === 'alive', 'the secondary to hear the primary');

  const killedAt = Date.now();
  primary.child.kill('SIGKILL');
  const over = await secondary.waitLine((l) => /FAILED OVER/.test(String(l.msg)), 'the failover');
  const took = Date.now() - killedAt;
  // Heartbeat silence may have begun before the kill (a busy primary), so only an upper bound holds.
  assert.ok(took < 3000, `failed over only ${took} ms after the kill (heartbeat timeout 250 ms)`);
  assert.match(String(over.msg), /taking over as generation 2/);
  assert.ok(portOf(over.service) > 0);

  // The old primary comes back with its old generation: it must refuse to serve.
  const old = run(primaryArgs);
  const code = await old.closed;
  assert.equal(code, 1, old.stderr());
  assert.match(old.stderr(), /tandem: error: fenced: a node runs as primary with generation 2 \(this one: 1\); not serving the guest \[ERR_FENCED\]/);
  assert.ok(!old.lines.some((l) => /guest RESP service on/.test(String(l.msg))), 'the fenced primary never opened its service');
});
