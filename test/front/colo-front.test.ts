/**
 * COLO's data path on one machine, with the real clients: redis-cli and
 * redis-benchmark talk TCP to the ColoFront, which turns each connection
 * into frames for two guest replicas (primary and secondary, both running
 * the real key-value service behind their virtual NICs); the real
 * comparator (proxy/) compares their output and only what it releases
 * reaches the clients. A checkpoint here is what COLO does to the guests:
 * both paused, the secondary's RAM made the primary's, the comparator told.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import { after, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { ColoComparator } from '../../proxy/colo-comparator.js';
import { SimDomain } from '../../src/domain/sim/domain.js';
import { ColoFront, type ColoFrontOptions } from '../../src/front/colo-front.js';
import { KvCommands } from '../../src/guest/commands.js';
import { KvStore } from '../../src/guest/kv-store.js';
import { GuestNetStack } from '../../src/guest/net/stack.js';
import { Tcp, decodeSegment, encodeSegment, ipv4, seqAdd, type Endpoint } from '../../src/net/wire.js';
import { until } from '../helpers/wait.js';
import { REDIS_BENCHMARK, REDIS_CLI, ReplyReader, request, requireRedisTools, runTool } from '../guest/helpers.js';

const PAGES = 4096; // 16 MiB
const NET_BASE = 12 * 1024 * 1024;
const GUEST: Endpoint = { mac: Buffer.from('525400123456', 'hex'), ip: ipv4('10.0.0.1'), port: 6379 };

class Guest {
  readonly domain = new SimDomain({ pages: PAGES });
  clockOffsetUs = 0;
  stack!: GuestNetStack;

  boot(transmit: (f: Buffer) => void): void {
    const store = KvStore.format(this.domain, { bytes: NET_BASE, hashSeed: 5 });
    const commands = new KvCommands({ store, clock: () => Date.now() * 1000 + this.clockOffsetUs, random: () => 0.25 });
    this.stack = GuestNetStack.format(this.domain, { base: NET_BASE, maxSockets: 64, rxBytes: 8192, ip: GUEST.ip, port: GUEST.port, mac: GUEST.mac, secret: 42 }, commands, transmit);
  }

  /** After a checkpoint replaced RAM: the guest's software finds its state there. */
  reattach(transmit: (f: Buffer) => void): void {
    const commands = new KvCommands({ store: KvStore.attach(this.domain), clock: () => Date.now() * 1000 + this.clockOffsetUs, random: () => 0.25 });
    this.stack = GuestNetStack.attach(this.domain, NET_BASE, commands, transmit);
  }

  deliver(frame: Buffer): void {
    this.domain.run(() => this.stack.receive(frame));
  }
}

interface Rig {
  front: ColoFront;
  port: number;
  primary: Guest;
  secondary: Guest;
  comparator: ColoComparator;
  checkpoints: string[];
}

async function rig(frontOptions: Partial<ColoFrontOptions> = {}): Promise<Rig> {
  const primary = new Guest();
  const secondary = new Guest();
  const comparator = new ColoComparator({ compareTimeoutMs: 2000, expiredScanCycleMs: 100 });
  const toP = (f: Buffer): void => comparator.pushPrimary(f);
  const toS = (f: Buffer): void => comparator.pushSecondary(f);
  primary.boot(toP);
  // The secondary starts as a copy of the primary (the first checkpoint).
  secondary.domain.ram.set(primary.domain.ram);
  secondary.reattach(toS);
  const front = new ColoFront({
    guest: GUEST,
    client: { ip: ipv4('10.0.0.2'), mac: Buffer.from('525400abcdef', 'hex') },
    toGuests: (f) => {
      primary.deliver(f);
      secondary.deliver(f);
    },
    port: 0,
    ...frontOptions,
  });
  comparator.on('release', (f) => front.release(f.data));
  const checkpoints: string[] = [];
  comparator.on('checkpoint', (req) => {
    checkpoints.push(`${req.reason}: ${req.detail}`);
    // COLO's checkpoint, in miniature: both paused, S := P, the comparator told, both resumed.
    setImmediate(() => {
      primary.domain.pause();
      secondary.domain.pause();
      secondary.domain.ram.set(primary.domain.ram);
      secondary.reattach(toS);
      comparator.checkpointDone();
      primary.domain.unpause();
      secondary.domain.unpause();
    });
  });
  comparator.start();
  const { port } = await front.start();
  return { front, port, primary, secondary, comparator, checkpoints };
}


