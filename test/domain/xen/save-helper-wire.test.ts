/**
 * libxl-save-helper's callback protocol: exact bytes of every message type
 * (fixtures written by hand from libxl_save_msgs_gen.pl's table and the
 * helper's framing), the replies, the command line, any chunking, and every
 * way a message is refused.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { SaveHelperError } from '../../../src/domain/xen/errors.js';
import {
  CbFlags,
  MESSAGE_TYPES,
  MessageType,
  SaveHelperDecoder,
  StreamType,
  XcFlags,
  callbackBit,
  decodeBody,
  encodeMessage,
  encodeReply,
  restoreDomainArgs,
  saveDomainArgs,
  type HelperMessage,
} from '../../../src/domain/xen/save-helper-wire.js';

const hex = (...parts: string[]): Buffer => Buffer.from(parts.join(''), 'hex');

/** [message, its bytes as the helper writes them: u16le body length, u16le type, arguments]. */
const FIXTURES: [HelperMessage, Buffer][] = [
  [
    { type: 'log', level: 8, errno: -1, context: 'xc', text: 'Save failed (0 = Success)' },
    hex('2f00', '0100', '08000000', 'ffffffff', '03000000', '786300', '1a000000', '53617665206661696c6564202830203d20537563636573732900'),
  ],
  [
    { type: 'progress', context: 'xc', doingWhat: 'Memory', done: 16n, total: 0x8000n },
    hex('2400', '0200', '03000000', '786300', '07000000', '4d656d6f727900', '1000000000000000', '0080000000000000'),
  ],
  [{ type: 'suspend' }, hex('0200', '0300')],
  [{ type: 'postcopy' }, hex('0200', '0400')],
  [{ type: 'checkpoint' }, hex('0200', '0500')],
  [{ type: 'wait_checkpoint' }, hex('0200', '0600')],
  [{ type: 'switch_qemu_logdirty', domid: 5, enable: 1 }, hex('0a00', '0700', '05000000', '01000000')],
  [{ type: 'static_data_done', missing: 3 }, hex('0600', '0800', '03000000')],
  [{ type: 'restore_results', storeGfn: 0xfeffcn, consoleGfn: 0xfeffbn }, hex('1200', '0900', 'fcef0f0000000000', 'fbef0f0000000000')],
  [{ type: 'complete', retval: -1, errno: 5 }, hex('0a00', '0a00', 'ffffffff', '05000000')],
  [{ type: 'complete', retval: 0, errno: 0 }, hex('0a00', '0a00', '00000000', '00000000')],
];

const ALL = Buffer.concat(FIXTURES.map(([, b]) => b));
/** The message without its offset, to compare with a fixture. */
const strip = (m: HelperMessage): HelperMessage => {
  const rest = { ...m };
  delete rest.offset;
  return rest;
};

function thrown(fn: () => unknown): SaveHelperError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof SaveHelperError, `expected SaveHelperError, got ${String(err)}`);
    return err;
  }
  assert.fail('expected a throw');
}

