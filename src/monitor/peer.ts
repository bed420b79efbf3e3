/**
 * The other node of the pair, as its own monitor tells it (`monitor.peer`):
 * this node reads the peer's /api/status about once a second, so either
 * node's dashboard and `tandem status` show both.
 *
 * What comes back is the peer's word, from the network: the answer is read
 * up to a size limit and within a time, checked against the schema, and its
 * free text cut short before it goes into this node's events. A peer that
 * cannot be read is `reachable: false` with the reason in words, never an
 * error of this node; the log says so once when it goes away and once when
 * it is back, not at every poll.
 *
 * The token (this node's own monitor token) is sent only once the peer has
 * asked for one (HTTP 401): a peer open to reading never sees it.
 */
import type { Logger } from '../util/logger.js';
import { fetchStatus, monitorUrls, type MonitorUrls } from './client.js';
import { MonitorError, MonitorErrorCodes as C } from './errors.js';
import type { FailoverFields, PeerEvent, PeerFields, SnapshotEvent } from './events.js';

export const DEFAULT_PEER_INTERVAL_MS = 1000;
export const DEFAULT_PEER_TIMEOUT_MS = 2000;
/** A brief snapshot (no recent epochs, no history) is a few KiB; a full one tens of KiB, up to a few hundred. More is not a monitor's answer. */
export const DEFAULT_PEER_MAX_BYTES = 256 * 1024;
/** A peer's reason or our error, cut to this in our events (they go into every snapshot's history). */
const MAX_TEXT_CHARS = 300;
/** After the peer refused us (a token, a lockout), ask this many intervals later: its lockout is not fed. */
const REFUSED_BACKOFF = 10;
const MAX_BACKOFF_MS = 60_000;

/** What changes the meaning of the peer view; the other fields are numbers that move with every epoch. */
const MEANINGFUL = ['reachable', 'error', 'node', 'state', 'reason', 'generation', 'heartbeat'] as const;
const NUMBERS = ['lastEpoch', 'lagMs', 'heldBytes', 'clients'] as const;

export type PeerEventBody = Omit<PeerEvent, 'v' | 'ts' | 'node' | 'seq'>;

export interface PeerWatchOptions {
  /** The peer's monitor: http://HOST:PORT/ or HOST:PORT. */
  url: string;
  /**
   * The domain to read there: the pair's two nodes show a domain under the
   * same (arbiter) name, so a monitor of several domains reads each one's
   * peer by its name. A peer monitor older than domains ignores it.
   */
  domain?: string;
  /** This node's monitor token, sent to a peer that asks for one. */
  token?: string | undefined;
  intervalMs?: number;
  /** A whole answer within this, or the peer counts as unreachable. */
  timeoutMs?: number;
  maxBytes?: number;
  logger: Logger;
  /** Wall clock, ms since the Unix epoch (fetchedAt). */
  now?: () => number;
  /** Each change of the view, as a `peer` event body. */
  onEvent: (body: PeerEventBody) => void;
}

const clip = (text: string): string => (text.length > MAX_TEXT_CHARS ? `${text.slice(0, MAX_TEXT_CHARS)}...` : text);

/** The view before the first answer. */
function unknownPeer(url: string): PeerFields {
  return { url, reachable: false, error: 'not asked yet', fetchedAt: null, node: null, state: null, reason: null, generation: null, heartbeat: null, lastEpoch: null, lagMs: null, heldBytes: null, clients: null, lastFailover: null };
}

function failoverOf(f: FailoverFields | null): FailoverFields | null {
  return f === null ? null : { ts: f.ts, reason: clip(f.reason), generation: f.generation };
}

export class PeerWatch {
  private current: PeerFields;
  private urls: MonitorUrls | undefined;
  private timer: NodeJS.Timeout | undefined;
  private inflight: AbortController | undefined;
  private running = false;
  /** The peer asked for a token and we have one: it goes with every request from now on. */
  private sendToken = false;
  /** Said in the log: the peer answers (true), does not (false), nothing said yet (undefined). */
  private said: boolean | undefined;

  constructor(private readonly options: PeerWatchOptions) {
    this.current = unknownPeer(options.url);
  }

  /** The peer as last read. */
  view(): PeerFields {
    return { ...this.current };
  }

  /** Starts polling (the first request at once). Throws MONITOR_BAD_OPTIONS for a URL that is not a monitor's. */
  start(): void {
    if (this.running) return;
    this.urls = monitorUrls(this.options.url);
    if (this.urls.http.protocol !== 'http:') throw new MonitorError(C.MONITOR_BAD_OPTIONS, `monitor.peer: ${this.options.url}: a monitor serves http://`);
    this.current = { ...this.current, url: this.urls.http.href };
    this.running = true;
    this.schedule(0);
  }

