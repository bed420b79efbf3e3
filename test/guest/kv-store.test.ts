import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { SimDomain } from '../../src/domain/sim/domain.js';
import { KvCommands } from '../../src/guest/commands.js';
import { GuestError, GuestErrorCodes } from '../../src/guest/errors.js';
import { KvStore, type KvEntry } from '../../src/guest/kv-store.js';
import { SB_HEAP_TOP, SB_KEY_COUNT, SB_REGION_BYTES, SB_VERSION, classCountFor, classOf, classSize } from '../../src/guest/layout.js';
import { GUEST_TEXT_BASE } from '../../src/guest/vcpu.js';
import { PAGE_SIZE } from '../../src/stream/format.js';
import { uniform } from '../../src/util/xorshift.js';
import { T0_US, harness, type Harness } from './helpers.js';

const OK = '+OK\r\n';
const NIL = '$-1\r\n';
const bulk = (s: string): string => `$${Buffer.byteLength(s, 'latin1')}\r\n${s}\r\n`;
const int = (n: number | string): string => `:${n}\r\n`;
const arr = (...items: string[]): string => `*${items.length}\r\n${items.join('')}`;
const err = (m: string): string => `-${m}\r\n`;
const ARITY = (name: string): string => err(`ERR wrong number of arguments for '${name}' command`);
const NOT_INT = err('ERR value is not an integer or out of range');
const SYNTAX = err('ERR syntax error');
const OOM = err("OOM command not allowed when used memory > 'maxmemory'.");

type Step = [args: string[], reply: string];