describe('ColoFront with two guest replicas and the comparator', () => {
  const rigs: Rig[] = [];
  after(async () => {
    for (const r of rigs) {
      r.comparator.close();
      await r.front.stop();
    }
  });

  test('redis-benchmark SET/GET through COLO: correct replies, every frame compared and matched, no checkpoint', async () => {
    requireRedisTools();
    const r = await rig();
    rigs.push(r);
    const res = await runTool(REDIS_BENCHMARK, ['-p', String(r.port), '-t', 'set,get', '-n', '4000', '-c', '10', '-r', '200', '-q']);
    assert.equal(res.code, 0, res.out);
    assert.match(res.out, /SET: [\d.]+ requests per second/);
    assert.match(res.out, /GET: [\d.]+ requests per second/);
    assert.deepEqual(r.checkpoints, [], 'a deterministic workload never diverges');
    const st = r.comparator.stats();
    assert.ok(st.matched >= 8000, `only ${st.matched} primary frames matched`);
    assert.equal(st.held.primary, 0);
    const check = await runTool(REDIS_CLI, ['-p', String(r.port), 'DBSIZE']);
    assert.match(check.out, /^\(integer\) \d+|^\d+/m);
  });

  test('TIME answered differently by the secondary: a checkpoint, and the client gets the primary\'s answer', async () => {
    requireRedisTools();
    const r = await rig();
    rigs.push(r);
    r.secondary.clockOffsetUs = 5_000_000;
    const before = Date.now();
    const res = await runTool(REDIS_CLI, ['-p', String(r.port), 'TIME']);
    assert.equal(res.code, 0, res.out);
    const after = Date.now();
    const secs = Number(res.out.split('\n')[0]);
    // The primary's clock read between these two instants; the secondary's (+5 s) could only if the request took 5 s.
    assert.ok(after - before < 5000 && secs >= Math.floor(before / 1000) && secs <= Math.floor(after / 1000), `TIME ${secs} is the primary's clock, not the secondary's (+5 s): asked at ${before} ms, answered by ${after} ms`);
    assert.ok(r.checkpoints.length >= 1, 'the divergence asked for a checkpoint');
    assert.match(r.checkpoints[0], /^mismatch/);
    // After the checkpoint the replicas agree again on deterministic commands.
    const n = r.checkpoints.length;
    const set = await runTool(REDIS_CLI, ['-p', String(r.port), 'SET', 'after', 'checkpoint']);
    assert.match(set.out, /OK/);
    const get = await runTool(REDIS_CLI, ['-p', String(r.port), 'GET', 'after']);
    assert.match(get.out, /checkpoint/);
    assert.equal(r.checkpoints.length, n, 'no further divergence');
    assert.equal(r.front.metrics().strayFrames, 0);
  });
});

describe('ColoFront hold()', () => {
  test('reads no client request while held, and every held request once let go', async () => {
    const frames: Buffer[] = [];
    const front = new ColoFront({ guest: GUEST, client: { ip: ipv4('10.0.0.2'), mac: Buffer.from('525400000002', 'hex') }, toGuests: (f) => frames.push(f), port: 0 });
    const { port } = await front.start();
    const clients: net.Socket[] = [];
    try {
      const connect = async (): Promise<net.Socket> => {
        const s = net.connect({ host: '127.0.0.1', port });
        clients.push(s);
        await once(s, 'connect');
        return s;
      };
      const payloads = (): string[] => frames.map((f) => decodeSegment(f).payload.toString()).filter((p) => p.length > 0);
      const early = await connect();
      await until(() => frames.length === 1, 'the SYN');
      front.hold();
      early.write('PING\r\n');
      // A client that connects while held is held too.
      const late = await connect();
      await until(() => frames.length === 2, 'the second SYN');
      late.write('ECHO x\r\n');
      // Proves an absence: the requests wait in the sockets, unread.
      await sleep(100);
      assert.deepEqual(payloads(), [], 'no request read while held');
      front.unhold();
      await until(() => payloads().length === 2, 'both requests');
      assert.deepEqual(payloads().sort(), ['ECHO x\r\n', 'PING\r\n']);
    } finally {
      for (const c of clients) c.destroy();
      await front.stop();
    }
  });
});

/** A client socket with a reply reader, connected. */
async function client(port: number): Promise<{ socket: net.Socket; replies: ReplyReader }> {
  const socket = net.connect({ host: '127.0.0.1', port });
  socket.on('error', () => {});
  const replies = new ReplyReader(socket);
  await once(socket, 'connect');
  return { socket, replies };
}

