/**
 * Turns a checkpoint's pages into TANDEM_PAGE_XBZRLE records: each page
 * goes as the smallest of a zero marker (an all-zero page), a delta
 * against the content the secondary holds (the PageCache), or the raw
 * page. Every page sent is staged in the cache; the caller commits or
 * discards the epoch there once it knows whether the secondary holds it.
 *
 * Deltas are written into one arena per epoch; records hold views of it,
 * so the arena is reused only after the epoch's bytes have left the
 * process (the saver awaits that before each checkpoint).
 */
import { PAGE_SIZE } from '../stream/format.js';
import type { XbzrleRecord } from '../stream/xbzrle-pages.js';
import { MAX_DELTA_BYTES, PageEncoding, encodeXbzrle, isZeroPage } from '../stream/xbzrle.js';
import type { PageCache } from './page-cache.js';

/** How an epoch's pages went. */
export interface CompressionStats {
  raw: number;
  zero: number;
  delta: number;
  /** Payload bytes of the deltas. */
  deltaBytes: number;
}

const EMPTY = Buffer.alloc(0);

export class PageCompressor {
  private arena = Buffer.alloc(0);
  private used = 0;
  stats: CompressionStats = { raw: 0, zero: 0, delta: 0, deltaBytes: 0 };

  constructor(readonly cache: PageCache) {}

  /** A new epoch of at most `pages` pages: the last one's records have been sent. */
  beginEpoch(pages: number): void {
    // Each delta is under a page, so a page of arena per page is always enough.
    const need = pages * PAGE_SIZE;
    if (this.arena.length < need) this.arena = Buffer.allocUnsafe(Math.max(need, Math.min(this.arena.length * 2, need * 2)));
    this.used = 0;
    this.stats = { raw: 0, zero: 0, delta: 0, deltaBytes: 0 };
  }

  /**
   * One record for `pfns` (strictly ascending) and their pages. Pages are
   * staged in the cache as they are: they must stay unchanged until the
   * epoch is committed or discarded there.
   */
  record(pfns: readonly number[], pages: readonly Buffer[]): XbzrleRecord {
    const n = pfns.length;
    const encodings = new Array<number>(n);
    const payloads = new Array<Buffer>(n);
    for (let i = 0; i < n; i++) {
      const page = pages[i];
      const base = this.cache.lookup(pfns[i]);
      let len = -1;
      if (base !== undefined) {
        if (this.used + MAX_DELTA_BYTES > this.arena.length) throw new RangeError('PageCompressor: more pages than beginEpoch() reserved for');
        len = encodeXbzrle(page, base, this.arena, this.used);
      }
      // Unchanged: an empty delta. Else all zeros: nothing at all. Else the delta, when it is under a page.
      if (len === 0 || (len > 0 && !isZeroPage(page))) {
        encodings[i] = PageEncoding.DELTA;
        payloads[i] = len === 0 ? EMPTY : this.arena.subarray(this.used, this.used + len);
        this.used += len;
        this.stats.delta++;
        this.stats.deltaBytes += len;
      } else if (isZeroPage(page)) {
        encodings[i] = PageEncoding.ZERO;
        payloads[i] = EMPTY;
        this.stats.zero++;
      } else {
        encodings[i] = PageEncoding.RAW;
        payloads[i] = page;
        this.stats.raw++;
      }
      this.cache.stage(pfns[i], page);
    }
    return { layer: 'libxc', type: 'TANDEM_PAGE_XBZRLE', pfns: [...pfns], encodings, payloads };
  }
}

