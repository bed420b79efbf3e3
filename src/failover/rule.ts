/**
 * When the secondary takes over: only when both signs agree that the
 * primary is gone. Heartbeats silent for the timeout alone are not enough
 * while the replication stream is still open and carrying bytes (the
 * heartbeat path may be the only broken one, and the primary then still
 * commits epochs here); the stream's end alone is not enough either (a
 * reset link is not a dead primary). A stream that stays open but carries
 * nothing for the timeout (a partition, a hung primary: TCP notices neither
 * for minutes) counts as gone. Whichever sign comes second triggers the
 * promotion.
 *
 * A primary that stops in order says what it wants on its heartbeats: stand
 * down (no failover, whatever the silence after) or hand over (take over as
 * soon as its stream has ended, without waiting for the timeout).
 *
 * A primary that lives but can serve nothing says so too: stranded, it holds
 * its output, with no replica acking it and no authority from the arbiter
 * to release it alone (cut off from both its secondary's replication port
 * and the arbiter, while heartbeats still pass). Said for the timeout, with
 * no stream here carrying its checkpoints, that is a third way to fail over;
 * only where an arbiter decides, whose claim then takes the domain only if
 * the record still says the primary is protected at this replica's
 * generation (a primary that reached the arbiter and went on alone has
 * moved the record on, and the claim is refused).
 */
import { isTransient } from '../arbiter/errors.js';
import type { Logger } from '../util/logger.js';
import type { PeerState } from '../heartbeat/detector.js';

const DEFAULT_RETRY_MS = 200;

export interface FailoverSigns {
  /** The failure detector's verdict on the primary. */
  peer: PeerState;
  /** A primary's replication stream is open. */
  streamOpen: boolean;
  /** It has carried nothing for the failure timeout. */
  streamSilent?: boolean;
  /** A promotion already happened (or is under way). */
  promoted: boolean;
  /** The primary said, stopping in order, what to do (undefined: it did not). */
  leaving?: 'stand-down' | 'hand-over';
  /** The primary, alive, has said for the timeout that it is stranded, no stream carries its checkpoints here, and the replica holds one. */
  stranded?: boolean;
}

export type FailoverVerdict = 'promote' | 'wait-for-stream' | 'stay';

export function failoverVerdict(signs: FailoverSigns): FailoverVerdict {
  if (signs.promoted || signs.leaving === 'stand-down') return 'stay';
  if (signs.leaving === 'hand-over') return signs.streamOpen ? 'wait-for-stream' : 'promote';
  if (signs.peer !== 'dead') return signs.stranded === true ? 'promote' : 'stay';
  return signs.streamOpen && signs.streamSilent !== true ? 'wait-for-stream' : 'promote';
}

/** The parts of the secondary the rule watches and drives. */
export interface FailoverParts {
  heartbeat: {
    readonly peerState: PeerState;
    /** What the primary said it does on leaving (undefined: it runs). */
    readonly peerIntent?: 'stand-down' | 'hand-over' | undefined;
    /** For how long the primary has said it is stranded, ms (undefined: it does not). */
    readonly peerStrandedMs?: number | undefined;
    on(event: 'peer' | 'leaving' | 'stranded', fn: () => void): unknown;
    off(event: 'peer' | 'leaving' | 'stranded', fn: () => void): unknown;
  };
  server: {
    /** The remote address of the primary streaming now, if any. */
    readonly primary: string | undefined;
    /** Since the open stream last carried bytes, ms (undefined: none open). */
    readonly streamSilentMs?: number | undefined;
    /** The last complete epoch the replica holds (0: none to go back to). */
    readonly lastEpoch: number;
    on(event: 'primary-gone', fn: () => void): unknown;
    off(event: 'primary-gone', fn: () => void): unknown;
  };
  promoter: {
    /** A promotion is done or under way. */
    readonly engaged: boolean;
    promote(reason: string): Promise<unknown>;
  };
}

export class FailoverRule {
  private detach: (() => void) | undefined;
  private retry: NodeJS.Timeout | undefined;
  private recheck: NodeJS.Timeout | undefined;
  private waitingSaid = false;

  constructor(
    private readonly parts: FailoverParts,
    private readonly timeoutMs: number,
    private readonly logger: Logger,
    /** How soon a refusal that may pass is retried (the arbiter held by a lease that is running out). */
    private readonly retryMs = DEFAULT_RETRY_MS,
    /**
     * The longest an open stream may carry nothing while its primary lives
     * (COLO checkpoints only every colo.max_interval_ms when the replicas
     * agree): silence beyond it plus the timeout counts as gone.
     */
    private readonly quietMs = 0,
    /** An arbiter decides who serves: only then does a stranded primary's word count. */
    private readonly arbiterDecides = false,
  ) {}

