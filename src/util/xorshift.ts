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

/**
 * Uniform in [0, 1) from xorshift32, for code written against Math.random's
 * shape (a guest's random source, a random delay). Never exactly 0:
 * xorshift32 never yields 0.
 */
export function uniform(seed: number): () => number {
  const next = xorshift32(seed);
  return () => next() / 2 ** 32;
}

/**
 * Integers in [0, n) from xorshift32, n up to 2^32. By remainder: the bias
 * it leaves (below n / 2^32) is nothing to a workload or a random cut.
 */
export function below(seed: number): (n: number) => number {
  const next = xorshift32(seed);
  return (n) => next() % n;
}
