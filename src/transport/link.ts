/**
 * The primary's end of the replication connection: the forward direction
 * carries the migration stream (written with corking and backpressure), the
 * reverse direction the back-channel records, decoded as they arrive. It is
 * the CheckpointTarget of a protection session: a checkpoint is held once
 * the secondary acks it applied.
 */
import type { Duplex } from 'node:stream';
import { CheckpointError, CheckpointErrorCodes, EpochRefusedError } from '../checkpoint/errors.js';
import type { CheckpointTarget } from '../checkpoint/session.js';
import type { ColoBackChannel } from '../checkpoint/strategies.js';
import { formatAddress, type Address } from '../util/address.js';
import { AckStatus, BackChannelDecoder, type BackChannelRecord } from './backchannel.js';
import { TransportError, TransportErrorCodes } from './errors.js';
import { foreignPeer, SNIFF_BYTES } from './foreign-peer.js';
import type { Transport } from './transport.js';

export interface LinkOptions {
  transport: Transport;
  secondary: Address;
  connectTimeoutMs: number;
  /** How long an epoch may wait for its ack (and a COLO handshake record for its turn). */
  ackTimeoutMs: number;
  /** Bytes queued in the connection before write() waits for 'drain' (default 8 MiB). */
  maxBufferedBytes?: number;
}

type AckRecord = Extract<BackChannelRecord, { type: 'ACK' }>;
type HandshakeType = Exclude<BackChannelRecord['type'], 'ACK' | 'FEATURES'>;
type Handshake<T extends HandshakeType> = Extract<BackChannelRecord, { type: T }>;

/** COLO handshake records waiting to be taken; a secondary that sends more is misbehaving. */
const MAX_BACKLOG = 64;
const DEFAULT_MAX_BUFFERED = 8 * 1024 * 1024;

const linkError = (message: string, cause?: unknown): TransportError =>
  new TransportError(TransportErrorCodes.LINK_FAILED, message, cause === undefined ? undefined : { cause });

export class ReplicationLink implements CheckpointTarget, ColoBackChannel {
  private socket: Duplex | undefined;
  private readonly decoder = new BackChannelDecoder();
  private readonly acks = new Map<number, { resolve: (a: AckRecord) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>();
  private closedWith: Error | undefined;
  private lastWrite: Promise<void> = Promise.resolve();
  /** Back-channel records other than acks (COLO handshakes), in arrival order, until taken with nextRecord(). */
  private readonly backlog: BackChannelRecord[] = [];
  private recordWaiter: { type: HandshakeType; resolve: (r: BackChannelRecord) => void; reject: (e: Error) => void; timer: NodeJS.Timeout } | undefined;
  /** Called once when the link fails or closes. */
  onClose: (err: Error) => void = () => {};
  /** Monotonic ms of the last bytes from the secondary (or of connecting). */
  private lastDataAt = 0;
  /** Monotonic ms a batch last left Node for the kernel: the secondary takes what is sent. */
  private lastSentAt = 0;
  /** An ack has come: from now on the secondary answers every epoch. */
  private acked = false;
  /** What the secondary offered to decode (TANDEM_FEATURES; 0 until it says). */
  private features = 0;
  /** The secondary's first bytes, kept to name a peer that is not Tandem. */
  private firstBytes = Buffer.alloc(0);

  constructor(private readonly options: LinkOptions) {}

  async start(): Promise<void> {
    const { transport, secondary, connectTimeoutMs } = this.options;
    const socket = await transport.connect(secondary, { timeoutMs: connectTimeoutMs, peer: 'the secondary' });
    this.socket = socket;
    this.lastDataAt = performance.now();
    const where = formatAddress(secondary);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (err) => this.fail(linkError(`replication link to ${where} failed: ${err.message}`, err)));
    socket.on('close', () => this.fail(linkError(`replication link to ${where} closed by the secondary`)));
  }

  /**
   * Writes chunks in one corked batch (one writev). Resolves at once while
   * less than `maxBufferedBytes` is queued, so the next batch is produced
   * while the kernel still sends this one; beyond that, on 'drain'.
   */
  async write(chunks: readonly Buffer[]): Promise<void> {
    const s = this.socket;
    if (this.closedWith || s === undefined) throw this.closedWith ?? linkError('replication link is not open');
    s.cork();
    for (let i = 0; i < chunks.length - 1; i++) s.write(chunks[i]);
    if (chunks.length > 0) {
      this.lastWrite = new Promise<void>((resolve) =>
        s.write(chunks[chunks.length - 1], () => {
          this.lastSentAt = performance.now();
          resolve();
        }),
      );
    }
    s.uncork();
    if (s.writableLength > (this.options.maxBufferedBytes ?? DEFAULT_MAX_BUFFERED)) await this.drained(s);
  }

