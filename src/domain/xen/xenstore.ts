/**
 * A xenstore client over xenstored's Unix socket (no maintained npm client
 * exists): the thin I/O around the pure codec in xenstore-wire.ts.
 *
 * - Requests are matched to replies by req_id (xenstored echoes it; it says
 *   replies may come in any order), so several may be in flight. At most
 *   `maxPending` are: one more is refused (XENSTORE_QUEUE_FULL) rather than
 *   queued without bound, which also bounds what the socket buffers.
 * - WATCH_EVENT messages come unasked, between replies; each goes to the
 *   handler of the watch whose token it carries, synchronously, so events
 *   never pile up in a queue of ours. An event for a token no longer watched
 *   (one already on its way when UNWATCH was sent) is dropped.
 * - An ERROR reply rejects its request with a XenstoreReplyError carrying the
 *   errno name; ENOENT and EAGAIN have codes of their own.
 * - Every request has a timeout. A request that timed out keeps its req_id
 *   until its reply arrives (or the connection ends), so a late reply is
 *   recognised and dropped, never matched to another request; a late
 *   TRANSACTION_START reply gets its transaction aborted.
 * - The connection ending for any reason (xenstored exiting or restarting, a
 *   protocol error from it, close()) fails every request in flight with
 *   XENSTORE_CLOSED, whose cause says why, and emits 'close' once. Watches
 *   die with the connection (xenstored forgets them), so a caller that
 *   reconnects must set them again. Nothing here throws out of an event
 *   handler: a broken daemon is an error for the caller, never a crash.
 */
import { EventEmitter } from 'node:events';
import { createConnection } from 'node:net';
import type { Duplex } from 'node:stream';
import { XenstoreError, XenstoreErrorCodes as C, XenstoreReplyError } from './errors.js';
import {
  XenstoreDecoder,
  XsType,
  checkPath,
  encodeRequest,
  parseReply,
  parseWatchEvent,
  typeName,
  type XsMessage,
  type XsReply,
  type XsRequest,
  type XsRequestType,
  type XsWatchEvent,
} from './xenstore-wire.js';

export const DEFAULT_XENSTORE_SOCKET = '/var/run/xenstored/socket';

export interface XenstoreClientOptions {
  /** Default timeout of a request, ms (default 10 s: xenstored answers in microseconds unless it is stuck). */
  timeoutMs?: number;
  /** Requests in flight at once, timed-out ones awaiting their late reply included (default 64). */
  maxPending?: number;
  /** Watches set at once (default 256; xenstored limits unprivileged domains to 128 and dom0 not at all). */
  maxWatches?: number;
}

export interface RequestOptions {
  /** The transaction the request belongs to (READ and WRITE only). */
  tx?: number;
  timeoutMs?: number;
}

export type WatchHandler = (event: XsWatchEvent) => void;

export interface XenstoreWatch {
  readonly path: string;
  readonly token: string;
  /** Removes the watch (UNWATCH); its handler gets nothing more, even events already on their way. */
  unwatch(options?: RequestOptions): Promise<void>;
}

export interface XenstoreEvents {
  /** The connection ended; every request in flight has failed with this error. Emitted once. */
  close: [error: XenstoreError];
  /** A watch handler threw; the client carries on. */
  'watch-error': [error: unknown, event: XsWatchEvent];
}

interface Pending {
  type: XsRequestType;
  /** The request in words, for errors: `READ /local/domain/5/name`. */
  what: string;
  resolve: (reply: XsReply) => void;
  reject: (err: XenstoreError) => void;
  timer: NodeJS.Timeout | undefined;
  /** Timed out: the caller has its error; the reply, if it ever comes, is dropped. */
  abandoned: boolean;
}

const DEFAULTS = { timeoutMs: 10_000, maxPending: 64, maxWatches: 256 };

