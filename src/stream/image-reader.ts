/**
 * Reads whatever a Xen toolstack writes to a file or a pipe: an `xl save`
 * file or an xl-framed migration/Remus stream (xl header, then a libxl
 * stream), a bare libxl stream, or a bare libxc stream. The first 8 bytes
 * tell which. Pure: fed Buffers of any size; no I/O.
 *
 * Offsets in items and errors are offsets in the input, xl header included,
 * so an operator can find them in a hex dump of the file. Like the decoders
 * it is built on, it stops for good at the first error.
 */
import { ErrorCodes, StreamError } from '../errors.js';
import { ChunkQueue } from './chunks.js';
import { StreamDecoder, type DecoderLimits, type StreamEnd, type StreamItem } from './decoder.js';
import { isImageMarker, isLibxlIdent } from './headers.js';
import type { Framing } from './layout.js';
import { XlHeaderDecoder, isXlMagicPrefix, type XlHeader, type XlHeaderLimits } from './xl-header.js';

export type ImageItem = { kind: 'xl-header'; offset: number; end: number; header: XlHeader } | StreamItem;

export interface ImageReaderOptions {
  limits?: Partial<DecoderLimits>;
  xlLimits?: Partial<XlHeaderLimits>;
  /** See DecoderOptions.endAtCheckpoint: Xen's rule for checkpointed streams, which have no END. */
  endAtCheckpoint?: boolean;
}

/** Bytes that tell an xl header ("Xen save"), a libxl header ("LibxlFmt") and a libxc image header (8 x 0xFF) apart. */
const DETECT_BYTES = 8;

/** Decodes `chunk` into `items`; the items completed before a bad record are kept there, as StreamDecoder.push() does. */
function decodeInto(decoder: StreamDecoder, chunk: Buffer, items: ImageItem[]): void {
  const got: StreamItem[] = [];
  try {
    decoder.push(chunk, got);
  } finally {
    for (const item of got) items.push(item);
  }
}

export class ImageReader {
  private readonly options: ImageReaderOptions;
  /** Bytes held until the first 8 have arrived. */
  private readonly head = new ChunkQueue();
  private xl: XlHeaderDecoder | undefined;
  private decoder: StreamDecoder | undefined;
  private failure: StreamError | undefined;
  private xlHeader: XlHeader | undefined;

  constructor(options: ImageReaderOptions = {}) {
    this.options = options;
  }

  /** 'xl' once an xl header was seen; 'none' for a bare stream; undefined before the first 8 bytes. */
  get container(): 'xl' | 'none' | undefined {
    if (this.xl) return 'xl';
    return this.decoder ? 'none' : undefined;
  }

  /** The xl header, once decoded. */
  get header(): XlHeader | undefined {
    return this.xlHeader;
  }

  /** Framing of the migration stream, once known. */
  get framing(): Framing | undefined {
    return this.decoder?.framing;
  }

  /** True once the stream's final END has been decoded. */
  get done(): boolean {
    return this.failure === undefined && (this.decoder?.done ?? false);
  }

  /** Feeds bytes; returns (and appends to `items`) the headers and records they complete. */
  push(chunk: Buffer, items: ImageItem[] = []): ImageItem[] {
    if (this.failure) {
      throw new StreamError(ErrorCodes.STREAM_FAILED, `reader stopped after an earlier error: ${this.failure.message}`, { offset: this.failure.offset }, { cause: this.failure });
    }
    try {
      this.feed(chunk, items);
    } catch (err) {
      if (err instanceof StreamError) this.failure = err;
      throw err;
    }
    return items;
  }

  /** Declares the end of input; see StreamDecoder.end(). */
  end(): StreamEnd {
    if (this.failure) throw this.failure;
    try {
      if (this.decoder) return this.decoder.end();
      if (this.xl) {
        this.xl.end(); // the header is incomplete, or there would be a decoder: throws
      }
      throw new StreamError(ErrorCodes.STREAM_TRUNCATED, `input ends after ${this.head.length} bytes, before a stream header`, { offset: 0 });
    } catch (err) {
      if (err instanceof StreamError) this.failure = err;
      throw err;
    }
  }

  private feed(chunk: Buffer, items: ImageItem[]): void {
    if (this.decoder) {
      decodeInto(this.decoder, chunk, items);
      return;
    }
    if (this.xl) {
      this.feedXl(chunk, items);
      return;
    }
    this.head.push(chunk);
    if (this.head.length < DETECT_BYTES) return;
    const first = this.head.peek(DETECT_BYTES);
    const held = this.head.take(this.head.length);
    if (isXlMagicPrefix(first)) {
      this.xl = new XlHeaderDecoder(this.options.xlLimits);
    } else if (isImageMarker(first) || isLibxlIdent(first)) {
      this.decoder = new StreamDecoder({ limits: this.options.limits, endAtCheckpoint: this.options.endAtCheckpoint });
    } else {
      throw new StreamError(ErrorCodes.STREAM_UNKNOWN_FORMAT, 'neither an xl save file ("Xen saved domain, xl format"), a libxl header ("LibxlFmt") nor a libxc image header (8 x 0xFF)', { offset: 0 });
    }
    // The held bytes now go where the format says (for xl: the header, then the stream after it).
    for (const part of held) this.feed(part, items);
  }

  private feedXl(chunk: Buffer, items: ImageItem[]): void {
    const header = this.xl!.push(chunk);
    if (header === undefined) return;
    this.xlHeader = header;
    items.push({ kind: 'xl-header', offset: 0, end: header.size, header });
    // The stream-v2 flag (checked by the header decoder) promises a libxl stream.
    this.decoder = new StreamDecoder({ format: 'libxl', limits: this.options.limits, endAtCheckpoint: this.options.endAtCheckpoint, startOffset: header.size });
    for (const part of this.xl!.rest()) decodeInto(this.decoder, part, items);
  }
}
