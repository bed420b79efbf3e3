/**
 * The TCP front of the sim guest's key-value service: what a guest kernel's
 * network stack and Redis's event loop would be. Bytes from a connection go
 * through its own RESP parser; every complete request runs as guest code via
 * domain.run, so while the domain is paused nothing executes and nothing is
 * written, and held requests run in arrival order after unpause. Replies go
 * back in request order.
 *
 * Per connection, memory is bounded three ways: the parser's limits (one
 * request), the requests parsed but not yet run (reading stops while the
 * domain holds too many), and the replies not yet taken by a slow reader
 * (reading stops until the socket drains). A malformed request closes that
 * connection only, after an `-ERR Protocol error: ...` reply, as Redis does.
 */
import net, { type AddressInfo } from 'node:net';

import type { Logger } from '../util/logger.js';
import { KvCommands, type KvPersistence, type Session } from './commands.js';
import { GuestError, GuestErrorCodes, type RespProtocolError } from './errors.js';
import type { KvStore } from './kv-store.js';
import type { GuestDomain } from './ram.js';
import { DEFAULT_RESP_LIMITS, RespParser, errorReply, type RespLimits } from './resp.js';
import { GuestVcpu } from './vcpu.js';
import { listen } from '../util/net.js';

export interface KvServerLimits {
  /** Connections open at once; one more is told so and closed, as Redis's maxclients. */
  maxConnections: number;
  /** Requests of one connection parsed but not yet run (the domain may be paused) before its reads stop. */
  maxPendingCommands: number;
  /** Their argument bytes. */
  maxPendingBytes: number;
  /** Parsing limits of one request. */
  resp: Partial<RespLimits>;
}

export const DEFAULT_SERVER_LIMITS: Readonly<KvServerLimits> = {
  maxConnections: 1000,
  maxPendingCommands: 4096,
  maxPendingBytes: 64 * 1024 * 1024,
  resp: {},
};

export interface KvServerOptions {
  domain: GuestDomain;
  store: KvStore;
  /** Address to bind (default 127.0.0.1). */
  host?: string;
  /** Port to bind (default 6379; 0 for an ephemeral one). */
  port?: number;
  limits?: Partial<KvServerLimits>;
  logger?: Logger;
  /** The guest's clock, microseconds since the Unix epoch (TIME, expiry). */
  clock?: () => number;
  /** The guest's random source, uniform in [0, 1) (RANDOMKEY). */
  random?: () => number;
  /** Active expiry sweep period (default 100 ms, Redis's hz 10) and keys looked at per sweep. */
  sweepIntervalMs?: number;
  sweepChecks?: number;
  /** The append-only file, for INFO and BGREWRITEAOF. */
  persistence?: KvPersistence;
}

export interface KvServerMetrics {
  connections: number;
  rejectedConnections: number;
  protocolErrors: number;
  /** Times a connection's reads stopped because its replies backed up. */
  outputStalls: number;
  /** Times a connection's reads stopped because its requests were waiting to run. */
  inputStalls: number;
}

/** A socket a closing connection is given to finish before it is cut. */
const CLOSE_GRACE_MS = 2000;
/** Replies up to this size are joined into one write; larger ones go out corked, uncopied. */
const JOIN_BYTES = 64 * 1024;

class Connection {
  readonly session: Session = { quit: false };
  readonly out: Buffer[] = [];
  outBytes = 0;
  flushQueued = false;
  pendingCommands = 0;
  pendingBytes = 0;
  outputBlocked = false;
  readingStopped = false;
  /** No more requests are taken: QUIT ran or the input was malformed. */
  closing = false;
  endAfterFlush = false;
  closed = false;

  constructor(
    readonly socket: net.Socket,
    readonly parser: RespParser,
    readonly peer: string,
  ) {}
}

