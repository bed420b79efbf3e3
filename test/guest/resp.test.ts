import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { GuestErrorCodes, RespProtocolError } from '../../src/guest/errors.js';
import {
  EMPTY_ARRAY_REPLY,
  NULL_ARRAY_REPLY,
  NULL_BULK_REPLY,
  RespParser,
  arrayReply,
  bulkArrayReply,
  bulkReply,
  errorReply,
  integerReply,
  simpleStringReply,
  splitInline,
  type RespCommand,
} from '../../src/guest/resp.js';
import { uniform } from '../../src/util/xorshift.js';
import { request } from './helpers.js';

const b = (s: string): Buffer => Buffer.from(s, 'latin1');
const text = (cmds: RespCommand[]): string[][] => cmds.map((c) => c.map((a) => a.toString('latin1')));

/** Golden requests: the bytes on the wire and the arguments they carry. */
const REQUESTS: [string, string, string[][]][] = [
  ['multibulk', '*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n', [['SET', 'key', 'value']]],
  ['empty bulk', '*2\r\n$4\r\nECHO\r\n$0\r\n\r\n', [['ECHO', '']]],
  ['binary bulk with CRLF inside', '*2\r\n$4\r\nECHO\r\n$6\r\na\r\n*\r\n\r\n', [['ECHO', 'a\r\n*\r\n']]],
  ['null and empty multibulk are no requests', '*0\r\n*-1\r\n*1\r\n$4\r\nPING\r\n', [['PING']]],
  ['inline', 'PING\r\n', [['PING']]],
  ['inline, LF only', 'set k v\n', [['set', 'k', 'v']]],
  ['inline, blank lines skipped', '\r\n\n  \r\nDBSIZE\r\n', [['DBSIZE']]],
  ['inline, double quotes and escapes', 'set "a key" "x\\ty\\x41\\"z"\r\n', [['set', 'a key', 'x\tyA"z']]],
  ['inline, single quotes', "echo 'it\\'s' ''\r\n", [['echo', "it's", '']]],
  ['inline, tabs and runs of spaces', '\tGET \t  k  \r\n', [['GET', 'k']]],
  [
    'pipeline, both kinds',
    '*1\r\n$4\r\nPING\r\nPING\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\nINCR c\r\n',
    [['PING'], ['PING'], ['GET', 'k'], ['INCR', 'c']],
  ],
];

