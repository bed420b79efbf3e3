/**
 * The page delta of TANDEM_PAGE_XBZRLE (docs/stream.md): a page described
 * by what changed since its previous content, in the spirit of QEMU's
 * XBZRLE. Pure functions on Buffers, no state, no I/O.
 *
 * A delta is a sequence of runs. Each run is a skip (bytes left as they
 * were) then a literal (bytes replaced by the ones that follow), both
 * counted as unsigned LEB128 varints:
 *
 *   skip (varint) | literal length (varint, >= 1) | literal bytes
 *
 * Bytes past the last run are unchanged; an empty delta is an unchanged
 * page. The literal carries the page's new bytes (not the XOR), so applying
 * is a copy. Canonical form, which the checker enforces and the encoder
 * writes: varints in as few bytes as they need (a value up to 4096 takes
 * at most 2), a skip of 0 only in the first run (two literals in a row are
 * one literal), every run inside the page.
 */
import { PAGE_SIZE } from './format.js';

/** How a page of TANDEM_PAGE_XBZRLE is carried. */
export const PageEncoding = {
  /** The whole page follows (4096 bytes). */
  RAW: 0,
  /** The page is all zeros; nothing follows. */
  ZERO: 1,
  /** A delta against the page's previous content follows (0..4095 bytes). */
  DELTA: 2,
} as const;
export type PageEncodingCode = (typeof PageEncoding)[keyof typeof PageEncoding];

/** A delta must be smaller than the page, or the page goes raw. */
export const MAX_DELTA_BYTES = PAGE_SIZE - 1;

/**
 * Equal bytes between two changed spans cheaper to send as literal than as
 * a new run: a new run costs a skip and a length, at least 2 bytes.
 */
const MAX_MERGED_GAP = 2;

/** Literals up to this long are copied byte by byte. */
const SHORT_LITERAL = 16;

export const ZERO_PAGE: Buffer = Buffer.alloc(PAGE_SIZE);

export const isZeroPage = (page: Buffer): boolean => page.equals(ZERO_PAGE);

const varintBytes = (v: number): number => (v < 0x80 ? 1 : 2);

function writeVarint(out: Buffer, at: number, v: number): number {
  if (v < 0x80) {
    out[at] = v;
    return at + 1;
  }
  out[at] = (v & 0x7f) | 0x80;
  out[at + 1] = v >>> 7;
  return at + 2;
}

/** Int32 views of two pages when both are 4-byte aligned (staged pages and the cache's are): a word compare skips unchanged spans fast. */
function words(page: Buffer): Int32Array | undefined {
  return page.byteOffset % 4 === 0 ? new Int32Array(page.buffer, page.byteOffset, PAGE_SIZE / 4) : undefined;
}

/** First offset in [from, PAGE_SIZE) where the pages differ; PAGE_SIZE if none. */
function firstDifference(page: Buffer, base: Buffer, pw: Int32Array | undefined, bw: Int32Array | undefined, from: number): number {
  let i = from;
  if (pw !== undefined && bw !== undefined) {
    // Bytes up to the next word boundary, then whole words in a compiled loop: a guest's
    // write touches a few places in a page, and a native compare per block costs more in
    // calls than this loop does in words.
    while (i < PAGE_SIZE && i % 4 !== 0) {
      if (page[i] !== base[i]) return i;
      i++;
    }
    let w = i >>> 2;
    while (w < PAGE_SIZE / 4 && pw[w] === bw[w]) w++;
    i = w << 2;
  }
  while (i < PAGE_SIZE && page[i] === base[i]) i++;
  return i;
}

/**
 * Writes the delta that turns `base` into `page` at `out[at..]` and returns
 * its length, or -1 when it would not be smaller than the page (the caller
 * sends the page raw). `out` must have MAX_DELTA_BYTES free from `at`.
 */
