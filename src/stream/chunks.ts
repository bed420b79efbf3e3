/**
 * Byte queues for the incremental decoder. Bytes are handed out as views
 * into the chunks they arrived in; a copy is made only for a span that
 * crosses a chunk boundary, and then only of that span.
 */

export class ChunkQueue {
  private chunks: Buffer[] = [];
  private first = 0; // index of the first live chunk
  private head = 0; // read offset inside chunks[first]
  private bytes = 0;

  get length(): number {
    return this.bytes;
  }

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.bytes += chunk.length;
  }

  /** Removes `n` bytes (n <= length) and returns them as views, no copy. */
  take(n: number): Buffer[] {
    const out: Buffer[] = [];
    let left = n;
    while (left > 0) {
      const c = this.chunks[this.first];
      const avail = c.length - this.head;
      if (avail <= left) {
        out.push(this.head === 0 ? c : c.subarray(this.head));
        left -= avail;
        this.dropFirst();
      } else {
        out.push(c.subarray(this.head, this.head + left));
        this.head += left;
        left = 0;
      }
    }
    this.bytes -= n;
    return out;
  }

  /** Removes `n` bytes as one Buffer: a view when they lie in one chunk, else a copy. */
  takeContiguous(n: number): Buffer {
    const c = this.chunks[this.first];
    if (c !== undefined && c.length - this.head >= n) {
      const view = c.subarray(this.head, this.head + n);
      this.head += n;
      this.bytes -= n;
      if (this.head === c.length) this.dropFirst();
      return view;
    }
    return Buffer.concat(this.take(n), n);
  }

  /** Looks at the first `n` bytes (n <= length) without consuming them. */
  peek(n: number): Buffer {
    const c = this.chunks[this.first];
    if (c.length - this.head >= n) return c.subarray(this.head, this.head + n);
    const out = Buffer.allocUnsafe(n);
    let at = 0;
    let i = this.first;
    let off = this.head;
    while (at < n) {
      at += this.chunks[i].copy(out, at, off, Math.min(this.chunks[i].length, off + n - at));
      i++;
      off = 0;
    }
    return out;
  }

  private dropFirst(): void {
    this.chunks[this.first] = EMPTY;
    this.first++;
    this.head = 0;
    // Compact now and then so the array does not grow without bound.
    if (this.first > 64 && this.first * 2 > this.chunks.length) {
      this.chunks = this.chunks.slice(this.first);
      this.first = 0;
    }
  }
}

const EMPTY = Buffer.alloc(0);

/**
 * Sequential reader over a record body held as segments (views). Reads that
 * fit in one segment are views; reads that straddle segments are copied.
 */
export class SegmentCursor {
  private seg = 0;
  private off = 0;

  constructor(private readonly segments: readonly Buffer[]) {}

  read(n: number): Buffer {
    let s = this.segments[this.seg];
    while (s !== undefined && this.off === s.length) {
      this.seg++;
      this.off = 0;
      s = this.segments[this.seg];
    }
    if (n === 0) return EMPTY;
    if (s.length - this.off >= n) {
      const view = s.subarray(this.off, this.off + n);
      this.off += n;
      return view;
    }
    const out = Buffer.allocUnsafe(n);
    let at = 0;
    while (at < n) {
      s = this.segments[this.seg];
      const k = s.copy(out, at, this.off, Math.min(s.length, this.off + n - at));
      at += k;
      this.off += k;
      if (this.off === s.length) {
        this.seg++;
        this.off = 0;
      }
    }
    return out;
  }
}

/** One Buffer for the segments: the segment itself when there is one, else a copy. */
export function joinSegments(segments: readonly Buffer[], total: number): Buffer {
  if (segments.length === 1) return segments[0];
  if (segments.length === 0) return EMPTY;
  return Buffer.concat(segments, total);
}
