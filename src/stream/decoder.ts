/**
 * Incremental decoder for Xen migration v2/v3 streams, libxc or libxl framed.
 * Pure: fed Buffers of any size, returns what they completed; no I/O.
 *
 * Every length is checked against the limits before the decoder waits for
 * (and so buffers) the body it announces. After the first error the decoder
 * stops for good: a later push() throws ERR_STREAM_FAILED with the original
 * error as its cause, and end() throws the original error again.
 */
import { ErrorCodes, StreamError } from '../errors.js';
import { ChunkQueue } from './chunks.js';
import {
  DOMAIN_HEADER_SIZE,
  IMAGE_HEADER_SIZE,
  LIBXL_HEADER_SIZE,
  LibxcType,
  LibxlType,
  MAX_PFN,
  PAGE_SIZE,
  RECORD_HEADER_SIZE,
  TandemType,
  alignUp,
  recordTypeName,
  type Layer,
} from './format.js';
import {
  isImageMarker,
  isLibxlIdent,
  parseDomainHeader,
  parseImageHeader,
  parseLibxlHeader,
  type DomainHeader,
  type ImageHeader,
  type LibxlHeader,
} from './headers.js';
import { StreamLayout, type Framing } from './layout.js';
import { XBZRLE_ENTRY_BYTES, XBZRLE_HEAD_BYTES, parseRecord, type ParseLimits, type StreamRecord } from './records.js';

export interface DecoderLimits extends ParseLimits {
  /** Largest record body accepted, in bytes. */
  maxRecordBytes: number;
}

export const DEFAULT_DECODER_LIMITS: Readonly<DecoderLimits> = {
  maxRecordBytes: 64 * 1024 * 1024,
  maxPagesPerRecord: 1024,
  maxPfn: MAX_PFN,
};

export interface DecoderOptions {
  /** Framing of the stream; `auto` tells libxc from libxl by the first 8 bytes. */
  format?: Framing | 'auto';
  limits?: Partial<DecoderLimits>;
  /** A COLO stream: CHECKPOINT_STATE follows each CHECKPOINT_END (libxl framing only). */
  colo?: boolean;
  /**
   * Xen's rule for checkpointed streams, which have no END (Remus, COLO): an
   * input that ends right after a libxl CHECKPOINT_END ended cleanly at that
   * checkpoint, and end() says so instead of throwing. Off by default:
   * Tandem's replication stream ends with END, and its secondary takes a
   * stream cut at a checkpoint for a lost primary (see docs/stream.md).
   */
  endAtCheckpoint?: boolean;
  /**
   * Offset of the stream's first byte in the input, when the stream follows
   * a container header (an xl save file's): offsets in items and errors are
   * then offsets in the file.
   */
  startOffset?: number;
}

/** How a stream ended: at its final END, or (with `endAtCheckpoint`) right after CHECKPOINT_END number `checkpoint`. */
export type StreamEnd = { kind: 'end' } | { kind: 'checkpoint'; checkpoint: number };

/** `offset` is where the item starts in the stream, `end` just past it. */
export type StreamItem =
  | { kind: 'libxl-header'; offset: number; end: number; header: LibxlHeader }
  | { kind: 'image-header'; offset: number; end: number; header: ImageHeader }
  | { kind: 'domain-header'; offset: number; end: number; header: DomainHeader }
  | {
      kind: 'record';
      offset: number;
      end: number;
      /** Body length (padding excluded). */
      length: number;
      record: StreamRecord;
    };

interface PendingRecord {
  layer: Layer;
  code: number;
  length: number;
  offset: number;
}

/** Marker records whose body is empty by definition. */
const EMPTY_LIBXC = new Set<number>([LibxcType.END, LibxcType.VERIFY, LibxcType.CHECKPOINT, LibxcType.STATIC_DATA_END]);
const EMPTY_LIBXL = new Set<number>([LibxlType.END, LibxlType.LIBXC_CONTEXT, LibxlType.CHECKPOINT_END]);
const isEmptyRecord = (layer: Layer, code: number): boolean => (layer === 'libxc' ? EMPTY_LIBXC : EMPTY_LIBXL).has(code);

export class StreamDecoder {
  private readonly queue = new ChunkQueue();
  private readonly limits: DecoderLimits;
  private readonly format: Framing | 'auto';
  private readonly colo: boolean;
  private readonly endAtCheckpoint: boolean;
  private readonly startOffset: number;
  private layout: StreamLayout | undefined;
  private pending: PendingRecord | undefined;
  private offset = 0; // stream offset of the first queued byte
  private failure: StreamError | undefined;

