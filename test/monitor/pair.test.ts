/**
 * One view of both nodes: each node's monitor reads its peer's
 * (`monitor.peer`), so either snapshot shows the pair; a peer that goes away
 * is told once, with why, and so is its return; a peer that answers garbage,
 * too much or too slowly is cut off and told as unreachable; the token goes
 * only to a peer that asks for it; the history of events survives a
 * reconnect; and after a failover the promoted secondary says when and why.
 * Real nodes, engines, secondaries and HTTP servers throughout.
 */
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, describe, test } from 'node:test';
import { filter, firstValueFrom } from 'rxjs';
import { freePort } from '../../src/arbiter/local-etcd.js';
import { statusText } from '../../src/cli/commands/status.js';
import { createBinding } from '../../src/domain/bindings.js';
import { Promoter } from '../../src/failover/promoter.js';
import { validateEvent, type ControlEvent, type FailoverEvent, type MonitorEvent, type ModeEvent, type PeerEvent, type SnapshotEvent, type StateEvent } from '../../src/monitor/events.js';
import { MonitorServer } from '../../src/monitor/http.js';
import { SecondarySource } from '../../src/monitor/source.js';
import { monitorUrlOf } from '../../src/monitor/wire.js';
import { PrimaryNode } from '../../src/node/primary.js';
import { SecondaryNode } from '../../src/node/secondary.js';
import { ask } from '../guest/helpers.js';
import { MemoryTransport } from '../helpers/memory-transport.js';
import { secondaryFor, silent, simBinding } from '../helpers/sim.js';
import { until } from '../helpers/wait.js';
import { nodeConfig } from '../node/helpers.js';
import { TOKEN, TestClient, capturingLogger, primaryRig } from './helpers.js';
import { http, parseProm } from './scrape.js';

const stops: (() => Promise<void>)[] = [];
after(async () => {
  for (const s of stops.reverse()) await s();
});

/** Polled fast so the tests wait less; the default is a second. */
const PEER_INTERVAL_MS = 100;

async function status(url: string, headers: Record<string, string> = {}): Promise<SnapshotEvent> {
  const res = await http(url, '/api/status', { headers });
  assert.equal(res.status, 200, res.body);
  const s = validateEvent(JSON.parse(res.body));
  assert.equal(s.type, 'snapshot');
  return s;
}

/** Waits until `url`'s snapshot satisfies `pred`; returns that snapshot. */
async function statusWhen(url: string, pred: (s: SnapshotEvent) => boolean, what: string, timeoutMs = 30_000): Promise<SnapshotEvent> {
  let last: SnapshotEvent | undefined;
  await until(async () => pred((last = await status(url))), what, timeoutMs, 20);
  return last!;
}

const wsOf = (url: string): string => `${url.replace(/^http/, 'ws')}ws`;

/** tandem_peer_monitor_up in `url`'s /metrics, or undefined when it is not exported. */
async function peerMonitorUp(url: string): Promise<number | undefined> {
  const res = await http(url, '/metrics');
  assert.equal(res.status, 200, res.body);
  return parseProm(res.body).samples.find((x) => x.name === 'tandem_peer_monitor_up')?.value;
}

