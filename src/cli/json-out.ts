/**
 * JSON for scripts, without float noise: a lag of 12.345678901 ms is
 * printed as 12.35. Rounding goes by the field's unit, as its name says:
 * `...Ms` to 0.01 ms, `...Us` and `ts` to whole units, anything else not
 * an integer to 4 decimals (ratios, rates). Integers stay as they are.
 */

function rounded(key: string, n: number): number {
  if (Number.isInteger(n) || !Number.isFinite(n)) return n;
  if (key === 'ts' || key.endsWith('Us')) return Math.round(n);
  if (key.endsWith('Ms') || key.endsWith('_ms')) return Math.round(n * 100) / 100;
  return Math.round(n * 10_000) / 10_000;
}

/** `value` with its numbers rounded (a copy; nested objects and arrays too). */
export function tidyNumbers<T>(value: T, key = ''): T {
  if (typeof value === 'number') return rounded(key, value) as T;
  if (Array.isArray(value)) return (value as unknown[]).map((v) => tidyNumbers(v, key)) as T;
  if (typeof value === 'object' && value !== null) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, tidyNumbers(v, k)])) as T;
  }
  return value;
}

/** One JSON line, tidied. */
export const jsonLine = (value: unknown): string => `${JSON.stringify(tidyNumbers(value))}\n`;
