/**
 * The monitor's one HTTP server: the dashboard at `/` (with its static
 * assets and uPlot), the event stream at `/ws`, Prometheus `/metrics`,
 * `/healthz` and `/readyz`, `/api/status` and `POST /api/control`.
 *
 * Static files are read into memory at start from a fixed list, so a request
 * path is only ever a key into a map: no path from a client reaches the file
 * system. Loopback by default; a non-loopback bind needs a token.
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
import { MAX_MESSAGE_BYTES, MonitorControl, parseClientMessage, requestId, type ClientMessage } from './control.js';
import { SCHEMA_VERSION, type BroadcastEvent, type ControlAction, type NodeRole, type SnapshotEvent } from './events.js';
import { MonitorError, MonitorErrorCodes as C } from './errors.js';
import { readiness } from './health.js';
import { MonitorHub, type HubClient, type HubOptions } from './hub.js';
import { MonitorMetrics } from './metrics.js';
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
  source: MonitorSource;
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
  /** The other node's monitor, read for the pair view (`monitor.peer`); absent: the snapshot's peer is null. */
  peer?: Omit<PeerWatchOptions, 'logger' | 'now' | 'onEvent'>;
}

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
};

export class MonitorServer {
  readonly hub: MonitorHub;
  readonly metrics: MonitorMetrics;
  readonly control: MonitorControl;
  private readonly auth: MonitorAuth;
  private server: Server | undefined;
  private wss: WebSocketServer | undefined;
  private assets = new Map<string, Asset>();
  private subscription: Subscription | undefined;
  private pinger: NodeJS.Timeout | undefined;
  private readonly sockets = new Set<Socket>();
  private address: AddressInfo | undefined;
  private admission: MonitorAdmission<WsClient> | undefined;
  private admissionLog: BurstLog<AdmissionEvent> | undefined;
  private readonly peer: PeerWatch | undefined;

  constructor(private readonly options: MonitorServerOptions) {
    const { source, logger } = options;
    // Its events take the path the node's own do (the hub, the metrics, the history).
    this.peer = options.peer === undefined ? undefined : new PeerWatch({ ...options.peer, logger, now: options.now, onEvent: (e) => source.events$.next(e) });
    this.auth = new MonitorAuth({ ...options.auth, throttle: { now: options.now ?? Date.now, ...options.auth.throttle } });
    this.hub = new MonitorHub({
      node: source.role,
      now: options.now,
      ...options.limits,
      snapshot: () => {
        const { state, reason, mode, intervalMs, lastEpoch, lagMs, recent, arbiter, precopy, generation, heartbeat, heldBytes, lastFailover, guestProtected } = source.status();
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
          actions: this.control.actions,
          generation,
          heartbeat,
          heldBytes,
          peer: this.peer?.view() ?? null,
          lastFailover,
          guestProtected,
        };
      },
      // The guest's clients, what an operator asks about; the monitor's own are in /metrics (tandem_monitor_clients).
      clients: () => source.clients?.()?.connections ?? 0,
      onCut: (_client, why) => logger.warn({ why }, `monitor client cut: ${why === 'slow' ? 'it fell too far behind' : 'it stopped answering pings'}`),
    });
    this.metrics = new MonitorMetrics({
      node: source.role,
      state: () => source.status().state,
      lagMs: () => source.status().lagMs,
      clients: () => this.hub.size,
      admission: () => this.admission?.stats(),
      serviceClients: source.clients,
      lastEpoch: () => source.status().lastEpoch,
      precopy: () => source.status().precopy,
      readings: () => source.readings(),
      peerMonitorUp: this.peer === undefined ? undefined : () => this.peer!.view().reachable,
    });
    this.control = new MonitorControl({ target: source.control, auth: this.auth, logger, audit: (e) => source.events$.next(e) });
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
    this.subscription = source.events$.subscribe((body) => {
      // This runs inside the engine's callbacks: RxJS would rethrow an error here as an
      // uncaught exception, taking the node down for the sake of a monitor.
      try {
        const event: BroadcastEvent = this.hub.publish(body);
        this.metrics.observe(event);
      } catch (err) {
        logger.error({ err, type: body.type }, 'monitor: could not publish an event');
      }
    });
    source.start();
    this.metrics.start();
    try {
      this.peer?.start();
    } catch (err) {
      this.subscription.unsubscribe();
      this.subscription = undefined;
      source.stop();
      this.metrics.stop();
      throw err;
    }
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
      this.subscription.unsubscribe();
      this.subscription = undefined;
      source.stop();
      this.metrics.stop();
      this.peer?.stop();
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

  async stop(): Promise<void> {
    clearInterval(this.pinger);
    this.peer?.stop();
    this.subscription?.unsubscribe();
    this.subscription = undefined;
    this.options.source.stop();
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

  private snapshot(): SnapshotEvent {
    return this.hub.snapshotEvent();
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
      this.metrics.text().then(
        (text) => this.respond(res, 200, this.metrics.contentType, text),
        (err: unknown) => {
          this.options.logger.error({ err }, 'metrics collection failed');
          this.respond(res, 500, 'text/plain', 'metrics collection failed\n');
        },
      );
      return;
    }
    if (path === '/api/status') {
      // ?brief=1: without the recent epochs and the history, what a peer reads every second.
      const snapshot = /(^|&)brief=1(&|$)/.test((req.url ?? '').split('?')[1] ?? '') ? { ...this.snapshot(), recent: [], history: [] } : this.snapshot();
      return this.respond(res, 200, 'application/json', `${JSON.stringify(snapshot)}\n`, { 'cache-control': 'no-store' });
    }
    if (path === '/healthz') return this.health(res);
    if (path === '/readyz') {
      const { state, reason } = this.options.source.status();
      const r = readiness(this.options.source.role, state, reason);
      return this.respond(res, r.ready ? 200 : 503, 'application/json', `${JSON.stringify(r)}\n`, { 'cache-control': 'no-store' });
    }
    this.respond(res, 404, 'text/plain', 'not found\n');
  }

  /** Alive: this answer itself shows the process and its event loop run; the source must still be attached. */
  private health(res: ServerResponse): void {
    const { role } = this.options.source;
    const ok = this.subscription !== undefined;
    const body = { ok, node: role, uptimeSeconds: Math.round(process.uptime()), reason: ok ? 'the monitor answers and follows its node' : 'the monitor is stopping' };
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
      if (msg.type === 'status') return reply(200, { ...this.envelope(), type: 'reply', id: msg.id, action: 'status', result: this.snapshot() });
      const who = { remote: describeRemote(req.socket), address: req.socket.remoteAddress, token: msg.token ?? bearer(req.headers.authorization) };
      this.control.perform(msg.command, who).then(
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
    return { v: SCHEMA_VERSION, ts: (this.options.now ?? Date.now)(), node: this.options.source.role };
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
      this.hub.sendTo(client, { type: 'reply', id: msg.id, action: 'status', result: this.snapshot() as unknown as Record<string, unknown> });
      return;
    }
    const action: ControlAction = msg.command.action;
    this.control.perform(msg.command, { ...peer, token: msg.token ?? connectionToken }).then(
      (result) => this.hub.sendTo(client, { type: 'reply', id: msg.id, action, result }),
      (err: unknown) => error(err, msg.id),
    );
  }
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
