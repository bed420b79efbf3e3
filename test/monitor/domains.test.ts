/**
 * One monitor over several domains (issue 15): sources attached and
 * detached by name on a running server, events and snapshots stamped with
 * their domain, /metrics labelled per domain, control routed by `domain`,
 * /readyz over every domain. The sources are fakes: what is under test is
 * the monitor's routing, not a node.
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { defaultConfig } from '../../src/config/config.js';
import { MonitorError } from '../../src/monitor/errors.js';
import { validateEvent, type DomainsEvent, type NodeRole, type SnapshotEvent } from '../../src/monitor/events.js';
import { MonitorServer, type DomainReadiness } from '../../src/monitor/http.js';
import type { MonitorSource } from '../../src/monitor/source.js';
import { startSharedMonitor } from '../../src/monitor/wire.js';
import { FakeSource, TOKEN, TestClient, silent } from './helpers.js';
import { http, parseProm } from './scrape.js';

const servers: MonitorServer[] = [];
after(async () => {
  for (const s of servers) await s.stop();
});

async function shared(role: NodeRole = 'primary'): Promise<MonitorServer> {
  const server = new MonitorServer({ host: '127.0.0.1', port: 0, role, logger: silent, auth: { token: TOKEN, allowRemoteRead: false } });
  servers.push(server);
  await server.start();
  return server;
}

const auth = { authorization: `Bearer ${TOKEN}` };
const post = (url: string, body: unknown, headers: Record<string, string> = auth): ReturnType<typeof http> =>
  http(url, '/api/control', { method: 'POST', headers, body: JSON.stringify(body) });
const wsOf = (url: string): string => `${url.replace(/^http/, 'ws')}ws`;
const json = (body: string): Record<string, unknown> => JSON.parse(body) as Record<string, unknown>;

describe('a monitor of several domains', () => {
  test('attach after start: a client gets one snapshot per domain, and every event carries its domain', async () => {
    const server = await shared();
    const alpha = new FakeSource();
    const beta = new FakeSource('primary', 'connecting');
    await server.attach('alpha', alpha);
    const early = await TestClient.connect(wsOf(server.url));
    await early.waitFor((e) => e.type === 'snapshot' && e.domain === 'alpha', "alpha's snapshot");
    // A domain attached while a client is connected: it learns of it at once, snapshot first.
    await server.attach('beta', beta);
    const betaSnap = await early.waitFor<SnapshotEvent>((e) => e.type === 'snapshot' && e.domain === 'beta', "beta's snapshot, announced");
    assert.equal(betaSnap.state, 'connecting');
    assert.deepEqual(server.domains, ['alpha', 'beta']);
    assert.equal(alpha.started, 1);

    const c = await TestClient.connect(wsOf(server.url));
    const snaps = await Promise.all(['alpha', 'beta'].map((d) => c.waitFor<SnapshotEvent>((e) => e.type === 'snapshot' && e.domain === d, `${d}'s snapshot`)));
    assert.deepEqual(
      snaps.map((s) => [s.domain, s.state, s.actions]),
      [
        ['alpha', 'protected', ['checkpoint', 'set-interval']],
        ['beta', 'connecting', ['checkpoint', 'set-interval']],
      ],
    );
    beta.become('protected');
    alpha.become('degraded');
    const b = await c.waitFor((e) => e.type === 'state' && e.state === 'protected', "beta's state");
    const a = await c.waitFor((e) => e.type === 'state' && e.state === 'degraded', "alpha's state");
    assert.equal(b.type === 'state' && b.domain, 'beta');
    assert.equal(a.type === 'state' && a.domain, 'alpha');
    assert.ok(a.type === 'state' && b.type === 'state' && a.seq === b.seq + 1, 'one sequence over every domain');
    // Each domain's history holds its own events only.
    const late = await TestClient.connect(wsOf(server.url));
    const histories = await Promise.all(['alpha', 'beta'].map((d) => late.waitFor<SnapshotEvent>((e) => e.type === 'snapshot' && e.domain === d, d)));
    assert.deepEqual(
      histories.map((s) => s.history.map((h) => [h.domain, h.type === 'state' && h.state])),
      [[['alpha', 'degraded']], [['beta', 'protected']]],
    );
    await Promise.all([early.close(), c.close(), late.close()]);
  });

  test('/metrics: every node series labelled by domain, the process series once and unlabelled; detach takes its series, snapshot and target away', async () => {
    const server = await shared();
    const alpha = new FakeSource();
    const beta = new FakeSource('primary', 'degraded');
    await server.attach('alpha', alpha);
    const detachBeta = await server.attach('beta', beta);
    alpha.events$.next({ type: 'epoch', epoch: 8, trigger: 'timer', pauseUs: 100, dirtyPages: 1, bytes: 4096, sendMs: 1, ackMs: 1, totalMs: 2, applyMs: null, session: 1 });
    const text = (await http(server.url, '/metrics', { headers: auth })).body;
    const { samples } = parseProm(text);
    const helps = text.split('\n').filter((l) => l.startsWith('# HELP '));
    assert.equal(new Set(helps).size, helps.length, 'each family once, whatever the number of domains');
    const of = (name: string): Record<string, string>[] => samples.filter((s) => s.name === name).map((s) => s.labels);
    assert.deepEqual(
      of('tandem_state').filter((l) => l.state === 'protected').map((l) => l.domain),
      ['alpha', 'beta'],
    );
    assert.equal(samples.find((s) => s.name === 'tandem_state' && s.labels.domain === 'beta' && s.labels.state === 'degraded')?.value, 1);
    assert.equal(samples.find((s) => s.name === 'tandem_epochs_total' && s.labels.domain === 'alpha')?.value, 1);
    assert.equal(samples.find((s) => s.name === 'tandem_epochs_total' && s.labels.domain === 'beta')?.value, 0);
    for (const name of ['tandem_build_info', 'tandem_monitor_clients', 'process_cpu_seconds_total']) {
      const labels = of(name);
      assert.ok(labels.length >= 1, name);
      assert.ok(labels.every((l) => l.domain === undefined), `${name}: a process series, unlabelled by domain`);
    }

    const watching = await TestClient.connect(wsOf(server.url));
    await watching.waitFor((e) => e.type === 'snapshot' && e.domain === 'beta', "beta's snapshot");
    await detachBeta();
    await detachBeta();
    const gone = await watching.waitFor((e) => e.type === 'detached', 'beta taken off');
    assert.equal(gone.type === 'detached' && gone.domain, 'beta');
    await watching.close();
    assert.equal(beta.stopped, 1, 'the source is stopped once');
    const after = parseProm((await http(server.url, '/metrics', { headers: auth })).body).samples;
    assert.ok(after.some((s) => s.labels.domain === 'alpha'));
    assert.ok(!after.some((s) => s.labels.domain === 'beta'), "beta's series are gone");
    const status = validateEvent(json((await http(server.url, '/api/status', { headers: auth })).body));
    assert.equal(status.type === 'snapshot' && status.domain, 'alpha', 'one domain left: its snapshot, as a monitor of one node answers');
    const c = await TestClient.connect(wsOf(server.url));
    await c.waitFor((e) => e.type === 'snapshot', 'the snapshot');
    assert.deepEqual(c.events.filter((e) => e.type === 'snapshot').map((e) => e.type === 'snapshot' && e.domain), ['alpha']);
    const refused = await post(server.url, { action: 'checkpoint', domain: 'beta' });
    assert.equal(refused.status, 404);
    assert.equal(json(refused.body).code, 'ERR_MONITOR_UNKNOWN_DOMAIN');
    assert.deepEqual(beta.calls, []);
    await c.close();
  });

  test('control: `domain` required with several, routed to that domain alone, bounded and checked', async () => {
    const server = await shared();
    const alpha = new FakeSource();
    const beta = new FakeSource();
    await server.attach('alpha', alpha);
    await server.attach('beta', beta);
    const c = await TestClient.connect(wsOf(server.url));

    const bare = await post(server.url, { action: 'checkpoint' });
    assert.equal(bare.status, 400);
    assert.equal(json(bare.body).code, 'ERR_MONITOR_DOMAIN_REQUIRED');
    assert.match(String(json(bare.body).message), /alpha, beta/);

    const ok = await post(server.url, { action: 'set-interval', intervalMs: 40, domain: 'beta' });
    assert.equal(ok.status, 200, ok.body);
    assert.deepEqual([alpha.calls, beta.calls], [[], ['interval 40']]);
    const audit = await c.waitFor((e) => e.type === 'control' && e.ok, 'the audit line');
    assert.equal(audit.type === 'control' && audit.domain, 'beta');

    const overWs = await c.request({ type: 'control', action: 'checkpoint', domain: 'alpha', token: TOKEN });
    assert.equal(overWs.type, 'reply');
    assert.deepEqual([alpha.calls, beta.calls], [['checkpoint'], ['interval 40']]);
    const wsBare = await c.request({ type: 'control', action: 'checkpoint', token: TOKEN });
    assert.equal(wsBare.type === 'error' && wsBare.code, 'ERR_MONITOR_DOMAIN_REQUIRED');

    const cases: [unknown, number, string, RegExp][] = [
      [5, 400, 'ERR_MONITOR_BAD_MESSAGE', /domain: expected a string/],
      [null, 400, 'ERR_MONITOR_BAD_MESSAGE', /domain: expected a string/],
      ['x'.repeat(64), 400, 'ERR_MONITOR_BAD_MESSAGE', /at most 63/],
      ['no such!', 400, 'ERR_MONITOR_BAD_MESSAGE', /expected a name/],
      ['gamma', 404, 'ERR_MONITOR_UNKNOWN_DOMAIN', /no domain gamma \(it shows: alpha, beta\)/],
    ];
    for (const [domain, status, code, message] of cases) {
      const res = await post(server.url, { action: 'checkpoint', domain });
      assert.equal(res.status, status, `${JSON.stringify(domain)}: ${res.body}`);
      assert.equal(json(res.body).code, code);
      assert.match(String(json(res.body).message), message);
      const ws = await c.request({ type: 'control', action: 'checkpoint', domain, token: TOKEN });
      assert.equal(ws.type === 'error' && ws.code, code, JSON.stringify(domain));
    }
    // Without the token, the names of the domains are not told.
    const anonymous = await post(server.url, { action: 'checkpoint', domain: 'gamma' }, {});
    assert.equal(anonymous.status, 401);
    assert.doesNotMatch(anonymous.body, /alpha/);
    assert.deepEqual([alpha.calls, beta.calls], [['checkpoint'], ['interval 40']], 'no refused request reached a node');
    await c.close();
  });

  test('/api/status by domain, every domain without one; status requests over the WebSocket alike', async () => {
    const server = await shared();
    await server.attach('alpha', new FakeSource());
    await server.attach('beta', new FakeSource('primary', 'precopy'));
    const all = validateEvent(json((await http(server.url, '/api/status?brief=1', { headers: auth })).body)) as DomainsEvent;
    assert.equal(all.type, 'domains');
    assert.deepEqual(all.domains.map((s) => [s.domain, s.state, s.history.length]), [['alpha', 'protected', 0], ['beta', 'precopy', 0]]);
    const beta = validateEvent(json((await http(server.url, '/api/status?domain=beta', { headers: auth })).body));
    assert.equal(beta.type === 'snapshot' && beta.domain, 'beta');
    const unknown = await http(server.url, '/api/status?domain=gamma', { headers: auth });
    assert.equal(unknown.status, 404);
    assert.equal(json(unknown.body).code, 'ERR_MONITOR_UNKNOWN_DOMAIN');
    for (const query of ['domain=a&domain=b', `domain=${'y'.repeat(70)}`, 'domain=%22']) {
      const bad = await http(server.url, `/api/status?${query}`, { headers: auth });
      assert.equal(bad.status, 400, query);
      assert.equal(json(bad.body).code, 'ERR_MONITOR_BAD_MESSAGE');
    }
    const c = await TestClient.connect(wsOf(server.url));
    const reply = await c.request({ type: 'status', domain: 'alpha' });
    assert.equal(reply.type === 'reply' && (reply.result as { domain?: string }).domain, 'alpha');
    const every = await c.request({ type: 'status' });
    assert.equal(every.type === 'reply' && (every.result as { type?: string }).type, 'domains');
    await c.close();
  });

  test('/readyz: ready when every domain is, each one listed; none shown is not ready', async () => {
    const server = await shared('secondary');
    const none = await http(server.url, '/readyz');
    assert.equal(none.status, 503);
    assert.deepEqual(json(none.body).domains, []);
    assert.equal((await http(server.url, '/healthz')).status, 200, 'alive all the same');
    const alpha = new FakeSource('secondary', 'standby');
    const beta = new FakeSource('secondary', 'syncing');
    await server.attach('alpha', alpha);
    await server.attach('beta', beta);
    const half = await http(server.url, '/readyz');
    assert.equal(half.status, 503);
    const body = json(half.body) as { ready: boolean; reason: string; domains: DomainReadiness[] };
    assert.deepEqual(body.domains.map((d) => [d.domain, d.ready, d.state]), [['alpha', true, 'standby'], ['beta', false, 'syncing']]);
    assert.match(body.reason, /^1 of 2 domains not ready: beta \(syncing\)$/);
    beta.become('standby');
    const ready = await http(server.url, '/readyz');
    assert.equal(ready.status, 200);
    assert.equal(json(ready.body).reason, 'all 2 domains are ready');
  });

  test('attach refuses a name already shown, a name the arbiter would not take, and a node of the other role', async () => {
    const server = await shared();
    await server.attach('alpha', new FakeSource());
    const refused = async (domain: string, source: MonitorSource, code: string): Promise<void> => {
      await assert.rejects(server.attach(domain, source), (err: unknown) => err instanceof MonitorError && err.code === code);
    };
    const twice = new FakeSource();
    await refused('alpha', twice, 'ERR_MONITOR_DOMAIN_ATTACHED');
    assert.equal(twice.started, 0, 'the refused source is not started');
    await refused('', new FakeSource(), 'ERR_MONITOR_BAD_OPTIONS');
    await refused('a b', new FakeSource(), 'ERR_MONITOR_BAD_OPTIONS');
    await refused('z'.repeat(64), new FakeSource(), 'ERR_MONITOR_BAD_OPTIONS');
    await refused('beta', new FakeSource('secondary', 'standby'), 'ERR_MONITOR_BAD_OPTIONS');
    assert.deepEqual(server.domains, ['alpha']);
  });
});

describe('the pair over several domains', () => {
  test("each domain reads its peer under its own name on the other process's monitor", async () => {
    const secondaries = await shared('secondary');
    await secondaries.attach('x', new FakeSource('secondary', 'standby'));
    await secondaries.attach('y', new FakeSource('secondary', 'syncing'));
    const primaries = new MonitorServer({ host: '127.0.0.1', port: 0, role: 'primary', logger: silent, auth: { token: TOKEN, allowRemoteRead: false }, peer: { url: secondaries.url, token: TOKEN, intervalMs: 50 } });
    servers.push(primaries);
    await primaries.start();
    await primaries.attach('x', new FakeSource());
    await primaries.attach('y', new FakeSource());
    await primaries.attach('z', new FakeSource());
    const c = await TestClient.connect(wsOf(primaries.url));
    const peerOf = (d: string) => c.waitFor((e) => e.type === 'peer' && e.domain === d, `${d}'s peer`);
    const [x, y, z] = await Promise.all([peerOf('x'), peerOf('y'), peerOf('z')]);
    assert.deepEqual(
      [x, y].map((e) => e.type === 'peer' && [e.domain, e.reachable, e.peer.node, e.peer.state]),
      [
        ['x', true, 'secondary', 'standby'],
        ['y', true, 'secondary', 'syncing'],
      ],
    );
    // A domain the other process does not run: its peer is unreachable, and says why.
    assert.ok(z.type === 'peer' && !z.reachable);
    assert.match(z.type === 'peer' ? (z.error ?? '') : '', /no domain z \(it shows: x, y\)/);
    await c.close();
  });
});

describe('startSharedMonitor', () => {
  test('none without monitor.listen; else a monitor listening with no domain, that nodes attach to and detach from', async () => {
    const cfg = defaultConfig().monitor;
    assert.equal(await startSharedMonitor({ ...cfg, listen: undefined }, silent, 'primary'), undefined);
    const monitor = await startSharedMonitor({ ...cfg, listen: { host: '127.0.0.1', port: 0 }, token: TOKEN }, silent, 'primary');
    assert.ok(monitor !== undefined);
    try {
      assert.deepEqual(monitor.domains, []);
      assert.equal((await http(monitor.url, '/healthz')).status, 200);
      const one = new FakeSource();
      const detach = await monitor.attach('one', one);
      await monitor.attach('two', new FakeSource('primary', 'degraded'));
      const text = (await http(monitor.url, '/metrics')).body;
      assert.match(text, /^tandem_state\{state="protected",node="primary",domain="one"\} 1$/m);
      assert.match(text, /^tandem_state\{state="degraded",node="primary",domain="two"\} 1$/m);
      await detach();
      assert.deepEqual(monitor.domains, ['two']);
      assert.equal(one.stopped, 1);
    } finally {
      await monitor.stop();
    }
    assert.deepEqual(monitor.domains, [], 'stopped: every domain taken off');
  });
});
