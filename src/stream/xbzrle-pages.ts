/**
 * The pages of a TANDEM_PAGE_XBZRLE record, decoded against the pages they
 * replace: what the secondary writes into its replica. Pure: the caller
 * gives the page contents the deltas apply to and a scratch buffer.
 */
import { PAGE_SIZE } from './format.js';
import type { LibxcRecord } from './records.js';
import { PageEncoding, ZERO_PAGE, applyXbzrle } from './xbzrle.js';

export type XbzrleRecord = Extract<LibxcRecord, { type: 'TANDEM_PAGE_XBZRLE' }>;

/**
 * One page per entry, in order: raw payloads as they are, zero pages as
 * the shared zero page, deltas applied to a copy of `current(pfn)` in
 * `scratch` (at least one page per entry). The record was checked when it
 * was parsed, every delta against the page bound, so this cannot fail
 * halfway; a delta that still does not apply is a bug, thrown as such.
 */
export function decodeXbzrlePages(rec: XbzrleRecord, current: (pfn: number) => Buffer, scratch: Buffer): Buffer[] {
  const n = rec.pfns.length;
  if (scratch.length < n * PAGE_SIZE) throw new RangeError(`decodeXbzrlePages: scratch of ${scratch.length} bytes for ${n} pages`);
  const pages = new Array<Buffer>(n);
  for (let i = 0; i < n; i++) {
    switch (rec.encodings[i]) {
      case PageEncoding.RAW:
        pages[i] = rec.payloads[i];
        break;
      case PageEncoding.ZERO:
        pages[i] = ZERO_PAGE;
        break;
      default: {
        // A copy, not the page in place: the caller writes the record's pages together.
        const page = scratch.subarray(i * PAGE_SIZE, (i + 1) * PAGE_SIZE);
        current(rec.pfns[i]).copy(page);
        const wrong = applyXbzrle(rec.payloads[i], page);
        if (wrong !== undefined) throw new Error(`a delta checked when parsed failed to apply: ${wrong}`);
        pages[i] = page;
      }
    }
  }
  return pages;
}

/**
 * Applies a record's pages in place, in order: deltas straight into
 * `writable(pfn)` (the replica's own page), raw and zero pages through
 * `write`, runs of them together. Same checks and result as writing
 * decodeXbzrlePages' pages, with no page copied in and out for a delta.
 */
export function applyXbzrlePages(rec: XbzrleRecord, writable: (pfn: number) => Buffer, write: (pfns: number[], pages: Buffer[]) => void): void {
  let pfns: number[] = [];
  let pages: Buffer[] = [];
  const flush = (): void => {
    if (pfns.length === 0) return;
    write(pfns, pages);
    pfns = [];
    pages = [];
  };
  for (let i = 0; i < rec.pfns.length; i++) {
    const enc = rec.encodings[i];
    if (enc === PageEncoding.RAW || enc === PageEncoding.ZERO) {
      pfns.push(rec.pfns[i]);
      pages.push(enc === PageEncoding.RAW ? rec.payloads[i] : ZERO_PAGE);
      continue;
    }
    // Whole pages written earlier in the record land before a delta that may build on them.
    flush();
    const wrong = applyXbzrle(rec.payloads[i], writable(rec.pfns[i]));
    if (wrong !== undefined) throw new Error(`a delta checked when parsed failed to apply: ${wrong}`);
  }
  flush();
}
