/**
 * The trigger pipeline: what decides when the next checkpoint epoch starts.
 *
 * Sources — a periodic timer (Remus), operator requests, the COLO
 * comparator's divergence requests and, under the output policy, held output
 * (replies waiting in the output buffer) — are merged; while an epoch is in flight
 * further triggers coalesce into one pending epoch; no two epochs start
 * closer than the minimum interval, and, when a maximum interval is set, an
 * epoch starts at the latest that long after the previous one began.
 *
 * Time comes from an injected RxJS scheduler so marble tests drive it.
 */
import { EMPTY, Observable, asyncScheduler, merge, switchMap, timer, type SchedulerLike, type Subscription } from 'rxjs';
import { map } from 'rxjs/operators';
import type { CheckpointRequest } from '../../proxy/compare.js';

export type TriggerReason = 'timer' | 'operator' | 'divergence' | 'max-interval' | 'output';

/**
 * When Remus epochs start (primary.policy):
 *   - timer:  every interval, whatever the guest does;
 *   - output: as soon as output is held and the previous epoch is done
 *             (bounded by the minimum interval), the timer only while
 *             nothing is held. Remus's cost is the wait of held replies; an
 *             epoch that starts when one is waiting shortens that wait to
 *             the epoch's own duration.
 */
export const EPOCH_POLICIES = ['output', 'timer'] as const;
export type EpochPolicy = (typeof EPOCH_POLICIES)[number];

export interface Trigger {
  reason: TriggerReason;
  /** An operator's request: who asked (the monitor, a test). */
  by?: string;
  /** A divergence: the comparator's request, as it made it. */
  request?: CheckpointRequest;
  /** Held output: the epoch its bytes wait for (the output buffer's tag). */
  epoch?: number;
}

/**
 * When several triggers coalesce, the one kept is the most specific. Output
 * is the least: it is the only reason that can be stale by its turn (see
 * PacingOptions.due), and a stale one must not have swallowed another.
 */
const PRIORITY: Record<TriggerReason, number> = { divergence: 4, operator: 3, timer: 2, 'max-interval': 1, output: 0 };

/** Output began waiting for `epoch`: a trigger for the epoch that will carry the state behind it. */
export const outputTrigger = (epoch: number): Trigger => ({ reason: 'output', epoch });

export interface TriggerSources {
  /** Remus interval in ms; a new value restarts the timer, 0 or null stops it. */
  interval$?: Observable<number | null>;
  operator$?: Observable<Trigger>;
  divergence$?: Observable<Trigger>;
  /** Held output (outputTrigger), already gated by the policy and mode. */
  output$?: Observable<Trigger>;
}

/** Merges the trigger sources into one stream of triggers. */
export function mergeTriggers(sources: TriggerSources, scheduler: SchedulerLike = asyncScheduler): Observable<Trigger> {
  const timer$ = (sources.interval$ ?? EMPTY).pipe(
    switchMap((ms) => (ms !== null && ms > 0 ? timer(ms, ms, scheduler).pipe(map((): Trigger => ({ reason: 'timer' }))) : EMPTY)),
  );
  return merge(timer$, sources.operator$ ?? EMPTY, sources.divergence$ ?? EMPTY, sources.output$ ?? EMPTY);
}

export interface PacingOptions {
  /** No two epochs start closer than this. */
  minIntervalMs: number;
  /** An epoch starts at the latest this long after the previous one began (0: no bound). */
  maxIntervalMs: number;
  /**
   * Asked when a trigger's turn comes: false drops it (no epoch). Output
   * asks for the epoch its bytes wait for; between a start and that epoch's
   * suspend, output still joins the epoch starting, and the trigger it
   * raised is stale by the time it would start the next one.
   */
  due?: (t: Trigger) => boolean;
}

/**
 * Runs `epoch` for each trigger, one at a time: triggers that arrive while an
 * epoch runs (or while the minimum interval holds the next one back)
 * coalesce into a single pending epoch. Emits each epoch's results; an epoch
 * that errors ends the stream with its error.
 */
export function paceEpochs<R>(
  triggers$: Observable<Trigger>,
  epoch: (t: Trigger) => Observable<R>,
  options: PacingOptions,
  scheduler: SchedulerLike = asyncScheduler,
): Observable<R> {
  return new Observable<R>((subscriber) => {
    let running: Subscription | undefined;
    let held: Subscription | undefined; // a start waiting out the minimum interval
    let maxTimer: Subscription | undefined;
    let pending: Trigger | undefined;
    let lastStart = Number.NEGATIVE_INFINITY;
    let sourceDone = false;

    const finishIfIdle = (): void => {
      if (sourceDone && running === undefined && held === undefined && pending === undefined) {
        maxTimer?.unsubscribe();
        subscriber.complete();
      }
    };

    const keep = (t: Trigger): void => {
      if (pending === undefined || PRIORITY[t.reason] > PRIORITY[pending.reason]) pending = t;
      // Of two outputs the later epoch's: if the earlier is stale by its turn, the later may not be.
      else if (t.reason === 'output' && pending.reason === 'output' && (t.epoch ?? 0) > (pending.epoch ?? 0)) pending = t;
    };

    const armMax = (): void => {
      maxTimer?.unsubscribe();
      if (options.maxIntervalMs > 0 && !sourceDone) {
        maxTimer = scheduler.schedule(() => request({ reason: 'max-interval' }), options.maxIntervalMs);
      }
    };

    const start = (t: Trigger): void => {
      if (options.due !== undefined && !options.due(t)) {
        finishIfIdle();
        return;
      }
      lastStart = scheduler.now();
      armMax();
      let finished = false;
      running = epoch(t).subscribe({
        next: (r) => subscriber.next(r),
        error: (err: unknown) => subscriber.error(err),
        complete: () => {
          finished = true;
          running = undefined;
          if (pending !== undefined) {
            const next = pending;
            pending = undefined;
            request(next);
          } else finishIfIdle();
        },
      });
      if (finished) running = undefined;
    };

    const request = (t: Trigger): void => {
      if (running !== undefined || held !== undefined) {
        keep(t);
        return;
      }
      const wait = lastStart + options.minIntervalMs - scheduler.now();
      if (wait > 0) {
        keep(t);
        held = scheduler.schedule(() => {
          held = undefined;
          const next = pending!;
          pending = undefined;
          start(next);
        }, wait);
        return;
      }
      start(t);
    };

    armMax();
    const source = triggers$.subscribe({
      next: request,
      error: (err: unknown) => subscriber.error(err),
      complete: () => {
        // No more triggers: finish once the epoch in flight (if any) is done.
        sourceDone = true;
        if (pending?.reason === 'max-interval') pending = undefined;
        finishIfIdle();
      },
    });

    return () => {
      source.unsubscribe();
      running?.unsubscribe();
      held?.unsubscribe();
      maxTimer?.unsubscribe();
    };
  });
}