function checkOptions(o: XenstoreClientOptions): Required<XenstoreClientOptions> {
  const r = { ...DEFAULTS, ...o };
  const positiveInt = (n: number): boolean => Number.isInteger(n) && n >= 1;
  if (!positiveInt(r.timeoutMs) || !positiveInt(r.maxPending) || !positiveInt(r.maxWatches)) {
    throw new XenstoreError(C.XENSTORE_BAD_OPTIONS, `timeoutMs, maxPending and maxWatches must be positive integers (got ${r.timeoutMs}, ${r.maxPending}, ${r.maxWatches})`);
  }
  return r;
}

export class XenstoreClient extends EventEmitter<XenstoreEvents> {
  /** Connects to xenstored's socket; XENSTORE_CONNECT_FAILED (with the socket's error as cause) if it cannot. */
  static connect(socketPath = DEFAULT_XENSTORE_SOCKET, options: XenstoreClientOptions = {}): Promise<XenstoreClient> {
    checkOptions(options);
    return new Promise((resolve, reject) => {
      const socket = createConnection(socketPath);
      const onError = (err: Error): void => reject(new XenstoreError(C.XENSTORE_CONNECT_FAILED, `cannot connect to xenstored at ${socketPath}: ${err.message}`, { cause: err }));
      socket.once('error', onError);
      socket.once('connect', () => {
        socket.off('error', onError);
        resolve(new XenstoreClient(socket, options));
      });
    });
  }

  private readonly options: Required<XenstoreClientOptions>;
  private readonly decoder = new XenstoreDecoder();
  private readonly pending = new Map<number, Pending>();
  private readonly watches = new Map<string, { path: string; handler: WatchHandler }>();
  private nextReqId = 1;
  private nextToken = 1;
  private failure: XenstoreError | undefined;

  /** `socket`: a connected stream to xenstored (connect() makes one). */
  constructor(
    private readonly socket: Duplex,
    options: XenstoreClientOptions = {},
  ) {
    super();
    this.options = checkOptions(options);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    // 'error' is always followed by 'close'; the error becomes the cause.
    let socketError: Error | undefined;
    socket.on('error', (err: Error) => (socketError ??= err));
    socket.on('end', () => socket.destroy());
    socket.on('close', () => this.shutDown(new XenstoreError(C.XENSTORE_CLOSED, `connection to xenstored closed${socketError ? `: ${socketError.message}` : ''}`, { cause: socketError })));
  }

  /** The error that ended the connection, once it has ended. */
  get closed(): XenstoreError | undefined {
    return this.failure;
  }

  /** Requests in flight (timed-out ones awaiting a late reply included). */
  get inFlight(): number {
    return this.pending.size;
  }

  /** A node's value, raw bytes. ENOENT rejects with XENSTORE_NOENT. */
  async read(path: string, options: RequestOptions = {}): Promise<Buffer> {
    const reply = await this.request({ type: 'READ', path }, options);
    return (reply as { value: Buffer }).value;
  }

  /** Sets a node's value (creating it and any missing parents). */
  async write(path: string, value: string | Buffer, options: RequestOptions = {}): Promise<void> {
    await this.request({ type: 'WRITE', path, value }, options);
  }

  /**
   * Watches `path` (and its children; or a special path like
   * `@releaseDomain`). xenstored fires every new watch once at once, with
   * the watched path itself, then on every change; events may also be
   * spurious, so a handler re-reads what it cares about.
   */
  async watch(path: string, handler: WatchHandler, options: RequestOptions = {}): Promise<XenstoreWatch> {
    checkPath(path, { watch: true });
    if (this.watches.size >= this.options.maxWatches) {
      throw new XenstoreError(C.XENSTORE_QUEUE_FULL, `${this.watches.size} watches already set (maxWatches ${this.options.maxWatches})`);
    }
    const token = `tandem-${this.nextToken++}`;
    // Registered before the request: the first event may follow the reply at once.
    this.watches.set(token, { path, handler });
    try {
      await this.request({ type: 'WATCH', path, token }, { ...options, tx: 0 });
    } catch (err) {
      this.watches.delete(token);
      throw err;
    }
    return {
      path,
      token,
      unwatch: async (opts: RequestOptions = {}) => {
        if (!this.watches.delete(token)) return;
        await this.request({ type: 'UNWATCH', path, token }, { ...opts, tx: 0 });
      },
    };
  }

