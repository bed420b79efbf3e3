/**
 * The three fixed headers: libxc image header (24 bytes, always big-endian),
 * libxc domain header (16 bytes, stream endianness) and libxl header
 * (16 bytes, always big-endian).
 */
import { ErrorCodes, StreamError } from '../errors.js';
import {
  DOMAIN_HEADER_SIZE,
  DomainType,
  IHDR_IDENT,
  IHDR_OPT_BIG_ENDIAN,
  IHDR_OPT_RESERVED_MASK,
  IMAGE_HEADER_SIZE,
  LIBXL_HEADER_SIZE,
  LIBXL_IDENT,
  LIBXL_OPT_BIG_ENDIAN,
  LIBXL_OPT_LEGACY,
  LIBXL_OPT_RESERVED_MASK,
  LIBXL_VERSION,
  PAGE_SHIFT,
} from './format.js';

export interface ImageHeader {
  version: 2 | 3;
}
export interface DomainHeader {
  type: number;
  pageShift: number;
  xenMajor: number;
  xenMinor: number;
}
export interface LibxlHeader {
  version: number;
  /** Set by Xen's legacy conversion tool. */
  legacy: boolean;
}

export function encodeImageHeader(h: ImageHeader): Buffer {
  const b = Buffer.alloc(IMAGE_HEADER_SIZE);
  b.fill(0xff, 0, 8);
  b.writeUInt32BE(IHDR_IDENT, 8);
  b.writeUInt32BE(h.version, 12);
  // options (u16) = 0: little-endian; reserved u16 + u32 stay zero.
  return b;
}

export function encodeDomainHeader(h: DomainHeader): Buffer {
  const b = Buffer.alloc(DOMAIN_HEADER_SIZE);
  b.writeUInt32LE(h.type, 0);
  b.writeUInt16LE(h.pageShift, 4);
  b.writeUInt32LE(h.xenMajor, 8);
  b.writeUInt32LE(h.xenMinor, 12);
  return b;
}

export function encodeLibxlHeader(): Buffer {
  const b = Buffer.alloc(LIBXL_HEADER_SIZE);
  LIBXL_IDENT.copy(b, 0);
  b.writeUInt32BE(LIBXL_VERSION, 8);
  b.writeUInt32BE(0, 12);
  return b;
}

const bad = (code: (typeof ErrorCodes)[keyof typeof ErrorCodes], detail: string, offset: number, record: string): never => {
  throw new StreamError(code, detail, { offset, record });
};

/** True if the 8 bytes are the image header marker (all ones). */
export const isImageMarker = (b: Buffer): boolean => b.readUInt32BE(0) === 0xffffffff && b.readUInt32BE(4) === 0xffffffff;
export const isLibxlIdent = (b: Buffer): boolean => b.subarray(0, 8).equals(LIBXL_IDENT);

export function parseImageHeader(b: Buffer, offset: number): ImageHeader {
  const rec = 'libxc image header';
  if (!isImageMarker(b)) bad(ErrorCodes.STREAM_BAD_MARKER, 'marker is not 0xFFFFFFFFFFFFFFFF (a legacy image, or not a Xen stream)', offset, rec);
  const ident = b.readUInt32BE(8);
  if (ident !== IHDR_IDENT) bad(ErrorCodes.STREAM_BAD_IDENT, `id 0x${ident.toString(16)}, expected 0x58454e46 ("XENF")`, offset, rec);
  const version = b.readUInt32BE(12);
  if (version !== 2 && version !== 3) bad(ErrorCodes.STREAM_BAD_VERSION, `version ${version}, expected 2 or 3`, offset, rec);
  const options = b.readUInt16BE(16);
  if (options & IHDR_OPT_RESERVED_MASK) bad(ErrorCodes.STREAM_BAD_OPTIONS, `reserved option bits set: 0x${options.toString(16)}`, offset, rec);
  if (options & IHDR_OPT_BIG_ENDIAN) bad(ErrorCodes.STREAM_BAD_OPTIONS, 'big-endian stream; x86 streams are little-endian', offset, rec);
  if (b.readUInt16BE(18) !== 0 || b.readUInt32BE(20) !== 0) bad(ErrorCodes.STREAM_RESERVED_NONZERO, 'reserved field is not zero', offset, rec);
  return { version: version as 2 | 3 };
}

export function parseDomainHeader(b: Buffer, offset: number): DomainHeader {
  const rec = 'libxc domain header';
  const type = b.readUInt32LE(0);
  if (type !== DomainType.X86_PV && type !== DomainType.X86_HVM) bad(ErrorCodes.STREAM_BAD_DOMAIN_TYPE, `domain type 0x${type.toString(16)}, expected 1 (x86 PV) or 2 (x86 HVM)`, offset, rec);
  const pageShift = b.readUInt16LE(4);
  if (pageShift !== PAGE_SHIFT) bad(ErrorCodes.STREAM_BAD_PAGE_SHIFT, `page shift ${pageShift}, expected ${PAGE_SHIFT}`, offset, rec);
  if (b.readUInt16LE(6) !== 0) bad(ErrorCodes.STREAM_RESERVED_NONZERO, 'reserved field is not zero', offset, rec);
  return { type, pageShift, xenMajor: b.readUInt32LE(8), xenMinor: b.readUInt32LE(12) };
}

export function parseLibxlHeader(b: Buffer, offset: number): LibxlHeader {
  const rec = 'libxl header';
  if (!isLibxlIdent(b)) bad(ErrorCodes.STREAM_BAD_IDENT, 'ident is not "LibxlFmt"', offset, rec);
  const version = b.readUInt32BE(8);
  if (version !== LIBXL_VERSION) bad(ErrorCodes.STREAM_BAD_VERSION, `version ${version}, expected ${LIBXL_VERSION}`, offset, rec);
  const options = b.readUInt32BE(12);
  if ((options & LIBXL_OPT_RESERVED_MASK) >>> 0) bad(ErrorCodes.STREAM_BAD_OPTIONS, `reserved option bits set: 0x${options.toString(16)}`, offset, rec);
  if (options & LIBXL_OPT_BIG_ENDIAN) bad(ErrorCodes.STREAM_BAD_OPTIONS, 'big-endian stream; x86 streams are little-endian', offset, rec);
  return { version, legacy: (options & LIBXL_OPT_LEGACY) !== 0 };
}
