/**
 * The failure detector for one incarnation of the peer.
 *
 *   unknown --heartbeat--> alive --no heartbeat for suspectAfterMs--> suspect
 *   suspect --heartbeat--> alive
 *   alive | suspect --nothing at all for timeoutMs--> dead
 *   dead --heartbeat--> alive      dead --other sign of life--> suspect
 *
 * How "peer dead" is told from "link slow":
 *
 * - Missing heartbeats alone only make the peer `suspect` (at exactly
 *   lastHeartbeat + suspectAfterMs, default 2 x interval). Suspect is a
 *   warning, never a reason to fail over.
 * - `dead` needs `timeoutMs` of total silence: no heartbeat AND no other
 *   sign of life noted with noteActivity() — bytes of a partial heartbeat
 *   frame trickling in, traffic on the replication link. The peer is
 *   declared dead at exactly lastEvidence + timeoutMs. So a peer whose
 *   heartbeats arrive late, but arrive (or whose bytes keep arriving) with
 *   gaps shorter than the timeout, is never declared dead.
 * - Before the first heartbeat the peer is `unknown` and no clock runs:
 *   a peer we never met is not "dead", it is absent; what to do about an
 *   absent peer is the caller's decision, not the detector's.
 * - `dead` is a verdict about now, not for good: a peer stalled longer than
 *   the timeout (a paused process, a partition that healed) and heard again
 *   is alive again, so a later, unrelated event (a link reset) is judged on
 *   what is true then. Whether the secondary already acted on the verdict is
 *   the failover rule's business: once promoted it stays promoted, and the
 *   old primary is fenced by generation. A restarted peer is a new
 *   incarnation and gets a new detector.
 */
import { HeartbeatError, HeartbeatErrorCodes as C } from './errors.js';
import { monotonicClock, type Clock } from './clock.js';

export type PeerState = 'unknown' | 'alive' | 'suspect' | 'dead';

export interface DetectorOptions {
  /** The peer's heartbeat interval, ms (default 50). */
  intervalMs?: number;
  /** Total silence after which the peer is dead, ms (default 250). */
  timeoutMs?: number;
  /** Heartbeat silence after which the peer is suspect, ms (default 2 x interval, below the timeout). */
  suspectAfterMs?: number;
  clock?: Clock;
}

export interface PeerTransition {
  from: PeerState;
  to: PeerState;
  /** Clock time of the transition, ms. */
  at: number;
  reason: string;
}

export const DEFAULT_INTERVAL_MS = 50;
export const DEFAULT_TIMEOUT_MS = 250;

export interface ResolvedTiming {
  intervalMs: number;
  timeoutMs: number;
  suspectAfterMs: number;
}

/** Validates and fills in the timing options; shared with the channel. */
export function resolveTiming(o: { intervalMs?: number; timeoutMs?: number; suspectAfterMs?: number }): ResolvedTiming {
  const intervalMs = o.intervalMs ?? DEFAULT_INTERVAL_MS;
  const timeoutMs = o.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const bad = (m: string): never => {
    throw new HeartbeatError(C.HEARTBEAT_BAD_OPTIONS, m);
  };
  if (!(Number.isFinite(intervalMs) && intervalMs > 0 && intervalMs <= 60_000)) bad(`interval ${intervalMs} ms is not in (0, 60000]`);
  if (!(Number.isFinite(timeoutMs) && timeoutMs > intervalMs && timeoutMs <= 600_000)) bad(`timeout ${timeoutMs} ms must exceed the interval (${intervalMs} ms) and be at most 600000`);
  const suspectAfterMs = o.suspectAfterMs ?? Math.min(2 * intervalMs, (intervalMs + timeoutMs) / 2);
  if (!(Number.isFinite(suspectAfterMs) && suspectAfterMs > 0 && suspectAfterMs < timeoutMs)) bad(`suspect-after ${suspectAfterMs} ms must be in (0, timeout ${timeoutMs} ms)`);
  return { intervalMs, timeoutMs, suspectAfterMs };
}

export class FailureDetector {
  private current: PeerState = 'unknown';
  private timing: ResolvedTiming | undefined;
  private lastHeartbeat = -Infinity;
  private lastEvidence = -Infinity;
  private cancelTimer: (() => void) | undefined;
  private timerAt = Infinity;
  /** The last timer fired late and its verdict waits for one more look (see onTimer). */
  private lookedAgain = false;
  private readonly listeners = new Set<(t: PeerTransition) => void>();

  constructor(private readonly options: DetectorOptions = {}) {}

  private get clock(): Clock {
    return this.options.clock ?? monotonicClock;
  }

  get state(): PeerState {
    return this.current;
  }