/** Command semantics, each case on a fresh store: request and the exact reply bytes. */
const CASES: [string, Step[]][] = [
  ['PING and ECHO', [[['PING'], '+PONG\r\n'], [['ping', 'hi'], bulk('hi')], [['PING', 'a', 'b'], ARITY('ping')], [['ECHO', 'x y'], bulk('x y')], [['ECHO'], ARITY('echo')]]],
  ['GET and SET', [[['GET', 'k'], NIL], [['SET', 'k', 'v'], OK], [['GET', 'k'], bulk('v')], [['SET', 'k', ''], OK], [['GET', 'k'], bulk('')], [['sEt', 'k', 'w'], OK], [['get', 'k'], bulk('w')]]],
  ['GET and SET arity', [[['GET'], ARITY('get')], [['GET', 'a', 'b'], ARITY('get')], [['SET', 'k'], ARITY('set')]]],
  ['SET NX', [[['SET', 'k', 'v', 'NX'], OK], [['SET', 'k', 'w', 'nx'], NIL], [['GET', 'k'], bulk('v')]]],
  ['SET XX', [[['SET', 'k', 'v', 'XX'], NIL], [['GET', 'k'], NIL], [['SET', 'k', 'v'], OK], [['SET', 'k', 'w', 'XX'], OK], [['GET', 'k'], bulk('w')]]],
  ['SET GET', [[['SET', 'k', 'v', 'GET'], NIL], [['SET', 'k', 'w', 'GET'], bulk('v')], [['SET', 'k', 'x', 'NX', 'GET'], bulk('w')], [['GET', 'k'], bulk('w')]]],
  [
    'SET syntax errors',
    [
      [['SET', 'k', 'v', 'NX', 'XX'], SYNTAX],
      [['SET', 'k', 'v', 'XX', 'NX'], SYNTAX],
      [['SET', 'k', 'v', 'EX'], SYNTAX],
      [['SET', 'k', 'v', 'PX'], SYNTAX],
      [['SET', 'k', 'v', 'EX', '10', 'PX', '100'], SYNTAX],
      [['SET', 'k', 'v', 'EX', '10', 'KEEPTTL'], SYNTAX],
      [['SET', 'k', 'v', 'KEEPTTL', 'EX', '10'], SYNTAX],
      [['SET', 'k', 'v', 'FOO'], SYNTAX],
      [['SET', 'k', 'v', 'EX', 'abc'], NOT_INT],
      [['SET', 'k', 'v', 'EX', '1.5'], NOT_INT],
      [['SET', 'k', 'v', 'EX', '0'], err("ERR invalid expire time in 'set' command")],
      [['SET', 'k', 'v', 'PX', '-5'], err("ERR invalid expire time in 'set' command")],
      [['SET', 'k', 'v', 'EX', '9223372036854775807'], err("ERR invalid expire time in 'set' command")],
      [['GET', 'k'], NIL],
    ],
  ],
  ['DEL', [[['MSET', 'a', '1', 'b', '2'], OK], [['DEL', 'a', 'b', 'c', 'a'], int(2)], [['DEL', 'a'], int(0)], [['DEL'], ARITY('del')], [['DBSIZE'], int(0)]]],
  ['EXISTS', [[['SET', 'a', '1'], OK], [['EXISTS', 'a', 'a', 'b'], int(2)], [['EXISTS', 'b'], int(0)], [['EXISTS'], ARITY('exists')]]],
  [
    'INCR, INCRBY, DECR, DECRBY',
    [
      [['INCR', 'n'], int(1)],
      [['INCR', 'n'], int(2)],
      [['INCRBY', 'n', '10'], int(12)],
      [['DECR', 'n'], int(11)],
      [['DECRBY', 'n', '20'], int(-9)],
      [['INCRBY', 'n', '-1'], int(-10)],
      [['GET', 'n'], bulk('-10')],
      [['DECR', 'fresh'], int(-1)],
    ],
  ],
  [
    'INCR errors and overflow',
    [
      [['SET', 's', 'abc'], OK],
      [['INCR', 's'], NOT_INT],
      [['SET', 's', ' 1'], OK],
      [['INCR', 's'], NOT_INT],
      [['SET', 's', '01'], OK],
      [['INCR', 's'], NOT_INT],
      [['SET', 's', '+1'], OK],
      [['INCR', 's'], NOT_INT],
      [['SET', 's', '9223372036854775808'], OK],
      [['INCR', 's'], NOT_INT],
      [['SET', 'max', '9223372036854775807'], OK],
      [['INCR', 'max'], err('ERR increment or decrement would overflow')],
      [['GET', 'max'], bulk('9223372036854775807')],
      [['SET', 'min', '-9223372036854775808'], OK],
      [['DECR', 'min'], err('ERR increment or decrement would overflow')],
      [['INCRBY', 'min', '9223372036854775807'], int(-1)],
      [['INCRBY', 'n', 'x'], NOT_INT],
      [['INCRBY', 'n', '9223372036854775808'], NOT_INT],
      [['DECRBY', 'n', '-9223372036854775808'], err('ERR decrement would overflow')],
      [['INCR'], ARITY('incr')],
      [['INCRBY', 'n'], ARITY('incrby')],
      [['EXISTS', 'n'], int(0)],
    ],
  ],
  [
    'MSET and MGET',
    [
      [['MSET', 'a', '1', 'b', '2'], OK],
      [['MGET', 'a', 'b', 'c'], arr(bulk('1'), bulk('2'), NIL)],
      [['MSET', 'a', 'x', 'a', 'y'], OK],
      [['GET', 'a'], bulk('y')],
      [['MSET', 'a'], ARITY('mset')],
      [['MSET', 'a', '1', 'b'], ARITY('mset')],
      [['MGET'], ARITY('mget')],
    ],
  ],
  [
    'APPEND and STRLEN',
    [
      [['STRLEN', 'k'], int(0)],
      [['APPEND', 'k', 'ab'], int(2)],
      [['APPEND', 'k', 'cd'], int(4)],
      [['GET', 'k'], bulk('abcd')],
      [['STRLEN', 'k'], int(4)],
      [['APPEND', 'k', 'x'.repeat(1000)], int(1004)],
      [['STRLEN', 'k'], int(1004)],
      [['GET', 'k'], bulk('abcd' + 'x'.repeat(1000))],
    ],
  ],
  ['DBSIZE', [[['DBSIZE'], int(0)], [['MSET', 'a', '1', 'b', '2', 'c', '3'], OK], [['DBSIZE'], int(3)], [['DBSIZE', 'x'], ARITY('dbsize')]]],
  [
    'FLUSHALL',
    [
      [['MSET', 'a', '1', 'b', '2'], OK],
      [['FLUSHALL'], OK],
      [['DBSIZE'], int(0)],
      [['GET', 'a'], NIL],
      [['SET', 'a', '3'], OK],
      [['GET', 'a'], bulk('3')],
      [['FLUSHALL', 'ASYNC'], OK],
      [['FLUSHALL', 'sync'], OK],
      [['FLUSHALL', 'foo'], SYNTAX],
      [['DBSIZE'], int(0)],
    ],
  ],
  ['TIME', [[['TIME'], arr(bulk('1700000000'), bulk('123456'))], [['TIME', 'x'], ARITY('time')]]],
  ['RANDOMKEY on an empty store', [[['RANDOMKEY'], NIL]]],
  [
    'CONFIG',
    [
      [['CONFIG', 'GET', 'save'], arr(bulk('save'), bulk(''))],
      [['config', 'get', 'appendonly'], arr(bulk('appendonly'), bulk('no'))],
      [['CONFIG', 'GET', 'nosuchparameter'], '*0\r\n'],
      [['CONFIG', 'GET', 'max*-policy'], arr(bulk('maxmemory-policy'), bulk('noeviction'))],
      [['CONFIG', 'GET', 'save', 'appendonly'], arr(bulk('save'), bulk(''), bulk('appendonly'), bulk('no'))],
      [['CONFIG', 'GET'], ARITY('config|get')],
      [['CONFIG', 'SET', 'save', ''], err("ERR unknown subcommand 'SET'. Try CONFIG HELP.")],
      [['CONFIG'], ARITY('config')],
    ],
  ],
  ['SELECT', [[['SELECT', '0'], OK], [['SELECT', '1'], err('ERR DB index is out of range')], [['SELECT', 'x'], NOT_INT]]],
  ['COMMAND', [[['COMMAND', 'DOCS'], '*0\r\n'], [['COMMAND'], '*0\r\n']]],
  [
    'unknown commands',
    [
      [['FOO', 'a', 'b'], err("ERR unknown command 'FOO', with args beginning with: 'a' 'b' ")],
      [['foo'], err("ERR unknown command 'foo', with args beginning with: ")],
      [['SETX', 'k'], err("ERR unknown command 'SETX', with args beginning with: 'k' ")],
      [['x'.repeat(200)], err(`ERR unknown command '${'x'.repeat(128)}', with args beginning with: `)],
    ],
  ],
  ['TTL and PTTL', [[['TTL', 'k'], int(-2)], [['SET', 'k', 'v'], OK], [['TTL', 'k'], int(-1)], [['SET', 'k', 'v', 'PX', '2500'], OK], [['PTTL', 'k'], int(2500)], [['TTL', 'k'], int(3)]]],
];

