/**
 * A client ledger for fault tests that talks to both nodes' service
 * addresses (the primary's front, and the address the secondary serves on
 * once promoted) and judges, from the client side only, what the system
 * promised:
 *
 * - Each counter has one client, which has one INCR in flight at a time:
 *   request n+1 leaves only after reply n arrived, so for a linearizable
 *   service the values acknowledged for one key must strictly increase,
 *   whichever node answers. A value at or below one already acknowledged
 *   is an acknowledged write lost, or two nodes counting the same key
 *   apart: 'backwards'.
 * - Nodes are ordered by their first acknowledgement. Once a newer node has
 *   answered, an older one answering more than `slackMs` later means two
 *   nodes released replies in the same period: 'interleaved' (the slack
 *   covers a reply released before the takeover and still crossing the
 *   network).
 * - verify() stops the clients, reads every counter with MGET from every
 *   node: at most one may answer (a read's reply is output too, and two
 *   nodes giving it is a split brain: 'two-serving'); every counter on the
 *   one that answers must be at least the highest value acknowledged for it,
 *   else the difference is counted as lost acknowledged writes.
 *
 * A client whose request is not answered within `requestTimeoutMs` (or whose
 * connection fails) drops the connection and tries the other address: as a
 * client that follows a moving service would, it never waits for ever on a
 * node that holds its output. The INCR it gave up on may or may not have
 * happened; nothing is assumed about it. Clients also hop to the other
 * address every `hopMs` or so, so that two nodes answering at once is seen
 * by the same client, not only by the final read.
 *
 * This runs in the client's network namespace (test/helpers/ns-agent.ts);
 * it uses only node:net, so it also runs in a test process on loopback.
 */
import { connect, type Socket } from 'node:net';

export interface LedgerTarget {
  /** Which node this address belongs to (the primary's, the secondary's). */
  node: string;
  host: string;
  port: number;
}

export interface SplitLedgerOptions {
  targets: LedgerTarget[];
  /** Counters, one client each. */
  keys: number;
  /** Key names are PREFIX:i (a fresh prefix per pair keeps counts apart). */
  prefix: string;
  requestTimeoutMs: number;
  slackMs: number;
  /**
   * A client moves to the other address after this long on one connection
   * (with jitter), after a reply: a split brain shows within a period even
   * when the old node never fails a client (0: only on failure).
   */
  hopMs: number;
  /**
   * Pause after each reply before the next request, ms: an unprotected
   * node answers at once, and clients without a pause would then load the
   * machine with tens of thousands of requests a second.
   */
  thinkMs: number;
  now?: () => number;
}

export interface Anomaly {
  kind: 'backwards' | 'interleaved' | 'two-serving';
  detail: string;
}

export interface LedgerStatus {
  acked: number;
  perNode: Record<string, number>;
  /** Replies other than an integer (-ERR...). */
  errors: number;
  /** Requests given up on (no reply in time, or the connection failed). */
  timeouts: number;
  anomalies: Anomaly[];
  /** ms since the last acknowledgement from any node (null: none yet). */
  lastAckAgoMs: number | null;
  /** ms from the mark to the first acknowledgement after it (null: none yet, or no mark). */
  firstAckAfterMarkMs: number | null;
  /** Longest time without any acknowledgement since start, ms. */
  longestGapMs: number;
  /**
   * Longest time without any acknowledgement since the mark, ms: from the
   * mark to the first one, between any two after it, and from the last one
   * to now (null: no mark). "The service answered again within X after the
   * fault" is this staying at most X.
   */
  gapSinceMarkMs: number | null;
}

export interface LedgerVerdict extends LedgerStatus {
  /** The nodes whose service answered the final MGET. */
  answered: string[];
  /** The answering node's counters (the first one's, if several answered). */
  values: Record<string, number | null>;
  /** Highest acknowledged value per counter. */
  maxAcked: Record<string, number>;
  /** Acknowledged increments missing from the answering node: sum over counters of (highest acked - its value), where positive. */
  lostAckedWrites: number;
}

const MAX_ANOMALIES = 20;
const RECONNECT_MS = 30;
const RECONNECT_MAX_MS = 250;

