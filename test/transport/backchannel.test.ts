import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { StreamError } from '../../src/errors.js';
import { AckStatus, BackChannelDecoder, encodeBackRecord, type BackChannelRecord } from '../../src/transport/backchannel.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

describe('back-channel', () => {
  test('golden bytes: an ack of epoch 2^32+5 with a reason', () => {
    const b = encodeBackRecord({ type: 'ACK', epoch: 2 ** 32 + 5, status: AckStatus.OVER_BUFFER_LIMIT, reason: 'big' });
    // type 0x80005401, length 19, epoch lo/hi, status 1, reason length 3, "big", 5 bytes of padding
    assert.equal(b.toString('hex'), '01540080' + '13000000' + '05000000' + '01000000' + '01000000' + '03000000' + '626967' + '0000000000');
  });

  test('golden bytes: CHECKPOINT_STATE and a dirty pfn list, as Xen lays them out', () => {
    assert.deepEqual(encodeBackRecord({ type: 'CHECKPOINT_STATE', controlId: 2 }), hex('05000000 04000000 02000000 00000000'));
    assert.deepEqual(encodeBackRecord({ type: 'CHECKPOINT_DIRTY_PFN_LIST', pfns: Uint32Array.of(1, 0xffffffff) }), hex('0f000000 10000000 0100000000000000 ffffffff00000000'));
  });

  test('records round-trip when split at every byte offset; unknown optional records are skipped', () => {
    const recs: BackChannelRecord[] = [
      { type: 'ACK', epoch: 1, status: AckStatus.APPLIED, reason: '' },
      { type: 'CHECKPOINT_STATE', controlId: 3 },
      { type: 'ACK', epoch: 77, status: AckStatus.STREAM_ERROR, reason: 'libxc PAGE_DATA at offset 9: bad' },
      { type: 'CHECKPOINT_DIRTY_PFN_LIST', pfns: Uint32Array.of(5, 6, 7) },
    ];
    const optional = hex('99000080 03000000 616263 0000000000');
    const bytes = Buffer.concat([encodeBackRecord(recs[0]), optional, ...recs.slice(1).map(encodeBackRecord)]);
    for (let at = 0; at <= bytes.length; at++) {
      const d = new BackChannelDecoder();
      const out = [...d.push(bytes.subarray(0, at)), ...d.push(bytes.subarray(at))];
      assert.deepEqual(out, recs, `split at ${at}`);
    }
  });

  test('bad input is refused with a code, and the decoder stays stopped', () => {
    const cases: [Buffer, string][] = [
      [hex('42000000 00000000'), 'ERR_RECORD_UNKNOWN_MANDATORY'],
      [hex('01540080 ffffffff'), 'ERR_RECORD_TOO_LARGE'],
      [hex('01540080 08000000 0000000000000000'), 'ERR_RECORD_BAD_LENGTH'],
      [hex('01540080 10000000 01000000 00000000 09000000 00000000'), 'ERR_RECORD_BAD_FIELD'],
      [hex('01540080 10000000 01000000 00000000 00000000 05000000'), 'ERR_RECORD_BAD_LENGTH'],
      [hex('05000000 04000000 07000000 00000000'), 'ERR_RECORD_BAD_FIELD'],
      [hex('05000000 04000000 01000000 00000001'), 'ERR_RECORD_BAD_PADDING'],
      [hex('0f000000 08000000 0100000001000000'), 'ERR_RECORD_BAD_FIELD'],
      [hex('0f000000 0c000000 010000000000000002000000 00000000'), 'ERR_RECORD_BAD_LENGTH'],
      [hex('05000000 08000000 02000000 01000000'), 'ERR_RECORD_RESERVED_NONZERO'],
    ];
    for (const [bytes, code] of cases) {
      const d = new BackChannelDecoder();
      assert.throws(() => d.push(bytes), (e: unknown) => e instanceof StreamError && e.code === code && e.offset === 0, code);
      assert.throws(() => d.push(Buffer.alloc(8)), (e: unknown) => e instanceof StreamError && e.code === 'ERR_STREAM_FAILED');
    }
  });

  test('the COLO records parse as the stream parses them: the spec-drawn 8-byte CHECKPOINT_STATE, errors naming the back-channel record', () => {
    assert.deepEqual(new BackChannelDecoder().push(hex('05000000 08000000 02000000 00000000')), [{ type: 'CHECKPOINT_STATE', controlId: 2 }]);
    assert.throws(
      () => new BackChannelDecoder().push(hex('0f000000 10000000 0100000000000000 0200000000000001')),
      (e: unknown) => e instanceof StreamError && e.record === 'back-channel CHECKPOINT_DIRTY_PFN_LIST' && /pfn\[1\] beyond 2\^32 pages/.test(e.message),
    );
  });
});