  start(): void {
    const { heartbeat, server } = this.parts;
    const onPeer = (): void => {
      this.check();
    };
    // The server lets go of the connection right after telling us.
    const onGone = (): void => {
      setImmediate(() => this.check());
    };
    heartbeat.on('peer', onPeer);
    heartbeat.on('leaving', onPeer);
    heartbeat.on('stranded', onPeer);
    server.on('primary-gone', onGone);
    this.detach = () => {
      heartbeat.off('peer', onPeer);
      heartbeat.off('leaving', onPeer);
      heartbeat.off('stranded', onPeer);
      server.off('primary-gone', onGone);
    };
  }

  stop(): void {
    clearTimeout(this.retry);
    clearTimeout(this.recheck);
    this.detach?.();
    this.detach = undefined;
  }

  /**
   * How long an open stream must carry nothing to count as gone: one
   * timeout more than the primary allows a silent secondary
   * (SilentStandbyWatch: timeout + quiet). When a partition leaves both
   * nodes alive and reaching the arbiter, the primary then moves on first
   * and keeps serving, and this side's claim finds the domain moved: no
   * failover from a live primary. A primary that died is noticed sooner,
   * by its stream's end.
   */
  private get silenceMs(): number {
    return 2 * this.timeoutMs + this.quietMs;
  }

  /**
   * Whether a stranded primary's word is reason to take over now: said for
   * the timeout (a primary between a lost stream and its next one, or between
   * losing protection and the arbiter's answer, says it briefly), with no
   * stream here carrying checkpoints (a new stream's pre-copy: the replica
   * has given up its checkpoint anyway) and a checkpoint to go back to.
   * `inMs`: when it would be, if nothing changes (undefined: never, as things are).
   */
  private strandedFor(): { now: boolean; inMs: number | undefined } {
    const { heartbeat, server } = this.parts;
    const saidMs = heartbeat.peerStrandedMs;
    if (!this.arbiterDecides || saidMs === undefined || server.lastEpoch < 1) return { now: false, inMs: undefined };
    const silentMs = server.primary === undefined ? Infinity : (server.streamSilentMs ?? 0);
    const inMs = Math.max(this.timeoutMs - saidMs, this.timeoutMs - silentMs, 0);
    return { now: inMs === 0, inMs };
  }

  /** Looks at the signs now and acts on them. */
  check(): FailoverVerdict {
    if (this.detach === undefined) return 'stay';
    const { heartbeat, server, promoter } = this.parts;
    const silentMs = server.streamSilentMs;
    const stranded = this.strandedFor();
    const verdict = failoverVerdict({
      peer: heartbeat.peerState,
      streamOpen: server.primary !== undefined,
      streamSilent: silentMs !== undefined && silentMs >= this.silenceMs,
      promoted: promoter.engaged,
      leaving: heartbeat.peerIntent,
      stranded: stranded.now,
    });
    const handOver = heartbeat.peerIntent === 'hand-over';
    clearTimeout(this.recheck);
    if (verdict === 'stay' && stranded.inMs !== undefined && stranded.inMs > 0) {
      // Looked at again when the stranded primary's word has lasted the timeout, or its leftover stream has been silent for it.
      this.recheck = setTimeout(() => this.check(), Math.max(10, stranded.inMs));
    }
    if (verdict === 'wait-for-stream' && handOver) {
      // The stream's clean end comes next; it calls check() again.
    } else if (verdict === 'wait-for-stream') {
      if (!this.waitingSaid) this.logger.warn('heartbeats lost but the replication stream still carries data: waiting for it to end or fall silent before failing over');
      this.waitingSaid = true;
      // Looked at again when it would have been silent for the timeout, if nothing else happens first.
      this.recheck = setTimeout(() => this.check(), Math.max(10, this.silenceMs - (silentMs ?? 0)));
    } else {
      this.waitingSaid = false;
    }
    if (verdict === 'promote') {
      // The promoter takes the next generation itself, and only if it can fail over.
      const how = server.primary === undefined ? 'its stream ended' : 'its stream silent too';
      const reason = handOver
        ? 'planned switchover: the primary stopped in order and handed over'
        : stranded.now
          ? `the primary has been stranded for ${Math.round(heartbeat.peerStrandedMs ?? 0)} ms (no replica acks its output and the arbiter gives it no authority), ${server.primary === undefined ? 'no stream here' : 'its stream here silent'}`
          : `primary silent for ${this.timeoutMs} ms, ${how}`;
      promoter.promote(reason).catch((err: unknown) => {
        // promote() logged why it cannot fail over; stay a secondary. A refusal that
        // may pass (the primary's lease still live) is asked again while the signs hold.
        if (isTransient(err) && this.detach !== undefined) {
          clearTimeout(this.retry);
          this.retry = setTimeout(() => this.check(), this.retryMs);
        }
      });
    }
    return verdict;
  }
}
