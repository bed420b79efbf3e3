/**
 * `tandem primary` and `tandem secondary` with `domains:` as real processes
 * over mutual TLS: two sim domains, each with its own services, stream and
 * heartbeat channel; clients write to both; the primary process is killed
 * (SIGKILL) and the secondary fails each domain over on its own, losing no
 * acknowledged write on either. Flags that name one domain's address are
 * refused with domains:, and the exit status follows how the domains ended.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { after, describe, test } from 'node:test';
import { stringify } from 'yaml';
import { freePort } from '../../src/arbiter/local-etcd.js';
import { domainsExitStatus } from '../../src/cli/domains.js';
import { monitorUrlOf } from '../../src/monitor/wire.js';
import { expectOneErrorLine, runTandem, tempDir } from '../helpers/cli.js';
import { spawnTandem } from '../helpers/proc.js';
import { SplitLedger } from '../helpers/split-ledger.js';
import { tlsArgs } from '../helpers/tls.js';
import { until } from '../helpers/wait.js';

const tmp = tempDir();
after(() => tmp.cleanup());

const NAMES = ['alpha', 'beta'] as const;

interface DomainPorts {
  name: string;
  listen: number;
  primaryService: number;
  secondaryService: number;
}

/** Whether `port` can be listened on now. */
function bindable(port: number): Promise<boolean> {
  const server = createServer();
  return new Promise((resolve) => {
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/** A free port whose next one is free too: the secondary's listener and its heartbeat channel (listen + 1). */
async function freePair(): Promise<number> {
  for (;;) {
    const port = await freePort();
    if (port < 65535 && (await bindable(port + 1))) return port;
  }
}

/** A two-domain file for both processes, every port free, and what each domain was given. */
async function domainsFile(): Promise<{ file: string; ports: DomainPorts[] }> {
  const ports: DomainPorts[] = [];
  for (const name of NAMES) {
    const listen = await freePair();
    ports.push({ name, listen, primaryService: await freePort(), secondaryService: await freePort() });
  }
  const doc = {
    log_level: 'info',
    // Two domains' pre-copies share each process's event loop on a busy machine: heartbeats get slack.
    heartbeat: { interval_ms: 50, timeout_ms: 1000 },
    domain: { type: 'sim', memory_mib: 4, disk_mib: 1 },
    primary: { interval_ms: 20, retry_ms: 100 },
    domains: ports.map((p, i) => ({
      name: p.name,
      ...(i === 1 ? { domain: { memory_mib: 8 } } : {}),
      primary: { secondary: `127.0.0.1:${p.listen}`, service: `127.0.0.1:${p.primaryService}`, ...(i === 1 ? { interval_ms: 30 } : {}) },
      secondary: { listen: `127.0.0.1:${p.listen}`, service: `127.0.0.1:${p.secondaryService}` },
    })),
  };
  const file = tmp.path(`domains-${ports[0].listen}.yaml`);
  writeFileSync(file, stringify(doc));
  return { file, ports };
}

const ledgerFor = (p: DomainPorts): SplitLedger =>
  new SplitLedger({
    targets: [
      { node: 'primary', host: '127.0.0.1', port: p.primaryService },
      { node: 'secondary', host: '127.0.0.1', port: p.secondaryService },
    ],
    keys: 3,
    prefix: p.name,
    requestTimeoutMs: 1500,
    slackMs: 300,
    hopMs: 0,
    thinkMs: 5,
  });

describe('tandem primary / secondary with domains:', () => {
  test('two domains as processes: both protected; the primary killed, each domain fails over on its own with every acknowledged write', async () => {
    const { file, ports } = await domainsFile();
    const secondary = spawnTandem(['secondary', '--config', file, '--monitor', '127.0.0.1:0', ...(await tlsArgs('secondary'))]);
    await secondary.waitLine((l) => /2 of 2 domains running/.test(String(l.msg)), 'both secondary domains');
    const primary = spawnTandem(['primary', '--config', file, '--monitor', '127.0.0.1:0', ...(await tlsArgs('primary'))]);
    for (const name of NAMES) await primary.waitLine((l) => l.domain === name && l.state === 'protected', `${name} protected`);
    // One monitor per process lists every domain: its status, its series labelled by domain.
    const primaryMonitor = monitorUrlOf(await primary.waitLine((l) => monitorUrlOf(l) !== undefined, "the primary's monitor"))!;
    const secondaryMonitor = monitorUrlOf(secondary.lines.find((l) => monitorUrlOf(l) !== undefined)!)!;
    const shown = async (url: string): Promise<Map<string, string>> => {
      const body = (await (await fetch(new URL('api/status', url))).json()) as { type: string; domains: { domain: string; state: string }[] };
      assert.equal(body.type, 'domains');
      return new Map(body.domains.map((d) => [d.domain, d.state]));
    };
    await until(async () => [...(await shown(primaryMonitor)).values()].filter((s) => s === 'protected').length === 2, "both domains protected on the primary's monitor", 30_000, 100);
    assert.deepEqual([...(await shown(primaryMonitor)).keys()].sort(), [...NAMES]);
    const metrics = await (await fetch(new URL('metrics', primaryMonitor))).text();
    for (const name of NAMES) assert.match(metrics, new RegExp(`^tandem_state\\{(?=[^}]*domain="${name}")(?=[^}]*state="protected")[^}]*\\} 1$`, 'm'), name);

    const ledgers = ports.map(ledgerFor);
    for (const l of ledgers) l.start();
    try {
      await until(() => ledgers.every((l) => l.status().perNode.primary >= 30), 'writes acknowledged on both domains', 30_000);
      // Each domain's own data: alpha's counters are not beta's.
      primary.child.kill('SIGKILL');
      await primary.closed;
      for (const name of NAMES) await secondary.waitLine((l) => l.domain === name && /FAILED OVER/.test(String(l.msg)), `${name} failed over`);
      await until(() => ledgers.every((l) => (l.status().perNode.secondary ?? 0) >= 10), 'writes acknowledged by both promoted domains', 30_000);
      for (const [i, ledger] of ledgers.entries()) {
        const verdict = await ledger.verify(3000);
        assert.deepEqual(verdict.anomalies, [], NAMES[i]);
        assert.equal(verdict.lostAckedWrites, 0, `${NAMES[i]}: ${JSON.stringify(verdict)}`);
        assert.deepEqual(verdict.answered, ['secondary'], NAMES[i]);
        assert.ok(verdict.acked > 0);
      }
    } finally {
      for (const l of ledgers) l.stop();
    }
    // Each domain was promoted by its own node: one takeover line each, from its own replica.
    const takeovers = secondary.lines.filter((l) => /FAILED OVER/.test(String(l.msg)));
    assert.deepEqual(takeovers.map((l) => l.domain).sort(), [...NAMES]);
    // And the secondary's one monitor says so of each.
    assert.deepEqual(await shown(secondaryMonitor), new Map(NAMES.map((n) => [n, 'failed-over'])));
    secondary.child.kill('SIGTERM');
    assert.equal(await secondary.closed, 0, 'stopped in order on SIGTERM');
  });

  test('flags naming one domain are refused with domains: (exit status 2); config check lists the domains', async () => {
    const { file } = await domainsFile();
    const cases: [string[], RegExp][] = [
      [['primary', '--config', file, '--service', '127.0.0.1:6399'], /--service names one domain's primary\.service, and .* lists domains: set primary\.service in each entry of domains: instead/],
      [['primary', '--config', file, '--secondary', '127.0.0.1:7700'], /--secondary names one domain's primary\.secondary/],
      [['primary', '--config', file, '--interval', '10'], /--interval names one domain's primary\.interval_ms/],
      [['primary', '--config', file, '--colo-net', '127.0.0.1:7702'], /--colo-net names one domain's colo\.net/],
      [['secondary', '--config', file, '--listen', '127.0.0.1:7700'], /--listen names one domain's secondary\.listen/],
      [['secondary', '--config', file, '--service', '127.0.0.1:6380'], /--service names one domain's secondary\.service/],
    ];
    for (const [args, pattern] of cases) assert.match(expectOneErrorLine(args, 2, pattern), /\[ERR_CLI_USAGE\]$/);
    const check = runTandem(['config', 'check', file]);
    assert.equal(check.status, 0, check.stderr);
    assert.match(check.stdout, /2 domains, each with its own addresses \(domains:\): alpha, beta/);
  });

  test('the exit status: 3 only when every domain ended because another node serves it, 1 when one failed to start, else 0', () => {
    assert.equal(domainsExitStatus(['fenced', 'fenced']), 3);
    assert.equal(domainsExitStatus(['fenced', 'refused']), 3);
    assert.equal(domainsExitStatus(['fenced', 'stopped']), 0);
    assert.equal(domainsExitStatus(['fenced', 'switchover']), 0);
    assert.equal(domainsExitStatus(['stopped', 'stopped']), 0);
    assert.equal(domainsExitStatus(['failed', 'stopped']), 1);
    assert.equal(domainsExitStatus(['failed', 'fenced']), 1);
    assert.equal(domainsExitStatus([]), 0);
  });
});