function resp(args: string[]): string {
  return `*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`;
}

class KeyClient {
  private socket: Socket | undefined;
  private timer: NodeJS.Timeout | undefined;
  private reconnect: NodeJS.Timeout | undefined;
  private think: NodeJS.Timeout | undefined;
  private buf = '';
  private target = 0;
  private failures = 0;
  private stopped = false;
  private hopAt = Infinity;

  constructor(
    private readonly ledger: SplitLedger,
    readonly key: string,
    index: number,
  ) {
    // Half start on each address: the one not serving refuses, and they move.
    this.target = index % ledger.targets.length;
  }

  start(): void {
    if (this.stopped) return;
    const t = this.ledger.targets[this.target];
    const s = connect({ host: t.host, port: t.port, noDelay: true });
    this.socket = s;
    this.buf = '';
    const hop = this.ledger.options.hopMs;
    this.hopAt = hop > 0 ? performance.now() + hop * (0.5 + Math.random()) : Infinity;
    // The timer covers the connect too: a SYN into a partition is a request not answered.
    this.arm(s);
    s.on('connect', () => {
      if (this.socket === s) s.write(resp(['INCR', this.key]));
    });
    s.on('data', (d: Buffer) => this.onData(s, t.node, d.toString('latin1')));
    s.on('error', () => this.fail(s));
    s.on('close', () => this.fail(s));
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    clearTimeout(this.reconnect);
    clearTimeout(this.think);
    this.socket?.destroy();
    this.socket = undefined;
  }

  private arm(s: Socket): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      if (this.socket !== s) return;
      this.ledger.timeouts++;
      this.fail(s);
    }, this.ledger.options.requestTimeoutMs);
  }

  /** This connection is done with: try the other address, soon (sooner if it worked lately). */
  private fail(s: Socket): void {
    if (this.socket !== s) return;
    this.socket = undefined;
    clearTimeout(this.timer);
    s.destroy();
    if (this.stopped) return;
    this.target = (this.target + 1) % this.ledger.targets.length;
    this.failures++;
    const delay = Math.min(RECONNECT_MAX_MS, RECONNECT_MS * 2 ** Math.min(this.failures - 1, 4));
    this.reconnect = setTimeout(() => this.start(), delay);
  }

  private onData(s: Socket, node: string, text: string): void {
    if (this.socket !== s) return;
    this.buf += text;
    let nl: number;
    while ((nl = this.buf.indexOf('\r\n')) >= 0) {
      const line = this.buf.slice(0, nl);
      this.buf = this.buf.slice(nl + 2);
      if (line.startsWith(':')) {
        this.failures = 0;
        this.ledger.acked(this.key, Number(line.slice(1)), node);
      } else {
        this.ledger.errors++;
      }
      if (this.stopped) return;
      clearTimeout(this.timer);
      if (performance.now() >= this.hopAt && this.ledger.targets.length > 1) {
        // Time to look at the other address: not a failure, no delay.
        this.socket = undefined;
        s.destroy();
        this.target = (this.target + 1) % this.ledger.targets.length;
        this.start();
        return;
      }
      this.think = setTimeout(() => {
        if (this.socket !== s || this.stopped) return;
        this.arm(s);
        s.write(resp(['INCR', this.key]));
      }, this.ledger.options.thinkMs);
    }
  }
}

export class SplitLedger {
  readonly targets: LedgerTarget[];
  errors = 0;
  timeouts = 0;
  private readonly clients: KeyClient[] = [];
  private readonly last = new Map<string, { value: number; node: string; at: number }>();
  private readonly maxAcked = new Map<string, number>();
  /** Per node, in order of first acknowledgement. */
  private readonly nodes = new Map<string, { first: number; last: number; count: number }>();
  private readonly anomalies: Anomaly[] = [];
  private readonly interleaved = new Map<string, number>();
  private total = 0;
  private startedAt = 0;
  private lastAck: number | undefined;
  private longestGap = 0;
  private mark: number | undefined;
  private firstAfterMark: number | undefined;
  private lastSinceMark = 0;
  private maxGapSinceMark = 0;
  private running = false;

