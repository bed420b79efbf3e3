/**
 * The sim guest's command set: one table (name, arity, handler) and one
 * dispatch. Handlers read and write only the store in guest RAM and return
 * the encoded reply; replies and error wording follow Redis 7 so redis-cli,
 * redis-benchmark and client libraries see what they expect.
 *
 * TIME and RANDOMKEY are the guest's deliberate nondeterminism (COLO must
 * cope with a secondary that answers them differently), so the clock and the
 * random source are injected: tests and a deterministic replay control them.
 */
import { StoreFullError } from './errors.js';
import { globMatch } from './glob.js';
import { KEEP_TTL, type KvStore } from './kv-store.js';
import {
  DEFAULT_RESP_LIMITS,
  EMPTY_ARRAY_REPLY,
  NULL_BULK_REPLY,
  OK_REPLY,
  PONG_REPLY,
  arrayReply,
  bulkArrayReply,
  bulkReply,
  errorReply,
  integerReply,
  simpleStringReply,
} from './resp.js';
import type { AofInfo } from './aof.js';
import { GuestError } from './errors.js';
import type { GuestVcpu } from './vcpu.js';

export const REDIS_VERSION = '7.0.0';

/** Per-connection state a command may change. */
export interface Session {
  /** Set by QUIT: the server closes the connection once the reply is out. */
  quit: boolean;
}

/** What INFO and CONFIG GET report about the server around the guest. */
export interface ServerInfo {
  port: number;
  connectedClients: number;
  maxClients: number;
}

/** The service's persistence (the append-only file), as INFO and BGREWRITEAOF see it. */
export interface KvPersistence {
  info(): AofInfo;
  /** Rewrites the file from the dataset now; throws a GuestError when it cannot. */
  rewrite(): void;
}

export interface KvCommandsOptions {
  store: KvStore;
  /** Microseconds since the Unix epoch (default: the host's clock). */
  clock?: () => number;
  /** Uniform in [0, 1) (default: Math.random). */
  random?: () => number;
  /** Longest string a command may build (APPEND); default the RESP bulk limit. */
  maxValueBytes?: number;
  /** Where the vCPU registers move as commands run. */
  vcpu?: GuestVcpu;
  serverInfo?: () => ServerInfo;
  persistence?: KvPersistence;
}

interface Context {
  store: KvStore;
  /** The command's time in Unix ms: one reading per command, as Redis caches mstime per call. */
  now: number;
  clock: () => number;
  random: () => number;
  maxValueBytes: number;
  session: Session;
  serverInfo: () => ServerInfo;
  persistence: KvPersistence | undefined;
}

type Handler = (cx: Context, args: Buffer[]) => Buffer;

export interface CommandSpec {
  /** Lower case, as Redis names commands in its errors. */
  name: string;
  /** Argument count including the name: n exactly, or -n for at least n. */
  arity: number;
  handler: Handler;
}

const ERR_SYNTAX = errorReply('ERR syntax error');
const ERR_NOT_INTEGER = errorReply('ERR value is not an integer or out of range');
const ERR_OVERFLOW = errorReply('ERR increment or decrement would overflow');
const ERR_TOO_BIG = errorReply('ERR string exceeds maximum allowed size (proto-max-bulk-len)');
const OOM_REPLY = errorReply("OOM command not allowed when used memory > 'maxmemory'.");
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
/** Expiry times are kept as ms below 2^53 (u64 fields written as JS numbers). */
const MAX_EXPIRE_MS = BigInt(Number.MAX_SAFE_INTEGER);

const arityError = (name: string): Buffer => errorReply(`ERR wrong number of arguments for '${name}' command`);

/** A 64-bit signed integer exactly as Redis's string2ll takes it: no sign but '-', no spaces, no leading zeros. */
export function parseInt64(b: Uint8Array): bigint | null {
  const n = b.length;
  if (n === 0 || n > 20) return null;
  let i = 0;
  if (b[0] === 0x2d) {
    if (n === 1) return null;
    i = 1;
  }
  if (b[i] === 0x30) return n === 1 ? 0n : null;
  for (let k = i; k < n; k++) if (b[k] < 0x30 || b[k] > 0x39) return null;
  const v = BigInt(Buffer.from(b.buffer, b.byteOffset, n).toString('latin1'));
  return v < INT64_MIN || v > INT64_MAX ? null : v;
}

