/**
 * A log for events that may come in floods (clients refused, evicted, timed
 * out): the first event of a quiet spell is logged at once, in full, so an
 * operator sees what happened and to whom; the ones after it are only
 * counted, and a summary line per window says how many of each there were.
 * A thousand connections opened in a second then cost two lines, not a
 * thousand, and a flood that goes on costs one line per window.
 */
import type { Logger } from './logger.js';

export interface BurstLogOptions<K extends string> {
  logger: Logger | undefined;
  /** At most one summary per window while events keep coming (default 10 s). */
  windowMs?: number;
  /** The summary's message for the counts of one window (only kinds that occurred are present). */
  summarize: (counts: Partial<Record<K, number>>, windowMs: number) => string;
}

export const DEFAULT_BURST_WINDOW_MS = 10_000;

export class BurstLog<K extends string> {
  private counts: Partial<Record<K, number>> = {};
  private pending = 0;
  private timer: NodeJS.Timeout | undefined = undefined;

  constructor(private readonly options: BurstLogOptions<K>) {}

  private get windowMs(): number {
    return this.options.windowMs ?? DEFAULT_BURST_WINDOW_MS;
  }

  /** One event: logged at once if the log is quiet, else counted for the window's summary. */
  note(kind: K, fields: Record<string, unknown>, message: string): void {
    if (this.timer === undefined) {
      this.options.logger?.warn({ event: kind, ...fields }, message);
      this.openWindow();
      return;
    }
    this.counts[kind] = (this.counts[kind] ?? 0) + 1;
    this.pending++;
  }

  /** Says what is still counted and stops the window's timer (the owner is stopping). */
  stop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.flush();
  }

  private openWindow(): void {
    // Unref'd: a summary still due must not keep a stopping process alive.
    this.timer = setTimeout(() => this.endWindow(), this.windowMs);
    this.timer.unref();
  }

  private endWindow(): void {
    this.timer = undefined;
    // Events in this window: summarize and keep counting; none: quiet again, the next one is logged in full.
    if (this.flush()) this.openWindow();
  }

  private flush(): boolean {
    if (this.pending === 0) return false;
    const counts = this.counts;
    this.counts = {};
    this.pending = 0;
    const fields: Record<string, unknown> = { ...counts, windowMs: this.windowMs };
    this.options.logger?.warn(fields, this.options.summarize(counts, this.windowMs));
    return true;
  }
}
