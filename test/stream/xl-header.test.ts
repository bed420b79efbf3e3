import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ErrorCodes, StreamError, TandemError } from '../../src/errors.js';
import { LIBXL_IDENT } from '../../src/stream/format.js';
import { DEFAULT_XL_LIMITS, XL_FIXED_SIZE, XlHeaderDecoder, encodeXlHeader, parseXlHeader, type XlHeader } from '../../src/stream/xl-header.js';
import { wrapInXlSaveFile } from '../../src/stream/xl-writer.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

/**
 * An xl header written from Xen's struct save_file_header by hand, not by
 * Tandem's encoder: the magic, byte order 0x01020304, mandatory flags 3,
 * optional flags 0, optional length 28, config length 24, the config and its NUL.
 */
const CONFIG = '{"c_info":{"name":"a"}}';
const GOLDEN = hex(`
  58656e20736176656420646f6d61696e2c20786c20666f726d61740a2000200d
  04030201 03000000 00000000 1c000000
  18000000 7b22635f696e666f223a7b226e616d65223a2261227d7d00
`);
/** What follows the header in a file: the libxl stream's first bytes. */
const STREAM_HEAD = Buffer.concat([LIBXL_IDENT, hex('0000000200000000')]);

/** `b` with the u32le at `at` set to `v`. */
function withU32(b: Buffer, at: number, v: number): Buffer {
  const out = Buffer.from(b);
  out.writeUInt32LE(v >>> 0, at);
  return out;
}

/** A header with `config` as its optional data's config (and `tail` after it), flags as given. */
function rawHeader(config: Buffer, options: { mandatory?: number; tail?: Buffer } = {}): Buffer {
  const tail = options.tail ?? Buffer.alloc(0);
  const fixed = Buffer.from(GOLDEN.subarray(0, XL_FIXED_SIZE));
  fixed.writeUInt32LE(options.mandatory ?? 3, 36);
  fixed.writeUInt32LE(4 + config.length + tail.length, 44);
  const len = Buffer.alloc(4);
  len.writeUInt32LE(config.length);
  return Buffer.concat([fixed, len, config, tail]);
}

function refused(fn: () => unknown, code: string, offset?: number): StreamError {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof StreamError, `expected a StreamError ${code}, got ${String(caught)}`);
  assert.equal(caught.code, code, caught.message);
  assert.equal(caught.record, 'xl header');
  if (offset !== undefined) assert.equal(caught.offset, offset, caught.message);
  return caught;
}

describe('xl header: encoding', () => {
  test('the encoder writes the golden bytes of a header with a JSON config', () => {
    assert.equal(encodeXlHeader({ configJson: CONFIG }).toString('hex'), GOLDEN.toString('hex'));
  });

  test('without a config: mandatory flags 2 and a zero config length, as xl writes', () => {
    const b = encodeXlHeader();
    assert.equal(b.toString('hex'), GOLDEN.subarray(0, 32).toString('hex') + '04030201' + '02000000' + '00000000' + '04000000' + '00000000');
  });

  test('a config with non-ASCII text is counted in UTF-8 bytes', () => {
    const h = parseXlHeader(encodeXlHeader({ configJson: '{"c_info":{"name":"é"}}' }));
    assert.equal(h.config?.length, Buffer.byteLength('{"c_info":{"name":"é"}}') + 1);
    assert.equal(h.config?.at(-1), 0);
  });

  test('a config that is not a JSON object, holds a NUL or is too large is refused with a typed error', () => {
    const cases: [string, string][] = [
      ['{"c_info":', ErrorCodes.XL_BAD_CONFIG],
      ['[1, 2]', ErrorCodes.XL_BAD_CONFIG],
      ['"name"', ErrorCodes.XL_BAD_CONFIG],
      ['{"a":"b\0c"}', ErrorCodes.XL_BAD_CONFIG],
      [`{"pad":"${'x'.repeat(DEFAULT_XL_LIMITS.maxConfigBytes)}"}`, ErrorCodes.XL_CONFIG_TOO_LARGE],
    ];
    for (const [json, code] of cases) {
      assert.throws(
        () => encodeXlHeader({ configJson: json }),
        (err: unknown) => err instanceof TandemError && err.code === code,
        json.slice(0, 40),
      );
    }
    const parseError = (() => {
      try {
        encodeXlHeader({ configJson: '{' });
      } catch (err) {
        return err;
      }
    })();
    assert.ok(parseError instanceof TandemError && parseError.cause instanceof SyntaxError, 'the JSON error is the cause');
  });

  test('wrapInXlSaveFile puts the header before the stream and passes the stream chunks by reference', () => {
    const a = Buffer.from(STREAM_HEAD.subarray(0, 3));
    const b = Buffer.from(STREAM_HEAD.subarray(3));
    const out = wrapInXlSaveFile([a, b], { configJson: CONFIG });
    assert.equal(out.length, 3);
    assert.ok(out[0].equals(GOLDEN));
    assert.equal(out[1], a);
    assert.equal(out[2], b);
  });

  test('wrapInXlSaveFile refuses a stream that is not libxl framed (the header promises one)', () => {
    const libxc = Buffer.alloc(24, 0xff);
    for (const stream of [[libxc], [], [Buffer.from('Libx')]]) {
      assert.throws(
        () => wrapInXlSaveFile(stream),
        (err: unknown) => err instanceof TandemError && err.code === ErrorCodes.STREAM_UNKNOWN_FORMAT,
      );
    }
  });
});

