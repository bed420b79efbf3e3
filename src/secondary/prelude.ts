/**
 * The opening of a replication stream, read before the stream may touch the
 * replica: the libxl header, then TANDEM_PRIMARY naming the sender's
 * generation (docs/stream.md). Pure: fed the connection's first chunks, it
 * says "more", or the generation and every byte so far (the session then
 * decodes the stream from its first byte, as if nothing had been read), or
 * throws a StreamError. At most PRELUDE_MAX_BYTES are looked at: a
 * connection that has not said who it is by then is not a primary.
 */
import { ErrorCodes, StreamError } from '../errors.js';
import { StreamDecoder, type StreamItem } from '../stream/decoder.js';
import { TandemType } from '../stream/format.js';
import { PRIMARY_RECORD_BYTES, parsePrimaryRecord } from '../stream/primary-record.js';

/** The libxl header (16), then the record header (8) and TANDEM_PRIMARY's body: anything longer is not a prelude. */
export const PRELUDE_MAX_BYTES = 16 + 8 + PRIMARY_RECORD_BYTES;

export type PreludeResult = { done: false } | { done: true; generation: number; chunks: Buffer[] };

export class PreludeReader {
  private readonly decoder = new StreamDecoder({ format: 'libxl', limits: { maxPfn: 0, maxRecordBytes: PRIMARY_RECORD_BYTES } });
  private readonly chunks: Buffer[] = [];
  private bytes = 0;
  private readonly items: StreamItem[] = [];

  /** Feeds the connection's next chunk; throws a StreamError when the opening is not a primary's. */
  push(chunk: Buffer): PreludeResult {
    // Only the prelude's bytes go to the decoder: what follows is the session's to judge.
    const room = PRELUDE_MAX_BYTES - this.bytes;
    this.chunks.push(chunk);
    this.bytes += chunk.length;
    if (room > 0) this.decoder.push(chunk.subarray(0, room), this.items);
    const record = this.items.find((i) => i.kind === 'record');
    if (record === undefined) {
      if (this.bytes >= PRELUDE_MAX_BYTES) this.notAPrimary(this.items.length > 0 ? 16 : 0);
      return { done: false };
    }
    const rec = record.record;
    if (rec.layer !== 'libxl' || rec.type !== 'OPTIONAL' || rec.code !== TandemType.TANDEM_PRIMARY) this.notAPrimary(record.offset);
    const generation = parsePrimaryRecord((rec as { data: Buffer }).data, { offset: record.offset });
    return { done: true, generation, chunks: this.chunks };
  }

  private notAPrimary(offset: number): never {
    throw new StreamError(ErrorCodes.STREAM_NOT_A_PRIMARY, 'the stream does not open with TANDEM_PRIMARY: a Tandem primary names its generation first', { offset, record: 'libxl TANDEM_PRIMARY' });
  }
}
