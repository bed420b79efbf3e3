/**
 * The primary's side of being stranded. Cut off from its secondary's
 * replication port and from the arbiter, with heartbeats still passing, a
 * primary can serve nothing: no replica acks its output, and without the
 * arbiter's authority output no replica holds stays held. Its secondary,
 * hearing it alive, would wait for ever, while the arbiter would give the
 * domain to that secondary's replica at once (the record still says
 * "protected at its generation"). So the primary says it on its heartbeats,
 * and the secondary's FailoverRule may ask the arbiter.
 *
 * Stranded: an arbiter decides, it gives no authority now, and protection is
 * not running. A primary between losing protection and the arbiter's answer
 * is stranded for a round trip; the secondary waits out its timeout first.
 */
import type { Observable, Subscription } from 'rxjs';
import type { Logger } from '../util/logger.js';

export interface StrandedParts {
  arbiter: {
    readonly kind: string;
    valid(): boolean;
    on(event: 'authority', fn: () => void): unknown;
    off(event: 'authority', fn: () => void): unknown;
  };
  /** Whether protection runs now (a session whose first checkpoint was acked). */
  protection: Observable<boolean>;
  heartbeat: { setStranded(stranded: boolean): void };
}

export class StrandedSignal {
  private protectedNow = false;
  private stranded = false;
  private detach: (() => void) | undefined;

  constructor(
    private readonly parts: StrandedParts,
    private readonly logger: Logger,
  ) {}

  start(): void {
    const { arbiter, protection } = this.parts;
    if (arbiter.kind === 'none' || this.detach !== undefined) return;
    const onAuthority = (): void => this.update();
    arbiter.on('authority', onAuthority);
    const sub: Subscription = protection.subscribe((p) => {
      this.protectedNow = p;
      this.update();
    });
    this.detach = () => {
      arbiter.off('authority', onAuthority);
      sub.unsubscribe();
    };
    this.update();
  }

  stop(): void {
    this.detach?.();
    this.detach = undefined;
  }

  private update(): void {
    const stranded = !this.protectedNow && !this.parts.arbiter.valid();
    if (stranded === this.stranded) return;
    this.stranded = stranded;
    if (stranded) this.logger.warn('stranded: no replica acks this node\'s output and the arbiter gives it no authority to release it alone; the heartbeats tell the secondary, which may take over');
    else this.logger.info('no longer stranded');
    this.parts.heartbeat.setStranded(stranded);
  }
}