const lower = (b: Buffer): string => b.toString('latin1').toLowerCase();

/** Looks a key up for reading and counts the hit or miss. */
function read(cx: Context, key: Buffer): number {
  const ref = cx.store.find(key, cx.now);
  cx.store.noteLookup(ref !== 0);
  return ref;
}

function set(cx: Context, args: Buffer[]): Buffer {
  let nx = false;
  let xx = false;
  let get = false;
  let keepTtl = false;
  let unit: 'ex' | 'px' | 'exat' | 'pxat' | undefined;
  let amount: Buffer | undefined;
  for (let j = 3; j < args.length; j++) {
    const opt = lower(args[j]);
    const hasNext = j + 1 < args.length;
    if (opt === 'nx' && !xx) nx = true;
    else if (opt === 'xx' && !nx) xx = true;
    else if (opt === 'get') get = true;
    else if (opt === 'keepttl' && unit === undefined) keepTtl = true;
    else if ((opt === 'ex' || opt === 'px' || opt === 'exat' || opt === 'pxat') && unit === undefined && !keepTtl && hasNext) {
      unit = opt;
      amount = args[++j];
    } else return ERR_SYNTAX;
  }
  let expireAt = keepTtl ? KEEP_TTL : 0;
  if (unit !== undefined) {
    const v = parseInt64(amount!);
    if (v === null) return ERR_NOT_INTEGER;
    if (v <= 0n) return errorReply("ERR invalid expire time in 'set' command");
    const ms = unit === 'ex' ? v * 1000n + BigInt(cx.now) : unit === 'px' ? v + BigInt(cx.now) : unit === 'exat' ? v * 1000n : v;
    if (ms > MAX_EXPIRE_MS) return errorReply("ERR invalid expire time in 'set' command");
    expireAt = Number(ms);
  }
  const [, key, value] = args;
  const ref = cx.store.find(key, cx.now);
  const old = get && ref !== 0 ? bulkReply(cx.store.value(ref)) : NULL_BULK_REPLY;
  if ((nx && ref !== 0) || (xx && ref === 0)) return get ? old : NULL_BULK_REPLY;
  if (expireAt !== KEEP_TTL && expireAt !== 0 && expireAt <= cx.now) {
    // An absolute time already past (EXAT/PXAT): Redis deletes the key and still answers OK.
    cx.store.delete(key, cx.now);
  } else {
    cx.store.set(key, value, expireAt, cx.now);
  }
  return get ? old : OK_REPLY;
}

function incrBy(cx: Context, key: Buffer, delta: bigint): Buffer {
  const ref = cx.store.find(key, cx.now);
  let current = 0n;
  if (ref !== 0) {
    const v = parseInt64(cx.store.value(ref));
    if (v === null) return ERR_NOT_INTEGER;
    current = v;
  }
  const next = current + delta;
  if (next < INT64_MIN || next > INT64_MAX) return ERR_OVERFLOW;
  cx.store.set(key, Buffer.from(next.toString(), 'latin1'), KEEP_TTL, cx.now);
  return integerReply(next);
}

function ttl(cx: Context, key: Buffer, unitMs: number): Buffer {
  const ref = read(cx, key);
  if (ref === 0) return integerReply(-2);
  const at = cx.store.expireAt(ref);
  if (at === 0) return integerReply(-1);
  const left = Math.max(0, at - cx.now);
  return integerReply(unitMs === 1 ? left : Math.floor((left + 500) / 1000));
}

const INFO_SECTIONS = ['server', 'clients', 'memory', 'persistence', 'stats', 'keyspace'] as const;
type InfoSection = (typeof INFO_SECTIONS)[number];

