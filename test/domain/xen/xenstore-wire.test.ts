/**
 * The xenstore wire codec: exact bytes of every request the client sends and
 * of xenstored's replies (fixtures written from xs_wire.h and
 * docs/misc/xenstore.txt, by hand), any chunking, and every way input is refused.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { XenstoreError } from '../../../src/domain/xen/errors.js';
import {
  ABS_PATH_MAX,
  HEADER_SIZE,
  PAYLOAD_MAX,
  XenstoreDecoder,
  XsType,
  checkPath,
  encodeMessage,
  encodeRequest,
  parseReply,
  parseWatchEvent,
  type XsMessage,
} from '../../../src/domain/xen/xenstore-wire.js';

const hex = (...parts: string[]): Buffer => Buffer.from(parts.join(''), 'hex');

const SHUTDOWN_PATH = '/local/domain/5/control/shutdown';
const SHUTDOWN_HEX = '2f6c6f63616c2f646f6d61696e2f352f636f6e74726f6c2f73687574646f776e00'; // the path and its NUL, 33 bytes

/** Requests: [name, encode, expected bytes]. */
const REQUESTS: [string, () => Buffer, Buffer][] = [
  [
    'READ',
    () => encodeRequest({ type: 'READ', path: SHUTDOWN_PATH }, 7),
    hex('02000000', '07000000', '00000000', '21000000', SHUTDOWN_HEX), // type 2, req 7, tx 0, len 33
  ],
  [
    'WRITE in a transaction (the value has no NUL)',
    () => encodeRequest({ type: 'WRITE', path: SHUTDOWN_PATH, value: 'suspend' }, 8, 42),
    hex('0b000000', '08000000', '2a000000', '28000000', SHUTDOWN_HEX, '73757370656e64'), // type 11, tx 42, len 40
  ],
  [
    'WATCH of a special path',
    () => encodeRequest({ type: 'WATCH', path: '@releaseDomain', token: 'tandem-1' }, 9),
    hex('04000000', '09000000', '00000000', '18000000', '4072656c65617365446f6d61696e00', '74616e64656d2d3100'),
  ],
  [
    'UNWATCH',
    () => encodeRequest({ type: 'UNWATCH', path: '@releaseDomain', token: 'tandem-1' }, 10),
    hex('05000000', '0a000000', '00000000', '18000000', '4072656c65617365446f6d61696e00', '74616e64656d2d3100'),
  ],
  ['TRANSACTION_START (an empty string)', () => encodeRequest({ type: 'TRANSACTION_START' }, 11), hex('06000000', '0b000000', '00000000', '01000000', '00')],
  ['TRANSACTION_END commit', () => encodeRequest({ type: 'TRANSACTION_END', commit: true }, 12, 42), hex('07000000', '0c000000', '2a000000', '02000000', '5400')],
  ['TRANSACTION_END abort', () => encodeRequest({ type: 'TRANSACTION_END', commit: false }, 13, 42), hex('07000000', '0d000000', '2a000000', '02000000', '4600')],
  ['RESUME', () => encodeRequest({ type: 'RESUME', domid: 5 }, 14), hex('12000000', '0e000000', '00000000', '02000000', '3500')], // type 18
];

/** Replies as xenstored sends them. */
const READ_REPLY = hex('02000000', '07000000', '00000000', '07000000', '73757370656e64'); // "suspend", no NUL
const ENOENT_REPLY = hex('10000000', '07000000', '00000000', '07000000', '454e4f454e5400'); // ERROR "ENOENT\0"
const WATCH_EVENT = hex('0f000000', '00000000', '00000000', '18000000', '4072656c65617365446f6d61696e00', '74616e64656d2d3100'); // req 0
const OK_REPLY = hex('0b000000', '08000000', '2a000000', '03000000', '4f4b00'); // WRITE "OK\0"
const TX_REPLY = hex('06000000', '0b000000', '00000000', '03000000', '343200'); // "42\0"
const SEQUENCE = Buffer.concat([READ_REPLY, WATCH_EVENT, ENOENT_REPLY, OK_REPLY, TX_REPLY]);

const message = (type: number, payload: Buffer | string, reqId = 1): XsMessage => ({
  type,
  reqId,
  txId: 0,
  payload: typeof payload === 'string' ? Buffer.from(payload, 'latin1') : payload,
  offset: 0,
});

