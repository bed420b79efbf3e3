/** The opening of a replication stream: TANDEM_PRIMARY read before anything else, at any split. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ErrorCodes, StreamError } from '../../src/errors.js';
import { PRELUDE_MAX_BYTES, PreludeReader } from '../../src/secondary/prelude.js';
import { recordHeader, recordStream } from './fixtures.js';

const PAGES = 32;

function refusal(bytes: Buffer): StreamError {
  const reader = new PreludeReader();
  try {
    for (let i = 0; i < bytes.length; i++) {
      const r = reader.push(bytes.subarray(i, i + 1));
      if (r.done) assert.fail(`accepted as generation ${r.generation}`);
    }
  } catch (err) {
    assert.ok(err instanceof StreamError, String(err));
    return err;
  }
  return assert.fail('neither accepted nor refused');
}

describe('PreludeReader', () => {
  const stream = recordStream({ pages: PAGES, epochs: 1, seed: 3, generation: 7 });

  test('names the generation once its 40 bytes are in, at every split, and hands back every byte read', () => {
    for (let split = 1; split < 200; split++) {
      const reader = new PreludeReader();
      let result: ReturnType<PreludeReader['push']> = { done: false };
      let at = 0;
      for (; at < stream.bytes.length && !result.done; at += split) result = reader.push(stream.bytes.subarray(at, at + split));
      assert.ok(result.done, `split ${split}`);
      assert.equal(result.generation, 7);
      assert.ok(at >= PRELUDE_MAX_BYTES && at - split < PRELUDE_MAX_BYTES, `split ${split}: decided at the chunk holding byte ${PRELUDE_MAX_BYTES}`);
      assert.deepEqual(Buffer.concat(result.chunks), stream.bytes.subarray(0, at));
    }
  });

  test('a stream opening with anything else is not a primary\'s', () => {
    const plain = recordStream({ pages: PAGES, epochs: 1, seed: 3 });
    const err = refusal(plain.bytes.subarray(0, 200));
    assert.equal(err.code, ErrorCodes.STREAM_NOT_A_PRIMARY);
    assert.equal(err.offset, 16);
    assert.equal(refusal(Buffer.from('GET / HTTP/1.1\r\nHost: secondary\r\n\r\n')).code, ErrorCodes.STREAM_BAD_IDENT);
  });

  test('bad TANDEM_PRIMARY bodies are refused with the field named', () => {
    const head = stream.bytes.subarray(0, 16);
    const body = (gen: bigint, reserved = 0n): Buffer => {
      const b = Buffer.alloc(16);
      b.writeBigUInt64LE(gen, 0);
      b.writeBigUInt64LE(reserved, 8);
      return b;
    };
    const with_ = (b: Buffer, length = b.length): Buffer => Buffer.concat([head, recordHeader(0x80005403, length), b]);
    const zero = refusal(with_(body(0n)));
    assert.equal(zero.code, ErrorCodes.RECORD_BAD_FIELD);
    assert.match(zero.message, /generation 0 is not in 1..2\^53-1/);
    assert.equal(refusal(with_(body(2n ** 53n))).code, ErrorCodes.RECORD_BAD_FIELD);
    assert.equal(refusal(with_(body(1n, 1n))).code, ErrorCodes.RECORD_RESERVED_NONZERO);
    const long = refusal(with_(Buffer.alloc(24), 24));
    assert.equal(long.code, ErrorCodes.RECORD_TOO_LARGE);
  });
});
