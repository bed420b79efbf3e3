/** Finding a libxc stream's record boundaries: split anywhere, pages counted per checkpoint, oversized records refused. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LibxcFramer } from '../../../src/domain/xen/libxc-framer.js';

/** One record: type, length, body, zero padding to 8. */
function rec(type: number, body: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32LE(type, 0);
  head.writeUInt32LE(body.length, 4);
  return Buffer.concat([head, body, Buffer.alloc((8 - (body.length % 8)) % 8)]);
}

/** A PAGE_DATA record of `count` pages (its pfn entries and page bytes: enough for the framer, which reads only the count). */
function pageData(count: number): Buffer {
  const body = Buffer.alloc(8 + count * 8 + count * 4096, 0xab);
  body.writeUInt32LE(count, 0);
  body.writeUInt32LE(0, 4);
  return rec(0x01, body);
}

const HEADERS = Buffer.alloc(24 + 16, 0x11);
const CHECKPOINT = rec(0x0e, Buffer.alloc(0));
const END = rec(0x00, Buffer.alloc(0));
// An odd-length record (TSC info is 24; 13 here) exercises the padding.
const ODD = rec(0x08, Buffer.alloc(13, 0x22));
const STREAM = Buffer.concat([HEADERS, pageData(3), pageData(2), ODD, CHECKPOINT, pageData(1), CHECKPOINT, END]);

test('checkpoints and their pages, and the END, found whatever the chunking', () => {
  for (const size of [1, 3, 7, 8, 9, 41, 4096, STREAM.length]) {
    const seen: string[] = [];
    const f = new LibxcFramer({ onCheckpoint: (n, pages) => seen.push(`checkpoint ${n}: ${pages} pages`), onEnd: () => seen.push('end') });
    for (let at = 0; at < STREAM.length; at += size) f.push(STREAM.subarray(at, at + size));
    assert.deepEqual(seen, ['checkpoint 1: 5 pages', 'checkpoint 2: 1 pages', 'end'], `chunks of ${size}`);
    assert.equal(f.bytes, STREAM.length);
    assert.equal(f.checkpoints, 2);
  }
});

test('a record longer than the bound is refused, naming its type and offset; bytes after END are refused', () => {
  const f = new LibxcFramer({}, 1 << 20);
  const huge = Buffer.alloc(8);
  huge.writeUInt32LE(0x01, 0);
  huge.writeUInt32LE((1 << 20) + 1, 4);
  assert.throws(() => f.push(Buffer.concat([HEADERS, huge])), (err: Error & { code?: string }) => err.code === 'ERR_SAVE_HELPER_BAD_MESSAGE' && /record type 0x1 of 1048577 bytes at offset 40/.test(err.message));
  const g = new LibxcFramer();
  g.push(Buffer.concat([HEADERS, END]));
  assert.throws(() => g.push(Buffer.alloc(8)), (err: Error & { code?: string }) => err.code === 'ERR_SAVE_HELPER_BAD_MESSAGE' && /after its END/.test(err.message));
});
