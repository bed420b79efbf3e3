/**
 * xorshift32: a tiny deterministic generator of unsigned 32-bit integers,
 * for workloads, fixtures and benchmark inputs that must be the same on
 * every run. Not for anything that needs to be unpredictable.
 */
export function xorshift32(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
}
