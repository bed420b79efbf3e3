/**
 * The monitor's HTTP side: the dashboard's files (and nothing else from the
 * disk), /api/status, POST /api/control, and /metrics scraped and parsed as
 * Prometheus text exposition while a real engine checkpoints.
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { validateEvent, type ModeEvent, type SnapshotEvent } from '../../src/monitor/events.js';
import { TOKEN, TestClient, primaryRig, type PrimaryRig } from './helpers.js';
import { http, parseProm, type Res } from './scrape.js';

const rigs: PrimaryRig[] = [];
after(async () => {
  for (const r of rigs) await r.stop();
});

describe('monitor HTTP', () => {
  test('serves the dashboard and its assets with their content types, and nothing else', async () => {
    const r = await primaryRig();
    rigs.push(r);
    const page = await http(r.url, '/');
    assert.equal(page.status, 200);
    assert.equal(page.headers['content-type'], 'text/html; charset=utf-8');
    assert.match(page.body, /<script src="\/dashboard\.js"/);
    assert.match(String(page.headers['content-security-policy']), /script-src 'self'/);
    assert.equal(page.headers['x-content-type-options'], 'nosniff');
    for (const [path, type] of [
      ['/dashboard.js', 'text/javascript; charset=utf-8'],
      ['/dashboard.css', 'text/css; charset=utf-8'],
      ['/vendor/uPlot.iife.min.js', 'text/javascript; charset=utf-8'],
      ['/vendor/uPlot.min.css', 'text/css; charset=utf-8'],
    ]) {
      const res = await http(r.url, path);
      assert.equal(res.status, 200, path);
      assert.equal(res.headers['content-type'], type, path);
      assert.ok(res.body.length > 100, path);
    }
    assert.match((await http(r.url, '/vendor/uPlot.iife.min.js')).body, /uPlot/);
    const head = await http(r.url, '/dashboard.js', { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(head.body, '');
    for (const path of ['/../package.json', '/%2e%2e/package.json', '/vendor/../../package.json', '/vendor/uPlot.cjs.js', '/static/index.html', '/dashboard.js/..', '//etc/passwd', '/index.html%00.js']) {
      const res = await http(r.url, path);
      assert.equal(res.status, 404, path);
      assert.doesNotMatch(res.body, /"name": "tandem"|root:/, path);
    }
    assert.equal((await http(r.url, '/', { method: 'POST' })).status, 405);
    // DNS rebinding: a loopback monitor answers only to loopback host names.
    assert.equal((await http(r.url, '/api/status', { headers: { host: 'evil.example' } })).status, 421);
    assert.equal((await http(r.url, '/ws', { headers: { host: 'evil.example', connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-version': '13', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==' } })).status, 421);
    assert.equal((await http(r.url, '/api/status', { headers: { host: `localhost:${new URL(r.url).port}` } })).status, 200);
    assert.equal((await http(r.url, '/api/control')).status, 405);
  });

  test('/api/status is the snapshot; POST /api/control takes a Bearer token', async () => {
    const r = await primaryRig();
    rigs.push(r);
    const c = await TestClient.connect(r.wsUrl);
    await c.waitFor((e) => e.type === 'epoch', 'an epoch');
    const status = await http(r.url, '/api/status');
    assert.equal(status.status, 200);
    assert.equal(status.headers['content-type'], 'application/json');
    const snap = validateEvent(JSON.parse(status.body)) as SnapshotEvent;
    assert.equal(snap.type, 'snapshot');
    assert.equal(snap.state, 'protected');
    assert.ok(snap.lastEpoch >= 1);
    // The primary's epochs carry their protection session (the first here).
    assert.ok(snap.recent.length > 0 && snap.recent.every((e) => e.session === 1), JSON.stringify(snap.recent.slice(-2)));

    const refused = await http(r.url, '/api/control', { method: 'POST', body: '{"action":"set-interval","intervalMs":40}' });
    assert.equal(refused.status, 401);
    const refusal = validateEvent(JSON.parse(refused.body));
    assert.equal(refusal.type === 'error' && refusal.code, 'ERR_MONITOR_UNAUTHORIZED');
    const mode = c.next<ModeEvent>((e) => e.type === 'mode', 'the mode event');
    const ok = await http(r.url, '/api/control', { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` }, body: '{"action":"set-interval","intervalMs":40}' });
    assert.equal(ok.status, 200, ok.body);
    const done = validateEvent(JSON.parse(ok.body));
    assert.deepEqual(done.type === 'reply' && done.result, { intervalMs: 40 });
    assert.equal((await mode).intervalMs, 40);
    const bad = await http(r.url, '/api/control', { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` }, body: '{"action":' });
    assert.equal(bad.status, 400);
    const big = await http(r.url, '/api/control', { method: 'POST', body: 'x'.repeat(100_000) });
    assert.equal(big.status, 400);
    const unsupported = await http(r.url, '/api/control', { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` }, body: '{"action":"failover"}' });
    assert.equal(unsupported.status, 501);
    await c.close();
  });

  test('wrong tokens lock the address out of control, over HTTP and WebSocket, until the lockout ends', async () => {
    const clock = { now: 1_000_000 };
    const r = await primaryRig({ monitor: { auth: { token: TOKEN, allowRemoteRead: false, throttle: { maxFailures: 5, windowMs: 60_000, lockoutMs: 60_000, now: () => clock.now } } } });
    rigs.push(r);
    const c = await TestClient.connect(r.wsUrl);
    await c.waitFor((e) => e.type === 'snapshot', 'the snapshot');
    const post = (token: string): Promise<Res> => http(r.url, '/api/control', { method: 'POST', headers: { authorization: `Bearer ${token}` }, body: '{"action":"checkpoint"}' });
    for (let i = 0; i < 5; i++) assert.equal((await post(`guess-${i}`)).status, 401, `guess ${i}`);
    const locked = await post(TOKEN);
    assert.equal(locked.status, 429, locked.body);
    assert.equal(locked.headers['retry-after'], '60');
    const err = validateEvent(JSON.parse(locked.body));
    assert.equal(err.type === 'error' && err.code, 'ERR_MONITOR_RATE_LIMITED');
    // The WebSocket shares the budget: the right token is refused there too.
    const ws = await c.request({ type: 'control', action: 'checkpoint', token: TOKEN });
    assert.equal(ws.type === 'error' && ws.code, 'ERR_MONITOR_RATE_LIMITED');
    const audited = await c.waitFor((e) => e.type === 'control' && e.code === 'ERR_MONITOR_RATE_LIMITED', 'the audit of a refusal');
    assert.equal(audited.type === 'control' && audited.ok, false);
    clock.now += 60_000;
    const ok = await post(TOKEN);
    assert.equal(ok.status, 200, ok.body);
    await c.close();
  });

  test('/metrics parses as Prometheus text and agrees with the event stream', async () => {
    const r = await primaryRig();
    rigs.push(r);
    const c = await TestClient.connect(r.wsUrl);
    await c.waitFor((e) => e.type === 'epoch' && e.epoch >= 5, 'five epochs');
    r.divergence.next({ reason: 'divergence', request: { reason: 'mismatch', flow: 'a > b', detail: 'differs' } });
    await c.waitFor((e) => e.type === 'divergence', 'the divergence');
    await c.request({ type: 'control', action: 'checkpoint' }); // refused: no token
    await c.waitFor((e) => e.type === 'control', 'the audit event');
    const before = (JSON.parse((await http(r.url, '/api/status')).body) as SnapshotEvent).lastEpoch;
    const res = await http(r.url, '/metrics');
    const afterward = (JSON.parse((await http(r.url, '/api/status')).body) as SnapshotEvent).lastEpoch;
    assert.equal(res.status, 200);
    assert.match(String(res.headers['content-type']), /^text\/plain; version=0\.0\.4/);
    const { samples, types } = parseProm(res.body);
    const one = (name: string, labels: Record<string, string> = {}): number => {
      const found = samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
      assert.equal(found.length, 1, `${name} ${JSON.stringify(labels)}`);
      assert.equal(found[0].labels.node, 'primary');
      return found[0].value;
    };
    assert.equal(types.get('tandem_pause_seconds'), 'histogram');
    assert.equal(types.get('tandem_epoch_seconds'), 'histogram');
    for (const c of ['tandem_replicated_bytes_total', 'tandem_epochs_total', 'tandem_divergences_total', 'tandem_failovers_total']) assert.equal(types.get(c), 'counter', c);
    for (const g of ['tandem_state', 'tandem_replication_lag_seconds', 'tandem_monitor_clients']) assert.equal(types.get(g), 'gauge', g);

    // The monitor started before the engine: it counted every epoch.
    const epochs = one('tandem_epochs_total');
    assert.ok(epochs >= before && epochs <= afterward, `${before} <= ${epochs} <= ${afterward}`);
    assert.equal(one('tandem_pause_seconds_count'), epochs);
    assert.equal(one('tandem_pause_seconds_bucket', { le: '+Inf' }), epochs);
    const buckets = samples.filter((s) => s.name === 'tandem_pause_seconds_bucket').map((s) => s.value);
    for (let i = 1; i < buckets.length; i++) assert.ok(buckets[i] >= buckets[i - 1], 'cumulative buckets');
    assert.ok(one('tandem_pause_seconds_sum') > 0);
    assert.ok(one('tandem_replicated_bytes_total') > 0);
    assert.equal(one('tandem_divergences_total'), 1);
    assert.equal(one('tandem_failovers_total'), 0);
    assert.equal(one('tandem_control_actions_total', { action: 'checkpoint', ok: 'false' }), 1);
    assert.equal(one('tandem_state', { state: 'protected' }), 1);
    assert.equal(samples.filter((s) => s.name === 'tandem_state').reduce((a, s) => a + s.value, 0), 1, 'one state at a time');
    assert.ok(one('tandem_replication_lag_seconds') >= 0);
    assert.equal(one('tandem_monitor_clients'), 1);
    await c.close();
  });
});
