/**
 * The heartbeat channel over real loopback TCP: both sides alive, death by
 * timeout, reconnect after a restart, fencing by generation, the redial
 * backoff, a malformed peer, and heartbeats that keep flowing while another
 * socket of the same process is saturated with 64 MiB.
 *
 * Time is virtual (a ManualClock drives the beats, the redials and the
 * detector): a test advances it and then waits for the bytes that moves to
 * arrive, so timing is exact however loaded the machine, and the sockets
 * stay real. The detector's own timing rules are tested in detector.test.ts;
 * here it is the channel's wiring of them.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { after, describe, test } from 'node:test';
import { HeartbeatError } from '../../src/heartbeat/errors.js';
import { HeartbeatChannel, type HeartbeatChannelOptions, type HeartbeatEvents, type PeerStateEvent } from '../../src/heartbeat/channel.js';
import { ManualClock } from '../../src/heartbeat/clock.js';
import { tcpTransport } from '../../src/transport/tcp.js';
import type { Transport } from '../../src/transport/transport.js';
import { MemoryTransport } from '../helpers/memory-transport.js';
import { until } from '../helpers/wait.js';

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

/** The next `event` from `ch` that satisfies `pred`, or a rejection after `ms` (of real time: a hung socket, not a timing bound). */
function next<K extends keyof HeartbeatEvents>(ch: HeartbeatChannel, event: K, pred: (...args: HeartbeatEvents[K]) => boolean = () => true, ms = 5000): Promise<HeartbeatEvents[K]> {
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

/** Beat `n` of the peer (each side numbers its beats from 0, the one it sends on connecting). */
const beat = (n: number) => (hb: { sequence: number }): boolean => hb.sequence === n;

/** Advances `clock` one interval at a time and waits, each time, for both sides to hear the other's next beat. */
async function beatsHeard(clock: ManualClock, p: HeartbeatChannel, s: HeartbeatChannel, rounds: number): Promise<void> {
  for (let i = 1; i <= rounds; i++) {
    const heard = Promise.all([next(p, 'heartbeat', beat(i)), next(s, 'heartbeat', beat(i))]);
    clock.advance(INTERVAL);
    const [[hp], [hs]] = await heard;
    assert.equal(hp.receivedAt, clock.now());
    assert.equal(hs.receivedAt, clock.now());
  }
}

/** Advances `clock` a millisecond at a time until `happened` holds: the first instant it does. */
function advanceUntil(clock: ManualClock, happened: () => boolean, what: string, maxMs = 10_000): void {
  for (let ms = 0; !happened(); ms++) {
    if (ms === maxMs) throw new Error(`no ${what} within ${maxMs} ms of virtual time`);
    clock.advance(1);
  }
}

/** TCP, noting on `clock` when the channel dials, and counting dials that failed. */
function dialSpy(clock: ManualClock): { transport: Transport; dials: number[]; failed: () => number } {
  const dials: number[] = [];
  let failed = 0;
  const transport: Transport = {
    connect(to, options) {
      dials.push(clock.now());
      const c = tcpTransport.connect(to, options);
      c.catch(() => failed++);
      return c;
    },
    listen: (at, onConnection, options) => tcpTransport.listen(at, onConnection, options),
  };
  return { transport, dials, failed: () => failed };
}

// A hung socket must fail the suite, not stall it.
describe('HeartbeatChannel', { timeout: 20_000 }, () => {
  test('both sides are alive on the first heartbeat, with generation and epoch, and stay alive while beats arrive', async () => {
    const clock = new ManualClock();
    const s = await channel({ role: 'secondary', listen: { host: LOOPBACK, port: 0 }, epoch: () => 6, clock });
    const sAlive = next(s, 'peer', peerIs('alive'));
    const sEpoch = next(s, 'epoch');
    const sGen = next(s, 'generation');
    const p = await channel({ role: 'primary', generation: 3, connect: { host: LOOPBACK, port: s.address()!.port }, epoch: () => 7, clock });
    const pAlive = next(p, 'peer', peerIs('alive'));
    const pEpoch = next(p, 'epoch');
    const [[sa], [pa], [se], [pe], [sg]] = await Promise.all([sAlive, pAlive, sEpoch, pEpoch, sGen]);
    // Each side beats as soon as it is connected: alive before any interval has passed.
    assert.equal(sa.at, 0);
    assert.equal(pa.at, 0);
    assert.equal(sa.from, 'unknown');
    assert.equal(sa.incarnation, p.incarnation);
    assert.equal(pa.incarnation, s.incarnation);
    assert.deepEqual(se, { epoch: 7, role: 'primary' });
    assert.deepEqual(pe, { epoch: 6, role: 'secondary' });
    assert.deepEqual(sg, { generation: 3, role: 'primary' });
    assert.equal(s.generation, 3, 'the secondary follows its primary');
    assert.equal(p.fenced, false);
    // And they stay alive: 8 intervals, every beat heard each way, and no other transition.
    const transitions: string[] = [];
    p.on('peer', (e) => transitions.push(`p:${e.state}`));
    s.on('peer', (e) => transitions.push(`s:${e.state}`));
    await beatsHeard(clock, p, s, 8);
    assert.deepEqual(transitions, []);
    await Promise.all([p.stop(), s.stop()]);
    assert.equal(clock.pending, 0, 'a timer outlived stop()');
  });

  for (const victim of ['secondary', 'primary'] as const) {
    test(`stopping the ${victim} makes the other side declare it dead exactly the timeout after the last heartbeat it heard`, async () => {
      const clock = new ManualClock();
      const { p, s } = await pair({ clock }, { clock });
      const [killer, killed] = victim === 'secondary' ? [p, s] : [s, p];
      await next(killer, 'peer', peerIs('alive'));
      const heard = next(killer, 'heartbeat', beat(1));
      clock.advance(INTERVAL);
      const [last] = await heard;
      const seen: PeerStateEvent[] = [];
      killer.on('peer', (e) => seen.push(e));
      const disconnected = next(killer, 'disconnected');
      await killed.stop();
      await disconnected;
      // The connection is gone, so nothing more can arrive; the disconnect itself declares nothing.
      assert.equal(seen.length, 0);
      assert.equal(killer.peerState, 'alive');
      clock.advance(last.receivedAt + TIMEOUT - 1 - clock.now());
      assert.deepEqual(
        seen.map((e) => e.state),
        ['suspect'],
        'suspect on the way, not dead a millisecond early',
      );
      clock.advance(1);
      assert.deepEqual(
        seen.map((e) => e.state),
        ['suspect', 'dead'],
      );
      const dead = seen[1];
      assert.equal(dead.at, last.receivedAt + TIMEOUT);
      assert.equal(dead.incarnation, killed.incarnation);
      assert.match(dead.reason, /nothing received for/);
      assert.equal(killer.peerState, 'dead');
      await killer.stop();
      assert.equal(clock.pending, 0, 'a timer outlived stop()');
    });
  }

  test('reconnects after the secondary restarts; the old incarnation is reported dead, the new one alive', async () => {
    const clock = new ManualClock();
    const spy = dialSpy(clock);
    const { p, s, port } = await pair({ clock, transport: spy.transport }, { clock });
    await next(p, 'peer', peerIs('alive'));
    const oldIncarnation = s.incarnation;
    const disconnected = next(p, 'disconnected');
    await s.stop();
    await disconnected;
    // The primary redials the closed port meanwhile, and is refused.
    advanceUntil(clock, () => spy.dials.length === 2, 'redial');
    await until(() => spy.failed() === 1, 'the redial to be refused');
    const s2 = await channel({ role: 'secondary', listen: { host: LOOPBACK, port }, clock });
    const outcome = Promise.all([
      next(p, 'peer', (e) => e.incarnation === oldIncarnation && e.state === 'dead'),
      next(p, 'peer', (e) => e.incarnation === s2.incarnation && e.state === 'alive'),
      next(s2, 'peer', peerIs('alive')),
    ]);
    advanceUntil(clock, () => spy.dials.length === 3, 'second redial');
    assert.ok(clock.now() < TIMEOUT, 'the old incarnation has not timed out');
    const [[gone], [back], [sAlive]] = await outcome;
    assert.notEqual(s2.incarnation, oldIncarnation);
    assert.match(gone.reason, /restarted/);
    assert.ok(back.at >= gone.at);
    assert.equal(sAlive.incarnation, p.incarnation);
    assert.equal(p.peerState, 'alive');
    await Promise.all([p.stop(), s2.stop()]);
    assert.equal(clock.pending, 0, 'a timer outlived stop()');
  });

  test('fencing: the secondary promotes to the old generation + 1 and the returning old primary is fenced', async () => {
    const clock = new ManualClock();
    const { p, s, port } = await pair({ generation: 5, clock }, { generation: 1, clock });
    await next(s, 'peer', peerIs('alive'));
    assert.equal(s.generation, 5);
    const disconnected = next(s, 'disconnected');
    await p.stop();
    await disconnected;
    const dead = next(s, 'peer', peerIs('dead'));
    clock.advance(TIMEOUT);
    await dead;
    assert.equal(s.promote(), 6);
    assert.equal(s.role, 'primary');
    // The old primary comes back, still believing it is generation 5.
    const old = await channel({ role: 'primary', generation: 5, connect: { host: LOOPBACK, port }, clock });
    const [[fenced], [stale]] = await Promise.all([next(old, 'fenced'), next(s, 'stale')]);
    assert.deepEqual(fenced, { ownGeneration: 5, peerGeneration: 6 });
    assert.deepEqual(stale, { ownGeneration: 6, peerGeneration: 5 });
    assert.equal(old.fenced, true);
    assert.equal(s.fenced, false);
    // A stale primary's beats are not life: four more of them heard, and the new primary's view stays dead.
    const revived: string[] = [];
    s.on('peer', (e) => revived.push(e.state));
    for (let i = 0; i < 4; i++) {
      const heard = next(s, 'stale');
      clock.advance(INTERVAL);
      await heard;
    }
    assert.deepEqual(revived, []);
    assert.equal(s.peerState, 'dead');
    await Promise.all([old.stop(), s.stop()]);
  });

  test('a stranded primary says so at once and on every beat; the secondary times it from the first frame that said it, and forgets it when told, when the primary restarts or once promoted', async () => {
    const clock = new ManualClock();
    const { p, s, port } = await pair({ clock }, { clock });
    await next(s, 'peer', peerIs('alive'));
    assert.equal(s.peerStrandedMs, undefined);
    const said = next(s, 'stranded');
    clock.advance(7);
    p.setStranded(true);
    const [e] = await said;
    // Sent at once, not at the next beat.
    assert.deepEqual(e, { stranded: true, at: 7 });
    for (let i = 0; i < 2; i++) {
      const heard = next(s, 'heartbeat');
      clock.advance(INTERVAL);
      assert.equal((await heard)[0].stranded, true, 'every beat says it');
    }
    assert.equal(s.peerStrandedMs, clock.now() - 7, 'timed from the first frame, not the latest');
    const unsaid = next(s, 'stranded');
    p.setStranded(false);
    assert.deepEqual((await unsaid)[0].stranded, false);
    assert.equal(s.peerStrandedMs, undefined);
    assert.throws(() => s.setStranded(true), (err: unknown) => err instanceof HeartbeatError && err.code === 'ERR_HEARTBEAT_BAD_OPTIONS', 'only a primary is stranded');

    // A restarted primary has said nothing yet: the old run's word is void.
    p.setStranded(true);
    await next(s, 'stranded', (x) => x.stranded);
    await p.stop();
    const p2 = await channel({ role: 'primary', connect: { host: LOOPBACK, port }, clock });
    await next(s, 'stranded', (x) => !x.stranded);
    assert.equal(s.peerStrandedMs, undefined);

    // Once this side serves, a stranded peer's word counts for nothing.
    p2.setStranded(true);
    await next(s, 'stranded', (x) => x.stranded);
    const dead = next(s, 'peer', peerIs('dead'));
    await p2.stop();
    clock.advance(TIMEOUT);
    await dead;
    s.promote();
    assert.equal(s.peerStrandedMs, undefined);
    await s.stop();
  });

  for (const secondaryGeneration of [4, 2]) {
    test(`a primary of generation 4 hearing generation ${secondaryGeneration} is not fenced`, async () => {
      const clock = new ManualClock();
      const { p, s } = await pair({ generation: 4, clock }, { generation: secondaryGeneration, clock });
      // The heartbeat event follows the generation check of the same frame.
      const [hb] = await next(p, 'heartbeat');
      assert.equal(hb.generation, secondaryGeneration);
      assert.equal(p.fenced, false);
      assert.equal(p.generation, 4);
      await next(s, 'heartbeat');
      assert.equal(s.generation, 4, 'the secondary follows its primary');
      await Promise.all([p.stop(), s.stop()]);
    });
  }

  test('a malformed frame closes that connection with a coded error; a good peer then gets through', async () => {
    const s = await channel({ role: 'secondary', listen: { host: LOOPBACK, port: 0 } });
    const port = s.address()!.port;
    const bad = connect({ host: LOOPBACK, port });
    await once(bad, 'connect');
    bad.resume(); // read what the channel sends, or the peer's close is never seen
    const erred = next(s, 'protocolError');
    bad.write(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n0123456789012345678901'));
    const [[err]] = await Promise.all([erred, once(bad, 'close')]);
    assert.equal(err.code, 'ERR_HEARTBEAT_BAD_MAGIC');
    assert.equal(s.peerState, 'unknown');
    const p = await channel({ role: 'primary', connect: { host: LOOPBACK, port } });
    await next(s, 'peer', peerIs('alive'));
    await Promise.all([p.stop(), s.stop()]);
  });

  test('a partition that heals: the silent connection is dropped and dialled again, so the peer is heard within a timeout or so, not at TCP\'s next retransmission', async () => {
    const net = new MemoryTransport();
    const primaryHost = net.peer();
    const s = await channel({ role: 'secondary', listen: { host: 'secondary', port: 9 }, transport: net });
    const p = await channel({ role: 'primary', connect: { host: 'secondary', port: 9 }, transport: primaryHost });
    await next(s, 'peer', (e) => e.state === 'alive');
    const drops: string[] = [];
    p.on('disconnected', (e) => drops.push(e.reason));
    // Packets vanish both ways; the connection stays open and silent.
    primaryHost.silence();
    await next(s, 'peer', (e) => e.state === 'dead');
    await until(() => drops.some((r) => /^silent for \d+ ms$/.test(r)), 'the primary to drop its silent connection');
    primaryHost.heal();
    const healedAt = performance.now();
    await next(s, 'peer', (e) => e.state === 'alive');
    const tookMs = performance.now() - healedAt;
    assert.ok(tookMs < 4 * TIMEOUT, `heard again ${tookMs.toFixed(0)} ms after the network healed`);
  });

  test('redials with capped exponential backoff while the peer accepts but never speaks', async () => {
    const clock = new ManualClock();
    const spy = dialSpy(clock);
    const server = createServer((sock) => sock.destroy());
    server.listen(0, LOOPBACK);
    await once(server, 'listening');
    const p = await channel({ role: 'primary', connect: { host: LOOPBACK, port: (server.address() as AddressInfo).port }, clock, transport: spy.transport });
    const hangups: number[] = [];
    p.on('disconnected', () => hangups.push(clock.now()));
    // After each hang-up, the first instant at which the channel dials again.
    const delays: number[] = [];
    for (let i = 0; i < 5; i++) {
      await until(() => hangups.length === i + 1, `hang-up ${i + 1}`);
      advanceUntil(clock, () => spy.dials.length === i + 2, `redial ${i + 1}`);
      delays.push(clock.now() - hangups[i]);
    }
    await p.stop();
    server.close();
    // Delays double from the interval and stop at half the timeout.
    assert.deepEqual(delays, [INTERVAL, 2 * INTERVAL, TIMEOUT / 2, TIMEOUT / 2, TIMEOUT / 2]);
    assert.equal(clock.pending, 0, 'a timer outlived stop()');
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

  test('heartbeats keep arriving while another socket of the process holds 64 MiB it cannot send', async () => {
    const clock = new ManualClock();
    const { p, s } = await pair({ clock }, { clock });
    await Promise.all([next(p, 'peer', peerIs('alive')), next(s, 'peer', peerIs('alive'))]);

    // The bulk pair: the receiver reads nothing until the heartbeats are in,
    // so the sender's queue stays full (kernel buffers and 64 MiB in Node).
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
    const done = new Promise<void>((resolve) =>
      sink.on('data', (chunk: Buffer) => {
        received += chunk.length;
        if (received >= TOTAL + MARK.length) resolve();
      }),
    );
    const states: string[] = [];
    p.on('peer', (e) => states.push(`p:${e.state}`));
    s.on('peer', (e) => states.push(`s:${e.state}`));

    const chunk = Buffer.alloc(1024 * 1024, 0xab);
    for (let i = 0; i < 64; i++) bulk.write(chunk);
    // What a heartbeat sharing this socket would suffer: it waits behind all of it.
    bulk.write(MARK);
    assert.ok(bulk.writableLength > 32 * 1024 * 1024, `only ${bulk.writableLength} bytes queued`);
    // Ten intervals of beats, every one heard each way, while the bulk socket stays full.
    await beatsHeard(clock, p, s, 10);
    assert.ok(bulk.writableLength > 32 * 1024 * 1024, 'the bulk socket drained before the heartbeats were in');
    assert.equal(received, 0);
    sink.resume();
    await done;
    assert.deepEqual(states, []);
    bulk.destroy();
    sink.destroy();
    server.close();
    await Promise.all([p.stop(), s.stop()]);
  });
});
