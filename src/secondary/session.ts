/**
 * One stream from one primary: bytes in, receiver actions out. Pure (no
 * sockets), so tests can cut and split a stream at any byte and the socket
 * glue stays a few lines.
 *
 * Actions are handed to `act` one at a time, as they happen, before the next
 * item is applied: an observer of an epoch's commit sees the replica at that
 * epoch, not at a later one decoded from the same chunk. A
 * 'load-device-model' action stops the feeding until the caller reports
 * the load's outcome; decoded items wait in order meanwhile.
 */
import { StreamDecoder, type StreamItem } from '../stream/decoder.js';
import type { EpochReceiver, ReceiverAction } from './receiver.js';

export interface StreamSessionOptions {
  /** Guest pages of the replica: a pfn at or above it is refused by the decoder. */
  replicaPages: number;
  /** Largest record body accepted; PAGE_DATA is bounded by its page count anyway. */
  maxRecordBytes: number;
  /** A COLO stream (CHECKPOINT_STATE announces each checkpoint after the first). */
  colo?: boolean;
  /** TandemFeature bits offered to this stream's primary (TANDEM_FEATURES). */
  features?: number;
}

export type ActionSink = (action: ReceiverAction) => void;

export class ReplicationSession {
  private decoder: StreamDecoder | undefined;
  private open = false;
  /** Decoded items not yet fed to the receiver (while it waits for a device-model load). */
  private queue: StreamItem[] = [];
  private head = 0;
  /** The receiver asked for a device-model load and waits for its outcome. */
  private waiting = false;
  /** The decoder failed after the queued items: fail once they are applied. */
  private decodeFailure: unknown;
  /** The primary sent its last byte: check the stream is complete once the queue is applied. */
  private ended = false;

  constructor(
    private readonly receiver: EpochReceiver,
    private readonly options: StreamSessionOptions,
  ) {}

  /** True from start() until the stream ends, fails or is aborted. */
  get active(): boolean {
    return this.open;
  }

  /** Waiting for a device-model load: the caller should stop reading the connection meanwhile. */
  get blocked(): boolean {
    return this.waiting;
  }

  /** Stream bytes decoded so far. */
  get position(): number {
    return this.decoder?.position ?? 0;
  }

  start(): void {
    if (this.decoder !== undefined) throw new Error('a session carries one stream; start a new session');
    this.decoder = new StreamDecoder({
      format: 'libxl',
      colo: this.options.colo,
      limits: { maxPfn: this.options.replicaPages - 1, maxRecordBytes: this.options.maxRecordBytes },
    });
    this.receiver.begin(this.options.features ?? 0);
    this.open = true;
  }

  /** Feeds bytes from the primary. After the stream has closed, bytes are ignored. */
  push(chunk: Buffer, act: ActionSink): void {
    const decoder = this.decoder;
    if (!this.open || decoder === undefined || this.decodeFailure !== undefined || this.ended) return;
    try {
      decoder.push(chunk, this.queue);
    } catch (err) {
      // What the chunk completed before the bad record is applied first: an
      // epoch finished just before it is kept, then the stream fails.
      this.decodeFailure = err;
    }
    this.drain(act);
  }

  /** The primary sent its last byte (half-close): anything short of END is a truncated stream. */
  end(act: ActionSink): void {
    if (!this.open || this.ended) return;
    this.ended = true;
    this.drain(act);
  }

  /** The device-model load asked for is done: the epoch commits and the queue goes on. */
  deviceModelLoaded(act: ActionSink): void {
    this.resumeWith(() => this.receiver.deviceModelLoaded(), act);
  }

  /** The device-model load asked for failed: the stream fails, the replica stays at its last epoch. */
  deviceModelRefused(err: unknown, act: ActionSink): void {
    this.resumeWith(() => this.receiver.deviceModelRefused(err), act);
  }

  /** The connection is gone with no chance to answer. Returns the epoch torn (0 if none was open). */
  abort(): number {
    if (!this.open) return 0;
    this.open = false;
    this.waiting = false;
    this.queue = [];
    return this.receiver.abort();
  }

  private resumeWith(outcome: () => ReceiverAction[], act: ActionSink): void {
    if (!this.open || !this.waiting) return;
    this.waiting = false;
    let actions: ReceiverAction[];
    try {
      actions = outcome();
    } catch (err) {
      this.fail(err, act);
      return;
    }
    this.deliver(actions, act);
    this.drain(act);
  }

  /** Feeds queued items until the stream closes or waits for a load; then reports a decode failure or a truncated end. */
  private drain(act: ActionSink): void {
    while (this.open && !this.waiting && this.head < this.queue.length) {
      const item = this.queue[this.head++];
      let actions: ReceiverAction[];
      try {
        actions = this.receiver.feed(item);
      } catch (err) {
        this.fail(err, act);
        return;
      }
      this.deliver(actions, act);
    }
    if (this.head === this.queue.length) {
      this.queue = [];
      this.head = 0;
    }
    if (!this.open || this.waiting) return;
    if (this.decodeFailure !== undefined) {
      this.fail(this.decodeFailure, act);
      return;
    }
    if (this.ended) {
      try {
        this.decoder!.end();
      } catch (err) {
        this.fail(err, act);
        return;
      }
      // A complete stream closed the receiver at its END; reaching here open would be a receiver bug.
      this.fail(new Error('stream complete but the receiver is still open'), act);
    }
  }

  private fail(err: unknown, act: ActionSink): void {
    const error = err instanceof Error ? err : new Error(String(err));
    this.waiting = false;
    this.deliver(this.receiver.fail(error), act);
  }

  private deliver(actions: ReceiverAction[], act: ActionSink): void {
    for (const a of actions) {
      if (a.type === 'close') this.open = false;
      if (a.type === 'load-device-model') this.waiting = true;
      act(a);
    }
  }
}