  /** Starts a transaction; its id goes in `tx` of the requests that belong to it. */
  async transactionStart(options: Omit<RequestOptions, 'tx'> = {}): Promise<number> {
    const reply = await this.request({ type: 'TRANSACTION_START' }, { ...options, tx: 0 });
    return (reply as { txId: number }).txId;
  }

  /**
   * Commits (or with `commit` false, abandons) a transaction. A commit that
   * conflicted with another writer rejects with XENSTORE_AGAIN: run the
   * transaction again (transaction() does).
   */
  async transactionEnd(tx: number, commit: boolean, options: Omit<RequestOptions, 'tx'> = {}): Promise<void> {
    await this.request({ type: 'TRANSACTION_END', commit }, { ...options, tx });
  }

  /**
   * Runs `body` in a transaction and commits it, starting over (up to
   * `attempts` times in all) while the commit answers EAGAIN. If `body`
   * throws, the transaction is abandoned and the error passed on.
   */
  async transaction<T>(body: (tx: number) => Promise<T>, options: { attempts?: number; timeoutMs?: number } = {}): Promise<T> {
    const attempts = options.attempts ?? 5;
    if (!Number.isInteger(attempts) || attempts < 1) throw new XenstoreError(C.XENSTORE_BAD_OPTIONS, `attempts ${attempts} is not a positive integer`);
    const opts = options.timeoutMs === undefined ? {} : { timeoutMs: options.timeoutMs };
    for (let attempt = 1; ; attempt++) {
      const tx = await this.transactionStart(opts);
      let result: T;
      try {
        result = await body(tx);
      } catch (err) {
        // Best effort: on a dead connection xenstored drops the transaction anyway.
        await this.transactionEnd(tx, false, opts).catch(() => undefined);
        throw err;
      }
      try {
        await this.transactionEnd(tx, true, opts);
        return result;
      } catch (err) {
        if (!(err instanceof XenstoreError && err.code === C.XENSTORE_AGAIN) || attempt >= attempts) throw err;
      }
    }
  }

  /** XS_RESUME: xenstored will again report the domain's next shutdown on @releaseDomain (after a suspend, libxl sends it on resume). */
  async resume(domid: number, options: Omit<RequestOptions, 'tx'> = {}): Promise<void> {
    await this.request({ type: 'RESUME', domid }, { ...options, tx: 0 });
  }

  /** Ends the connection; requests in flight fail with XENSTORE_CLOSED. */
  close(): void {
    this.shutDown(new XenstoreError(C.XENSTORE_CLOSED, 'connection to xenstored closed by the client'));
  }