describe('the pair, as tandem primary and tandem secondary run it', () => {
  test("each node's snapshot shows both; after a failover the promoted secondary tells when and why, and its peer sees it", async () => {
    const [pport, sport] = [await freePort(), await freePort()];
    const purl = `http://127.0.0.1:${pport}/`;
    const surl = `http://127.0.0.1:${sport}/`;
    const secondaryHost = new MemoryTransport();
    const primaryHost = secondaryHost.peer();
    const scfg = nodeConfig();
    scfg.monitor.listen = { host: '127.0.0.1', port: sport };
    scfg.monitor.peer = purl;
    scfg.monitor.peerIntervalMs = PEER_INTERVAL_MS;
    const secondary = new SecondaryNode({ cfg: scfg, mode: 'remus', binding: createBinding(scfg.domain), transport: secondaryHost, logger: silent });
    await secondary.start();
    stops.push(() => secondary.stop('test'));
    const pcfg = nodeConfig();
    pcfg.monitor.listen = { host: '127.0.0.1', port: pport };
    pcfg.monitor.peer = surl;
    pcfg.monitor.peerIntervalMs = PEER_INTERVAL_MS;
    const primary = new PrimaryNode({ cfg: pcfg, mode: 'remus', binding: createBinding(pcfg.domain), transport: primaryHost, logger: silent });
    const service = await primary.start();
    stops.push(() => primary.stop({ kind: 'signal', signal: 'test' }));
    await firstValueFrom(primary.protection!.state$.pipe(filter((s) => s.state === 'protected')));
    // A client of the guest's service, through the primary's front.
    assert.deepEqual(await ask(service.port, [['SET', 'k', 'v']]), ['OK']);

    const p = await statusWhen(purl, (s) => s.peer?.reachable === true && s.peer.state === 'standby' && s.heartbeat === 'alive', 'the primary to see its standby');
    assert.equal(p.node, 'primary');
    assert.equal(p.generation, pcfg.primary.generation);
    assert.ok(p.heldBytes !== null && p.heldBytes >= 0, 'the Remus front holds output for unacked epochs');
    assert.equal(p.peer!.url, surl);
    assert.equal(p.peer!.node, 'secondary');
    assert.equal(p.peer!.error, null);
    assert.equal(p.peer!.heldBytes, null, 'a standby holds no output');
    assert.equal(p.peer!.clients, 0);
    assert.equal(p.peer!.generation, pcfg.primary.generation, 'the standby follows the primary it protects');
    assert.ok(p.peer!.lastEpoch !== null && p.peer!.lastEpoch >= 1);
    assert.ok(p.peer!.fetchedAt !== null && p.peer!.fetchedAt <= p.ts);
    assert.equal(p.lastFailover, null);

    const s = await statusWhen(surl, (x) => x.peer?.reachable === true && x.peer.state === 'protected' && x.peer.heartbeat === 'alive' && x.state === 'standby', 'the secondary to see its primary');
    assert.equal(s.heartbeat, 'alive');
    assert.equal(s.generation, pcfg.primary.generation);
    assert.equal(s.heldBytes, null);
    assert.equal(s.peer!.node, 'primary');
    assert.equal(s.peer!.generation, pcfg.primary.generation);
    assert.ok(s.peer!.heldBytes !== null);
    assert.ok(s.peer!.lagMs !== null);

    // Live: a dashboard on the primary hears its peer; the event's own node is the sender's.
    const c = await TestClient.connect(wsOf(purl));
    const seen = await c.next<PeerEvent>((e) => e.type === 'peer', 'a peer event');
    assert.equal(seen.node, 'primary');
    assert.equal(seen.peer.node, 'secondary');
    assert.equal(seen.url, surl);

    // The primary is cut off: the secondary takes over; its monitor tells when and why.
    const sc = await TestClient.connect(wsOf(surl));
    primaryHost.cut();
    const told = await sc.waitFor<FailoverEvent>((e) => e.type === 'failover', 'the failover event', 30_000);
    assert.ok(told.generation !== null && told.generation > pcfg.primary.generation, `generation ${told.generation}`);
    const over = await statusWhen(surl, (x) => x.state === 'failed-over', 'the failover');
    assert.ok(over.lastFailover !== null);
    assert.equal(over.lastFailover.reason, told.reason);
    assert.equal(over.lastFailover.generation, told.generation);
    assert.match(over.lastFailover.reason, new RegExp(`taking over as generation ${told.generation}$`));
    assert.ok(Math.abs(over.lastFailover.ts - told.ts) < 60_000 && over.lastFailover.ts <= over.ts);
    assert.equal(over.generation, told.generation, 'the node serves as the generation it took');
    const kept = over.history.filter((e) => e.type === 'failover');
    assert.deepEqual(kept, [told], 'the history has the event as it was broadcast');

    // The old primary still answers over HTTP: it sees its peer failed over, with the reason.
    const seenBy = await statusWhen(purl, (x) => x.peer?.state === 'failed-over' && x.peer.lastFailover !== null, 'the primary to see the failover');
    assert.equal(seenBy.peer!.lastFailover!.reason, told.reason);
    assert.equal(seenBy.peer!.generation, told.generation);
    const text = statusText(seenBy);
    assert.match(text, new RegExp(`^last failover: on the secondary, .* \\(generation ${told.generation}\\): `, 'm'));
    const change = await c.waitFor<PeerEvent>((e) => e.type === 'peer' && e.peer.state === 'failed-over', 'the peer event of the failover');
    assert.ok(change.changed.includes('state'), `changed: ${change.changed.join(', ')}`);
    await c.close();
    await sc.close();
  });
});