export class KvServer {
  private readonly options: KvServerOptions;
  private readonly limits: KvServerLimits;
  private readonly connections = new Set<Connection>();
  private server: net.Server | undefined = undefined;
  private commands: KvCommands | undefined = undefined;
  private sweepTimer: NodeJS.Timeout | undefined = undefined;
  private sweepQueued = false;
  private port = 0;
  private readonly counters = { rejectedConnections: 0, protocolErrors: 0, outputStalls: 0, inputStalls: 0 };

  constructor(options: KvServerOptions) {
    this.options = options;
    this.limits = { ...DEFAULT_SERVER_LIMITS, ...options.limits };
  }

  async start(): Promise<AddressInfo> {
    if (this.server !== undefined) throw new GuestError(GuestErrorCodes.SERVER_BAD_OPTIONS, 'key-value server already started');
    const { domain, store, host = '127.0.0.1', port = 6379 } = this.options;
    for (const [name, v] of [['maxConnections', this.limits.maxConnections], ['maxPendingCommands', this.limits.maxPendingCommands], ['maxPendingBytes', this.limits.maxPendingBytes]] as const) {
      if (!Number.isInteger(v) || v < 1) throw new GuestError(GuestErrorCodes.SERVER_BAD_OPTIONS, `limit ${name} must be a positive integer, got ${v}`);
    }
    const resp = { ...DEFAULT_RESP_LIMITS, ...this.limits.resp };
    this.commands = new KvCommands({
      store,
      clock: this.options.clock,
      random: this.options.random,
      maxValueBytes: resp.maxBulkLength,
      vcpu: new GuestVcpu(domain),
      serverInfo: () => ({ port: this.port, connectedClients: this.connections.size, maxClients: this.limits.maxConnections }),
      persistence: this.options.persistence,
    });
    const server = net.createServer((socket) => this.accept(socket));
    this.server = server;
    try {
      await listen(server, port, host);
    } catch (err) {
      this.server = undefined;
      throw new GuestError(GuestErrorCodes.SERVER_BAD_OPTIONS, `cannot listen on ${host}:${port}: ${(err as Error).message}`, { cause: err });
    }
    server.on('error', (err) => this.options.logger?.error({ err }, 'key-value server error'));
    const address = server.address() as AddressInfo;
    this.port = address.port;
    const interval = this.options.sweepIntervalMs ?? 100;
    this.sweepTimer = setInterval(() => this.sweep(), interval);
    this.sweepTimer.unref();
    this.options.logger?.info({ host: address.address, port: address.port }, 'sim guest key-value service listening');
    return address;
  }