  private async request(req: XsRequest, options: RequestOptions): Promise<XsReply> {
    if (this.failure) throw new XenstoreError(C.XENSTORE_CLOSED, `${describe(req)}: ${this.failure.message}`, { cause: this.failure });
    if (this.pending.size >= this.options.maxPending) {
      throw new XenstoreError(C.XENSTORE_QUEUE_FULL, `${describe(req)}: ${this.pending.size} requests in flight (maxPending ${this.options.maxPending})`);
    }
    const timeoutMs = options.timeoutMs ?? this.options.timeoutMs;
    if (!Number.isInteger(timeoutMs) || timeoutMs < 1) throw new XenstoreError(C.XENSTORE_BAD_OPTIONS, `timeoutMs ${timeoutMs} is not a positive integer`);
    const reqId = this.allocReqId();
    // Validates the request (path, value size, ...) before anything is sent.
    const bytes = encodeRequest(req, reqId, options.tx ?? 0);
    return new Promise<XsReply>((resolve, reject) => {
      const p: Pending = { type: req.type, what: describe(req), resolve, reject, timer: undefined, abandoned: false };
      p.timer = setTimeout(() => {
        p.abandoned = true;
        p.timer = undefined;
        reject(new XenstoreError(C.XENSTORE_TIMEOUT, `${p.what}: no reply from xenstored within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(reqId, p);
      this.socket.write(bytes);
    });
  }

  /** Ids start at 1 (0 is what xenstored puts in a WATCH_EVENT) and skip ids still in flight. */
  private allocReqId(): number {
    for (;;) {
      const id = this.nextReqId;
      this.nextReqId = id >= 0xffffffff ? 1 : id + 1;
      if (!this.pending.has(id)) return id;
    }
  }

  private onData(chunk: Buffer): void {
    if (this.failure) return;
    const messages: XsMessage[] = [];
    let error: unknown;
    try {
      this.decoder.push(chunk, messages);
    } catch (err) {
      error = err;
    }
    // Replies that came before a bad header are good: they are delivered first.
    for (const msg of messages) {
      try {
        this.dispatch(msg);
      } catch (err) {
        this.protocolFailure(err);
        return;
      }
      if (this.failure) return;
    }
    if (error !== undefined) this.protocolFailure(error);
  }

  private dispatch(msg: XsMessage): void {
    if (msg.type === XsType.WATCH_EVENT) {
      const event = parseWatchEvent(msg);
      const watch = this.watches.get(event.token);
      if (watch === undefined) return;
      try {
        watch.handler(event);
      } catch (err) {
        this.emit('watch-error', err, event);
      }
      return;
    }
    const p = this.pending.get(msg.reqId);
    if (p === undefined) {
      throw new XenstoreError(C.XENSTORE_BAD_MESSAGE, `${typeName(msg.type)} reply with req_id ${msg.reqId}, which no request in flight has`, { offset: msg.offset });
    }
    const reply = parseReply(p.type, msg);
    this.pending.delete(msg.reqId);
    if (p.timer) clearTimeout(p.timer);
    if (p.abandoned) {
      // Whoever started it has given up on it: do not leave the transaction open in xenstored.
      if (reply.kind === 'transaction') void this.transactionEnd(reply.txId, false).catch(() => undefined);
      return;
    }
    if (reply.kind === 'error') p.reject(new XenstoreReplyError(reply.errno, p.what));
    else p.resolve(reply);
  }

  private protocolFailure(err: unknown): void {
    const cause = err instanceof XenstoreError ? err : new XenstoreError(C.XENSTORE_BAD_MESSAGE, String(err), { cause: err });
    this.shutDown(new XenstoreError(C.XENSTORE_CLOSED, `connection to xenstored dropped after a protocol error: ${cause.message}`, { cause }));
  }

  /** Fails everything in flight with `error`, drops the watches and the socket, emits 'close'; once. */
  private shutDown(error: XenstoreError): void {
    if (this.failure) return;
    this.failure = error;
    const pending = [...this.pending.values()];
    this.pending.clear();
    this.watches.clear();
    this.socket.destroy();
    for (const p of pending) {
      if (p.timer) clearTimeout(p.timer);
      if (!p.abandoned) p.reject(new XenstoreError(C.XENSTORE_CLOSED, `${p.what}: ${error.message}`, { cause: error }));
    }
    this.emit('close', error);
  }
}

function describe(req: XsRequest): string {
  switch (req.type) {
    case 'READ':
    case 'WRITE':
    case 'WATCH':
    case 'UNWATCH':
      return `${req.type} ${req.path}`;
    case 'TRANSACTION_START':
      return req.type;
    case 'TRANSACTION_END':
      return `${req.type} ${req.commit ? 'commit' : 'abort'}`;
    case 'RESUME':
      return `${req.type} ${req.domid}`;
  }
}
