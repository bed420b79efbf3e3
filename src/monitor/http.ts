/**
 * The monitor's one HTTP server: the dashboard at `/` (with its static
 * assets and uPlot), the event stream at `/ws`, Prometheus `/metrics`,
 * `/healthz` and `/readyz`, `/api/status` and `POST /api/control`.
 *
 * Static files are read into memory at start from a fixed list, so a request
 * path is only ever a key into a map: no path from a client reaches the file
 * system. Loopback by default; a non-loopback bind needs a token.
 *
 * One server shows every domain of its process: a node attaches its source
 * under its domain's name (attach(), src/monitor/attach.ts) and detaches it
 * when it stops. Each domain has its own snapshot, series (labelled
 * domain="NAME"), control target and peer view; the hub, the admission, the
 * token and the process's own series are shared.
 */
import { readFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import type { AddressInfo, Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import type { Subscription } from 'rxjs';
import { WebSocketServer, type RawData, type WebSocket } from 'ws';
import type { Logger } from '../util/logger.js';
import { formatAddress, isLoopbackHost } from '../util/address.js';
import { listen } from '../util/net.js';
import { EVENTS_PROTOCOL, MonitorAuth, bearer, tokenFromProtocols, type AuthPolicy } from './auth.js';
import { MAX_MESSAGE_BYTES, MonitorControl, offeredActions, parseClientMessage, parseDomain, requestId, type ClientMessage, type ControlRoute } from './control.js';
import { DOMAIN_NAME, SCHEMA_VERSION, type BroadcastEvent, type ControlAction, type DomainsEvent, type EventBody, type NodeRole, type SnapshotEvent } from './events.js';
import { MonitorError, MonitorErrorCodes as C } from './errors.js';
import { readiness, type Readiness } from './health.js';
import { MonitorHub, type HubClient, type HubOptions } from './hub.js';
import { MonitorMetrics, mergeExposition } from './metrics.js';
import type { Detach, MonitorAttach } from './attach.js';
import type { MonitorSource } from './source.js';
import { PeerWatch, type PeerWatchOptions } from './peer.js';
import { MonitorAdmission, admissionLimits, type AdmissionLimits, type ClientRole } from './admission.js';
import { BurstLog } from '../util/burst-log.js';

export const DEFAULT_PING_INTERVAL_MS = 10_000;
/** A connection that has not sent a whole request (or upgrade) this long after it opened is closed. */
export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 10_000;
/** Frames above this are cut by ws (close 1009); smaller oversized ones get a typed error reply. */
const MAX_FRAME_BYTES = 64 * 1024;

export interface MonitorServerOptions {
  host: string;
  /** 0 picks a free port; start() returns it. */
  port: number;
  /** A monitor of one node: its source, attached under `domain` at start and detached at stop. Others attach with attach(). */
  source?: MonitorSource;
  /** The name `source` shows under (default DEFAULT_DOMAIN, the arbiter's default). */
  domain?: string;
  /** The role of every node shown; default: `source`'s. One of the two is needed. */
  role?: NodeRole;
  auth: AuthPolicy;
  logger: Logger;
  pingIntervalMs?: number;
  /** WebSocket clients at once (default 256); see admission.ts. */
  maxClients?: number;
  /** Of those, kept for clients presenting the control token (default a sixteenth, at most 16). */
  operatorSlots?: number;
  /** A connection must send a whole request (or upgrade) within this (default 10 s). */
  handshakeTimeoutMs?: number;
  /** Per-client buffering limits (see MonitorHub). */
  limits?: Pick<HubOptions, 'sampleAboveBytes' | 'disconnectAboveBytes' | 'maxPending'>;
  /** Wall clock for event timestamps. */
  now?: () => number;
  /** The other node's monitor, read for the pair view (`monitor.peer`), each domain's under its name; absent: the snapshot's peer is null. */
  peer?: Omit<PeerWatchOptions, 'logger' | 'now' | 'onEvent' | 'domain'>;
}

/** What a source shows under when no name is given: the arbiter's default domain (src/config/config.ts). */
export const DEFAULT_DOMAIN = 'guest';

/** One domain shown. */
interface Shown {
  name: string;
  source: MonitorSource;
  /** Its series, labelled with its name. */
  metrics: MonitorMetrics;
  peer: PeerWatch | undefined;
  subscription: Subscription;
}

/** A domain's readiness, in /readyz's list. */
export type DomainReadiness = Readiness & { domain: string };

interface Asset {
  body: Buffer;
  type: string;
}

// Next to this module: the build copies src/monitor/static into dist (scripts/copy-assets.mjs),
// so the dashboard is found wherever the package is installed and whatever the working directory.
const STATIC_DIR = fileURLToPath(new URL('./static/', import.meta.url));
const require = createRequire(import.meta.url);

/** URL path -> file, content type. The only files this server ever reads. */
function assetFiles(): Record<string, [string, string]> {
  return {
    '/': [`${STATIC_DIR}index.html`, 'text/html; charset=utf-8'],
    '/dashboard.js': [`${STATIC_DIR}dashboard.js`, 'text/javascript; charset=utf-8'],
    '/dashboard.css': [`${STATIC_DIR}dashboard.css`, 'text/css; charset=utf-8'],
    '/vendor/uPlot.iife.min.js': [require.resolve('uplot/dist/uPlot.iife.min.js'), 'text/javascript; charset=utf-8'],
    '/vendor/uPlot.min.css': [require.resolve('uplot/dist/uPlot.min.css'), 'text/css; charset=utf-8'],
  };
}

const SECURITY_HEADERS = {
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
};
// connect-src 'self' covers ws:// to the same host and port in current browsers.
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const MAX_HANDSHAKE_TIMEOUT_MS = 600_000;
const MIN_HANDSHAKE_TIMEOUT_MS = 100;
const MAX_PING_INTERVAL_MS = 600_000;
/** WebSocket close code 1013, "try again later": the slot went to an operator. */
const CLOSE_EVICTED = 1013;

type AdmissionEvent = 'refused-viewer' | 'refused-operator' | 'evicted-viewer';

/** One WebSocket client, as the hub and the admission see it. */
class WsClient implements HubClient {
  constructor(
    readonly ws: WebSocket,
    readonly remote: string,
  ) {}

  get bufferedAmount(): number {
    return this.ws.bufferedAmount;
  }

  send(data: string): void {
    this.ws.send(data);
  }

  ping(): void {
    this.ws.ping();
  }

  terminate(): void {
    this.ws.terminate();
  }
}

const HTTP_STATUS: Record<string, number> = {
  [C.MONITOR_BAD_MESSAGE]: 400,
  [C.MONITOR_UNAUTHORIZED]: 401,
  [C.MONITOR_RATE_LIMITED]: 429,
  [C.MONITOR_UNSUPPORTED]: 501,
  [C.MONITOR_ACTION_FAILED]: 500,
  [C.MONITOR_UNKNOWN_DOMAIN]: 404,
  [C.MONITOR_DOMAIN_REQUIRED]: 400,
};

export class MonitorServer implements MonitorAttach {
  readonly hub: MonitorHub;
  /** The process's own series (the domains' are each in their own registry). */
  readonly metrics: MonitorMetrics;
  readonly control: MonitorControl;
  readonly role: NodeRole;
  private readonly auth: MonitorAuth;
  private readonly shown = new Map<string, Shown>();
  /** Takes off the source given in the options (see start). */
  private detachOwn: Detach | undefined;
  private server: Server | undefined;
  private wss: WebSocketServer | undefined;
  private assets = new Map<string, Asset>();
  private pinger: NodeJS.Timeout | undefined;
  private readonly sockets = new Set<Socket>();
  private address: AddressInfo | undefined;
  private admission: MonitorAdmission<WsClient> | undefined;
  private admissionLog: BurstLog<AdmissionEvent> | undefined;

  constructor(private readonly options: MonitorServerOptions) {
    const { source, logger } = options;
    const role = options.role ?? source?.role;
    if (role === undefined) throw new MonitorError(C.MONITOR_BAD_OPTIONS, 'monitor: give the role of the nodes it shows, or a source');
    if (source !== undefined && source.role !== role) throw new MonitorError(C.MONITOR_BAD_OPTIONS, `monitor: a ${role}s' monitor given a ${source.role}'s source`);
    this.role = role;
    this.auth = new MonitorAuth({ ...options.auth, throttle: { now: options.now ?? Date.now, ...options.auth.throttle } });
    this.hub = new MonitorHub({
      node: role,
      now: options.now,
      ...options.limits,
      domains: () => [...this.shown.keys()],
      snapshot: (domain) => {
        const shown = this.shown.get(domain ?? '');
        if (shown === undefined) throw new MonitorError(C.MONITOR_UNKNOWN_DOMAIN, `monitor: no domain ${domain} is shown`);
        const { source: s, peer } = shown;
        const { state, reason, mode, intervalMs, lastEpoch, lagMs, recent, arbiter, precopy, generation, heartbeat, heldBytes, lastFailover, guestProtected } = s.status();
        return {
          state,
          reason,
          mode,
          intervalMs,
          lastEpoch,
          lagMs,
          recent,
          arbiter,
          precopy,
          actions: offeredActions(s.control),
          generation,
          heartbeat,
          heldBytes,
          peer: peer?.view() ?? null,
          lastFailover,
          guestProtected,
        };
      },
      // The guest's clients, what an operator asks about; the monitor's own are in /metrics (tandem_monitor_clients).
      clients: (domain) => this.shown.get(domain ?? '')?.source.clients?.()?.connections ?? 0,
      onCut: (_client, why) => logger.warn({ why }, `monitor client cut: ${why === 'slow' ? 'it fell too far behind' : 'it stopped answering pings'}`),
    });
    this.metrics = new MonitorMetrics({ node: role, scope: 'process', clients: () => this.hub.size, admission: () => this.admission?.stats() });
    this.control = new MonitorControl({
      route: (domain) => this.route(domain),
      auth: this.auth,
      logger,
      // A refused request for a domain not shown is told to every client, under no domain.
      audit: (e, domain) => {
        const shown = domain === undefined ? undefined : this.shown.get(domain);
        if (shown !== undefined) shown.source.events$.next(e);
        else this.publish(e, undefined);
      },
    });
  }

  /** The names of the domains shown, in the order they were attached. */
  get domains(): string[] {
    return [...this.shown.keys()];
  }

  /**
   * Shows `source` under `domain` from now on: its events go out stamped
   * with the name, its series are labelled with it, control requests naming
   * it reach its node, and clients already connected get its snapshot.
   * Refused (MONITOR_DOMAIN_ATTACHED) when the name is taken, and
   * (MONITOR_BAD_OPTIONS) for a name the arbiter would not take or a source
   * of the other role. The returned function takes it off again (its
   * snapshot, series, control target and peer view) and stops the source.
   */
  attach(domain: string, source: MonitorSource): Promise<Detach> {
    try {
      return Promise.resolve(this.attachNow(domain, source));
    } catch (err) {
      return Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
  }

  private attachNow(domain: string, source: MonitorSource): Detach {
    const { logger } = this.options;
    if (typeof domain !== 'string' || !DOMAIN_NAME.test(domain)) throw new MonitorError(C.MONITOR_BAD_OPTIONS, `monitor: ${JSON.stringify(domain)?.slice(0, 80)} is not a domain name (letters, digits, ".", "_", "-", at most 63)`);
    if (this.shown.has(domain)) throw new MonitorError(C.MONITOR_DOMAIN_ATTACHED, `monitor: domain ${domain} is already shown by this monitor (one node per domain)`);
    if (source.role !== this.role) throw new MonitorError(C.MONITOR_BAD_OPTIONS, `monitor: domain ${domain}: a ${source.role} attached to a monitor of ${this.role}s`);
    const peerOptions = this.options.peer;
    // The peer's events take the path the node's own do (the hub, the metrics, the history).
    const peer = peerOptions === undefined ? undefined : new PeerWatch({ ...peerOptions, domain, logger, now: this.options.now, onEvent: (e) => source.events$.next(e) });
    const metrics = new MonitorMetrics({
      node: this.role,
      scope: 'domain',
      domain,
      state: () => source.status().state,
      lagMs: () => source.status().lagMs,
      serviceClients: source.clients,
      lastEpoch: () => source.status().lastEpoch,
      precopy: () => source.status().precopy,
      readings: () => source.readings(),
      peerMonitorUp: peer === undefined ? undefined : () => peer.view().reachable,
    });
    const subscription = source.events$.subscribe((body) => {
      // This runs inside the engine's callbacks: RxJS would rethrow an error here as an
      // uncaught exception, taking the node down for the sake of a monitor.
      try {
        const event = this.publish(body, domain);
        metrics.observe(event);
      } catch (err) {
        logger.error({ err, type: body.type, domain }, 'monitor: could not publish an event');
      }
    });
    const shown: Shown = { name: domain, source, metrics, peer, subscription };
    this.shown.set(domain, shown);
    try {
      source.start();
      peer?.start();
    } catch (err) {
      this.takeOff(shown);
      throw err;
    }
    this.hub.announce(domain);
    logger.debug({ domain }, `monitor: showing domain ${domain}`);
    let attached = true;
    return () => {
      if (!attached) return Promise.resolve();
      attached = false;
      try {
        // Not another source attached since under the same name.
        if (this.shown.get(domain) === shown) this.takeOff(shown);
        return Promise.resolve();
      } catch (err) {
        return Promise.reject(err instanceof Error ? err : new Error(String(err)));
      }
    };
  }

  private takeOff(shown: Shown): void {
    shown.peer?.stop();
    shown.subscription.unsubscribe();
    shown.source.stop();
    shown.metrics.stop();
    this.shown.delete(shown.name);
    // Clients keep a view per domain: told it is gone, they drop it (a new client never hears of it).
    this.hub.publish({ type: 'detached' }, shown.name);
    this.hub.forget(shown.name);
  }

  private publish(body: EventBody, domain: string | undefined): BroadcastEvent {
    return this.hub.publish(body, domain);
  }

  /** The domain a request is for: the one named, or the only one shown. */
  private route(domain: string | undefined): ControlRoute {
    const shown = this.find(domain);
    return { target: shown.source.control, domain: shown.name };
  }

  private find(domain: string | undefined): Shown {
    const names = (): string => [...this.shown.keys()].join(', ') || 'none yet';
    if (domain === undefined) {
      if (this.shown.size === 1) return this.shown.values().next().value!;
      if (this.shown.size === 0) throw new MonitorError(C.MONITOR_UNKNOWN_DOMAIN, 'this monitor shows no domain yet');
      throw new MonitorError(C.MONITOR_DOMAIN_REQUIRED, `this monitor shows ${this.shown.size} domains (${names()}): name one with "domain"`);
    }
    const shown = this.shown.get(domain);
    if (shown === undefined) throw new MonitorError(C.MONITOR_UNKNOWN_DOMAIN, `this monitor shows no domain ${domain} (it shows: ${names()})`);
    return shown;
  }

  /**
   * The answer to a status request: the named domain's snapshot, or the only
   * one's (as a monitor of one node always answered); with none or several
   * shown and none named, every domain's, in a `domains` answer.
   */
  statusAnswer(domain: string | undefined, brief = false): SnapshotEvent | DomainsEvent {
    const snapshot = (name: string): SnapshotEvent => {
      const s = this.hub.snapshotEvent(name);
      return brief ? { ...s, recent: [], history: [] } : s;
    };
    if (domain !== undefined || this.shown.size === 1) return snapshot(this.find(domain).name);
    return { ...this.envelope(), type: 'domains', domains: [...this.shown.keys()].map(snapshot) };
  }

  /** Each domain's readiness, in the order they were attached. */
  readiness(): DomainReadiness[] {
    return [...this.shown.values()].map(({ name, source }) => {
      const { state, reason } = source.status();
      return { ...readiness(this.role, state, reason), domain: name };
    });
  }

  /** The exposition: the process's series, then every domain's, each family once. */
  async metricsText(): Promise<string> {
    const texts = await Promise.all([this.metrics.text(), ...[...this.shown.values()].map((s) => s.metrics.text())]);
    return mergeExposition(texts);
  }

  /** http://HOST:PORT/ of the running server. */
  get url(): string {
    if (!this.address) throw new Error('monitor not started');
    return `http://${formatAddress({ host: this.address.address, port: this.address.port })}/`;
  }

  async start(): Promise<AddressInfo> {
    if (this.server) throw new Error('monitor already started');
    const { host, port, logger, source } = this.options;
    if (!isLoopbackHost(host) && !this.auth.hasToken) {
      throw new MonitorError(C.MONITOR_BAD_OPTIONS, `monitor: refusing to listen on ${host} (not loopback) without a control token; set monitor.token or monitor.token_file`);
    }
    const limits = admissionLimits(this.options);
    const handshakeMs = this.options.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS;
    if (!Number.isInteger(handshakeMs) || handshakeMs < MIN_HANDSHAKE_TIMEOUT_MS || handshakeMs > MAX_HANDSHAKE_TIMEOUT_MS) {
      throw new MonitorError(C.MONITOR_BAD_OPTIONS, `monitor: handshakeTimeoutMs must be an integer in ${MIN_HANDSHAKE_TIMEOUT_MS}..${MAX_HANDSHAKE_TIMEOUT_MS}, got ${handshakeMs}`);
    }
    const pingMs = this.options.pingIntervalMs ?? DEFAULT_PING_INTERVAL_MS;
    if (!Number.isInteger(pingMs) || pingMs < 1 || pingMs > MAX_PING_INTERVAL_MS) {
      throw new MonitorError(C.MONITOR_BAD_OPTIONS, `monitor: pingIntervalMs must be an integer in 1..${MAX_PING_INTERVAL_MS}, got ${pingMs}`);
    }
    for (const [path, [file, type]] of Object.entries(assetFiles())) {
      try {
        this.assets.set(path, { body: await readFile(file), type });
      } catch (err) {
        throw new MonitorError(C.MONITOR_BAD_OPTIONS, `monitor: cannot read the dashboard asset ${file}: ${(err as Error).message}`, { cause: err });
      }
    }
    // The node's source is followed before the port opens, as a monitor of one node always did.
    if (source !== undefined) this.detachOwn = this.attachNow(this.options.domain ?? DEFAULT_DOMAIN, source);
    this.metrics.start();
    // Never echo the token-carrying subprotocol back: select the plain one, or none.
    const wss = new WebSocketServer({
      noServer: true,
      maxPayload: MAX_FRAME_BYTES,
      perMessageDeflate: false,
      handleProtocols: (offered: Set<string>) => (offered.has(EVENTS_PROTOCOL) ? EVENTS_PROTOCOL : false),
    });
    this.admission = new MonitorAdmission(limits);
    this.admissionLog = new BurstLog({ logger, summarize: summarizeAdmission(limits) });
    // A connection that opens and sends nothing (or a request a byte at a time) holds a
    // socket: it must send its whole request, an upgrade included, within the handshake
    // timeout. Node checks every connection at connectionsCheckingInterval.
    const server = createServer(
      { headersTimeout: handshakeMs, requestTimeout: handshakeMs, connectionsCheckingInterval: Math.max(50, Math.min(1000, Math.floor(handshakeMs / 4))) },
      (req, res) => this.onRequest(req, res),
    );
    server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => this.onUpgrade(req, socket, head));
    server.on('connection', (socket: Socket) => {
      this.sockets.add(socket);
      socket.once('close', () => this.sockets.delete(socket));
    });
    try {
      await listen(server, port, host);
    } catch (err) {
      await this.detachOwn?.();
      this.detachOwn = undefined;
      this.metrics.stop();
      throw new MonitorError(C.MONITOR_LISTEN_FAILED, `monitor: cannot listen on ${formatAddress({ host, port })}: ${(err as Error).message}`, { cause: err });
    }
    server.on('error', (err) => logger.error({ err }, 'monitor listener error'));
    this.server = server;
    this.wss = wss;
    this.address = server.address() as AddressInfo;
    this.pinger = setInterval(() => this.hub.sweep(), pingMs);
    this.pinger.unref();
    logger.info({ monitor: this.url }, `monitor listening on ${this.url} (dashboard ${this.url}, events ${this.url.replace(/^http/, 'ws')}ws)`);
    return this.address;
  }

  /** Stops listening, and takes off every domain shown (their sources stop; a node's own detach is then a no-op). */
  async stop(): Promise<void> {
    clearInterval(this.pinger);
    this.detachOwn = undefined;
    for (const shown of [...this.shown.values()]) this.takeOff(shown);
    this.metrics.stop();
    const server = this.server;
    this.server = undefined;
    if (!server) return;
    for (const ws of this.wss?.clients ?? []) ws.terminate();
    this.hub.clear();
    this.admissionLog?.stop();
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const s of this.sockets) s.destroy();
    await closed;
    this.wss?.close();
    this.wss = undefined;
  }

  /**
   * On a loopback bind, a request must name a loopback host: a page on a
   * site whose name resolves to 127.0.0.1 (DNS rebinding) is then refused.
   */
  private hostAllowed(req: IncomingMessage): boolean {
    if (!isLoopbackHost(this.options.host)) return true;
    const host = req.headers.host;
    if (host === undefined) return false;
    try {
      return isLoopbackHost(new URL(`http://${host}`).hostname.replace(/^\[(.*)\]$/, '$1'));
    } catch {
      return false;
    }
  }

  private onRequest(req: IncomingMessage, res: ServerResponse): void {
    if (!this.hostAllowed(req)) return this.respond(res, 421, 'text/plain', 'this monitor answers to loopback host names only\n');
    const path = (req.url ?? '/').split('?')[0];
    const remote = req.socket.remoteAddress;
    const token = bearer(req.headers.authorization);
    if (path === '/api/control') {
      if (req.method !== 'POST') return this.respond(res, 405, 'text/plain', 'use POST\n', { allow: 'POST' });
      return this.controlOverHttp(req, res);
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') return this.respond(res, 405, 'text/plain', 'method not allowed\n', { allow: 'GET, HEAD' });
    // The dashboard's files hold no data: served to anyone who reaches the port, so a
    // page can load and then present the token for the stream.
    const asset = this.assets.get(path === '/index.html' ? '/' : path);
    if (asset) return this.respond(res, 200, asset.type, asset.body, { 'content-security-policy': CSP, 'cache-control': 'no-cache' });
    const access = this.auth.readAccess(remote, token);
    if (access === 'locked') return this.respond(res, 429, 'text/plain', 'too many wrong tokens from this address; try again later\n', { 'retry-after': this.retryAfter(remote) });
    if (access !== 'ok') return this.respond(res, 401, 'text/plain', 'reading this monitor needs the token\n', { 'www-authenticate': 'Bearer' });
    if (path === '/metrics') {
      this.metricsText().then(
        (text) => this.respond(res, 200, this.metrics.contentType, text),
        (err: unknown) => {
          this.options.logger.error({ err }, 'metrics collection failed');
          this.respond(res, 500, 'text/plain', 'metrics collection failed\n');
        },
      );
      return;
    }
    if (path === '/api/status') {
      const query = new URLSearchParams((req.url ?? '').split('?')[1] ?? '');
      let answer: SnapshotEvent | DomainsEvent;
      try {
        const named = query.getAll('domain');
        if (named.length > 1) throw new MonitorError(C.MONITOR_BAD_MESSAGE, 'domain: name one domain at most');
        // ?brief=1: without the recent epochs and the history, what a peer reads every second.
        answer = this.statusAnswer(parseDomain(named[0]), query.get('brief') === '1');
      } catch (err) {
        const e = err instanceof MonitorError ? err : new MonitorError(C.MONITOR_BAD_MESSAGE, String(err), { cause: err });
        return this.respond(res, HTTP_STATUS[e.code] ?? 500, 'application/json', `${JSON.stringify({ ...this.envelope(), type: 'error', id: null, code: e.code, message: e.message })}\n`, { 'cache-control': 'no-store' });
      }
      return this.respond(res, 200, 'application/json', `${JSON.stringify(answer)}\n`, { 'cache-control': 'no-store' });
    }
    if (path === '/healthz') return this.health(res);
    if (path === '/readyz') {
      const body = readyzBody(this.role, this.readiness());
      return this.respond(res, body.ready ? 200 : 503, 'application/json', `${JSON.stringify(body)}\n`, { 'cache-control': 'no-store' });
    }
    this.respond(res, 404, 'text/plain', 'not found\n');
  }

  /** Alive: this answer itself shows the process and its event loop run (whatever its domains do: readiness tells that). */
  private health(res: ServerResponse): void {
    const ok = this.server !== undefined;
    const body = { ok, node: this.role, uptimeSeconds: Math.round(process.uptime()), reason: ok ? 'the monitor answers and follows its nodes' : 'the monitor is stopping' };
    this.respond(res, ok ? 200 : 503, 'application/json', `${JSON.stringify(body)}\n`, { 'cache-control': 'no-store' });
  }

  private respond(res: ServerResponse, status: number, type: string, body: string | Buffer, headers: Record<string, string> = {}): void {
    const buf = typeof body === 'string' ? Buffer.from(body) : body;
    res.writeHead(status, { 'content-type': type, 'content-length': buf.length, ...SECURITY_HEADERS, ...headers });
    res.end(res.req.method === 'HEAD' ? undefined : buf);
  }

  private controlOverHttp(req: IncomingMessage, res: ServerResponse): void {
    const chunks: Buffer[] = [];
    let size = 0;
    let tooBig = false;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_MESSAGE_BYTES) tooBig = true;
      else chunks.push(c);
    });
    req.on('end', () => {
      const reply = (status: number, body: unknown): void => this.respond(res, status, 'application/json', `${JSON.stringify(body)}\n`, { 'cache-control': 'no-store' });
      const fail = (err: MonitorError, id: string | number | null): void => {
        const headers: Record<string, string> = err.code === C.MONITOR_RATE_LIMITED ? { 'retry-after': this.retryAfter(req.socket.remoteAddress) } : {};
        this.respond(res, HTTP_STATUS[err.code] ?? 500, 'application/json', `${JSON.stringify({ ...this.envelope(), type: 'error', id, code: err.code, message: err.message })}\n`, { 'cache-control': 'no-store', ...headers });
      };
      if (tooBig) return fail(new MonitorError(C.MONITOR_BAD_MESSAGE, `request body over ${MAX_MESSAGE_BYTES} bytes`), null);
      const text = Buffer.concat(chunks).toString('utf8');
      let msg: ClientMessage;
      try {
        msg = parseClientMessage(text, true);
      } catch (err) {
        return fail(err as MonitorError, null);
      }
      if (msg.type === 'status') {
        let result: SnapshotEvent | DomainsEvent;
        try {
          result = this.statusAnswer(msg.domain);
        } catch (err) {
          return fail(err as MonitorError, msg.id);
        }
        return reply(200, { ...this.envelope(), type: 'reply', id: msg.id, action: 'status', result });
      }
      const who = { remote: describeRemote(req.socket), address: req.socket.remoteAddress, token: msg.token ?? bearer(req.headers.authorization) };
      this.control.perform(msg.command, who, msg.domain).then(
        (result) => reply(200, { ...this.envelope(), type: 'reply', id: msg.id, action: msg.command.action, result }),
        (err: unknown) => fail(err instanceof MonitorError ? err : new MonitorError(C.MONITOR_ACTION_FAILED, String(err), { cause: err }), msg.id),
      );
    });
    req.on('error', () => res.destroy());
  }

  /** Seconds, for a Retry-After header. */
  private retryAfter(address: string | undefined): string {
    return String(Math.max(1, Math.ceil(this.auth.lockedFor(address) / 1000)));
  }

  private envelope(): { v: typeof SCHEMA_VERSION; ts: number; node: NodeRole } {
    return { v: SCHEMA_VERSION, ts: (this.options.now ?? Date.now)(), node: this.role };
  }

  private onUpgrade(req: IncomingMessage, socket: Socket, head: Buffer): void {
    const refuse = (status: number, text: string): void => {
      socket.end(`HTTP/1.1 ${status} ${text}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
    };
    if (!this.hostAllowed(req)) return refuse(421, 'Misdirected Request');
    const path = (req.url ?? '/').split('?')[0];
    if (path !== '/ws' || !this.wss) return refuse(404, 'Not Found');
    const token = bearer(req.headers.authorization) ?? tokenFromProtocols(req.headers['sec-websocket-protocol']);
    const address = req.socket.remoteAddress;
    // A token presented here claims an operator's slot: verified (a wrong one counted) like any other.
    const verdict = token === undefined ? undefined : this.auth.verify(token, address);
    const role: ClientRole = verdict === 'ok' ? 'operator' : 'viewer';
    if (role === 'viewer') {
      const access = this.auth.readAccess(address, undefined);
      if (access !== 'ok') return access === 'locked' || verdict === 'locked' ? refuse(429, 'Too Many Requests') : refuse(401, 'Unauthorized');
    }
    // A page from another site must not read events through the user's browser.
    const origin = req.headers.origin;
    if (origin !== undefined && !sameOrigin(origin, req.headers.host)) {
      this.options.logger.warn({ origin }, 'monitor: refused a WebSocket from another origin');
      return refuse(403, 'Forbidden');
    }
    const admission = this.admission!;
    const remote = describeRemote(req.socket);
    const decision = admission.decide(role);
    if (!decision.admit) {
      const why = decision.why === 'viewers-full' ? 'every slot for clients without the token is taken' : 'every slot is taken';
      this.admissionLog?.note(role === 'viewer' ? 'refused-viewer' : 'refused-operator', { remote, role }, `monitor: refused a WebSocket ${role} from ${remote}: ${why}`);
      return refuse(503, 'Service Unavailable');
    }
    this.wss.handleUpgrade(req, socket, head, (ws) => this.onClient(ws, req, token, role));
  }

  private onClient(ws: WebSocket, req: IncomingMessage, connectionToken: string | undefined, role: ClientRole): void {
    const remote = describeRemote(req.socket);
    const log = this.options.logger;
    const admission = this.admission!;
    // Decided again now that the upgrade is done: another client may have taken the slot meanwhile.
    const decision = admission.decide(role);
    if (!decision.admit) {
      this.admissionLog?.note(role === 'viewer' ? 'refused-viewer' : 'refused-operator', { remote, role }, `monitor: refused a WebSocket ${role} from ${remote}: its slot was taken during the upgrade`);
      ws.close(CLOSE_EVICTED, 'no slot left');
      return;
    }
    if (decision.evict !== undefined) this.evict(decision.evict, remote);
    const client = new WsClient(ws, remote);
    admission.add(client, role, this.monotonic());
    ws.on('pong', () => this.hub.pong(client));
    ws.on('close', () => {
      this.hub.remove(client);
      admission.remove(client);
      log.debug({ remote }, 'monitor client left');
    });
    ws.on('error', (err) => log.debug({ remote, err: err.message }, 'monitor client error'));
    const address = req.socket.remoteAddress;
    ws.on('message', (data: RawData, isBinary: boolean) => {
      admission.touch(client, this.monotonic());
      this.onMessage(client, { remote, address }, connectionToken, data, isBinary);
    });
    log.debug({ remote, role }, 'monitor client connected');
    this.hub.add(client);
  }

  /** Closes a viewer so an operator gets its slot; the slot is free at once, whatever the close handshake does. */
  private evict(victim: WsClient, operator: string): void {
    const idleMs = Math.round(this.admission!.idleMs(victim, this.monotonic()));
    this.admission!.remove(victim, true);
    this.hub.remove(victim);
    this.admissionLog?.note('evicted-viewer', { remote: victim.remote, idleMs, for: operator }, `monitor: viewer ${victim.remote} (${idleMs} ms without a message) closed to give its slot to operator ${operator}`);
    victim.ws.close(CLOSE_EVICTED, 'slot needed by an operator');
  }

  private monotonic(): number {
    return performance.now();
  }

  private onMessage(client: HubClient, peer: { remote: string; address: string | undefined }, connectionToken: string | undefined, data: RawData, isBinary: boolean): void {
    const error = (err: unknown, id: string | number | null): void => {
      const e = err instanceof MonitorError ? err : new MonitorError(C.MONITOR_ACTION_FAILED, String(err), { cause: err });
      this.hub.sendTo(client, { type: 'error', id, code: e.code, message: e.message });
    };
    if (isBinary) return error(new MonitorError(C.MONITOR_BAD_MESSAGE, 'binary frames are not accepted; send JSON text'), null);
    const text = Array.isArray(data) ? Buffer.concat(data).toString('utf8') : Buffer.from(data as Buffer).toString('utf8');
    let msg: ClientMessage;
    try {
      msg = parseClientMessage(text);
    } catch (err) {
      let id: string | number | null = null;
      try {
        id = requestId(JSON.parse(text));
      } catch {
        // not JSON: no id to echo
      }
      return error(err, id);
    }
    if (msg.type === 'status') {
      let result: SnapshotEvent | DomainsEvent;
      try {
        result = this.statusAnswer(msg.domain);
      } catch (err) {
        return error(err, msg.id);
      }
      this.hub.sendTo(client, { type: 'reply', id: msg.id, action: 'status', result: result as unknown as Record<string, unknown> });
      return;
    }
    const action: ControlAction = msg.command.action;
    this.control.perform(msg.command, { ...peer, token: msg.token ?? connectionToken }, msg.domain).then(
      (result) => this.hub.sendTo(client, { type: 'reply', id: msg.id, action, result }),
      (err: unknown) => error(err, msg.id),
    );
  }
}

/**
 * /readyz's answer: ready when every domain shown is (none shown: not
 * ready: nothing is protected yet). With one domain, its own readiness at
 * the top, as a monitor of one node always answered; always the list.
 */
export function readyzBody(node: NodeRole, domains: DomainReadiness[]): { ready: boolean; node: NodeRole; reason: string; state?: string; domain?: string; domains: DomainReadiness[] } {
  if (domains.length === 1) return { ...domains[0], domains };
  const notReady = domains.filter((d) => !d.ready);
  const ready = domains.length > 0 && notReady.length === 0;
  const reason =
    domains.length === 0
      ? 'no domain is shown by this monitor yet'
      : ready
        ? `all ${domains.length} domains are ready`
        : `${notReady.length} of ${domains.length} domains not ready: ${notReady.map((d) => `${d.domain} (${d.state})`).join(', ')}`;
  return { ready, node, reason, domains };
}

function summarizeAdmission(limits: AdmissionLimits): (counts: Partial<Record<AdmissionEvent, number>>, windowMs: number) => string {
  return (counts, windowMs) => {
    const parts: string[] = [];
    if (counts['evicted-viewer']) parts.push(`${counts['evicted-viewer']} viewers closed for operators`);
    if (counts['refused-viewer']) parts.push(`${counts['refused-viewer']} viewers refused`);
    if (counts['refused-operator']) parts.push(`${counts['refused-operator']} operators refused (every slot an operator's)`);
    return `monitor (${limits.maxClients} WebSocket slots, ${limits.operatorSlots} kept for operators), in the last ${Math.round(windowMs / 1000)} s: ${parts.join(', ')}`;
  };
}

function describeRemote(socket: Socket): string {
  return socket.remoteAddress === undefined ? 'unknown' : formatAddress({ host: socket.remoteAddress, port: socket.remotePort ?? 0 });
}

function sameOrigin(origin: string, host: string | undefined): boolean {
  try {
    return host !== undefined && new URL(origin).host === host;
  } catch {
    return false;
  }
}
