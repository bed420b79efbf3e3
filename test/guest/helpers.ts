/** Shared pieces of the guest service tests: a command harness, a RESP reply reader. */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { connect as netConnect, type Socket } from 'node:net';

import { SimDomain } from '../../src/domain/sim/domain.js';
import { KvCommands, type Session } from '../../src/guest/commands.js';
import { KvStore, type KvFormatOptions } from '../../src/guest/kv-store.js';
import { GuestVcpu } from '../../src/guest/vcpu.js';
import { uniform } from '../../src/util/xorshift.js';
import { until } from '../helpers/wait.js';

/** 2023-11-14T22:13:20.123456Z, in microseconds. */
export const T0_US = 1_700_000_000_123_456;

export interface Harness {
  domain: SimDomain;
  store: KvStore;
  commands: KvCommands;
  session: Session;
  clock: { us: number };
  /** Runs one command; the reply as latin1 text. */
  run: (...args: (string | Buffer)[]) => string;
  /** Moves the guest clock forward. */
  advance: (ms: number) => void;
  /** The current guest time in ms. */
  nowMs: () => number;
}

export function harness(options: { pages?: number; format?: KvFormatOptions; seed?: number } = {}): Harness {
  const domain = new SimDomain({ pages: options.pages ?? 256 });
  const store = KvStore.format(domain, { hashSeed: 0x1234, ...options.format });
  const clock = { us: T0_US };
  const commands = new KvCommands({ store, clock: () => clock.us, random: uniform(options.seed ?? 7), vcpu: new GuestVcpu(domain) });
  const session: Session = { quit: false };
  return {
    domain,
    store,
    commands,
    session,
    clock,
    run: (...args) => commands.execute(args.map((a) => (typeof a === 'string' ? Buffer.from(a, 'latin1') : a)), session).toString('latin1'),
    advance: (ms) => {
      clock.us += ms * 1000;
    },
    nowMs: () => Math.floor(clock.us / 1000),
  };
}

/** RESP request bytes for a command, as a client library sends it. */
export function request(...args: (string | Buffer)[]): Buffer {
  const parts: Buffer[] = [Buffer.from(`*${args.length}\r\n`)];
  for (const a of args) {
    const b = typeof a === 'string' ? Buffer.from(a, 'latin1') : a;
    parts.push(Buffer.from(`$${b.length}\r\n`), b, Buffer.from('\r\n'));
  }
  return Buffer.concat(parts);
}

export type Reply = string | number | bigint | Buffer | null | Reply[] | { error: string };

/** Decodes RESP2 replies from a byte stream (test side: trusts the server's framing). */
export class ReplyReader {
  private buf = Buffer.alloc(0);
  private waiters: (() => void)[] = [];
  ended = false;

  constructor(socket: Socket) {
    socket.on('data', (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.wake();
    });
    socket.on('close', () => {
      this.ended = true;
      this.wake();
    });
  }

  get bufferedBytes(): number {
    return this.buf.length;
  }

  /** The next reply; rejects if the connection closes first or after `timeoutMs`. */
  async next(timeoutMs = 5000): Promise<Reply> {
    const deadline = Date.now() + timeoutMs;
    while (true) {
      const r = parseReply(this.buf, 0);
      if (r !== undefined) {
        this.buf = this.buf.subarray(r.end);
        return r.value;
      }
      if (this.ended) throw new Error('connection closed before a complete reply');
      const left = deadline - Date.now();
      if (left <= 0) throw new Error('timed out waiting for a reply');
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** Resolves once the peer has closed the connection. */
  closed(timeoutMs = 5000): Promise<void> {
    return until(() => this.ended, 'the peer to close the connection', timeoutMs);
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }
}

function parseReply(b: Buffer, at: number): { value: Reply; end: number } | undefined {
  if (at >= b.length) return undefined;
  const nl = b.indexOf('\r\n', at);
  if (nl === -1) return undefined;
  const line = b.toString('latin1', at + 1, nl);
  const next = nl + 2;
  switch (b[at]) {
    case 0x2b: // +
      return { value: line, end: next };
    case 0x2d: // -
      return { value: { error: line }, end: next };
    case 0x3a: // :
      return { value: Number(line), end: next };
    case 0x24: {
      // $
      const len = Number(line);
      if (len < 0) return { value: null, end: next };
      if (b.length < next + len + 2) return undefined;
      return { value: Buffer.from(b.subarray(next, next + len)), end: next + len + 2 };
    }
    case 0x2a: {
      // *
      const n = Number(line);
      if (n < 0) return { value: null, end: next };
      const items: Reply[] = [];
      let end = next;
      for (let i = 0; i < n; i++) {
        const r = parseReply(b, end);
        if (r === undefined) return undefined;
        items.push(r.value);
        end = r.end;
      }
      return { value: items, end };
    }
    default:
      throw new Error(`not a RESP reply: ${JSON.stringify(b.toString('latin1', at, at + 20))}`);
  }
}

export const REDIS_CLI = '/usr/bin/redis-cli';
export const REDIS_BENCHMARK = '/usr/bin/redis-benchmark';
export const REDIS_CHECK_AOF = '/usr/bin/redis-check-aof';

/** The guest tests drive the real Redis tools; they fail, never skip, without them. */
export function requireRedisTools(): void {
  assert.ok(
    existsSync(REDIS_CLI) && existsSync(REDIS_BENCHMARK) && existsSync(REDIS_CHECK_AOF),
    `redis-cli, redis-benchmark or redis-check-aof is missing (${REDIS_CLI}, ${REDIS_BENCHMARK}, ${REDIS_CHECK_AOF}); install them: apt-get install -y --no-install-recommends redis-tools`,
  );
}

/** Runs a client tool to its end: exit code, and stdout and stderr together. */
export function runTool(cmd: string, args: string[]): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (out += d.toString()));
    p.on('close', (code) => resolve({ code, out }));
  });
}

/** Sends the commands pipelined to a RESP service on loopback `port`; resolves with the replies. */
export async function ask(port: number, commands: string[][]): Promise<Reply[]> {
  const sock = netConnect({ port, host: '127.0.0.1' });
  const reader = new ReplyReader(sock);
  await new Promise<void>((resolve, reject) => {
    sock.once('error', reject);
    sock.once('connect', () => resolve());
  });
  sock.write(Buffer.concat(commands.map((c) => request(...c))));
  const replies: Reply[] = [];
  for (let i = 0; i < commands.length; i++) replies.push(await reader.next());
  sock.destroy();
  return replies;
}
