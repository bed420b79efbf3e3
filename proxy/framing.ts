/**
 * The record framing colo-compare uses on primary_in, secondary_in and
 * outdev (and, for its input, on notify_dev):
 *
 *   u32 big-endian length | [u32 big-endian vnet header length] | data
 *
 * The second field is present only when vnet header support is on, and then
 * `length` counts the vnet header too: the Ethernet frame starts
 * `vnetHdrLen` bytes into `data`.
 *
 * FrameDecoder is pure and incremental: fed Buffers of any size, it returns
 * the records they complete. It is an explicit state machine (length ->
 * vnet -> body -> length) that checks every announced length before it
 * allocates for the body, and after the first error it stops for good: a
 * later push() throws ERR_PROXY_DECODER_STOPPED with the original error as
 * its cause. By default each record's data is its own copy, so a queued
 * frame never pins the socket chunk it arrived in. With `views`, a record
 * that lies whole in one chunk is handed out as a view of it (no copy; only
 * records across chunk boundaries are assembled in a buffer of their own),
 * and whoever keeps a frame past the current chunk calls ownFrame() first:
 * the comparator does so for the frames it holds, the socket glue for
 * output it cannot write yet.
 */
import { ProxyError, ProxyErrorCodes as C } from './errors.js';

/**
 * Largest record accepted: QEMU's NET_BUFSIZE (4096 + 65536), the size of
 * colo-compare's reassembly buffer; it cuts the connection on anything longer.
 */
export const MAX_RECORD_BYTES = 69_632;

export interface Frame {
  /** The record's data: vnet header (if any), then the Ethernet frame. */
  data: Buffer;
  /** Bytes of virtio-net header at the start of `data` (0 without vnet support). */
  vnetHdrLen: number;
}

export interface FrameDecoderOptions {
  /** Records carry the vnet header length field (`vnet_hdr_support=on`). */
  vnetHdr?: boolean;
  /** Hand out records that lie whole in one chunk as views of it (see ownFrame). */
  views?: boolean;
  /** Largest record accepted, 1..MAX_RECORD_BYTES (default MAX_RECORD_BYTES). */
  maxRecordBytes?: number;
}

type State = 'length' | 'vnet' | 'body' | 'failed';

export class FrameDecoder {
  private readonly vnetHdr: boolean;
  private readonly views: boolean;
  private readonly maxRecordBytes: number;
  private state: State = 'length';
  /** Scratch for a length field split across chunks. */
  private readonly field = Buffer.alloc(4);
  private fieldFill = 0;
  private length = 0;
  private vnetHdrLen = 0;
  private body: Buffer | undefined;
  private bodyFill = 0;
  /** Input offset of the record being decoded. */
  private recordAt = 0;
  /** Bytes consumed so far. */
  private consumed = 0;
  private failure: ProxyError | undefined;

  constructor(options: FrameDecoderOptions = {}) {
    this.vnetHdr = options.vnetHdr ?? false;
    this.views = options.views ?? false;
    this.maxRecordBytes = options.maxRecordBytes ?? MAX_RECORD_BYTES;
  }

  /** Bytes consumed so far. */
  get position(): number {
    return this.consumed;
  }

  /** True between records (nothing partial buffered). */
  get idle(): boolean {
    return this.state === 'length' && this.fieldFill === 0;
  }

  /**
   * Feeds bytes; returns the records they complete. Records are appended to
   * `out` as they complete, so a caller that passed its own array still has
   * those that came before a bad one.
   */
  push(chunk: Buffer, out: Frame[] = []): Frame[] {
    if (this.failure !== undefined) {
      throw new ProxyError(C.PROXY_DECODER_STOPPED, `decoder stopped after an earlier error: ${this.failure.message}`, { cause: this.failure });
    }
    let at = 0;
    const n = chunk.length;
    try {
      while (at < n) {
        switch (this.state) {
          case 'length':
          case 'vnet': {
            let value: number;
            if (this.fieldFill === 0 && n - at >= 4) {
              value = chunk.readUInt32BE(at);
              at += 4;
            } else {
              const k = Math.min(4 - this.fieldFill, n - at);
              chunk.copy(this.field, this.fieldFill, at, at + k);
              this.fieldFill += k;
              at += k;
              if (this.fieldFill < 4) break;
              this.fieldFill = 0;
              value = this.field.readUInt32BE(0);
            }
            if (this.state === 'length') this.onLength(value, at);
            else this.onVnet(value);
            break;
          }
          case 'body': {
            if (this.body === undefined) {
              if (this.views && n - at >= this.length) {
                out.push({ data: chunk.subarray(at, at + this.length), vnetHdrLen: this.vnetHdrLen });
                at += this.length;
                this.state = 'length';
                break;
              }
              // Allocated only now, when the body is known not to be a view: the length was checked already.
              this.body = Buffer.allocUnsafe(this.length);
            }
            const body = this.body;
            const want = body.length - this.bodyFill;
            const k = Math.min(want, n - at);
            chunk.copy(body, this.bodyFill, at, at + k);
            this.bodyFill += k;
            at += k;
            if (this.bodyFill === body.length) {
              out.push({ data: body, vnetHdrLen: this.vnetHdrLen });
              this.body = undefined;
              this.state = 'length';
            }
            break;
          }
          case 'failed':
            return out;
        }
      }
    } catch (err) {
      if (err instanceof ProxyError) {
        this.failure = err;
        this.state = 'failed';
      }
      throw err;
    } finally {
      this.consumed += at;
    }
    return out;
  }

