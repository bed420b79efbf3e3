/**
 * The WebSocket API against a real engine checkpointing a sim guest to a
 * real secondary: the snapshot and every event type (each message checked
 * against the schema by the test client), control with and without the
 * token, bad messages, failover, many clients, and clients that are slow or
 * dead.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import { after, describe, test } from 'node:test';
import { MonitorServer } from '../../src/monitor/http.js';
import type { ControlEvent, DivergenceEvent, EpochEvent, ErrorEvent, ModeEvent, ReplyEvent, SnapshotEvent, StateEvent } from '../../src/monitor/events.js';
import { PrimarySource } from '../../src/monitor/source.js';
import { TOKEN, TestClient, capturingLogger, primaryRig, silent, type PrimaryRig } from './helpers.js';
import { until } from '../helpers/wait.js';

const rigs: PrimaryRig[] = [];
after(async () => {
  for (const r of rigs) await r.stop();
});
async function rig(opts: Parameters<typeof primaryRig>[0] = {}): Promise<PrimaryRig> {
  const r = await primaryRig(opts);
  rigs.push(r);
  return r;
}

const isEpoch = (e: { type: string }): e is EpochEvent => e.type === 'epoch';

/** Long waits: epochs of a real engine, and a hub cutting clients on its own schedule. */
const WAIT_MS = 60_000;

