/**
 * One stream from one primary: bytes in, receiver actions out. Pure (no
 * sockets), so tests can cut and split a stream at any byte and the socket
 * glue stays a few lines.
 *
 * Actions are handed to `act` one at a time, as they happen, before the next
 * item is applied: an observer of an epoch's commit sees the replica at that
 * epoch, not at a later one decoded from the same chunk.
 */
import { StreamDecoder, type StreamItem } from '../stream/decoder.js';
import type { EpochReceiver, ReceiverAction } from './receiver.js';

export interface SessionOptions {
  /** Guest pages of the replica: a pfn at or above it is refused by the decoder. */
  replicaPages: number;
  /** Largest record body accepted; PAGE_DATA is bounded by its page count anyway. */
  maxRecordBytes: number;
  /** A COLO stream (CHECKPOINT_STATE announces each checkpoint after the first). */
  colo?: boolean;
}

export type ActionSink = (action: ReceiverAction) => void;

export class ReplicationSession {
  private decoder: StreamDecoder | undefined;
  private open = false;

  constructor(
    private readonly receiver: EpochReceiver,
    private readonly options: SessionOptions,
  ) {}

  /** True from start() until the stream ends, fails or is aborted. */
  get active(): boolean {
    return this.open;
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
    this.receiver.begin();
    this.open = true;
  }

  /** Feeds bytes from the primary. After the stream has closed, bytes are ignored. */
  push(chunk: Buffer, act: ActionSink): void {
    const decoder = this.decoder;
    if (!this.open || decoder === undefined) return;
    const items: StreamItem[] = [];
    let failure: unknown;
    try {
      decoder.push(chunk, items);
    } catch (err) {
      // What the chunk completed before the bad record is applied first: an
      // epoch finished just before it is kept, then the stream fails.
      failure = err;
    }
    for (const item of items) {
      let actions: ReceiverAction[];
      try {
        actions = this.receiver.feed(item);
      } catch (err) {
        this.fail(err, act);
        return;
      }
      this.deliver(actions, act);
      if (!this.open) return;
    }
    if (failure !== undefined) this.fail(failure, act);
  }

  /** The primary sent its last byte (half-close): anything short of END is a truncated stream. */
  end(act: ActionSink): void {
    const decoder = this.decoder;
    if (!this.open || decoder === undefined) return;
    try {
      decoder.end();
    } catch (err) {
      this.fail(err, act);
      return;
    }
    // A complete stream closed the receiver at its END; reaching here open would be a receiver bug.
    this.fail(new Error('stream complete but the receiver is still open'), act);
  }

  /** The connection is gone with no chance to answer. Returns the epoch torn (0 if none was open). */
  abort(): number {
    if (!this.open) return 0;
    this.open = false;
    return this.receiver.abort();
  }

  private fail(err: unknown, act: ActionSink): void {
    const error = err instanceof Error ? err : new Error(String(err));
    this.deliver(this.receiver.fail(error), act);
  }

  private deliver(actions: ReceiverAction[], act: ActionSink): void {
    for (const a of actions) {
      if (a.type === 'close') this.open = false;
      act(a);
    }
  }
}