describe('commands (table-driven)', () => {
  for (const [name, steps] of CASES) {
    test(name, () => {
      const h = harness();
      steps.forEach(([args, reply], i) => assert.equal(h.run(...args), reply, `step ${i}: ${args.join(' ')}`));
      h.store.check();
    });
  }

  test('QUIT replies OK and marks the session', () => {
    const h = harness();
    assert.equal(h.session.quit, false);
    assert.equal(h.run('QUIT'), OK);
    assert.equal(h.session.quit, true);
  });

  test('COMMAND COUNT is the size of the table', () => {
    assert.match(harness().run('COMMAND', 'COUNT'), /^:\d+\r\n$/);
  });

  test('INFO reports the server, the stats and the keyspace from RAM', () => {
    const h = harness();
    h.run('MSET', 'a', '1', 'b', '2');
    h.run('SET', 'c', '3', 'EX', '100');
    h.run('GET', 'a');
    h.run('GET', 'nope');
    const all = h.run('INFO');
    assert.match(all, /^\$\d+\r\n# Server\r\nredis_version:7\.0\.0\r\n/);
    assert.match(all, /\r\n# Keyspace\r\ndb0:keys=3,expires=1,avg_ttl=0\r\n\r\n$/);
    assert.match(all, /keyspace_hits:1\r\nkeyspace_misses:1\r\n/);
    assert.match(all, /total_commands_processed:4\r\n/);
    const keyspace = h.run('INFO', 'keyspace');
    assert.equal(keyspace, bulk('# Keyspace\r\ndb0:keys=3,expires=1,avg_ttl=0\r\n'));
    h.run('FLUSHALL');
    assert.equal(h.run('info', 'KEYSPACE'), bulk('# Keyspace\r\n'));
    assert.equal(h.run('INFO', 'nosuchsection'), bulk(''));
  });

  test('every command retires on the vCPU: rip names the handler, rax counts commands', () => {
    const h = harness();
    h.run('SET', 'k', 'v');
    const afterSet = { ...h.domain.registers(0) };
    h.run('GET', 'k');
    const afterGet = h.domain.registers(0);
    assert.equal(afterSet.rax, 1n);
    assert.equal(afterGet.rax, 2n);
    assert.ok(afterSet.rip >= GUEST_TEXT_BASE && afterGet.rip >= GUEST_TEXT_BASE);
    assert.notEqual(afterSet.rip, afterGet.rip, 'a different handler ran');
    h.run('SET', 'k', 'w');
    assert.equal(h.domain.registers(0).rip, afterSet.rip);
  });

  test('KEYS globs over the stored keys: *, ?, [...], [^...], ranges, escapes', () => {
    const h = harness();
    const keys = ['hello', 'hallo', 'hxllo', 'hllo', 'heeeello', 'h*llo', 'h?llo', 'a[b', 'x\\y', 'h-llo'];
    for (const k of keys) assert.equal(h.run('SET', k, '1'), OK);
    const run = (pattern: string): string[] => {
      const reply = h.run('KEYS', pattern);
      const lines = reply.split('\r\n');
      const out: string[] = [];
      for (let i = 2; i < lines.length; i += 2) out.push(lines[i]);
      return out.sort();
    };
    const sorted = (...k: string[]): string[] => k.sort();
    assert.deepEqual(run('*'), sorted(...keys));
    assert.deepEqual(run('h?llo'), sorted('hello', 'hallo', 'hxllo', 'h*llo', 'h?llo', 'h-llo'));
    assert.deepEqual(run('h*llo'), sorted('hello', 'hallo', 'hxllo', 'hllo', 'heeeello', 'h*llo', 'h?llo', 'h-llo'));
    assert.deepEqual(run('h[ae]llo'), sorted('hello', 'hallo'));
    assert.deepEqual(run('h[^e]llo'), sorted('hallo', 'hxllo', 'h*llo', 'h?llo', 'h-llo'));
    assert.deepEqual(run('h[a-b]llo'), sorted('hallo'));
    assert.deepEqual(run('h[x-a]llo'), sorted('hallo', 'hello', 'hxllo'), 'bounds in either order');
    assert.deepEqual(run('h[b-a]llo'), sorted('hallo'));
    assert.deepEqual(run('h\\*llo'), sorted('h*llo'));
    assert.deepEqual(run('h[\\?]llo'), sorted('h?llo'));
    assert.deepEqual(run('a\\[b'), sorted('a[b'));
    assert.deepEqual(run('x\\\\y'), sorted('x\\y'));
    assert.deepEqual(run('h[-]llo'), sorted('h-llo'));
    assert.deepEqual(run('nomatch*'), []);
    assert.deepEqual(run('*o'), sorted(...keys.filter((k) => k.endsWith('o'))));
    assert.equal(h.run('KEYS'), ARITY('keys'));
  });

  test('RANDOMKEY draws uniformly over the keys in RAM', () => {
    const h = harness({ seed: 11 });
    const keys = Array.from({ length: 20 }, (_, i) => `key:${i}`);
    for (const k of keys) h.run('SET', k, 'v');
    const counts = new Map<string, number>();
    for (let i = 0; i < 20_000; i++) {
      const reply = h.run('RANDOMKEY');
      const k = reply.split('\r\n')[1];
      counts.set(k, (counts.get(k) ?? 0) + 1);
    }
    assert.deepEqual([...counts.keys()].sort(), keys.sort());
    // 1000 expected each; sd ~31, so 800..1200 is over six sigma.
    for (const [k, n] of counts) assert.ok(n > 800 && n < 1200, `${k} drawn ${n} times`);
  });
});

describe('expiry (injected clock)', () => {
  test('SET PX expires after its time, lazily on access', () => {
    const h = harness();
    assert.equal(h.run('SET', 'k', 'v', 'PX', '100'), OK);
    assert.equal(h.run('PTTL', 'k'), int(100));
    h.advance(100);
    assert.equal(h.run('GET', 'k'), bulk('v'), 'alive up to and including its expiry time');
    h.advance(1);
    assert.equal(h.store.keyCount, 1, 'still in RAM until touched');
    assert.equal(h.run('GET', 'k'), NIL);
    assert.equal(h.store.keyCount, 0);
    assert.equal(h.store.stats().expired, 1);
    h.store.check();
  });

  test('SET EX, EXAT, PXAT; a past absolute time deletes the key', () => {
    const h = harness();
    assert.equal(h.run('SET', 'k', 'v', 'EX', '10'), OK);
    assert.equal(h.run('TTL', 'k'), int(10));
    const at = Math.floor(T0_US / 1000) + 5000;
    assert.equal(h.run('SET', 'k', 'v', 'PXAT', String(at)), OK);
    assert.equal(h.run('PTTL', 'k'), int(5000));
    assert.equal(h.run('SET', 'k', 'v', 'EXAT', String(Math.floor(at / 1000) + 10)), OK);
    assert.equal(h.run('SET', 'k', 'v', 'EXAT', '1000'), OK);
    assert.equal(h.run('EXISTS', 'k'), int(0));
    assert.equal(h.store.keyCount, 0);
  });

  test('a plain SET clears the TTL; KEEPTTL, INCR and APPEND keep it', () => {
    const h = harness();
    h.run('SET', 'k', 'v', 'EX', '10');
    h.run('SET', 'k', 'w');
    assert.equal(h.run('TTL', 'k'), int(-1));
    h.run('SET', 'k', 'v', 'PX', '1000');
    h.run('SET', 'k', 'w', 'KEEPTTL');
    assert.equal(h.run('PTTL', 'k'), int(1000));
    h.run('SET', 'n', '1', 'PX', '1000');
    h.run('INCR', 'n');
    assert.equal(h.run('PTTL', 'n'), int(1000));
    h.run('APPEND', 'k', 'x'.repeat(500));
    assert.equal(h.run('PTTL', 'k'), int(1000));
    assert.equal(h.store.expiresCount, 2);
    h.run('MSET', 'k', '1');
    assert.equal(h.run('TTL', 'k'), int(-1));
    assert.equal(h.store.expiresCount, 1);
    h.store.check();
  });

  test('expired keys are absent to every command, and NX can take their name', () => {
    const h = harness();
    h.run('SET', 'k', 'old', 'PX', '10');
    h.run('SET', 'n', '41', 'PX', '10');
    h.advance(11);
    assert.equal(h.run('SET', 'k', 'new', 'NX'), OK);
    assert.equal(h.run('GET', 'k'), bulk('new'));
    assert.equal(h.run('INCR', 'n'), int(1), 'an expired counter starts over');
    assert.equal(h.run('TTL', 'n'), int(-1));
    h.run('SET', 'a', 'x', 'PX', '10');
    h.advance(11);
    assert.equal(h.run('APPEND', 'a', 'y'), int(1));
    assert.equal(h.run('DEL', 'a', 'a'), int(1));
    h.run('SET', 'b', 'x', 'PX', '10');
    h.advance(11);
    assert.equal(h.run('DEL', 'b'), int(0));
    assert.equal(h.run('KEYS', '*'), arr(bulk('k'), bulk('n')));
  });

  test('KEYS skips expired keys without deleting them; DBSIZE counts them until then (as Redis)', () => {
    const h = harness();
    h.run('SET', 'a', '1', 'PX', '10');
    h.run('SET', 'b', '1');
    h.advance(11);
    assert.equal(h.run('KEYS', '*'), arr(bulk('b')));
    assert.equal(h.run('DBSIZE'), int(2));
  });

  test('RANDOMKEY never returns an expired key and deletes those it draws', () => {
    const h = harness();
    for (let i = 0; i < 50; i++) h.run('SET', `t${i}`, 'v', 'PX', '10');
    h.run('SET', 'keeper', 'v');
    h.advance(11);
    for (let i = 0; i < 20; i++) assert.equal(h.run('RANDOMKEY'), bulk('keeper'));
    h.run('DEL', 'keeper');
    assert.equal(h.run('RANDOMKEY'), NIL);
    assert.equal(h.store.keyCount, 0);
    h.store.check();
  });

  test('the active sweep deletes expired keys within its budget and resumes where it stopped', () => {
    const h = harness({ pages: 512 });
    for (let i = 0; i < 200; i++) {
      h.run('SET', `live:${i}`, 'v');
      h.run('SET', `ttl:${i}`, 'v', 'PX', String(10 + (i % 3)));
    }
    assert.equal(h.commands.sweepExpired(1000), 0, 'nothing expired yet');
    h.advance(20);
    const first = h.commands.sweepExpired(50);
    assert.ok(first > 0 && first <= 50, `first sweep expired ${first}`);
    let total = first;
    while (h.store.expiresCount > 0) total += h.commands.sweepExpired(50);
    assert.equal(total, 200);
    assert.equal(h.store.keyCount, 200);
    assert.equal(h.store.stats().expired, 200);
    assert.equal(h.commands.sweepExpired(50), 0);
    h.store.check();
  });
});

describe('out of memory', () => {
  const tiny = (): Harness => harness({ pages: 8 });

  function snapshot(h: Harness): KvEntry[] {
    return [...h.store.entries()].sort((a, b) => Buffer.compare(a.key, b.key));
  }

  test('a full heap gets -OOM for the command and nothing changes', () => {
    const h = tiny();
    const big = 'x'.repeat(1000);
    let n = 0;
    while (h.run('SET', `k${n}`, big) === OK) n++;
    assert.ok(n > 5 && n < 40, `${n} 1 KB values fit`);
    assert.equal(h.run('SET', 'another', big), OOM);
    const ram = Buffer.from(h.domain.ram);
    // Replacing with something larger, appending: refused without a write outside the superblock's counters.
    assert.equal(h.run('SET', 'k0', 'y'.repeat(3000)), OOM);
    assert.equal(h.run('APPEND', 'k1', 'z'.repeat(3000)), OOM);
    assert.equal(h.run('GET', 'k0'), bulk(big));
    assert.ok(h.domain.ram.subarray(4096).equals(ram.subarray(4096)), 'no byte outside the superblock changed');
    // MSET gets some of its blocks (a freed one, the heap tail), not all: it hands them back.
    assert.equal(h.run('DEL', 'k2'), int(1));
    const before = snapshot(h);
    const used = h.store.heapUsed;
    assert.equal(h.run('MSET', 'm1', 'small', 'm2', big, 'm3', big, 'm4', big), OOM);
    assert.equal(h.run('MGET', 'm1', 'm2'), arr(NIL, NIL), 'MSET is all or nothing');
    assert.deepEqual(snapshot(h), before);
    assert.equal(h.store.heapUsed, used);
    h.store.check();
    assert.equal(h.store.stats().oom, 5, 'the filling SET, another, SET k0, APPEND, MSET');
    assert.match(h.run('INFO', 'stats'), /rejected_oom:5\r\n/);
    // The blocks MSET gave back serve the next command.
    assert.equal(h.run('SET', 'm2', big), OK);
    assert.equal(h.run('SET', 'm3', big), OOM);
    assert.equal(h.run('DEL', 'k0', 'k1'), int(2));
    assert.equal(h.run('MSET', 'm1', 'small', 'm3', big), OK);
    h.store.check();
  });

  test('shrinking a value in a full heap still works (in place)', () => {
    const h = tiny();
    let n = 0;
    while (h.run('SET', `k${n}`, 'x'.repeat(1500)) === OK) n++;
    assert.equal(h.run('SET', 'k0', 'short'), OK);
    assert.equal(h.run('GET', 'k0'), bulk('short'));
    h.store.check();
  });

  test('the key slots cap the key count', () => {
    const h = harness({ format: { maxKeys: 4 } });
    for (let i = 0; i < 4; i++) assert.equal(h.run('SET', `k${i}`, 'v'), OK);
    assert.equal(h.run('SET', 'k4', 'v'), OOM);
    assert.equal(h.run('MSET', 'k0', 'a', 'k9', 'b'), OOM);
    assert.equal(h.run('MSET', 'k0', 'a', 'k1', 'b'), OK, 'replacing existing keys needs no slot');
    assert.equal(h.run('INCR', 'k4'), OOM);
    assert.equal(h.run('DBSIZE'), int(4));
    h.store.check();
  });
});

/** A reference model of the store: what a client may observe at time `now`. */
class Model {
  readonly map = new Map<string, { value: Buffer; expireAt: number }>();

  live(now: number): Map<string, { value: Buffer; expireAt: number }> {
    for (const [k, e] of this.map) if (e.expireAt !== 0 && now > e.expireAt) this.map.delete(k);
    return this.map;
  }
}

/** Random traffic through the command table, mirrored into the model. */
function randomTraffic(h: Harness, model: Model, rnd: () => number, ops: number): void {
  const key = (): string => `key:${Math.floor(rnd() * 300)}`;
  const value = (): Buffer => {
    const len = rnd() < 0.05 ? 1000 + Math.floor(rnd() * 3000) : Math.floor(rnd() * 120);
    return Buffer.from(Array.from({ length: len }, () => Math.floor(rnd() * 256)));
  };
  for (let i = 0; i < ops; i++) {
    const now = h.nowMs();
    const live = model.live(now);
    const r = rnd();
    if (r < 0.35) {
      const k = key();
      const v = value();
      const ttl = rnd() < 0.3 ? 1 + Math.floor(rnd() * 200) : 0;
      const reply = ttl ? h.run('SET', k, v, 'PX', String(ttl)) : h.run('SET', k, v);
      assert.equal(reply, OK);
      live.set(k, { value: v, expireAt: ttl ? now + ttl : 0 });
    } else if (r < 0.5) {
      const k = key();
      const e = live.get(k);
      assert.equal(h.run('GET', k), e === undefined ? NIL : `$${e.value.length}\r\n${e.value.toString('latin1')}\r\n`);
    } else if (r < 0.6) {
      const k = key();
      assert.equal(h.run('DEL', k), int(live.delete(k) ? 1 : 0));
    } else if (r < 0.7) {
      const k = key();
      const v = value();
      const e = live.get(k);
      const next = e === undefined ? { value: v, expireAt: 0 } : { value: Buffer.concat([e.value, v]), expireAt: e.expireAt };
      assert.equal(h.run('APPEND', k, v), int(next.value.length));
      live.set(k, next);
    } else if (r < 0.8) {
      const k = `counter:${Math.floor(rnd() * 20)}`;
      const e = live.get(k);
      const n = (e === undefined ? 0 : Number(e.value.toString())) + 1;
      assert.equal(h.run('INCR', k), int(n));
      live.set(k, { value: Buffer.from(String(n)), expireAt: e?.expireAt ?? 0 });
    } else if (r < 0.88) {
      const pairs: Buffer[] = [];
      for (let j = 0, n = 1 + Math.floor(rnd() * 5); j < n; j++) pairs.push(Buffer.from(key()), value());
      assert.equal(h.run('MSET', ...pairs), OK);
      for (let j = 0; j < pairs.length; j += 2) live.set(pairs[j].toString(), { value: pairs[j + 1], expireAt: 0 });
    } else if (r < 0.95) {
      h.advance(Math.floor(rnd() * 50));
    } else if (r < 0.999) {
      h.commands.sweepExpired(30);
    } else {
      assert.equal(h.run('FLUSHALL'), OK);
      live.clear();
    }
  }
}

/** Every live key, value and TTL of the model is in `store`, and nothing else that is live. */
function assertMatches(store: KvStore, model: Model, now: number): void {
  const live = model.live(now);
  const found = new Map<string, KvEntry>();
  for (const e of store.entries()) if (e.expireAt === 0 || now <= e.expireAt) found.set(e.key.toString('latin1'), e);
  assert.deepEqual([...found.keys()].sort(), [...live.keys()].map((k) => Buffer.from(k).toString('latin1')).sort());
  for (const [k, e] of live) {
    const got = found.get(Buffer.from(k).toString('latin1'))!;
    assert.ok(got.value.equals(e.value), `value of ${k}`);
    assert.equal(got.expireAt, e.expireAt, `expiry of ${k}`);
  }
}

describe('the store lives wholly in guest RAM', () => {
  test('a fresh domain holding a copy of the RAM attaches and finds every key, value and TTL', () => {
    const h = harness({ pages: 1024 });
    const model = new Model();
    randomTraffic(h, model, uniform(2024), 6000);
    assert.ok(model.live(h.nowMs()).size > 100, 'the traffic left a good number of keys');
    h.store.check();

    const replica = new SimDomain({ pages: 1024 });
    replica.ram.set(h.domain.ram);
    const attached = KvStore.attach(replica);
    assert.deepEqual(attached.layout, h.store.layout);
    const report = attached.check();
    assert.equal(report.keys, h.store.keyCount);
    assertMatches(attached, model, h.nowMs());
    assert.deepEqual(attached.stats(), h.store.stats(), 'the INFO counters came along');

    // The replica carries on serving where the primary stopped.
    const commands = new KvCommands({ store: attached, clock: () => h.clock.us });
    const session = { quit: false };
    const exec = (...args: string[]): string => commands.execute(args.map((a) => Buffer.from(a)), session).toString('latin1');
    const [someKey, someEntry] = [...model.live(h.nowMs())].find(([, e]) => e.expireAt === 0)!;
    assert.equal(exec('GET', someKey), `$${someEntry.value.length}\r\n${someEntry.value.toString('latin1')}\r\n`);
    assert.equal(exec('SET', 'after-failover', 'yes'), OK);
    assert.equal(exec('GET', 'after-failover'), bulk('yes'));
    attached.check();
  });

  test('every guest write is dirty-logged: the previous copy plus the logged pages is the RAM', () => {
    const h = harness({ pages: 1024 });
    const model = new Model();
    const rnd = uniform(77);
    h.domain.enableLogDirty();
    const copy = Buffer.from(h.domain.ram);
    for (let epoch = 0; epoch < 30; epoch++) {
      randomTraffic(h, model, rnd, 150);
      const dirty = h.domain.readAndClearDirty();
      assert.ok(dirty.length > 0 && dirty.length < 1024, `epoch ${epoch}: ${dirty.length} dirty pages`);
      for (const pfn of dirty) h.domain.ram.copy(copy, pfn * PAGE_SIZE, pfn * PAGE_SIZE, (pfn + 1) * PAGE_SIZE);
      assert.ok(copy.equals(h.domain.ram), `epoch ${epoch}: a write escaped the dirty log`);
      const replica = new SimDomain({ pages: 1024 });
      replica.ram.set(copy);
      assertMatches(KvStore.attach(replica), model, h.nowMs());
    }
  });

  test('a SET dirties the pages of its entry (and the bookkeeping), not the whole table', () => {
    const h = harness({ pages: 1024 });
    h.run('SET', 'warm', 'up');
    h.domain.enableLogDirty();
    h.run('SET', 'somekey', 'x'.repeat(6000));
    const dirty = Array.from(h.domain.readAndClearDirty());
    const at = h.store.peek(Buffer.from('somekey'))!;
    for (let pfn = Math.floor(at.gpa / PAGE_SIZE); pfn <= Math.floor((at.gpa + 32 + 7 + 6000 - 1) / PAGE_SIZE); pfn++) assert.ok(dirty.includes(pfn), `entry page ${pfn}`);
    assert.ok(dirty.includes(0), 'superblock (counts, heap top)');
    assert.ok(dirty.length <= 7, `only ${dirty.length} pages: entry, superblock, one bucket page, one slot page`);
    // An in-place update of a small value touches only its page and the superblock's counters.
    h.run('SET', 'warm', 'UP');
    const small = Array.from(h.domain.readAndClearDirty());
    assert.deepEqual(small, [0, Math.floor(h.store.peek(Buffer.from('warm'))!.gpa / PAGE_SIZE)].sort((a, b) => a - b));
  });

  test('attach refuses RAM without a store, of another version, or with a corrupt superblock', () => {
    const code = (f: () => unknown): string => {
      try {
        f();
      } catch (e) {
        assert.ok(e instanceof GuestError);
        return e.code;
      }
      return 'no error';
    };
    const blank = new SimDomain({ pages: 64 });
    assert.equal(code(() => KvStore.attach(blank)), GuestErrorCodes.STORE_NOT_FOUND);
    assert.throws(() => KvStore.attach(blank), /no key-value store at guest-physical 0x0: bad magic/);
    const h = harness({ pages: 64 });
    h.run('SET', 'k', 'v');
    const copyOf = (mutate: (ram: Buffer) => void): SimDomain => {
      const d = new SimDomain({ pages: 64 });
      d.ram.set(h.domain.ram);
      mutate(d.ram);
      return d;
    };
    assert.equal(code(() => KvStore.attach(copyOf((r) => r.writeUInt32LE(2, SB_VERSION)))), GuestErrorCodes.STORE_BAD_VERSION);
    assert.equal(code(() => KvStore.attach(copyOf((r) => r.writeUInt32LE(12345, SB_REGION_BYTES)))), GuestErrorCodes.STORE_CORRUPT);
    assert.throws(() => KvStore.attach(copyOf((r) => r.writeUInt32LE(12345, SB_REGION_BYTES))), /superblock checksum mismatch/);
    assert.equal(code(() => KvStore.attach(copyOf((r) => r.writeUInt32LE(0xffffff, SB_KEY_COUNT)))), GuestErrorCodes.STORE_CORRUPT);
    assert.equal(code(() => KvStore.attach(h.domain, { base: 4096 })), GuestErrorCodes.STORE_NOT_FOUND);
    assert.equal(code(() => KvStore.attach(h.domain, { base: 100 })), GuestErrorCodes.STORE_NOT_FOUND);
    // A store in a smaller RAM than it was made for.
    const small = new SimDomain({ pages: 32 });
    small.ram.set(h.domain.ram.subarray(0, 32 * PAGE_SIZE));
    assert.equal(code(() => KvStore.attach(small)), GuestErrorCodes.STORE_CORRUPT);
  });

  test('check() finds a broken chain, a bad count and a lost block', () => {
    const corrupted = (mutate: (h: Harness) => void): string => {
      const h = harness({ pages: 64 });
      for (let i = 0; i < 20; i++) h.run('SET', `k${i}`, `v${i}`);
      h.run('DEL', 'k3');
      mutate(h);
      try {
        h.store.check();
      } catch (e) {
        assert.ok(e instanceof GuestError && e.code === GuestErrorCodes.STORE_CORRUPT, String(e));
        return e.message;
      }
      return 'consistent';
    };
    assert.equal(corrupted(() => {}), 'consistent');
    const bucketWith = (h: Harness): number => {
      const { tableOff, buckets } = h.store.layout;
      for (let b = 0; b < buckets; b++) if (h.domain.ram.readUInt32LE(tableOff + b * 4) !== 0) return tableOff + b * 4;
      throw new Error('no bucket in use');
    };
    assert.match(corrupted((h) => h.domain.ram.writeUInt32LE(7, bucketWith(h))), /corrupt/);
    assert.match(corrupted((h) => h.domain.ram.writeUInt32LE(18, SB_KEY_COUNT)), /corrupt/);
    assert.match(corrupted((h) => h.domain.ram.writeUInt32LE(0, bucketWith(h))), /corrupt/);
    // A block below the heap top that is neither an entry nor free: lost.
    assert.match(
      corrupted((h) => h.domain.ram.writeUInt32LE(h.domain.ram.readUInt32LE(SB_HEAP_TOP) + 64, SB_HEAP_TOP)),
      /do not add up to the heap in use/,
    );
    // A key byte changed under its stored hash.
    assert.match(
      corrupted((h) => {
        const at = h.store.peek(Buffer.from('k7'))!.gpa;
        h.domain.ram[at + 32] ^= 1;
      }),
      /hash/,
    );
  });

  test('format validates its options and can place the store at a base address', () => {
    const d = new SimDomain({ pages: 64 });
    assert.throws(() => KvStore.format(d, { base: 100 }), (e: unknown) => e instanceof GuestError && e.code === GuestErrorCodes.STORE_BAD_OPTIONS);
    assert.throws(() => KvStore.format(d, { bytes: 64 * PAGE_SIZE + 1 }), /does not fit RAM/);
    assert.throws(() => KvStore.format(d, { bytes: 2 * PAGE_SIZE }), /less than a page of heap/);
    assert.throws(() => KvStore.format(d, { buckets: 3 }), /power of two/);
    const s = KvStore.format(d, { base: 16 * PAGE_SIZE, bytes: 32 * PAGE_SIZE });
    assert.equal(s.base, 16 * PAGE_SIZE);
    s.set(Buffer.from('k'), Buffer.from('v'), 0, 0);
    assert.ok(d.ram.subarray(0, 16 * PAGE_SIZE).every((x) => x === 0), 'nothing below the base');
    assert.ok(d.ram.subarray(48 * PAGE_SIZE).every((x) => x === 0), 'nothing above the region');
    const again = KvStore.attach(d, { base: 16 * PAGE_SIZE });
    assert.equal(again.value(again.find(Buffer.from('k'), 0)).toString(), 'v');
    assert.throws(() => KvStore.attach(d), /bad magic/);
  });

  test('format makes an empty store over RAM that held anything', () => {
    const d = new SimDomain({ pages: 64 });
    d.ram.fill(0xa5);
    const s = KvStore.format(d, { hashSeed: 1 });
    assert.equal(s.keyCount, 0);
    assert.deepEqual(s.check().keys, 0);
    s.set(Buffer.from('k'), Buffer.from('v'), 0, 0);
    assert.equal(s.check().keys, 1);
  });
});

describe('size classes', () => {
  test('classOf picks the smallest class that holds the size', () => {
    for (let n = 1; n < 300_000; n += n < 5000 ? 1 : 97) {
      const c = classOf(n);
      assert.ok(classSize(c) >= n, `class ${c} holds ${n}`);
      if (c > 0) assert.ok(classSize(c - 1) < n, `class ${c - 1} would hold ${n}`);
      assert.equal(classSize(c) % 8, 0);
    }
    assert.equal(classSize(0), 32);
    assert.equal(classSize(classOf(2 ** 32)), 2 ** 32);
    assert.ok(classCountFor(4 * 2 ** 30) < (4096 - 256) / 4, 'free-list heads fit the superblock');
  });
});