  /**
   * Resolves once everything written so far has left Node for the kernel.
   * Chunks may be views of live guest memory (pre-copy): they must be out
   * before the guest that owns them can change them after a checkpoint.
   */
  async flushed(): Promise<void> {
    await this.lastWrite;
  }

  private drained(s: Duplex): Promise<void> {
    return new Promise((resolve, reject) => {
      const onDrain = (): void => {
        s.off('close', onClose);
        resolve();
      };
      const onClose = (): void => {
        s.off('drain', onDrain);
        reject(this.closedWith ?? linkError('replication link closed while sending'));
      };
      s.once('drain', onDrain);
      s.once('close', onClose);
    });
  }

  /**
   * TandemFeature bits the secondary offered on this connection. It offers
   * before its first ack, so once epoch 1 is held the answer is final.
   */
  peerFeatures(): number {
    return this.features;
  }

  /** Resolves once the secondary acks that it applied `epoch`; anything else ends the session. */
  async held(epoch: number): Promise<void> {
    const ack = await this.waitAck(epoch, this.options.ackTimeoutMs);
    if (ack.status !== AckStatus.APPLIED) {
      throw new EpochRefusedError(`the secondary refused epoch ${epoch}: ${ack.reason || `status ${ack.status}`}`, epoch, ack.status);
    }
  }

  /** Waits for the secondary's ack of `epoch`. */
  waitAck(epoch: number, timeoutMs: number): Promise<AckRecord> {
    if (this.closedWith) return Promise.reject(this.closedWith);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.acks.delete(epoch);
        reject(new CheckpointError(CheckpointErrorCodes.ACK_TIMEOUT, `no ack for epoch ${epoch} within ${timeoutMs} ms`));
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
    if (this.recordWaiter !== undefined) return Promise.reject(new CheckpointError(CheckpointErrorCodes.SESSION_STATE, 'one nextRecord() at a time'));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.recordWaiter = undefined;
        reject(new CheckpointError(CheckpointErrorCodes.ACK_TIMEOUT, `no ${type} from the secondary within ${timeoutMs} ms`));
      }, timeoutMs);
      this.recordWaiter = { type, resolve: resolve as (r: BackChannelRecord) => void, reject, timer };
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

  /**
   * How long the secondary has given no sign of life on this link, ms: since
   * it last sent anything. Before its first ack (a pre-copy, which it takes
   * without a word, and may take for minutes) what it takes counts too: a
   * hung secondary stops taking once the kernels' buffers are full, and the
   * link falls silent then.
   */
  get silentMs(): number {
    const since = this.acked ? this.lastDataAt : Math.max(this.lastDataAt, this.lastSentAt);
    return performance.now() - since;
  }

  /** Ends the link with `err` (a silent secondary): waiters fail, the connection is dropped. */
  abandon(err: Error): void {
    this.fail(err);
    this.socket?.destroy();
  }

  private onData(chunk: Buffer): void {
    this.lastDataAt = performance.now();
    if (this.firstBytes.length < SNIFF_BYTES) this.firstBytes = Buffer.concat([this.firstBytes, chunk.subarray(0, SNIFF_BYTES - this.firstBytes.length)]);
    let records: BackChannelRecord[];
    try {
      records = this.decoder.push(chunk);
    } catch (err) {
      const foreign = foreignPeer(this.firstBytes);
      if (foreign !== undefined) {
        const where = formatAddress(this.options.secondary);
        this.fail(new TransportError(TransportErrorCodes.TRANSPORT_PEER_NOT_TANDEM, `the peer at ${where} is not a Tandem secondary: ${foreign.name} answered (${foreign.said}); check primary.secondary`, { cause: err }));
        this.socket?.destroy();
        return;
      }
      this.fail(linkError(`malformed back-channel from the secondary: ${err instanceof Error ? err.message : String(err)}`, err));
      this.socket?.destroy();
      return;
    }
    for (const rec of records) {
      if (rec.type === 'FEATURES') {
        this.features = rec.features;
        continue;
      }
      if (rec.type !== 'ACK') {
        const w = this.recordWaiter;
        if (w !== undefined && w.type === rec.type) {
          this.recordWaiter = undefined;
          clearTimeout(w.timer);
          w.resolve(rec);
        } else if (this.backlog.length >= MAX_BACKLOG) {
          this.fail(linkError(`the secondary sent more than ${MAX_BACKLOG} handshake records nobody asked for`));
          this.socket?.destroy();
          return;
        } else {
          this.backlog.push(rec);
        }
        continue;
      }
      this.acked = true;
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