  /** Declares the end of input; throws if it stopped inside a record. */
  end(): void {
    if (this.failure !== undefined) throw this.failure;
    if (this.idle) return;
    this.failure = new ProxyError(C.PROXY_FRAME_TRUNCATED, `input ends inside a record (${this.where()})`, { offset: this.recordAt });
    this.state = 'failed';
    throw this.failure;
  }

  private where(): string {
    switch (this.state) {
      case 'length':
        return `${this.fieldFill} of 4 length bytes`;
      case 'vnet':
        return `${this.fieldFill} of 4 vnet header length bytes`;
      default:
        return `${this.bodyFill} of ${this.length} data bytes`;
    }
  }

  /** `at` is the input offset just past the length field. */
  private onLength(length: number, at: number): void {
    this.recordAt = this.consumed + at - 4;
    // Refuse before allocating: the length is the peer's word, not ours.
    if (length === 0) {
      throw new ProxyError(C.PROXY_FRAME_BAD_LENGTH, 'record length 0: a record carries at least one byte of frame', { offset: this.recordAt });
    }
    if (length > this.maxRecordBytes) {
      throw new ProxyError(C.PROXY_FRAME_TOO_LARGE, `record length ${length} exceeds the limit of ${this.maxRecordBytes} bytes`, { offset: this.recordAt });
    }
    this.length = length;
    if (this.vnetHdr) {
      this.state = 'vnet';
    } else {
      this.vnetHdrLen = 0;
      this.startBody();
    }
  }

  private onVnet(vnetHdrLen: number): void {
    // The record length counts the vnet header, so the header must fit in it.
    if (vnetHdrLen > this.length) {
      throw new ProxyError(C.PROXY_FRAME_BAD_LENGTH, `vnet header length ${vnetHdrLen} exceeds the record length ${this.length}`, { offset: this.recordAt });
    }
    this.vnetHdrLen = vnetHdrLen;
    this.startBody();
  }

  private startBody(): void {
    this.body = undefined;
    this.bodyFill = 0;
    this.state = 'body';
  }
}

/** Largest memory a frame may keep alive beyond its own bytes without being copied: Node's own pool slab. */
const OWN_SLACK_BYTES = 8192;

/**
 * The frame with data it does not share with much else: a view into a
 * larger buffer (a socket chunk) becomes a copy of its bytes, so keeping it
 * does not keep the whole chunk alive; anything else is returned as it is.
 */
export function ownFrame(frame: Frame): Frame {
  const d = frame.data;
  if (d.buffer.byteLength <= Math.max(OWN_SLACK_BYTES, 2 * d.length)) return frame;
  return { data: Buffer.from(d), vnetHdrLen: frame.vnetHdrLen };
}

/** Bytes of framing before the data of one record. */
export const headerBytes = (vnetHdr: boolean): number => (vnetHdr ? 8 : 4);

/**
 * Encodes one record into `dest` at `at` (which must have room for
 * headerBytes + data.length); returns the offset just past it.
 */
export function encodeFrameInto(dest: Buffer, at: number, data: Buffer, vnetHdrLen: number, vnetHdr: boolean): number {
  dest.writeUInt32BE(data.length, at);
  at += 4;
  if (vnetHdr) {
    dest.writeUInt32BE(vnetHdrLen, at);
    at += 4;
  }
  data.copy(dest, at);
  return at + data.length;
}

/** Encodes one record as a new Buffer. Throws on a record the decoder would refuse. */
export function encodeFrame(data: Buffer, vnetHdrLen = 0, vnetHdr = false): Buffer {
  if (data.length === 0 || data.length > MAX_RECORD_BYTES) {
    throw new ProxyError(C.PROXY_FRAME_BAD_LENGTH, `record length ${data.length} is outside 1..${MAX_RECORD_BYTES}`);
  }
  if (!vnetHdr && vnetHdrLen !== 0) throw new ProxyError(C.PROXY_FRAME_BAD_LENGTH, `vnet header length ${vnetHdrLen} without vnet header support`);
  if (vnetHdrLen > data.length) throw new ProxyError(C.PROXY_FRAME_BAD_LENGTH, `vnet header length ${vnetHdrLen} exceeds the record length ${data.length}`);
  const out = Buffer.allocUnsafe(headerBytes(vnetHdr) + data.length);
  encodeFrameInto(out, 0, data, vnetHdrLen, vnetHdr);
  return out;
}
