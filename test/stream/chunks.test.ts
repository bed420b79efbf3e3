import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ChunkQueue, SegmentCursor, joinSegments } from '../../src/stream/chunks.js';

/** True if `view` is a view into `chunk`'s memory (same ArrayBuffer, inside its window). */
function isViewOf(view: Buffer, chunk: Buffer): boolean {
  return view.buffer === chunk.buffer && view.byteOffset >= chunk.byteOffset && view.byteOffset + view.length <= chunk.byteOffset + chunk.length;
}

/** Three chunks with distinct contents: 00..09, 0a..0d, 0e..1b. */
function threeChunks(): Buffer[] {
  const all = Buffer.from(Array.from({ length: 28 }, (_, i) => i));
  return [Buffer.from(all.subarray(0, 10)), Buffer.from(all.subarray(10, 14)), Buffer.from(all.subarray(14))];
}

function queueOf(chunks: Buffer[]): ChunkQueue {
  const q = new ChunkQueue();
  for (const c of chunks) q.push(c);
  return q;
}

const range = (from: number, to: number): Buffer => Buffer.from(Array.from({ length: to - from }, (_, i) => from + i));

describe('ChunkQueue', () => {
  test('length counts pushed bytes and ignores empty chunks', () => {
    const q = new ChunkQueue();
    assert.equal(q.length, 0);
    q.push(Buffer.alloc(0));
    assert.equal(q.length, 0);
    q.push(Buffer.alloc(5));
    q.push(Buffer.alloc(0));
    q.push(Buffer.alloc(3));
    assert.equal(q.length, 8);
    q.take(6);
    assert.equal(q.length, 2);
  });

  test('take within one chunk returns one view of it', () => {
    const chunks = threeChunks();
    const q = queueOf(chunks);
    const a = q.take(4);
    assert.equal(a.length, 1);
    assert.deepEqual(a[0], range(0, 4));
    assert.ok(isViewOf(a[0], chunks[0]));
    const b = q.take(3);
    assert.equal(b.length, 1);
    assert.deepEqual(b[0], range(4, 7));
    assert.equal(b[0].byteOffset, chunks[0].byteOffset + 4);
    assert.equal(q.length, 21);
  });

  test('take across chunk boundaries returns one view per chunk touched, no copy', () => {
    const chunks = threeChunks();
    const q = queueOf(chunks);
    q.take(7);
    const parts = q.take(10); // 3 from chunk 0, all 4 of chunk 1, 3 from chunk 2
    assert.deepEqual(
      parts.map((p) => p.length),
      [3, 4, 3],
    );
    assert.ok(isViewOf(parts[0], chunks[0]));
    assert.equal(parts[1], chunks[1], 'a whole chunk is handed out as itself');
    assert.ok(isViewOf(parts[2], chunks[2]));
    assert.deepEqual(Buffer.concat(parts), range(7, 17));
    assert.deepEqual(Buffer.concat(q.take(q.length)), range(17, 28));
    assert.equal(q.length, 0);
  });

  test('take(0) returns nothing and consumes nothing', () => {
    const q = queueOf(threeChunks());
    assert.deepEqual(q.take(0), []);
    assert.equal(q.length, 28);
    assert.deepEqual(q.take(1), [range(0, 1)]);
  });

  test('takeContiguous is a view inside one chunk and a copy across chunks', () => {
    const chunks = threeChunks();
    const q = queueOf(chunks);
    const v = q.takeContiguous(6);
    assert.deepEqual(v, range(0, 6));
    assert.ok(isViewOf(v, chunks[0]));

    // Exactly the rest of chunk 0: still a view, and the queue moves to chunk 1.
    const rest = q.takeContiguous(4);
    assert.deepEqual(rest, range(6, 10));
    assert.ok(isViewOf(rest, chunks[0]));

    // 4 bytes of chunk 1 + 2 of chunk 2: a copy.
    const c = q.takeContiguous(6);
    assert.deepEqual(c, range(10, 16));
    assert.ok(!isViewOf(c, chunks[1]) && !isViewOf(c, chunks[2]));
    chunks[2][0] = 0xee; // the copy does not alias the input
    assert.equal(c[4], 14);
    assert.equal(q.length, 12);
    assert.deepEqual(q.takeContiguous(12), range(16, 28));
    assert.equal(q.length, 0);
  });

  test('takeContiguous(0) on an empty queue returns an empty buffer', () => {
    const q = new ChunkQueue();
    assert.equal(q.takeContiguous(0).length, 0);
    assert.equal(q.length, 0);
  });

  test('peek does not consume; view within a chunk, copy across', () => {
    const chunks = threeChunks();
    const q = queueOf(chunks);
    q.take(2);
    const inside = q.peek(8);
    assert.deepEqual(inside, range(2, 10));
    assert.ok(isViewOf(inside, chunks[0]));
    const across = q.peek(20); // 8 + 4 + 8
    assert.deepEqual(across, range(2, 22));
    assert.ok(!isViewOf(across, chunks[0]));
    assert.equal(q.length, 26);
    assert.deepEqual(Buffer.concat(q.take(3)), range(2, 5));
    assert.deepEqual(q.peek(26 - 3), range(5, 28));
  });

  test('mixing take, takeContiguous and peek over many small chunks keeps byte order', () => {
    const data = Buffer.from(Array.from({ length: 1000 }, (_, i) => (i * 7) & 0xff));
    const q = new ChunkQueue();
    // 200 chunks of 5 bytes: more than the 64 dropped chunks that trigger compaction.
    for (let i = 0; i < data.length; i += 5) q.push(Buffer.from(data.subarray(i, i + 5)));
    let at = 0;
    const sizes = [1, 3, 8, 13, 2, 40, 7];
    for (let i = 0; at < data.length; i++) {
      const n = Math.min(sizes[i % sizes.length], data.length - at);
      assert.deepEqual(q.peek(n), data.subarray(at, at + n));
      const got = i % 2 === 0 ? Buffer.concat(q.take(n)) : q.takeContiguous(n);
      assert.deepEqual(got, data.subarray(at, at + n), `at ${at}`);
      at += n;
      assert.equal(q.length, data.length - at);
    }
    q.push(Buffer.from('after'));
    assert.equal(q.takeContiguous(5).toString(), 'after');
  });
});

