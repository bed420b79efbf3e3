/**
 * Prometheus metrics of a standalone comparator (`tandem proxy --metrics`):
 * what it compared, released and dropped, why it asked for checkpoints, how
 * much it holds, and how long a checkpoint decision took inside it. Totals
 * are read from the comparator's own counters at scrape time, so the
 * metrics cannot drift from what the comparator did.
 *
 * The decision histogram is the comparator's share of "mismatch ->
 * DO_CHECKPOINT": from the start of handling the read that brought the
 * deciding frame to DO_CHECKPOINT handed to the kernel. What the network
 * and the scheduler add on either side is not in it.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Address } from '../src/util/address.js';
import type { Logger } from '../src/util/logger.js';
import { listen } from '../src/util/net.js';
import { ProxyError, ProxyErrorCodes as C } from './errors.js';
import type { ProxyServer } from './server.js';

/** Decisions take tens of µs; the buckets reach well past the 1 ms target to show a bad tail. */
export const DECISION_BUCKETS_S = [10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3];

/** A counter that mirrors a running total kept elsewhere (prom-client counters only go up by inc). */
function mirrorTotal(counter: Counter, read: () => number, last: { v: number }): void {
  const now = read();
  if (now > last.v) counter.inc(now - last.v);
  last.v = now;
}

export class ProxyMetrics {
  readonly registry = new Registry();
  private readonly decisions: Histogram<'reason'>;
  private readonly requests: Counter<'reason' | 'notified'>;

  constructor(private readonly server: ProxyServer) {
    const registers = [this.registry];
    const stats = (): ReturnType<ProxyServer['comparator']['stats']> => server.comparator.stats();
    this.decisions = new Histogram({ name: 'tandem_proxy_checkpoint_decision_seconds', help: 'Input read to DO_CHECKPOINT written, for requests decided on a read', labelNames: ['reason'], buckets: DECISION_BUCKETS_S, registers });
    this.requests = new Counter({ name: 'tandem_proxy_checkpoint_requests_total', help: 'Checkpoint requests, by reason and whether a controller was there to hear them', labelNames: ['reason', 'notified'], registers });
    const totals: [string, string, () => number][] = [
      ['tandem_proxy_matched_total', 'Primary frames released after their twin matched', () => stats().matched],
      ['tandem_proxy_released_total', 'Primary frames released, for any reason', () => stats().released],
      ['tandem_proxy_dropped_total', 'Frames discarded (secondary twins, flushed, overflow)', () => stats().dropped],
    ];
    for (const [name, help, read] of totals) {
      const last = { v: 0 };
      new Counter({ name, help, registers, collect() { mirrorTotal(this, read, last); } });
    }
    new Gauge({
      name: 'tandem_proxy_held_frames',
      help: 'Frames waiting for their twin, by guest',
      labelNames: ['side'],
      registers,
      collect() {
        const h = stats().held;
        this.set({ side: 'primary' }, h.primary);
        this.set({ side: 'secondary' }, h.secondary);
      },
    });
    new Gauge({ name: 'tandem_proxy_connections', help: 'Connections the comparator tracks', registers, collect() { this.set(stats().connections); } });
    new Gauge({ name: 'tandem_proxy_output_pending_bytes', help: 'Released bytes not yet handed to outdev', registers, collect() { this.set(server.output.pendingBytes); } });
    new Gauge({ name: 'tandem_proxy_inputs_paused', help: '1 while outdev is absent or full and the inputs are not read', registers, collect() { this.set(server.output.paused ? 1 : 0); } });
    new Gauge({
      name: 'tandem_proxy_peer_connected',
      help: '1 for each of the four sockets with a peer connected',
      labelNames: ['port'],
      registers,
      collect() {
        for (const [port, up] of Object.entries(server.peers())) this.set({ port }, up ? 1 : 0);
      },
    });
  }

  /** Starts following the server's events (call before the server starts to miss nothing). */
  start(): void {
    this.server.on('checkpoint', (r) => {
      this.requests.inc({ reason: r.reason, notified: String(r.notified) });
      if (r.decisionMs !== undefined) this.decisions.observe({ reason: r.reason }, r.decisionMs / 1000);
    });
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }
}

/** GET /metrics on its own listening socket; nothing else is served. */
export class ProxyMetricsServer {
  private http: Server | undefined = undefined;

  constructor(
    private readonly metrics: ProxyMetrics,
    private readonly address: Address,
    private readonly logger?: Logger,
  ) {}

  async start(): Promise<AddressInfo> {
    const http = createServer((req, res) => this.handle(req, res));
    try {
      await listen(http, this.address.port, this.address.host);
    } catch (err) {
      throw new ProxyError(C.PROXY_LISTEN_FAILED, `metrics: cannot listen on ${this.address.host}:${this.address.port}: ${(err as Error).message}`, { cause: err });
    }
    this.http = http;
    return http.address() as AddressInfo;
  }

  async stop(): Promise<void> {
    const http = this.http;
    this.http = undefined;
    if (http === undefined) return;
    http.closeAllConnections();
    await new Promise<void>((resolve) => http.close(() => resolve()));
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const path = (req.url ?? '').split('?')[0];
    if (path !== '/metrics') return this.reply(res, 404, 'text/plain', 'not found: only /metrics is served\n');
    if (req.method !== 'GET' && req.method !== 'HEAD') return this.reply(res, 405, 'text/plain', 'method not allowed: GET /metrics\n', { allow: 'GET, HEAD' });
    this.metrics.text().then(
      (text) => this.reply(res, 200, this.metrics.contentType, req.method === 'HEAD' ? '' : text),
      (err: unknown) => {
        this.logger?.error({ err }, 'metrics collection failed');
        this.reply(res, 500, 'text/plain', 'metrics collection failed\n');
      },
    );
  }

  private reply(res: ServerResponse, status: number, type: string, body: string, headers: Record<string, string> = {}): void {
    res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store', ...headers });
    res.end(body);
  }
}
