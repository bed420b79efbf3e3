/**
 * `tandem demo --arbiter etcd` with the real processes and a real etcd
 * (Debian's etcd-server; without it these tests fail, they never skip): the
 * secondary takes over the SIGKILLed primary through the arbiter, moving the
 * domain from generation 1 to 2, no acknowledged write is lost, and the
 * demo's etcd is gone when the demo is. An etcd that cannot start is one
 * clear error line at once.
 */
import assert from 'node:assert/strict';
import { readFileSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import type { DemoSummary } from '../../src/demo/run.js';
import { runTandem } from '../helpers/cli.js';

/** Whether something accepts connections on the loopback port. */
function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

describe('tandem demo --arbiter etcd', () => {
  test('the survivor takes the domain at generation 2 from the SIGKILLed primary; no acknowledged write is lost; etcd is stopped', { timeout: 120_000 }, async () => {
    const r = runTandem(['demo', '--arbiter', 'etcd', '--kill-primary-after', '1.5', '--duration', '3', '--memory-mib', '16', '--service', '127.0.0.1:0', '--json']);
    assert.equal(r.status, 0, r.stderr);
    const s = JSON.parse(r.stdout) as DemoSummary;
    try {
      assert.equal(s.arbiter, 'etcd');
      assert.equal(s.failed_over, true, r.stderr);
      assert.ok(s.failover_ms !== null, 'the survivor never answered');
      assert.ok(s.acked_writes > 100, `only ${s.acked_writes} acknowledged writes`);
      assert.equal(s.lost_acked_writes, 0, `logs in ${s.logs}`);
      assert.equal(s.primary_generation, 1);
      assert.equal(s.survivor_generation, 2);
      const etcdPort = Number(/^arbiter: etcd at 127\.0\.0\.1:(\d+) \(started for this demo\); the primary holds the domain at generation 1/m.exec(r.stderr)?.[1]);
      assert.ok(etcdPort > 0, r.stderr);
      assert.match(r.stderr, /^failed over: the secondary serves from epoch \d+ at generation 2 \(the arbiter moved the domain on from 1\)/m);
      // The node's own word, not the demo's reading of it: the claim went through etcd.
      const claim = readFileSync(join(s.logs, 'secondary.log'), 'utf8')
        .split('\n')
        .filter((l) => l.includes('took the domain'))
        .map((l) => JSON.parse(l) as { generation: number; from: number; msg: string });
      assert.equal(claim.length, 1, 'one claim');
      assert.deepEqual([claim[0].from, claim[0].generation], [1, 2]);
      assert.match(claim[0].msg, /from node primary, protected at 1/);
      assert.equal(await listening(etcdPort), false, "the demo's etcd outlived the demo");
    } finally {
      rmSync(s.logs, { recursive: true, force: true });
    }
  });

  test('an etcd that cannot start is one error line, at once', () => {
    const t0 = Date.now();
    const r = runTandem(['demo', '--arbiter', 'etcd', '--duration', '5', '--service', '127.0.0.1:0'], { env: { ...process.env, TANDEM_ETCD: '/nonexistent/etcd' } });
    assert.equal(r.status, 1, r.stderr);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /^tandem: error: demo --arbiter etcd: could not start a local etcd \(\/nonexistent\/etcd, Debian's etcd-server\): .*ENOENT.* \[ERR_ARBITER_UNREACHABLE\]\n$/);
    assert.ok(Date.now() - t0 < 10_000, `took ${Date.now() - t0} ms`);
  });
});
