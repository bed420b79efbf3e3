/**
 * A small etcd v3 client over etcd's JSON gateway (POST /v3/..., the same
 * messages as the gRPC API with bytes in base64 and 64-bit integers as
 * decimal strings; zero values are omitted). The arbiter needs five calls:
 * range, txn, lease grant, keepalive and revoke, so a gRPC stack would be
 * most of the weight for none of the gain.
 *
 * Every answer is read with a bound on its size and checked field by field
 * before use: an endpoint is a peer, and what it says decides who serves.
 * Requests go to one endpoint at a time; one that does not answer (a network
 * error, the timeout, or a 5xx such as "no leader" from a member cut off from
 * its cluster's majority) hands the request to the next, and the first that
 * answers becomes the one used from then on.
 */
import http from 'node:http';
import https from 'node:https';
import type { SecureContextOptions } from 'node:tls';
import type { Address } from '../util/address.js';
import { formatAddress } from '../util/address.js';
import { ArbiterError, ArbiterErrorCodes as C } from './errors.js';

/** A key's bytes are UTF-8 text here; values are opaque. */
export interface KeyValue {
  key: string;
  value: Buffer;
  createRevision: number;
  modRevision: number;
  version: number;
  /** The lease the key is attached to ('0' for none), as etcd's decimal int64. */
  lease: string;
}

/** One comparison of a txn (the subset the arbiter uses). */
export type Compare =
  | { key: string; target: 'CREATE'; createRevision: number }
  | { key: string; target: 'MOD'; modRevision: number }
  | { key: string; target: 'VALUE'; value: Buffer };

export type TxnOp = { put: { key: string; value: Buffer; lease?: string } } | { range: { key: string } } | { delete: { key: string } };

export interface TxnResult {
  succeeded: boolean;
  /** The keys each range op found, in op order (puts and deletes give nothing). */
  ranges: (KeyValue | undefined)[];
}

export interface EtcdClientOptions {
  endpoints: readonly Address[];
  /** Per request and endpoint, ms. */
  timeoutMs: number;
  /** HTTPS with these (a CA, and the client's certificate and key for mutual TLS); plain HTTP when absent. */
  tls?: Pick<SecureContextOptions, 'ca' | 'cert' | 'key'>;
  /** Largest answer read, bytes (default 1 MiB: the arbiter reads two small keys). */
  maxResponseBytes?: number;
}

const DEFAULT_MAX_RESPONSE_BYTES = 1 << 20;
/** etcd's lease IDs are int64; kept as their decimal text (they pass 2^53). */
const LEASE_ID = /^-?\d{1,19}$/;

export class EtcdClient {
  private current = 0;
  private agent: http.Agent | undefined;

  constructor(private readonly options: EtcdClientOptions) {}

  /** Checks the options; the owner calls it from start(). */
  validate(): void {
    const { endpoints, timeoutMs } = this.options;
    if (endpoints.length === 0 || endpoints.length > 16) throw new ArbiterError(C.ARBITER_BAD_OPTIONS, `etcd endpoints: expected 1..16, got ${endpoints.length}`);
    if (!Number.isInteger(timeoutMs) || timeoutMs < 1 || timeoutMs > 60_000) throw new ArbiterError(C.ARBITER_BAD_OPTIONS, `etcd request timeout: expected 1..60000 ms, got ${timeoutMs}`);
  }

  /** The endpoint requests go to now (for logs). */
  get endpoint(): string {
    return formatAddress(this.options.endpoints[this.current]);
  }

  /** Lets go of kept-alive connections. */
  close(): void {
    this.agent?.destroy();
    this.agent = undefined;
  }

  async get(key: string): Promise<KeyValue | undefined> {
    const body = await this.call('/v3/kv/range', { key: b64(key) });
    return rangeResult(body, 'range');
  }

  async txn(compare: readonly Compare[], success: readonly TxnOp[], failure: readonly TxnOp[]): Promise<TxnResult> {
    const body = record(
      await this.call('/v3/kv/txn', {
        compare: compare.map(encodeCompare),
        success: success.map(encodeOp),
        failure: failure.map(encodeOp),
      }),
      'txn',
    );
    const succeeded = optional(body, 'succeeded', 'txn', 'boolean') ?? false;
    const responses = optional(body, 'responses', 'txn', 'array') ?? [];
    const ops = succeeded ? success : failure;
    if (responses.length !== ops.length) throw bad(`txn: ${responses.length} responses to ${ops.length} operations`);
    const ranges = ops.flatMap((op, i) => ('range' in op ? [rangeResult(record(responses[i], `txn response ${i}`).response_range, `txn response ${i}`)] : []));
    return { succeeded, ranges };
  }

