/**
 * Polls `pred` every few milliseconds until it holds; throws naming `what`
 * after `timeoutMs`. `pred` may be async, for a condition only a request
 * can see (a metrics scrape).
 */
export async function until(pred: () => boolean | Promise<boolean>, what: string, timeoutMs = 10_000, pollMs = 5): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await pred())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, pollMs));
  }
}