describe('a primary superseded', () => {
  test("an operator's failover on the secondary fences the live primary: its snapshot says so, with the generation that serves now", async () => {
    const secondaryHost = new MemoryTransport();
    const scfg = nodeConfig();
    const secondary = new SecondaryNode({ cfg: scfg, mode: 'remus', binding: createBinding(scfg.domain), transport: secondaryHost, logger: silent });
    await secondary.start();
    stops.push(() => secondary.stop('test'));
    const pcfg = nodeConfig();
    pcfg.monitor.listen = { host: '127.0.0.1', port: 0 };
    const plog = capturingLogger();
    const primary = new PrimaryNode({ cfg: pcfg, mode: 'remus', binding: createBinding(pcfg.domain), transport: secondaryHost.peer(), logger: plog.logger });
    await primary.start();
    let stopped = false;
    stops.push(() => (stopped ? Promise.resolve() : primary.stop({ kind: 'signal', signal: 'test' })));
    await firstValueFrom(primary.protection!.state$.pipe(filter((x) => x.state === 'protected')));
    const purl = plog.lines.map(monitorUrlOf).find((u) => u !== undefined)!;
    assert.equal((await status(purl)).lastFailover, null);

    const c = await TestClient.connect(wsOf(purl));
    const promotion = await secondary.parts.promoter.promote('operator request from the test');
    const notice = await primary.whenFenced();
    assert.equal(notice.peerGeneration, promotion.generation);
    const told = await c.waitFor<FailoverEvent>((e) => e.type === 'failover', "the primary's failover event", 30_000);
    const fenced = await status(purl);
    assert.deepEqual(fenced.lastFailover, { ts: fenced.lastFailover?.ts, reason: `fenced: generation ${notice.peerGeneration} serves the guest now (this node's generation: ${notice.ownGeneration})`, generation: notice.peerGeneration });
    assert.equal(told.reason, fenced.lastFailover.reason);
    assert.ok(fenced.history.some((e) => e.type === 'failover' && e.seq === told.seq));
    await c.close();
    stopped = true;
    await primary.stop({ kind: 'fenced', ...notice });
  });
});

/** What a poll of a monitor that stopped says: refused, or cut when it was in flight as the monitor closed. */
const GONE = /ECONNREFUSED|socket hang up|ECONNRESET/;

