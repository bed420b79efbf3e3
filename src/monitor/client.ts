/**
 * The client side of the monitor, for `tandem watch`, `tandem status` and
 * the control commands: monitor URLs, a status fetch, a control request and
 * an event stream, every message checked against the schema. The token is
 * the caller's to find (src/cli/token.ts); it goes in an Authorization
 * header and nowhere else.
 */
import { request } from 'node:http';
import WebSocket from 'ws';
import { parseAddress } from '../util/address.js';
import type { ControlCommand } from './control.js';
import { isUnknownType, parseEvent, validateEvent, type DomainsEvent, type MonitorEvent, type NodeRole, type SnapshotEvent } from './events.js';
import { MonitorError, MonitorErrorCodes as C, type MonitorErrorCode } from './errors.js';

/** Where `tandem watch` and `status` look when given no URL. */
export const DEFAULT_MONITOR_URL = 'http://127.0.0.1:7790/';
const MAX_STATUS_BYTES = 4 * 1024 * 1024;

const KNOWN_CODES = new Set<string>(Object.values(C));

/** A monitor's error code as one of ours; a code this client does not know (a newer monitor) is a failed action, its text kept in the message. */
function monitorCode(code: string): MonitorErrorCode {
  return KNOWN_CODES.has(code) ? (code as MonitorErrorCode) : C.MONITOR_ACTION_FAILED;
}

export interface MonitorUrls {
  http: URL;
  ws: URL;
}

/** Accepts http(s)://HOST:PORT[/...], ws(s)://HOST:PORT/ws or HOST:PORT. */
export function monitorUrls(text: string = DEFAULT_MONITOR_URL): MonitorUrls {
  let url: URL;
  if (!/^[a-z]+:\/\//i.test(text)) {
    const a = parseAddress(text, 'monitor address');
    url = new URL(`http://${a.host.includes(':') ? `[${a.host}]` : a.host}:${a.port}/`);
  } else {
    try {
      url = new URL(text);
    } catch (err) {
      throw new MonitorError(C.MONITOR_BAD_OPTIONS, `${JSON.stringify(text)} is not a URL`, { cause: err });
    }
  }
  const secure = url.protocol === 'https:' || url.protocol === 'wss:';
  if (!['http:', 'https:', 'ws:', 'wss:'].includes(url.protocol)) throw new MonitorError(C.MONITOR_BAD_OPTIONS, `${text}: expected an http:// or ws:// URL`);
  const http = new URL(`${secure ? 'https' : 'http'}://${url.host}/`);
  const ws = new URL(`${secure ? 'wss' : 'ws'}://${url.host}/ws`);
  return { http, ws };
}

function authHeaders(token: string | undefined): Record<string, string> {
  return token ? { authorization: `Bearer ${token}` } : {};
}

export interface FetchStatusOptions {
  /** No whole answer in this long: rejected (default 10 s). */
  timeoutMs?: number;
  /** An answer larger than this is cut off and rejected (default 4 MiB). */
  maxBytes?: number;
  signal?: AbortSignal;
  /** Without the recent epochs and the history (`?brief=1`; a monitor older than it sends them all the same). */
  brief?: boolean;
  /** The domain to ask about (`?domain=NAME`); absent: the only one, or (several shown) all of them. A monitor older than domains ignores it. */
  domain?: string;
}

/** The codes a monitor's error answer may carry that mean the same to the caller as to the monitor. */
const PASSED_ON: ReadonlySet<string> = new Set([C.MONITOR_UNKNOWN_DOMAIN, C.MONITOR_DOMAIN_REQUIRED, C.MONITOR_BAD_MESSAGE]);

/**
 * GET /api/status as a snapshot: rejects MONITOR_BAD_EVENT when the monitor
 * shows several domains and none was asked for (see fetchStatuses).
 */
export async function fetchStatus(urls: MonitorUrls, token: string | undefined, options: FetchStatusOptions = {}): Promise<SnapshotEvent> {
  const answer = await fetchStatusAnswer(urls, token, options);
  if (answer.type === 'snapshot') return answer;
  const names = answer.domains.map((d) => d.domain).join(', ');
  throw new MonitorError(C.MONITOR_BAD_EVENT, `${urls.http.href}: the monitor shows ${answer.domains.length} domains (${names || 'none'}), not one: name one`);
}

