/**
 * The standalone comparator's Prometheus metrics, scraped over HTTP while a
 * real ProxyServer is driven through its sockets: the totals follow what
 * the comparator did, a mismatch is counted with its reason and its
 * decision time, and the endpoint serves nothing but GET /metrics.
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { ComparatorClient, type ComparatorAddresses } from '../../proxy/client.js';
import { udp } from '../../proxy/craft.js';
import { DECISION_BUCKETS_S, ProxyMetrics, ProxyMetricsServer } from '../../proxy/metrics.js';
import { NotifyWords } from '../../proxy/notify.js';
import { ProxyServer } from '../../proxy/server.js';

const ANY = { host: '127.0.0.1', port: 0 };

interface Rig {
  server: ProxyServer;
  client: ComparatorClient;
  url: string;
}

async function rig(): Promise<Rig> {
  const server = new ProxyServer({ primaryIn: ANY, secondaryIn: ANY, outdev: ANY, notify: ANY, compareTimeoutMs: 60_000 });
  const metrics = new ProxyMetrics(server);
  metrics.start();
  const http = new ProxyMetricsServer(metrics, ANY);
  await server.start();
  const m = await http.start();
  after(async () => {
    await http.stop();
    await server.stop();
  });
  const a = server.addresses();
  const at = (x: { address: string; port: number }): { host: string; port: number } => ({ host: x.address, port: x.port });
  const addresses: ComparatorAddresses = { primaryIn: at(a.primary_in), secondaryIn: at(a.secondary_in), outdev: at(a.outdev), notify: at(a.notify) };
  const client = new ComparatorClient(addresses);
  await client.start();
  after(() => client.stop());
  await client.init();
  await client.ready();
  return { server, client, url: `http://127.0.0.1:${m.port}/metrics` };
}

/** Sample values by metric name with its labels, e.g. `tandem_proxy_matched_total` or `x{a="b"}`. */
async function scrape(url: string): Promise<Map<string, number>> {
  const res = await fetch(url);
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
  const out = new Map<string, number>();
  for (const line of (await res.text()).split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const sp = line.lastIndexOf(' ');
    out.set(line.slice(0, sp), Number(line.slice(sp + 1)));
  }
  return out;
}

describe('ProxyMetrics over HTTP', () => {
  test('totals, held frames, peers, and a mismatch with its decision time', async () => {
    const { server, client, url } = await rig();
    const flow = { src: '10.0.0.2', dst: '10.0.0.9', sport: 53, dport: 4000 };
    // Three matched pairs.
    for (let i = 0; i < 3; i++) {
      const f = udp({ ...flow, payload: Buffer.from(`same ${i}`) });
      const out = client.released(f);
      client.sendSecondary(f);
      client.sendPrimary(f);
      await out;
    }
    let m = await scrape(url);
    assert.equal(m.get('tandem_proxy_matched_total'), 3);
    // The client's readiness probe (ARP, passed uncompared) is released too.
    const releasedBefore = m.get('tandem_proxy_released_total')!;
    assert.equal(releasedBefore, 4);
    assert.equal(m.get('tandem_proxy_checkpoint_decision_seconds_count{reason="mismatch"}'), undefined, 'no decision yet');
    for (const port of ['primary_in', 'secondary_in', 'outdev', 'notify']) assert.equal(m.get(`tandem_proxy_peer_connected{port="${port}"}`), 1, port);

    // A lonely secondary frame is held; then a diverging pair asks for a checkpoint.
    client.sendSecondary(udp({ ...flow, dport: 4001, payload: Buffer.from('alone') }));
    const asked = client.nextNotify(NotifyWords.DO_CHECKPOINT);
    const p = udp({ ...flow, payload: Buffer.from('primary says') });
    client.sendSecondary(udp({ ...flow, payload: Buffer.from('second. says') }));
    client.sendPrimary(p);
    await asked;
    m = await scrape(url);
    assert.equal(m.get('tandem_proxy_checkpoint_requests_total{reason="mismatch",notified="true"}'), 1);
    assert.equal(m.get('tandem_proxy_checkpoint_decision_seconds_count{reason="mismatch"}'), 1);
    const sum = m.get('tandem_proxy_checkpoint_decision_seconds_sum{reason="mismatch"}')!;
    assert.ok(sum > 0 && sum < 1, `decision took ${sum} s`);
    // The one observation sits in the first bucket at least as large as it.
    const first = DECISION_BUCKETS_S.find((b) => b >= sum)!;
    assert.equal(m.get(`tandem_proxy_checkpoint_decision_seconds_bucket{le="${first}",reason="mismatch"}`), 1);
    assert.equal(m.get('tandem_proxy_held_frames{side="primary"}'), 1, 'the diverging primary frame waits for the checkpoint');
    assert.equal(m.get('tandem_proxy_held_frames{side="secondary"}'), 2, 'the lonely secondary frame and the diverging twin, both until the checkpoint drops them');

    // The checkpoint flushes both.
    const out = client.released(p);
    client.sendNotify(NotifyWords.CHECKPOINT_DONE);
    await out;
    m = await scrape(url);
    assert.equal(m.get('tandem_proxy_held_frames{side="primary"}'), 0);
    assert.equal(m.get('tandem_proxy_held_frames{side="secondary"}'), 0);
    assert.equal(m.get('tandem_proxy_released_total'), releasedBefore + 1, 'the held primary frame, at the checkpoint');
    assert.equal(m.get('tandem_proxy_matched_total'), 3, 'a released total mirrors the comparator, it does not double count');
    assert.ok(m.get('tandem_proxy_dropped_total')! >= 5, 'three matched secondary twins and the two flushed at the checkpoint');

    const notifyGone = new Promise<void>((resolve) => server.on('disconnected', (e) => e.port === 'notify' && resolve()));
    client.stop();
    await notifyGone;
    m = await scrape(url);
    assert.equal(m.get('tandem_proxy_peer_connected{port="notify"}'), 0);
  });

  test('serves GET and HEAD /metrics only', async () => {
    const { url } = await rig();
    assert.equal((await fetch(url.replace('/metrics', '/'))).status, 404);
    assert.equal((await fetch(url.replace('/metrics', '/metricsx'))).status, 404);
    const post = await fetch(url, { method: 'POST', body: 'x' });
    assert.equal(post.status, 405);
    assert.equal(post.headers.get('allow'), 'GET, HEAD');
    const head = await fetch(url, { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal((await fetch(`${url}?x=1`)).status, 200, 'a query string does not change the path');
  });
});
