/**
 * The header of an `xl save` file, which is also what `xl migrate` and
 * `xl remus` send ahead of the libxl stream (and what `xl migrate-receive`
 * reads on stdin). Facts from Xen 4.17's tools/xl (xl.h, xl_saverestore.c,
 * xl_vmcontrol.c):
 *
 *   32 bytes  magic "Xen saved domain, xl format\n \0 \r"
 *   u32       byte-order marker 0x01020304 (the domain's byte order: x86, little-endian)
 *   u32       mandatory flags: bit 0 config is JSON, bit 1 the stream is v2 (libxl framed);
 *             xl refuses a file with a mandatory flag it does not know
 *   u32       optional flags (none defined; xl's reader ignores them)
 *   u32       length of the optional data
 *   optional data: u32 config length, then the config (libxl's JSON with its
 *             trailing NUL, as `xl list -l` prints it); xl skips anything after it
 *
 * then the libxl stream. Pure: the decoder is fed Buffers of any size and
 * checks every length against its limits before it waits for (and so
 * buffers) the bytes that length announces.
 */
import { ErrorCodes, StreamError, TandemError, type ErrorCode } from '../errors.js';
import { ChunkQueue } from './chunks.js';

export const XL_MAGIC = Buffer.from('Xen saved domain, xl format\n \0 \r', 'latin1');
/** Magic, byte order, mandatory flags, optional flags, optional-data length. */
export const XL_FIXED_SIZE = 48;
export const XL_BYTE_ORDER = 0x01020304;
export const XlMandatoryFlag = { CONFIG_JSON: 1 << 0, STREAM_V2: 1 << 1 } as const;
export const XL_MANDATORY_KNOWN = XlMandatoryFlag.CONFIG_JSON | XlMandatoryFlag.STREAM_V2;
/** The u32 config length that opens the optional data. */
export const XL_CONFIG_LENGTH_SIZE = 4;

/** Field offsets, for errors an operator can find in a hex dump. */
const AT = { byteOrder: 32, mandatory: 36, optionalFlags: 40, optionalLength: 44, configLength: 48, config: 52 } as const;

export interface XlHeaderLimits {
  /** Largest config accepted, NUL included. A libxl domain config is a few KiB. */
  maxConfigBytes: number;
  /** Largest optional data accepted: the config, its length, and room for a tail xl would skip. */
  maxOptionalBytes: number;
}

export const DEFAULT_XL_LIMITS: Readonly<XlHeaderLimits> = {
  maxConfigBytes: 1 << 20,
  maxOptionalBytes: XL_CONFIG_LENGTH_SIZE + (1 << 20) + 4096,
};

export interface XlHeader {
  mandatoryFlags: number;
  optionalFlags: number;
  optionalLength: number;
  /** The config as stored (a JSON config with its trailing NUL); undefined when the optional data is empty. */
  config: Buffer | undefined;
  /** Mandatory flag bit 0: the config is libxl JSON, else xl config-file syntax. */
  configJson: boolean;
  /** Optional data after the config, which xl skips. */
  tailLength: number;
  /** Bytes of the whole header: the libxl stream starts at this offset. */
  size: number;
}

const REC = 'xl header';
const fail = (code: ErrorCode, detail: string, offset: number): never => {
  throw new StreamError(code, detail, { offset, record: REC });
};

/** True if `b` (at least 8 bytes) starts like an xl header: enough to tell it from a libxc or libxl stream. */
export const isXlMagicPrefix = (b: Buffer): boolean => b.length >= 8 && b.subarray(0, 8).equals(XL_MAGIC.subarray(0, 8));

/**
 * Checks a JSON config's bytes: libxl reads it as a C string, so it must end
 * in its NUL and hold no other (the JSON would silently stop there).
 */
function checkJsonConfig(config: Buffer, offset: number): void {
  if (config.length === 0) return;
  const nul = config.indexOf(0);
  if (nul === -1) fail(ErrorCodes.XL_BAD_CONFIG, 'the JSON config does not end in a NUL byte', offset);
  if (nul !== config.length - 1) fail(ErrorCodes.XL_BAD_CONFIG, `the JSON config has a NUL byte at ${nul} of ${config.length}: libxl would read only what precedes it`, offset + nul);
}

interface Fixed {
  mandatoryFlags: number;
  optionalFlags: number;
  optionalLength: number;
}

/**
 * Incremental decoder of one xl header. push() returns the header once its
 * last byte arrives; the bytes after it (the libxl stream) are left for
 * rest(). Stops for good at the first error, like StreamDecoder.
 */
export class XlHeaderDecoder {
  private readonly queue = new ChunkQueue();
  private readonly limits: XlHeaderLimits;
  private fixed: Fixed | undefined;
  private configLengthChecked = false;
  private result: XlHeader | undefined;
  private failure: StreamError | undefined;

