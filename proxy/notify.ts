/**
 * The notify channel between the comparator and the COLO controller
 * (colo-compare's `notify_dev`): each message is a record of the same
 * framing as the packet inputs (u32 big-endian length, then ASCII with no
 * NUL), and the whole protocol is four words:
 *
 *   controller -> proxy  COLO_USERSPACE_PROXY_INIT  "are you there"
 *   proxy -> controller  COLO_COMPARE_GET_XEN_INIT  its reply
 *   proxy -> controller  DO_CHECKPOINT              the guests diverged (or a frame waited too long)
 *   controller -> proxy  COLO_CHECKPOINT            a checkpoint was taken: release / drop what is held
 *
 * One quirk is kept for interoperability: with vnet header support on,
 * colo-compare reads the notify input with the packet reader, so messages
 * *to* the proxy carry the vnet header length field too (Tandem's proxy
 * requires it to be 0), while its messages *to the controller* never do.
 */
import { ProxyError, ProxyErrorCodes as C } from './errors.js';
import { FrameDecoder, encodeFrame, headerBytes } from './framing.js';

export const NotifyWords = {
  PROXY_INIT: 'COLO_USERSPACE_PROXY_INIT',
  PROXY_INIT_REPLY: 'COLO_COMPARE_GET_XEN_INIT',
  DO_CHECKPOINT: 'DO_CHECKPOINT',
  CHECKPOINT_DONE: 'COLO_CHECKPOINT',
} as const;

export type NotifyWord = (typeof NotifyWords)[keyof typeof NotifyWords];

/** Which way a message travels. */
export type NotifyDirection = 'to-proxy' | 'from-proxy';

/** The one table: every word and the direction it may travel in. */
const DIRECTION: Record<NotifyWord, NotifyDirection> = {
  COLO_USERSPACE_PROXY_INIT: 'to-proxy',
  COLO_COMPARE_GET_XEN_INIT: 'from-proxy',
  DO_CHECKPOINT: 'from-proxy',
  COLO_CHECKPOINT: 'to-proxy',
};

/** Longest record accepted on the notify channel: the longest word is 25 bytes. */
export const MAX_NOTIFY_BYTES = 64;

const isWord = (text: string): text is NotifyWord => Object.prototype.hasOwnProperty.call(DIRECTION, text);

/** The vnet header length field is present on messages to the proxy only, and only with vnet support. */
const hasVnetField = (direction: NotifyDirection, vnetHdr: boolean): boolean => direction === 'to-proxy' && vnetHdr;

export interface NotifyCodecOptions {
  /** The direction of the messages this codec reads or writes. */
  direction: NotifyDirection;
  /** The proxy runs with vnet header support (see the quirk above). */
  vnetHdr?: boolean;
}

export function encodeNotify(word: NotifyWord, options: NotifyCodecOptions): Buffer {
  if (DIRECTION[word] !== options.direction) throw new ProxyError(C.PROXY_NOTIFY_BAD_MESSAGE, `${word} does not travel ${options.direction}`);
  const field = hasVnetField(options.direction, options.vnetHdr ?? false);
  return encodeFrame(Buffer.from(word, 'ascii'), 0, field);
}

/**
 * Incremental decoder of one direction of the notify channel. Stops for
 * good on the first bad record (framing, a word it does not know, a word
 * travelling the wrong way, a non-zero vnet header length).
 */
export class NotifyDecoder {
  private readonly frames: FrameDecoder;
  private readonly direction: NotifyDirection;
  private readonly headerBytes: number;
  private failure: ProxyError | undefined;

  constructor(options: NotifyCodecOptions) {
    this.direction = options.direction;
    const field = hasVnetField(options.direction, options.vnetHdr ?? false);
    this.headerBytes = headerBytes(field);
    this.frames = new FrameDecoder({ vnetHdr: field, maxRecordBytes: MAX_NOTIFY_BYTES });
  }

  push(chunk: Buffer, out: NotifyWord[] = []): NotifyWord[] {
    if (this.failure !== undefined) {
      throw new ProxyError(C.PROXY_DECODER_STOPPED, `notify decoder stopped after an earlier error: ${this.failure.message}`, { cause: this.failure });
    }
    const start = this.frames.position;
    const frames = this.frames.push(chunk);
    let at = start;
    for (const f of frames) {
      const bad = (what: string): ProxyError => (this.failure = new ProxyError(C.PROXY_NOTIFY_BAD_MESSAGE, what, { offset: at }));
      if (f.vnetHdrLen !== 0) throw bad(`notify message with vnet header length ${f.vnetHdrLen}, expected 0`);
      const text = f.data.toString('latin1');
      // Printable ASCII only: anything else is no word of this protocol, and quoting it raw could garble a log line.
      if (!/^[\x20-\x7e]+$/.test(text)) throw bad(`notify message of ${f.data.length} bytes is not printable ASCII`);
      if (!isWord(text)) throw bad(`unknown notify message ${JSON.stringify(text)}`);
      if (DIRECTION[text] !== this.direction) throw bad(`${text} does not travel ${this.direction}`);
      out.push(text);
      at += this.headerBytes + f.data.length;
    }
    return out;
  }
}
