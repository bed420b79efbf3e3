/**
 * Day-two operations over real HTTP: /healthz and /readyz as each node's
 * state moves (under the read policy /metrics has), the metrics a
 * Prometheus server scrapes (build, process, per-role states and names,
 * peer, generation, unprotected time, held output), and the pre-copy's
 * progress on the stream, in the snapshot and in the gauges. Real engines,
 * secondaries and nodes; nothing is faked.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, describe, test } from 'node:test';
import { filter, firstValueFrom } from 'rxjs';
import { createBinding } from '../../src/domain/bindings.js';
import { PRIMARY_STATES, SECONDARY_STATES, type PrecopyEvent, type SnapshotEvent, type StateEvent } from '../../src/monitor/events.js';
import type { Readiness } from '../../src/monitor/health.js';
import type { DomainReadiness } from '../../src/monitor/http.js';

type ReadyzBody = Readiness & { domain?: string; domains?: DomainReadiness[] };
import { monitorUrlOf } from '../../src/monitor/wire.js';
import { PrimaryNode } from '../../src/node/primary.js';
import { SecondaryNode } from '../../src/node/secondary.js';
import { ask } from '../guest/helpers.js';
import { MemoryTransport } from '../helpers/memory-transport.js';
import { until } from '../helpers/wait.js';
import { nodeConfig } from '../node/helpers.js';
import { TOKEN, TestClient, capturingLogger, primaryRig, type PrimaryRig } from './helpers.js';
import { http, parseProm, type Sample } from './scrape.js';

const stops: (() => Promise<void>)[] = [];
after(async () => {
  for (const s of stops.reverse()) await s();
});

async function rig(opts: Parameters<typeof primaryRig>[0] = {}): Promise<PrimaryRig> {
  const r = await primaryRig(opts);
  stops.push(() => r.stop());
  return r;
}

const readyz = async (url: string, headers: Record<string, string> = {}): Promise<{ status: number; body: ReadyzBody }> => {
  const res = await http(url, '/readyz', { headers });
  assert.equal(res.headers['content-type'], 'application/json');
  assert.equal(res.headers['cache-control'], 'no-store');
  return { status: res.status, body: JSON.parse(res.body) as ReadyzBody };
};

interface Scrape {
  samples: Sample[];
  types: Map<string, string>;
  /** The one sample of `name` with `labels`; undefined when there is none (fails on several). */
  get(name: string, labels?: Record<string, string>): number | undefined;
  /** As get, and it must be there. */
  one(name: string, labels?: Record<string, string>): number;
}

async function scrape(url: string, node: 'primary' | 'secondary'): Promise<Scrape> {
  const res = await http(url, '/metrics');
  assert.equal(res.status, 200, res.body);
  const { samples, types } = parseProm(res.body);
  for (const s of samples) assert.equal(s.labels.node, node, `${s.name} is labelled with its node`);
  const get = (name: string, labels: Record<string, string> = {}): number | undefined => {
    const found = samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
    assert.ok(found.length <= 1, `one ${name} ${JSON.stringify(labels)}`);
    return found[0]?.value;
  };
  const one = (name: string, labels: Record<string, string> = {}): number => {
    const v = get(name, labels);
    assert.notEqual(v, undefined, `${name} ${JSON.stringify(labels)} is exported`);
    return v!;
  };
  return { samples, types, get, one };
}

const names = (s: Scrape, prefix: string): string[] => [...new Set(s.samples.filter((x) => x.name.startsWith(prefix)).map((x) => x.name))].sort();

