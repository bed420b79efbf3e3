/** Heartbeat frames: exact bytes, any chunking, and every way a frame is refused. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { FRAME_SIZE, HeartbeatDecoder, decodeFrame, encodeHeartbeat, type Heartbeat } from '../../src/heartbeat/codec.js';
import { HeartbeatError } from '../../src/heartbeat/errors.js';

const HB: Heartbeat = { role: 'secondary', incarnation: 0xdeadbeef, generation: 2 ** 40 + 3, sequence: 7, epoch: 2 ** 53 - 1, sentAtUs: 123456789 };

const GOLDEN = Buffer.from(
  [
    '54444842', // magic TDHB
    '01', // version
    '01', // HEARTBEAT
    '02', // secondary
    '00', // intent: running
    'efbeadde', // incarnation LE
    '00', // flags
    '000000', // reserved
    '0300000000010000', // generation 2^40 + 3
    '0700000000000000', // sequence
    'ffffffffffff1f00', // epoch 2^53 - 1
    '15cd5b0700000000', // 123456789 µs
  ].join(''),
  'hex',
);

const codeOf = (fn: () => unknown): string => {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof HeartbeatError, `expected HeartbeatError, got ${String(err)}`);
    return err.code;
  }
  assert.fail('expected a throw');
};

describe('heartbeat codec', () => {
  test('encodes the golden bytes and decodes them back', () => {
    assert.equal(GOLDEN.length, FRAME_SIZE);
    assert.deepEqual(encodeHeartbeat(HB), GOLDEN);
    assert.deepEqual(decodeFrame(GOLDEN), HB);
    const primary = encodeHeartbeat({ ...HB, role: 'primary' });
    assert.equal(primary[6], 1);
    assert.equal(decodeFrame(primary).role, 'primary');
  });

  test('an orderly stop says what the peer should do in octet 7: stand down (1) or hand over (2)', () => {
    for (const [intent, code] of [['stand-down', 1], ['hand-over', 2]] as const) {
      const bytes = encodeHeartbeat({ ...HB, intent });
      assert.equal(bytes[7], code);
      assert.deepEqual(bytes.subarray(8), GOLDEN.subarray(8));
      assert.deepEqual(decodeFrame(bytes), { ...HB, intent });
    }
    assert.equal(encodeHeartbeat({ ...HB, intent: 'running' })[7], 0);
  });

  test('a stranded primary sets bit 0 of octet 12; nothing else changes', () => {
    const primary: Heartbeat = { ...HB, role: 'primary' };
    const bytes = encodeHeartbeat({ ...primary, stranded: true });
    assert.equal(bytes[12], 1);
    const plain = encodeHeartbeat(primary);
    assert.deepEqual(Buffer.concat([bytes.subarray(0, 12), bytes.subarray(13)]), Buffer.concat([plain.subarray(0, 12), plain.subarray(13)]));
    assert.deepEqual(decodeFrame(bytes), { ...primary, stranded: true });
    // Not stranded is the absent field, as the intent's running is.
    assert.deepEqual(decodeFrame(encodeHeartbeat({ ...primary, stranded: false })), primary);
    assert.equal(codeOf(() => encodeHeartbeat({ ...HB, stranded: true })), 'ERR_HEARTBEAT_BAD_FIELD');
  });

  test('decodes three frames split at every pair of offsets', () => {
    const frames = [HB, { ...HB, sequence: 8, role: 'primary' as const }, { ...HB, sequence: 9, epoch: 0 }];
    const bytes = Buffer.concat(frames.map(encodeHeartbeat));
    for (let a = 0; a <= bytes.length; a++) {
      for (let b = a; b <= bytes.length; b += 5) {
        const d = new HeartbeatDecoder();
        const out = [...d.push(bytes.subarray(0, a)), ...d.push(bytes.subarray(a, b)), ...d.push(bytes.subarray(b))];
        assert.deepEqual(out, frames, `split at ${a}/${b}`);
        assert.equal(d.consumed, bytes.length);
      }
    }
  });

  test('one byte at a time holds at most one partial frame and yields each frame on its last byte', () => {
    const bytes = Buffer.concat([encodeHeartbeat(HB), encodeHeartbeat({ ...HB, sequence: 8 })]);
    const d = new HeartbeatDecoder();
    const yielded: number[] = [];
    for (let i = 0; i < bytes.length; i++) if (d.push(bytes.subarray(i, i + 1)).length > 0) yielded.push(i);
    assert.deepEqual(yielded, [FRAME_SIZE - 1, 2 * FRAME_SIZE - 1]);
  });

  const corrupt = (at: number, value: number): Buffer => {
    const b = Buffer.from(GOLDEN);
    b[at] = value;
    return b;
  };

  for (const [name, bytes, code] of [
    ['bad magic', corrupt(0, 0x55), 'ERR_HEARTBEAT_BAD_MAGIC'],
    ['bad version', corrupt(4, 2), 'ERR_HEARTBEAT_BAD_VERSION'],
    ['bad type', corrupt(5, 9), 'ERR_HEARTBEAT_BAD_TYPE'],
    ['bad role', corrupt(6, 3), 'ERR_HEARTBEAT_BAD_ROLE'],
    ['an unknown intent', corrupt(7, 3), 'ERR_HEARTBEAT_BAD_FIELD'],
    ['reserved octet 13', corrupt(13, 1), 'ERR_HEARTBEAT_RESERVED_NONZERO'],
    ['reserved octet 15', corrupt(15, 0x80), 'ERR_HEARTBEAT_RESERVED_NONZERO'],
    ['an unknown flag', corrupt(12, 2), 'ERR_HEARTBEAT_BAD_FIELD'],
    ['the stranded flag from a secondary', corrupt(12, 1), 'ERR_HEARTBEAT_BAD_FIELD'],
    ['zero incarnation', Buffer.concat([GOLDEN.subarray(0, 8), Buffer.alloc(4), GOLDEN.subarray(12)]), 'ERR_HEARTBEAT_BAD_FIELD'],
    ['generation beyond 2^53', corrupt(23, 0x01), 'ERR_HEARTBEAT_BAD_FIELD'],
    ['epoch beyond 2^53', corrupt(38, 0x20), 'ERR_HEARTBEAT_BAD_FIELD'],
  ] as const) {
    test(`refuses a frame with ${name} (${code}), at its offset, and stops for good`, () => {
      const d = new HeartbeatDecoder();
      assert.equal(d.push(GOLDEN).length, 1);
      let err: unknown;
      try {
        d.push(bytes);
      } catch (e) {
        err = e;
      }
      assert.ok(err instanceof HeartbeatError);
      assert.equal(err.code, code);
      assert.equal(err.offset, FRAME_SIZE);
      assert.match(err.message, /offset 48/);
      // Even a perfect frame is refused afterwards: the stream is out of step.
      assert.equal(codeOf(() => d.push(GOLDEN)), 'ERR_HEARTBEAT_DECODER_STOPPED');
    });
  }

  test('the encoder refuses values it cannot carry exactly', () => {
    assert.equal(codeOf(() => encodeHeartbeat({ ...HB, generation: 2 ** 53 })), 'ERR_HEARTBEAT_BAD_FIELD');
    assert.equal(codeOf(() => encodeHeartbeat({ ...HB, sequence: -1 })), 'ERR_HEARTBEAT_BAD_FIELD');
    assert.equal(codeOf(() => encodeHeartbeat({ ...HB, epoch: 1.5 })), 'ERR_HEARTBEAT_BAD_FIELD');
    assert.equal(codeOf(() => encodeHeartbeat({ ...HB, incarnation: 0 })), 'ERR_HEARTBEAT_BAD_FIELD');
    assert.equal(codeOf(() => encodeHeartbeat({ ...HB, incarnation: 2 ** 32 })), 'ERR_HEARTBEAT_BAD_FIELD');
  });

  test('decodeFrame refuses a frame of the wrong size', () => {
    assert.equal(codeOf(() => decodeFrame(GOLDEN.subarray(1))), 'ERR_HEARTBEAT_BAD_FIELD');
  });
});
