/**
 * The heartbeat channel over real loopback TCP: both sides alive, death by
 * timeout (measured), reconnect after a restart, fencing by generation, a
 * malformed peer, and heartbeats that keep flowing while another socket of
 * the same process is saturated with 64 MiB.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { after, describe, test } from 'node:test';
import { HeartbeatError } from '../../src/heartbeat/errors.js';
import { HeartbeatChannel, type HeartbeatChannelOptions, type HeartbeatEvents, type PeerStateEvent } from '../../src/heartbeat/channel.js';
import { tcpTransport } from '../../src/transport/tcp.js';

const INTERVAL = 50;
const TIMEOUT = 250;
const LOOPBACK = '127.0.0.1';

const open: HeartbeatChannel[] = [];
after(async () => {
  await Promise.all(open.map((c) => c.stop()));
});

async function channel(opts: Partial<HeartbeatChannelOptions> & Pick<HeartbeatChannelOptions, 'role'>): Promise<HeartbeatChannel> {
  const c = new HeartbeatChannel({ transport: tcpTransport, generation: 1, intervalMs: INTERVAL, timeoutMs: TIMEOUT, ...opts });
  open.push(c);
  await c.start();
  return c;
}

async function pair(primary: Partial<HeartbeatChannelOptions> = {}, secondary: Partial<HeartbeatChannelOptions> = {}): Promise<{ p: HeartbeatChannel; s: HeartbeatChannel; port: number }> {
  const s = await channel({ role: 'secondary', listen: { host: LOOPBACK, port: 0 }, ...secondary });
  const port = s.address()!.port;
  const p = await channel({ role: 'primary', connect: { host: LOOPBACK, port }, ...primary });
  return { p, s, port };
}

/** The next `event` from `ch` that satisfies `pred`, or a rejection after `ms`. */
function next<K extends keyof HeartbeatEvents>(ch: HeartbeatChannel, event: K, pred: (...args: HeartbeatEvents[K]) => boolean, ms: number): Promise<HeartbeatEvents[K]> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      ch.off(event, listener as never);
      reject(new Error(`no matching '${String(event)}' within ${ms} ms`));
    }, ms);
    const listener = (...args: HeartbeatEvents[K]): void => {
      if (!pred(...args)) return;
      clearTimeout(timer);
      ch.off(event, listener as never);
      resolve(args);
    };
    ch.on(event, listener as never);
  });
}

const peerIs = (state: string) => (e: PeerStateEvent): boolean => e.state === state;

