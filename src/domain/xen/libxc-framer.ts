/**
 * Where the records of a libxc stream begin and end, as Xen's save helper
 * writes it into its io_fd. The bytes are passed on untouched (the
 * secondary's decoder validates them); this only finds the boundaries libxl
 * needs: a checkpoint's libxc part ends with its CHECKPOINT record, and the
 * helper says "checkpoint" on its other channel, which is not ordered with
 * this one, so the binding waits here until that record has arrived. It also
 * counts each epoch's pages (PAGE_DATA's count), for the epoch's metrics.
 *
 * Pure: chunks in, events out; a record header split across chunks is
 * assembled, record bodies are skipped without copying. A record longer than
 * `maxRecordBytes` is refused: libxc's largest (a PAGE_DATA batch of 1024
 * pages) is about 4 MiB.
 */
import { DOMAIN_HEADER_SIZE, IMAGE_HEADER_SIZE, LibxcType, RECORD_HEADER_SIZE } from '../../stream/format.js';
import { SaveHelperError, SaveHelperErrorCodes as C } from './errors.js';

export const DEFAULT_MAX_RECORD_BYTES = 64 * 2 ** 20;

export interface LibxcFramerEvents {
  /** A CHECKPOINT record ended; `pages`: the PAGE_DATA pages since the previous one (or the start). */
  onCheckpoint?(checkpoints: number, pages: number): void;
  /** The libxc END record ended. */
  onEnd?(): void;
}

export class LibxcFramer {
  private readonly head = Buffer.alloc(RECORD_HEADER_SIZE + 4);
  private headFill = 0;
  /** Bytes still to skip: the stream's two headers at first, then each record's padded body. */
  private skip = IMAGE_HEADER_SIZE + DOMAIN_HEADER_SIZE;
  private position = 0;
  private pages = 0;
  private checkpointsSeen = 0;
  private ended = false;
  /** The record whose body is being skipped (its type), once its header is whole. */
  private pendingType: number | undefined;

  constructor(
    private readonly events: LibxcFramerEvents = {},
    private readonly maxRecordBytes = DEFAULT_MAX_RECORD_BYTES,
  ) {}

  get checkpoints(): number {
    return this.checkpointsSeen;
  }

  get bytes(): number {
    return this.position;
  }

  push(chunk: Buffer): void {
    let at = 0;
    while (at < chunk.length) {
      if (this.ended) throw new SaveHelperError(C.SAVE_HELPER_BAD_MESSAGE, `libxc stream: ${chunk.length - at} bytes after its END (offset ${this.position})`);
      if (this.skip > 0) {
        const n = Math.min(this.skip, chunk.length - at);
        // PAGE_DATA's count is the body's first u32: keep it as the header's tail.
        if (this.pendingType === LibxcType.PAGE_DATA && this.headFill < this.head.length) {
          const want = Math.min(this.head.length - this.headFill, n);
          chunk.copy(this.head, this.headFill, at, at + want);
          this.headFill += want;
        }
        this.skip -= n;
        at += n;
        this.position += n;
        if (this.skip === 0) this.recordDone();
        continue;
      }
      const want = Math.min(RECORD_HEADER_SIZE - this.headFill, chunk.length - at);
      chunk.copy(this.head, this.headFill, at, at + want);
      this.headFill += want;
      at += want;
      this.position += want;
      if (this.headFill < RECORD_HEADER_SIZE) return;
      const type = this.head.readUInt32LE(0);
      const length = this.head.readUInt32LE(4);
      if (length > this.maxRecordBytes) {
        throw new SaveHelperError(C.SAVE_HELPER_BAD_MESSAGE, `libxc stream: record type 0x${type.toString(16)} of ${length} bytes at offset ${this.position - RECORD_HEADER_SIZE} (most ${this.maxRecordBytes})`);
      }
      this.pendingType = type;
      this.skip = (length + 7) & ~7;
      if (this.skip === 0) this.recordDone();
    }
  }

  private recordDone(): void {
    const type = this.pendingType;
    if (type === undefined) return; // the stream's headers
    if (type === LibxcType.PAGE_DATA && this.headFill >= RECORD_HEADER_SIZE + 4) this.pages += this.head.readUInt32LE(RECORD_HEADER_SIZE);
    this.pendingType = undefined;
    this.headFill = 0;
    if (type === LibxcType.CHECKPOINT) {
      this.checkpointsSeen++;
      const pages = this.pages;
      this.pages = 0;
      this.events.onCheckpoint?.(this.checkpointsSeen, pages);
    } else if (type === LibxcType.END) {
      this.ended = true;
      this.events.onEnd?.();
    }
  }
}
