/**
 * The split-brain ledger (test/helpers/split-ledger.ts) against stand-ins
 * whose faults are known, on loopback: two tiny RESP counters playing the
 * primary and the promoted secondary. A clean takeover must pass; a takeover
 * that lost acknowledged increments, and two nodes counting at once, must
 * each be caught, or the fault tests' zeros would prove nothing.
 */
import assert from 'node:assert/strict';
import { createServer, type Server, type Socket } from 'node:net';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { SplitLedger, type LedgerTarget } from '../helpers/split-ledger.js';
import { until } from '../helpers/wait.js';

/** A RESP server knowing INCR and MGET over its own map, started and stopped at will. */
class Counter {
  readonly data = new Map<string, number>();
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  port = 0;

  async start(port = 0): Promise<void> {
    const server = createServer((s) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
      s.on('error', () => {});
      let buf = '';
      s.on('data', (d: Buffer) => {
        buf += d.toString('latin1');
        // Requests are whole arrays of bulk strings: *N, then $len and the word, N times.
        for (;;) {
          const parts = buf.split('\r\n');
          if (!parts[0].startsWith('*')) return;
          const n = Number(parts[0].slice(1));
          if (parts.length < 2 * n + 2) return;
          const args = Array.from({ length: n }, (_, i) => parts[2 + 2 * i]);
          buf = parts.slice(2 * n + 1).join('\r\n');
          if (args[0] === 'INCR') {
            const v = (this.data.get(args[1]) ?? 0) + 1;
            this.data.set(args[1], v);
            s.write(`:${v}\r\n`);
          } else if (args[0] === 'MGET') {
            s.write(`*${n - 1}\r\n${args.slice(1).map((k) => (this.data.has(k) ? `$${String(this.data.get(k)).length}\r\n${this.data.get(k)}\r\n` : '$-1\r\n')).join('')}`);
          }
        }
      });
    });
    this.server = server;
    await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
    this.port = (server.address() as { port: number }).port;
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    const server = this.server;
    this.server = undefined;
    if (server !== undefined) await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

async function pair(thinkMs = 2): Promise<{ a: Counter; b: Counter; ledger: SplitLedger }> {
  const a = new Counter();
  const b = new Counter();
  await a.start();
  // b's port is taken now and served later (a takeover), so the ledger knows both addresses from the start.
  await b.start();
  await b.stop();
  const targets: LedgerTarget[] = [
    { node: 'p', host: '127.0.0.1', port: a.port },
    { node: 's', host: '127.0.0.1', port: b.port },
  ];
  const ledger = new SplitLedger({ targets, keys: 4, prefix: 't', requestTimeoutMs: 300, slackMs: 300, hopMs: 100, thinkMs });
  ledger.start();
  await until(() => ledger.status().acked > 200, 'load on a');
  return { a, b, ledger };
}

test('a clean takeover (the new node holds everything acknowledged) passes', async () => {
  const { a, b, ledger } = await pair();
  await a.stop();
  for (const [k, v] of a.data) b.data.set(k, v);
  await b.start(b.port);
  await until(() => (ledger.status().perNode.s ?? 0) > 200, 'load on b');
  const v = await ledger.verify(1000);
  await b.stop();
  assert.deepEqual(v.anomalies, []);
  assert.equal(v.lostAckedWrites, 0);
  assert.deepEqual(v.answered, ['s']);
});

test('a takeover from a copy missing acknowledged increments is caught: values going backwards, and the loss counted', async () => {
  // Slow clients (about 40 increments a second each), so the new node cannot count past the loss before the final read.
  const { a, b, ledger } = await pair(20);
  await a.stop();
  // The copy is 30 increments behind on every counter, every one of them acknowledged.
  for (const [k, v] of a.data) b.data.set(k, v - 30);
  await b.start(b.port);
  await until(() => (ledger.status().perNode.s ?? 0) >= 8, 'b to answer');
  const v = await ledger.verify(1000);
  await b.stop();
  assert.ok(v.anomalies.some((x) => x.kind === 'backwards'), JSON.stringify(v.anomalies));
  assert.ok(v.lostAckedWrites > 0, JSON.stringify(v));
});

test('two nodes counting at once are caught: interleaved replies, values going backwards, both answering the final read', async () => {
  const { a, b, ledger } = await pair();
  for (const [k, v] of a.data) b.data.set(k, v);
  // Both serve from here on, each counting on its own.
  await b.start(b.port);
  await sleep(1000);
  const v = await ledger.verify(1000);
  await a.stop();
  await b.stop();
  const kinds = new Set(v.anomalies.map((x) => x.kind));
  assert.ok(kinds.has('interleaved') && kinds.has('backwards') && kinds.has('two-serving'), JSON.stringify(v.anomalies));
});