  constructor(limits: Partial<XlHeaderLimits> = {}) {
    this.limits = { ...DEFAULT_XL_LIMITS, ...limits };
  }

  get header(): XlHeader | undefined {
    return this.result;
  }

  /** Feeds bytes; returns the header when these bytes complete it (once), else undefined. */
  push(chunk: Buffer): XlHeader | undefined {
    if (this.failure) {
      throw new StreamError(ErrorCodes.STREAM_FAILED, `decoder stopped after an earlier error: ${this.failure.message}`, { offset: this.failure.offset, record: REC }, { cause: this.failure });
    }
    if (this.result) throw new RangeError('the xl header is complete: take the bytes after it with rest()');
    this.queue.push(chunk);
    try {
      return this.step();
    } catch (err) {
      if (err instanceof StreamError) this.failure = err;
      throw err;
    }
  }

  /** Bytes pushed past the header, as views; consumed. */
  rest(): Buffer[] {
    if (!this.result) throw new RangeError('the xl header is not complete');
    return this.queue.take(this.queue.length);
  }

  /** Declares the end of input: throws unless the header is complete. */
  end(): void {
    if (this.failure) throw this.failure;
    if (this.result) return;
    const have = this.fixed ? XL_FIXED_SIZE + this.queue.length : this.queue.length;
    const want = this.fixed ? XL_FIXED_SIZE + this.fixed.optionalLength : XL_FIXED_SIZE;
    this.failure = new StreamError(ErrorCodes.STREAM_TRUNCATED, `input ends after ${have} of the header's ${want} bytes`, { offset: 0, record: REC });
    throw this.failure;
  }

  private step(): XlHeader | undefined {
    if (!this.fixed) {
      // The magic is checked as far as it has arrived, so a stranger's bytes are refused at once.
      const n = Math.min(this.queue.length, XL_MAGIC.length);
      if (n > 0 && !this.queue.peek(n).equals(XL_MAGIC.subarray(0, n))) {
        fail(ErrorCodes.XL_BAD_MAGIC, 'magic is not "Xen saved domain, xl format\\n \\0 \\r" (corrupt, or not an xl save file)', 0);
      }
      if (this.queue.length < XL_FIXED_SIZE) return undefined;
      this.fixed = this.parseFixed(this.queue.takeContiguous(XL_FIXED_SIZE));
    }
    const f = this.fixed;
    if (f.optionalLength >= XL_CONFIG_LENGTH_SIZE && !this.configLengthChecked) {
      // Refuse a bad config length before waiting for the optional data it sits in.
      if (this.queue.length < XL_CONFIG_LENGTH_SIZE) return undefined;
      this.checkConfigLength(this.queue.peek(XL_CONFIG_LENGTH_SIZE).readUInt32LE(0), f.optionalLength);
      this.configLengthChecked = true;
    }
    if (this.queue.length < f.optionalLength) return undefined;
    const optional = this.queue.takeContiguous(f.optionalLength);
    let config: Buffer | undefined;
    let tailLength = 0;
    if (f.optionalLength > 0) {
      const length = optional.readUInt32LE(0);
      // A copy: the header outlives the input chunks, which it must not pin.
      config = Buffer.from(optional.subarray(XL_CONFIG_LENGTH_SIZE, XL_CONFIG_LENGTH_SIZE + length));
      tailLength = f.optionalLength - XL_CONFIG_LENGTH_SIZE - length;
    }
    const configJson = (f.mandatoryFlags & XlMandatoryFlag.CONFIG_JSON) !== 0;
    if (config && configJson) checkJsonConfig(config, AT.config);
    this.result = { ...f, config, configJson, tailLength, size: XL_FIXED_SIZE + f.optionalLength };
    return this.result;
  }