const codeOf = (fn: () => unknown): string => {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof XenstoreError, `expected XenstoreError, got ${String(err)}`);
    return err.code;
  }
  assert.fail('expected a throw');
};

describe('xenstore wire: requests', () => {
  for (const [name, encode, bytes] of REQUESTS) {
    test(`${name} encodes to the fixture bytes`, () => {
      assert.equal(encode().toString('hex'), bytes.toString('hex'));
    });
  }

  test('the type numbers are those of xs_wire.h (an enum from XS_CONTROL = 0; 20 was XS_RESTRICT, removed)', () => {
    assert.deepEqual(
      { READ: XsType.READ, WATCH: XsType.WATCH, UNWATCH: XsType.UNWATCH, TS: XsType.TRANSACTION_START, TE: XsType.TRANSACTION_END, WRITE: XsType.WRITE, EVENT: XsType.WATCH_EVENT, ERROR: XsType.ERROR, RESUME: XsType.RESUME },
      { READ: 2, WATCH: 4, UNWATCH: 5, TS: 6, TE: 7, WRITE: 11, EVENT: 15, ERROR: 16, RESUME: 18 },
    );
    assert.equal(XsType.RESET_WATCHES, 21);
    assert.ok(!(Object.values(XsType) as number[]).includes(20));
  });

  test('a WRITE value may be binary, NULs included; its bytes go out as given', () => {
    const value = Buffer.from([0, 1, 0, 0xff]);
    const out = encodeRequest({ type: 'WRITE', path: '/a', value }, 1);
    assert.equal(out.readUInt32LE(12), 3 + 4);
    assert.deepEqual(out.subarray(HEADER_SIZE + 3), value);
  });

  test('a payload of exactly 4096 bytes is sent; one byte more is refused before anything is sent (xenstored would kill the connection)', () => {
    const path = '/tool/x'; // 7 bytes + NUL
    const fits = Buffer.alloc(PAYLOAD_MAX - 8, 0x61);
    assert.equal(encodeRequest({ type: 'WRITE', path, value: fits }, 1).length, HEADER_SIZE + PAYLOAD_MAX);
    assert.equal(codeOf(() => encodeRequest({ type: 'WRITE', path, value: Buffer.alloc(PAYLOAD_MAX - 7) }, 1)), 'ERR_XENSTORE_TOO_LARGE');
    assert.equal(codeOf(() => encodeMessage(XsType.READ, 1, 0, Buffer.alloc(PAYLOAD_MAX + 1))), 'ERR_XENSTORE_TOO_LARGE');
  });

  test('paths are checked as xenstored checks them', () => {
    for (const ok of ['/', '/local/domain/5/control/shutdown', '/a-b_c@d/0', `/${'a'.repeat(ABS_PATH_MAX - 1)}`]) checkPath(ok);
    checkPath('@releaseDomain', { watch: true });
    checkPath('@releaseDomain/5', { watch: true });
    for (const [bad, why] of [
      ['', 'empty'],
      ['/local/do\0main', 'a NUL inside'],
      [`/${'a'.repeat(ABS_PATH_MAX)}`, 'longer than 3072 bytes'],
      ['local/domain', 'relative'],
      ['/local//domain', 'double slash'],
      ['/local/', 'trailing slash'],
      ['/local/dom ain', 'a space'],
      ['/local/dömain', 'non-ASCII'],
      ['@releaseDomain', 'special path outside a watch'],
    ] as const) {
      assert.equal(codeOf(() => checkPath(bad)), 'ERR_XENSTORE_BAD_REQUEST', why);
      assert.equal(codeOf(() => encodeRequest({ type: 'READ', path: bad }, 1)), 'ERR_XENSTORE_BAD_REQUEST', why);
    }
  });

  test('tokens, domids and transaction ids are checked', () => {
    assert.equal(codeOf(() => encodeRequest({ type: 'WATCH', path: '/a', token: '' }, 1)), 'ERR_XENSTORE_BAD_REQUEST');
    assert.equal(codeOf(() => encodeRequest({ type: 'WATCH', path: '/a', token: 't\0k' }, 1)), 'ERR_XENSTORE_BAD_REQUEST');
    for (const domid of [-1, 0x7ff0, 1.5, NaN]) assert.equal(codeOf(() => encodeRequest({ type: 'RESUME', domid }, 1)), 'ERR_XENSTORE_BAD_REQUEST', String(domid));
    assert.equal(codeOf(() => encodeRequest({ type: 'TRANSACTION_END', commit: true }, 1, 0)), 'ERR_XENSTORE_BAD_REQUEST');
    assert.equal(codeOf(() => encodeRequest({ type: 'TRANSACTION_START' }, 1, 3)), 'ERR_XENSTORE_BAD_REQUEST');
    assert.equal(codeOf(() => encodeRequest({ type: 'WATCH', path: '/a', token: 't' }, 1, 3)), 'ERR_XENSTORE_BAD_REQUEST');
    assert.equal(codeOf(() => encodeRequest({ type: 'READ', path: '/a' }, 1, 2 ** 32)), 'ERR_XENSTORE_BAD_REQUEST');
    assert.equal(codeOf(() => encodeRequest({ type: 'READ', path: '/a' }, -1)), 'ERR_XENSTORE_BAD_REQUEST');
  });
});

