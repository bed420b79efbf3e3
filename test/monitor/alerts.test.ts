/**
 * The example alert rules (examples/prometheus/): Prometheus's own promtool
 * checks them and runs their unit tests, and every tandem_* metric they use
 * is one a real primary or secondary exports. promtool comes with Debian's
 * `prometheus` package (package.json tandem.debianTestPackages): the test
 * fails, never skips, without it.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { TestClient, primaryRig, type PrimaryRig } from './helpers.js';
import { http, parseProm } from './scrape.js';

const PROMTOOL = '/usr/bin/promtool';
const DIR = fileURLToPath(new URL('../../../examples/prometheus/', import.meta.url));
const RULES = 'tandem-alerts.yml';

function promtool(...args: string[]): { status: number | null; out: string } {
  assert.ok(existsSync(PROMTOOL), `promtool is missing (${PROMTOOL}); install it: apt-get install -y --no-install-recommends prometheus`);
  const r = spawnSync(PROMTOOL, args, { cwd: DIR, encoding: 'utf8', timeout: 120_000 });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

const rigs: PrimaryRig[] = [];
after(async () => {
  for (const r of rigs) await r.stop();
});

test('promtool accepts the example rules and their unit tests pass', () => {
  const check = promtool('check', 'rules', RULES);
  assert.equal(check.status, 0, check.out);
  assert.match(check.out, /SUCCESS: 5 rules found/);
  const unit = promtool('test', 'rules', 'tandem-alerts.test.yml');
  assert.equal(unit.status, 0, unit.out);
  assert.match(unit.out, /SUCCESS/);
});

test('promtool refuses a broken rule (the check is not a formality)', () => {
  assert.ok(existsSync(PROMTOOL), `promtool is missing (${PROMTOOL}); install it: apt-get install -y --no-install-recommends prometheus`);
  const r = spawnSync(PROMTOOL, ['check', 'rules', '/dev/stdin'], { input: 'groups:\n  - name: x\n    rules:\n      - alert: Bad\n        expr: tandem_peer_up ==\n', encoding: 'utf8', timeout: 120_000 });
  assert.equal(r.status, 1, `${r.stdout}${r.stderr}`);
  assert.match(`${r.stdout}${r.stderr}`, /FAILED|parse error/);
});

test('every tandem metric the rules use is one a real primary or secondary exports', async () => {
  const used = new Set(readFileSync(`${DIR}${RULES}`, 'utf8').match(/\btandem_[a-z_]+/g) ?? []);
  assert.ok(used.size >= 5, [...used].join(' '));
  const r = await primaryRig();
  rigs.push(r);
  const c = await TestClient.connect(r.wsUrl);
  await c.waitFor((e) => (e.type === 'state' || e.type === 'snapshot') && e.state === 'protected', 'protection');
  await c.waitFor((e) => e.type === 'epoch', 'an epoch');
  const exported = new Set<string>();
  for (const url of [r.url, r.secondaryMonitor.url]) {
    const res = await http(url, '/metrics');
    assert.equal(res.status, 200);
    for (const name of parseProm(res.body).types.keys()) exported.add(name);
  }
  for (const name of used) assert.ok(exported.has(name), `${name} is used by the rules but exported by neither node`);
  await c.close();
});
