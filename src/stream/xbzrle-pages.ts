/**
 * The pages of a TANDEM_PAGE_XBZRLE record, applied to the pages they
 * replace: what the secondary writes into its replica. Pure: the caller
 * lends the pages the deltas apply to and says how whole pages are written.
 */
import type { LibxcRecord } from './records.js';
import { PageEncoding, ZERO_PAGE, applyXbzrle } from './xbzrle.js';

export type XbzrleRecord = Extract<LibxcRecord, { type: 'TANDEM_PAGE_XBZRLE' }>;

/**
 * Applies a record's pages in place, in order: deltas straight into
 * `writable(pfn)` (the replica's own page, no copy in and out), raw and
 * zero pages through `write`, runs of them together. The record was
 * checked when it was parsed, every delta against the page bound, so this
 * cannot fail halfway; a delta that still does not apply is a bug, thrown
 * as such.
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