function infoSection(cx: Context, section: InfoSection): string[] {
  const s = cx.store;
  switch (section) {
    case 'server': {
      const server = cx.serverInfo();
      return ['# Server', `redis_version:${REDIS_VERSION}`, 'redis_mode:standalone', 'os:Tandem sim guest', 'arch_bits:64', `tcp_port:${server.port}`];
    }
    case 'clients': {
      const server = cx.serverInfo();
      return ['# Clients', `connected_clients:${server.connectedClients}`, `maxclients:${server.maxClients}`];
    }
    case 'memory':
      return ['# Memory', `used_memory:${s.heapUsed}`, `maxmemory:${s.heapBytes}`, 'maxmemory_policy:noeviction'];
    case 'persistence': {
      const p = cx.persistence?.info();
      if (p === undefined) return ['# Persistence', 'aof_enabled:0'];
      return [
        '# Persistence',
        'aof_enabled:1',
        `aof_last_write_status:${p.ok ? 'ok' : 'err'}`,
        `aof_rewrites:${p.rewrites}`,
        `aof_current_size:${p.currentSize}`,
        `aof_base_size:${p.baseSize}`,
        `aof_capacity:${p.capacity}`,
      ];
    }
    case 'stats': {
      const st = s.stats();
      return ['# Stats', `total_commands_processed:${st.commands}`, `keyspace_hits:${st.hits}`, `keyspace_misses:${st.misses}`, `expired_keys:${st.expired}`, `rejected_oom:${st.oom}`];
    }
    case 'keyspace':
      // As Redis: an empty database gets no line.
      return s.keyCount === 0 ? ['# Keyspace'] : ['# Keyspace', `db0:keys=${s.keyCount},expires=${s.expiresCount},avg_ttl=0`];
  }
}

function info(cx: Context, args: Buffer[]): Buffer {
  const asked = args.slice(1).map(lower);
  const all = asked.length === 0 || asked.some((a) => a === 'all' || a === 'default' || a === 'everything');
  const sections = INFO_SECTIONS.filter((name) => all || asked.includes(name));
  const text = sections.map((name) => infoSection(cx, name).join('\r\n') + '\r\n').join('\r\n');
  return bulkReply(text);
}

function configParameters(cx: Context): [string, string][] {
  const server = cx.serverInfo();
  return [
    // redis-benchmark reads these two at start; persistence is the append-only file alone.
    ['save', ''],
    ['appendonly', cx.persistence === undefined ? 'no' : 'yes'],
    ['databases', '1'],
    ['maxmemory', String(cx.store.heapBytes)],
    ['maxmemory-policy', 'noeviction'],
    ['proto-max-bulk-len', String(cx.maxValueBytes)],
    ['maxclients', String(server.maxClients)],
    ['port', String(server.port)],
  ];
}

function config(cx: Context, args: Buffer[]): Buffer {
  const sub = lower(args[1]);
  if (sub !== 'get') return errorReply(`ERR unknown subcommand '${args[1].toString('latin1').slice(0, 128)}'. Try CONFIG HELP.`);
  if (args.length < 3) return arityError('config|get');
  const out: string[] = [];
  for (const [name, value] of configParameters(cx)) {
    const nameBytes = Buffer.from(name, 'latin1');
    if (args.slice(2).some((p) => globMatch(Buffer.from(lower(p), 'latin1'), nameBytes))) out.push(name, value);
  }
  return bulkArrayReply(out);
}