describe('save helper wire: messages', () => {
  test('the type numbers and their order are those of libxl_save_msgs_gen.pl (4.14 to 4.22)', () => {
    assert.deepEqual(
      Object.entries(MESSAGE_TYPES).map(([code, t]) => `${code}:${t.name}`),
      ['1:log', '2:progress', '3:suspend', '4:postcopy', '5:checkpoint', '6:wait_checkpoint', '7:switch_qemu_logdirty', '8:static_data_done', '9:restore_results', '10:complete'],
    );
    assert.equal(MessageType.COMPLETE, 10);
    const replies = Object.entries(MESSAGE_TYPES)
      .filter(([, t]) => t.reply)
      .map(([c]) => Number(c));
    assert.deepEqual(replies, [3, 4, 5, 6, 7, 8, 10]);
  });

  for (const [msg, bytes] of FIXTURES) {
    test(`${msg.type}${msg.type === 'complete' ? ` ${msg.retval}` : ''} encodes to the fixture bytes and decodes back`, () => {
      assert.equal(encodeMessage(msg).toString('hex'), bytes.toString('hex'));
      const out = new SaveHelperDecoder().push(bytes);
      assert.equal(out.length, 1);
      assert.deepEqual(strip(out[0]), msg);
      assert.equal(out[0].offset, 0);
    });
  }

  test('decodes all fixtures back to back, split at every byte offset and one byte at a time', () => {
    const want = FIXTURES.map(([m]) => m);
    for (let at = 0; at <= ALL.length; at++) {
      const d = new SaveHelperDecoder();
      const out = [...d.push(ALL.subarray(0, at)), ...d.push(ALL.subarray(at))];
      assert.deepEqual(out.map(strip), want, `split at ${at}`);
      assert.equal(d.consumed, ALL.length);
      assert.ok(d.idle);
    }
    const d = new SaveHelperDecoder();
    const out: HelperMessage[] = [];
    for (let i = 0; i < ALL.length; i++) out.push(...d.push(ALL.subarray(i, i + 1)));
    assert.deepEqual(out.map(strip), want);
    let at = 0;
    for (const [i, [, bytes]] of FIXTURES.entries()) {
      assert.equal(out[i].offset, at);
      at += bytes.length;
    }
  });

  test('log errno: the helper sends int -1 as u32 0xffffffff; any other value is the errno', () => {
    const m = decodeBody(hex('0100', '08000000', '05000000', '01000000', '00', '01000000', '00'));
    assert.deepEqual(strip(m), { type: 'log', level: 8, errno: 5, context: '', text: '' });
  });

  test('u64 fields keep all 64 bits (xen_pfn_t, unsigned long)', () => {
    const m = decodeBody(hex('0900', 'ffffffffffffffff', '0000000000000080'));
    assert.deepEqual(strip(m), { type: 'restore_results', storeGfn: 2n ** 64n - 1n, consoleGfn: 2n ** 63n });
  });

  test('a body of 65535 bytes (the u16 maximum) decodes', () => {
    const text = 'x'.repeat(0xffff - 2 - 4 - 4 - 4 - 1 - 4 - 1);
    const bytes = encodeMessage({ type: 'log', level: 1, errno: -1, context: '', text });
    assert.equal(bytes.readUInt16LE(0), 0xffff);
    const [m] = new SaveHelperDecoder().push(bytes);
    assert.equal(m.type === 'log' && m.text.length, text.length);
    assert.equal(thrown(() => encodeMessage({ type: 'log', level: 1, errno: -1, context: 'y', text })).code, 'ERR_SAVE_HELPER_BAD_OPTIONS');
  });

  const len = (n: number): string => {
    const b = Buffer.alloc(2);
    b.writeUInt16LE(n, 0);
    return b.toString('hex');
  };
  const u32 = (n: number): string => {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(n, 0);
    return b.toString('hex');
  };
  const logBody = (ctxLen: string, ctx: string, textLen: string, text: string): string => `0100${'08000000'}${'ffffffff'}${ctxLen}${ctx}${textLen}${text}`;
  const framed = (body: string): Buffer => hex(len(body.length / 2), body);

  for (const [name, bytes, code] of [
    ['a body length of 0', hex('0000'), 'ERR_SAVE_HELPER_BAD_MESSAGE'],
    ['a body length of 1', hex('0100', '03'), 'ERR_SAVE_HELPER_BAD_MESSAGE'],
    ['type 0', hex('0200', '0000'), 'ERR_SAVE_HELPER_UNKNOWN_TYPE'],
    ['type 11', hex('0200', '0b00'), 'ERR_SAVE_HELPER_UNKNOWN_TYPE'],
    ['type 0xffff announcing 64 KiB', hex('ffff', 'ffff'), 'ERR_SAVE_HELPER_UNKNOWN_TYPE'],
    ['suspend with an argument', hex('0600', '0300', '00000000'), 'ERR_SAVE_HELPER_BAD_MESSAGE'],
    ['complete one byte short', hex('0900', '0a00', '00000000', '000000'), 'ERR_SAVE_HELPER_BAD_MESSAGE'],
    ['switch_qemu_logdirty announcing 64 KiB', hex('ffff', '0700'), 'ERR_SAVE_HELPER_BAD_MESSAGE'],
    ['a string length beyond the body', framed(logBody('ffffffff', '', '01000000', '00')), 'ERR_SAVE_HELPER_BAD_MESSAGE'],
    ['a string length one beyond the body', framed(logBody('03000000', '786300', '02000000', '00')), 'ERR_SAVE_HELPER_BAD_MESSAGE'],
    ['a string of length 0 (not even its NUL)', framed(logBody('00000000', '', '01000000', '00')), 'ERR_SAVE_HELPER_BAD_MESSAGE'],
    ['a string without its NUL', framed(logBody('02000000', '7863', '01000000', '00')), 'ERR_SAVE_HELPER_BAD_MESSAGE'],
    ['a string with a NUL inside', framed(logBody('03000000', '780000', '01000000', '00')), 'ERR_SAVE_HELPER_BAD_MESSAGE'],
    ['a log cut inside its last string length', framed('0100' + '08000000' + 'ffffffff' + '01000000' + '00' + '0100'), 'ERR_SAVE_HELPER_BAD_MESSAGE'],
    ['bytes after the last argument', framed(logBody('01000000', '00', '01000000', '00') + 'aa'), 'ERR_SAVE_HELPER_BAD_MESSAGE'],
    ['progress missing its total', framed('0200' + u32(1) + '00' + u32(1) + '00' + '0100000000000000'), 'ERR_SAVE_HELPER_BAD_MESSAGE'],
  ] as const) {
    test(`refuses ${name} (${code}) at its offset, and stops for good`, () => {
      const d = new SaveHelperDecoder();
      const good = FIXTURES[2][1];
      assert.equal(d.push(good).length, 1);
      const err = thrown(() => d.push(bytes));
      assert.equal(err.code, code, err.message);
      assert.equal(err.offset, good.length);
      const later = thrown(() => d.push(good));
      assert.equal(later.code, 'ERR_SAVE_HELPER_DECODER_STOPPED');
      assert.equal(later.cause, err);
    });
  }

  test('a caller that passes its own array keeps the messages that came before a bad one in the same chunk', () => {
    const out: HelperMessage[] = [];
    const err = thrown(() => new SaveHelperDecoder().push(Buffer.concat([FIXTURES[0][1], FIXTURES[2][1], hex('0200', '0b00')]), out));
    assert.equal(err.code, 'ERR_SAVE_HELPER_UNKNOWN_TYPE');
    assert.deepEqual(out.map((m) => m.type), ['log', 'suspend']);
  });

  test('an unknown type, or a fixed-size message of the wrong length, is refused once its type is in, before the body is waited for', () => {
    for (const head of [hex('ffff', '0b00'), hex('ffff', '0a00'), hex('0400', '0300')]) {
      const d = new SaveHelperDecoder();
      assert.deepEqual(d.push(head.subarray(0, 3)), []);
      const err = thrown(() => d.push(head.subarray(3)));
      assert.ok(['ERR_SAVE_HELPER_UNKNOWN_TYPE', 'ERR_SAVE_HELPER_BAD_MESSAGE'].includes(err.code));
      assert.ok(d.consumed <= 4);
    }
  });
});

