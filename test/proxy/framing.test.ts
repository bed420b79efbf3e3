import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ErrorCodes } from '../../src/errors.js';
import { ProxyError } from '../../proxy/errors.js';
import { FrameDecoder, MAX_RECORD_BYTES, encodeFrame, ownFrame, type Frame } from '../../proxy/framing.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

/** Feeds `bytes` cut at `cuts` (byte offsets) and returns every record. */
function feed(dec: FrameDecoder, bytes: Buffer, cuts: number[]): Frame[] {
  const out: Frame[] = [];
  let at = 0;
  for (const c of [...cuts, bytes.length]) {
    dec.push(bytes.subarray(at, c), out);
    at = c;
  }
  return out;
}

const isProxyError = (code: string, offset?: number) => (err: unknown): boolean => {
  assert.ok(err instanceof ProxyError, String(err));
  assert.equal(err.code, code);
  if (offset !== undefined) assert.equal(err.offset, offset);
  return true;
};

describe('FrameDecoder', () => {
  // Two records: 3 bytes "abc", then 1 byte 0xff.
  const two = hex('00000003 616263  00000001 ff');

  test('decodes records however the input is cut', () => {
    for (const cuts of [[], [1], [2, 3], [4], [5, 6], [7, 8, 9, 10], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]]) {
      const frames = feed(new FrameDecoder(), two, cuts);
      assert.deepEqual(
        frames.map((f) => [f.data.toString('hex'), f.vnetHdrLen]),
        [
          ['616263', 0],
          ['ff', 0],
        ],
        `cuts ${cuts.join(',')}`,
      );
    }
  });

  test('vnet header support: a second length field, counted inside the first', () => {
    const rec = hex('00000005 00000002 aabb 010203');
    for (const cuts of [[], [3], [4, 6], [7], [8, 9]]) {
      const dec = new FrameDecoder({ vnetHdr: true });
      const [f] = feed(dec, rec, cuts);
      assert.equal(f.vnetHdrLen, 2);
      assert.equal(f.data.toString('hex'), 'aabb010203');
      assert.ok(dec.idle);
    }
  });

  test('each record is its own copy: later input cannot change it', () => {
    const input = Buffer.from(hex('00000002 1122'));
    const [f] = new FrameDecoder().push(input);
    input.fill(0);
    assert.equal(f.data.toString('hex'), '1122');
  });

  test('with views, a body whole in one chunk is a view of it; one split across chunks is assembled; same bytes however cut', () => {
    const recs = Buffer.concat([hex('00000003 616263'), encodeFrame(Buffer.alloc(3000, 7)), hex('00000001 ff')]);
    const bodies = [
      [4, 7],
      [11, 3011],
      [3015, 3016],
    ];
    const want = new FrameDecoder().push(recs).map((x) => x.data.toString('hex'));
    for (const cuts of [[], [5], [2, 8, 1000], [3013], [recs.length - 1]]) {
      // Each piece in memory of its own (not Node's pool), as socket chunks are.
      const bounds = [0, ...cuts, recs.length];
      const pieces = bounds.slice(1).map((end, k) => {
        const bytes = Buffer.allocUnsafeSlow(end - bounds[k]);
        recs.copy(bytes, 0, bounds[k], end);
        return { start: bounds[k], end, bytes };
      });
      const dec = new FrameDecoder({ views: true });
      const frames: Frame[] = [];
      for (const p of pieces) dec.push(p.bytes, frames);
      assert.deepEqual(frames.map((x) => x.data.toString('hex')), want, `cuts ${cuts.join(',')}`);
      frames.forEach((fr, k) => {
        const [bs, be] = bodies[k];
        const home = pieces.find((p) => bs >= p.start && bs < p.end)!;
        if (be <= home.end) assert.equal(fr.data.buffer, home.bytes.buffer, `record ${k}, cuts ${cuts.join(',')}: a view of its chunk`);
        else assert.ok(pieces.every((p) => p.bytes.buffer !== fr.data.buffer), `record ${k}, cuts ${cuts.join(',')}: assembled in memory of its own`);
      });
    }
  });

  test('ownFrame copies a view of a large buffer and leaves small buffers alone', () => {
    const chunk = Buffer.alloc(64 * 1024, 1);
    const view: Frame = { data: chunk.subarray(100, 200), vnetHdrLen: 0 };
    const owned = ownFrame(view);
    assert.notEqual(owned.data.buffer, chunk.buffer);
    assert.deepEqual(owned.data, view.data);
    chunk.fill(2);
    assert.equal(owned.data[0], 1, 'no longer tied to the chunk');
    const own: Frame = { data: Buffer.alloc(1500), vnetHdrLen: 0 };
    assert.equal(ownFrame(own), own, 'a buffer of its own stays as it is');
    const pooled: Frame = { data: Buffer.from('small'), vnetHdrLen: 0 };
    assert.equal(ownFrame(pooled), pooled, "a slice of Node's 8 KiB pool is not worth a copy");
    const most: Frame = { data: chunk.subarray(0, 40_000), vnetHdrLen: 0 };
    assert.equal(ownFrame(most), most, 'a view of most of its buffer keeps little else alive');
  });

  test('a zero length is refused, with the record offset', () => {
    const dec = new FrameDecoder();
    const out: Frame[] = [];
    assert.throws(() => dec.push(hex('00000001 aa 00000000'), out), isProxyError(ErrorCodes.PROXY_FRAME_BAD_LENGTH, 5));
    assert.equal(out.length, 1, 'the good record before the bad one is kept');
  });

  test('a length over 69,632 bytes is refused before anything is buffered', () => {
    const dec = new FrameDecoder();
    assert.throws(() => dec.push(hex('00011001')), isProxyError(ErrorCodes.PROXY_FRAME_TOO_LARGE, 0));
    assert.equal(MAX_RECORD_BYTES, 0x11000);
    // Exactly the maximum is fine.
    const ok = new FrameDecoder();
    const big = Buffer.alloc(4 + MAX_RECORD_BYTES);
    big.writeUInt32BE(MAX_RECORD_BYTES, 0);
    assert.equal(ok.push(big).length, 1);
  });

  test('a huge length (0xffffffff) is refused at once', () => {
    assert.throws(() => new FrameDecoder().push(hex('ffffffff')), isProxyError(ErrorCodes.PROXY_FRAME_TOO_LARGE));
  });

  test('a vnet header longer than the record is refused', () => {
    const dec = new FrameDecoder({ vnetHdr: true });
    assert.throws(() => dec.push(hex('00000002 00000003')), isProxyError(ErrorCodes.PROXY_FRAME_BAD_LENGTH, 0));
  });

  test('stops for good after an error', () => {
    const dec = new FrameDecoder();
    assert.throws(() => dec.push(hex('00000000')));
    assert.throws(
      () => dec.push(hex('00000001 aa')),
      (err: unknown) => {
        assert.ok(err instanceof ProxyError);
        assert.equal(err.code, ErrorCodes.PROXY_DECODER_STOPPED);
        assert.ok(err.cause instanceof ProxyError);
        return true;
      },
    );
  });

  test('end() inside a record is a truncation; between records it is fine', () => {
    const dec = new FrameDecoder();
    dec.push(hex('00000003 61'));
    assert.throws(() => dec.end(), isProxyError(ErrorCodes.PROXY_FRAME_TRUNCATED, 0));
    const ok = new FrameDecoder();
    ok.push(hex('00000001 61'));
    ok.end();
  });

  test('a configured smaller limit applies', () => {
    const dec = new FrameDecoder({ maxRecordBytes: 2 });
    assert.throws(() => dec.push(hex('00000003')), isProxyError(ErrorCodes.PROXY_FRAME_TOO_LARGE));
  });
});