  stop(): void {
    this.running = false;
    clearTimeout(this.timer);
    this.timer = undefined;
    this.inflight?.abort();
    this.inflight = undefined;
  }

  private get intervalMs(): number {
    return this.options.intervalMs ?? DEFAULT_PEER_INTERVAL_MS;
  }

  private schedule(ms: number): void {
    if (!this.running) return;
    this.timer = setTimeout(() => void this.poll(), ms);
    this.timer.unref();
  }

  private async poll(): Promise<void> {
    const abort = new AbortController();
    this.inflight = abort;
    let next = this.intervalMs;
    try {
      const s = await fetchStatus(this.urls!, this.sendToken ? this.options.token : undefined, {
        timeoutMs: this.options.timeoutMs ?? DEFAULT_PEER_TIMEOUT_MS,
        maxBytes: this.options.maxBytes ?? DEFAULT_PEER_MAX_BYTES,
        signal: abort.signal,
        brief: true,
        ...(this.options.domain === undefined ? {} : { domain: this.options.domain }),
      });
      if (!this.running) return;
      this.update(this.fromSnapshot(s));
    } catch (err) {
      if (!this.running) return;
      const e = err instanceof MonitorError ? err : new MonitorError(C.MONITOR_UNREACHABLE, String(err), { cause: err });
      if (e.code === C.MONITOR_UNAUTHORIZED && !this.sendToken && this.options.token !== undefined) {
        // It reads only with the token: ask again at once, with it.
        this.sendToken = true;
        next = 0;
      } else {
        if (e.code === C.MONITOR_UNAUTHORIZED || e.code === C.MONITOR_RATE_LIMITED) next = Math.min(MAX_BACKOFF_MS, this.intervalMs * REFUSED_BACKOFF);
        this.update({ ...this.current, reachable: false, error: clip(this.words(e)) });
      }
    } finally {
      if (this.inflight === abort) this.inflight = undefined;
    }
    this.schedule(next);
  }

  private fromSnapshot(s: SnapshotEvent): PeerFields {
    return {
      url: this.current.url,
      reachable: true,
      error: null,
      fetchedAt: (this.options.now ?? Date.now)(),
      node: s.node,
      state: s.state,
      reason: clip(s.reason),
      generation: s.generation,
      heartbeat: s.heartbeat,
      lastEpoch: s.lastEpoch,
      lagMs: s.lagMs,
      heldBytes: s.heldBytes,
      clients: s.clients,
      lastFailover: failoverOf(s.lastFailover),
    };
  }

  /** Why the peer cannot be read, for an operator. */
  private words(e: MonitorError): string {
    if (e.code === C.MONITOR_UNAUTHORIZED) {
      return this.options.token === undefined
        ? "the peer's monitor wants a token to be read, and this node has none (monitor.token or token_file, the same as the peer's)"
        : "the peer's monitor refused this node's token (HTTP 401): both nodes need the same monitor token";
    }
    if (e.code === C.MONITOR_RATE_LIMITED) return "the peer's monitor refuses this address for now (HTTP 429: too many wrong tokens from it)";
    return e.message;
  }

  private update(next: PeerFields): void {
    const prev = this.current;
    this.current = next;
    const changed: string[] = MEANINGFUL.filter((k) => prev[k] !== next[k]);
    if (prev.lastFailover?.ts !== next.lastFailover?.ts) changed.push('lastFailover');
    const moved = NUMBERS.some((k) => prev[k] !== next[k]);
    if (changed.length === 0 && !moved) return;
    this.log(next);
    // The event's own `node` is the envelope's (this node): the peer's role is in `peer`.
    const flat = Object.fromEntries(Object.entries(next).filter(([k]) => k !== 'node')) as Omit<PeerFields, 'node'>;
    this.options.onEvent({ type: 'peer', ...flat, peer: next, changed });
  }

  /** Once when the peer goes away (or was never there), once when it is back. */
  private log(next: PeerFields): void {
    if (next.reachable === this.said) return;
    const { logger } = this.options;
    if (next.reachable) logger.info({ peer: next.url, node: next.node, state: next.state }, `monitor: the peer's monitor at ${next.url} answers (${next.node} ${next.state})`);
    else logger.warn({ peer: next.url, error: next.error }, `monitor: cannot read the peer's monitor at ${next.url}: ${next.error}`);
    this.said = next.reachable;
  }
}