  /** A lease of `ttlS` seconds (etcd may grant more: its minimum TTL); resolves with its ID and granted TTL. */
  async grant(ttlS: number): Promise<{ id: string; ttlS: number }> {
    const body = record(await this.call('/v3/lease/grant', { TTL: String(ttlS), ID: '0' }), 'lease grant');
    const error = optional(body, 'error', 'lease grant', 'string');
    if (error !== undefined && error !== '') throw new ArbiterError(C.ARBITER_REFUSED, `etcd refused a lease: ${error.slice(0, 200)}`);
    const id = leaseId(body.ID, 'lease grant ID');
    const ttl = int(body.TTL, 'lease grant TTL');
    if (id === '0' || ttl < 1) throw bad(`lease grant: no lease (ID ${id}, TTL ${ttl})`);
    return { id, ttlS: ttl };
  }

  /** Renews the lease; resolves with its TTL now, 0 when etcd no longer has it (expired or revoked). */
  async keepAlive(id: string): Promise<number> {
    const body = record(await this.call('/v3/lease/keepalive', { ID: id }), 'lease keepalive');
    // The gateway answers a stream: each message is {"result": ...} or {"error": ...}.
    if (body.error !== undefined) throw new ArbiterError(C.ARBITER_REFUSED, `etcd refused a keepalive: ${describe(body.error)}`);
    const result = record(body.result, 'lease keepalive result');
    const ttl = int(result.TTL, 'lease keepalive TTL');
    return ttl < 0 ? 0 : ttl;
  }

  /** Ends the lease now (its keys go with it); a lease etcd no longer has is already ended. */
  async revoke(id: string): Promise<void> {
    try {
      await this.call('/v3/lease/revoke', { ID: id });
    } catch (err) {
      if (err instanceof ArbiterError && err.code === C.ARBITER_REFUSED && /lease not found/.test(err.message)) return;
      throw err;
    }
  }

  /** POSTs to the endpoint in use, handing over to the next on a failure that another member may not share. */
  private async call(path: string, payload: unknown): Promise<unknown> {
    const { endpoints } = this.options;
    const json = JSON.stringify(payload);
    const failures: string[] = [];
    for (let i = 0; i < endpoints.length; i++) {
      const at = (this.current + i) % endpoints.length;
      try {
        const answer = await this.post(endpoints[at], path, json);
        this.current = at;
        return answer;
      } catch (err) {
        if (!(err instanceof Unavailable)) throw err;
        failures.push(`${formatAddress(endpoints[at])}: ${err.message}`);
      }
    }
    this.current = (this.current + 1) % endpoints.length;
    throw new ArbiterError(C.ARBITER_UNREACHABLE, `etcd unreachable (${path}): ${failures.join('; ')}`);
  }

  private post(endpoint: Address, path: string, json: string): Promise<unknown> {
    const { tls, timeoutMs } = this.options;
    const max = this.options.maxResponseBytes ?? DEFAULT_MAX_RESPONSE_BYTES;
    const secure = tls !== undefined;
    this.agent ??= secure ? new https.Agent({ keepAlive: true, maxSockets: 4, ...tls }) : new http.Agent({ keepAlive: true, maxSockets: 4 });
    const request = secure ? https.request : http.request;
    return new Promise((resolve, reject) => {
      const req = request({
        host: endpoint.host,
        port: endpoint.port,
        method: 'POST',
        path,
        agent: this.agent,
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(json) },
        timeout: timeoutMs,
      });
      // One deadline for the whole exchange, not only for idle sockets.
      const deadline = setTimeout(() => req.destroy(new Unavailable(`no answer in ${timeoutMs} ms`)), timeoutMs);
      const fail = (err: Error): void => {
        clearTimeout(deadline);
        reject(err instanceof ArbiterError || err instanceof Unavailable ? err : new Unavailable(err.message, err));
      };
      req.on('timeout', () => req.destroy(new Unavailable(`no answer in ${timeoutMs} ms`)));
      req.on('error', fail);
      req.on('response', (res) => {
        const status = res.statusCode ?? 0;
        const declared = Number(res.headers['content-length'] ?? 0);
        if (declared > max) {
          res.destroy();
          fail(bad(`${declared} bytes (the bound is ${max})`));
          return;
        }
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > max) {
            res.destroy();
            fail(bad(`over ${max} bytes`));
            return;
          }
          chunks.push(chunk);
        });
        res.on('error', fail);
        res.on('end', () => {
          clearTimeout(deadline);
          if (size > max) return;
          const text = Buffer.concat(chunks).toString('utf8');
          // A lease keepalive's answer is a stream of messages, one per line; the first is ours.
          const first = path === '/v3/lease/keepalive' ? text.split('\n', 1)[0] : text;
          let parsed: unknown;
          try {
            parsed = JSON.parse(first);
          } catch (err) {
            reject(status >= 500 ? new Unavailable(`HTTP ${status}`) : bad(`${path}: not JSON (HTTP ${status})`, err));
            return;
          }
          if (status === 200) resolve(parsed);
          else if (status >= 500) reject(new Unavailable(`HTTP ${status}: ${describe(parsed)}`));
          else reject(new ArbiterError(C.ARBITER_REFUSED, `etcd refused ${path}: HTTP ${status}: ${describe(parsed)}`));
        });
      });
      req.end(json);
    });
  }
}