describe('health and readiness', () => {
  test('/healthz answers while the monitor runs; /readyz follows protection on the primary and the replica on the secondary, saying why', async () => {
    const r = await rig({ startEngine: false });
    const health = await http(r.url, '/healthz');
    assert.equal(health.status, 200);
    const h = JSON.parse(health.body) as { ok: boolean; node: string; uptimeSeconds: number };
    assert.equal(h.ok, true);
    assert.equal(h.node, 'primary');
    assert.ok(Number.isInteger(h.uptimeSeconds) && h.uptimeSeconds >= 0);

    // Not started: the primary is not protecting anything, the secondary has no replica.
    const stopped = await readyz(r.url);
    assert.equal(stopped.status, 503);
    assert.deepEqual(
      { ...stopped.body, reason: undefined, domains: undefined },
      { ready: false, node: 'primary', state: 'stopped', domain: 'guest', reason: undefined, domains: undefined },
    );
    assert.deepEqual(stopped.body.domains, [{ ready: false, node: 'primary', state: 'stopped', domain: 'guest', reason: stopped.body.reason }], 'one domain: the list holds it alone');
    assert.match(stopped.body.reason, /^protection is stopped \(not started\)$/);
    const waiting = await readyz(r.secondaryMonitor.url);
    assert.equal(waiting.status, 503);
    assert.equal(waiting.body.state, 'waiting');
    assert.match(waiting.body.reason, /no primary is streaming/);

    const c = await TestClient.connect(r.wsUrl);
    const s = await TestClient.connect(`${r.secondaryMonitor.url.replace(/^http/, 'ws')}ws`);
    r.engine.start();
    await c.waitFor((e) => e.type === 'state' && e.state === 'protected', 'protection');
    await s.waitFor((e) => (e.type === 'state' || e.type === 'snapshot') && e.state === 'standby', 'the standby');
    const ready = await readyz(r.url);
    assert.equal(ready.status, 200);
    assert.equal(ready.body.ready, true);
    assert.match(ready.body.reason, /^the guest is protected \(session \d+: the secondary at 127\.0\.0\.1:\d+ holds each epoch before its output leaves\)$/);
    const standby = await readyz(r.secondaryMonitor.url);
    assert.equal(standby.status, 200);
    assert.match(standby.body.reason, /^standing by with a complete checkpoint/);
    const head = await http(r.url, '/readyz', { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(head.body, '', 'HEAD: the status without the body');

    // An operator stops protection: the guest runs on, unprotected, and the primary is not ready.
    const stop = await http(r.url, '/api/control', { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` }, body: '{"action":"stop-protection"}' });
    assert.equal(stop.status, 200, stop.body);
    await c.waitFor((e) => e.type === 'state' && e.state === 'stopped', 'the stop');
    const after = await readyz(r.url);
    assert.equal(after.status, 503);
    assert.equal(after.body.state, 'stopped');
    assert.equal((await http(r.url, '/healthz')).status, 200, 'alive all the same');
    await c.close();
    await s.close();
  });

  test('with loopback reads closed, /healthz and /readyz need the token as /metrics does', async () => {
    const r = await rig({ startEngine: false, monitor: { auth: { token: TOKEN, allowRemoteRead: false, loopbackRead: false } } });
    for (const path of ['/healthz', '/readyz', '/metrics']) {
      const refused = await http(r.url, path);
      assert.equal(refused.status, 401, path);
      assert.equal(refused.headers['www-authenticate'], 'Bearer');
      const wrong = await http(r.url, path, { headers: { authorization: 'Bearer not-the-token-at-all' } });
      assert.equal(wrong.status, 401, `${path}, a wrong token`);
    }
    assert.equal((await http(r.url, '/healthz', { headers: { authorization: `Bearer ${TOKEN}` } })).status, 200);
    assert.equal((await readyz(r.url, { authorization: `Bearer ${TOKEN}` })).status, 503, 'read, and not ready: the engine is not started');
    assert.equal((await http(r.url, '/metrics', { headers: { authorization: `Bearer ${TOKEN}` } })).status, 200);
    assert.equal((await http(r.url, '/readyz', { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` } })).status, 405, 'read-only');
  });
});

