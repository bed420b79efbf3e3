/**
 * The primary's end of the replication connection: the forward direction
 * carries the migration stream (written with corking and backpressure), the
 * reverse direction the back-channel records, decoded as they arrive.
 */
import { connect, type Socket } from 'node:net';
import { TandemError, ErrorCodes } from '../errors.js';
import { BackChannelDecoder, type BackRecord } from './backchannel.js';

export class LinkError extends TandemError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCodes.LINK_FAILED, message, options);
  }

  override get name(): string {
    return 'LinkError';
  }
}

export interface LinkOptions {
  host: string;
  port: number;
  connectTimeoutMs: number;
  /** Bytes queued in the socket before write() waits for 'drain' (default 8 MiB). */
  maxBufferedBytes?: number;
}

type AckRecord = Extract<BackRecord, { type: 'ACK' }>;
type HandshakeType = Exclude<BackRecord['type'], 'ACK'>;
type Handshake<T extends HandshakeType> = Extract<BackRecord, { type: T }>;

/** COLO handshake records waiting to be taken; a secondary that sends more is misbehaving. */
const MAX_BACKLOG = 64;

export class ReplicationLink {
  private socket: Socket | undefined;
  private readonly decoder = new BackChannelDecoder();
  private readonly acks = new Map<number, { resolve: (a: AckRecord) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>();
  private closedWith: Error | undefined;
  private lastWrite: Promise<void> = Promise.resolve();
  /** Back-channel records other than acks (COLO handshakes), in arrival order, until taken with nextRecord(). */
  private readonly backlog: BackRecord[] = [];
  private recordWaiter: { type: HandshakeType; resolve: (r: BackRecord) => void; reject: (e: Error) => void; timer: NodeJS.Timeout } | undefined;
  /** Called once when the link fails or closes. */
  onClose: (err: Error) => void = () => {};

  private readonly options: Required<LinkOptions>;

  constructor(options: LinkOptions) {
    this.options = { maxBufferedBytes: 8 * 1024 * 1024, ...options };
  }

  async start(): Promise<void> {
    const { host, port, connectTimeoutMs } = this.options;
    const socket = connect({ host, port, noDelay: true });
    this.socket = socket;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new LinkError(`connecting to the secondary at ${host}:${port} timed out after ${connectTimeoutMs} ms`));
      }, connectTimeoutMs);
      socket.once('connect', () => {
        clearTimeout(timer);
        resolve();
      });
      socket.once('error', (err) => {
        clearTimeout(timer);
        reject(new LinkError(`cannot connect to the secondary at ${host}:${port}: ${err.message}`, { cause: err }));
      });
    });
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (err) => this.fail(new LinkError(`replication link to ${host}:${port} failed: ${err.message}`, { cause: err })));
    socket.on('close', () => this.fail(new LinkError(`replication link to ${host}:${port} closed by the secondary`)));
  }

  /**
   * Writes chunks in one corked batch (one writev). Resolves at once while
   * less than `maxBufferedBytes` is queued, so the next batch is produced
   * while the kernel still sends this one; beyond that, on 'drain'.
   */
  async write(chunks: readonly Buffer[]): Promise<void> {
    const s = this.socket;
    if (this.closedWith || s === undefined) throw this.closedWith ?? new LinkError('replication link is not open');
    s.cork();
    for (let i = 0; i < chunks.length - 1; i++) s.write(chunks[i]);
    if (chunks.length > 0) {
      this.lastWrite = new Promise<void>((resolve) => s.write(chunks[chunks.length - 1], () => resolve()));
    }
    s.uncork();
    if (s.writableLength > this.options.maxBufferedBytes) await this.drained(s);
  }

  /**
   * Resolves once everything written so far has left Node for the kernel.
   * Chunks may be views of live guest memory (pre-copy): they must be out
   * before the guest that owns them can change them after a checkpoint.
   */
  async flushed(): Promise<void> {
    await this.lastWrite;
  }

  private drained(s: Socket): Promise<void> {
    return new Promise((resolve, reject) => {
      const onDrain = (): void => {
        s.off('close', onClose);
        resolve();
      };
      const onClose = (): void => {
        s.off('drain', onDrain);
        reject(this.closedWith ?? new LinkError('replication link closed while sending'));
      };
      s.once('drain', onDrain);
      s.once('close', onClose);
    });
  }

  /** Waits for the secondary's ack of `epoch`. */
  waitAck(epoch: number, timeoutMs: number): Promise<AckRecord> {
    if (this.closedWith) return Promise.reject(this.closedWith);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.acks.delete(epoch);
        reject(new LinkError(`no ack for epoch ${epoch} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.acks.set(epoch, { resolve, reject, timer });
    });
  }

  /**
   * The next back-channel record of `type` (COLO: CHECKPOINT_STATE,
   * CHECKPOINT_DIRTY_PFN_LIST), in arrival order; records of the other
   * handshake type before it stay queued.
   */
  nextRecord<T extends HandshakeType>(type: T, timeoutMs: number): Promise<Handshake<T>> {
    const i = this.backlog.findIndex((r) => r.type === type);
    if (i !== -1) return Promise.resolve(this.backlog.splice(i, 1)[0] as Handshake<T>);
    if (this.closedWith) return Promise.reject(this.closedWith);
    if (this.recordWaiter !== undefined) return Promise.reject(new Error('one nextRecord() at a time'));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.recordWaiter = undefined;
        reject(new LinkError(`no ${type} from the secondary within ${timeoutMs} ms`));
      }, timeoutMs);
      this.recordWaiter = { type, resolve: resolve as (r: BackRecord) => void, reject, timer };
    });
  }

  async stop(): Promise<void> {
    const s = this.socket;
    if (s === undefined || s.destroyed) return;
    await new Promise<void>((resolve) => {
      s.once('close', () => resolve());
      s.end();
      setTimeout(() => s.destroy(), 1000).unref();
    });
  }

  /** Drops the connection at once (the secondary discards any torn epoch). */
  destroy(): void {
    this.socket?.destroy();
  }

  private onData(chunk: Buffer): void {
    let records: BackRecord[];
    try {
      records = this.decoder.push(chunk);
    } catch (err) {
      this.fail(new LinkError('malformed back-channel from the secondary', { cause: err }));
      this.socket?.destroy();
      return;
    }
    for (const rec of records) {
      if (rec.type !== 'ACK') {
        const w = this.recordWaiter;
        if (w !== undefined && w.type === rec.type) {
          this.recordWaiter = undefined;
          clearTimeout(w.timer);
          w.resolve(rec);
        } else if (this.backlog.length >= MAX_BACKLOG) {
          this.fail(new LinkError(`the secondary sent more than ${MAX_BACKLOG} handshake records nobody asked for`));
          this.socket?.destroy();
          return;
        } else {
          this.backlog.push(rec);
        }
        continue;
      }
      const waiter = this.acks.get(rec.epoch);
      if (waiter === undefined) continue; // an ack nobody waits for any more (timed out)
      this.acks.delete(rec.epoch);
      clearTimeout(waiter.timer);
      waiter.resolve(rec);
    }
  }

  private fail(err: Error): void {
    if (this.closedWith) return;
    this.closedWith = err;
    for (const [, w] of this.acks) {
      clearTimeout(w.timer);
      w.reject(err);
    }
    this.acks.clear();
    if (this.recordWaiter !== undefined) {
      clearTimeout(this.recordWaiter.timer);
      this.recordWaiter.reject(err);
      this.recordWaiter = undefined;
    }
    this.onClose(err);
  }
}