  /** Clock time of the last heartbeat, or -Infinity before the first. */
  get lastHeartbeatAt(): number {
    return this.lastHeartbeat;
  }

  /** Validates the options; throws HeartbeatError (HEARTBEAT_BAD_OPTIONS). */
  start(): void {
    this.timing ??= resolveTiming(this.options);
  }

  stop(): void {
    this.cancelTimer?.();
    this.cancelTimer = undefined;
    this.timerAt = Infinity;
    this.timing = undefined;
  }

  /** Subscribes to state changes; returns the unsubscribe function. */
  onTransition(fn: (t: PeerTransition) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** A valid heartbeat from the peer. Returns false if ignored (not started). */
  heard(at = this.clock.now()): boolean {
    if (this.timing === undefined) return false;
    const silentMs = at - this.lastEvidence;
    this.lastHeartbeat = Math.max(this.lastHeartbeat, at);
    this.lastEvidence = Math.max(this.lastEvidence, at);
    if (this.current === 'unknown') this.transition('alive', at, 'first heartbeat');
    else if (this.current === 'suspect') this.transition('alive', at, 'heartbeat received again');
    else if (this.current === 'dead') this.transition('alive', at, `heard again after ${round(silentMs)} ms of silence: the peer was stalled or cut off, not dead`);
    this.arm();
    return true;
  }

  /**
   * Any other sign that the peer is alive (heartbeat bytes short of a frame,
   * replication traffic). Postpones `dead` and takes a dead peer back to
   * `suspect`; never clears `suspect` (only a heartbeat does). O(1) and
   * timer-free while the peer is not dead, so the replication path may call
   * it per chunk.
   */
  noteActivity(at = this.clock.now()): void {
    if (this.timing === undefined) return;
    this.lastEvidence = Math.max(this.lastEvidence, at);
    if (this.current === 'dead') {
      this.transition('suspect', at, 'activity from the peer after it was declared dead (no heartbeat yet)');
      this.arm();
    }
  }

  /** Clock time of the last sign of life from any channel, or -Infinity before the first. */
  get lastEvidenceAt(): number {
    return this.lastEvidence;
  }

  private transition(to: PeerState, at: number, reason: string): void {
    const from = this.current;
    this.current = to;
    for (const fn of [...this.listeners]) fn({ from, to, at, reason });
  }

  /**
   * Keeps one timer, set for the earliest deadline. Evidence only moves
   * deadlines later, so a timer already set earlier stays and re-evaluates
   * when it fires: no timer churn per heartbeat or per activity note.
   */
  private arm(): void {
    const t = this.timing;
    if (t === undefined || this.current === 'dead' || this.current === 'unknown') return;
    const deadAt = this.lastEvidence + t.timeoutMs;
    const next = this.current === 'alive' ? Math.min(this.lastHeartbeat + t.suspectAfterMs, deadAt) : deadAt;
    if (this.cancelTimer !== undefined && this.timerAt <= next) return;
    this.cancelTimer?.();
    this.timerAt = next;
    this.cancelTimer = this.clock.setTimer(Math.max(0, next - this.clock.now()), () => this.onTimer());
  }

  private onTimer(): void {
    const due = this.timerAt;
    this.cancelTimer = undefined;
    this.timerAt = Infinity;
    const t = this.timing;
    if (t === undefined) return;
    const now = this.clock.now();
    // Fired far past its time: this process was stalled (SIGSTOP, a long pause), and the peer's frames
    // may be waiting unread in the socket. The silence may be ours: look again once I/O has been read.
    if (now - due > t.timeoutMs / 2 && !this.lookedAgain) {
      this.lookedAgain = true;
      // One heartbeat interval: enough for the sockets to be read, and for a connection the peer made
      // while we were stopped (it gave up the silent one) to be accepted and read.
      this.timerAt = now + t.intervalMs;
      this.cancelTimer = this.clock.setTimer(t.intervalMs, () => this.onTimer());
      return;
    }
    this.lookedAgain = false;
    if (this.current === 'alive' && now - this.lastHeartbeat >= t.suspectAfterMs) {
      this.transition('suspect', now, `no heartbeat for ${round(now - this.lastHeartbeat)} ms (suspect after ${t.suspectAfterMs} ms)`);
      if (this.timing === undefined) return; // a listener stopped us
    }
    if (this.current !== 'dead' && now - this.lastEvidence >= t.timeoutMs) {
      const hb = now - this.lastHeartbeat;
      this.transition('dead', now, `nothing received for ${round(now - this.lastEvidence)} ms (timeout ${t.timeoutMs} ms; last heartbeat ${round(hb)} ms ago)`);
      return;
    }
    this.arm();
  }
}

const round = (ms: number): number => Math.round(ms * 10) / 10;
