/**
 * Wraps a libxl v2 stream in an xl header: the bytes of an `xl save` file
 * (what `xl restore` and `verify-stream-v2 -f xl` read), or of the stream
 * `xl migrate-receive` expects on its stdin. Pure: chunks in, chunks out; the
 * stream's chunks are passed on by reference.
 */
import { ErrorCodes, TandemError } from '../errors.js';
import { LIBXL_IDENT } from './format.js';
import { encodeXlHeader, type XlHeaderLimits, type XlHeaderOptions } from './xl-header.js';

/** The first `n` bytes of `chunks` (fewer if they hold fewer), copied. */
function head(chunks: readonly Buffer[], n: number): Buffer {
  const out: Buffer[] = [];
  let have = 0;
  for (const c of chunks) {
    if (have >= n) break;
    const part = c.subarray(0, n - have);
    out.push(part);
    have += part.length;
  }
  return Buffer.concat(out, have);
}

/**
 * The xl header for `options.configJson`, then `stream`. The header's
 * stream-v2 flag promises a libxl stream, so a stream that does not open with
 * the libxl header ("LibxlFmt") is refused rather than wrapped into a file
 * `xl restore` cannot read. Only the opening is checked here: the stream's
 * own writer (StreamEncoder) guarantees the rest.
 */
export function wrapInXlSaveFile(stream: readonly Buffer[], options: XlHeaderOptions = {}, limits?: Partial<XlHeaderLimits>): Buffer[] {
  const opening = head(stream, LIBXL_IDENT.length);
  if (!opening.equals(LIBXL_IDENT)) {
    const what = opening.length === 0 ? 'this one is empty' : `this one opens with 0x${opening.toString('hex')}`;
    throw new TandemError(ErrorCodes.STREAM_UNKNOWN_FORMAT, `an xl save file carries a libxl stream, which opens with "LibxlFmt"; ${what}`);
  }
  return [encodeXlHeader(options, limits), ...stream];
}