describe('ColoFront: idle clients give up their slots', () => {
  test('idle clients fill max_clients; a newcomer evicts the one idle longest and is served by both replicas', async () => {
    let clock = 0;
    // Below the guests' 64 sockets: the front's limit is the one reached.
    const r = await rig({ maxConnections: 32, now: () => clock });
    try {
      const idle = await Promise.all(Array.from({ length: 32 }, () => client(r.port)));
      await until(() => r.front.metrics().connections === 32, 'the front to accept 32 clients');
      const early = await client(r.port);
      assert.deepEqual(await early.replies.next(2000), { error: 'ERR max number of clients reached' }, 'nobody idle long enough yet');
      clock += 10_000;
      const fresh = await client(r.port);
      fresh.socket.write(request('PING'));
      assert.equal(await fresh.replies.next(5000), 'PONG');
      await until(() => idle.filter((c) => c.replies.ended).length === 1, 'one idle client to be closed');
      const m = r.front.metrics();
      assert.deepEqual([m.connections, m.evicted, m.rejected, m.strayFrames], [32, 1, 1, 0]);
      assert.deepEqual(r.checkpoints, [], 'the reset reached both replicas alike: no divergence');
      for (const c of [...idle, early, fresh]) c.socket.destroy();
    } finally {
      r.comparator.close();
      await r.front.stop();
    }
  });

  describe('with the guests played by the test', () => {
    const CLIENT = { ip: ipv4('10.0.0.2'), mac: Buffer.from('525400000002', 'hex') };

    /** The SYN each client's connection sent, in order. */
    const syns = (frames: Buffer[]): { port: number; isn: number }[] =>
      frames.map((f) => decodeSegment(f)).filter((s) => (s.flags & Tcp.SYN) !== 0).map((s) => ({ port: s.src.port, isn: s.seq }));
    /** A frame of the primary guest to a client's port. */
    const fromGuest = (port: number, seq: number, ack: number, flags: number, payload?: string): Buffer =>
      encodeSegment({ src: GUEST, dst: { ...CLIENT, port }, seq, ack, flags, window: 65535, payload: payload === undefined ? undefined : Buffer.from(payload) });

    test('output the comparator has not released keeps its client from being evicted or timed out', async () => {
      let clock = 0;
      const frames: Buffer[] = [];
      const front = new ColoFront({ guest: GUEST, client: CLIENT, toGuests: (f) => frames.push(f), port: 0, maxConnections: 2, idleTimeoutMs: 60_000, now: () => clock });
      const { port } = await front.start();
      try {
        const a = await client(port);
        await until(() => syns(frames).length === 1, "a's SYN");
        const b = await client(port);
        await until(() => syns(frames).length === 2, "b's SYN");
        const [sa, sb] = syns(frames);
        for (const s of [sa, sb]) {
          const synAck = fromGuest(s.port, 5000, seqAdd(s.isn, 1), Tcp.SYN | Tcp.ACK);
          front.produced(synAck);
          front.release(synAck);
        }
        // The primary answered a; the comparator holds the answer (waiting for the secondary's twin).
        const reply = fromGuest(sa.port, 5001, seqAdd(sa.isn, 1), Tcp.ACK | Tcp.PSH, '+PONG\r\n');
        front.produced(reply);
        clock += 120_000;
        assert.equal(front.sweep(), 1, 'the idle timeout closes b only');
        await b.replies.closed(2000);
        const rst = frames.map((f) => decodeSegment(f)).find((s) => s.src.port === sb.port && (s.flags & Tcp.RST) !== 0);
        assert.ok(rst !== undefined, "the guests were told to free b's socket");
        const c = await client(port);
        await until(() => syns(frames).length === 3, "c's SYN");
        clock += 120_000;
        // a has been silent longest, but its reply is still owed: d takes c's slot.
        const d = await client(port);
        await c.replies.closed(2000);
        await until(() => syns(frames).length === 4, "d's SYN");
        // Only a (owed its reply) and d (just come): e is refused.
        const e = await client(port);
        assert.deepEqual(await e.replies.next(2000), { error: 'ERR max number of clients reached' });
        assert.equal(a.replies.ended, false);
        front.release(reply);
        assert.equal(await a.replies.next(2000), 'PONG', 'the released reply reached its client');
        const m = front.metrics();
        assert.deepEqual([m.connections, m.evicted, m.timedOut, m.rejected], [2, 1, 1, 1]);
        for (const x of [a, b, c, d, e]) x.socket.destroy();
      } finally {
        await front.stop();
      }
    });

    test('bad limits are refused at start with ERR_FRONT_BAD_OPTIONS', async () => {
      for (const bad of [{ maxConnections: 65_513 }, { evictIdleMs: -1 }, { idleTimeoutMs: 1e12 }, { closeGraceMs: 1.5 }]) {
        const front = new ColoFront({ guest: GUEST, client: CLIENT, toGuests: () => {}, port: 0, ...bad });
        await assert.rejects(front.start(), (e: Error & { code?: string }) => e.code === 'ERR_FRONT_BAD_OPTIONS', JSON.stringify(bad));
      }
    });
  });
});
