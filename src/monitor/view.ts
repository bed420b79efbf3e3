/**
 * Text views of the event stream for the terminal: one line per event (logs,
 * pipes) and a full-screen summary that is redrawn (a TTY). Pure functions
 * of the events, so they are tested without a terminal.
 */
import type { ArbiterView } from '../arbiter/arbiter.js';
import type { EpochFields, FailoverFields, MonitorEvent, MonitorMode, MonitorState, NodeRole, PeerFields, PrecopyFields, SnapshotEvent } from './events.js';

const ms = (v: number | null): string => (v === null ? '-' : v < 10 ? v.toFixed(2) : v.toFixed(0));
const bytes = (n: number): string => (n < 1024 ? `${n} B` : n < 1024 ** 2 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / 1024 ** 2).toFixed(1)} MiB`);
const time = (ts: number): string => new Date(ts).toISOString().slice(11, 23);

export function epochLine(e: EpochFields): string {
  const pause = e.pauseUs === null ? '' : ` pause ${ms(e.pauseUs / 1000)} ms`;
  const total = e.totalMs !== null ? ` total ${ms(e.totalMs)} ms` : e.applyMs !== null ? ` apply ${ms(e.applyMs)} ms` : '';
  return `epoch ${e.epoch} (${e.trigger})${pause} dirty ${e.dirtyPages} ${bytes(e.bytes)}${total}`;
}

/** A pre-copy report in words: round, pages, %, rate, ETA. */
export function precopyLine(p: PrecopyFields): string {
  if (p.done) return `pre-copy: live rounds done after ${p.iteration} round${p.iteration === 1 ? '' : 's'}, ${bytes(p.bytes)} in ${(p.elapsedMs / 1000).toFixed(1)} s; first checkpoint`;
  const pages = p.pagesSent === null ? '' : ` ${p.pagesSent}${p.pagesTotal === null ? '' : `/${p.pagesTotal}`} pages${p.percent === null ? '' : ` (${p.percent.toFixed(1)} %)`}`;
  const eta = p.etaMs === null ? '' : ` ETA ${Math.ceil(p.etaMs / 1000)} s`;
  return `pre-copy round ${p.iteration}:${pages} ${bytes(p.bytes)} at ${bytes(Math.round(p.bytesPerSecond))}/s${eta}`;
}

/** Who may serve, in words: the dashboard, `tandem status` and `tandem watch` say the same. */
export function arbiterLine(a: ArbiterView): string {
  if (a.kind === 'none') return 'none (each node decides alone: a partition can make both serve)';
  if (a.holder === null) return `etcd: nobody holds it${a.generation === null ? '' : ` (last generation ${a.generation})`}`;
  return `${a.holder} holds it at generation ${a.generation ?? '?'}, ${a.protected ? 'protected' : 'unprotected'}`;
}

/** The other node in one line: the dashboard's peer card, `tandem watch` and `tandem status` say the same. */
export function peerLine(p: PeerFields | null): string {
  if (p === null) return 'no peer monitor configured (monitor.peer)';
  if (!p.reachable) {
    const last = p.fetchedAt === null ? 'never read' : `last read ${new Date(p.fetchedAt).toISOString()}: ${p.node ?? '?'} ${p.state ?? '?'}`;
    return `${p.url} UNREACHABLE: ${p.error ?? 'no answer'} (${last})`;
  }
  const parts = [
    `${p.node ?? '?'} ${p.state ?? '?'}`,
    `generation ${p.generation ?? '-'}`,
    `heartbeat ${p.heartbeat ?? 'n/a'}`,
    `epoch ${p.lastEpoch ?? '-'}`,
    `lag ${p.lagMs === null ? '-' : `${ms(p.lagMs)} ms`}`,
  ];
  if (p.heldBytes !== null) parts.push(`held ${bytes(p.heldBytes)}`);
  parts.push(`clients ${p.clients ?? '-'}`);
  return `${parts.join(', ')} (${p.url})`;
}

/** When and why a node last took over (or was fenced). */
export function failoverLine(f: FailoverFields): string {
  return `${new Date(f.ts).toISOString()}${f.generation === null ? '' : ` (generation ${f.generation})`}: ${f.reason}`;
}

/** The domain a message is about, if it says (broadcasts of a monitor that shows domains do). */
export function domainOf(e: MonitorEvent): string | undefined {
  return 'domain' in e && typeof e.domain === 'string' ? e.domain : undefined;
}

/** One line describing an event; `withDomain`: the line names its domain (a monitor showing several). */
export function eventLine(e: MonitorEvent, withDomain = false): string {
  const domain = withDomain ? domainOf(e) : undefined;
  const head = `${time(e.ts)} ${e.node}${domain === undefined ? '' : ` [${domain}]`}`;
  switch (e.type) {
    case 'snapshot':
      return `${head} snapshot: ${e.state} (${e.reason}); mode ${e.mode ?? 'n/a'}${e.intervalMs === null ? '' : ` ${e.intervalMs} ms`}; epoch ${e.lastEpoch}; lag ${e.lagMs === null ? '-' : `${ms(e.lagMs)} ms`}; clients ${e.clients}; arbiter: ${arbiterLine(e.arbiter)}`;
    case 'epoch':
      return `${head} ${epochLine(e)}`;
    case 'precopy':
      return `${head} ${precopyLine(e)}`;
    case 'divergence':
      return `${head} DIVERGENCE${e.connection === null ? '' : ` on ${e.connection}`}: ${e.reason}`;
    case 'state':
      return `${head} state ${e.previous} -> ${e.state}: ${e.reason}`;
    case 'mode':
      return `${head} mode ${e.mode}${e.intervalMs === null ? '' : ` ${e.intervalMs} ms`}: ${e.reason}`;
    case 'control':
      return `${head} control ${e.action} by ${e.by}: ${e.ok ? 'done' : `refused ${e.code ?? ''}`}`;
    case 'peer':
      return `${head} peer: ${peerLine(e.peer)}`;
    case 'failover':
      return `${head} FAILOVER${e.generation === null ? '' : ` (generation ${e.generation})`}: ${e.reason}`;
    case 'dropped':
      return `${head} (missed ${e.count} events: this client was too slow)`;
    case 'reply':
      return `${head} reply ${String(e.id)}: ${e.action} done`;
    case 'error':
      return `${head} error ${String(e.id)}: ${e.message} [${e.code}]`;
    case 'detached':
      return `${head} domain ${e.domain ?? '?'} is no longer shown here`;
    case 'domains':
      return `${head} status of ${e.domains.length} domains: ${e.domains.map((d) => `${d.domain ?? '?'} ${d.state}`).join(', ') || 'none'}`;
  }
}

/**
 * The full-screen view of a monitor that may show several domains: one
 * WatchView per domain, fed the events stamped with its name; one domain
 * shows as a monitor of one node always did.
 */
export class DomainsWatchView {
  private readonly views = new Map<string, WatchView>();

  /** Domains seen so far: lines name theirs once there are several. */
  get size(): number {
    return this.views.size;
  }

  apply(e: MonitorEvent): void {
    const domain = domainOf(e);
    if (domain === undefined && !('seq' in e)) {
      // A message to this client alone (dropped, an error): every domain's log tells it.
      for (const v of this.views.values()) v.apply(e);
      if (this.views.size > 0) return;
    }
    const key = domain ?? '';
    if (e.type === 'detached') {
      this.views.delete(key);
      return;
    }
    let view = this.views.get(key);
    if (view === undefined) this.views.set(key, (view = new WatchView()));
    view.apply(e);
  }

  render(now: number, columns = 100): string {
    if (this.views.size <= 1) return (this.views.values().next().value ?? new WatchView()).render(now, columns);
    return [...this.views].map(([name, v]) => `== domain ${name} ==\n${v.render(now, columns)}`).join('\n\n');
  }
}

/** Keeps what the full-screen view shows. */
export class WatchView {
  private node: NodeRole | undefined;
  private state: MonitorState | undefined;
  private reason = '';
  private mode: MonitorMode | null = null;
  private intervalMs: number | null = null;
  private lastEpoch = 0;
  /** Wall-clock time of the last epoch, for the lag shown. */
  private lastEpochTs: number | undefined;
  private lagAtSnapshot: { lagMs: number; ts: number } | undefined;
  private peer: PeerFields | null = null;
  private lastFailover: FailoverFields | null = null;
  private readonly epochs: EpochFields[] = [];
  private readonly log: string[] = [];
  private readonly perSecond = new Map<number, { epochs: number; bytes: number }>();

  apply(e: MonitorEvent): void {
    switch (e.type) {
      case 'snapshot':
        this.fromSnapshot(e);
        return;
      case 'epoch':
        this.addEpoch(e, e.ts);
        return;
      case 'state':
        this.state = e.state;
        this.reason = e.reason;
        break;
      case 'mode':
        this.mode = e.mode;
        this.intervalMs = e.intervalMs;
        break;
      case 'peer':
        this.peer = e.peer;
        // A refresh of its numbers is not news for the log.
        if (e.changed.length === 0) return;
        break;
      case 'failover':
        this.lastFailover = { ts: e.ts, reason: e.reason, generation: e.generation };
        break;
      default:
        break;
    }
    this.logLine(eventLine(e));
  }

  private logLine(line: string): void {
    this.log.push(line);
    if (this.log.length > 8) this.log.shift();
  }

  /** The screen, for a terminal `columns` wide, at wall-clock time `now`. */
  render(now: number, columns = 100): string {
    const lagMs = this.lastEpochTs !== undefined ? now - this.lastEpochTs : this.lagAtSnapshot ? this.lagAtSnapshot.lagMs + (now - this.lagAtSnapshot.ts) : null;
    const second = Math.floor(now / 1000) - 1;
    let epochs = 0;
    let sent = 0;
    for (let s = second - 4; s <= second; s++) {
      const b = this.perSecond.get(s);
      epochs += b?.epochs ?? 0;
      sent += b?.bytes ?? 0;
    }
    const lines = [
      `tandem ${this.node ?? '?'}  state ${(this.state ?? '?').toUpperCase()}  (${this.reason})`,
      `mode ${this.mode ?? 'n/a'}${this.intervalMs === null ? '' : ` every ${this.intervalMs} ms`}   epoch ${this.lastEpoch}   lag ${lagMs === null ? '-' : `${ms(Math.max(0, lagMs))} ms`}   ${(epochs / 5).toFixed(1)} epochs/s   ${bytes(Math.round(sent / 5))}/s`,
      `peer ${peerLine(this.peer)}`,
      ...(this.lastFailover === null ? [] : [`last failover ${failoverLine(this.lastFailover)}`]),
      '',
      'recent epochs:',
      ...this.epochs.slice(-10).map((e) => `  ${epochLine(e)}`),
      '',
      'events:',
      ...this.log.map((l) => `  ${l}`),
    ];
    // A pseudo-terminal without a size reports 0 columns.
    const width = columns >= 20 ? columns : 100;
    return lines.map((l) => (l.length > width ? `${l.slice(0, width - 1)}…` : l)).join('\n');
  }

  private fromSnapshot(e: SnapshotEvent): void {
    this.node = e.node;
    this.state = e.state;
    this.reason = e.reason;
    this.mode = e.mode;
    this.intervalMs = e.intervalMs;
    this.lastEpoch = e.lastEpoch;
    this.lastEpochTs = undefined;
    this.lagAtSnapshot = e.lagMs === null ? undefined : { lagMs: e.lagMs, ts: e.ts };
    this.epochs.length = 0;
    this.perSecond.clear();
    for (const r of e.recent) this.addEpoch(r, r.ts);
    this.lastEpochTs = undefined;
    this.peer = e.peer;
    this.lastFailover = e.lastFailover;
    // What happened before this client came: the server's history.
    this.log.length = 0;
    for (const h of e.history) this.logLine(eventLine(h));
  }

  private addEpoch(e: EpochFields, ts: number): void {
    this.lastEpoch = e.epoch;
    this.lastEpochTs = ts;
    this.epochs.push(e);
    if (this.epochs.length > 10) this.epochs.shift();
    const key = Math.floor(ts / 1000);
    const b = this.perSecond.get(key) ?? { epochs: 0, bytes: 0 };
    b.epochs++;
    b.bytes += e.bytes;
    this.perSecond.set(key, b);
    for (const k of this.perSecond.keys()) if (k < key - 10) this.perSecond.delete(k);
  }
}