/** Every domain's snapshot (one from a monitor of one domain, or one older than domains). */
export async function fetchStatuses(urls: MonitorUrls, token: string | undefined, options: FetchStatusOptions = {}): Promise<SnapshotEvent[]> {
  const answer = await fetchStatusAnswer(urls, token, options);
  return answer.type === 'snapshot' ? [answer] : answer.domains;
}

/**
 * GET /api/status, validated as a snapshot; `token` for a monitor that wants
 * one to be read. Rejects MONITOR_UNREACHABLE (no answer), MONITOR_UNAUTHORIZED
 * (401), MONITOR_RATE_LIMITED (429) or MONITOR_BAD_EVENT (an answer that is
 * not a snapshot, or too large).
 */
export function fetchStatusAnswer(urls: MonitorUrls, token: string | undefined, options: FetchStatusOptions = {}): Promise<SnapshotEvent | DomainsEvent> {
  const timeoutMs = options.timeoutMs ?? 10_000;
  const maxBytes = options.maxBytes ?? MAX_STATUS_BYTES;
  return new Promise((resolve, reject) => {
    const url = new URL('/api/status', urls.http);
    if (options.brief === true) url.searchParams.set('brief', '1');
    if (options.domain !== undefined) url.searchParams.set('domain', options.domain);
    let settled = false;
    const settle = (err: Error | undefined, event?: SnapshotEvent | DomainsEvent): void => {
      if (settled) return;
      settled = true;
      clearTimeout(deadline);
      if (err) reject(err);
      else resolve(event!);
    };
    // A whole answer within the time, however slowly it trickles in.
    const deadline = setTimeout(() => req.destroy(new Error(`no whole answer in ${timeoutMs} ms`)), timeoutMs);
    const req = request(url, { headers: authHeaders(token), signal: options.signal }, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size <= maxBytes) return void chunks.push(c);
        // Cut at once: whatever else the monitor sends is not read.
        settle(new MonitorError(C.MONITOR_BAD_EVENT, `${url.href}: the answer is over ${maxBytes} bytes`));
        req.destroy();
      });
      res.on('error', () => {});
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        if (res.statusCode !== 200) {
          const said = text.trim().slice(0, 200);
          const told = errorCodeOf(text);
          const code = res.statusCode === 401 ? C.MONITOR_UNAUTHORIZED : res.statusCode === 429 ? C.MONITOR_RATE_LIMITED : told !== undefined && PASSED_ON.has(told) ? (told as MonitorErrorCode) : C.MONITOR_UNREACHABLE;
          return settle(new MonitorError(code, `${url.href}: HTTP ${res.statusCode}${said === '' ? '' : `: ${said}`}`));
        }
        try {
          const event = parseEvent(text);
          if (event.type !== 'snapshot' && event.type !== 'domains') throw new MonitorError(C.MONITOR_BAD_EVENT, `${url.href}: expected a snapshot, got a ${event.type} event`);
          settle(undefined, event);
        } catch (err) {
          settle(err instanceof Error ? err : new Error(String(err)));
        }
      });
    });
    req.on('error', (err) => settle(new MonitorError(C.MONITOR_UNREACHABLE, `cannot reach the monitor at ${url.href}: ${err.message}`, { cause: err })));
    req.end();
  });
}

/** The code of a monitor's error answer ({"type":"error","code":...}), if the text is one. */
function errorCodeOf(text: string): string | undefined {
  try {
    const body: unknown = JSON.parse(text);
    if (typeof body === 'object' && body !== null && typeof (body as { code?: unknown }).code === 'string') return (body as { code: string }).code;
  } catch {
    // not JSON: an older monitor's plain text
  }
  return undefined;
}

/** A control action's answer: which node did it, and what it says came of it. */
export interface ControlReply {
  node: NodeRole;
  result: Record<string, unknown> | null;
}

/**
 * POST /api/control with the token: resolves with the reply, rejects with
 * the monitor's error (its code and message).
 */