describe('metrics', () => {
  test('build and process metrics, per-role states and histograms, peer, generation, last epoch and time unprotected', async () => {
    const r = await rig({ startEngine: false, engine: { generation: 7 } });
    const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };

    const idle = await scrape(r.url, 'primary');
    assert.equal(idle.one('tandem_build_info', { version: pkg.version, nodejs: process.versions.node }), 1);
    assert.equal(idle.one('tandem_peer_up'), 0);
    assert.equal(idle.one('tandem_generation'), 7);
    assert.equal(idle.one('tandem_last_epoch'), 0);
    assert.ok(idle.one('tandem_unprotected_seconds') >= 0);
    assert.equal(idle.get('tandem_precopy_iteration'), undefined, 'no pre-copy, no progress');
    assert.equal(idle.get('tandem_replication_lag_seconds'), undefined, 'no epoch yet, no lag');

    const c = await TestClient.connect(r.wsUrl);
    const s = await TestClient.connect(`${r.secondaryMonitor.url.replace(/^http/, 'ws')}ws`);
    r.engine.start();
    await c.waitFor((e) => e.type === 'state' && e.state === 'protected', 'protection');
    await s.waitFor((e) => e.type === 'epoch', 'an applied epoch');

    const p = await scrape(r.url, 'primary');
    const status = JSON.parse((await http(r.url, '/api/status')).body) as SnapshotEvent;
    assert.equal(p.one('tandem_peer_up'), 1);
    assert.equal(p.one('tandem_unprotected_seconds'), 0);
    assert.equal(p.one('tandem_generation'), 7);
    const last = p.one('tandem_last_epoch');
    assert.ok(last >= 1 && last <= status.lastEpoch, `${last} <= ${status.lastEpoch}`);
    // The primary's own states, and only those; its epoch time and pause, not the secondary's apply time.
    assert.deepEqual(p.samples.filter((x) => x.name === 'tandem_state').map((x) => x.labels.state).sort(), [...PRIMARY_STATES].sort());
    assert.equal(p.one('tandem_state', { state: 'protected' }), 1);
    assert.equal(p.types.get('tandem_epoch_seconds'), 'histogram');
    assert.equal(p.types.get('tandem_pause_seconds'), 'histogram');
    assert.equal(p.types.get('tandem_apply_seconds'), undefined);
    assert.equal(p.get('tandem_held_output_bytes'), undefined, 'this rig has no service front: no output held by Tandem');
    assert.equal(p.get('tandem_peer_monitor_up'), undefined, 'no monitor.peer: no gauge for it');

    // The process, under the client libraries' usual names.
    const user = p.one('process_cpu_user_seconds_total');
    const system = p.one('process_cpu_system_seconds_total');
    const cpu = p.one('process_cpu_seconds_total');
    assert.ok(user > 0 && cpu >= user && cpu >= system, `${cpu} >= ${user}, ${system}`);
    assert.equal(p.types.get('process_cpu_seconds_total'), 'counter');
    const now = Date.now() / 1000;
    const started = p.one('process_start_time_seconds');
    assert.ok(started <= now && started >= now - process.uptime() - 5, `started at ${started}, uptime ${process.uptime()}`);
    assert.ok(p.one('process_resident_memory_bytes') > 1024 * 1024);
    assert.ok(p.one('process_open_fds') > 3);
    assert.ok(p.one('nodejs_heap_size_used_bytes') <= p.one('nodejs_heap_size_total_bytes'));
    assert.ok(p.one('nodejs_external_memory_bytes') > 0);
    const lag = p.one('nodejs_eventloop_lag_seconds');
    const max = p.one('nodejs_eventloop_lag_max_seconds');
    const p99 = p.one('nodejs_eventloop_lag_p99_seconds');
    assert.ok(lag >= 0 && max >= lag && max >= p99 && p99 >= 0, `mean ${lag}, p99 ${p99}, max ${max}`);

    const sec = await scrape(r.secondaryMonitor.url, 'secondary');
    assert.deepEqual(sec.samples.filter((x) => x.name === 'tandem_state').map((x) => x.labels.state).sort(), [...SECONDARY_STATES].sort());
    assert.equal(sec.one('tandem_state', { state: 'standby' }), 1);
    assert.equal(sec.types.get('tandem_apply_seconds'), 'histogram');
    assert.ok(sec.one('tandem_apply_seconds_count') >= 1);
    assert.equal(sec.one('tandem_apply_seconds_count'), sec.one('tandem_epochs_total'), 'every applied epoch timed');
    assert.deepEqual(names(sec, 'tandem_epoch_seconds'), []);
    assert.deepEqual(names(sec, 'tandem_pause_seconds'), []);
    assert.deepEqual(names(sec, 'tandem_precopy_'), []);
    assert.equal(sec.one('tandem_peer_up'), 1);
    assert.equal(sec.get('tandem_unprotected_seconds'), undefined, 'no guest runs on a standby');
    assert.equal(sec.get('tandem_generation'), r.server.replicaGeneration, 'the generation of the replica, when the secondary knows it');
    assert.ok(sec.one('tandem_last_epoch') >= 1);

    const stop = await http(r.url, '/api/control', { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` }, body: '{"action":"stop-protection"}' });
    assert.equal(stop.status, 200, stop.body);
    await c.waitFor((e) => e.type === 'state' && e.state === 'stopped', 'the stop');
    await until(async () => (await scrape(r.url, 'primary')).one('tandem_unprotected_seconds') > 0, 'time unprotected counting', 10_000);
    const stopped = await scrape(r.url, 'primary');
    assert.equal(stopped.one('tandem_peer_up'), 0);
    assert.equal(stopped.one('tandem_state', { state: 'stopped' }), 1);
    await c.close();
    await s.close();
  });

  test("the pre-copy's progress: events before protection, the snapshot and gauges while it runs, its bytes in the primary's byte count", async () => {
    // Holds epoch 1 at its suspend, after the live rounds: the pre-copy is still under way there.
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    let reached!: () => void;
    const atSuspend = new Promise<void>((resolve) => (reached = resolve));
    const gate = {
      name: 'test-gate',
      postsuspend: (epoch: number) => {
        if (epoch !== 1) return;
        reached();
        return held;
      },
    };
    const r = await rig({ startEngine: false, engine: { progressIntervalMs: 0 }, devices: [gate] });
    const c = await TestClient.connect(r.wsUrl);
    const snap = await c.waitFor<SnapshotEvent>((e) => e.type === 'snapshot', 'the snapshot');
    assert.equal(snap.precopy, null);
    r.engine.start();
    await atSuspend;

    const during = JSON.parse((await http(r.url, '/api/status')).body) as SnapshotEvent;
    assert.equal(during.state, 'precopy');
    assert.ok(during.precopy !== null && during.precopy.done, 'the last report: the live rounds are over');
    const final = during.precopy;
    const g = await scrape(r.url, 'primary');
    assert.equal(g.one('tandem_precopy_iteration'), final.iteration);
    assert.equal(g.one('tandem_precopy_bytes'), final.bytes);
    assert.equal(g.one('tandem_precopy_pages_sent'), final.pagesSent);
    assert.equal(g.one('tandem_precopy_pages_remaining'), final.pagesTotal! - final.pagesSent!);
    assert.ok(g.one('tandem_precopy_bytes_per_second') >= 0);
    const notYet = await readyz(r.url);
    assert.equal(notYet.status, 503);
    assert.match(notYet.body.reason, /pre-copy/);

    release();
    const protectedAt = await c.waitFor<StateEvent>((e) => e.type === 'state' && e.state === 'protected', 'protection');
    const reports = c.events.filter((e): e is PrecopyEvent => e.type === 'precopy');
    // 1024 pages sent 256 at a time: a report per batch at least.
    assert.ok(reports.filter((e) => !e.done && e.iteration === 1).length >= 4, `${reports.length} reports`);
    assert.ok(reports.some((e) => e.iteration === 1 && e.pagesSent === 1024 && e.pagesTotal === 1024 && e.percent === 100));
    assert.ok(reports.every((e) => e.seq < protectedAt.seq), 'all of them before protection');
    assert.deepEqual({ ...reports.at(-1), ts: 0, seq: 0 }, { ...final, v: 1, type: 'precopy', node: 'primary', domain: 'guest', ts: 0, seq: 0 }, 'the snapshot had the last one');

    // Epochs told before the scrape were written before it: the count covers them and the pre-copy.
    const epochBytes = c.events.reduce((n, e) => n + (e.type === 'epoch' ? e.bytes : 0), 0);
    const p = await scrape(r.url, 'primary');
    assert.deepEqual(names(p, 'tandem_precopy_'), [], 'protected: no pre-copy under way');
    const status = JSON.parse((await http(r.url, '/api/status')).body) as SnapshotEvent;
    assert.equal(status.precopy, null);
    const sent = p.one('tandem_replicated_bytes_total');
    assert.ok(sent >= final.bytes + epochBytes, `${sent} >= ${final.bytes} + ${epochBytes}`);
    assert.ok(sent >= 1024 * 4096, 'every page of the guest at least');
    await c.close();
  });
});

describe('a pair of nodes, as tandem primary and tandem secondary run them', () => {
  test('held output and generation on the primary; after a failover the secondary is ready as the one serving, and counts it', async () => {
    const secondaryHost = new MemoryTransport();
    const primaryHost = secondaryHost.peer();
    const scfg = nodeConfig();
    scfg.monitor.listen = { host: '127.0.0.1', port: 0 };
    const slog = capturingLogger();
    const secondary = new SecondaryNode({ cfg: scfg, mode: 'remus', binding: createBinding(scfg.domain), transport: secondaryHost, logger: slog.logger });
    await secondary.start();
    stops.push(() => secondary.stop('test'));
    const pcfg = nodeConfig();
    pcfg.monitor.listen = { host: '127.0.0.1', port: 0 };
    const plog = capturingLogger();
    const primary = new PrimaryNode({ cfg: pcfg, mode: 'remus', binding: createBinding(pcfg.domain), transport: primaryHost, logger: plog.logger });
    const service = await primary.start();
    stops.push(() => primary.stop({ kind: 'signal', signal: 'test' }));
    const purl = plog.lines.map(monitorUrlOf).find((u) => u !== undefined)!;
    const surl = slog.lines.map(monitorUrlOf).find((u) => u !== undefined)!;
    assert.ok(purl !== undefined && surl !== undefined, 'both monitors listen');
    const engine = primary.protection!;
    await firstValueFrom(engine.state$.pipe(filter((s) => s.state === 'protected')));
    // A client's write and its reply go through the front's output buffer.
    assert.deepEqual(await ask(service.port, [['SET', 'k', 'v']]), ['OK']);

    const p = await scrape(purl, 'primary');
    assert.equal(p.types.get('tandem_held_output_bytes'), 'gauge');
    assert.ok(p.one('tandem_held_output_bytes') >= 0);
    assert.equal(p.one('tandem_generation'), pcfg.primary.generation);
    assert.equal(p.one('tandem_peer_up'), 1);
    assert.equal((await readyz(purl)).status, 200);
    assert.equal((await readyz(surl)).status, 200);

    const s = await TestClient.connect(`${surl.replace(/^http/, 'ws')}ws`);
    primaryHost.cut();
    await s.waitFor((e) => e.type === 'state' && e.state === 'failed-over', 'the failover', 30_000);
    const served = await readyz(surl);
    assert.equal(served.status, 200);
    assert.equal(served.body.state, 'failed-over');
    assert.match(served.body.reason, /^serving the guest after a failover \(the guest runs here from epoch \d+/);
    const sec = await scrape(surl, 'secondary');
    assert.equal(sec.one('tandem_failovers_total'), 1);
    assert.equal(sec.one('tandem_state', { state: 'failed-over' }), 1);
    assert.ok(sec.one('tandem_unprotected_seconds') >= 0, 'the guest runs here now: its time unprotected is told');

    // The old primary, cut off, lost its standby: not ready, and counting its time unprotected.
    await firstValueFrom(engine.state$.pipe(filter((x) => x.state === 'degraded')));
    const lost = await readyz(purl);
    assert.equal(lost.status, 503);
    assert.equal(lost.body.state, 'degraded');
    assert.match(lost.body.reason, /^the standby is lost: the guest is unprotected \(/);
    await until(async () => (await scrape(purl, 'primary')).one('tandem_unprotected_seconds') > 0, 'time unprotected counting', 10_000);
    assert.equal((await scrape(purl, 'primary')).one('tandem_peer_up'), 0);
    await s.close();
  });
});