describe('SegmentCursor', () => {
  test('reads within a segment are views', () => {
    const segs = threeChunks();
    const cur = new SegmentCursor(segs);
    const a = cur.read(4);
    assert.deepEqual(a, range(0, 4));
    assert.ok(isViewOf(a, segs[0]));
    const b = cur.read(6); // exactly the rest of segment 0
    assert.deepEqual(b, range(4, 10));
    assert.ok(isViewOf(b, segs[0]));
    const c = cur.read(4); // exactly segment 1
    assert.deepEqual(c, range(10, 14));
    assert.ok(isViewOf(c, segs[1]));
  });

  test('reads across segments are copies with the right bytes', () => {
    const segs = threeChunks();
    const cur = new SegmentCursor(segs);
    cur.read(8);
    const x = cur.read(10); // 2 + 4 + 4
    assert.deepEqual(x, range(8, 18));
    assert.ok(!isViewOf(x, segs[0]) && !isViewOf(x, segs[2]));
    assert.deepEqual(cur.read(10), range(18, 28));
  });

  test('a read spanning several whole segments and empty segments', () => {
    const segs = [Buffer.from([1]), Buffer.alloc(0), Buffer.from([2, 3]), Buffer.alloc(0), Buffer.from([4, 5, 6])];
    const cur = new SegmentCursor(segs);
    assert.deepEqual(cur.read(5), Buffer.from([1, 2, 3, 4, 5]));
    assert.deepEqual(cur.read(1), Buffer.from([6]));
    assert.equal(cur.read(0).length, 0);
  });

  test('read(0) returns an empty buffer and does not move', () => {
    const cur = new SegmentCursor([Buffer.from([9, 8])]);
    assert.equal(cur.read(0).length, 0);
    assert.deepEqual(cur.read(2), Buffer.from([9, 8]));
  });
});

describe('joinSegments', () => {
  test('one segment is returned as is', () => {
    const s = Buffer.from([1, 2, 3]);
    assert.equal(joinSegments([s], 3), s);
  });

  test('no segments give an empty buffer', () => {
    assert.equal(joinSegments([], 0).length, 0);
  });

  test('several segments are copied into one buffer', () => {
    const segs = threeChunks();
    const j = joinSegments(segs, 28);
    assert.deepEqual(j, range(0, 28));
    assert.ok(!isViewOf(j, segs[0]));
  });
});
