/**
 * The COLO network link between the hosts: one TCP connection, in QEMU
 * colo-compare's framing (4-byte big-endian length, then the frame) both
 * ways. Primary -> secondary: the client frames the front mirrors to the
 * secondary's guest (filter-mirror's role). Secondary -> primary: what the
 * secondary's guest sends, for the comparator's secondary input
 * (filter-redirector's role).
 *
 * Checkpoints cut the secondary's output in two: frames its guest sent
 * before a checkpoint must never be compared with the primary's output after
 * it, and frames sent after its resume must not be flushed away by the
 * comparator's end-of-checkpoint (which drops held secondary frames). So
 * the secondary writes a marker frame when its guest resumes from
 * checkpoint k, and the primary's end passes frames to the comparator only
 * while the marker count equals the committed epoch: older frames are
 * dropped, newer ones wait for the commit. The marker is an Ethernet frame
 * of the IEEE local experimental ethertype 0x88b5, never given to a guest
 * or the comparator.
 */
import { EventEmitter } from 'node:events';
import type { Duplex } from 'node:stream';

import { FrameDecoder, encodeFrame, type Frame } from '../../proxy/framing.js';
import type { Transport, TransportListener } from '../transport/transport.js';
import type { Address } from '../util/address.js';
import type { Logger } from '../util/logger.js';

const ETHERTYPE_LOCAL = 0x88b5;
const MARKER_TAG = Buffer.from('TANDEM-RESUMED', 'latin1');
const MARKER_BYTES = 14 + MARKER_TAG.length + 8;
/** `resumedFrom` before the secondary's first marker of a stream: below every epoch, so its frames are dropped. */
const NO_RUN = -1;
/** Frames waiting for a commit, at most: a secondary that runs ahead this far is not keeping to the protocol. */
const MAX_HELD = 65536;

/** The marker frame the secondary sends when its guest resumes from checkpoint `epoch`. */
export function markerFrame(epoch: number): Buffer {
  const f = Buffer.alloc(MARKER_BYTES);
  // Broadcast destination, zero source: a frame no guest stack would take for its own.
  f.fill(0xff, 0, 6);
  f.writeUInt16BE(ETHERTYPE_LOCAL, 12);
  MARKER_TAG.copy(f, 14);
  f.writeUInt32BE(Math.floor(epoch / 2 ** 32), 14 + MARKER_TAG.length);
  f.writeUInt32BE(epoch >>> 0, 14 + MARKER_TAG.length + 4);
  return f;
}

/** The epoch a marker frame names, or undefined for any other frame. */
export function markerEpoch(f: Buffer): number | undefined {
  if (f.length !== MARKER_BYTES || f.readUInt16BE(12) !== ETHERTYPE_LOCAL || !f.subarray(14, 14 + MARKER_TAG.length).equals(MARKER_TAG)) return undefined;
  return f.readUInt32BE(14 + MARKER_TAG.length) * 2 ** 32 + f.readUInt32BE(14 + MARKER_TAG.length + 4);
}

/**
 * Bytes queued in the socket above which the link counts as congested: the
 * peer is not reading as fast as this side sends. Far above one turn's batch
 * (a few hundred small frames), so it marks a peer that has fallen behind,
 * not a burst.
 */
export const CONGESTED_BYTES = 1024 * 1024;

export interface NetLinkEvents {
  /** The link failed or closed. */
  close: [Error | undefined];
  /** More than CONGESTED_BYTES wait in the socket: stop producing frames. */
  congested: [];
  /** The queue drained after `congested`: go on. */
  drain: [];
}

/**
 * One side's socket glue: frames out, frames in through the decoder.
 *
 * Frames sent in one turn of the event loop leave in one write. Over
 * loopback a write costs the sender the receiver's whole network path and a
 * wakeup (a profile of the primary under redis-benchmark had a quarter of its
 * time in the net link's per-frame writes); twenty clients' requests read in
 * one poll round then cross the link together, and the secondary's replies
 * to them come back together. The batch leaves at setImmediate, after the
 * poll phase that produced it, so it never waits for a timer.
 */
