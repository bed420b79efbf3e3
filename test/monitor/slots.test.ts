/**
 * Idle connections must not lock operators out of the monitor: a full
 * house of WebSockets that never send a thing (they answer pings and read
 * everything, as any `ws` client does: nothing to cut them for), then an
 * operator with the token still gets in and acts; connections that never
 * finish their request are closed at the handshake timeout. Real engine,
 * real sockets.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { after, describe, test } from 'node:test';
import WebSocket from 'ws';
import { ReplyReader, request } from '../guest/helpers.js';
import { tempDir } from '../helpers/cli.js';
import { monitoredPair } from '../helpers/proc.js';
import { MonitorMetrics, type MetricsOptions } from '../../src/monitor/metrics.js';
import type { ReplyEvent, SnapshotEvent } from '../../src/monitor/events.js';
import { TOKEN, TestClient, capturingLogger, primaryRig, type PrimaryRig } from './helpers.js';

const rigs: PrimaryRig[] = [];
after(async () => {
  for (const r of rigs) await r.stop();
});
async function rig(opts: Parameters<typeof primaryRig>[0] = {}): Promise<PrimaryRig> {
  const r = await primaryRig(opts);
  rigs.push(r);
  return r;
}

/** Opens a WebSocket that will never send; resolves with it, or with the HTTP status it was refused with. */
function idleSocket(url: string, headers: Record<string, string> = {}): Promise<WebSocket | number> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers });
    ws.once('open', () => resolve(ws));
    ws.once('unexpected-response', (_req, res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
      ws.terminate();
    });
    ws.once('error', reject);
  });
}

async function idleSockets(url: string, n: number): Promise<(WebSocket | number)[]> {
  const out: (WebSocket | number)[] = [];
  // In batches, so the listen backlog never overflows into SYN retransmits.
  for (let i = 0; i < n; i += 64) out.push(...(await Promise.all(Array.from({ length: Math.min(64, n - i) }, () => idleSocket(url)))));
  return out;
}

const bearer = { authorization: `Bearer ${TOKEN}` };
const scrape = async (url: string): Promise<string> => (await fetch(new URL('/metrics', url))).text();
const sample = (text: string, line: string): number | undefined => {
  const m = new RegExp(`^${line.replace(/[{}"]/g, (c) => `\\${c}`)} (\\S+)$`, 'm').exec(text);
  return m === null ? undefined : Number(m[1]);
};