describe('encodeFrame', () => {
  test('writes the length (and the vnet length) big-endian', () => {
    assert.equal(encodeFrame(hex('616263')).toString('hex'), '00000003616263');
    assert.equal(encodeFrame(hex('aabb010203'), 2, true).toString('hex'), '0000000500000002aabb010203');
  });

  test('round-trips through the decoder', () => {
    const data = Buffer.from('frame bytes');
    const [f] = new FrameDecoder({ vnetHdr: true }).push(encodeFrame(data, 4, true));
    assert.deepEqual(f, { data, vnetHdrLen: 4 });
  });

  test('refuses what the decoder would refuse', () => {
    assert.throws(() => encodeFrame(Buffer.alloc(0)), isProxyError(ErrorCodes.PROXY_FRAME_BAD_LENGTH));
    assert.throws(() => encodeFrame(Buffer.alloc(MAX_RECORD_BYTES + 1)), isProxyError(ErrorCodes.PROXY_FRAME_BAD_LENGTH));
    assert.throws(() => encodeFrame(Buffer.alloc(4), 5, true), isProxyError(ErrorCodes.PROXY_FRAME_BAD_LENGTH));
    assert.throws(() => encodeFrame(Buffer.alloc(4), 2, false), isProxyError(ErrorCodes.PROXY_FRAME_BAD_LENGTH));
  });
});