// A hung socket must fail the suite, not stall it.
describe('HeartbeatChannel', { timeout: 10_000 }, () => {
  test('both sides see each other alive within a few intervals, with generation and epoch', async () => {
    const t0 = performance.now();
    const s = await channel({ role: 'secondary', listen: { host: LOOPBACK, port: 0 }, epoch: () => 6 });
    const sAlive = next(s, 'peer', peerIs('alive'), 1000);
    const sEpoch = next(s, 'epoch', () => true, 1000);
    const sGen = next(s, 'generation', () => true, 1000);
    const p = await channel({ role: 'primary', generation: 3, connect: { host: LOOPBACK, port: s.address()!.port }, epoch: () => 7 });
    const pAlive = next(p, 'peer', peerIs('alive'), 1000);
    const pEpoch = next(p, 'epoch', () => true, 1000);
    const [[sa], [pa], [se], [pe], [sg]] = await Promise.all([sAlive, pAlive, sEpoch, pEpoch, sGen]);
    const took = Math.max(sa.at, pa.at) - t0;
    assert.ok(took < 3 * INTERVAL, `alive after ${took.toFixed(1)} ms`);
    assert.equal(sa.from, 'unknown');
    assert.equal(sa.incarnation, p.incarnation);
    assert.equal(pa.incarnation, s.incarnation);
    assert.deepEqual(se, { epoch: 7, role: 'primary' });
    assert.deepEqual(pe, { epoch: 6, role: 'secondary' });
    assert.deepEqual(sg, { generation: 3, role: 'primary' });
    assert.equal(s.generation, 3, 'the secondary follows its primary');
    assert.equal(p.fenced, false);
    // And they stay alive: 8 intervals with no other transition.
    const transitions: string[] = [];
    p.on('peer', (e) => transitions.push(`p:${e.state}`));
    s.on('peer', (e) => transitions.push(`s:${e.state}`));
    await new Promise((r) => setTimeout(r, 8 * INTERVAL));
    assert.deepEqual(transitions, []);
    await Promise.all([p.stop(), s.stop()]);
  });

  for (const victim of ['secondary', 'primary'] as const) {
    test(`stopping the ${victim} makes the other side declare it dead between timeout and timeout + 2 intervals`, async () => {
      const { p, s } = await pair();
      const [killer, killed] = victim === 'secondary' ? [p, s] : [s, p];
      await next(killer, 'peer', peerIs('alive'), 1000);
      // Kill right as a heartbeat arrives: from here on the observer hears nothing.
      const [hb] = await next(killer, 'heartbeat', () => true, 1000);
      const killedAt = hb.receivedAt;
      const stopping = killed.stop();
      const seen: string[] = [];
      killer.on('peer', (e) => seen.push(e.state));
      const [dead] = await next(killer, 'peer', peerIs('dead'), TIMEOUT + 10 * INTERVAL);
      await stopping;
      const after = dead.at - killedAt;
      assert.ok(after >= TIMEOUT && after <= TIMEOUT + 2 * INTERVAL, `declared dead ${after.toFixed(1)} ms after the last heartbeat`);
      assert.deepEqual(seen, ['suspect', 'dead']);
      assert.match(dead.reason, /nothing received for/);
      assert.equal(killer.peerState, 'dead');
      await killer.stop();
    });
  }

  test('reconnects after the secondary restarts; the old incarnation is reported dead, the new one alive', async () => {
    const { p, s, port } = await pair();
    await next(p, 'peer', peerIs('alive'), 1000);
    const oldIncarnation = s.incarnation;
    await s.stop();
    await new Promise((r) => setTimeout(r, 2 * INTERVAL)); // the primary is dialing a closed port meanwhile
    const s2 = await channel({ role: 'secondary', listen: { host: LOOPBACK, port } });
    const [[gone], [back], [sAlive]] = await Promise.all([
      next(p, 'peer', (e) => e.incarnation === oldIncarnation && e.state === 'dead', 2000),
      next(p, 'peer', (e) => e.incarnation === s2.incarnation && e.state === 'alive', 2000),
      next(s2, 'peer', peerIs('alive'), 2000),
    ]);
    assert.notEqual(s2.incarnation, oldIncarnation);
    assert.match(gone.reason, /restarted/);
    assert.ok(back.at >= gone.at);
    assert.equal(sAlive.incarnation, p.incarnation);
    assert.equal(p.peerState, 'alive');
    await Promise.all([p.stop(), s2.stop()]);
  });

  test('fencing: the secondary promotes to the old generation + 1 and the returning old primary is fenced', async () => {
    const { p, s, port } = await pair({ generation: 5 }, { generation: 1 });
    await next(s, 'peer', peerIs('alive'), 1000);
    assert.equal(s.generation, 5);
    await p.stop();
    await next(s, 'peer', peerIs('dead'), TIMEOUT + 10 * INTERVAL);
    assert.equal(s.promote(), 6);
    assert.equal(s.role, 'primary');
    // The old primary comes back, still believing it is generation 5.
    const old = await channel({ role: 'primary', generation: 5, connect: { host: LOOPBACK, port } });
    const [[fenced], [stale]] = await Promise.all([next(old, 'fenced', () => true, 1000), next(s, 'stale', () => true, 1000)]);
    assert.deepEqual(fenced, { ownGeneration: 5, peerGeneration: 6 });
    assert.deepEqual(stale, { ownGeneration: 6, peerGeneration: 5 });
    assert.equal(old.fenced, true);
    assert.equal(s.fenced, false);
    // A stale primary's beats are not life: the new primary's view stays dead, nothing new comes alive.
    let revived = false;
    s.on('peer', () => (revived = true));
    await new Promise((r) => setTimeout(r, 4 * INTERVAL));
    assert.equal(revived, false);
    assert.equal(s.peerState, 'dead');
    await Promise.all([old.stop(), s.stop()]);
  });

  test('a primary hearing an equal or lower generation is not fenced', async () => {
    const { p, s } = await pair({ generation: 4 }, { generation: 4 });
    await next(p, 'peer', peerIs('alive'), 1000);
    await new Promise((r) => setTimeout(r, 2 * INTERVAL));
    assert.equal(p.fenced, false);
    assert.equal(p.generation, 4);
    await Promise.all([p.stop(), s.stop()]);
  });

  test('a malformed frame closes that connection with a coded error; a good peer then gets through', async () => {
    const s = await channel({ role: 'secondary', listen: { host: LOOPBACK, port: 0 } });
    const port = s.address()!.port;
    const bad = connect({ host: LOOPBACK, port });
    await once(bad, 'connect');
    bad.resume(); // read what the channel sends, or the peer's close is never seen
    const erred = next(s, 'protocolError', () => true, 1000);
    bad.write(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n0123456789012345678901'));
    const [[err]] = await Promise.all([erred, once(bad, 'close')]);
    assert.equal(err.code, 'ERR_HEARTBEAT_BAD_MAGIC');
    assert.equal(s.peerState, 'unknown');
    const p = await channel({ role: 'primary', connect: { host: LOOPBACK, port } });
    await next(s, 'peer', peerIs('alive'), 1000);
    await Promise.all([p.stop(), s.stop()]);
  });

  test('redials with capped exponential backoff while the peer accepts but never speaks', async () => {
    const accepts: number[] = [];
    const server = createServer((sock) => {
      accepts.push(performance.now());
      sock.destroy();
    });
    server.listen(0, LOOPBACK);
    await once(server, 'listening');
    const p = await channel({ role: 'primary', connect: { host: LOOPBACK, port: (server.address() as AddressInfo).port } });
    await new Promise((r) => setTimeout(r, 480));
    await p.stop();
    server.close();
    const gaps = accepts.slice(1).map((t, i) => t - accepts[i]);
    // Delays double from the interval and stop at half the timeout: 50, 100, 125, 125 ms.
    const expected = [50, 100, 125, 125];
    assert.ok(gaps.length >= 3 && gaps.length <= 4, `gaps ${gaps.map((g) => g.toFixed(0)).join(', ')}`);
    gaps.forEach((g, i) => assert.ok(g >= expected[i] - 2 && g <= expected[i] + 40, `gap ${i}: ${g.toFixed(1)} ms, expected ${expected[i]}`));
  });

  test('start() refuses a heartbeat port already in use, and options that make no sense', async () => {
    const s = await channel({ role: 'secondary', listen: { host: LOOPBACK, port: 0 } });
    const clash = new HeartbeatChannel({ transport: tcpTransport, role: 'secondary', generation: 1, listen: { host: LOOPBACK, port: s.address()!.port } });
    await assert.rejects(clash.start(), (e: unknown) => e instanceof HeartbeatError && e.code === 'ERR_HEARTBEAT_LISTEN_FAILED');
    for (const o of [{ generation: 0 }, { generation: 1, listen: undefined }, { generation: 1, connect: { host: LOOPBACK, port: 1 } }, { generation: 1, timeoutMs: 40 }]) {
      const c = new HeartbeatChannel({ transport: tcpTransport, role: 'secondary', listen: { host: LOOPBACK, port: 0 }, ...o });
      await assert.rejects(c.start(), (e: unknown) => e instanceof HeartbeatError && e.code === 'ERR_HEARTBEAT_BAD_OPTIONS', JSON.stringify(o));
    }
    await s.stop();
  });

  test('heartbeats keep arriving within the timeout while another socket is saturated with 64 MiB', async () => {
    const { p, s } = await pair();
    await Promise.all([next(p, 'peer', peerIs('alive'), 1000), next(s, 'peer', peerIs('alive'), 1000)]);

    // The bulk pair: the receiver holds off reading for a while so the
    // sender's queue really is full (kernel buffers and 64 MiB in Node).
    const server = createServer();
    server.listen(0, LOOPBACK);
    await once(server, 'listening');
    const accepted = once(server, 'connection') as Promise<[Socket]>;
    const bulk = connect({ host: LOOPBACK, port: (server.address() as AddressInfo).port });
    await once(bulk, 'connect');
    const [sink] = await accepted;
    sink.pause();
    const TOTAL = 64 * 1024 * 1024;
    const MARK = Buffer.from('MARKER!!');
    let received = 0;
    let markerAt = 0;
    const done = new Promise<void>((resolve) =>
      sink.on('data', (chunk: Buffer) => {
        received += chunk.length;
        if (received >= TOTAL + MARK.length) {
          markerAt = performance.now();
          resolve();
        }
      }),
    );

    const arrivals = { p: [] as number[], s: [] as number[] };
    const states: string[] = [];
    const onP = (hb: { receivedAt: number }): number => arrivals.p.push(hb.receivedAt);
    const onS = (hb: { receivedAt: number }): number => arrivals.s.push(hb.receivedAt);
    p.on('heartbeat', onP);
    s.on('heartbeat', onS);
    p.on('peer', (e) => states.push(`p:${e.state}`));
    s.on('peer', (e) => states.push(`s:${e.state}`));

    const start = performance.now();
    const chunk = Buffer.alloc(1024 * 1024, 0xab);
    for (let i = 0; i < 64; i++) bulk.write(chunk);
    // What a heartbeat sharing this socket would suffer: it waits behind all of it.
    bulk.write(MARK);
    assert.ok(bulk.writableLength > 32 * 1024 * 1024, `only ${bulk.writableLength} bytes queued`);
    await new Promise((r) => setTimeout(r, 500));
    sink.resume();
    await done;
    const end = performance.now();
    p.off('heartbeat', onP);
    s.off('heartbeat', onS);

    assert.ok(markerAt - start >= 500, 'the bulk socket was held full for 500 ms');
    for (const side of ['p', 's'] as const) {
      const times = [start, ...arrivals[side].filter((t) => t >= start && t <= end), end];
      let maxGap = 0;
      for (let i = 1; i < times.length; i++) maxGap = Math.max(maxGap, times[i] - times[i - 1]);
      assert.ok(maxGap < TIMEOUT, `${side}: longest heartbeat gap ${maxGap.toFixed(1)} ms during the transfer`);
      assert.ok(times.length - 2 >= Math.floor((end - start) / INTERVAL / 2), `${side}: only ${times.length - 2} heartbeats in ${(end - start).toFixed(0)} ms`);
    }
    assert.ok(!states.some((x) => x.endsWith('dead')), states.join(', '));
    bulk.destroy();
    sink.destroy();
    server.close();
    await Promise.all([p.stop(), s.stop()]);
  });
});
