/**
 * TANDEM_PRIMARY (libxl layer, optional type 0x80005403): the first record
 * of a replication stream, right after the libxl header, saying which
 * generation of primary sends it. The secondary reads it before the stream
 * touches anything: a stream from a primary older than the newest one it
 * knows of (a superseded node, or a stale process of a node that restarted)
 * is refused, and only a stream of the current or a newer generation may
 * replace the one in progress. Body (little endian, like every stream field):
 *
 *   0  u64 generation    1..2^53-1 (heartbeat generations are exact doubles)
 *   8  u64 reserved      zero
 */
import { ErrorCodes, StreamError } from '../errors.js';

export const PRIMARY_RECORD_BYTES = 16;
const RECORD = 'libxl TANDEM_PRIMARY';

export function encodePrimaryRecord(generation: number): Buffer {
  if (!Number.isSafeInteger(generation) || generation < 1) throw new RangeError(`generation ${generation} is not in 1..2^53-1`);
  const body = Buffer.alloc(PRIMARY_RECORD_BYTES);
  body.writeBigUInt64LE(BigInt(generation), 0);
  return body;
}

/** The generation a TANDEM_PRIMARY body names, checked. */
export function parsePrimaryRecord(body: Buffer, site: { offset: number }): number {
  const fail = (code: (typeof ErrorCodes)[keyof typeof ErrorCodes], detail: string): never => {
    throw new StreamError(code, detail, { offset: site.offset, record: RECORD });
  };
  if (body.length !== PRIMARY_RECORD_BYTES) fail(ErrorCodes.RECORD_BAD_LENGTH, `body length ${body.length}, expected ${PRIMARY_RECORD_BYTES}`);
  const generation = body.readBigUInt64LE(0);
  if (generation < 1n || generation > BigInt(Number.MAX_SAFE_INTEGER)) fail(ErrorCodes.RECORD_BAD_FIELD, `generation ${generation} is not in 1..2^53-1`);
  if (body.readBigUInt64LE(8) !== 0n) fail(ErrorCodes.RECORD_RESERVED_NONZERO, 'reserved field is not zero');
  return Number(generation);
}
