/**
 * The primary's side of noticing a silent peer. A partition or a hung
 * secondary leaves the replication connection open and silent; TCP notices
 * neither for minutes, and the ack timeout is sized for slow epochs, not for
 * this. When the heartbeat declares the secondary dead and the link has also
 * carried nothing for the timeout (plus the quiet a COLO link may keep while
 * the replicas agree), the session ends at once: the devices' teardown
 * applies the unprotected policy (with an arbiter, only after the domain
 * moved to the next generation) and the engine reconnects when it can.
 * Either sign alone is not enough: a one-sided cut of either channel must
 * not end a working session.
 */
import type { PeerState } from '../heartbeat/detector.js';
import type { Logger } from '../util/logger.js';

export interface SilentStandbyParts {
  heartbeat: {
    readonly peerState: PeerState;
    on(event: 'peer', fn: () => void): unknown;
    off(event: 'peer', fn: () => void): unknown;
  };
  engine: {
    readonly linkSilentMs: number | undefined;
    abandonLink(reason: string): void;
  };
}

export class SilentStandbyWatch {
  private timer: NodeJS.Timeout | undefined;
  private readonly onPeer = (): void => this.check();

  constructor(
    private readonly parts: SilentStandbyParts,
    private readonly timeoutMs: number,
    private readonly quietMs: number,
    private readonly logger: Logger,
  ) {}

  start(): void {
    this.parts.heartbeat.on('peer', this.onPeer);
  }

  stop(): void {
    clearTimeout(this.timer);
    this.parts.heartbeat.off('peer', this.onPeer);
  }

  check(): void {
    clearTimeout(this.timer);
    const { heartbeat, engine } = this.parts;
    if (heartbeat.peerState !== 'dead') return;
    const silent = engine.linkSilentMs;
    const limit = this.timeoutMs + this.quietMs;
    if (silent === undefined) {
      // No session now; the engine may open one to a standby that accepts and then hangs (its heartbeats never came): look again.
      this.timer = setTimeout(() => this.check(), limit);
      return;
    }
    if (silent >= limit) {
      const reason = `the secondary is silent on both channels (heartbeats for ${this.timeoutMs} ms, the replication link for ${Math.round(silent)} ms)`;
      this.logger.warn(reason);
      engine.abandonLink(reason);
      return;
    }
    // Looked at again when the link would have been silent long enough.
    this.timer = setTimeout(() => this.check(), Math.max(10, limit - silent));
  }
}