  constructor(options: DecoderOptions = {}) {
    this.format = options.format ?? 'auto';
    this.colo = options.colo ?? false;
    this.endAtCheckpoint = options.endAtCheckpoint ?? false;
    this.startOffset = options.startOffset ?? 0;
    if (!Number.isSafeInteger(this.startOffset) || this.startOffset < 0) throw new RangeError(`startOffset ${this.startOffset} is not a non-negative integer`);
    this.offset = this.startOffset;
    this.limits = { ...DEFAULT_DECODER_LIMITS, ...options.limits };
  }

  /** Framing in use, once known. */
  get framing(): Framing | undefined {
    return this.layout?.framing;
  }

  /** Checkpoints (libxc CHECKPOINT records) decoded so far. */
  get checkpoints(): number {
    return this.layout?.checkpoints ?? 0;
  }

  /** True once the final END record has been decoded, body and all. */
  get done(): boolean {
    return this.failure === undefined && this.layout?.expecting === 'done' && this.pending === undefined;
  }

  /** Stream offset just past the bytes consumed so far (startOffset + bytes consumed). */
  get position(): number {
    return this.offset;
  }

  /**
   * True when the input so far stops right after a libxl CHECKPOINT_END: a
   * checkpointed stream without END that ends here ended cleanly.
   */
  get atCheckpointBoundary(): boolean {
    return this.failure === undefined && this.pending === undefined && this.queue.length === 0 && (this.layout?.atCheckpointBoundary ?? false);
  }

  /**
   * Feeds bytes; returns the headers and records they complete, in order.
   * Items are appended to `items` as they complete, so when the chunk also
   * holds a bad record, a caller that passed its own array still has what
   * came before it.
   */
  push(chunk: Buffer, items: StreamItem[] = []): StreamItem[] {
    if (this.failure) {
      throw new StreamError(ErrorCodes.STREAM_FAILED, `decoder stopped after an earlier error: ${this.failure.message}`, { offset: this.failure.offset }, { cause: this.failure });
    }
    this.queue.push(chunk);
    try {
      while (this.step(items));
    } catch (err) {
      if (err instanceof StreamError) this.failure = err;
      throw err;
    }
    return items;
  }

  /**
   * Declares the end of input; throws ERR_STREAM_TRUNCATED if the stream
   * stopped short of its END (or, with `endAtCheckpoint`, inside an epoch).
   */
  end(): StreamEnd {
    if (this.failure) throw this.failure;
    if (this.done) return { kind: 'end' };
    if (this.endAtCheckpoint && this.atCheckpointBoundary) return { kind: 'checkpoint', checkpoint: this.layout!.completedCheckpoints };
    const what = this.pending ? ` inside ${this.pending.layer} ${recordTypeName(this.pending.layer, this.pending.code)}` : '';
    const expecting = this.layout?.expecting ?? 'stream header';
    // Where checkpoints end cleanly, say which one a failover would go back to.
    const n = this.layout?.completedCheckpoints ?? 0;
    const epoch = this.endAtCheckpoint && this.checkpoints > 0 && this.layout?.framing === 'libxl' && !this.layout.libxcFinished ? `: epoch ${n + 1} is incomplete (${n === 0 ? 'no checkpoint is complete' : `the last complete checkpoint is ${n}`})` : '';
    this.failure = new StreamError(ErrorCodes.STREAM_TRUNCATED, `stream ends${what} while expecting ${expecting === 'record' ? 'more records' : expecting}${epoch}`, {
      offset: this.pending?.offset ?? this.offset, // start of the unfinished item
    });
    throw this.failure;
  }

