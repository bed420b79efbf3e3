/**
 * The hybrid policy with the real processes: TIME answered differently by
 * the two replicas in a tight loop makes every request diverge; the primary
 * falls back to periodic checkpoints (Remus within COLO), says why, keeps
 * answering, and returns to COLO once the divergences stop.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { test } from 'node:test';
import { cluster } from '../../src/bench/cluster.js';
import { REDIS_BENCHMARK, requireRedisTools } from '../guest/helpers.js';

test('COLO falls back to periodic checkpoints while divergences are frequent, and returns when they calm', { timeout: 120_000 }, async () => {
  requireRedisTools();
  const c = await cluster('colo', 25);
  try {
    const lines: Record<string, unknown>[] = [];
    c.primary.lines((l) => lines.push(l));
    const switched = (mode: string): Promise<Record<string, unknown>> =>
      new Promise((resolve) => {
        const found = lines.find((l) => l.mode === mode && /replication mode/.test(String(l.msg)));
        if (found) return resolve(found);
        c.primary.lines((l) => {
          if (l.mode === mode && /replication mode/.test(String(l.msg))) resolve(l);
        });
      });
    const toRemus = switched('remus');
    const out = await new Promise<{ code: number | null; text: string }>((resolve) => {
      const b = spawn(REDIS_BENCHMARK, ['-p', String(c.port), '-n', '1500', '-c', '4', 'TIME'], { stdio: ['ignore', 'pipe', 'pipe'] });
      let text = '';
      b.stdout.on('data', (d: Buffer) => (text += d.toString()));
      b.on('close', (code) => resolve({ code, text }));
    });
    assert.equal(out.code, 0, out.text);
    const remus = await toRemus;
    assert.match(String(remus.reason), /divergences in 1000 ms \(more than 20\)/);
    // Quiet now: after the calm period the primary goes back to COLO.
    const colo = await switched('colo');
    assert.match(String(colo.reason), /divergences calmed/);
  } finally {
    await c.stop();
  }
});