describe('monitor slots: idle WebSockets never lock an operator out', () => {
  test('256 idle viewers at the default limit; an operator with the token still connects and acts, evicting the viewer idle longest when it must', async () => {
    const log = capturingLogger();
    // Epochs every 100 ms: 256 clients get every one of them, and the test is about slots, not load.
    const r = await rig({ intervalMs: 100, logger: log.logger });
    const sockets = await idleSockets(r.wsUrl, 256);
    const viewers = sockets.filter((s): s is WebSocket => typeof s !== 'number');
    try {
      // 240 of the 256 slots take clients without the token; the rest are refused, the operators' 16 kept.
      assert.equal(viewers.length, 240);
      assert.deepEqual([...new Set(sockets.filter((s) => typeof s === 'number'))], [503]);
      assert.equal(r.monitor.hub.size, 240);

      const operator = await TestClient.connect(r.wsUrl, { headers: bearer });
      await operator.waitFor<SnapshotEvent>((e) => e.type === 'snapshot', 'the snapshot');
      const reply = (await operator.request({ type: 'control', action: 'checkpoint' })) as ReplyEvent;
      assert.equal(reply.type, 'reply', JSON.stringify(reply));
      assert.equal(reply.action, 'checkpoint');

      // Fill the operators' reserve; one more operator then takes the slot of the viewer idle longest.
      const more = await Promise.all(Array.from({ length: 15 }, () => idleSocket(r.wsUrl, bearer)));
      assert.ok(more.every((s) => typeof s !== 'number'));
      assert.equal(r.monitor.hub.size, 256);
      const first = viewers[0];
      const evicted = new Promise<number>((resolve) => first.once('close', (code) => resolve(code)));
      // A browser's way: the token as a subprotocol.
      const late = await TestClient.connect(r.wsUrl, {}, ['tandem.v1', `tandem-token.${Buffer.from(TOKEN).toString('base64url')}`]);
      assert.equal(await evicted, 1013, 'the first viewer was told to try again later');
      assert.equal(((await late.request({ type: 'control', action: 'checkpoint' })) as ReplyEvent).type, 'reply');
      assert.equal(r.monitor.hub.size, 256);
      assert.equal(viewers.filter((v) => v.readyState === WebSocket.OPEN).length, 239, 'only the one viewer went');
      // Viewers stay refused: their share is full.
      assert.equal(await idleSocket(r.wsUrl), 503);

      const text = await scrape(r.url);
      assert.equal(sample(text, 'tandem_monitor_clients{node="primary"}'), 256);
      assert.equal(sample(text, 'tandem_monitor_operator_clients{node="primary"}'), 17);
      assert.equal(sample(text, 'tandem_monitor_viewers_evicted_total{node="primary"}'), 1);
      assert.equal(sample(text, 'tandem_monitor_clients_refused_total{role="viewer",node="primary"}'), 17);
      assert.equal(sample(text, 'tandem_monitor_clients_refused_total{role="operator",node="primary"}'), 0);

      // The floods cost a line or two, and the token is in none of them.
      const slotLines = log.lines.filter((l) => typeof l.msg === 'string' && /^monitor.*(refused a WebSocket|viewer .* closed to give|WebSocket slots)/.test(l.msg));
      assert.ok(slotLines.length >= 1 && slotLines.length <= 3, `${slotLines.length} lines`);
      assert.ok(!log.text().includes(TOKEN), 'the token never reaches the log');
      for (const s of [...sockets, ...more]) if (typeof s !== 'number') s.terminate();
      await operator.close();
      await late.close();
    } finally {
      for (const s of sockets) if (typeof s !== 'number') s.terminate();
    }
  });

  test('a wrong token claims no operator slot; with every slot an operator\'s, one more operator is refused', async () => {
    const r = await rig({ monitor: { maxClients: 2, operatorSlots: 1 } });
    const viewer = await idleSocket(r.wsUrl);
    assert.ok(viewer instanceof WebSocket);
    assert.equal(await idleSocket(r.wsUrl), 503, 'the one viewer slot is taken');
    assert.equal(await idleSocket(r.wsUrl, { authorization: 'Bearer not-the-token-at-all' }), 503, 'a wrong token is a viewer');
    const o1 = await idleSocket(r.wsUrl, bearer);
    assert.ok(o1 instanceof WebSocket);
    const closed = new Promise<number>((resolve) => viewer.once('close', (code) => resolve(code)));
    const o2 = await idleSocket(r.wsUrl, bearer);
    assert.ok(o2 instanceof WebSocket, 'the viewer made room');
    assert.equal(await closed, 1013);
    assert.equal(await idleSocket(r.wsUrl, bearer), 503, 'every slot is an operator\'s');
    o1.terminate();
    o2.terminate();
  });

  test('a connection that never finishes its request is closed at the handshake timeout; a WebSocket is not', async () => {
    const r = await rig({ monitor: { handshakeTimeoutMs: 300 } });
    const ws = await TestClient.connect(r.wsUrl);
    await ws.waitFor((e) => e.type === 'snapshot', 'the snapshot');
    const { hostname, port } = new URL(r.url);
    const open = async (): Promise<{ socket: Socket; closed: Promise<void> }> => {
      const socket = connect({ host: hostname, port: Number(port) });
      socket.on('error', () => {});
      socket.resume();
      const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
      await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
      return { socket, closed };
    };
    const silent = await open();
    const partial = await open();
    // Headers a byte short of their end, and an upgrade that never finishes either.
    partial.socket.write(`GET /ws HTTP/1.1\r\nHost: ${hostname}:${port}\r\nUpgrade: websocket\r\n`);
    const t0 = Date.now();
    await Promise.all([silent.closed, partial.closed]);
    const took = Date.now() - t0;
    assert.ok(took < 5000, `closed after ${took} ms`);
    // The upgraded connection outlived the timeout and still answers.
    assert.equal(((await ws.request({ type: 'status' })) as ReplyEvent).type, 'reply');
    await ws.close();
  });

  test('bad slot and timeout options are refused at start with ERR_MONITOR_BAD_OPTIONS', async () => {
    const r = await rig();
    const { MonitorServer } = await import('../../src/monitor/http.js');
    for (const bad of [{ maxClients: 0 }, { operatorSlots: 300 }, { handshakeTimeoutMs: 50 }, { handshakeTimeoutMs: 1e9 }, { pingIntervalMs: 0 }]) {
      const m = new MonitorServer({ host: '127.0.0.1', port: 0, source: r.source, logger: capturingLogger().logger, auth: { token: TOKEN, allowRemoteRead: false }, ...bad });
      await assert.rejects(m.start(), (e: Error & { code?: string }) => e.code === 'ERR_MONITOR_BAD_OPTIONS', JSON.stringify(bad));
    }
  });
});