  async stop(): Promise<void> {
    const server = this.server;
    if (server === undefined) return;
    this.server = undefined;
    clearInterval(this.sweepTimer);
    for (const conn of this.connections) conn.socket.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  metrics(): KvServerMetrics {
    return { connections: this.connections.size, ...this.counters };
  }

  private accept(socket: net.Socket): void {
    const peer = `${socket.remoteAddress}:${socket.remotePort}`;
    socket.on('error', (err) => this.options.logger?.debug({ err, peer }, 'client connection error'));
    if (this.connections.size >= this.limits.maxConnections) {
      this.counters.rejectedConnections++;
      this.options.logger?.warn({ peer, max: this.limits.maxConnections }, 'connection refused: too many clients');
      socket.end('-ERR max number of clients reached\r\n');
      setTimeout(() => socket.destroy(), CLOSE_GRACE_MS).unref();
      return;
    }
    socket.setNoDelay(true);
    const conn = new Connection(socket, new RespParser(this.limits.resp), peer);
    this.connections.add(conn);
    socket.on('data', (chunk: Buffer) => this.receive(conn, chunk));
    socket.on('drain', () => {
      conn.outputBlocked = false;
      this.updateReading(conn);
    });
    socket.on('close', () => {
      conn.closed = true;
      this.connections.delete(conn);
    });
  }

  private receive(conn: Connection, chunk: Buffer): void {
    if (conn.closing) return;
    const { commands, error } = conn.parser.feed(chunk);
    for (const args of commands) this.submit(conn, args);
    if (error !== undefined) this.malformed(conn, error);
    this.updateReading(conn);
  }

  private submit(conn: Connection, args: Buffer[]): void {
    let bytes = 0;
    for (const a of args) bytes += a.length;
    conn.pendingCommands++;
    conn.pendingBytes += bytes;
    this.options.domain.run(() => {
      conn.pendingCommands--;
      conn.pendingBytes -= bytes;
      // After QUIT, requests already read are dropped, as Redis drops them.
      if (!conn.session.quit) this.reply(conn, this.execute(conn, args));
      if (conn.session.quit) {
        conn.closing = true;
        conn.endAfterFlush = true;
      }
      this.updateReading(conn);
    });
  }

  private execute(conn: Connection, args: Buffer[]): Buffer {
    try {
      return this.commands!.execute(args, conn.session);
    } catch (err) {
      // A bug or a corrupt store: the client gets an error, the log gets the cause.
      const name = args.length > 0 ? args[0].toString('latin1', 0, 32) : '';
      this.options.logger?.error({ err, code: GuestErrorCodes.SERVER_COMMAND_FAILED, peer: conn.peer, command: name }, 'guest command failed');
      return errorReply(`ERR internal error running '${name}'`);
    }
  }

  private malformed(conn: Connection, error: RespProtocolError): void {
    this.counters.protocolErrors++;
    this.options.logger?.warn({ code: error.code, offset: error.offset, peer: conn.peer }, `closing client connection: ${error.message}`);
    conn.closing = true;
    // Through the guest, behind the replies to the requests before it.
    this.options.domain.run(() => {
      this.reply(conn, errorReply(`ERR ${error.message}`));
      conn.endAfterFlush = true;
    });
  }

  private reply(conn: Connection, data: Buffer): void {
    if (conn.closed) return;
    conn.out.push(data);
    conn.outBytes += data.length;
    if (!conn.flushQueued) {
      conn.flushQueued = true;
      // After the burst of requests in hand has run: one write for all their replies.
      process.nextTick(() => this.flush(conn));
    }
  }

  private flush(conn: Connection): void {
    conn.flushQueued = false;
    const { socket } = conn;
    if (conn.closed || socket.destroyed) return;
    let ok = true;
    if (conn.out.length === 1 || conn.outBytes <= JOIN_BYTES) {
      ok = socket.write(conn.out.length === 1 ? conn.out[0] : Buffer.concat(conn.out, conn.outBytes));
    } else {
      socket.cork();
      for (const b of conn.out) ok = socket.write(b);
      socket.uncork();
    }
    conn.out.length = 0;
    conn.outBytes = 0;
    if (!ok && !conn.outputBlocked) {
      conn.outputBlocked = true;
      this.counters.outputStalls++;
      this.updateReading(conn);
    }
    if (conn.endAfterFlush) {
      socket.end();
      setTimeout(() => socket.destroy(), CLOSE_GRACE_MS).unref();
    }
  }

  private updateReading(conn: Connection): void {
    if (conn.closed) return;
    const backlog = conn.pendingCommands >= this.limits.maxPendingCommands || conn.pendingBytes >= this.limits.maxPendingBytes;
    const stop = conn.closing || conn.outputBlocked || backlog;
    if (stop && !conn.readingStopped) {
      if (backlog && !conn.outputBlocked && !conn.closing) this.counters.inputStalls++;
      conn.readingStopped = true;
      conn.socket.pause();
    } else if (!stop && conn.readingStopped) {
      conn.readingStopped = false;
      conn.socket.resume();
    }
  }

  private sweep(): void {
    // One sweep at a time: a paused domain must not pile them up.
    if (this.sweepQueued || this.commands === undefined) return;
    this.sweepQueued = true;
    const commands = this.commands;
    this.options.domain.run(() => {
      this.sweepQueued = false;
      try {
        commands.sweepExpired(this.options.sweepChecks ?? 200);
      } catch (err) {
        this.options.logger?.error({ err }, 'guest expiry sweep failed');
      }
    });
  }
}
