/**
 * The one owner of the checkpoint mode: when the primary's engine takes a
 * checkpoint.
 *
 * - remus:  every interval (a timer); under the output policy also as soon
 *           as output is held (see triggers.ts, EpochPolicy);
 * - colo:   when the comparator asks (the replicas' output diverged), and at
 *           the maximum interval;
 * - manual: only when an operator asks.
 *
 * Which modes a run allows follows from its replication kind: a Remus
 * stream has no running secondary to compare with, so no colo; a COLO
 * stream may fall back to periodic checkpoints (remus) or to manual ones.
 *
 * Two parties change the mode. The hybrid policy switches between colo and
 * remus as divergences come and go; an operator (the monitor's set-mode)
 * picks one outright. An operator's remus or manual pins the mode: the
 * policy's switches are ignored until the operator picks colo again, which
 * hands the choice back to the policy.
 *
 * The engine's trigger pipeline, the COLO service and the monitor all read
 * mode$; nobody else keeps a copy.
 */
import { BehaviorSubject, distinctUntilChanged, filter, map, type Observable } from 'rxjs';
import { CheckpointError, CheckpointErrorCodes } from './errors.js';
import type { ReplicationKind } from './strategies.js';
import { outputTrigger, type EpochPolicy, type Trigger } from './triggers.js';

export type CheckpointMode = 'remus' | 'colo' | 'manual';

export interface ModeState {
  mode: CheckpointMode;
  /** The Remus interval, ms; kept while another mode runs, for when remus comes back. */
  intervalMs: number;
  /** Why the mode (or interval) is what it is, for operators. */
  reason: string;
  /** An operator chose remus or manual: the hybrid policy does not override it. */
  pinned: boolean;
}

export const MODES_FOR: Readonly<Record<ReplicationKind, readonly CheckpointMode[]>> = {
  remus: ['remus', 'manual'],
  colo: ['colo', 'remus', 'manual'],
};

export class ModeController {
  private readonly state$: BehaviorSubject<ModeState>;
  /** When Remus epochs start: the timer alone, or held output too (fixed for the run). */
  readonly policy: EpochPolicy;

  constructor(
    readonly kind: ReplicationKind,
    initial: { mode: CheckpointMode; intervalMs: number; reason: string; policy?: EpochPolicy },
  ) {
    const { policy = 'timer', ...state } = initial;
    this.policy = policy;
    this.state$ = new BehaviorSubject<ModeState>({ ...state, pinned: false });
    this.check(initial.mode);
  }

  /** The current mode and every change. */
  get mode$(): Observable<ModeState> {
    return this.state$;
  }

  get current(): ModeState {
    return this.state$.value;
  }

  /** The modes this run allows. */
  get allowed(): readonly CheckpointMode[] {
    return MODES_FOR[this.kind];
  }

  /** An operator picks a mode. */
  choose(mode: CheckpointMode, reason: string): void {
    this.check(mode);
    this.next({ mode, pinned: mode !== 'colo', reason });
  }

  /** The hybrid policy's switch; ignored while an operator's choice pins the mode. */
  switchTo(mode: CheckpointMode, reason: string): boolean {
    this.check(mode);
    if (this.current.pinned) return false;
    this.next({ mode, reason });
    return true;
  }

  setInterval(intervalMs: number, reason: string): void {
    if (!Number.isInteger(intervalMs) || intervalMs < 1) throw new CheckpointError(CheckpointErrorCodes.MODE_UNAVAILABLE, `interval must be a positive integer of ms, got ${intervalMs}`);
    this.next({ intervalMs, reason });
  }

  /** The timer's interval for the trigger pipeline: the Remus interval in remus mode, none otherwise. */
  interval$(): Observable<number | null> {
    return this.state$.pipe(
      map((s) => (s.mode === 'remus' ? s.intervalMs : null)),
      distinctUntilChanged(),
    );
  }

  /** Divergence requests that start a checkpoint: only in colo mode (in remus mode mismatched output waits for the timer). */
  gate(divergence$: Observable<Trigger>): Observable<Trigger> {
    return divergence$.pipe(filter(() => this.current.mode === 'colo'));
  }

  /**
   * Epochs for held output (the output buffer's "output waits for epoch N"):
   * only under the output policy and in remus mode (colo releases output
   * through the comparator, manual waits for the operator).
   */
  outputGate(waiting$: Observable<number>): Observable<Trigger> {
    return waiting$.pipe(
      filter(() => this.policy === 'output' && this.current.mode === 'remus'),
      map((epoch) => outputTrigger(epoch)),
    );
  }

  private next(change: Partial<ModeState>): void {
    this.state$.next({ ...this.current, ...change });
  }

  private check(mode: CheckpointMode): void {
    if (!this.allowed.includes(mode)) throw new CheckpointError(CheckpointErrorCodes.MODE_UNAVAILABLE, `mode ${mode} is not available in a ${this.kind} run (available: ${this.allowed.join(', ')})`);
  }
}
