/**
 * Fan-out of monitor events to connected clients. publish() is called from
 * the checkpoint path, so it only stamps the event and queues it; the
 * fan-out runs later (setImmediate by default) and never waits for a client.
 *
 * Each client has a bounded buffer (what its socket has not taken yet).
 * Above `sampleAboveBytes` the client misses sampleable events (epochs,
 * divergences, audit lines) and is told how many with a `dropped` event once
 * it catches up; state and mode changes are always sent. Above
 * `disconnectAboveBytes` the client is cut. A client that stops answering
 * pings is cut at the next sweep.
 *
 * The hub also keeps the last events other than epochs (state, mode,
 * control, divergence, peer, failover): the snapshot's `history`, so a page
 * loaded now shows what happened before it.
 *
 * One hub serves every domain of the process: events are stamped with the
 * domain they come from, one sequence runs over all of them (a gap still
 * means this client missed something), and a client gets one snapshot per
 * domain, each with its own history.
 *
 * No sockets here: a client is anything with bufferedAmount/send/ping/close,
 * so the policy is tested with plain objects and served with `ws`.
 */
import {
  HISTORY_EVENTS,
  SAMPLEABLE,
  isHistoryEvent,
  SCHEMA_VERSION,
  type BroadcastEvent,
  type DroppedEvent,
  type ErrorEvent,
  type EventBody,
  type HistoryEvent,
  type NodeRole,
  type ReplyEvent,
  type SnapshotEvent,
} from './events.js';

export interface HubClient {
  /** Bytes accepted by send() and not yet handed to the kernel. */
  readonly bufferedAmount: number;
  send(data: string): void;
  ping(): void;
  /** Ends the connection at once (no closing handshake: the client is not reading). */
  terminate(): void;
}

export type SnapshotBody = Omit<SnapshotEvent, 'v' | 'ts' | 'node' | 'seq' | 'type' | 'clients' | 'history' | 'domain'>;

export interface HubOptions {
  node: NodeRole;
  /** Where things stand in `domain` (undefined: a hub without domains), for a client that just connected. */
  snapshot: (domain: string | undefined) => SnapshotBody;
  /** The domains shown, in the order their snapshots go out; absent: one snapshot, without a domain (a hub without domains). */
  domains?: () => readonly string[];
  /** The snapshot's `clients` in `domain`: the node's service clients (none when not given). */
  clients?: (domain: string | undefined) => number;
  /** Wall clock, ms since the Unix epoch. */
  now?: () => number;
  /** Runs the fan-out later; tests pass a synchronous one. */
  schedule?: (fn: () => void) => void;
  sampleAboveBytes?: number;
  disconnectAboveBytes?: number;
  /** Events queued for fan-out beyond which the oldest sampleable ones are dropped. */
  maxPending?: number;
  /** Events the snapshot's history keeps (default HISTORY_EVENTS). */
  historySize?: number;
  /** Told when a client is cut, with why (for the log). */
  onCut?: (client: HubClient, why: 'slow' | 'unresponsive') => void;
}

export const DEFAULT_SAMPLE_ABOVE_BYTES = 256 * 1024;
export const DEFAULT_DISCONNECT_ABOVE_BYTES = 4 * 1024 * 1024;
export const DEFAULT_MAX_PENDING = 4096;

interface ClientState {
  /** Events this client missed since it was last sent one. */
  missed: number;
  /** Its snapshot already covers events up to here (queued before it joined). */
  afterSeq: number;
  /** Answered the last ping (or connected since). */
  alive: boolean;
}

export interface HubStats {
  published: number;
  /** Client deliveries skipped by sampling. */
  sampled: number;
  /** Events dropped before fan-out because the queue was full. */
  overflowed: number;
  cutSlow: number;
  cutUnresponsive: number;
}

export class MonitorHub {
  private readonly clients = new Map<HubClient, ClientState>();
  private pending: BroadcastEvent[] = [];
  /** Per domain ('' for events without one). */
  private readonly histories = new Map<string, HistoryEvent[]>();
  private scheduled = false;
  private seq = 0;
  readonly stats: HubStats = { published: 0, sampled: 0, overflowed: 0, cutSlow: 0, cutUnresponsive: 0 };

  constructor(private readonly options: HubOptions) {}

  get size(): number {
    return this.clients.size;
  }

  /** The sequence number of the last published event. */
  get lastSeq(): number {
    return this.seq;
  }

  /** Registers a client and sends it the snapshots first, one per domain. */
  add(client: HubClient): void {
    const snapshots = this.snapshotEvents();
    this.clients.set(client, { missed: 0, alive: true, afterSeq: this.seq });
    for (const snapshot of snapshots) this.deliver(client, JSON.stringify(snapshot), false);
  }

  remove(client: HubClient): void {
    this.clients.delete(client);
  }

  /** One snapshot per domain shown (none when none is), or the one snapshot of a hub without domains. */
  snapshotEvents(): SnapshotEvent[] {
    const domains = this.options.domains;
    return domains === undefined ? [this.snapshotEvent(undefined)] : domains().map((d) => this.snapshotEvent(d));
  }