describe('service client metrics', () => {
  test("the front's clients, refusals, evictions and timeouts are Prometheus gauges and counters", async () => {
    const stats = { connections: 1000, maxConnections: 1000, refused: 3, evicted: 7, timedOut: 0 };
    const options: MetricsOptions = { node: 'primary', state: () => 'protected', lagMs: () => 5, clients: () => 0, serviceClients: () => stats };
    const m = new MonitorMetrics(options);
    let text = await m.text();
    assert.equal(sample(text, 'tandem_service_clients{node="primary"}'), 1000);
    assert.equal(sample(text, 'tandem_service_clients_max{node="primary"}'), 1000);
    assert.equal(sample(text, 'tandem_service_clients_refused_total{node="primary"}'), 3);
    assert.equal(sample(text, 'tandem_service_clients_evicted_total{node="primary"}'), 7);
    assert.equal(sample(text, 'tandem_service_clients_timed_out_total{node="primary"}'), 0);
    stats.evicted = 107;
    stats.timedOut = 2;
    text = await m.text();
    assert.equal(sample(text, 'tandem_service_clients_evicted_total{node="primary"}'), 107);
    assert.equal(sample(text, 'tandem_service_clients_timed_out_total{node="primary"}'), 2);
    // A node without a front has none of them.
    const none = await new MonitorMetrics({ ...options, serviceClients: undefined }).text();
    assert.equal(sample(none, 'tandem_service_clients{node="primary"}'), undefined);
  });
});

describe('slots from the configuration, with real processes', () => {
  const tmp = tempDir();
  after(() => tmp.cleanup());

  test("the primary's front evicts an idle client at primary.max_clients and /metrics counts it; monitor.max_clients bounds the viewers", async () => {
    const tokenFile = tmp.path('token');
    writeFileSync(tokenFile, `${TOKEN}\n`, { mode: 0o600 });
    const config = tmp.path('slots.yaml');
    writeFileSync(
      config,
      `domain:\n  memory_mib: 4\nprimary:\n  interval_ms: 30\n  max_clients: 2\n  client_evict_idle_ms: 0\nsecondary:\n  listen: 127.0.0.1:0\n  service: 127.0.0.1:0\nmonitor:\n  token_file: ${tokenFile}\n  max_clients: 2\n  operator_slots: 1\n`,
    );
    const { primary, primaryMonitor, secondary } = await monitoredPair(config);
    const open = async (port: number): Promise<{ socket: Socket; replies: ReplyReader }> => {
      const socket = connect({ host: '127.0.0.1', port });
      socket.on('error', () => {});
      const replies = new ReplyReader(socket);
      await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
      return { socket, replies };
    };
    try {
      const service = Number((await primary.waitLine((l) => /service front listening/.test(String(l.msg)), 'the service front')).port);
      const first = await open(service);
      first.socket.write(request('PING'));
      assert.equal(await first.replies.next(5000), 'PONG');
      const second = await open(service);
      second.socket.write(request('PING'));
      assert.equal(await second.replies.next(5000), 'PONG');
      // Both idle now; with no minimum, the newcomer takes the slot of the one idle longest.
      const third = await open(service);
      third.socket.write(request('PING'));
      assert.equal(await third.replies.next(5000), 'PONG');
      await first.replies.closed(5000);
      await primary.waitLine((l) => l.event === 'evicted', 'the eviction logged');
      const text = await scrape(primaryMonitor);
      assert.equal(sample(text, 'tandem_service_clients{node="primary",domain="guest"}'), 2);
      assert.equal(sample(text, 'tandem_service_clients_max{node="primary",domain="guest"}'), 2);
      assert.equal(sample(text, 'tandem_service_clients_evicted_total{node="primary",domain="guest"}'), 1);
      assert.equal(sample(text, 'tandem_service_clients_refused_total{node="primary",domain="guest"}'), 0);

      const wsUrl = `${primaryMonitor.replace(/^http/, 'ws')}ws`;
      const viewer = await idleSocket(wsUrl);
      assert.ok(viewer instanceof WebSocket);
      assert.equal(await idleSocket(wsUrl), 503, "monitor.max_clients 2 with 1 kept for operators: one viewer's slot");
      const operator = await idleSocket(wsUrl, bearer);
      assert.ok(operator instanceof WebSocket);
      viewer.terminate();
      operator.terminate();
      for (const c of [first, second, third]) c.socket.destroy();
      assert.ok(!primary.text().includes(TOKEN), 'the token never reaches the log');
    } finally {
      primary.child.kill('SIGTERM');
      secondary.child.kill('SIGTERM');
    }
  });
});
