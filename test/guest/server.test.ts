import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import net from 'node:net';
import { Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';

import { pino } from 'pino';

import { SimDomain } from '../../src/domain/sim/domain.js';
import { GuestError, GuestErrorCodes } from '../../src/guest/errors.js';
import { KvStore } from '../../src/guest/kv-store.js';
import { KvServer, type KvServerOptions } from '../../src/guest/server.js';
import { until } from '../helpers/wait.js';
import { REDIS_BENCHMARK, REDIS_CLI, ReplyReader, request, requireRedisTools } from './helpers.js';

const run = promisify(execFile);

interface Running {
  domain: SimDomain;
  store: KvStore;
  server: KvServer;
  port: number;
  logs: Record<string, unknown>[];
}

async function startServer(options: Partial<KvServerOptions> = {}, pages = 16384): Promise<Running> {
  const domain = new SimDomain({ pages });
  const store = KvStore.format(domain);
  const logs: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n')) if (line.trim() !== '') logs.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  const logger = pino({ level: 'debug' }, sink);
  const server = new KvServer({ domain, store, port: 0, logger, ...options });
  const { port } = await server.start();
  return { domain, store, server, port, logs };
}

async function cli(port: number, ...args: string[]): Promise<string> {
  requireRedisTools();
  const { stdout } = await run(REDIS_CLI, ['-p', String(port), ...args], { timeout: 10_000 });
  return stdout;
}

async function connect(port: number): Promise<{ socket: net.Socket; replies: ReplyReader }> {
  const socket = net.connect(port, '127.0.0.1');
  socket.on('error', () => {});
  const replies = new ReplyReader(socket);
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  return { socket, replies };
}

const value = (s: Running, key: string): string | undefined => s.store.peek(Buffer.from(key))?.value.toString('latin1');

/** The final `NAME: N requests per second` lines of `redis-benchmark -q`. */
function benchmarkFigures(stdout: string): Map<string, number> {
  const figures = new Map<string, number>();
  for (const line of stdout.split(/[\r\n]+/)) {
    const m = /^\s*(\S[^:]*): ([\d.]+) requests per second/.exec(line);
    if (m) figures.set(m[1], Number(m[2]));
  }
  return figures;
}

const BENCH_TESTS = ['PING_INLINE', 'PING_MBULK', 'SET', 'GET', 'INCR', 'MSET (10 keys)'];

describe('KvServer with the real redis-cli and redis-benchmark', () => {
  let s: Running;
  before(async () => {
    s = await startServer();
  });
  after(async () => {
    await s.server.stop();
  });

  test('redis-cli: SET, GET, INCR, MSET/MGET, KEYS, TIME, INFO keyspace; the data is in guest RAM', async () => {
    assert.equal(await cli(s.port, 'SET', 'k', 'v'), 'OK\n');
    assert.equal(await cli(s.port, 'GET', 'k'), 'v\n');
    assert.equal(await cli(s.port, 'INCR', 'n'), '1\n');
    assert.equal(await cli(s.port, 'INCR', 'n'), '2\n');
    assert.equal(await cli(s.port, 'MSET', 'a', '1', 'b', 'hello world'), 'OK\n');
    assert.equal(await cli(s.port, 'MGET', 'a', 'b', 'missing'), '1\nhello world\n\n');
    assert.deepEqual((await cli(s.port, 'KEYS', '*')).trim().split('\n').sort(), ['a', 'b', 'k', 'n']);
    assert.deepEqual((await cli(s.port, 'KEYS', '[ab]')).trim().split('\n').sort(), ['a', 'b']);
    const time = (await cli(s.port, 'TIME')).trim().split('\n').map(Number);
    assert.equal(time.length, 2);
    assert.ok(Math.abs(time[0] - Date.now() / 1000) < 60, `TIME seconds ${time[0]}`);
    assert.ok(time[1] >= 0 && time[1] < 1e6);
    const info = await cli(s.port, 'INFO', 'keyspace');
    assert.match(info, /# Keyspace\r?\ndb0:keys=4,expires=0,avg_ttl=0/);
    assert.match(await cli(s.port, 'INFO', 'server'), /redis_version:7\.0\.0/);
    assert.match(await cli(s.port, 'NOSUCHCMD', 'x'), /ERR unknown command 'NOSUCHCMD', with args beginning with: 'x'/);
    assert.equal(value(s, 'k'), 'v');
    assert.equal(value(s, 'n'), '2');
    assert.equal(value(s, 'b'), 'hello world');
    assert.equal(await cli(s.port, 'FLUSHALL'), 'OK\n');
    assert.equal(s.store.keyCount, 0);
  });

  test('redis-benchmark -t ping,set,get,incr,mset -n 20000 -c 20 -q, then with -P 16', async (t) => {
    requireRedisTools();
    for (const pipeline of [1, 16]) {
      const args = ['-p', String(s.port), '-t', 'ping,set,get,incr,mset', '-n', '20000', '-c', '20', '-q'];
      // The pipelined run also spreads over random keys (-r), so many keys land in RAM.
      if (pipeline > 1) args.push('-P', String(pipeline), '-r', '1000');
      const { stdout } = await run(REDIS_BENCHMARK, args, { timeout: 60_000, maxBuffer: 16 << 20 });
      const figures = benchmarkFigures(stdout);
      t.diagnostic(`-P ${pipeline}: ${[...figures].map(([k, v]) => `${k} ${v} req/s`).join(', ')}`);
      for (const name of BENCH_TESTS) assert.ok((figures.get(name) ?? 0) > 0, `${name} reported a positive rate (-P ${pipeline}): ${stdout.slice(-400)}`);
    }
    // Without -r, redis-benchmark uses the literal key names; its 20000 INCRs all hit one counter.
    // Its values are 3 bytes (-d 3), random letters since Redis 7.
    assert.equal(value(s, 'key:__rand_int__')?.length, 3);
    assert.equal(value(s, 'counter:__rand_int__'), '20000');
    // With -r 1000: keys like key:000000000123, and the INCRs spread over counters that sum to 20000.
    let counters = 0;
    let randomKeys = 0;
    for (const e of s.store.entries()) {
      const k = e.key.toString('latin1');
      if (/^counter:\d{12}$/.test(k)) counters += Number(e.value.toString());
      if (/^key:\d{12}$/.test(k)) {
        randomKeys++;
        assert.equal(e.value.length, 3);
      }
    }
    assert.equal(counters, 20000);
    assert.ok(randomKeys > 500, `${randomKeys} random keys`);
    assert.ok(s.store.stats().commands >= 2 * 6 * 20000, 'every request ran as a guest command');
    s.store.check();
  });
});

describe('KvServer connection handling', () => {
  test('a paused domain runs no command and writes nothing; after unpause the reply comes and the key is in RAM', async () => {
    const s = await startServer();
    try {
      const c = await connect(s.port);
      c.socket.write(request('PING'));
      assert.equal(await c.replies.next(), 'PONG');
      s.domain.pause();
      const key = 'paused-key-7f3a9';
      c.socket.write(request('SET', key, 'written-after-unpause'));
      // The server has the SET and handed it to the guest, which holds it.
      await until(() => s.domain.heldTasks === 1, 'the SET to wait for the guest');
      assert.equal(c.replies.bufferedBytes, 0, 'no reply while paused');
      assert.equal(s.domain.ram.indexOf(key), -1, 'the key is nowhere in RAM');
      assert.equal(s.store.peek(Buffer.from(key)), undefined);
      s.domain.unpause();
      assert.equal(await c.replies.next(), 'OK');
      assert.equal(value(s, key), 'written-after-unpause');
      c.socket.destroy();
    } finally {
      await s.server.stop();
    }
  });

  test('garbage closes that connection only (Protocol error reply, logged with its code); another pipeline carries on', async () => {
    const s = await startServer();
    try {
      const good = await connect(s.port);
      const bad = await connect(s.port);
      const half = Buffer.concat(Array.from({ length: 500 }, () => request('INCR', 'c')));
      good.socket.write(half);
      bad.socket.write('*2\r\n$-5\r\n');
      good.socket.write(half);
      assert.deepEqual(await bad.replies.next(), { error: 'ERR Protocol error: invalid bulk length' });
      await bad.replies.closed();
      for (let i = 1; i <= 1000; i++) assert.equal(await good.replies.next(), i);
      good.socket.write(request('GET', 'c'));
      assert.deepEqual(await good.replies.next(), Buffer.from('1000'));
      const logged = s.logs.find((l) => l.code === GuestErrorCodes.PROTOCOL_BULK_LENGTH);
      assert.ok(logged, `a log line with the error code: ${JSON.stringify(s.logs)}`);
      assert.equal(s.server.metrics().protocolErrors, 1);
      good.socket.destroy();
    } finally {
      await s.server.stop();
    }
  });

  test('requests before the garbage in the same packet are answered first', async () => {
    const s = await startServer();
    try {
      const c = await connect(s.port);
      c.socket.write(Buffer.concat([request('SET', 'x', '1'), Buffer.from('PING\r\n*1\r\n+x\r\n')]));
      assert.equal(await c.replies.next(), 'OK');
      assert.equal(await c.replies.next(), 'PONG');
      assert.deepEqual(await c.replies.next(), { error: "ERR Protocol error: expected '$', got '+'" });
      await c.replies.closed();
    } finally {
      await s.server.stop();
    }
  });

  test('QUIT replies +OK, closes, and drops the requests after it', async () => {
    const s = await startServer();
    try {
      const c = await connect(s.port);
      c.socket.write('PING\r\nQUIT\r\nSET after quit\r\n');
      assert.equal(await c.replies.next(), 'PONG');
      assert.equal(await c.replies.next(), 'OK');
      await c.replies.closed();
      assert.equal(value(s, 'after'), undefined);
    } finally {
      await s.server.stop();
    }
  });

  test('connections beyond maxConnections are refused with an error; the others carry on', async () => {
    const s = await startServer({ limits: { maxConnections: 2 } });
    try {
      const a = await connect(s.port);
      const b = await connect(s.port);
      const c = await connect(s.port);
      assert.deepEqual(await c.replies.next(), { error: 'ERR max number of clients reached' });
      await c.replies.closed();
      a.socket.write(request('PING'));
      b.socket.write(request('INFO', 'clients'));
      assert.equal(await a.replies.next(), 'PONG');
      assert.match(((await b.replies.next()) as Buffer).toString(), /connected_clients:2\r\nmaxclients:2/);
      assert.equal(s.server.metrics().rejectedConnections, 1);
      a.socket.destroy();
      b.socket.destroy();
    } finally {
      await s.server.stop();
    }
  });

  test('a slow reader stops its own reads (backpressure) and still gets every reply intact', async () => {
    const s = await startServer();
    try {
      const big = Buffer.alloc(256 * 1024, 0x62);
      const c = await connect(s.port);
      c.socket.write(request('SET', 'big', big));
      assert.equal(await c.replies.next(), 'OK');
      c.socket.pause();
      c.socket.write(Buffer.concat(Array.from({ length: 200 }, () => request('GET', 'big'))));
      await until(() => s.server.metrics().outputStalls >= 1, 'the server to see its writes back up');
      c.socket.resume();
      for (let i = 0; i < 200; i++) assert.ok(big.equals((await c.replies.next()) as Buffer), `reply ${i}`);
      c.socket.destroy();
    } finally {
      await s.server.stop();
    }
  });

  test('requests held by a paused domain are bounded per connection and all run in order after unpause', async () => {
    const s = await startServer({ limits: { maxPendingCommands: 8 } });
    try {
      const c = await connect(s.port);
      s.domain.pause();
      for (let i = 0; i < 100; i++) c.socket.write(request('APPEND', 'seq', `${i},`));
      await until(() => s.server.metrics().inputStalls >= 1, 'reading to stop while requests wait');
      s.domain.unpause();
      let expected = 0;
      for (let i = 0; i < 100; i++) {
        expected += `${i},`.length;
        assert.equal(await c.replies.next(), expected);
      }
      assert.equal(value(s, 'seq'), Array.from({ length: 100 }, (_, i) => `${i},`).join(''));
      c.socket.destroy();
    } finally {
      await s.server.stop();
    }
  });

  test('a request over the per-connection limit is refused before it is buffered', async () => {
    const s = await startServer({ limits: { resp: { maxRequestBytes: 4096 } } });
    try {
      const c = await connect(s.port);
      c.socket.write('*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$100000\r\n');
      assert.deepEqual(await c.replies.next(), { error: 'ERR Protocol error: request larger than 4096 bytes' });
      await c.replies.closed();
      assert.ok(s.logs.some((l) => l.code === GuestErrorCodes.PROTOCOL_REQUEST_TOO_BIG));
    } finally {
      await s.server.stop();
    }
  });

  test('the expiry sweep runs as guest code on its own, and not while the domain is paused', async () => {
    const clock = { us: Date.now() * 1000 };
    const s = await startServer({ clock: () => clock.us, sweepIntervalMs: 10 });
    try {
      const c = await connect(s.port);
      for (let i = 0; i < 50; i++) c.socket.write(request('SET', `t${i}`, 'v', 'PX', '100'));
      for (let i = 0; i < 50; i++) assert.equal(await c.replies.next(), 'OK');
      s.domain.pause();
      clock.us += 1_000_000;
      // The sweep came due and waits for the guest, once however many periods pass.
      await until(() => s.domain.heldTasks === 1, 'a sweep to wait for the guest');
      assert.equal(s.store.keyCount, 50, 'no sweep while paused');
      s.domain.unpause();
      await until(() => s.store.keyCount === 0, 'the sweep to expire every key');
      assert.equal(s.store.stats().expired, 50);
      c.socket.destroy();
    } finally {
      await s.server.stop();
    }
  });

  test('start on a port in use fails with a typed error and its cause; stop is idempotent', async () => {
    const s = await startServer();
    try {
      const other = new KvServer({ domain: s.domain, store: s.store, port: s.port });
      await assert.rejects(other.start(), (e: unknown) => e instanceof GuestError && e.code === GuestErrorCodes.SERVER_BAD_OPTIONS && (e.cause as NodeJS.ErrnoException).code === 'EADDRINUSE');
      await other.stop();
    } finally {
      await s.server.stop();
      await s.server.stop();
    }
  });
});