describe('RespParser', () => {
  for (const [name, wire, expected] of REQUESTS) {
    test(`golden request: ${name}`, () => {
      const r = new RespParser().feed(b(wire));
      assert.equal(r.error, undefined);
      assert.deepEqual(text(r.commands), expected);
    });
  }

  test('every request stream split at every byte offset parses identically', () => {
    const wire = b(REQUESTS.map(([, w]) => w).join(''));
    const expected = REQUESTS.flatMap(([, , e]) => e);
    for (let k = 0; k <= wire.length; k++) {
      const p = new RespParser();
      const got = [...p.feed(wire.subarray(0, k)).commands, ...p.feed(wire.subarray(k)).commands];
      assert.equal(p.error, undefined, `split at ${k}`);
      assert.deepEqual(text(got), expected, `split at ${k}`);
    }
    // And one byte at a time.
    const p = new RespParser();
    const got: RespCommand[] = [];
    for (let i = 0; i < wire.length; i++) got.push(...p.feed(wire.subarray(i, i + 1)).commands);
    assert.deepEqual(text(got), expected);
  });

  test('random binary requests survive any chunking (round trip through the request encoding)', () => {
    const rnd = uniform(99);
    const cmds: Buffer[][] = [];
    for (let i = 0; i < 300; i++) {
      const n = 1 + Math.floor(rnd() * 5);
      cmds.push(Array.from({ length: n }, () => Buffer.from(Array.from({ length: Math.floor(rnd() * 40) }, () => (rnd() < 0.2 ? 13 : Math.floor(rnd() * 256))))));
    }
    const wire = Buffer.concat(cmds.map((c) => request(...c)));
    for (let round = 0; round < 20; round++) {
      const p = new RespParser();
      const got: RespCommand[] = [];
      for (let at = 0; at < wire.length; ) {
        const len = 1 + Math.floor(rnd() * 200);
        const r = p.feed(wire.subarray(at, at + len));
        assert.equal(r.error, undefined);
        got.push(...r.commands);
        at += len;
      }
      assert.deepEqual(got, cmds);
    }
  });

  test('fuzz: any bytes in any chunks either parse or stop with a typed protocol error', () => {
    const rnd = uniform(4242);
    const codes = new Set<string>(Object.values(GuestErrorCodes));
    const fragments = ['*', '$', '\r\n', '\n', '\r', '-1', '0', '3', '12', 'SET', '"', "'", ' ', '\\x4', 'PING', '*2\r\n$3\r\nGET\r\n$1\r\nk\r\n'];
    let errors = 0;
    for (let round = 0; round < 2000; round++) {
      const parts: Buffer[] = [];
      for (let i = 0, n = 1 + Math.floor(rnd() * 12); i < n; i++) {
        parts.push(rnd() < 0.7 ? b(fragments[Math.floor(rnd() * fragments.length)]) : Buffer.from([Math.floor(rnd() * 256)]));
      }
      const wire = Buffer.concat(parts);
      const p = new RespParser({ maxBulkLength: 64, maxArrayLength: 8, maxInlineLength: 32, maxRequestBytes: 256 });
      let failed: RespProtocolError | undefined;
      for (let at = 0; at < wire.length; ) {
        const len = 1 + Math.floor(rnd() * 6);
        const r = p.feed(wire.subarray(at, at + len));
        for (const cmd of r.commands) assert.ok(cmd.length >= 1 && cmd.every((a) => a.length <= 64), 'no empty request, no argument over the bulk limit');
        if (failed !== undefined) assert.equal(r.error, failed, 'stays stopped on the same error');
        if (r.error !== undefined) {
          assert.ok(r.error instanceof RespProtocolError && codes.has(r.error.code), String(r.error));
          failed ??= r.error;
        }
        at += len;
      }
      if (failed !== undefined) errors++;
    }
    assert.ok(errors > 100 && errors < 1900, `${errors} of 2000 streams were malformed: both paths exercised`);
  });

  test('a bulk argument inside one chunk is a view of it; one across chunks is gathered', () => {
    const wire = request('SET', 'key', 'a value');
    const at = wire.indexOf('a value');
    const [cmd] = new RespParser().feed(wire).commands;
    assert.equal(cmd[2].buffer, wire.buffer, 'zero-copy view');
    assert.equal(cmd[2].byteOffset, wire.byteOffset + at);
    const cut = at + 3;
    const p2 = new RespParser();
    assert.deepEqual(p2.feed(wire.subarray(0, cut)).commands, []);
    const [cmd2] = p2.feed(wire.subarray(cut)).commands;
    assert.equal(cmd2[2].toString(), 'a value');
    // The view follows the chunk; the gathered copy does not.
    wire.write('A', at, 'latin1');
    assert.equal(cmd[2].toString(), 'A value');
    assert.equal(cmd2[2].toString(), 'a value');
  });

  const ERRORS: [string, string, string, string][] = [
    ['non-numeric count', '*x\r\n', GuestErrorCodes.PROTOCOL_MULTIBULK_LENGTH, 'Protocol error: invalid multibulk length'],
    ['count above the limit', '*1048577\r\n', GuestErrorCodes.PROTOCOL_MULTIBULK_LENGTH, 'Protocol error: invalid multibulk length'],
    ['count with leading zero', '*01\r\n', GuestErrorCodes.PROTOCOL_MULTIBULK_LENGTH, 'Protocol error: invalid multibulk length'],
    ['count without digits', '*\r\n', GuestErrorCodes.PROTOCOL_MULTIBULK_LENGTH, 'Protocol error: invalid multibulk length'],
    ['negative bulk length', '*2\r\n$-5\r\n', GuestErrorCodes.PROTOCOL_BULK_LENGTH, 'Protocol error: invalid bulk length'],
    ['non-numeric bulk length', '*1\r\n$abc\r\n', GuestErrorCodes.PROTOCOL_BULK_LENGTH, 'Protocol error: invalid bulk length'],
    ['bulk length CR without LF', '*1\r\n$3\rx', GuestErrorCodes.PROTOCOL_BULK_LENGTH, 'Protocol error: invalid bulk length'],
    ['huge bulk length', '*1\r\n$999999999999\r\n', GuestErrorCodes.PROTOCOL_BULK_LENGTH, 'Protocol error: invalid bulk length'],
    ['not a bulk', '*1\r\n+OK\r\n', GuestErrorCodes.PROTOCOL_EXPECTED_BULK, "Protocol error: expected '$', got '+'"],
    ['bulk data not followed by CRLF', '*1\r\n$3\r\nabcXY', GuestErrorCodes.PROTOCOL_BULK_CRLF, 'Protocol error: expected CRLF after bulk data'],
    ['unbalanced double quote', 'set k "abc\r\n', GuestErrorCodes.PROTOCOL_UNBALANCED_QUOTES, 'Protocol error: unbalanced quotes in request'],
    ['closing quote glued to the next argument', "set k 'a'b\r\n", GuestErrorCodes.PROTOCOL_UNBALANCED_QUOTES, 'Protocol error: unbalanced quotes in request'],
  ];
  for (const [name, wire, code, message] of ERRORS) {
    test(`protocol error: ${name} -> ${code}`, () => {
      const p = new RespParser();
      const r = p.feed(b(`PING\r\n${wire}`));
      assert.deepEqual(text(r.commands), [['PING']], 'requests before the error are still returned');
      assert.ok(r.error instanceof RespProtocolError);
      assert.equal(r.error.code, code);
      assert.equal(r.error.message, message);
      assert.ok(r.error.offset >= 6 && r.error.offset < 6 + wire.length, `offset ${r.error.offset} inside the bad request`);
      // Stopped for good: even a valid request is not parsed any more.
      const again = p.feed(b('PING\r\n'));
      assert.deepEqual(again.commands, []);
      assert.equal(again.error, r.error);
      assert.equal(p.error, r.error);
    });
  }

  test('an inline request longer than the limit is refused before its newline arrives', () => {
    const p = new RespParser();
    assert.equal(p.feed(Buffer.alloc(60 * 1024, 0x61)).error, undefined);
    const r = p.feed(Buffer.alloc(5 * 1024, 0x61));
    assert.equal(r.error?.code, GuestErrorCodes.PROTOCOL_INLINE_TOO_BIG);
    assert.equal(r.error?.message, 'Protocol error: too big inline request');
    assert.equal(p.bufferedBytes, 0, 'the partial line is dropped');
  });

  test('a huge bulk header is refused at once, from its digits, without waiting for data', () => {
    const p = new RespParser();
    const r = p.feed(b('*1\r\n$999999999'));
    assert.equal(r.error?.code, GuestErrorCodes.PROTOCOL_BULK_LENGTH);
    assert.equal(p.bufferedBytes, 0);
  });

  test('memory held for a bulk grows with the bytes received, not with the length announced', () => {
    const p = new RespParser();
    assert.equal(p.feed(b(`*2\r\n$3\r\nSET\r\n$${64 * 1024 * 1024}\r\n0123456789`)).error, undefined, 'exactly the limit is allowed');
    assert.equal(p.bufferedBytes, 10);
  });

  test('limits are configurable', () => {
    const small = { maxBulkLength: 10, maxArrayLength: 3, maxInlineLength: 16, maxRequestBytes: 40 };
    assert.equal(new RespParser(small).feed(request('a', '0123456789')).error, undefined);
    assert.equal(new RespParser(small).feed(request('a', '0123456789X')).error?.code, GuestErrorCodes.PROTOCOL_BULK_LENGTH);
    assert.equal(new RespParser(small).feed(request('a', 'b', 'c')).error, undefined);
    assert.equal(new RespParser(small).feed(b('*4\r\n')).error?.code, GuestErrorCodes.PROTOCOL_MULTIBULK_LENGTH);
    assert.equal(new RespParser(small).feed(b('0123456789abcde\r\n')).error, undefined);
    assert.equal(new RespParser(small).feed(b('0123456789abcdef\n')).error, undefined);
    assert.equal(new RespParser(small).feed(b('0123456789abcdef\r\n')).error?.code, GuestErrorCodes.PROTOCOL_INLINE_TOO_BIG);
    // Three 10-byte bulks are each within the bulk limit, together over the request limit.
    const r = new RespParser(small).feed(b('*3\r\n$10\r\n0123456789\r\n$10\r\n0123456789\r\n$10\r\n'));
    assert.equal(r.error?.code, GuestErrorCodes.PROTOCOL_REQUEST_TOO_BIG);
    assert.equal(r.error?.message, 'Protocol error: request larger than 40 bytes');
  });

  test('splitInline matches redis-cli style quoting', () => {
    const split = (s: string): string[] | undefined => splitInline(b(s))?.map((a) => a.toString('latin1'));
    assert.deepEqual(split(''), []);
    assert.deepEqual(split('a "b c" \'d e\''), ['a', 'b c', 'd e']);
    assert.deepEqual(split('"\\n\\r\\t\\b\\a\\\\\\q"'), ['\n\r\t\b\x07\\q']);
    assert.deepEqual(split('"\\xff\\x0"'), ['\xffx0']);
    assert.deepEqual(split('ab"cd"'), ['abcd']);
    assert.equal(split('"abc'), undefined);
    assert.equal(split("'abc"), undefined);
    assert.equal(split('"a"b'), undefined);
  });
});

