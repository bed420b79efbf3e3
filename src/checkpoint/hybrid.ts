/**
 * The hybrid policy: COLO pays off only while the replicas mostly agree.
 * Each divergence costs a checkpoint on demand; when they come faster than
 * a Remus timer would checkpoint anyway, fixed-interval epochs are cheaper
 * and their latency is bounded. The policy watches the divergence requests
 * (the comparator keeps comparing in Remus mode, so they keep coming) and
 * emits a switch, with its reason, when the rate crosses a threshold: to
 * Remus when divergences are frequent, back to COLO once they have stayed
 * rare for a calm period. Two thresholds and the calm period keep it from
 * flapping.
 *
 * Time comes from an injected RxJS scheduler, so marble tests drive it.
 */
import { Observable, asyncScheduler, type SchedulerLike, type Subscription } from 'rxjs';

export type ReplicationMode = 'colo' | 'remus';

export interface ModeSwitch {
  mode: ReplicationMode;
  reason: string;
}

export interface HybridOptions {
  /** The sliding window divergences are counted over, ms. */
  windowMs: number;
  /** More divergences than this in one window: switch to Remus. */
  toRemusAbove: number;
  /** Back to COLO once no window has held more than this for `calmMs`. */
  toColoAtMost: number;
  calmMs: number;
}

export const DEFAULT_HYBRID: Readonly<HybridOptions> = { windowMs: 1000, toRemusAbove: 20, toColoAtMost: 2, calmMs: 5000 };

/** Checks the options: the return threshold must sit below the leave threshold, or the policy would flap. */
export function validateHybrid(o: HybridOptions): string | undefined {
  const ints: [string, number, number][] = [
    ['windowMs', o.windowMs, 1],
    ['toRemusAbove', o.toRemusAbove, 1],
    ['toColoAtMost', o.toColoAtMost, 0],
    ['calmMs', o.calmMs, 1],
  ];
  for (const [name, v, min] of ints) if (!Number.isInteger(v) || v < min) return `${name} must be an integer >= ${min}, got ${v}`;
  if (o.toColoAtMost >= o.toRemusAbove) return `toColoAtMost (${o.toColoAtMost}) must be below toRemusAbove (${o.toRemusAbove})`;
  return undefined;
}

/**
 * Mode switches for a stream of divergences, starting in COLO. Emits only
 * changes; completes when the divergences complete.
 */
export function hybridPolicy(divergences$: Observable<unknown>, options: HybridOptions, scheduler: SchedulerLike = asyncScheduler): Observable<ModeSwitch> {
  return new Observable<ModeSwitch>((subscriber) => {
    let mode: ReplicationMode = 'colo';
    // Times of the divergences inside the window, oldest first.
    const recent: number[] = [];
    let calm: Subscription | undefined;

    const countNow = (): number => {
      const since = scheduler.now() - options.windowMs;
      while (recent.length > 0 && recent[0] <= since) recent.shift();
      return recent.length;
    };

    const armCalm = (): void => {
      calm?.unsubscribe();
      calm = scheduler.schedule(() => {
        calm = undefined;
        mode = 'colo';
        subscriber.next({ mode, reason: `divergences calmed: at most ${options.toColoAtMost} per ${options.windowMs} ms for ${options.calmMs} ms` });
      }, options.calmMs);
    };

    const source = divergences$.subscribe({
      next: () => {
        recent.push(scheduler.now());
        const n = countNow();
        if (mode === 'colo') {
          if (n > options.toRemusAbove) {
            mode = 'remus';
            subscriber.next({ mode, reason: `${n} divergences in ${options.windowMs} ms (more than ${options.toRemusAbove}): periodic checkpoints are cheaper` });
            armCalm();
          }
        } else if (n > options.toColoAtMost) {
          // Not calm yet: the calm period starts over from here.
          armCalm();
        }
      },
      error: (err: unknown) => subscriber.error(err),
      complete: () => subscriber.complete(),
    });
    return () => {
      source.unsubscribe();
      calm?.unsubscribe();
    };
  });
}