  /** Decodes at most one item; false when more input is needed. */
  private step(items: StreamItem[]): boolean {
    if (this.layout === undefined) return this.detect();
    const layout = this.layout;
    // The layout moves on at a record's header; its body comes first.
    if (this.pending !== undefined) return this.record(layout, items);
    switch (layout.expecting) {
      case 'libxl-header': {
        if (this.queue.length < LIBXL_HEADER_SIZE) return false;
        const at = this.offset;
        const header = parseLibxlHeader(this.take(LIBXL_HEADER_SIZE), at);
        layout.libxlHeader({ offset: at });
        items.push({ kind: 'libxl-header', offset: at, end: this.offset, header });
        return true;
      }
      case 'image-header': {
        if (this.queue.length < IMAGE_HEADER_SIZE) return false;
        const at = this.offset;
        const header = parseImageHeader(this.take(IMAGE_HEADER_SIZE), at);
        layout.imageHeader(header.version, { offset: at });
        items.push({ kind: 'image-header', offset: at, end: this.offset, header });
        return true;
      }
      case 'domain-header': {
        if (this.queue.length < DOMAIN_HEADER_SIZE) return false;
        const at = this.offset;
        const header = parseDomainHeader(this.take(DOMAIN_HEADER_SIZE), at);
        layout.domainHeader(header.type, { offset: at });
        items.push({ kind: 'domain-header', offset: at, end: this.offset, header });
        return true;
      }
      case 'record':
        return this.record(layout, items);
      case 'done':
        if (this.queue.length > 0) {
          throw new StreamError(ErrorCodes.STREAM_TRAILING_DATA, `${this.queue.length} bytes after the final END record`, { offset: this.offset });
        }
        return false;
    }
  }

  private detect(): boolean {
    if (this.format !== 'auto') {
      this.layout = new StreamLayout(this.format, this.colo);
      return true;
    }
    if (this.queue.length < 8) return false;
    const head = this.queue.peek(8);
    if (isImageMarker(head)) this.layout = new StreamLayout('libxc');
    else if (isLibxlIdent(head)) this.layout = new StreamLayout('libxl', this.colo);
    else {
      throw new StreamError(ErrorCodes.STREAM_UNKNOWN_FORMAT, 'neither a libxc image header (8 x 0xFF) nor a libxl header ("LibxlFmt")', { offset: this.startOffset });
    }
    return true;
  }

  private record(layout: StreamLayout, items: StreamItem[]): boolean {
    if (this.pending === undefined) {
      if (this.queue.length < RECORD_HEADER_SIZE) return false;
      const offset = this.offset;
      const head = this.take(RECORD_HEADER_SIZE);
      const code = head.readUInt32LE(0);
      const length = head.readUInt32LE(4);
      const layer = layout.layer;
      // Order and mandatory-type checks first: a bad record is refused before
      // the decoder waits for (and buffers) its body.
      layout.record(layer, code, { offset });
      const name = `${layer} ${recordTypeName(layer, code)}`;
      if (length !== 0 && isEmptyRecord(layer, code)) {
        throw new StreamError(ErrorCodes.RECORD_BAD_LENGTH, `body length ${length}, expected 0`, { offset, record: name });
      }
      const max = this.maxBodyFor(layer, code);
      if (length > max) {
        throw new StreamError(ErrorCodes.RECORD_TOO_LARGE, `body length ${length} exceeds the limit of ${max} bytes`, { offset, record: name });
      }
      this.pending = { layer, code, length, offset };
    }
    const p = this.pending;
    const padded = alignUp(p.length);
    if (this.queue.length < padded) return false;
    const name = `${p.layer} ${recordTypeName(p.layer, p.code)}`;
    const body = this.queue.take(p.length);
    if (padded > p.length) {
      const pad = this.queue.takeContiguous(padded - p.length);
      for (let i = 0; i < pad.length; i++) {
        if (pad[i] !== 0) throw new StreamError(ErrorCodes.RECORD_BAD_PADDING, 'padding contains non-zero bytes', { offset: p.offset, record: name });
      }
    }
    this.offset += padded;
    this.pending = undefined;
    const record = parseRecord(p.layer, p.code, body, p.length, this.limits, { offset: p.offset, name });
    items.push({ kind: 'record', offset: p.offset, end: this.offset, length: p.length, record });
    return true;
  }

  private maxBodyFor(layer: Layer, code: number): number {
    if (layer === 'libxc' && code === LibxcType.PAGE_DATA) {
      // count/reserved, then a pfn word and at most one page per pfn.
      return Math.min(this.limits.maxRecordBytes, 8 + this.limits.maxPagesPerRecord * (8 + PAGE_SIZE));
    }
    if (layer === 'libxc' && code === TandemType.TANDEM_PAGE_XBZRLE) {
      // Head, then an entry and at most one page of payload per pfn.
      return Math.min(this.limits.maxRecordBytes, XBZRLE_HEAD_BYTES + this.limits.maxPagesPerRecord * (XBZRLE_ENTRY_BYTES + PAGE_SIZE));
    }
    return this.limits.maxRecordBytes;
  }

  private take(n: number): Buffer {
    const b = this.queue.takeContiguous(n);
    this.offset += n;
    return b;
  }
}
