import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ErrorCodes, StreamError } from '../../src/errors.js';
import { StreamDecoder, type StreamItem } from '../../src/stream/decoder.js';
import { ImageReader, type ImageItem } from '../../src/stream/image-reader.js';
import { parseXlHeader } from '../../src/stream/xl-header.js';
import { LIBXL_DOMAIN_CONFIG, remusShaped, simLibxlStream, xlFile } from './xl-fixtures.js';

const PLAIN = await simLibxlStream({ pages: 16, checkpoints: 0 });
const CHECKPOINTED = await simLibxlStream({ pages: 16, checkpoints: 3 });
const XL_PLAIN = xlFile(PLAIN);
const HEADER_SIZE = parseXlHeader(XL_PLAIN).size;

const label = (i: ImageItem): string => `${i.kind === 'record' ? `${i.record.layer} ${i.record.type}` : i.kind}@${i.offset}-${i.end}`;

function read(chunks: Buffer[], endAtCheckpoint = false): { items: ImageItem[]; reader: ImageReader } {
  const reader = new ImageReader({ endAtCheckpoint });
  const items: ImageItem[] = [];
  for (const c of chunks) reader.push(c, items);
  return { items, reader };
}

function thrown(fn: () => unknown): StreamError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof StreamError, String(err));
    return err;
  }
  assert.fail('expected a StreamError');
}