export function encodeXbzrle(page: Buffer, base: Buffer, out: Buffer, at: number): number {
  if (page.length !== PAGE_SIZE || base.length !== PAGE_SIZE) throw new RangeError('encodeXbzrle: pages are 4096 bytes');
  if (page.equals(base)) return 0;
  const pw = words(page);
  const bw = words(base);
  const limit = at + MAX_DELTA_BYTES;
  let w = at;
  let pos = 0;
  for (;;) {
    const start = firstDifference(page, base, pw, bw, pos);
    if (start === PAGE_SIZE) break;
    let end = start + 1;
    for (;;) {
      while (end < PAGE_SIZE && page[end] !== base[end]) end++;
      if (end === PAGE_SIZE) break;
      // A short gap of equal bytes followed by a change is folded into the literal.
      let gap = 0;
      while (end + gap < PAGE_SIZE && gap <= MAX_MERGED_GAP && page[end + gap] === base[end + gap]) gap++;
      if (gap > MAX_MERGED_GAP || end + gap === PAGE_SIZE) break;
      end += gap;
    }
    const skip = start - pos;
    const len = end - start;
    if (w + varintBytes(skip) + varintBytes(len) + len > limit) return -1;
    w = writeVarint(out, w, skip);
    w = writeVarint(out, w, len);
    // Most literals are a few bytes: a native copy costs more to call than they take to move.
    if (len <= SHORT_LITERAL) for (let k = start; k < end; k++) out[w++] = page[k];
    else {
      page.copy(out, w, start, end);
      w += len;
    }
    pos = end;
  }
  return w - at;
}

/** What is wrong with a varint at `r`, or its value and the offset after it. */
function readVarint(delta: Buffer, r: number): { value: number; next: number } | string {
  if (r >= delta.length) return `the delta ends inside a run header at byte ${r}`;
  const b0 = delta[r];
  if (b0 < 0x80) return { value: b0, next: r + 1 };
  if (r + 1 >= delta.length) return `the delta ends inside a varint at byte ${r}`;
  const b1 = delta[r + 1];
  if (b1 >= 0x80) return `varint at byte ${r} is longer than 2 bytes (no run in a page needs more)`;
  if (b1 === 0) return `varint at byte ${r} is not in its shortest form`;
  return { value: (b0 & 0x7f) | (b1 << 7), next: r + 2 };
}

/**
 * Walks a delta, checking every run against the page bound before anything
 * is copied; with `target` (the page's previous content), applies it in
 * place. Returns what is wrong with the delta, or undefined. A delta that
 * fails leaves `target` partly written: check before applying to a page
 * that must not be torn.
 */
export function applyXbzrle(delta: Buffer, target?: Buffer): string | undefined {
  if (delta.length > MAX_DELTA_BYTES) return `delta of ${delta.length} bytes is not smaller than a page`;
  if (target !== undefined && target.length !== PAGE_SIZE) throw new RangeError('applyXbzrle: the target is one 4096-byte page');
  let r = 0;
  let pos = 0;
  while (r < delta.length) {
    const skip = readVarint(delta, r);
    if (typeof skip === 'string') return skip;
    if (skip.value === 0 && pos > 0) return `run at byte ${r} skips nothing after a literal (not canonical)`;
    const len = readVarint(delta, skip.next);
    if (typeof len === 'string') return len;
    if (len.value === 0) return `run at byte ${r} has an empty literal`;
    pos += skip.value;
    if (pos + len.value > PAGE_SIZE) return `run at byte ${r} writes ${len.value} bytes at page offset ${pos}, past the end of the page`;
    const from = len.next;
    if (from + len.value > delta.length) return `run at byte ${r} announces ${len.value} literal bytes, ${delta.length - from} remain`;
    if (target !== undefined) delta.copy(target, pos, from, from + len.value);
    r = from + len.value;
    pos += len.value;
  }
  return undefined;
}

/** What is wrong with a delta, or undefined: the same walk as applyXbzrle, writing nothing. */
export const checkXbzrle = (delta: Buffer): string | undefined => applyXbzrle(delta);
