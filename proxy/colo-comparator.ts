/**
 * ColoComparator: the comparator as a component the controller embeds (COLO
 * mode in the engine) and the socket server (`tandem proxy`) wraps. It owns
 * the clock and the expired-packet scan; the Comparator core stays pure.
 *
 * Output is synchronous: `release` fires for each primary frame that may
 * leave, in order, during the call that decided it; checkpoint requests
 * come as `checkpoint` events and on `checkpointRequests$`.
 */
import { EventEmitter } from 'node:events';
import { Subject, type Observable } from 'rxjs';
import { Comparator, type CheckpointRequest, type ComparatorOptions, type ComparatorStats, type Decision, type DropWhy, type ReleaseWhy, type Side } from './compare.js';
import { ProxyError, ProxyErrorCodes as C } from './errors.js';
import type { Frame } from './framing.js';

export interface ColoComparatorOptions extends ComparatorOptions {
  /** How often held frames are checked against the compare timeout (ms). Default 1000. */
  expiredScanCycleMs?: number;
  /** Milliseconds on a monotonic clock; default performance.now. */
  clock?: () => number;
}

export interface ColoComparatorEvents {
  /** A primary frame may leave now (in this order). */
  release: [Frame, ReleaseWhy];
  /** A secondary (or, on overflow, primary) frame was discarded. */
  drop: [Side, Frame, DropWhy];
  /** The guests diverged, or a frame waited too long: take a checkpoint, then call checkpointDone(). */
  checkpoint: [CheckpointRequest];
  /** A frame that does not decode; it was passed through uncompared. */
  malformed: [Side, ProxyError];
}

export const EXPIRED_SCAN_CYCLE_DEFAULT_MS = 1000;

export class ColoComparator extends EventEmitter<ColoComparatorEvents> {
  private readonly core: Comparator;
  private readonly requests = new Subject<CheckpointRequest>();
  private readonly clock: () => number;
  private readonly scanCycleMs: number;
  private readonly decisions: Decision[] = [];
  private timer: NodeJS.Timeout | undefined;

  constructor(options: ColoComparatorOptions = {}) {
    super();
    this.core = new Comparator(options);
    this.clock = options.clock ?? (() => performance.now());
    this.scanCycleMs = options.expiredScanCycleMs ?? EXPIRED_SCAN_CYCLE_DEFAULT_MS;
  }

  /** Every checkpoint request, with its reason and connection. */
  get checkpointRequests$(): Observable<CheckpointRequest> {
    return this.requests.asObservable();
  }

  /** Starts the expired-packet scan. */
  start(): void {
    if (this.timer !== undefined) return;
    if (!Number.isInteger(this.scanCycleMs) || this.scanCycleMs < 1 || this.scanCycleMs > 2 ** 31 - 1) {
      throw new ProxyError(C.PROXY_BAD_OPTIONS, `expired scan cycle ${this.scanCycleMs} ms is not an integer in 1..${2 ** 31 - 1}`);
    }
    this.timer = setInterval(() => this.scan(), this.scanCycleMs);
    this.timer.unref();
  }

  /** Stops the scan. Held frames stay held (a later start() resumes). */
  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Completes checkpointRequests$; the comparator is done for good. */
  close(): void {
    this.stop();
    this.requests.complete();
  }

  pushPrimary(frame: Frame | Buffer): void {
    this.push('primary', frame);
  }

  pushSecondary(frame: Frame | Buffer): void {
    this.push('secondary', frame);
  }

  /** A checkpoint was taken: held primary frames leave, held secondary frames are dropped. */
  checkpointDone(): void {
    this.emitAll(this.core.checkpointDone(this.decisions));
  }

  /** Runs one expired-packet scan now (the timer calls this every cycle). */
  scan(): void {
    this.emitAll(this.core.scan(this.clock(), this.decisions));
  }

  stats(): ComparatorStats {
    return this.core.stats();
  }

  private push(side: Side, frame: Frame | Buffer): void {
    const f = Buffer.isBuffer(frame) ? { data: frame, vnetHdrLen: 0 } : frame;
    this.emitAll(this.core.push(side, f, this.clock(), this.decisions));
  }

  private emitAll(ds: Decision[]): void {
    // Reused array: emptied before the listeners run, so a listener that
    // feeds the comparator again (re-entrancy) starts from a clean slate.
    const batch = ds.splice(0, ds.length);
    for (const d of batch) {
      switch (d.type) {
        case 'release':
          this.emit('release', d.frame, d.why);
          break;
        case 'drop':
          this.emit('drop', d.side, d.frame, d.why);
          break;
        case 'checkpoint':
          this.emit('checkpoint', d.request);
          this.requests.next(d.request);
          break;
        case 'malformed':
          this.emit('malformed', d.side, d.error);
          break;
      }
    }
  }
}