export const COMMANDS: readonly CommandSpec[] = [
  {
    name: 'ping',
    arity: -1,
    handler: (_cx, args) => (args.length === 1 ? PONG_REPLY : args.length === 2 ? bulkReply(args[1]) : arityError('ping')),
  },
  { name: 'echo', arity: 2, handler: (_cx, args) => bulkReply(args[1]) },
  {
    name: 'get',
    arity: 2,
    handler: (cx, args) => {
      const ref = read(cx, args[1]);
      return ref === 0 ? NULL_BULK_REPLY : bulkReply(cx.store.value(ref));
    },
  },
  { name: 'set', arity: -3, handler: set },
  {
    name: 'del',
    arity: -2,
    handler: (cx, args) => {
      let n = 0;
      for (let i = 1; i < args.length; i++) if (cx.store.delete(args[i], cx.now)) n++;
      return integerReply(n);
    },
  },
  {
    name: 'exists',
    arity: -2,
    handler: (cx, args) => {
      let n = 0;
      for (let i = 1; i < args.length; i++) if (read(cx, args[i]) !== 0) n++;
      return integerReply(n);
    },
  },
  { name: 'incr', arity: 2, handler: (cx, args) => incrBy(cx, args[1], 1n) },
  { name: 'decr', arity: 2, handler: (cx, args) => incrBy(cx, args[1], -1n) },
  {
    name: 'incrby',
    arity: 3,
    handler: (cx, args) => {
      const delta = parseInt64(args[2]);
      return delta === null ? ERR_NOT_INTEGER : incrBy(cx, args[1], delta);
    },
  },
  {
    name: 'decrby',
    arity: 3,
    handler: (cx, args) => {
      const delta = parseInt64(args[2]);
      if (delta === null) return ERR_NOT_INTEGER;
      if (delta === INT64_MIN) return errorReply('ERR decrement would overflow');
      return incrBy(cx, args[1], -delta);
    },
  },
  {
    name: 'mget',
    arity: -2,
    handler: (cx, args) => {
      const out: Buffer[] = [];
      for (let i = 1; i < args.length; i++) {
        const ref = read(cx, args[i]);
        out.push(ref === 0 ? NULL_BULK_REPLY : bulkReply(cx.store.value(ref)));
      }
      return arrayReply(out);
    },
  },
  {
    name: 'mset',
    arity: -3,
    handler: (cx, args) => {
      if (args.length % 2 === 0) return arityError('mset');
      cx.store.setMany(args.slice(1), cx.now);
      return OK_REPLY;
    },
  },
  {
    name: 'append',
    arity: 3,
    handler: (cx, args) => {
      const ref = cx.store.find(args[1], cx.now);
      const current = ref === 0 ? 0 : cx.store.valueLength(ref);
      if (current + args[2].length > cx.maxValueBytes) return ERR_TOO_BIG;
      return integerReply(cx.store.append(args[1], args[2], cx.now));
    },
  },
  {
    name: 'strlen',
    arity: 2,
    handler: (cx, args) => {
      const ref = read(cx, args[1]);
      return integerReply(ref === 0 ? 0 : cx.store.valueLength(ref));
    },
  },
  { name: 'ttl', arity: 2, handler: (cx, args) => ttl(cx, args[1], 1000) },
  { name: 'pttl', arity: 2, handler: (cx, args) => ttl(cx, args[1], 1) },
  { name: 'dbsize', arity: 1, handler: (cx) => integerReply(cx.store.keyCount) },
  {
    name: 'keys',
    arity: 2,
    handler: (cx, args) => {
      const pattern = args[1];
      const everything = pattern.length === 1 && pattern[0] === 0x2a;
      return bulkArrayReply(cx.store.keys((k) => everything || globMatch(pattern, k), cx.now));
    },
  },
  {
    name: 'flushall',
    arity: -1,
    handler: (cx, args) => {
      if (args.length > 2 || (args.length === 2 && !['async', 'sync'].includes(lower(args[1])))) return ERR_SYNTAX;
      cx.store.flush();
      return OK_REPLY;
    },
  },
  {
    name: 'bgrewriteaof',
    arity: 1,
    handler: (cx) => {
      if (cx.persistence === undefined) return errorReply('ERR this guest has no append-only file');
      try {
        // Done at once, in one step of guest code: no checkpoint can catch it half written.
        cx.persistence.rewrite();
      } catch (err) {
        if (err instanceof GuestError) return errorReply(`ERR ${err.message}`);
        throw err;
      }
      return simpleStringReply('Background append only file rewriting started');
    },
  },
  {
    name: 'time',
    arity: 1,
    handler: (cx) => {
      const us = Math.floor(cx.clock());
      return bulkArrayReply([String(Math.floor(us / 1e6)), String(us % 1e6)]);
    },
  },
  { name: 'randomkey', arity: 1, handler: (cx) => bulkReply(cx.store.randomKey(cx.random, cx.now)) },
  { name: 'info', arity: -1, handler: info },
  { name: 'config', arity: -2, handler: config },
  {
    name: 'select',
    arity: 2,
    handler: (_cx, args) => {
      const db = parseInt64(args[1]);
      if (db === null) return ERR_NOT_INTEGER;
      return db === 0n ? OK_REPLY : errorReply('ERR DB index is out of range');
    },
  },
  {
    name: 'command',
    arity: -1,
    // redis-cli asks for COMMAND DOCS to drive its hints; none is a valid answer.
    handler: (_cx, args) => (args.length >= 2 && lower(args[1]) === 'count' ? integerReply(COMMANDS.length) : EMPTY_ARRAY_REPLY),
  },
  {
    name: 'quit',
    arity: -1,
    handler: (cx) => {
      cx.session.quit = true;
      return OK_REPLY;
    },
  },
];