describe('xenstore wire: replies', () => {
  const decodeAll = (bytes: Buffer): XsMessage[] => new XenstoreDecoder().push(bytes);

  test('decodes the fixture replies and parses each by the request it answers', () => {
    const [read, event, enoent, ok, tx] = decodeAll(SEQUENCE);
    assert.deepEqual(parseReply('READ', read), { kind: 'value', value: Buffer.from('suspend') });
    assert.equal(read.reqId, 7);
    assert.deepEqual(parseWatchEvent(event), { path: '@releaseDomain', token: 'tandem-1' });
    assert.equal(event.reqId, 0);
    assert.deepEqual(parseReply('READ', enoent), { kind: 'error', errno: 'ENOENT' });
    assert.deepEqual(parseReply('WRITE', ok), { kind: 'ok' });
    assert.equal(ok.txId, 42);
    assert.deepEqual(parseReply('TRANSACTION_START', tx), { kind: 'transaction', txId: 42 });
    assert.deepEqual(
      [read, event, enoent, ok, tx].map((m) => m.offset),
      [0, 23, 63, 86, 105],
    );
  });

  test('decodes the sequence split at every byte offset, and one byte at a time', () => {
    const reference = decodeAll(SEQUENCE);
    for (let at = 0; at <= SEQUENCE.length; at++) {
      const d = new XenstoreDecoder();
      const out = [...d.push(SEQUENCE.subarray(0, at)), ...d.push(SEQUENCE.subarray(at))];
      assert.deepEqual(out, reference, `split at ${at}`);
      assert.equal(d.consumed, SEQUENCE.length);
    }
    const d = new XenstoreDecoder();
    const out: XsMessage[] = [];
    for (let i = 0; i < SEQUENCE.length; i++) out.push(...d.push(SEQUENCE.subarray(i, i + 1)));
    assert.deepEqual(out, reference);
  });

  test('a message with an empty payload and one of exactly 4096 bytes decode', () => {
    const empty = encodeMessage(XsType.READ, 3, 0, Buffer.alloc(0));
    const full = encodeMessage(XsType.READ, 4, 0, Buffer.alloc(PAYLOAD_MAX, 0x5a));
    const [a, b] = decodeAll(Buffer.concat([empty, full]));
    assert.equal(a.payload.length, 0);
    assert.equal(b.payload.length, PAYLOAD_MAX);
  });

  const header = (type: number, len: number): Buffer => {
    const h = Buffer.alloc(HEADER_SIZE);
    h.writeUInt32LE(type, 0);
    h.writeUInt32LE(len, 12);
    return h;
  };

  for (const [name, bytes, code] of [
    ['a length of 4097', header(XsType.READ, PAYLOAD_MAX + 1), 'ERR_XENSTORE_TOO_LARGE'],
    ['a length of 0xffffffff', header(XsType.WATCH_EVENT, 0xffffffff), 'ERR_XENSTORE_TOO_LARGE'],
    ['type 20 (XS_RESTRICT, removed)', header(20, 0), 'ERR_XENSTORE_BAD_MESSAGE'],
    ['type 0xffff (XS_INVALID)', header(0xffff, 0), 'ERR_XENSTORE_BAD_MESSAGE'],
    ['type 2^32-1', header(0xffffffff, 4), 'ERR_XENSTORE_BAD_MESSAGE'],
  ] as const) {
    test(`refuses a header with ${name} (${code}) as soon as its 16 bytes are in, at its offset, and stops for good`, () => {
      const d = new XenstoreDecoder();
      assert.equal(d.push(READ_REPLY).length, 1);
      // Byte by byte: 15 bytes are taken, the 16th throws; no payload is waited for.
      for (let i = 0; i < HEADER_SIZE - 1; i++) assert.deepEqual(d.push(bytes.subarray(i, i + 1)), []);
      let err: unknown;
      try {
        d.push(bytes.subarray(HEADER_SIZE - 1));
      } catch (e) {
        err = e;
      }
      assert.ok(err instanceof XenstoreError);
      assert.equal(err.code, code);
      assert.equal(err.offset, READ_REPLY.length);
      assert.match(err.message, /offset 23/);
      let later: unknown;
      try {
        d.push(READ_REPLY);
      } catch (e) {
        later = e;
      }
      assert.ok(later instanceof XenstoreError);
      assert.equal(later.code, 'ERR_XENSTORE_DECODER_STOPPED');
      assert.equal(later.cause, err);
    });
  }

  test('a caller that passes its own array keeps the messages that came before a bad header in the same chunk', () => {
    const out: XsMessage[] = [];
    assert.equal(codeOf(() => new XenstoreDecoder().push(Buffer.concat([READ_REPLY, WATCH_EVENT, header(XsType.READ, 5000)]), out)), 'ERR_XENSTORE_TOO_LARGE');
    assert.deepEqual(
      out.map((m) => m.type),
      [XsType.READ, XsType.WATCH_EVENT],
    );
  });

  test('payloads of the wrong shape are refused (ERR_XENSTORE_BAD_MESSAGE)', () => {
    const E = XsType.ERROR;
    const cases: [string, () => unknown][] = [
      ['an ERROR without its NUL', () => parseReply('READ', message(E, 'ENOENT'))],
      ['an ERROR that is not an errno name', () => parseReply('READ', message(E, 'enoent\0'))],
      ['an ERROR of two strings', () => parseReply('READ', message(E, 'ENOENT\0EIO\0'))],
      ['an empty ERROR', () => parseReply('READ', message(E, ''))],
      ['a reply of another type', () => parseReply('READ', message(XsType.WRITE, 'OK\0'))],
      ['an ack that is not OK', () => parseReply('WRITE', message(XsType.WRITE, 'KO\0'))],
      ['an OK without its NUL', () => parseReply('RESUME', message(XsType.RESUME, 'OK'))],
      ['a transaction id 0', () => parseReply('TRANSACTION_START', message(XsType.TRANSACTION_START, '0\0'))],
      ['a transaction id beyond u32', () => parseReply('TRANSACTION_START', message(XsType.TRANSACTION_START, '4294967296\0'))],
      ['a transaction id that is not decimal', () => parseReply('TRANSACTION_START', message(XsType.TRANSACTION_START, '0x2a\0'))],
      ['a watch event of one string', () => parseWatchEvent(message(XsType.WATCH_EVENT, '/a\0'))],
      ['a watch event of three strings', () => parseWatchEvent(message(XsType.WATCH_EVENT, '/a\0t\0x\0'))],
      ['a watch event without its last NUL', () => parseWatchEvent(message(XsType.WATCH_EVENT, '/a\0t'))],
      ['a watch event with an empty path', () => parseWatchEvent(message(XsType.WATCH_EVENT, '\0t\0'))],
      ['a watch event that is not one', () => parseWatchEvent(message(XsType.READ, '/a\0t\0'))],
    ];
    for (const [name, fn] of cases) assert.equal(codeOf(fn), 'ERR_XENSTORE_BAD_MESSAGE', name);
    // A daemon newer than 4.17 may add errno names: any E-word is an errno.
    assert.deepEqual(parseReply('READ', message(E, 'E2BIG\0')), { kind: 'error', errno: 'E2BIG' });
    assert.deepEqual(parseReply('READ', message(E, 'EQUOTA\0')), { kind: 'error', errno: 'EQUOTA' });
  });
});