describe("a peer's monitor going away and coming back", () => {
  test('told once as unreachable with why, once back; no log line per poll', async () => {
    const [pport, sport] = [await freePort(), await freePort()];
    const purl = `http://127.0.0.1:${pport}/`;
    const surl = `http://127.0.0.1:${sport}/`;
    const log = capturingLogger();
    const r = await primaryRig({ logger: log.logger, monitor: { port: pport, peer: { url: surl, intervalMs: PEER_INTERVAL_MS } } });
    stops.push(() => r.stop());
    // The rig's own secondary monitor is on a free port; this one, on the port the primary reads, peers back.
    const secondaryMonitor = (): MonitorServer =>
      new MonitorServer({ host: '127.0.0.1', port: sport, source: new SecondarySource({ server: r.server, promoter: r.promoter }), logger: silent, auth: { token: TOKEN, allowRemoteRead: false }, peer: { url: purl, intervalMs: PEER_INTERVAL_MS } });
    const first = secondaryMonitor();
    await first.start();
    stops.push(() => first.stop());
    const c = await TestClient.connect(r.wsUrl);
    await statusWhen(purl, (s) => s.peer?.reachable === true && s.peer.state === 'standby', 'the primary to read its peer');
    await statusWhen(surl, (s) => s.peer?.reachable === true && s.peer.node === 'primary', 'the secondary to read its peer');

    assert.equal(await peerMonitorUp(purl), 1, 'the peer monitor answers: the gauge says so');

    const logged = log.lines.length;
    await first.stop();
    const lost = await c.waitFor<PeerEvent>((e) => e.type === 'peer' && !e.reachable, 'the peer lost');
    assert.deepEqual(lost.changed.slice(0, 2), ['reachable', 'error']);
    // Refused, or (a poll in flight as the peer stopped) cut: either way the reason is the socket's own.
    assert.match(lost.error!, GONE);
    assert.equal(lost.peer.state, 'standby', 'the last known view is kept');
    const down = await status(purl);
    assert.equal(down.peer!.reachable, false);
    assert.equal(down.peer!.error, lost.error);
    assert.ok(down.peer!.fetchedAt !== null && down.peer!.fetchedAt <= lost.ts, 'when it last answered');
    assert.match(statusText(down), new RegExp(`^pair: +peer monitor http://127\\.0\\.0\\.1:\\d+/ UNREACHABLE: .*(${GONE.source})`, 'm'));
    assert.equal(await peerMonitorUp(purl), 0, 'the peer monitor is gone: the gauge says so');
    // Many polls later, still one line about it.
    await new Promise((resolve) => setTimeout(resolve, PEER_INTERVAL_MS * 10));
    const warned = log.lines.slice(logged).filter((l) => /cannot read the peer's monitor/.test(String(l.msg)));
    assert.equal(warned.length, 1, JSON.stringify(warned));
    assert.equal(c.events.filter((e) => e.type === 'peer' && !e.reachable).length, 1, 'one peer event for the loss');

    const second = secondaryMonitor();
    await second.start();
    stops.push(() => second.stop());
    const back = await c.next<PeerEvent>((e) => e.type === 'peer' && e.reachable, 'the peer back', 30_000);
    assert.ok(back.changed.includes('reachable'));
    assert.equal(back.error, null);
    assert.equal(back.peer.node, 'secondary');
    const answers = log.lines.slice(logged).filter((l) => /the peer's monitor at .* answers/.test(String(l.msg)));
    assert.equal(answers.length, 1, 'once back');
    assert.equal(await peerMonitorUp(purl), 1);
    // The lost and the found are in the history, a refresh of numbers is not.
    const history = (await status(purl)).history.filter((e): e is PeerEvent => e.type === 'peer');
    assert.ok(history.every((e) => e.changed.length > 0));
    assert.ok(history.some((e) => e.seq === lost.seq) && history.some((e) => e.seq === back.seq));
    await c.close();
  });
});

/** A server that is not a monitor, or a broken one: each request is answered by `answer`. */
async function fakePeer(answer: (req: IncomingMessage, res: ServerResponse) => void): Promise<{ url: string; server: Server }> {
  const server = createServer(answer);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  stops.push(() => new Promise((resolve) => server.close(() => resolve())));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`, server };
}

/** A monitor of a bare secondary (no primary streams) that reads `peer`. */
async function monitorReading(peer: string, extra: { timeoutMs?: number; token?: string } = {}): Promise<MonitorServer> {
  const replica = simBinding(64).replica(silent);
  const server = secondaryFor(replica);
  const promoter = new Promoter({ secondary: server, replica, service: { host: '127.0.0.1', port: 0 }, logger: silent });
  const m = new MonitorServer({
    host: '127.0.0.1',
    port: 0,
    source: new SecondarySource({ server, promoter }),
    logger: silent,
    auth: { token: extra.token, allowRemoteRead: false },
    peer: { url: peer, token: extra.token, intervalMs: PEER_INTERVAL_MS, timeoutMs: extra.timeoutMs },
  });
  await m.start();
  stops.push(() => m.stop());
  return m;
}

const unreachable = (m: MonitorServer, why: RegExp): Promise<SnapshotEvent> =>
  statusWhen(m.url, (s) => s.peer !== null && !s.peer.reachable && s.peer.error !== 'not asked yet', `the peer to be unreachable (${why.source})`).then((s) => {
    assert.match(s.peer!.error!, why);
    assert.equal(s.peer!.fetchedAt, null);
    assert.equal(s.peer!.state, null);
    return s;
  });

describe('a peer that is not a good monitor', () => {
  test('garbage, a schema-breaking snapshot, a huge body and a trickle are cut off and told, never taken in', async () => {
    const garbage = await fakePeer((_req, res) => res.end('this is not JSON'));
    await unreachable(await monitorReading(garbage.url), /not JSON/);

    const wrong = await fakePeer((_req, res) => res.end(JSON.stringify({ v: 1, type: 'snapshot', ts: 1, node: 'primary', seq: 1, state: 'asleep' })));
    await unreachable(await monitorReading(wrong.url), /snapshot\.state: expected one of/);

    const notSnapshot = await fakePeer((_req, res) => res.end(JSON.stringify({ v: 1, type: 'dropped', ts: 1, node: 'primary', count: 1 })));
    await unreachable(await monitorReading(notSnapshot.url), /expected a snapshot, got a dropped event/);

    // Writes for as long as anyone reads: the monitor must hang up.
    let hungUp = 0;
    const huge = await fakePeer((_req, res) => {
      const chunk = Buffer.alloc(64 * 1024, 0x20);
      const more = (): void => {
        while (!res.destroyed && res.write(chunk));
      };
      res.on('drain', more);
      res.on('close', () => hungUp++);
      res.writeHead(200, { 'content-type': 'application/json' });
      more();
    });
    const h = await monitorReading(huge.url);
    await unreachable(h, /the answer is over 262144 bytes/);
    await until(() => hungUp > 0, 'the monitor to hang up on the endless answer');
    // Its own snapshot stays small and valid.
    const own = await http(h.url, '/api/status');
    assert.ok(own.body.length < 64 * 1024, `${own.body.length} bytes`);

    // Headers, then a byte now and then: never a whole answer.
    const timers = new Set<NodeJS.Timeout>();
    stops.push(() => Promise.resolve(timers.forEach((t) => clearInterval(t))));
    const trickle = await fakePeer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      const t = setInterval(() => res.write(' '), 50);
      timers.add(t);
      res.on('close', () => clearInterval(t));
    });
    await unreachable(await monitorReading(trickle.url, { timeoutMs: 300 }), /no whole answer in 300 ms/);

    const closed = await fakePeer((req) => req.socket.destroy());
    await unreachable(await monitorReading(closed.url), /socket hang up|ECONNRESET/);
  });

  test("the token goes to a peer only once it asks, and a refusal says what to set", async () => {
    const authorizations: (string | undefined)[] = [];
    const paths = new Set<string | undefined>();
    const asks = await fakePeer((req, res) => {
      authorizations.push(req.headers.authorization);
      paths.add(req.url);
      res.writeHead(401, { 'www-authenticate': 'Bearer' }).end('reading this monitor needs the token\n');
    });
    const m = await monitorReading(asks.url, { token: TOKEN });
    await unreachable(m, /refused this node's token \(HTTP 401\): both nodes need the same monitor token/);
    assert.equal(authorizations[0], undefined, 'the first request goes without the token');
    assert.equal(authorizations[1], `Bearer ${TOKEN}`, 'the second, asked for it, with it');
    assert.deepEqual([...paths], ['/api/status?brief=1&domain=guest'], 'the brief snapshot: no epochs, no history');

    // A real monitor that wants the token to be read: with the same token, the pair is read.
    const locked = await primaryRig({ startEngine: false, monitor: { auth: { token: TOKEN, allowRemoteRead: false, loopbackRead: false } } });
    stops.push(() => locked.stop());
    const reader = await monitorReading(locked.url, { token: TOKEN });
    const s = await statusWhen(reader.url, (x) => x.peer?.reachable === true, 'the locked peer read with the token', 30_000);
    assert.equal(s.peer!.node, 'primary');
    assert.equal(s.peer!.state, 'stopped');
    const without = await monitorReading(locked.url);
    await unreachable(without, /wants a token to be read, and this node has none/);
  });
});

describe('the history', () => {
  test('what happened before a client connected is in its snapshot, as it was broadcast, oldest first', async () => {
    const r = await primaryRig();
    stops.push(() => r.stop());
    const c = await TestClient.connect(r.wsUrl, { headers: { authorization: `Bearer ${TOKEN}` } });
    await c.waitFor((e) => e.type === 'state' && e.state === 'protected', 'protection');
    const post = (body: Record<string, unknown>): Promise<unknown> => http(r.url, '/api/control', { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` }, body: JSON.stringify(body) });
    await post({ action: 'set-interval', intervalMs: 40 });
    await c.waitFor<ModeEvent>((e) => e.type === 'mode' && e.intervalMs === 40, 'the new interval');
    await post({ action: 'stop-protection' });
    await c.waitFor<StateEvent>((e) => e.type === 'state' && e.state === 'stopped', 'the stop');
    await c.waitFor<ControlEvent>((e) => e.type === 'control' && e.action === 'stop-protection', 'the audit line');
    await c.close();
    const kinds: MonitorEvent['type'][] = ['state', 'mode', 'control', 'divergence', 'peer', 'failover'];
    const before = c.events.filter((e): e is StateEvent | ModeEvent | ControlEvent => kinds.includes(e.type));

    // A page reload: a new connection.
    const again = await TestClient.connect(r.wsUrl);
    const snap = await again.waitFor<SnapshotEvent>((e) => e.type === 'snapshot', 'the snapshot');
    assert.ok(before.length >= 4, `${before.length} events`);
    for (const e of before) assert.deepEqual(snap.history.find((h) => h.seq === e.seq), e, `${e.type} #${e.seq}`);
    const seqs = snap.history.map((e) => e.seq);
    assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b), 'oldest first');
    assert.ok(snap.history.every((e) => e.seq <= snap.seq));
    assert.ok(!snap.history.some((e) => (e.type as string) === 'epoch'), 'no epochs: they have their own summary (recent)');
    // What a peer reads: the same, without the recent epochs and the history.
    const brief = validateEvent(JSON.parse((await http(r.url, '/api/status?brief=1')).body));
    const full = validateEvent(JSON.parse((await http(r.url, '/api/status')).body));
    assert.ok(brief.type === 'snapshot' && full.type === 'snapshot');
    assert.deepEqual([brief.recent, brief.history], [[], []]);
    assert.ok(full.recent.length > 0 && full.history.length >= before.length);
    assert.equal(brief.state, full.state);
    await again.close();
  });
});