  constructor(readonly options: SplitLedgerOptions) {
    if (options.targets.length < 1) throw new Error('ledger: no target');
    this.targets = options.targets;
  }

  private now(): number {
    return (this.options.now ?? (() => performance.now()))();
  }

  get keys(): string[] {
    return Array.from({ length: this.options.keys }, (_, i) => `${this.options.prefix}:${i}`);
  }

  start(): void {
    this.running = true;
    this.startedAt = this.now();
    this.keys.forEach((key, i) => this.clients.push(new KeyClient(this, key, i)));
    for (const c of this.clients) c.start();
  }

  stop(): void {
    this.running = false;
    for (const c of this.clients) c.stop();
  }

  /** From now on, status() says how long after this moment the first acknowledgement came. */
  setMark(): void {
    this.mark = this.now();
    this.firstAfterMark = undefined;
    this.lastSinceMark = this.mark;
    this.maxGapSinceMark = 0;
  }

  acked(key: string, value: number, node: string): void {
    if (!this.running) return;
    const at = this.now();
    this.total++;
    this.longestGap = Math.max(this.longestGap, at - (this.lastAck ?? this.startedAt));
    this.lastAck = at;
    if (this.mark !== undefined) {
      this.firstAfterMark ??= at;
      this.maxGapSinceMark = Math.max(this.maxGapSinceMark, at - this.lastSinceMark);
      this.lastSinceMark = at;
    }
    const prev = this.last.get(key);
    if (prev !== undefined && value <= prev.value) {
      this.note({ kind: 'backwards', detail: `${key}: ${node} acknowledged ${value} after ${prev.node} acknowledged ${prev.value} (${Math.round(at - prev.at)} ms earlier)` });
    }
    this.last.set(key, { value, node, at });
    if (value > (this.maxAcked.get(key) ?? -Infinity)) this.maxAcked.set(key, value);
    let n = this.nodes.get(node);
    if (n === undefined) {
      n = { first: at, last: at, count: 0 };
      this.nodes.set(node, n);
    }
    n.count++;
    n.last = at;
    // An older node (first answered earlier) answering well after a newer one began: two serving at once.
    const order = [...this.nodes.keys()];
    const mine = order.indexOf(node);
    for (const newer of order.slice(mine + 1)) {
      const since = at - this.nodes.get(newer)!.first;
      if (since > this.options.slackMs) {
        const pair = `${node}<${newer}`;
        const count = (this.interleaved.get(pair) ?? 0) + 1;
        this.interleaved.set(pair, count);
        if (count === 1) this.note({ kind: 'interleaved', detail: `${node} acknowledged ${key}=${value} ${Math.round(since)} ms after ${newer} began answering (slack ${this.options.slackMs} ms)` });
      }
    }
  }

  private note(a: Anomaly): void {
    if (this.anomalies.length < MAX_ANOMALIES) this.anomalies.push(a);
    else if (this.anomalies.length === MAX_ANOMALIES) this.anomalies.push({ kind: a.kind, detail: '... more anomalies not listed' });
  }

  status(): LedgerStatus {
    const now = this.now();
    const perNode: Record<string, number> = {};
    for (const [node, n] of this.nodes) perNode[node] = n.count;
    const anomalies = [...this.anomalies];
    for (const [pair, count] of this.interleaved) if (count > 1) anomalies.push({ kind: 'interleaved', detail: `${pair}: ${count} acknowledgements from the older node after the slack` });
    const gapNow = this.running ? now - (this.lastAck ?? this.startedAt) : 0;
    return {
      acked: this.total,
      perNode,
      errors: this.errors,
      timeouts: this.timeouts,
      anomalies,
      lastAckAgoMs: this.lastAck === undefined ? null : Math.round(now - this.lastAck),
      firstAckAfterMarkMs: this.mark === undefined || this.firstAfterMark === undefined ? null : Math.round(this.firstAfterMark - this.mark),
      longestGapMs: Math.round(Math.max(this.longestGap, gapNow)),
      gapSinceMarkMs: this.mark === undefined ? null : Math.round(Math.max(this.maxGapSinceMark, this.running ? now - this.lastSinceMark : 0)),
    };
  }

