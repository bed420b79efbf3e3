/**
 * Stream encoder: turns headers and typed records into Buffers, in the exact
 * byte layout Xen writes. Pure: it returns chunk lists (page data is passed
 * through by reference, never copied) for the caller to write with writev or
 * a corked socket. The same layout rules as the decoder's refuse an ordering
 * Xen's restore would reject, so Tandem cannot emit an invalid stream.
 */
import { RECORD_HEADER_SIZE, alignUp, type Layer } from './format.js';
import { encodeDomainHeader, encodeImageHeader, encodeLibxlHeader, type DomainHeader } from './headers.js';
import { StreamLayout, type Framing } from './layout.js';
import { encodeRecordBody, recordCode, type StreamRecord } from './records.js';

const ZERO_PAD = Buffer.alloc(8);

/** Frames one record: header, body parts, zero padding to 8 octets. */
export function frameRecord(code: number, body: readonly Buffer[]): Buffer[] {
  let length = 0;
  for (const part of body) length += part.length;
  const head = Buffer.allocUnsafe(RECORD_HEADER_SIZE);
  head.writeUInt32LE(code >>> 0, 0);
  head.writeUInt32LE(length, 4);
  const pad = alignUp(length) - length;
  return pad === 0 ? [head, ...body] : [head, ...body, ZERO_PAD.subarray(0, pad)];
}

export const byteLength = (chunks: readonly Buffer[]): number => chunks.reduce((n, c) => n + c.length, 0);

export class StreamEncoder {
  private readonly layout: StreamLayout;
  private written = 0;

  /** `colo`: a COLO stream, CHECKPOINT_STATE after each CHECKPOINT_END (see StreamLayout). */
  constructor(framing: Framing, colo = false) {
    this.layout = new StreamLayout(framing, colo);
  }

  /** Bytes encoded so far. */
  get position(): number {
    return this.written;
  }

  /** Layer the next record must belong to. */
  get layer(): Layer {
    return this.layout.layer;
  }

  /** COLO, between checkpoints (see StreamLayout). */
  get betweenColoCheckpoints(): boolean {
    return this.layout.betweenColoCheckpoints;
  }

  get done(): boolean {
    return this.layout.expecting === 'done';
  }

  libxlHeader(): Buffer[] {
    this.layout.libxlHeader({ offset: this.written });
    return this.emit([encodeLibxlHeader()]);
  }

  imageHeader(version: 2 | 3): Buffer[] {
    this.layout.imageHeader(version, { offset: this.written });
    return this.emit([encodeImageHeader({ version })]);
  }

  domainHeader(h: DomainHeader): Buffer[] {
    this.layout.domainHeader(h.type, { offset: this.written });
    return this.emit([encodeDomainHeader(h)]);
  }

  record(rec: StreamRecord): Buffer[] {
    const code = recordCode(rec);
    const body = encodeRecordBody(rec); // throws before the layout moves on
    this.layout.record(rec.layer, code, { offset: this.written });
    return this.emit(frameRecord(code, body));
  }

  /** libxc's bytes, written by libxc itself, passed on as they are (libxl framing; see StreamLayout.libxcOpaque). */
  libxcBytes(chunks: readonly Buffer[]): readonly Buffer[] {
    this.layout.libxcOpaque({ offset: this.written });
    this.written += byteLength(chunks);
    return chunks;
  }

  /** The libxc layer passed on with libxcBytes() handed the stream back: at its CHECKPOINT, or at its END. */
  libxcHandBack(kind: 'checkpoint' | 'end'): void {
    this.layout.libxcHandBack(kind, { offset: this.written });
  }

  private emit(chunks: Buffer[]): Buffer[] {
    this.written += byteLength(chunks);
    return chunks;
  }
}