export function sendControl(urls: MonitorUrls, command: ControlCommand, token: string, timeoutMs = 30_000, domain?: string): Promise<ControlReply> {
  const { action } = command;
  return new Promise((resolve, reject) => {
    const url = new URL('/api/control', urls.http);
    // The command's own fields (intervalMs, mode) are the request's, as the monitor parses them (control.ts).
    const body = JSON.stringify({ ...command, id: 1, ...(domain === undefined ? {} : { domain }) });
    const req = request(url, { method: 'POST', headers: { ...authHeaders(token), 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size > MAX_STATUS_BYTES) req.destroy(new Error(`reply over ${MAX_STATUS_BYTES} bytes`));
        else chunks.push(c);
      });
      res.on('end', () => {
        try {
          const event = parseEvent(Buffer.concat(chunks).toString('utf8'));
          if (event.type === 'error') {
            // The code is shown once (the CLI appends it); one this client does not know stays in the message.
            const code = monitorCode(event.code);
            reject(new MonitorError(code, `${action}: ${event.message}${code === event.code ? '' : ` [${event.code.slice(0, 64)}]`}`));
          }
          else if (event.type === 'reply') resolve({ node: event.node, result: event.result });
          else reject(new MonitorError(C.MONITOR_BAD_EVENT, `${url.href}: expected a reply, got a ${event.type} event`));
        } catch (err) {
          reject(err instanceof Error ? err : new Error(String(err)));
        }
      });
    });
    req.on('timeout', () => req.destroy(new Error(`no answer in ${timeoutMs} ms`)));
    req.on('error', (err) => reject(new MonitorError(C.MONITOR_UNREACHABLE, `cannot reach the monitor at ${url.href}: ${err.message}`, { cause: err })));
    req.end(body);
  });
}

/**
 * Streams events to `onEvent` until it returns false or `signal` aborts;
 * resolves with how many events were seen. A monitor that closes the stream
 * itself (its node stopped, the network went) rejects MONITOR_UNREACHABLE:
 * a watcher must not take silence for an ended story.
 */
export function streamEvents(urls: MonitorUrls, onEvent: (e: MonitorEvent) => boolean | void, options: { token?: string; signal?: AbortSignal } = {}): Promise<number> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(urls.ws, { headers: authHeaders(options.token), maxPayload: 16 * 1024 * 1024, handshakeTimeout: 10_000 });
    let seen = 0;
    let failed: Error | undefined;
    let opened = false;
    let done = false;
    const stop = (): void => {
      done = true;
      ws.close(1000);
    };
    options.signal?.addEventListener('abort', stop, { once: true });
    if (options.signal?.aborted === true) stop();
    ws.on('open', () => (opened = true));
    ws.on('message', (data: WebSocket.RawData, isBinary: boolean) => {
      // After the consumer said stop, frames still in flight are not its business.
      if (failed || done) return;
      try {
        if (isBinary) throw new MonitorError(C.MONITOR_BAD_EVENT, 'the monitor sent a binary frame');
        const text = Array.isArray(data) ? Buffer.concat(data).toString('utf8') : Buffer.from(data as Buffer).toString('utf8');
        const message: unknown = JSON.parse(text);
        if (isUnknownType(message)) return;
        const event = validateEvent(message);
        seen++;
        if (onEvent(event) === false) stop();
      } catch (err) {
        failed = err instanceof MonitorError ? err : new MonitorError(C.MONITOR_BAD_EVENT, `unreadable event: ${(err as Error).message}`, { cause: err });
        ws.terminate();
      }
    });
    ws.on('unexpected-response', (_req, res) => {
      failed = new MonitorError(res.statusCode === 401 ? C.MONITOR_UNAUTHORIZED : C.MONITOR_UNREACHABLE, `${urls.ws.href}: HTTP ${res.statusCode} instead of a WebSocket`);
      ws.terminate();
    });
    ws.on('error', (err) => {
      const what = opened ? `the monitor at ${urls.ws.href} went away after ${seen} events` : `cannot reach the monitor at ${urls.ws.href}`;
      failed ??= new MonitorError(C.MONITOR_UNREACHABLE, `${what}: ${err.message}`, { cause: err });
    });
    ws.on('close', (code: number, reason: Buffer) => {
      options.signal?.removeEventListener('abort', stop);
      if (failed) reject(failed);
      else if (!opened) reject(new MonitorError(C.MONITOR_UNREACHABLE, `cannot reach the monitor at ${urls.ws.href}`));
      else if (!done) {
        const why = reason.length > 0 ? `${code} ${reason.toString('utf8').slice(0, 120)}` : String(code);
        reject(new MonitorError(C.MONITOR_UNREACHABLE, `the monitor at ${urls.ws.href} went away after ${seen} events (close ${why})`));
      } else resolve(seen);
    });
  });
}
