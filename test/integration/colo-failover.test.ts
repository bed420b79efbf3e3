/**
 * COLO failover with the real processes: `tandem demo --mode colo` runs a
 * secondary and a primary in COLO mode, clients INCR counters through the
 * COLO front (the client ledger), and the primary is SIGKILLed; the
 * secondary goes on from its own guest's run and every increment a client
 * saw acknowledged is there.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { test } from 'node:test';
import type { DemoSummary } from '../../src/demo/run.js';
import { CLI } from '../helpers/cli.js';
import { uniform } from '../../src/util/xorshift.js';

// Two: this covers the demo's processes and the heartbeat-driven takeover; colo-ledger.test.ts covers many kill points.
const TRIALS = 2;

function demo(killAfterS: number): Promise<{ summary: DemoSummary; err: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, 'demo', '--mode', 'colo', '--json', '--service', '127.0.0.1:0', '--duration', String(killAfterS + 2), '--kill-primary-after', String(killAfterS), '--memory-mib', '16'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code !== 0) return reject(new Error(`demo exited ${code}:\n${err}`));
      resolve({ summary: JSON.parse(out) as DemoSummary, err });
    });
  });
}

test(`COLO: ${TRIALS} SIGKILLs of the primary lose no acknowledged write`, { timeout: 300_000 }, async () => {
  const rand = uniform(77);
  let acked = 0;
  for (let trial = 0; trial < TRIALS; trial++) {
    const killAfter = Math.round((1.5 + rand() * 2) * 10) / 10;
    const { summary, err } = await demo(killAfter);
    assert.equal(summary.mode, 'colo');
    assert.equal(summary.failed_over, true, `trial ${trial}: no failover\n${err}`);
    assert.equal(summary.lost_acked_writes, 0, `trial ${trial}: ${summary.lost_acked_writes} acknowledged increments lost (logs ${summary.logs})`);
    assert.ok(summary.acked_writes > 100, `trial ${trial}: only ${summary.acked_writes} acknowledged writes: the load did not get through COLO`);
    acked += summary.acked_writes;
    rmSync(summary.logs, { recursive: true, force: true });
  }
  assert.ok(acked > TRIALS * 1000);
});
