/**
 * TANDEM_DISK_WRITES bodies: a hex golden fixture, and every malformed
 * field refused with a StreamError naming the record and its offset.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseDiskWrites, writeDiskWritesHeader, writeExtentHeader } from '../../src/disk/record.js';
import { DISK_BLOCK_SIZE } from '../../src/disk/record.js';
import { ErrorCodes, StreamError } from '../../src/errors.js';

const CAPACITY = 64 * DISK_BLOCK_SIZE;
const disks = { capacityOf: (i: number) => (i === 0 ? CAPACITY : undefined) };

/** Header, then extents of [first, blocks, fill byte]. */
function body(extents: [number, number, number][], h: Partial<{ disk: number; flags: number; capacity: number; count: number }> = {}): Buffer {
  const size = 24 + extents.reduce((n, [, c]) => n + 8 + c * DISK_BLOCK_SIZE, 0);
  const b = Buffer.alloc(size);
  writeDiskWritesHeader(b, 0, { disk: h.disk ?? 0, flags: h.flags ?? 0, capacity: h.capacity ?? CAPACITY, extents: h.count ?? extents.length });
  let at = 24;
  for (const [first, count, fill] of extents) {
    writeExtentHeader(b, at, first, count);
    b.fill(fill, at + 8, at + 8 + count * DISK_BLOCK_SIZE);
    at += 8 + count * DISK_BLOCK_SIZE;
  }
  return b;
}

function refused(b: Buffer, code: string, re: RegExp): void {
  assert.throws(
    () => parseDiskWrites(b, disks, { offset: 4242 }),
    (err: unknown) => {
      assert.ok(err instanceof StreamError);
      assert.equal(err.code, code);
      assert.equal(err.offset, 4242);
      assert.equal(err.record, 'libxl TANDEM_DISK_WRITES');
      assert.match(err.message, re);
      return true;
    },
  );
}

describe('TANDEM_DISK_WRITES', () => {
  test('header layout (golden bytes)', () => {
    const b = body([[5, 1, 0xab]], { flags: 1 });
    assert.equal(
      b.subarray(0, 32).toString('hex'),
      [
        '00000000', // disk 0
        '01000000', // flags: RESET
        '0000040000000000', // capacity 0x40000
        '00100000', // block size 4096
        '01000000', // one extent
        '05000000', // first block 5
        '01000000', // one block
      ].join(''),
    );
  });

  test('parses extents as views of the body', () => {
    const b = body([
      [5, 1, 0xab],
      [10, 3, 0xcd],
    ]);
    const w = parseDiskWrites(b, disks, { offset: 0 });
    assert.equal(w.disk, 0);
    assert.equal(w.reset, false);
    assert.equal(w.capacity, CAPACITY);
    assert.equal(w.blocks, 4);
    assert.deepEqual(
      w.extents.map((e) => [e.first, e.data.length, e.data[0]]),
      [
        [5, DISK_BLOCK_SIZE, 0xab],
        [10, 3 * DISK_BLOCK_SIZE, 0xcd],
      ],
    );
    assert.equal(w.extents[1].data.buffer, b.buffer, 'no copy');
    assert.equal(parseDiskWrites(body([], { flags: 1 }), disks, { offset: 0 }).reset, true);
  });

  test('refuses every malformed field', () => {
    refused(Buffer.alloc(20), ErrorCodes.RECORD_BAD_LENGTH, /body length 20/);
    refused(body([], { flags: 2 }), ErrorCodes.RECORD_RESERVED_NONZERO, /reserved bits/);
    const bs = body([]);
    bs.writeUInt32LE(512, 16);
    refused(bs, ErrorCodes.RECORD_BAD_FIELD, /block size 512/);
    refused(body([], { disk: 1 }), ErrorCodes.REPLICA_MISMATCH, /disk 1, which the replica does not have/);
    refused(body([], { capacity: CAPACITY * 2 }), ErrorCodes.REPLICA_MISMATCH, /524288 bytes on the primary, 262144 bytes on the replica/);
    refused(body([[1, 1, 0]], { count: 0xffffffff }), ErrorCodes.RECORD_BAD_LENGTH, /4294967295 extents cannot fit/);
    refused(body([[1, 1, 0]], { count: 2 }), ErrorCodes.RECORD_BAD_LENGTH, /cannot fit|extent 1 header/);
    refused(body([[60, 5, 0]]), ErrorCodes.REPLICA_MISMATCH, /extent 0 \(blocks 60\.\.64\) outside the 64-block disk/);
    const empty = body([[1, 1, 0]]);
    empty.writeUInt32LE(0, 28);
    refused(empty, ErrorCodes.RECORD_BAD_FIELD, /extent 0 is empty/);
    const long = body([[1, 1, 0]]);
    long.writeUInt32LE(2, 28);
    refused(long, ErrorCodes.RECORD_BAD_LENGTH, /extent 0 of 2 blocks runs past the body/);
    refused(Buffer.concat([body([[1, 1, 0]]), Buffer.alloc(8)]), ErrorCodes.RECORD_BAD_LENGTH, /8 bytes after the last extent/);
    // A block index near 2^32: first + n must not wrap.
    const wrap = body([[1, 1, 0]]);
    wrap.writeUInt32LE(0xffffffff, 24);
    refused(wrap, ErrorCodes.REPLICA_MISMATCH, /outside the 64-block disk/);
  });
});