abstract class NetLinkEnd extends EventEmitter<NetLinkEvents> {
  protected socket: Duplex | undefined = undefined;
  private written = 0;
  private received = 0;
  private decoder = new FrameDecoder();
  private batch: Buffer[] = [];
  private flushing: NodeJS.Immediate | undefined = undefined;
  private isCongested = false;

  constructor(protected readonly logger: Logger | undefined) {
    super();
  }

  get connected(): boolean {
    return this.socket !== undefined && !this.socket.destroyed;
  }

  /** Bytes handed to the current connection so far (batched frames count once written). */
  get bytesWritten(): number {
    return this.written;
  }

  /**
   * Frames taken from the current connection so far, markers included:
   * whether a frame arrived, whatever became of it, so a caller (a test)
   * can wait for that instead of for time to pass.
   */
  get framesReceived(): number {
    return this.received;
  }

  /** Between `congested` and `drain`. */
  get congested(): boolean {
    return this.isCongested;
  }

  /** Sends one frame; dropped when the link is down (the comparator or a checkpoint covers the loss). */
  send(frame: Buffer): void {
    const s = this.socket;
    if (s === undefined || s.destroyed) return;
    this.batch.push(encodeFrame(frame));
    this.flushing ??= setImmediate(() => this.flush());
  }

  /** Writes the frames sent so far now (a checkpoint boundary, or the end of a turn). */
  flush(): void {
    if (this.flushing !== undefined) clearImmediate(this.flushing);
    this.flushing = undefined;
    const frames = this.batch;
    if (frames.length === 0) return;
    this.batch = [];
    const s = this.socket;
    if (s === undefined || s.destroyed) return;
    for (const f of frames) this.written += f.length;
    if (frames.length === 1) {
      s.write(frames[0]);
    } else {
      s.cork();
      for (const f of frames) s.write(f);
      s.uncork();
    }
    if (!this.isCongested && s.writableLength > CONGESTED_BYTES) {
      this.isCongested = true;
      this.emit('congested');
      s.once('drain', () => this.relieve(s));
    }
  }

  private relieve(s: Duplex): void {
    if (this.socket !== s || !this.isCongested) return;
    this.isCongested = false;
    this.emit('drain');
  }

  protected attach(socket: Duplex): void {
    this.socket = socket;
    this.decoder = new FrameDecoder();
    this.batch = [];
    this.written = 0;
    this.received = 0;
    this.isCongested = false;
    socket.on('data', (chunk: Buffer) => {
      const frames: Frame[] = [];
      let failure: unknown;
      try {
        this.decoder.push(chunk, frames);
      } catch (err) {
        failure = err;
      }
      // The records before a bad one are good: deliver them, then drop the link.
      for (const f of frames) {
        this.received++;
        this.frame(f.data);
      }
      if (failure !== undefined) {
        this.logger?.error({ err: failure }, 'COLO net link: malformed framing from the peer; dropping the link');
        socket.destroy();
      }
    });
    socket.on('error', (err) => this.logger?.warn({ err: err.message }, 'COLO net link error'));
    socket.on('close', () => {
      if (this.socket === socket) {
        this.socket = undefined;
        // Nothing is queued on a closed link: whoever waited for it to drain goes on (its frames are lost either way).
        if (this.isCongested) {
          this.isCongested = false;
          this.emit('drain');
        }
      }
      this.emit('close', undefined);
    });
  }

  protected abstract frame(f: Buffer): void;
}

export interface NetLinkPrimaryOptions {
  transport: Transport;
  /** The secondary's end of the link. */
  secondary: Address;
  /** A frame of the secondary guest's output, in step with the commits: give it to the comparator. */
  toComparator: (frame: Buffer) => void;
  logger?: Logger;
  connectTimeoutMs?: number;
}

/** The primary's end: connects to the secondary. */
export class NetLinkPrimary extends NetLinkEnd {
  /** Markers seen: the secondary's guest runs from this checkpoint. */
  private resumedFrom = 0;
  /** Epochs committed on this side (the comparator was told). */
  private committedTo = 0;
  private held: Buffer[] = [];
  dropped = 0;