/** A WebSocket client that completes the handshake and then never reads another byte. */
async function stuckClient(url: string): Promise<Socket> {
  const { hostname, port } = new URL(url);
  const socket = connect({ host: hostname, port: Number(port) });
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', () => resolve());
    socket.once('error', reject);
  });
  socket.write(
    `GET /ws HTTP/1.1\r\nHost: ${hostname}:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
  );
  await new Promise<void>((resolve) => {
    const onData = (d: Buffer): void => {
      if (!d.toString('latin1').startsWith('HTTP/1.1 101')) return;
      socket.off('data', onData);
      socket.pause();
      resolve();
    };
    socket.on('data', onData);
  });
  return socket;
}

describe('monitor WebSocket API', () => {
  test('a new client gets the snapshot first, then every epoch with its timings and sizes', async () => {
    const r = await rig();
    const c = await TestClient.connect(r.wsUrl);
    const snapshot = await c.waitFor<SnapshotEvent>((e) => e.type === 'snapshot', 'the snapshot');
    assert.equal(c.events[0].type, 'snapshot', 'the snapshot comes first');
    assert.equal(snapshot.node, 'primary');
    assert.equal(snapshot.mode, 'remus');
    assert.equal(snapshot.intervalMs, 20);
    assert.deepEqual(snapshot.actions, ['checkpoint', 'set-interval', 'set-mode', 'stop-protection', 'start-protection']);
    const firstSeq = snapshot.seq;
    await c.waitFor((e) => isEpoch(e) && e.epoch >= snapshot.lastEpoch + 5, 'five more epochs');
    const epochs = c.events.filter(isEpoch);
    for (const e of epochs) {
      assert.ok(e.seq > firstSeq, 'events after the snapshot carry later sequence numbers');
      assert.equal(typeof e.pauseUs, 'number');
      assert.equal(typeof e.totalMs, 'number');
      assert.ok(e.bytes > 0);
    }
    for (let i = 1; i < epochs.length; i++) assert.equal(epochs[i].epoch, epochs[i - 1].epoch + 1, 'no epoch is missing');
    assert.ok(epochs.some((e) => e.dirtyPages > 0), 'the busy guest dirties pages');
    await c.close();
  });

  test('the snapshot carries recent epochs so a chart starts filled', async () => {
    const r = await rig();
    const first = await TestClient.connect(r.wsUrl);
    await first.waitFor((e) => isEpoch(e) && e.epoch >= 3, 'epoch 3');
    const second = await TestClient.connect(r.wsUrl);
    const s = await second.waitFor<SnapshotEvent>((e) => e.type === 'snapshot', 'the snapshot');
    assert.ok(s.recent.length >= 3);
    assert.equal(s.recent.at(-1)!.epoch, s.lastEpoch);
    assert.equal(s.state, 'protected');
    assert.notEqual(s.lagMs, null);
    await first.close();
    await second.close();
  });

  test('control needs the token; every attempt is audited and logged with who and what, never the token', async () => {
    const log = capturingLogger();
    const r = await rig({ logger: log.logger });
    const c = await TestClient.connect(r.wsUrl);
    await until(() => r.engine.state === 'protected', 'protection', WAIT_MS);
    await c.waitFor((e) => isEpoch(e), 'an epoch');

    const none = (await c.request({ type: 'control', action: 'stop-protection' })) as ErrorEvent;
    assert.equal(none.type, 'error');
    assert.equal(none.code, 'ERR_MONITOR_UNAUTHORIZED');
    const wrong = (await c.request({ type: 'control', action: 'stop-protection', token: `${TOKEN}x` })) as ErrorEvent;
    assert.equal(wrong.code, 'ERR_MONITOR_UNAUTHORIZED');
    assert.equal(r.engine.state, 'protected', 'a refused action does nothing');
    const audit = await c.waitFor<ControlEvent>((e) => e.type === 'control' && !e.ok, 'the audit event');
    assert.equal(audit.action, 'stop-protection');
    assert.equal(audit.code, 'ERR_MONITOR_UNAUTHORIZED');
    assert.match(audit.by, /^127\.0\.0\.1:\d+$/);

    const stopped = c.next<StateEvent>((e) => e.type === 'state' && e.state === 'stopped', 'stopped');
    const ok = (await c.request({ type: 'control', action: 'stop-protection', token: TOKEN })) as ReplyEvent;
    assert.equal(ok.type, 'reply');
    assert.equal(ok.action, 'stop-protection');
    assert.equal((await stopped).previous, 'stopping');

    const reprotected = c.next<StateEvent>((e) => e.type === 'state' && e.state === 'protected', 'protected again');
    const seen: string[] = [];
    const collector = c.next((e) => {
      if (e.type === 'state') seen.push(e.state);
      return e.type === 'state' && e.state === 'protected';
    }, 'the states on the way');
    assert.equal(((await c.request({ type: 'control', action: 'start-protection', token: TOKEN })) as ReplyEvent).type, 'reply');
    await reprotected;
    await collector;
    assert.deepEqual(seen, ['connecting', 're-protecting', 'protected'], 'a fresh pre-copy after protection was lost is a re-protection');

    const lines = log.lines.filter((l) => typeof l.msg === 'string' && l.msg.startsWith('control'));
    assert.equal(lines.length, 4, 'two refusals and two actions are logged');
    for (const l of lines) {
      assert.match(String(l.by), /^127\.0\.0\.1:\d+$/);
      assert.ok(['stop-protection', 'start-protection'].includes(String(l.action)));
    }
    assert.ok(!log.text().includes(TOKEN), 'the token never reaches the log');
    await c.close();
  });

  test('mode and interval changes are events; an operator checkpoint is an epoch with its trigger', async () => {
    const r = await rig();
    const c = await TestClient.connect(r.wsUrl);
    await c.waitFor((e) => isEpoch(e) && e.epoch >= 2, 'epochs');
    const manual = c.next<ModeEvent>((e) => e.type === 'mode', 'the mode event');
    await c.request({ type: 'control', action: 'set-mode', mode: 'manual', token: TOKEN });
    assert.deepEqual([(await manual).mode, (await manual).intervalMs], ['manual', null]);
    const operator = c.next<EpochEvent>((e) => isEpoch(e) && e.trigger === 'operator', 'the operator epoch');
    assert.equal(((await c.request({ type: 'control', action: 'checkpoint', token: TOKEN })) as ReplyEvent).type, 'reply');
    await operator;
    const interval = c.next<ModeEvent>((e) => e.type === 'mode', 'the interval event');
    await c.request({ type: 'control', action: 'set-mode', mode: 'remus', token: TOKEN });
    assert.equal((await interval).intervalMs, 20);
    const changed = c.next<ModeEvent>((e) => e.type === 'mode', 'the new interval');
    const reply = (await c.request({ type: 'control', action: 'set-interval', intervalMs: 35, token: TOKEN })) as ReplyEvent;
    assert.deepEqual(reply.result, { intervalMs: 35 });
    assert.deepEqual([(await changed).mode, (await changed).intervalMs], ['remus', 35]);
    const status = (await c.request({ type: 'status' })) as ReplyEvent;
    assert.equal((status.result as unknown as SnapshotEvent).intervalMs, 35);
    // A Remus run has no running secondary to compare with: colo is refused, and the mode stays.
    const refused = (await c.request({ type: 'control', action: 'set-mode', mode: 'colo', token: TOKEN })) as ErrorEvent;
    assert.equal(refused.type, 'error');
    assert.equal(refused.code, 'ERR_MONITOR_ACTION_FAILED');
    assert.match(refused.message, /mode colo is not available in a remus run/);
    assert.equal(r.mode.current.mode, 'remus');
    await c.close();
  });

  test("in a COLO run, set-mode reaches the one mode controller: manual stops divergence checkpoints, colo brings them back", async () => {
    const r = await rig({ intervalMs: null, colo: true });
    const c = await TestClient.connect(r.wsUrl);
    await c.waitFor((e) => e.type === 'snapshot', 'the snapshot');
    await until(() => r.engine.state === 'protected', 'protection');
    const manual = c.next<ModeEvent>((e) => e.type === 'mode', 'manual');
    await c.request({ type: 'control', action: 'set-mode', mode: 'manual', token: TOKEN });
    assert.equal((await manual).mode, 'manual');
    // A divergence now is reported, and starts no checkpoint; the operator's next request does.
    const reported = c.next<DivergenceEvent>((e) => e.type === 'divergence', 'the divergence report');
    r.divergence.next({ reason: 'divergence', request: { reason: 'mismatch', flow: 'tcp a > b', detail: '' } });
    await reported;
    const operator = c.next<EpochEvent>((e) => isEpoch(e) && e.epoch > 1, 'the next epoch');
    await c.request({ type: 'control', action: 'checkpoint', token: TOKEN });
    assert.equal((await operator).trigger, 'operator', 'the divergence in manual mode started nothing');
    const colo = c.next<ModeEvent>((e) => e.type === 'mode', 'colo');
    await c.request({ type: 'control', action: 'set-mode', mode: 'colo', token: TOKEN });
    assert.equal((await colo).mode, 'colo');
    const divergenceEpoch = c.next<EpochEvent>((e) => isEpoch(e) && e.trigger === 'divergence', 'a divergence epoch');
    r.divergence.next({ reason: 'divergence', request: { reason: 'mismatch', flow: 'tcp a > b', detail: '' } });
    await divergenceEpoch;
    await c.close();
  });

  test('divergences carry the connection and the reason, and trigger a checkpoint in COLO mode', async () => {
    const r = await rig({ intervalMs: null, colo: true });
    const c = await TestClient.connect(r.wsUrl);
    await c.waitFor((e) => e.type === 'snapshot', 'the snapshot');
    await until(() => r.engine.state === 'protected', 'protection', WAIT_MS);
    const div = c.next<DivergenceEvent>((e) => e.type === 'divergence', 'the divergence');
    const epoch = c.next<EpochEvent>((e) => isEpoch(e) && e.trigger === 'divergence', 'the divergence epoch');
    r.divergence.next({ reason: 'divergence', request: { reason: 'mismatch', flow: 'tcp 10.0.0.5:4242 > 10.0.0.1:6379', detail: 'reply bytes differ at offset 17' } });
    const d = await div;
    assert.equal(d.connection, 'tcp 10.0.0.5:4242 > 10.0.0.1:6379');
    assert.equal(d.reason, 'mismatch');
    await epoch;
    const anonymous = c.next<DivergenceEvent>((e) => e.type === 'divergence', 'a divergence without a connection');
    r.divergence.next({ reason: 'divergence' });
    assert.deepEqual([(await anonymous).connection, (await anonymous).reason], [null, 'outputs differ']);
    await c.close();
  });

  test('a bad message gets a typed error reply and the connection keeps working', async () => {
    const r = await rig();
    const c = await TestClient.connect(r.wsUrl);
    await c.waitFor((e) => e.type === 'snapshot', 'the snapshot');
    // Protected first, so the end can show the bad messages left protection alone.
    await until(() => r.engine.state === 'protected', 'protection', WAIT_MS);
    const cases: [string | Buffer, RegExp][] = [
      ['not json', /not JSON/],
      ['[1,2]', /JSON object/],
      [JSON.stringify({ type: 'launch', id: 'a' }), /type/],
      [JSON.stringify({ type: 'control', id: 'b', action: 'reboot', token: TOKEN }), /action/],
      [JSON.stringify({ type: 'control', id: 'c', action: 'set-interval', intervalMs: 0, token: TOKEN }), /intervalMs/],
      [JSON.stringify({ type: 'control', id: 'd', action: 'set-mode', mode: 'fast', token: TOKEN }), /mode/],
      [JSON.stringify({ type: 'control', id: 'e', action: 'checkpoint', token: TOKEN, extra: 1 }), /unknown field/],
      [JSON.stringify({ type: 'control', id: { x: 1 }, action: 'checkpoint' }), /id/],
      [JSON.stringify({ type: 'control', id: 'f', action: 'checkpoint', token: 'x'.repeat(600) }), /token/],
      [JSON.stringify({ type: 'status', id: 'g', pad: 'x'.repeat(5000) }), /bytes/],
      [Buffer.from([1, 2, 3]), /binary/],
    ];
    for (const [message, why] of cases) {
      const answer = c.next<ErrorEvent>((e) => e.type === 'error', `the error for ${String(message).slice(0, 40)}`);
      c.ws.send(message, { binary: Buffer.isBuffer(message) });
      const e = await answer;
      assert.equal(e.code, 'ERR_MONITOR_BAD_MESSAGE', String(message).slice(0, 60));
      assert.match(e.message, why);
    }
    const echoed = c.events.filter((e): e is ErrorEvent => e.type === 'error').map((e) => e.id);
    assert.deepEqual(echoed.slice(2, 7), ['a', 'b', 'c', 'd', 'e'], 'a parseable id is echoed');
    const status = (await c.request({ type: 'status' })) as ReplyEvent;
    assert.equal(status.type, 'reply', 'still served after every bad message');
    assert.equal(r.engine.state, 'protected', 'still protected after every bad message');

    // Beyond the frame limit the connection is closed (1009), and only that one.
    const big = await TestClient.connect(r.wsUrl);
    big.ws.send('x'.repeat(100 * 1024));
    assert.equal((await big.closed).code, 1009);
    assert.equal(((await c.request({ type: 'status' })) as ReplyEvent).type, 'reply');
    await c.close();
  });

  test('failover from the secondary monitor: failing over, failed over; the primary does not offer it', async () => {
    const r = await rig();
    const p = await TestClient.connect(r.wsUrl);
    await p.waitFor((e) => isEpoch(e) && e.epoch >= 2, 'epochs');
    const refused = (await p.request({ type: 'control', action: 'failover', token: TOKEN })) as ErrorEvent;
    assert.equal(refused.code, 'ERR_MONITOR_UNSUPPORTED');

    const s = await TestClient.connect(`${r.secondaryMonitor.url.replace(/^http/, 'ws')}ws`);
    const snap = await s.waitFor<SnapshotEvent>((e) => e.type === 'snapshot', 'the secondary snapshot');
    assert.equal(snap.node, 'secondary');
    assert.deepEqual(snap.actions, ['failover']);
    assert.equal(snap.mode, null);
    const applied = await s.waitFor<EpochEvent>((e) => isEpoch(e), 'an applied epoch');
    assert.equal(applied.trigger, 'applied');
    assert.equal(applied.pauseUs, null);
    assert.equal(typeof applied.applyMs, 'number');
    await s.waitFor((e) => (e.type === 'snapshot' && e.state === 'standby') || (e.type === 'state' && e.state === 'standby'), 'standby');
    const failing = s.next<StateEvent>((e) => e.type === 'state' && e.state === 'failing-over', 'failing over');
    const failed = s.next<StateEvent>((e) => e.type === 'state' && e.state === 'failed-over', 'failed over');
    const reply = (await s.request({ type: 'control', action: 'failover', token: TOKEN })) as ReplyEvent;
    assert.equal(reply.type, 'reply');
    assert.ok(Number(reply.result!.epoch) >= 1);
    assert.equal((await failing).previous, 'standby');
    assert.equal((await failed).previous, 'failing-over');
    const after = (await s.request({ type: 'status' })) as ReplyEvent;
    assert.equal((after.result as unknown as SnapshotEvent).state, 'failed-over', 'the stopped replication server does not overwrite the state');
    // The primary lost its standby.
    await p.waitFor((e) => e.type === 'state' && e.state === 'degraded', 'the primary degraded');
    await p.close();
    await s.close();
  });

  test('many concurrent clients all receive the same events', async () => {
    const r = await rig();
    const clients = await Promise.all(Array.from({ length: 40 }, () => TestClient.connect(r.wsUrl)));
    await Promise.all(clients.map((c) => c.waitFor((e) => e.type === 'snapshot', 'the snapshot')));
    const start = r.monitor.hub.lastSeq;
    const target = (await clients[0].next<EpochEvent>((e) => isEpoch(e) && e.seq > start + 10, 'ten more events')).seq;
    await Promise.all(clients.map((c) => c.waitFor((e) => e.type === 'epoch' && e.seq >= target, 'the target epoch')));
    const window = (c: TestClient): number[] => c.events.filter((e): e is EpochEvent => isEpoch(e) && e.seq > start && e.seq <= target).map((e) => e.seq);
    const reference = window(clients[0]);
    assert.ok(reference.length >= 10);
    for (const c of clients) assert.deepEqual(window(c), reference);
    assert.equal(r.monitor.hub.size, 40);
    await Promise.all(clients.map((c) => c.close()));
    await until(() => r.monitor.hub.size === 0, 'the hub to forget closed clients', WAIT_MS);
  });

  test('a client that never reads is sampled, then cut; epochs and other clients go on', async () => {
    const r = await rig({ monitor: { limits: { sampleAboveBytes: 256 * 1024, disconnectAboveBytes: 1024 * 1024 } } });
    const good = await TestClient.connect(r.wsUrl);
    await good.waitFor((e) => isEpoch(e), 'an epoch');
    const stuck = await stuckClient(r.wsUrl);
    await until(() => r.monitor.hub.size === 2, 'the stuck client to join', WAIT_MS);
    const firstEpoch = (good.events.filter(isEpoch).at(-1) as EpochEvent).epoch;

    // Sampleable events (divergence reports with a long reason) until the stuck client is being sampled.
    const filler = 'x'.repeat(8 * 1024);
    let round = 0;
    while (r.monitor.hub.stats.sampled === 0) {
      if (++round > 2000) throw new Error('the stuck client was never sampled');
      const tag = `round ${round}`;
      const seen = good.next((e) => e.type === 'divergence' && e.connection === tag, tag);
      for (let i = 0; i < 20; i++) r.divergence.next({ reason: 'divergence', request: { reason: 'mismatch', flow: filler, detail: '' } });
      r.divergence.next({ reason: 'divergence', request: { reason: 'mismatch', flow: tag, detail: '' } });
      await seen;
    }
    assert.equal(r.monitor.hub.size, 2, 'sampling alone does not cut anyone');
    // State changes are never sampled: they pile up until the client is cut.
    while (r.monitor.hub.stats.cutSlow === 0) {
      if (++round > 4000) throw new Error('the stuck client was never cut');
      const tag = `state ${round}`;
      const seen = good.next((e) => e.type === 'state' && e.reason === tag, tag);
      for (let i = 0; i < 20; i++) r.monitor.hub.publish({ type: 'state', state: 'protected', previous: 'protected', reason: filler });
      r.monitor.hub.publish({ type: 'state', state: 'protected', previous: 'protected', reason: tag });
      await seen;
    }
    assert.equal(r.monitor.hub.size, 1, 'only the stuck client was cut');
    // Checkpointing went on throughout, and the good client saw every epoch.
    const last = await good.next<EpochEvent>((e) => isEpoch(e), 'an epoch after the cut');
    assert.ok(last.epoch > firstEpoch);
    const epochs = good.events.filter(isEpoch).map((e) => e.epoch);
    for (let i = 1; i < epochs.length; i++) assert.equal(epochs[i], epochs[i - 1] + 1, 'the reading client missed no epoch');
    assert.equal(good.events.filter((e) => e.type === 'dropped').length, 0, 'the reading client was never sampled');
    stuck.destroy();
    await good.close();
  });

  test('a client that stops answering pings is dropped', async () => {
    // Long enough that an in-process client always answers within one interval, even on a loaded machine.
    const r = await rig({ monitor: { pingIntervalMs: 250 } });
    const live = await TestClient.connect(r.wsUrl);
    await live.waitFor((e) => e.type === 'snapshot', 'the snapshot');
    // The silent client may be cut at any sweep after it joins: wait for that, not for it to be seen.
    const dead = await stuckClient(r.wsUrl);
    await until(() => r.monitor.hub.stats.cutUnresponsive >= 1, 'the silent client to be cut', WAIT_MS);
    assert.equal(r.monitor.hub.size, 1, 'the client that answers pings stays');
    assert.equal(((await live.request({ type: 'status' })) as ReplyEvent).type, 'reply');
    dead.destroy();
    await live.close();
  });

  test('a WebSocket opened by a page from another origin is refused', async () => {
    const r = await rig();
    await assert.rejects(TestClient.connect(r.wsUrl, { origin: 'http://evil.example' }), /HTTP 403/);
    const same = await TestClient.connect(r.wsUrl, { origin: r.url.replace(/\/$/, '') });
    await same.waitFor((e) => e.type === 'snapshot', 'the snapshot');
    await same.close();
  });

  test('an event the metrics cannot take is logged, and protection and the stream go on', async () => {
    const log = capturingLogger();
    const r = await rig({ logger: log.logger });
    const c = await TestClient.connect(r.wsUrl);
    const e = await c.waitFor<EpochEvent>((e) => isEpoch(e), 'an epoch');
    r.source.events$.next({ type: 'epoch', epoch: 0, trigger: 'timer', pauseUs: Number.NaN, dirtyPages: 0, bytes: 0, sendMs: null, ackMs: null, totalMs: null, applyMs: null });
    assert.ok(log.lines.some((l) => l.msg === 'monitor: could not publish an event'));
    await c.next((x) => isEpoch(x) && x.epoch > e.epoch + 2, 'later epochs');
    assert.equal(r.engine.state, 'protected');
    await c.close();
  });

  test('clients beyond the limit are refused', async () => {
    const r = await rig({ monitor: { maxClients: 2 } });
    const a = await TestClient.connect(r.wsUrl);
    const b = await TestClient.connect(r.wsUrl);
    await assert.rejects(TestClient.connect(r.wsUrl), /HTTP 503/);
    await a.close();
    await until(() => r.monitor.hub.size === 1, 'a place to free up', WAIT_MS);
    const c = await TestClient.connect(r.wsUrl);
    await c.waitFor((e) => e.type === 'snapshot', 'the snapshot');
    await b.close();
    await c.close();
  });

  test('with loopback_read off, the stream and status need the token; the page itself does not', async () => {
    const r = await rig({ monitor: { auth: { token: TOKEN, allowRemoteRead: false, loopbackRead: false } } });
    await assert.rejects(TestClient.connect(r.wsUrl), /HTTP 401/);
    await assert.rejects(TestClient.connect(r.wsUrl, { headers: { authorization: 'Bearer nope' } }), /HTTP 401/);
    const withHeader = await TestClient.connect(r.wsUrl, { headers: { authorization: `Bearer ${TOKEN}` } });
    await withHeader.waitFor((e) => e.type === 'snapshot', 'the snapshot');
    // A browser offers it as a subprotocol; the monitor selects the plain one and never echoes the token.
    const asBrowser = await TestClient.connect(r.wsUrl, {}, ['tandem.v1', `tandem-token.${Buffer.from(TOKEN).toString('base64url')}`]);
    await asBrowser.waitFor((e) => e.type === 'snapshot', 'the snapshot');
    assert.equal(asBrowser.ws.protocol, 'tandem.v1');
    // The connection's token also authorizes its control requests.
    const reply = (await asBrowser.request({ type: 'control', action: 'checkpoint' })) as ReplyEvent;
    assert.equal(reply.type, 'reply');
    const status = await fetch(new URL('/api/status', r.url));
    assert.equal(status.status, 401);
    assert.equal((await fetch(new URL('/api/status', r.url), { headers: { authorization: `Bearer ${TOKEN}` } })).status, 200);
    assert.equal((await fetch(new URL('/metrics', r.url))).status, 401);
    assert.equal((await fetch(r.url)).status, 200, 'the page loads, then asks for the token');
    await withHeader.close();
    await asBrowser.close();
  });

  test('without a configured token every control action is refused', async () => {
    const r = await rig({ token: undefined });
    const c = await TestClient.connect(r.wsUrl);
    const e = (await c.request({ type: 'control', action: 'checkpoint', token: '' })) as ErrorEvent;
    assert.equal(e.code, 'ERR_MONITOR_UNAUTHORIZED');
    assert.match(e.message, /no control token is configured/);
    await c.close();
  });
});

describe('monitor listener', () => {
  test('refuses a non-loopback bind without a token, and a port in use, with typed errors', async () => {
    const r = await rig();
    const source = new PrimarySource({ engine: r.engine, mode: r.mode });
    const open = new MonitorServer({ host: '0.0.0.0', port: 0, source, logger: silent, auth: { token: undefined, allowRemoteRead: false } });
    await assert.rejects(open.start(), (err: Error & { code?: string }) => err.code === 'ERR_MONITOR_BAD_OPTIONS' && /without a control token/.test(err.message));
    const port = Number(new URL(r.url).port);
    const taken = new MonitorServer({ host: '127.0.0.1', port, source, logger: silent, auth: { token: TOKEN, allowRemoteRead: false } });
    await assert.rejects(taken.start(), (err: Error & { code?: string }) => err.code === 'ERR_MONITOR_LISTEN_FAILED' && (err.cause as { code?: string }).code === 'EADDRINUSE');
  });
});
