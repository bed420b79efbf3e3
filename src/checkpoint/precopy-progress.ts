/**
 * How far a live pre-copy has got, told at most once per interval: a big
 * guest's first round takes tens of seconds, and without this its operator
 * sees nothing between "pre-copy" and "protected". The session feeds it
 * what it sees (stream bytes as they are written, the saver's page counts
 * when the saver tells them, round boundaries from the precopy policy);
 * the meter decides when a report is due and what it says.
 */
import type { PrecopyRoundProgress } from '../domain/types.js';

/** Between reports, by default: often enough to see it move, rarely enough for a log. */
export const DEFAULT_PROGRESS_INTERVAL_MS = 1000;

export interface PrecopyProgress {
  /** The live round under way (1 sends every page). */
  iteration: number;
  /** Pages of this round sent so far (null: the saver does not tell). */
  pagesSent: number | null;
  /** Pages this round sends (null: not known). */
  pagesTotal: number | null;
  /** pagesSent of pagesTotal, 0..100 (null: either is unknown). */
  percent: number | null;
  /** Stream bytes written since the pre-copy began (the devices' live syncs included). */
  bytes: number;
  /** Since the pre-copy began, ms. */
  elapsedMs: number;
  /** Stream bytes per second since the previous report (since the start for the first). */
  bytesPerSecond: number;
  /** Until this round is sent, at this round's page rate so far, ms (null: no rate yet, or no total). */
  etaMs: number | null;
  /** The live rounds are over: the first checkpoint is being taken. */
  done: boolean;
}

export interface PrecopyMeterOptions {
  /** Monotonic ms. */
  now: () => number;
  /** At most one report per this many ms (0: every time something moves; the final one always). */
  intervalMs: number;
  report: (p: PrecopyProgress) => void;
}

interface Round {
  iteration: number;
  startedAt: number;
  sent: number | null;
  total: number | null;
}

export class PrecopyMeter {
  private startedAt = 0;
  private startBytes = 0;
  private bytes = 0;
  private last: { at: number; bytes: number } = { at: 0, bytes: 0 };
  private round: Round = { iteration: 1, startedAt: 0, sent: null, total: null };
  private running = false;

  constructor(private readonly options: PrecopyMeterOptions) {}

  /** The pre-copy begins; `position` is the stream's, and its first round sends `pages`. */
  start(position: number, pages: number): void {
    const at = this.options.now();
    this.startedAt = at;
    this.startBytes = position;
    this.bytes = 0;
    this.last = { at, bytes: 0 };
    this.round = { iteration: 1, startedAt: at, sent: null, total: pages };
    this.running = true;
  }

  /** The stream has reached `position`. */
  wrote(position: number): void {
    if (!this.running) return;
    const bytes = position - this.startBytes;
    if (bytes === this.bytes) return;
    this.bytes = bytes;
    this.maybeReport();
  }

  /** The saver's count within the round under way. */
  pages(p: PrecopyRoundProgress): void {
    if (!this.running) return;
    if (p.iteration !== this.round.iteration) this.round = { iteration: p.iteration, startedAt: this.options.now(), sent: null, total: null };
    if (p.sent === this.round.sent && p.total === this.round.total) return;
    this.round.sent = p.sent;
    this.round.total = p.total;
    this.maybeReport();
  }

  /** Round `iteration` is over; `next` pages are dirty, the next round's if there is one. */
  roundDone(iteration: number, next: number): void {
    if (!this.running) return;
    this.round = { iteration: iteration + 1, startedAt: this.options.now(), sent: 0, total: next };
  }

  /** The live rounds are over (the guest is being suspended for the first checkpoint): the last report, whatever the interval. */
  finish(position: number): void {
    if (!this.running) return;
    this.bytes = position - this.startBytes;
    this.running = false;
    this.emit(this.options.now(), true);
  }

  /** Called only when something moved: with a 0 interval, a report per move and no repeats. */
  private maybeReport(): void {
    const now = this.options.now();
    if (now - this.last.at < this.options.intervalMs) return;
    this.emit(now, false);
  }

  private emit(now: number, done: boolean): void {
    const r = this.round;
    const dt = now - this.last.at;
    const bytesPerSecond = dt > 0 ? ((this.bytes - this.last.bytes) * 1000) / dt : 0;
    this.last = { at: now, bytes: this.bytes };
    const roundMs = now - r.startedAt;
    let etaMs: number | null = null;
    if (r.sent !== null && r.total !== null && r.sent > 0 && roundMs > 0) etaMs = Math.max(0, ((r.total - r.sent) * roundMs) / r.sent);
    const percent = r.sent !== null && r.total !== null ? (r.total === 0 ? 100 : Math.min(100, (100 * r.sent) / r.total)) : null;
    this.options.report({
      iteration: r.iteration,
      pagesSent: r.sent,
      pagesTotal: r.total,
      percent,
      bytes: this.bytes,
      elapsedMs: now - this.startedAt,
      bytesPerSecond,
      etaMs,
      done,
    });
  }
}
