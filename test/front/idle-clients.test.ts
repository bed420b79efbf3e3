/**
 * Idle clients must not keep others out of the service front: at
 * max_clients a newcomer takes the slot of the client idle longest (if idle
 * long enough), the idle timeout closes idle clients, and a client with a
 * reply held for a commit, unread in its socket, or still sending, is never
 * taken for idle. Real sockets to the real guest service; idle time runs on
 * an injected clock, so nothing here waits for it.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { describe, test } from 'node:test';

import { sessionAtEpoch1 } from '../helpers/output-session.js';
import { configFromObject } from '../../src/config/config.js';
import { clientLimits, DEFAULT_FRONT_EVICT_IDLE_MS, DEFAULT_FRONT_MAX_CONNECTIONS, idleSweepMs } from '../../src/front/client-limits.js';
import { IdleClients } from '../../src/front/idle-clients.js';
import { OutputBuffer } from '../../src/front/output-buffer.js';
import { ServiceFront } from '../../src/front/service-front.js';
import { request } from '../guest/helpers.js';
import { capturingLogger } from '../monitor/helpers.js';
import { until } from '../helpers/wait.js';
import { connect, startStack } from './helpers.js';

/** `n` clients that connect and then never send or read a byte; resolves once the front has accepted them all. */
async function idleClients(port: number, n: number, accepted: () => number): Promise<net.Socket[]> {
  const sockets: net.Socket[] = [];
  const before = accepted();
  // In batches: a thousand SYNs at once would overflow the listen backlog and wait for retransmits.
  for (let i = 0; i < n; i += 100) {
    const batch = await Promise.all(
      Array.from({ length: Math.min(100, n - i) }, async () => {
        const s = net.connect(port, '127.0.0.1');
        s.on('error', () => {});
        await new Promise<void>((resolve, reject) => {
          s.once('connect', resolve);
          s.once('error', reject);
        });
        return s;
      }),
    );
    sockets.push(...batch);
  }
  await until(() => accepted() - before === n, `the front to accept ${n} clients`);
  return sockets;
}

describe('IdleClients', () => {
  const client = (busy = false): { busy: () => boolean } => ({ busy: () => busy });

  test('finds the client idle longest, skipping busy ones and any idle less than the minimum', () => {
    const idle = new IdleClients<{ busy: () => boolean }>();
    const a = client();
    const b = client(true);
    const c = client();
    idle.add(a, 0);
    idle.add(b, 0);
    idle.add(c, 50);
    assert.equal(idle.longestIdle(100, 60), a);
    idle.touch(a, 90);
    // b is idle longest but busy; c is next; a was just active.
    assert.equal(idle.longestIdle(100, 40), c);
    assert.equal(idle.longestIdle(100, 60), undefined, 'c has been idle only 50 ms');
    assert.deepEqual(idle.idleFor(100, 10), [c, a]);
    assert.equal(idle.idleMs(c, 100), 50);
    idle.remove(c);
    assert.equal(idle.size, 2);
    assert.equal(idle.longestIdle(1000, 0), a);
    idle.touch(c, 1000);
    assert.equal(idle.size, 2, 'touching a removed client does not bring it back');
  });
});

describe('client limits', () => {
  test('defaults, bounds, and typed errors for bad options', () => {
    assert.deepEqual(clientLimits({}, 65536), { maxConnections: DEFAULT_FRONT_MAX_CONNECTIONS, evictIdleMs: DEFAULT_FRONT_EVICT_IDLE_MS, idleTimeoutMs: 0 });
    for (const bad of [{ maxConnections: 0 }, { maxConnections: 70_000 }, { maxConnections: 1.5 }, { evictIdleMs: -1 }, { idleTimeoutMs: Number.NaN }, { idleTimeoutMs: 8 * 24 * 3600 * 1000 }]) {
      assert.throws(
        () => clientLimits(bad, 65536),
        (e: Error & { code?: string }) => e.name === 'FrontError' && e.code === 'ERR_FRONT_BAD_OPTIONS' && e.message.includes(Object.keys(bad)[0]),
        JSON.stringify(bad),
      );
    }
    assert.equal(idleSweepMs(300_000), 1000);
    assert.equal(idleSweepMs(2000), 200);
    assert.equal(idleSweepMs(1), 10);
  });

  test('the primary section carries them: client_evict_idle_ms and client_idle_timeout_ms', () => {
    const p = configFromObject({ primary: { client_evict_idle_ms: 0, client_idle_timeout_ms: 300_000 } }, 't.yaml').primary;
    assert.deepEqual([p.maxClients, p.clientEvictIdleMs, p.clientIdleTimeoutMs], [1000, 0, 300_000]);
    const d = configFromObject({}, 't.yaml').primary;
    assert.deepEqual([d.clientEvictIdleMs, d.clientIdleTimeoutMs], [10_000, 0]);
    assert.throws(() => configFromObject({ primary: { client_idle_timeout_ms: -5 } }, 't.yaml'), /primary\.client_idle_timeout_ms: expected an integer in 0\.\.604800000, got -5/);
    assert.throws(() => configFromObject({ primary: { client_evict_idle_ms: '10s' } }, 't.yaml'), /primary\.client_evict_idle_ms: expected an integer/);
  });

  test('a front refuses bad limits at start with ERR_FRONT_BAD_OPTIONS', async () => {
    for (const bad of [{ maxConnections: 0 }, { evictIdleMs: -1 }, { idleTimeoutMs: 0.5 }, { closeGraceMs: -1 }]) {
      const front = new ServiceFront({ buffer: new OutputBuffer(), guest: { host: '127.0.0.1', port: 1 }, port: 0, ...bad });
      await assert.rejects(front.start(), (e: Error & { code?: string }) => e.code === 'ERR_FRONT_BAD_OPTIONS', JSON.stringify(bad));
    }
  });
});