  private parseFixed(b: Buffer): Fixed {
    const order = b.readUInt32LE(AT.byteOrder);
    if (order === 0x04030201) fail(ErrorCodes.XL_BAD_BYTE_ORDER, 'written by a big-endian host; x86 save files are little-endian', AT.byteOrder);
    if (order !== XL_BYTE_ORDER) fail(ErrorCodes.XL_BAD_BYTE_ORDER, `byte-order marker 0x${order.toString(16)}, expected 0x01020304`, AT.byteOrder);
    const mandatoryFlags = b.readUInt32LE(AT.mandatory);
    const unknown = (mandatoryFlags & ~XL_MANDATORY_KNOWN) >>> 0;
    if (unknown !== 0) fail(ErrorCodes.XL_UNKNOWN_MANDATORY_FLAGS, `mandatory flags 0x${unknown.toString(16)} are unknown; xl refuses such a file too`, AT.mandatory);
    if ((mandatoryFlags & XlMandatoryFlag.STREAM_V2) === 0) {
      fail(ErrorCodes.XL_LEGACY_STREAM, 'the stream-v2 flag is clear: a legacy (pre Xen 4.6) stream follows, which Tandem does not read', AT.mandatory);
    }
    const optionalFlags = b.readUInt32LE(AT.optionalFlags);
    const optionalLength = b.readUInt32LE(AT.optionalLength);
    if (optionalLength > this.limits.maxOptionalBytes) {
      fail(ErrorCodes.XL_OPTIONAL_TOO_LARGE, `optional data of ${optionalLength} bytes exceeds the limit of ${this.limits.maxOptionalBytes}`, AT.optionalLength);
    }
    if (optionalLength > 0 && optionalLength < XL_CONFIG_LENGTH_SIZE) {
      fail(ErrorCodes.XL_BAD_OPTIONAL_DATA, `optional data of ${optionalLength} bytes cannot hold the ${XL_CONFIG_LENGTH_SIZE}-byte config length`, AT.optionalLength);
    }
    return { mandatoryFlags, optionalFlags, optionalLength };
  }

  private checkConfigLength(length: number, optionalLength: number): void {
    if (length > this.limits.maxConfigBytes) fail(ErrorCodes.XL_CONFIG_TOO_LARGE, `config of ${length} bytes exceeds the limit of ${this.limits.maxConfigBytes}`, AT.configLength);
    const room = optionalLength - XL_CONFIG_LENGTH_SIZE;
    if (length > room) fail(ErrorCodes.XL_BAD_OPTIONAL_DATA, `config of ${length} bytes overruns the optional data (${room} bytes after its length)`, AT.configLength);
  }
}

/** Decodes a header held whole in `b` (the bytes after it are ignored); throws ERR_STREAM_TRUNCATED if `b` is short. */
export function parseXlHeader(b: Buffer, limits?: Partial<XlHeaderLimits>): XlHeader {
  const d = new XlHeaderDecoder(limits);
  const h = d.push(b);
  if (h) return h;
  d.end();
  throw new Error('unreachable: end() throws for an incomplete header');
}

export interface XlHeaderOptions {
  /**
   * The domain config as libxl's JSON (`xl list -l DOMAIN` prints it), without
   * the NUL: the encoder adds it, as xl does. Absent: no config (then `xl
   * restore` needs a config file on its command line).
   */
  configJson?: string;
}

const badConfig = (code: ErrorCode, detail: string): never => {
  throw new TandemError(code, `xl header: ${detail}`);
};

/** Encodes an xl header as xl writes it: mandatory flags 3 (2 without a config), no optional flags, the config and nothing after it. */
export function encodeXlHeader(options: XlHeaderOptions = {}, limits: Partial<XlHeaderLimits> = {}): Buffer {
  const max = { ...DEFAULT_XL_LIMITS, ...limits };
  let config = Buffer.alloc(0);
  if (options.configJson !== undefined) {
    const text = options.configJson;
    if (text.includes('\0')) badConfig(ErrorCodes.XL_BAD_CONFIG, 'the config JSON contains a NUL character');
    // Checked before the JSON is parsed or copied: a caller's mistake must not cost a huge parse.
    const bytes = Buffer.byteLength(text, 'utf8') + 1;
    if (bytes > max.maxConfigBytes) badConfig(ErrorCodes.XL_CONFIG_TOO_LARGE, `config of ${bytes} bytes exceeds the limit of ${max.maxConfigBytes}`);
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (err) {
      throw new TandemError(ErrorCodes.XL_BAD_CONFIG, `xl header: the config is not JSON: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
    // libxl_domain_config_from_json wants an object (c_info, b_info, devices).
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) badConfig(ErrorCodes.XL_BAD_CONFIG, 'the config JSON is not an object');
    config = Buffer.alloc(bytes);
    config.write(text, 0, 'utf8'); // the last byte stays 0: the NUL
  }
  const optionalLength = XL_CONFIG_LENGTH_SIZE + config.length;
  const b = Buffer.alloc(XL_FIXED_SIZE + optionalLength);
  XL_MAGIC.copy(b, 0);
  b.writeUInt32LE(XL_BYTE_ORDER, AT.byteOrder);
  b.writeUInt32LE(XlMandatoryFlag.STREAM_V2 | (config.length > 0 ? XlMandatoryFlag.CONFIG_JSON : 0), AT.mandatory);
  b.writeUInt32LE(0, AT.optionalFlags);
  b.writeUInt32LE(optionalLength, AT.optionalLength);
  // xl writes the config length even when it is 0.
  b.writeUInt32LE(config.length, AT.configLength);
  config.copy(b, AT.config);
  return b;
}