describe('xl header: decoding', () => {
  test('the golden header decodes to its fields', () => {
    const h = parseXlHeader(GOLDEN);
    assert.deepEqual({ ...h, config: h.config?.toString('latin1') }, {
      mandatoryFlags: 3,
      optionalFlags: 0,
      optionalLength: 28,
      config: `${CONFIG}\0`,
      configJson: true,
      tailLength: 0,
      size: GOLDEN.length,
    });
  });

  test('split at every offset, and byte by byte, it decodes the same and leaves the stream after it', () => {
    const input = Buffer.concat([GOLDEN, STREAM_HEAD]);
    const reference = parseXlHeader(GOLDEN);
    const check = (chunks: Buffer[], how: string): void => {
      const d = new XlHeaderDecoder();
      let header: XlHeader | undefined;
      let fed = 0;
      for (const c of chunks) {
        assert.equal(header, undefined, `${how}: the header completed before its last byte`);
        header = d.push(c);
        fed += c.length;
        // Once the header is complete the caller takes the rest with rest(), and pushes no more.
        if (header) break;
      }
      assert.ok(header, how);
      assert.deepEqual(header, reference, how);
      assert.ok(Buffer.concat(d.rest()).equals(input.subarray(GOLDEN.length, fed)), `${how}: rest() is what followed the header`);
    };
    for (let at = 1; at < input.length; at++) check([input.subarray(0, at), input.subarray(at)], `split at ${at}`);
    check(Array.from(input, (_, i) => input.subarray(i, i + 1)), 'byte by byte');
  });

  test('the header completes exactly with its last byte, not before', () => {
    const d = new XlHeaderDecoder();
    assert.equal(d.push(GOLDEN.subarray(0, GOLDEN.length - 1)), undefined);
    assert.ok(d.push(GOLDEN.subarray(GOLDEN.length - 1)));
    assert.deepEqual(d.rest(), []);
  });

  test('an empty optional data (no config at all) and a config in xl config-file syntax are read as xl reads them', () => {
    const none = withU32(GOLDEN.subarray(0, XL_FIXED_SIZE), 44, 0);
    const h = parseXlHeader(withU32(none, 36, 2));
    assert.equal(h.config, undefined);
    assert.equal(h.size, XL_FIXED_SIZE);
    const text = Buffer.from('name = "guest"\nmemory = 128\n');
    const cfg = parseXlHeader(rawHeader(text, { mandatory: 2 }));
    assert.equal(cfg.configJson, false);
    assert.ok(cfg.config?.equals(text), 'a non-JSON config needs no NUL');
  });

  test('optional data after the config is skipped, as xl does, and counted', () => {
    const h = parseXlHeader(rawHeader(Buffer.from(`${CONFIG}\0`), { tail: Buffer.from('later') }));
    assert.equal(h.tailLength, 5);
    assert.equal(h.config?.toString('latin1'), `${CONFIG}\0`);
  });

  test('optional flags (none defined; xl ignores them) are reported, not refused', () => {
    assert.equal(parseXlHeader(withU32(GOLDEN, 40, 0x80000001)).optionalFlags, 0x80000001);
  });

  test('the config is a copy: it does not pin the input chunk', () => {
    const input = Buffer.from(GOLDEN);
    const h = parseXlHeader(input);
    input.fill(0);
    assert.equal(h.config?.toString('latin1'), `${CONFIG}\0`);
  });
});