  /** Stops the clients, then reads every counter from every node (see the header). */
  async verify(timeoutMs: number): Promise<LedgerVerdict> {
    this.stop();
    const status = this.status();
    const keys = this.keys;
    const reads = await Promise.all(this.targets.map(async (t) => ({ node: t.node, values: await mget(t, keys, timeoutMs).catch(() => undefined) })));
    const answered = reads.filter((r) => r.values !== undefined) as { node: string; values: (number | null)[] }[];
    const anomalies = [...status.anomalies];
    if (answered.length > 1) anomalies.push({ kind: 'two-serving', detail: `${answered.map((a) => a.node).join(' and ')} both answered the final read` });
    const maxAcked: Record<string, number> = Object.fromEntries(this.maxAcked);
    const values: Record<string, number | null> = {};
    let lost = 0;
    if (answered.length > 0) {
      keys.forEach((k, i) => {
        const v = answered[0].values[i];
        values[k] = v;
        const max = this.maxAcked.get(k);
        if (max !== undefined && (v ?? 0) < max) lost += max - (v ?? 0);
      });
    }
    return { ...status, anomalies, answered: answered.map((a) => a.node), values, maxAcked, lostAckedWrites: lost };
  }
}

/** MGET of `keys` on one address: the values (null for a missing key), or a rejection on error or timeout. */
export function mget(target: { host: string; port: number }, keys: string[], timeoutMs: number): Promise<(number | null)[]> {
  return command(target, ['MGET', ...keys], timeoutMs).then((reply) => {
    if (!Array.isArray(reply)) throw new Error(`MGET: unexpected reply ${JSON.stringify(reply)}`);
    return reply.map((v) => (v === null ? null : Number(v)));
  });
}

export type RespValue = string | number | null | RespValue[] | { error: string };

/** One RESP command on a fresh connection; its reply, or a rejection on error, close or timeout. */
export function command(target: { host: string; port: number }, args: string[], timeoutMs: number): Promise<RespValue> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: target.host, port: target.port, noDelay: true });
    let text = '';
    const done = (err: Error | undefined, v?: RespValue): void => {
      clearTimeout(timer);
      s.destroy();
      if (err !== undefined) reject(err);
      else resolve(v!);
    };
    const timer = setTimeout(() => done(new Error(`no reply from ${target.host}:${target.port} within ${timeoutMs} ms`)), timeoutMs);
    s.on('connect', () => s.write(resp(args)));
    s.on('error', (err) => done(err));
    s.on('close', () => done(new Error(`${target.host}:${target.port} closed the connection`)));
    s.on('data', (d: Buffer) => {
      text += d.toString('latin1');
      let parsed: { value: RespValue } | undefined;
      try {
        parsed = parseResp(text, 0);
      } catch (err) {
        done(err as Error);
        return;
      }
      if (parsed !== undefined) done(undefined, parsed.value);
    });
  });
}

/** One RESP2 value from `text` at `at`, or undefined if it is not all there yet. */
function parseResp(text: string, at: number): { value: RespValue; next: number } | undefined {
  const nl = text.indexOf('\r\n', at);
  if (nl < 0) return undefined;
  const head = text[at];
  const line = text.slice(at + 1, nl);
  const after = nl + 2;
  switch (head) {
    case '+':
      return { value: line, next: after };
    case '-':
      return { value: { error: line }, next: after };
    case ':':
      return { value: Number(line), next: after };
    case '$': {
      const len = Number(line);
      if (len < 0) return { value: null, next: after };
      if (text.length < after + len + 2) return undefined;
      return { value: text.slice(after, after + len), next: after + len + 2 };
    }
    case '*': {
      const n = Number(line);
      if (n < 0) return { value: null, next: after };
      const out: RespValue[] = [];
      let pos = after;
      for (let i = 0; i < n; i++) {
        const v = parseResp(text, pos);
        if (v === undefined) return undefined;
        out.push(v.value);
        pos = v.next;
      }
      return { value: out, next: pos };
    }
    default:
      throw new Error(`not RESP: ${JSON.stringify(text.slice(at, at + 40))}`);
  }
}