  /** Frames of the secondary's output waiting for the commit of the checkpoint its guest resumed from. */
  get heldFrames(): number {
    return this.held.length;
  }

  constructor(private readonly options: NetLinkPrimaryOptions) {
    super(options.logger);
  }

  async start(): Promise<void> {
    const socket = await this.options.transport.connect(this.options.secondary, { timeoutMs: this.options.connectTimeoutMs ?? 2000, peer: "the secondary's COLO net link" });
    this.attach(socket);
  }

  /** Connects unless connected already (a protection session starting, maybe after the link was lost). */
  async ensure(): Promise<void> {
    if (!this.connected) await this.start();
  }

  stop(): void {
    this.socket?.destroy();
  }

  /**
   * A new stream: nothing the secondary sends counts until its guest resumes
   * from this stream's first checkpoint (its first marker). Frames still in
   * flight from its run in an earlier stream belong to no checkpoint of
   * this one: were one to match a primary frame, that frame would leave
   * before any standby could reproduce it.
   */
  reset(): void {
    this.resumedFrom = NO_RUN;
    this.committedTo = 0;
    this.held = [];
  }

  /** Epoch `epoch` is committed (the comparator flushed): frames of the guest resumed from it may be compared. */
  committed(epoch: number): void {
    this.committedTo = epoch;
    if (this.resumedFrom === epoch && this.held.length > 0) {
      const ready = this.held;
      this.held = [];
      for (const f of ready) this.options.toComparator(f);
    }
  }

  protected frame(f: Buffer): void {
    const epoch = markerEpoch(f);
    if (epoch !== undefined) {
      this.resumedFrom = epoch;
      // Frames held from a run that a newer resume supersedes belong to the past.
      this.dropped += this.held.length;
      this.held = [];
      return;
    }
    if (this.resumedFrom < this.committedTo) {
      // Sent before the secondary's guest was reset to the committed checkpoint.
      this.dropped++;
      return;
    }
    if (this.resumedFrom > this.committedTo) {
      if (this.held.length >= MAX_HELD) {
        this.logger?.error({ held: this.held.length }, 'COLO net link: the secondary runs ahead of the commits; dropping the link');
        this.socket?.destroy();
        return;
      }
      this.held.push(f);
      return;
    }
    this.options.toComparator(f);
  }
}

export interface NetLinkSecondaryOptions {
  transport: Transport;
  /** Where to accept the primary's end. */
  listen: Address;
  /** A mirrored client frame for the secondary's guest. */
  toGuest: (frame: Buffer) => void;
  logger?: Logger;
}

/** The secondary's end: listens for the primary (one at a time). */
export class NetLinkSecondary extends NetLinkEnd {
  private server: TransportListener | undefined = undefined;

  constructor(private readonly options: NetLinkSecondaryOptions) {
    super(options.logger);
  }

  async start(): Promise<Address> {
    // The guest's output is what it makes of the primary's frames: while the
    // primary does not take that output, take no more of its frames (TCP
    // then holds the primary's writes back, and its front its clients).
    this.on('congested', () => this.socket?.pause());
    this.on('drain', () => this.socket?.resume());
    this.server = await this.options.transport.listen(
      this.options.listen,
      (socket, remote) => {
        if (this.connected) {
          this.logger?.warn({ remote }, 'COLO net link: refused a second primary');
          socket.destroy();
          return;
        }
        this.attach(socket);
      },
      { purpose: 'the COLO net link', listener: 'COLO net link' },
    );
    return this.server.address;
  }

  async stop(): Promise<void> {
    this.socket?.destroy();
    const server = this.server;
    this.server = undefined;
    await server?.close();
  }

  /** The guest resumed from checkpoint `epoch`: what it sends from now on is compared after that commit. */
  resumed(epoch: number): void {
    this.send(markerFrame(epoch));
  }

  protected frame(f: Buffer): void {
    this.options.toGuest(f);
  }
}