describe('ServiceFront: idle clients give up their slots', () => {
  test('1000 idle clients fill the default max_clients; a new client still gets served', async () => {
    let clock = 0;
    const log = capturingLogger();
    // The sim guest's own limit is 1000 too: the newcomer's guest connection must wait for the
    // guest to have let the evicted one go, or the guest would refuse it.
    const s = await startStack({ mode: 'none' }, { now: () => clock, logger: log.logger });
    assert.equal(s.service.metrics().rejectedConnections, 0);
    const idle = await idleClients(s.frontPort, DEFAULT_FRONT_MAX_CONNECTIONS, () => s.front.metrics().accepted);
    try {
      assert.equal(s.front.metrics().connections, 1000);
      // Idle, but not yet for long: a newcomer is refused, as Redis refuses one past maxclients.
      const early = await connect(s.frontPort);
      assert.deepEqual(await early.replies.next(2000), { error: 'ERR max number of clients reached' });
      early.socket.destroy();

      clock += DEFAULT_FRONT_EVICT_IDLE_MS;
      const closed = idle.map((sock) => new Promise<void>((resolve) => sock.once('close', () => resolve())));
      const fresh = await connect(s.frontPort);
      fresh.socket.write(request('PING'));
      assert.equal(await fresh.replies.next(2000), 'PONG');
      // The one idle longest went (the first accepted), and only it.
      await Promise.race(closed);
      assert.equal(idle.filter((x) => x.destroyed || x.readableEnded).length, 1);
      const m = s.front.metrics();
      assert.deepEqual([m.connections, m.evictedIdle, m.rejectedConnections], [1000, 1, 1]);
      assert.equal(s.service.metrics().rejectedConnections, 0, 'the guest never had to refuse a connection');

      // Many newcomers at once evict as many idle clients, and the log says so in two lines, not a hundred.
      const more = await Promise.all(Array.from({ length: 100 }, () => connect(s.frontPort)));
      for (const c of more) c.socket.write(request('PING'));
      for (const c of more) assert.equal(await c.replies.next(5000), 'PONG');
      assert.equal(s.front.metrics().evictedIdle, 101);
      assert.equal(s.service.metrics().rejectedConnections, 0);
      for (const c of [fresh, ...more]) c.socket.destroy();
    } finally {
      for (const x of idle) x.destroy();
      await s.stop();
    }
    // 102 events (a refusal, 101 evictions): the first in full, the rest counted in summaries (stopping says what the window still counted).
    const full = log.lines.filter((l) => l.event !== undefined);
    const summaries = log.lines.filter((l) => typeof l.msg === 'string' && l.msg.startsWith('service front (max_clients 1000), in the last'));
    assert.equal(full[0].event, 'refused');
    assert.ok(full.length + summaries.length <= 4, `${full.length + summaries.length} log lines for 102 events`);
    const counted = (k: string): number => full.filter((l) => l.event === k).length + summaries.reduce((n, l) => n + ((l[k] as number | undefined) ?? 0), 0);
    assert.deepEqual([counted('refused'), counted('evicted')], [1, 101]);
  });

  test('a client with a reply held for a commit is never evicted, however long idle', async () => {
    let clock = 0;
    const s = await startStack({}, { now: () => clock, maxConnections: 2 });
    try {
      sessionAtEpoch1(s.buffer);
      const held = await connect(s.frontPort);
      held.socket.write(request('INCR', 'h'));
      await until(() => s.buffer.stats().heldChunks === 1, 'the reply to be held');
      clock += 100_000;
      const idle = await connect(s.frontPort);
      await until(() => s.front.metrics().connections === 2, 'two clients');
      clock += 100_000;
      // held has been silent longest (200 s), but its reply waits for epoch 1's commit.
      const fresh = await connect(s.frontPort);
      await idle.replies.closed(2000);
      assert.equal(held.replies.ended, false);
      assert.equal(s.front.metrics().evictedIdle, 1);

      // Only held and fresh now, both with nothing to evict: held is busy, fresh just came.
      const refused = await connect(s.frontPort);
      assert.deepEqual(await refused.replies.next(2000), { error: 'ERR max number of clients reached' });
      // Both with a reply held, both idle long past the minimum: no slot to give.
      fresh.socket.write(request('PING'));
      await until(() => s.buffer.stats().heldChunks === 2, 'both replies held');
      clock += 100_000;
      const again = await connect(s.frontPort);
      assert.deepEqual(await again.replies.next(2000), { error: 'ERR max number of clients reached' }, 'two clients with replies held: no slot to give');

      await s.suspendResume(1);
      await s.commit(1);
      assert.equal(await held.replies.next(2000), 1, 'the held reply reached its client');
      assert.equal(await fresh.replies.next(2000), 'PONG');
      for (const c of [held, idle, fresh, refused, again]) c.socket.destroy();
    } finally {
      await s.stop();
    }
  });

  test('a client still sending is never evicted; the one idle longest is', async () => {
    let clock = 0;
    const s = await startStack({ mode: 'none' }, { now: () => clock, maxConnections: 2, evictIdleMs: 5000 });
    try {
      const quiet = await connect(s.frontPort);
      const busy = await connect(s.frontPort);
      await until(() => s.front.metrics().connections === 2, 'two clients');
      for (let i = 0; i < 10; i++) {
        clock += 1000;
        busy.socket.write(request('PING'));
        assert.equal(await busy.replies.next(2000), 'PONG');
      }
      // quiet: 10 s idle; busy: active a moment ago.
      const fresh = await connect(s.frontPort);
      await quiet.replies.closed(2000);
      fresh.socket.write(request('PING'));
      assert.equal(await fresh.replies.next(2000), 'PONG');
      busy.socket.write(request('PING'));
      assert.equal(await busy.replies.next(2000), 'PONG', 'the active client kept its connection');
      // Neither is idle 5 s now: the next one is refused.
      const refused = await connect(s.frontPort);
      assert.deepEqual(await refused.replies.next(2000), { error: 'ERR max number of clients reached' });
      for (const c of [busy, fresh, refused]) c.socket.destroy();
    } finally {
      await s.stop();
    }
  });

  test('a client not reading its replies keeps its slot while they wait in its socket', async () => {
    let clock = 0;
    const s = await startStack({ mode: 'none' }, { now: () => clock, maxConnections: 1 }, 8192);
    try {
      const slow = await connect(s.frontPort);
      const value = Buffer.alloc(8 * 1024 * 1024, 7);
      slow.socket.write(request('SET', 'big', value));
      assert.equal(await slow.replies.next(5000), 'OK');
      slow.socket.pause();
      slow.socket.write(request('GET', 'big'));
      // The kernel's buffers take what they can; the rest waits in the front's socket for the client.
      await until(() => s.front.metrics().slowClients === 1, "the client's socket to fill up");
      clock += 1_000_000;
      const fresh = await connect(s.frontPort);
      assert.deepEqual(await fresh.replies.next(2000), { error: 'ERR max number of clients reached' });
      assert.equal(s.front.metrics().evictedIdle, 0);
      slow.socket.resume();
      const reply = await slow.replies.next(10_000);
      assert.ok(Buffer.isBuffer(reply) && reply.equals(value), 'every byte of the reply arrived');
      for (const c of [slow, fresh]) c.socket.destroy();
    } finally {
      await s.stop();
    }
  });

  test('the idle timeout closes clients idle that long, but not one with a held reply', async () => {
    let clock = 0;
    const s = await startStack({}, { now: () => clock, idleTimeoutMs: 60_000 });
    try {
      const a = await connect(s.frontPort);
      const b = await connect(s.frontPort);
      await until(() => s.front.metrics().connections === 2, 'two clients');
      sessionAtEpoch1(s.buffer);
      b.socket.write(request('INCR', 't'));
      await until(() => s.buffer.stats().heldChunks === 1, 'the reply to be held');
      clock += 59_999;
      assert.equal(s.front.sweep(), 0, 'not yet');
      clock += 1;
      assert.equal(s.front.sweep(), 1);
      await a.replies.closed(2000);
      assert.equal(a.replies.bufferedBytes, 0, 'a plain close: nothing written');
      assert.equal(b.replies.ended, false);
      await s.suspendResume(1);
      await s.commit(1);
      assert.equal(await b.replies.next(2000), 1);
      // Its reply was delivered just now: idle from there.
      clock += 60_000;
      assert.equal(s.front.sweep(), 1);
      await b.replies.closed(2000);
      await until(() => s.service.metrics().connections === 0, 'the guest connections to close');
      const m = s.front.metrics();
      assert.deepEqual([m.connections, m.idleTimeouts], [0, 2]);
    } finally {
      await s.stop();
    }
  });

  test("a 'drop' teardown gives the cut connections' slots back", async () => {
    const s = await startStack({ teardownPolicy: 'drop' }, { maxConnections: 1 });
    try {
      sessionAtEpoch1(s.buffer);
      const a = await connect(s.frontPort);
      a.socket.write(request('INCR', 'd'));
      await until(() => s.buffer.stats().heldChunks === 1, 'the reply to be held');
      s.buffer.teardown();
      await a.replies.closed(2000);
      assert.equal(s.front.metrics().connections, 0);
      const b = await connect(s.frontPort);
      b.socket.write(request('PING'));
      assert.equal(await b.replies.next(2000), 'PONG');
      b.socket.destroy();
    } finally {
      await s.stop();
    }
  });
});