const BY_NAME = new Map(COMMANDS.map((c, i) => [c.name, { spec: c, index: i }]));
const LONGEST_NAME = Math.max(...COMMANDS.map((c) => c.name.length));

/** The reject path's own "handler" slot for the vCPU. */
const REJECT_INDEX = COMMANDS.length;

export class KvCommands {
  private readonly cx: Context;
  private readonly vcpu: GuestVcpu | undefined;

  constructor(options: KvCommandsOptions) {
    this.cx = {
      store: options.store,
      now: 0,
      clock: options.clock ?? (() => (performance.timeOrigin + performance.now()) * 1000),
      random: options.random ?? (() => Math.random()),
      maxValueBytes: options.maxValueBytes ?? DEFAULT_RESP_LIMITS.maxBulkLength,
      session: { quit: false },
      serverInfo: options.serverInfo ?? (() => ({ port: 0, connectedClients: 0, maxClients: 0 })),
      persistence: options.persistence,
    };
    this.vcpu = options.vcpu;
  }

  /**
   * Runs one request as guest code and returns its encoded reply. Must run
   * while the domain runs (inside domain.run): handlers write guest RAM.
   */
  execute(args: Buffer[], session: Session): Buffer {
    const cx = this.cx;
    const found = args.length > 0 && args[0].length <= LONGEST_NAME ? BY_NAME.get(lower(args[0])) : undefined;
    if (found === undefined) {
      this.vcpu?.retire(REJECT_INDEX, cx.store.stats().commands);
      return unknownCommand(args);
    }
    const { spec, index } = found;
    if (spec.arity > 0 ? args.length !== spec.arity : args.length < -spec.arity) {
      this.vcpu?.retire(REJECT_INDEX, cx.store.stats().commands);
      return arityError(spec.name);
    }
    cx.now = Math.floor(cx.clock() / 1000);
    cx.session = session;
    let reply: Buffer;
    try {
      reply = spec.handler(cx, args);
    } catch (err) {
      if (!(err instanceof StoreFullError)) throw err;
      reply = OOM_REPLY;
    }
    const count = cx.store.countCommand();
    this.vcpu?.retire(index, count);
    return reply;
  }

  /** The periodic active-expiry sweep, as guest code: up to `maxChecks` keys looked at. */
  sweepExpired(maxChecks: number): number {
    return this.cx.store.sweepExpired(Math.floor(this.cx.clock() / 1000), maxChecks);
  }
}

function unknownCommand(args: Buffer[]): Buffer {
  // Redis's wording: the name and the first arguments, each quoted, up to about 128 bytes.
  const name = args.length > 0 ? args[0].toString('latin1', 0, 128) : '';
  let shown = '';
  for (let i = 1; i < args.length && shown.length < 128; i++) shown += `'${args[i].toString('latin1', 0, 128 - shown.length)}' `;
  return errorReply(`ERR unknown command '${name}', with args beginning with: ${shown}`);
}