  snapshotEvent(domain?: string): SnapshotEvent {
    return {
      v: SCHEMA_VERSION,
      type: 'snapshot',
      ts: this.now(),
      node: this.options.node,
      seq: this.seq,
      ...(domain === undefined ? {} : { domain }),
      ...this.options.snapshot(domain),
      clients: this.options.clients?.(domain) ?? 0,
      history: [...(this.histories.get(domain ?? '') ?? [])],
    };
  }

  /**
   * A domain shown from now on: clients already connected get its snapshot
   * (their first word of it), after what was queued before it came.
   */
  announce(domain: string): void {
    if (this.clients.size === 0) return;
    this.flush();
    const data = JSON.stringify(this.snapshotEvent(domain));
    for (const client of [...this.clients.keys()]) this.deliver(client, data, false);
  }

  /** A domain no longer shown: its history goes with it. */
  forget(domain: string): void {
    this.histories.delete(domain);
  }

  /** Stamps and queues an event of `domain` (undefined: a hub without domains); returns at once whatever the clients are doing. */
  publish(body: EventBody, domain?: string): BroadcastEvent {
    // The hub's stamp last: a body cannot pass for another domain's.
    const event = { v: SCHEMA_VERSION, ts: this.now(), node: this.options.node, seq: ++this.seq, ...body, ...(domain === undefined ? {} : { domain }) } as BroadcastEvent;
    this.stats.published++;
    // Kept whether or not anyone listens: a client that connects later reads it in the snapshot.
    if (isHistoryEvent(event)) {
      const key = domain ?? '';
      let history = this.histories.get(key);
      if (history === undefined) this.histories.set(key, (history = []));
      history.push(event);
      if (history.length > (this.options.historySize ?? HISTORY_EVENTS)) history.shift();
    }
    if (this.clients.size === 0) return event;
    this.pending.push(event);
    if (this.pending.length > (this.options.maxPending ?? DEFAULT_MAX_PENDING)) this.shed();
    if (!this.scheduled) {
      this.scheduled = true;
      (this.options.schedule ?? setImmediate)(() => this.flush());
    }
    return event;
  }

  /** Sends what is queued. Each event is serialized once, whatever the number of clients. */
  flush(): void {
    this.scheduled = false;
    const batch = this.pending;
    this.pending = [];
    for (const event of batch) {
      const data = JSON.stringify(event);
      const sampleable = SAMPLEABLE.has(event.type);
      for (const [client, state] of this.clients) if (event.seq > state.afterSeq) this.deliver(client, data, sampleable);
    }
  }

  /** A message for one client only (a reply or an error). */
  sendTo(client: HubClient, message: Omit<ReplyEvent, 'v' | 'ts' | 'node'> | Omit<ErrorEvent, 'v' | 'ts' | 'node'>): void {
    if (!this.clients.has(client)) return;
    this.deliver(client, JSON.stringify({ v: SCHEMA_VERSION, ts: this.now(), node: this.options.node, ...message }), false);
  }

  pong(client: HubClient): void {
    const state = this.clients.get(client);
    if (state) state.alive = true;
  }

  /** Called every ping interval: cuts clients that did not answer the previous ping, pings the rest. */
  sweep(): void {
    for (const [client, state] of [...this.clients]) {
      if (!state.alive) {
        this.stats.cutUnresponsive++;
        this.cut(client, 'unresponsive');
        continue;
      }
      state.alive = false;
      try {
        client.ping();
      } catch {
        this.cut(client, 'unresponsive');
      }
    }
  }

  /** Forgets every client (the server closes their sockets). */
  clear(): void {
    this.clients.clear();
    this.pending = [];
  }

  private deliver(client: HubClient, data: string, sampleable: boolean): void {
    const state = this.clients.get(client);
    if (!state) return;
    const buffered = client.bufferedAmount;
    if (buffered > (this.options.disconnectAboveBytes ?? DEFAULT_DISCONNECT_ABOVE_BYTES)) {
      this.stats.cutSlow++;
      this.cut(client, 'slow');
      return;
    }
    if (sampleable && buffered > (this.options.sampleAboveBytes ?? DEFAULT_SAMPLE_ABOVE_BYTES)) {
      state.missed++;
      this.stats.sampled++;
      return;
    }
    try {
      if (state.missed > 0) {
        const dropped: DroppedEvent = { v: SCHEMA_VERSION, type: 'dropped', ts: this.now(), node: this.options.node, count: state.missed };
        state.missed = 0;
        client.send(JSON.stringify(dropped));
      }
      client.send(data);
    } catch {
      // A socket that throws on send is gone; its close handler would remove it too.
      this.cut(client, 'unresponsive');
    }
  }

  /** Keeps the queue bounded when fan-out falls behind: the oldest sampleable events go first. */
  private shed(): void {
    const max = this.options.maxPending ?? DEFAULT_MAX_PENDING;
    const excess = this.pending.length - max;
    let removed = 0;
    this.pending = this.pending.filter((e) => {
      if (removed < excess && SAMPLEABLE.has(e.type)) {
        removed++;
        return false;
      }
      return true;
    });
    this.stats.overflowed += removed;
  }

  private cut(client: HubClient, why: 'slow' | 'unresponsive'): void {
    if (!this.clients.delete(client)) return;
    try {
      client.terminate();
    } finally {
      this.options.onCut?.(client, why);
    }
  }

  private now(): number {
    return (this.options.now ?? Date.now)();
  }
}
