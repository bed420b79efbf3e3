/**
 * Glob matching over bytes, with the pattern language of Redis's KEYS:
 * `*` any run, `?` any one byte, `[abc]`, `[^abc]`, `[a-z]` (bounds in either
 * order; a `-` just before `]` is literal), and `\x` for a literal x (inside
 * brackets too). An unterminated `[` class runs to the end of the pattern.
 *
 * `*` is matched greedily with backtracking to the last star only, which is
 * exact for globs (every other token matches one byte) and keeps the worst
 * case at O(pattern * subject) rather than exponential.
 */
const STAR = 0x2a;
const QUESTION = 0x3f;
const BACKSLASH = 0x5c;
const OPEN = 0x5b;
const CLOSE = 0x5d;
const CARET = 0x5e;
const DASH = 0x2d;

export function globMatch(pattern: Uint8Array, subject: Uint8Array): boolean {
  const plen = pattern.length;
  const slen = subject.length;
  let p = 0;
  let s = 0;
  let starP = -1;
  let starS = 0;
  while (s < slen) {
    if (p < plen) {
      if (pattern[p] === STAR) {
        while (p < plen && pattern[p] === STAR) p++;
        if (p === plen) return true;
        starP = p;
        starS = s;
        continue;
      }
      const step = matchToken(pattern, p, subject[s]);
      if (step > 0) {
        p += step;
        s++;
        continue;
      }
    }
    if (starP < 0) return false;
    // Let the last star swallow one more byte and retry from just after it.
    starS++;
    s = starS;
    p = starP;
  }
  while (p < plen && pattern[p] === STAR) p++;
  return p === plen;
}

/** Whether the token at pattern[p] matches byte `c`: its length if so, minus its length if not. */
function matchToken(pattern: Uint8Array, p: number, c: number): number {
  const plen = pattern.length;
  const t = pattern[p];
  if (t === QUESTION) return 1;
  if (t === BACKSLASH && p + 1 < plen) return pattern[p + 1] === c ? 2 : -2;
  if (t !== OPEN) return t === c ? 1 : -1;
  let i = p + 1;
  const negate = i < plen && pattern[i] === CARET;
  if (negate) i++;
  let hit = false;
  while (i < plen && pattern[i] !== CLOSE) {
    if (pattern[i] === BACKSLASH && i + 1 < plen) {
      i++;
      if (pattern[i] === c) hit = true;
    } else if (i + 2 < plen && pattern[i + 1] === DASH && pattern[i + 2] !== CLOSE) {
      const lo = Math.min(pattern[i], pattern[i + 2]);
      const hi = Math.max(pattern[i], pattern[i + 2]);
      if (c >= lo && c <= hi) hit = true;
      i += 2;
    } else if (pattern[i] === c) {
      hit = true;
    }
    i++;
  }
  const len = Math.min(i + 1, plen) - p;
  return hit !== negate ? len : -len;
}