describe('ImageReader', () => {
  test('an xl save file: the xl header item, then the libxl stream at file offsets', () => {
    const { items, reader } = read([XL_PLAIN]);
    assert.deepEqual(reader.end(), { kind: 'end' });
    assert.equal(reader.container, 'xl');
    assert.equal(reader.framing, 'libxl');
    assert.ok(reader.done);
    assert.equal(items[0].kind, 'xl-header');
    assert.deepEqual([items[0].offset, items[0].end], [0, HEADER_SIZE]);
    assert.equal(reader.header?.config?.toString('utf8'), `${LIBXL_DOMAIN_CONFIG}\0`);
    // The same records as the bare stream, each HEADER_SIZE further on.
    const bare = new StreamDecoder().push(PLAIN);
    assert.deepEqual(
      items.slice(1).map(label),
      bare.map((i: StreamItem) => label({ ...i, offset: i.offset + HEADER_SIZE, end: i.end + HEADER_SIZE })),
    );
    assert.equal(items.at(-1)!.end, XL_PLAIN.length);
  });

  test('bare libxl and libxc streams are read as before', () => {
    const { items, reader } = read([PLAIN]);
    assert.deepEqual(reader.end(), { kind: 'end' });
    assert.equal(reader.container, 'none');
    assert.deepEqual(items.map(label), new StreamDecoder().push(PLAIN).map(label));
    const libxc = PLAIN.subarray(16 + 8); // past the libxl header and LIBXC_CONTEXT: the image header
    const r = new ImageReader();
    r.push(libxc.subarray(0, 40));
    assert.equal(r.framing, 'libxc');
  });

  test('split in two at every offset of the xl header and the stream head, it reads the same', () => {
    const reference = read([XL_PLAIN]).items.map(label);
    for (let at = 1; at < HEADER_SIZE + 64; at++) {
      const { items, reader } = read([XL_PLAIN.subarray(0, at), XL_PLAIN.subarray(at)]);
      reader.end();
      assert.deepEqual(items.map(label), reference, `split at ${at}`);
    }
    const bytewise = read(Array.from(XL_PLAIN.subarray(0, HEADER_SIZE + 64), (_, i) => XL_PLAIN.subarray(i, i + 1)).concat([XL_PLAIN.subarray(HEADER_SIZE + 64)]));
    assert.deepEqual(bytewise.items.map(label), reference);
  });

  test('an xl-framed Remus stream (no END) ends cleanly after its last CHECKPOINT_END; cut inside an epoch it is truncated', () => {
    const remus = xlFile(remusShaped(CHECKPOINTED));
    const { reader } = read([remus], true);
    assert.deepEqual(reader.end(), { kind: 'checkpoint', checkpoint: 3 });
    const strict = read([remus]).reader;
    assert.equal(thrown(() => strict.end()).code, ErrorCodes.STREAM_TRUNCATED);
    const cut = read([remus.subarray(0, remus.length - 100)], true).reader;
    const err = thrown(() => cut.end());
    assert.equal(err.code, ErrorCodes.STREAM_TRUNCATED);
    assert.match(err.message, /epoch 3 is incomplete \(the last complete checkpoint is 2\)/);
  });

  test('errors in the stream after an xl header carry file offsets', () => {
    const bad = Buffer.from(XL_PLAIN);
    bad[HEADER_SIZE] ^= 1; // the libxl header's ident
    const err = thrown(() => read([bad]));
    assert.equal(err.code, ErrorCodes.STREAM_BAD_IDENT);
    assert.equal(err.offset, HEADER_SIZE);
  });

  test('a bad xl header is refused with its code; an unknown format names all three it knows', () => {
    const magic = Buffer.from(XL_PLAIN);
    magic[20] ^= 1;
    assert.equal(thrown(() => read([magic])).code, ErrorCodes.XL_BAD_MAGIC);
    const garbage = thrown(() => read([Buffer.from('GET / HTTP/1.1\r\n\r\n')]));
    assert.equal(garbage.code, ErrorCodes.STREAM_UNKNOWN_FORMAT);
    assert.equal(garbage.offset, 0);
    assert.match(garbage.message, /xl save file.*libxl header.*libxc image header/);
  });

  test('input that ends before 8 bytes, or inside the xl header, is truncated', () => {
    for (const n of [0, 1, 7]) assert.equal(thrown(() => read([XL_PLAIN.subarray(0, n)]).reader.end()).code, ErrorCodes.STREAM_TRUNCATED);
    for (const n of [8, 47, 48, HEADER_SIZE - 1]) {
      const err = thrown(() => read([XL_PLAIN.subarray(0, n)]).reader.end());
      assert.equal(err.code, ErrorCodes.STREAM_TRUNCATED);
      assert.equal(err.record, 'xl header');
    }
    // The header whole, nothing after it: the libxl stream is missing.
    assert.equal(thrown(() => read([XL_PLAIN.subarray(0, HEADER_SIZE)]).reader.end()).code, ErrorCodes.STREAM_TRUNCATED);
  });

  test('the items a chunk completed before a bad record are kept in the caller array', () => {
    const bad = Buffer.from(XL_PLAIN);
    const firstRecordAfterHeaders = HEADER_SIZE + 16 + 8 + 24 + 16;
    bad.writeUInt32LE(0x42, firstRecordAfterHeaders); // an unknown mandatory libxc record
    const r = new ImageReader();
    const items: ImageItem[] = [];
    const err = thrown(() => r.push(bad, items));
    assert.equal(err.code, ErrorCodes.RECORD_UNKNOWN_MANDATORY);
    assert.equal(err.offset, firstRecordAfterHeaders);
    assert.deepEqual(items.map((i) => i.kind), ['xl-header', 'libxl-header', 'record', 'image-header', 'domain-header']);
  });

  test('after an error the reader stays failed: push() throws ERR_STREAM_FAILED caused by it, end() throws it again', () => {
    const r = new ImageReader();
    const first = thrown(() => r.push(Buffer.from('not a stream at all')));
    const again = thrown(() => r.push(XL_PLAIN));
    assert.equal(again.code, ErrorCodes.STREAM_FAILED);
    assert.equal(again.cause, first);
    assert.equal(thrown(() => r.end()), first);
    const late = new ImageReader();
    late.push(XL_PLAIN.subarray(0, 20));
    const truncated = thrown(() => late.end());
    assert.equal(thrown(() => late.push(XL_PLAIN.subarray(20))).cause, truncated);
  });
});
