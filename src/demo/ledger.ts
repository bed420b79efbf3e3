/**
 * The demo's client ledger: clients INCR counters through the service
 * address and remember the highest value each counter was acknowledged
 * with. After a failover every counter must be at least that high: a lower
 * value is an acknowledged write the system lost.
 */
import { connect, type Socket } from 'node:net';
import type { Address } from '../util/address.js';

export interface LedgerSummary {
  /** INCR replies received. */
  ackedWrites: number;
  /**
   * Acknowledged increments the survivor does not have: for each counter,
   * the highest value the old primary acknowledged minus the value the
   * survivor's first reply shows it had before that increment; plus any
   * counter that ends below an acknowledged value.
   */
  lostAckedWrites: number;
  /** Longest time without any reply while the load ran, ms (covers the failover). */
  longestGapMs: number;
  errors: number;
}

const incr = (key: string): string => `*2\r\n$4\r\nINCR\r\n$${key.length}\r\n${key}\r\n`;

class Client {
  private socket: Socket | undefined;
  private inFlight = false;
  private buf = '';
  /** The ledger's phase when this connection was made: replies on it come from that phase's node. */
  private phase = 0;

  constructor(
    private readonly ledger: Ledger,
    readonly key: string,
  ) {}

  start(): void {
    if (this.ledger.stopped) return;
    const s = connect({ host: this.ledger.service.host, port: this.ledger.service.port, noDelay: true });
    this.socket = s;
    this.phase = this.ledger.phase;
    this.inFlight = false;
    this.buf = '';
    s.on('connect', () => this.send());
    s.on('data', (d: Buffer) => this.onData(d.toString('latin1')));
    s.on('error', () => {});
    s.on('close', () => {
      if (this.ledger.stopped) return;
      this.ledger.errors++;
      // Reconnect: after a failover the service address leads to the survivor.
      setTimeout(() => this.start(), 20);
    });
  }

  stop(): void {
    this.socket?.destroy();
  }

  /** Drops this connection (a reply in flight on it is not acknowledged) and makes a new one. */
  restart(): void {
    const old = this.socket;
    this.socket = undefined;
    old?.removeAllListeners('close');
    old?.on('error', () => {});
    old?.destroy();
    this.start();
  }

  private send(): void {
    if (this.ledger.stopped || this.inFlight || !this.socket) return;
    this.inFlight = true;
    this.socket.write(incr(this.key));
  }

  private onData(text: string): void {
    this.buf += text;
    let nl: number;
    while ((nl = this.buf.indexOf('\r\n')) >= 0) {
      const line = this.buf.slice(0, nl);
      this.buf = this.buf.slice(nl + 2);
      this.inFlight = false;
      if (line.startsWith(':')) this.ledger.acked(this.key, Number(line.slice(1)), this.phase);
      else this.ledger.errors++;
    }
    this.send();
  }
}

export class Ledger {
  stopped = false;
  errors = 0;
  /** 0 before a failover; 1 once the service address leads to the survivor. */
  phase = 0;
  private readonly maxBefore = new Map<string, number>();
  private readonly firstAfter = new Map<string, number>();
  private readonly maxAcked = new Map<string, number>();
  private writes = 0;
  private lastReply = 0;
  private longestGap = 0;
  private readonly clients: Client[] = [];
  private readonly watchers: { resolve: (t: number) => void }[] = [];

  constructor(
    readonly service: Address,
    private readonly counters = 8,
    private readonly now: () => number = () => performance.now(),
  ) {}

  start(): void {
    this.lastReply = this.now();
    for (let i = 0; i < this.counters; i++) this.clients.push(new Client(this, `ledger:${i}`));
    for (const c of this.clients) c.start();
  }

  /**
   * The service address now leads to the survivor. Every client reconnects:
   * a connection still being made when the address moved may already lead
   * to the survivor, and must not count as the old node's.
   */
  failedOver(): void {
    this.phase = 1;
    for (const c of this.clients) c.restart();
  }

  /**
   * Whether the survivor has acknowledged a write of every client: until it
   * has, a counter's loss check (its first value from the survivor) is missing.
   */
  get survivorAnsweredAll(): boolean {
    return this.firstAfter.size === this.counters;
  }

  /** Writes acknowledged so far, by either node. */
  get writesAcked(): number {
    return this.writes;
  }

  /** Resolves with the time of the first write the survivor acknowledges. */
  firstSurvivorAck(): Promise<number> {
    return new Promise((resolve) => this.watchers.push({ resolve }));
  }

  acked(key: string, value: number, phase: number): void {
    const t = this.now();
    if (phase === 1) {
      if (!this.firstAfter.has(key)) this.firstAfter.set(key, value);
      for (const w of this.watchers.splice(0)) w.resolve(t);
    } else if (value > (this.maxBefore.get(key) ?? 0)) this.maxBefore.set(key, value);
    this.longestGap = Math.max(this.longestGap, t - this.lastReply);
    this.lastReply = t;
    this.writes++;
    if (value > (this.maxAcked.get(key) ?? 0)) this.maxAcked.set(key, value);
  }

  stop(): void {
    this.stopped = true;
    for (const c of this.clients) c.stop();
  }

  /** Reads every counter through the service and compares with what was acknowledged. */
  async verify(): Promise<LedgerSummary> {
    const keys = [...this.maxAcked.keys()];
    const values = await mget(this.service, keys);
    let lost = 0;
    keys.forEach((k, i) => {
      if ((values[i] ?? 0) < this.maxAcked.get(k)!) lost++;
      // The survivor's first reply to INCR is (its value before) + 1.
      const first = this.firstAfter.get(k);
      const before = this.maxBefore.get(k);
      if (first !== undefined && before !== undefined && first - 1 < before) lost += before - (first - 1);
    });
    return { ackedWrites: this.writes, lostAckedWrites: lost, longestGapMs: Math.round(this.longestGap), errors: this.errors };
  }
}

async function mget(service: Address, keys: string[]): Promise<(number | null)[]> {
  if (keys.length === 0) return [];
  const s = connect({ host: service.host, port: service.port });
  const req = `*${keys.length + 1}\r\n$4\r\nMGET\r\n${keys.map((k) => `$${k.length}\r\n${k}\r\n`).join('')}`;
  let text = '';
  return new Promise((resolve, reject) => {
    s.on('error', reject);
    s.on('connect', () => s.write(req));
    s.on('data', (d: Buffer) => {
      text += d.toString('latin1');
      const lines = text.split('\r\n');
      // *N, then per key either $-1 or $len + value.
      const out: (number | null)[] = [];
      let i = 1;
      while (i < lines.length - 1 && out.length < keys.length) {
        if (lines[i] === '$-1') {
          out.push(null);
          i++;
        } else if (i + 1 < lines.length - 1) {
          out.push(Number(lines[i + 1]));
          i += 2;
        } else break;
      }
      if (out.length === keys.length) {
        s.destroy();
        resolve(out);
      }
    });
  });
}