describe('save helper wire: replies and the command line', () => {
  test('a reply is one native int, little-endian', () => {
    assert.equal(encodeReply(1).toString('hex'), '01000000');
    assert.equal(encodeReply(0).toString('hex'), '00000000');
    assert.equal(encodeReply(-1).toString('hex'), 'ffffffff');
    assert.equal(encodeReply(2).toString('hex'), '02000000');
    for (const bad of [2 ** 31, -(2 ** 31) - 1, 0.5]) assert.equal(thrown(() => encodeReply(bad)).code, 'ERR_SAVE_HELPER_BAD_OPTIONS');
  });

  test('CBFLAGS are 1 << type of each enabled callback: libxl passes 0x88, 0xb8, 0x300 and 0x320', () => {
    assert.equal(callbackBit('suspend'), 0x8);
    assert.equal(callbackBit('restore_results'), 0x200);
    assert.deepEqual(CbFlags, { PLAIN_SAVE: 0x88, REMUS_SAVE: 0xb8, RESTORE: 0x300, REMUS_RESTORE: 0x320 });
    assert.deepEqual(StreamType, { PLAIN: 0, REMUS: 1, COLO: 2 });
    assert.deepEqual(XcFlags, { LIVE: 1, DEBUG: 2 });
  });

  test('--save-domain: every number in decimal (the helper parses with strtoul base 10)', () => {
    assert.deepEqual(saveDomainArgs({ ioFd: 3, domid: 5, xcFlags: XcFlags.LIVE, cbFlags: CbFlags.REMUS_SAVE, streamType: StreamType.REMUS }), ['--save-domain', '3', '-1', '5', '1', '184', '1']);
    assert.deepEqual(saveDomainArgs({ ioFd: 4, recvFd: 5, domid: 12, xcFlags: 0, cbFlags: CbFlags.PLAIN_SAVE, streamType: StreamType.PLAIN }), ['--save-domain', '4', '5', '12', '0', '136', '0']);
  });

  test('--restore-domain: the nine arguments in libxl order', () => {
    assert.deepEqual(
      restoreDomainArgs({ ioFd: 3, domid: 7, storeEvtchn: 1, storeDomid: 0, consoleEvtchn: 2, consoleDomid: 0, cbFlags: CbFlags.RESTORE, streamType: StreamType.PLAIN }),
      ['--restore-domain', '3', '-1', '7', '1', '0', '2', '0', '768', '0'],
    );
    assert.deepEqual(
      restoreDomainArgs({ ioFd: 3, sendBackFd: -1, domid: 7, storeEvtchn: 1, storeDomid: 0, consoleEvtchn: 2, consoleDomid: 0, cbFlags: CbFlags.REMUS_RESTORE, streamType: StreamType.REMUS }).slice(-2),
      ['800', '1'],
    );
  });

  test('arguments the helper (or libxc) cannot take are refused before it is run', () => {
    const save = { ioFd: 3, domid: 5, xcFlags: 1, cbFlags: CbFlags.REMUS_SAVE, streamType: StreamType.REMUS } as const;
    const cases: [string, () => unknown][] = [
      ['io fd 1 (the protocol channel)', () => saveDomainArgs({ ...save, ioFd: 1 })],
      ['recv fd equal to io fd', () => saveDomainArgs({ ...save, recvFd: 3 })],
      ['domid 0', () => saveDomainArgs({ ...save, domid: 0 })],
      ['domid 0x7ff0', () => saveDomainArgs({ ...save, domid: 0x7ff0 })],
      ['xcflags 4', () => saveDomainArgs({ ...save, xcFlags: 4 })],
      ['a restore-only callback', () => saveDomainArgs({ ...save, cbFlags: CbFlags.REMUS_SAVE | callbackBit('static_data_done') })],
      ['Remus without checkpoint', () => saveDomainArgs({ ...save, cbFlags: CbFlags.PLAIN_SAVE })],
      ['a save without switch_qemu_logdirty', () => saveDomainArgs({ ...save, streamType: StreamType.PLAIN, cbFlags: callbackBit('suspend') })],
      ['COLO without wait_checkpoint', () => saveDomainArgs({ ...save, streamType: StreamType.COLO })],
      ['stream type 3', () => saveDomainArgs({ ...save, streamType: 3 as 0 })],
      ['a Remus restore without checkpoint', () => restoreDomainArgs({ ioFd: 3, domid: 7, storeEvtchn: 1, storeDomid: 0, consoleEvtchn: 2, consoleDomid: 0, cbFlags: CbFlags.RESTORE, streamType: StreamType.REMUS })],
      ['a save-only callback on restore', () => restoreDomainArgs({ ioFd: 3, domid: 7, storeEvtchn: 1, storeDomid: 0, consoleEvtchn: 2, consoleDomid: 0, cbFlags: CbFlags.RESTORE | 0x80, streamType: StreamType.PLAIN })],
      ['a negative event channel', () => restoreDomainArgs({ ioFd: 3, domid: 7, storeEvtchn: -1, storeDomid: 0, consoleEvtchn: 2, consoleDomid: 0, cbFlags: CbFlags.RESTORE, streamType: StreamType.PLAIN })],
    ];
    for (const [name, fn] of cases) assert.equal(thrown(fn).code, 'ERR_SAVE_HELPER_BAD_OPTIONS', name);
  });
});