/** A failure of one endpoint that another might not have: try the next. */
class Unavailable extends Error {
  constructor(message: string, cause?: unknown) {
    super(message, { cause });
  }
}

const bad = (message: string, cause?: unknown): ArbiterError => new ArbiterError(C.ARBITER_BAD_RESPONSE, `bad answer from etcd: ${message}`, { cause });

const b64 = (text: string): string => Buffer.from(text, 'utf8').toString('base64');

/** etcd's error body, shortened: {"error": "...", "code": N, "message": "..."}. */
function describe(body: unknown): string {
  if (typeof body !== 'object' || body === null) return String(body).slice(0, 200);
  const b = body as Record<string, unknown>;
  const text = typeof b.message === 'string' ? b.message : typeof b.error === 'string' ? b.error : JSON.stringify(body);
  return text.slice(0, 200);
}

function record(v: unknown, what: string): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw bad(`${what}: expected an object`);
  return v as Record<string, unknown>;
}

function optional(o: Record<string, unknown>, field: string, what: string, type: 'boolean'): boolean | undefined;
function optional(o: Record<string, unknown>, field: string, what: string, type: 'string'): string | undefined;
function optional(o: Record<string, unknown>, field: string, what: string, type: 'array'): unknown[] | undefined;
function optional(o: Record<string, unknown>, field: string, what: string, type: 'boolean' | 'string' | 'array'): unknown {
  const v = o[field];
  if (v === undefined) return undefined;
  if (type === 'array' ? !Array.isArray(v) : typeof v !== type) throw bad(`${what}: ${field} is not a${type === 'array' ? 'n array' : ` ${type}`}`);
  return v;
}

/** A non-negative int64 that must fit a double exactly (revisions, versions, TTLs); absent is 0. */
function int(v: unknown, what: string): number {
  if (v === undefined) return 0;
  const text = typeof v === 'number' ? String(v) : v;
  if (typeof text !== 'string' || !/^-?\d{1,16}$/.test(text)) throw bad(`${what}: ${JSON.stringify(v)?.slice(0, 40)} is not an integer`);
  const n = Number(text);
  if (!Number.isSafeInteger(n)) throw bad(`${what}: ${text} is out of range`);
  return n;
}

function leaseId(v: unknown, what: string): string {
  if (v === undefined) return '0';
  const text = typeof v === 'number' && Number.isSafeInteger(v) ? String(v) : v;
  if (typeof text !== 'string' || !LEASE_ID.test(text) || BigInt(text) > 0x7fffffffffffffffn || BigInt(text) < -0x8000000000000000n) throw bad(`${what}: ${JSON.stringify(v)?.slice(0, 40)} is not an int64`);
  return text;
}

function bytes(v: unknown, what: string): Buffer {
  if (v === undefined) return Buffer.alloc(0);
  if (typeof v !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(v) || v.length % 4 !== 0) throw bad(`${what}: not base64`);
  return Buffer.from(v, 'base64');
}

function rangeResult(v: unknown, what: string): KeyValue | undefined {
  const body = record(v, what);
  const kvs = optional(body, 'kvs', what, 'array') ?? [];
  if (kvs.length > 1) throw bad(`${what}: ${kvs.length} keys for one`);
  if (kvs.length === 0) return undefined;
  const kv = record(kvs[0], `${what} key`);
  return {
    key: bytes(kv.key, `${what} key`).toString('utf8'),
    value: bytes(kv.value, `${what} value`),
    createRevision: int(kv.create_revision, `${what} create_revision`),
    modRevision: int(kv.mod_revision, `${what} mod_revision`),
    version: int(kv.version, `${what} version`),
    lease: leaseId(kv.lease, `${what} lease`),
  };
}

function encodeCompare(c: Compare): Record<string, unknown> {
  const base = { key: b64(c.key), target: c.target, result: 'EQUAL' };
  switch (c.target) {
    case 'CREATE':
      return { ...base, create_revision: String(c.createRevision) };
    case 'MOD':
      return { ...base, mod_revision: String(c.modRevision) };
    case 'VALUE':
      return { ...base, value: c.value.toString('base64') };
  }
}

function encodeOp(op: TxnOp): Record<string, unknown> {
  if ('put' in op) return { request_put: { key: b64(op.put.key), value: op.put.value.toString('base64'), ...(op.put.lease === undefined ? {} : { lease: op.put.lease }) } };
  if ('range' in op) return { request_range: { key: b64(op.range.key) } };
  return { request_delete_range: { key: b64(op.delete.key) } };
}