describe('reply serializers', () => {
  const GOLDEN: [string, Buffer, string][] = [
    ['simple string', simpleStringReply('OK'), '+OK\r\n'],
    ['simple string with newlines', simpleStringReply('a\r\nb'), '+a  b\r\n'],
    ['error', errorReply('ERR syntax error'), '-ERR syntax error\r\n'],
    ['error keeps request bytes', errorReply("ERR unknown command '\xff'"), "-ERR unknown command '\xff'\r\n"],
    ['integer 0', integerReply(0), ':0\r\n'],
    ['negative integer', integerReply(-42), ':-42\r\n'],
    ['int64 max', integerReply(2n ** 63n - 1n), ':9223372036854775807\r\n'],
    ['bulk', bulkReply(b('hello')), '$5\r\nhello\r\n'],
    ['bulk from a utf8 string', bulkReply('h\u00e9'), '$3\r\nh\xc3\xa9\r\n'],
    ['empty bulk', bulkReply(b('')), '$0\r\n\r\n'],
    ['null bulk', bulkReply(null), '$-1\r\n'],
    ['null bulk constant', NULL_BULK_REPLY, '$-1\r\n'],
    ['empty array', arrayReply([]), '*0\r\n'],
    ['empty array constant', EMPTY_ARRAY_REPLY, '*0\r\n'],
    ['null array', arrayReply(null), '*-1\r\n'],
    ['null array constant', NULL_ARRAY_REPLY, '*-1\r\n'],
    ['array of mixed replies', arrayReply([integerReply(1), bulkReply(null), arrayReply([simpleStringReply('x')])]), '*3\r\n:1\r\n$-1\r\n*1\r\n+x\r\n'],
    ['bulk array', bulkArrayReply(['a', null, b('bc')]), '*3\r\n$1\r\na\r\n$-1\r\n$2\r\nbc\r\n'],
  ];
  for (const [name, got, wire] of GOLDEN) {
    test(name, () => assert.equal(got.toString('latin1'), wire));
  }

  test('a bulk reply copies its data (a view of guest RAM may change after)', () => {
    const data = b('abc');
    const reply = bulkReply(data);
    data[0] = 0x7a;
    assert.equal(reply.toString(), '$3\r\nabc\r\n');
  });
});
