/**
 * The engine while the secondary cannot be had: one loud line per cause,
 * then "still unprotected" with the attempt and the time unprotected, at a
 * wait that doubles up to retry_max_ms; no stack at warn or error; a peer
 * that is not Tandem is named; heartbeats heard again cut the wait short.
 */
import assert from 'node:assert/strict';
import { createServer as createHttpServer } from 'node:http';
import { createServer, type AddressInfo } from 'node:net';
import { after, describe, test } from 'node:test';
import { filter, firstValueFrom } from 'rxjs';
import { pino } from 'pino';
import type { PrimaryEngine, ProtectionState } from '../../src/checkpoint/engine.js';
import { secondaryFor, silent, simBinding } from '../helpers/sim.js';
import { until } from '../helpers/wait.js';
import type { Logger } from '../../src/util/logger.js';
import { testEngine } from './helpers.js';

interface Line {
  level: number;
  msg: string;
  attempt?: number;
  codes?: string[];
  err?: unknown;
  stack?: unknown;
}

function capture(): { logger: Logger; lines: Line[] } {
  const lines: Line[] = [];
  const logger = pino({ level: 'debug' }, { write: (s: string) => void lines.push(JSON.parse(s) as Line) });
  return { logger, lines };
}

/** A loopback port nothing listens on. */
async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address() as AddressInfo;
  await new Promise((r) => s.close(r));
  return port;
}

const waitState = (engine: PrimaryEngine, state: ProtectionState): Promise<unknown> => firstValueFrom(engine.state$.pipe(filter((s) => s.state === state)));

describe('PrimaryEngine without a secondary', () => {
  const cleanups: (() => Promise<void>)[] = [];
  after(async () => {
    for (const c of cleanups.reverse()) await c();
  });

  test('one UNPROTECTED line, then "still unprotected" with five quick attempts and then a doubling wait up to retry_max_ms, and no stack where operators read', async () => {
    const guest = simBinding(256).primary(silent);
    const log = capture();
    const engine = testEngine({ domain: guest.domain, port: await closedPort(), logger: log.logger, options: { retryMs: 20, retryMaxMs: 80 } });
    cleanups.push(() => engine.stop());
    engine.start();
    await until(() => log.lines.filter((l) => /^still unprotected/.test(l.msg)).length >= 7, 'seven more attempts', 20_000);
    await engine.stop();
    const loud = log.lines.filter((l) => l.level >= 40);
    assert.equal(loud.filter((l) => /^UNPROTECTED: /.test(l.msg)).length, 1, JSON.stringify(loud.slice(0, 3)));
    assert.match(loud[0].msg, /^UNPROTECTED: cannot connect to the secondary at .*ECONNREFUSED.*retrying in 20 ms$/);
    const still = loud.filter((l) => /^still unprotected/.test(l.msg));
    assert.deepEqual(still.slice(0, 7).map((l) => l.attempt), [2, 3, 4, 5, 6, 7, 8]);
    // Five quick attempts (a fault that heals soon costs little protection), then the wait doubles up to retry_max_ms.
    assert.deepEqual(still.slice(0, 7).map((l) => /next attempt in (\d+ ms)$/.exec(l.msg)?.[1]), ['20 ms', '20 ms', '20 ms', '20 ms', '40 ms', '80 ms', '80 ms']);
    assert.ok(still.every((l) => /\(attempt \d+, unprotected for \d+ s\)/.test(l.msg)), still[0].msg);
    assert.ok(loud.every((l) => l.err === undefined && l.stack === undefined), 'a stack at warn or error');
    assert.ok(loud.every((l) => l.codes?.includes('ERR_TRANSPORT_CONNECT_FAILED')), JSON.stringify(loud[0].codes));
    // The stack is still there for a developer, at debug.
    assert.ok(log.lines.some((l) => l.level === 20 && l.err !== undefined));
  });

  test('a peer that speaks HTTP is named as such, with its own error code', async () => {
    const http = createHttpServer((_req, res) => res.end('hello'));
    await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
    cleanups.push(() => new Promise((r) => http.close(() => r())));
    const guest = simBinding(256).primary(silent);
    const log = capture();
    const engine = testEngine({ domain: guest.domain, port: (http.address() as AddressInfo).port, logger: log.logger, options: { retryMs: 50 } });
    cleanups.push(() => engine.stop());
    engine.start();
    await until(() => log.lines.some((l) => /^UNPROTECTED/.test(l.msg)), 'the engine to give up on the peer', 20_000);
    await engine.stop();
    const line = log.lines.find((l) => /^UNPROTECTED/.test(l.msg))!;
    assert.match(line.msg, /the peer at 127\.0\.0\.1:\d+ is not a Tandem secondary: an HTTP server answered \("HTTP\/1\.1 400 Bad Request"\)/);
    assert.deepEqual(line.codes?.[0], 'ERR_TRANSPORT_PEER_NOT_TANDEM');
  });

  test('heartbeats heard again end the backoff: the engine tries at once', async () => {
    const binding = simBinding(256);
    const guest = binding.primary(silent);
    const port = await closedPort();
    const log = capture();
    // A first wait of a minute: only retryNow() can bring protection within this test.
    const engine = testEngine({ domain: guest.domain, port, logger: log.logger, options: { retryMs: 60_000 } });
    cleanups.push(() => engine.stop());
    engine.start();
    await waitState(engine, 'degraded');
    // Asked while nothing listens yet: it tries, fails again, and backs off.
    engine.retryNow('asked early');
    await until(() => log.lines.some((l) => /^still unprotected/.test(l.msg)), 'the second attempt', 10_000);
    const server = secondaryFor(binding.replica(silent), { listen: { host: '127.0.0.1', port } });
    await server.start();
    cleanups.push(() => server.stop());
    engine.retryNow("the secondary's heartbeats are back");
    await waitState(engine, 'protected');
    assert.ok(log.lines.some((l) => l.level === 30 && /^the secondary's heartbeats are back: trying to protect the guest again now$/.test(l.msg)));
    assert.equal(engine.session, 1, "sessions count streams begun, not connection attempts");
    assert.match(engine.state$.value.reason, /^session 1: the secondary at 127\.0\.0\.1:\d+ holds each epoch before its output leaves$/);
  });
});
