/**
 * The real guest service behind the ServiceFront, with the netbuf device
 * driven through the real save callbacks (suspend = pause + postsuspend,
 * postcopy = preresume + unpause, checkpoint = commit): replies reach real
 * TCP clients (and redis-cli) only at the commit of the epoch covering them.
 */
import { sessionAtEpoch1 } from '../helpers/output-session.js';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { describe, test } from 'node:test';

import { setTimeout as sleep } from 'node:timers/promises';

import { REDIS_CLI, request, requireRedisTools } from '../guest/helpers.js';
import { until } from '../helpers/wait.js';
import { connect, startStack } from './helpers.js';

/**
 * Asserts that nothing reached the client within `ms`. The sleep proves an
 * absence (of a release), which no event can: the callers first wait for
 * the reply to be held, the event that makes its early release possible.
 */
async function nothingFor(replies: { bufferedBytes: number }, ms = 100): Promise<void> {
  await sleep(ms);
  assert.equal(replies.bufferedBytes, 0, 'a reply reached the client before its commit');
}

describe('ServiceFront in remus mode', () => {
  test("a SET's +OK is held until the commit of the epoch covering it", async () => {
    const s = await startStack();
    try {
      sessionAtEpoch1(s.buffer);
      const { socket, replies } = await connect(s.frontPort);
      socket.write(request('SET', 'k', 'v'));
      await until(() => s.buffer.stats().heldChunks === 1, 'the reply to reach the buffer');
      assert.equal(s.store.peek(Buffer.from('k'))?.value.toString(), 'v', 'the guest ran the SET');
      await nothingFor(replies);
      await s.suspendResume(1);
      await nothingFor(replies);
      await s.commit(1);
      assert.equal(await replies.next(1000), 'OK');
      socket.destroy();
    } finally {
      await s.stop();
    }
  });

  test('a reply arriving between postsuspend(N) and commit(N) waits for commit(N+1)', async () => {
    const s = await startStack();
    try {
      sessionAtEpoch1(s.buffer);
      const { socket, replies } = await connect(s.frontPort);
      socket.write(request('INCR', 'n'));
      await until(() => s.buffer.stats().heldChunks === 1, 'reply 1 held');
      await s.suspendResume(1);
      socket.write(request('INCR', 'n'));
      await until(() => s.buffer.stats().heldChunks === 2, 'reply 2 held');
      await s.commit(1);
      assert.equal(await replies.next(1000), 1);
      await nothingFor(replies);
      await s.suspendResume(2);
      await nothingFor(replies);
      await s.commit(2);
      assert.equal(await replies.next(1000), 2);
      socket.destroy();
    } finally {
      await s.stop();
    }
  });

  test('redis-cli gets its OK only at the commit', async () => {
    requireRedisTools();
    const s = await startStack();
    try {
      sessionAtEpoch1(s.buffer);
      const cli = spawn(REDIS_CLI, ['-p', String(s.frontPort), 'SET', 'greeting', 'hello'], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      cli.stdout.on('data', (d: Buffer) => (out += d.toString()));
      let exited = false;
      const exit = new Promise<number | null>((resolve) => cli.on('exit', (code) => ((exited = true), resolve(code))));
      await until(() => s.buffer.stats().heldChunks === 1, 'the reply to reach the buffer');
      // Proves an absence: redis-cli, which ends on its reply, has not ended.
      await sleep(100);
      assert.equal(exited, false, 'redis-cli finished before the commit');
      assert.equal(out, '');
      await s.suspendResume(1);
      await s.commit(1);
      assert.equal(await exit, 0);
      assert.equal(out, 'OK\n');
    } finally {
      await s.stop();
    }
  });

  test('pipelined requests on several connections are released in order, each at its commit', async () => {
    let committed = 0;
    const violations: string[] = [];
    // Every release must be of an epoch already committed (and never unprotected).
    const s = await startStack({ onRelease: (r) => (r.tag === null || r.tag > committed) && violations.push(`tag ${r.tag} released at commit ${committed}`) });
    const CONNS = 4;
    const N = 300;
    let epoch = 0;
    sessionAtEpoch1(s.buffer);
    const clients = await Promise.all(Array.from({ length: CONNS }, () => connect(s.frontPort)));
    let loop = true;
    const epochs = (async () => {
      while (loop) {
        epoch++;
        await s.suspendResume(epoch);
        // These sleeps pace the epochs (the load generator's other half), they wait for nothing.
        await sleep(1);
        committed = epoch;
        await s.commit(epoch);
        await sleep(3);
      }
    })();
    assert.equal(s.buffer.stats().phase, 'protecting');
    try {
      // Pipelined in bursts, so replies of one connection span many epochs.
      for (let burst = 0; burst < 10; burst++) {
        clients.forEach(({ socket }, i) => {
          const reqs = [];
          for (let j = 0; j < N / 10; j++) reqs.push(request('INCR', `c${i}`));
          socket.write(Buffer.concat(reqs));
        });
        // Paces the bursts so they spread over several epochs.
        await sleep(5);
      }
      for (const [i, { replies }] of clients.entries()) {
        for (let j = 1; j <= N; j++) {
          const r = await replies.next(3000);
          if (r !== j) violations.push(`connection ${i}: reply ${j} was ${JSON.stringify(r)}`);
        }
      }
      assert.deepEqual(violations, []);
      assert.ok(epoch >= 3, `replies spanned ${epoch} epochs`);
    } finally {
      loop = false;
      await epochs;
      for (const { socket } of clients) socket.destroy();
      await s.stop();
    }
  });

  test('the held-bytes bound back-pressures the guest and loses no byte', async () => {
    const BOUND = 64 * 1024;
    const s = await startStack({ maxHeldBytes: BOUND });
    const value = Buffer.alloc(2 * 1024 * 1024);
    for (let i = 0; i < value.length; i++) value[i] = (i * 7 + (i >> 12)) & 0xff;
    const { socket, replies } = await connect(s.frontPort);
    try {
      // Before arming: passes through.
      socket.write(request('SET', 'big', value));
      assert.equal(await replies.next(3000), 'OK');
      sessionAtEpoch1(s.buffer);
      let maxHeld = 0;
      socket.write(request('GET', 'big'));
      const got = replies.next(10_000);
      let epoch = 0;
      let done = false;
      void got.finally(() => (done = true));
      while (!done) {
        // Paces the epochs while the reply streams through.
        await sleep(3);
        maxHeld = Math.max(maxHeld, s.buffer.stats().heldBytes);
        epoch++;
        await s.suspendResume(epoch);
        maxHeld = Math.max(maxHeld, s.buffer.stats().heldBytes);
        await s.commit(epoch);
      }
      const reply = await got;
      assert.ok(Buffer.isBuffer(reply));
      assert.equal(reply.length, value.length);
      assert.ok(reply.equals(value), 'bytes lost or reordered');
      const stats = s.buffer.stats();
      assert.ok(stats.stalls >= 1, 'the bound never paused the guest side');
      // The bound plus what was already read (a socket read or two), never the whole 2 MiB.
      assert.ok(maxHeld <= BOUND + 256 * 1024, `held ${maxHeld} bytes`);
    } finally {
      socket.destroy();
      await s.stop();
    }
  });

  test("mode 'none' passes replies straight through; switching releases what was held", async () => {
    const s = await startStack();
    try {
      sessionAtEpoch1(s.buffer);
      const { socket, replies } = await connect(s.frontPort);
      socket.write(request('INCR', 'm'));
      await until(() => s.buffer.stats().heldChunks === 1, 'reply held');
      await nothingFor(replies, 50);
      s.front.setMode('none');
      assert.equal(await replies.next(1000), 1);
      socket.write(request('INCR', 'm'));
      assert.equal(await replies.next(1000), 2, 'no commit needed in mode none');
      s.front.setMode('remus');
      socket.write(request('INCR', 'm'));
      await until(() => s.buffer.stats().heldChunks === 1, 'held again in remus mode');
      await nothingFor(replies, 50);
      socket.destroy();
    } finally {
      await s.stop();
    }
  });

  test("teardown: 'release' delivers held replies, 'drop' cuts the connection, 'hold' waits for re-protection", async () => {
    const s = await startStack({ teardownPolicy: 'release' });
    try {
      const a = await connect(s.frontPort);
      sessionAtEpoch1(s.buffer);
      a.socket.write(request('INCR', 't'));
      await until(() => s.buffer.stats().heldChunks === 1, 'reply held');
      s.buffer.teardown();
      assert.equal(await a.replies.next(1000), 1);

      s.buffer.setTeardownPolicy('hold');
      sessionAtEpoch1(s.buffer);
      a.socket.write(request('INCR', 't'));
      await until(() => s.buffer.stats().heldChunks === 1, 'reply held');
      s.buffer.teardown();
      a.socket.write(request('INCR', 't'));
      await until(() => s.buffer.stats().heldChunks === 2, 'new output held too');
      await nothingFor(a.replies);
      sessionAtEpoch1(s.buffer);
      await s.suspendResume(1);
      await s.commit(1);
      assert.equal(await a.replies.next(1000), 2);
      assert.equal(await a.replies.next(1000), 3);

      s.buffer.setTeardownPolicy('drop');
      const b = await connect(s.frontPort);
      sessionAtEpoch1(s.buffer);
      a.socket.write(request('INCR', 't'));
      await until(() => s.buffer.stats().heldChunks === 1, 'reply held');
      s.buffer.teardown();
      await a.replies.closed(1000);
      assert.equal(a.replies.bufferedBytes, 0, 'dropped output reached the client');
      b.socket.write(request('INCR', 't'));
      assert.equal(await b.replies.next(1000), 5, 'other connections go on, unprotected');
      b.socket.destroy();
    } finally {
      await s.stop();
    }
  });

  test('the guest closing (QUIT) closes the client only after the held reply is released', async () => {
    const s = await startStack();
    try {
      sessionAtEpoch1(s.buffer);
      const { socket, replies } = await connect(s.frontPort);
      socket.write(request('QUIT'));
      await until(() => s.buffer.stats().heldChunks === 1, 'reply held');
      // Proves an absence: the client is not closed.
      await sleep(100);
      assert.equal(replies.ended, false, 'client closed before its reply was released');
      await s.suspendResume(1);
      await s.commit(1);
      assert.equal(await replies.next(1000), 'OK');
      await replies.closed(1000);
    } finally {
      await s.stop();
    }
  });

  test('a client that hangs up: the guest connection closes once its held output is released', async () => {
    const s = await startStack();
    try {
      sessionAtEpoch1(s.buffer);
      const { socket } = await connect(s.frontPort);
      socket.write(request('INCR', 'h'));
      await until(() => s.buffer.stats().heldChunks === 1, 'reply held');
      socket.destroy();
      // Proves an absence: the guest connection is not closed.
      await sleep(100);
      assert.equal(s.service.metrics().connections, 1, 'guest connection closed while output was held');
      await s.suspendResume(1);
      await s.commit(1);
      await until(() => s.service.metrics().connections === 0, 'guest connection closed');
      // The guest's side and the front's side of that connection close in either order (the
      // front learns of it from the FIN the guest sends), so the front's slot is awaited too.
      await until(() => s.front.metrics().connections === 0, 'front slot given back');
    } finally {
      await s.stop();
    }
  });

  test('a client that half-closes still gets its held replies, then the connection closes', async () => {
    const s = await startStack();
    try {
      sessionAtEpoch1(s.buffer);
      const { socket, replies } = await connect(s.frontPort);
      socket.write(request('INCR', 'hc'));
      await until(() => s.buffer.stats().heldChunks === 1, 'reply held');
      socket.end(); // FIN: no more requests, replies still wanted
      // Proves an absence: neither the reply nor the half-close got through.
      await sleep(100);
      assert.equal(replies.bufferedBytes, 0);
      assert.equal(s.service.metrics().connections, 1, 'the half-close reached the guest before the held reply was released');
      await s.suspendResume(1);
      await s.commit(1);
      assert.equal(await replies.next(1000), 1);
      await replies.closed(1000);
      await until(() => s.service.metrics().connections === 0, 'guest connection closed');
    } finally {
      await s.stop();
    }
  });

  test('connections are bounded', async () => {
    const s = await startStack({}, { maxConnections: 1 });
    try {
      const a = await connect(s.frontPort);
      await until(() => s.front.metrics().connections === 1, 'first connection');
      const b = await connect(s.frontPort);
      const r = await b.replies.next(1000);
      assert.deepEqual(r, { error: 'ERR max number of clients reached' });
      assert.equal(s.front.metrics().rejectedConnections, 1);
      a.socket.write(request('PING'));
      assert.equal(await a.replies.next(1000), 'PONG');
      a.socket.destroy();
      b.socket.destroy();
    } finally {
      await s.stop();
    }
  });
});