describe('xl header: refused', () => {
  test('a wrong magic at any of its 32 bytes is ERR_XL_BAD_MAGIC, as soon as the byte arrives', () => {
    for (let i = 0; i < 32; i++) {
      const bad = Buffer.from(GOLDEN);
      bad[i] ^= 0x20;
      const d = new XlHeaderDecoder();
      d.push(bad.subarray(0, i)); // the good prefix is accepted
      refused(() => d.push(bad.subarray(i, i + 1)), ErrorCodes.XL_BAD_MAGIC, 0);
    }
  });

  test('a big-endian or garbled byte-order marker is ERR_XL_BAD_BYTE_ORDER', () => {
    assert.match(refused(() => parseXlHeader(withU32(GOLDEN, 32, 0x04030201)), ErrorCodes.XL_BAD_BYTE_ORDER, 32).message, /big-endian/);
    refused(() => parseXlHeader(withU32(GOLDEN, 32, 0x01020305)), ErrorCodes.XL_BAD_BYTE_ORDER, 32);
  });

  test('an unknown mandatory flag is ERR_XL_UNKNOWN_MANDATORY_FLAGS; a legacy (v1) stream is ERR_XL_LEGACY_STREAM', () => {
    for (const flags of [4, 7, 0x80000003]) refused(() => parseXlHeader(withU32(GOLDEN, 36, flags)), ErrorCodes.XL_UNKNOWN_MANDATORY_FLAGS, 36);
    for (const flags of [0, 1]) refused(() => parseXlHeader(withU32(GOLDEN, 36, flags)), ErrorCodes.XL_LEGACY_STREAM, 36);
  });

  test('a huge optional-data length is refused at the 48th byte, before anything waits for it', () => {
    for (const len of [DEFAULT_XL_LIMITS.maxOptionalBytes + 1, 0x7fffffff, 0xffffffff]) {
      const d = new XlHeaderDecoder();
      const before = process.memoryUsage().arrayBuffers;
      refused(() => d.push(withU32(GOLDEN, 44, len).subarray(0, XL_FIXED_SIZE)), ErrorCodes.XL_OPTIONAL_TOO_LARGE, 44);
      assert.ok(process.memoryUsage().arrayBuffers - before < 1 << 20, 'nothing was allocated for it');
    }
    // At the limit it is accepted: the decoder waits.
    assert.equal(new XlHeaderDecoder().push(withU32(GOLDEN, 44, DEFAULT_XL_LIMITS.maxOptionalBytes).subarray(0, 52)), undefined);
  });

  test('optional data too short for the config length, or a config length that overruns it, is ERR_XL_BAD_OPTIONAL_DATA', () => {
    for (const len of [1, 2, 3]) refused(() => parseXlHeader(withU32(GOLDEN, 44, len)), ErrorCodes.XL_BAD_OPTIONAL_DATA, 44);
    // The config length is checked when its 4 bytes arrive, before the rest of the optional data.
    refused(() => new XlHeaderDecoder().push(withU32(GOLDEN, 48, 25).subarray(0, 52)), ErrorCodes.XL_BAD_OPTIONAL_DATA, 48);
  });

  test('a config length over the limit is ERR_XL_CONFIG_TOO_LARGE at its 4 bytes', () => {
    const big = withU32(withU32(GOLDEN, 44, DEFAULT_XL_LIMITS.maxOptionalBytes), 48, DEFAULT_XL_LIMITS.maxConfigBytes + 1);
    refused(() => new XlHeaderDecoder().push(big.subarray(0, 52)), ErrorCodes.XL_CONFIG_TOO_LARGE, 48);
    // Lower limits are honoured.
    refused(() => new XlHeaderDecoder({ maxConfigBytes: 16 }).push(GOLDEN), ErrorCodes.XL_CONFIG_TOO_LARGE, 48);
    refused(() => new XlHeaderDecoder({ maxOptionalBytes: 27 }).push(GOLDEN), ErrorCodes.XL_OPTIONAL_TOO_LARGE, 44);
  });

  test('a JSON config without its trailing NUL, or with one inside, is ERR_XL_BAD_CONFIG', () => {
    refused(() => parseXlHeader(rawHeader(Buffer.from(CONFIG))), ErrorCodes.XL_BAD_CONFIG, 52);
    refused(() => parseXlHeader(rawHeader(Buffer.from(`{"a":1}\0{}\0`))), ErrorCodes.XL_BAD_CONFIG, 52 + 7);
  });

  test('input that ends inside the header is ERR_STREAM_TRUNCATED, wherever it ends', () => {
    for (let at = 0; at < GOLDEN.length; at++) {
      const d = new XlHeaderDecoder();
      assert.equal(d.push(GOLDEN.subarray(0, at)), undefined);
      assert.match(refused(() => d.end(), ErrorCodes.STREAM_TRUNCATED, 0).message, new RegExp(`after ${at} of the header's (48|${GOLDEN.length}) bytes`));
    }
  });

  test('after an error the decoder stays failed: push() throws ERR_STREAM_FAILED with the first error as cause', () => {
    const d = new XlHeaderDecoder();
    const first = refused(() => d.push(withU32(GOLDEN, 36, 8)), ErrorCodes.XL_UNKNOWN_MANDATORY_FLAGS);
    const again = refused(() => d.push(GOLDEN), ErrorCodes.STREAM_FAILED);
    assert.equal(again.cause, first);
    assert.throws(() => d.end(), (err: unknown) => err === first);
  });
});
