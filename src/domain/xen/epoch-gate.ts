/**
 * Lets only whole, valid checkpoints through to Xen's restore. Fed the raw
 * bytes of an xl-framed Remus stream in any chunking, it decodes them with
 * Tandem's own reader (which checks every record) and hands on raw bytes:
 *
 * - before checkpoint 1 (xl header, libxl header, the pre-copy: the whole of
 *   RAM), every record as soon as it is whole and valid, as Xen's own
 *   restore takes them: until that checkpoint there is nothing to fail over
 *   to anyway, and holding the whole of RAM here would double the memory;
 * - after it, each epoch whole, once its CHECKPOINT_END has arrived, from
 *   the end of the previous checkpoint through the next. A torn or invalid
 *   epoch is never handed on: Xen then fails over from the last checkpoint
 *   it was given, whatever came after.
 *
 * Pure: chunks in, epochs out (views of the input, never copies: an epoch
 * boundary inside a chunk splits it into two views). It stops
 * for good at the first error, as the reader does; `failure` says why.
 */
import { ImageReader, type ImageItem } from '../../stream/image-reader.js';
import type { DecoderLimits } from '../../stream/decoder.js';
import { summarizeXlConfig } from '../../stream/xl-config.js';

export interface GatedEpoch {
  /** The checkpoint these bytes complete; 0: part of the stream before checkpoint 1 (valid records, no checkpoint yet). */
  checkpoint: number;
  chunks: Buffer[];
  bytes: number;
}

export class EpochGate {
  private readonly reader: ImageReader;
  /** Raw bytes of the epoch in progress, from `heldFrom` on. */
  private held: Buffer[] = [];
  private heldFrom = 0;
  private checkpoints = 0;
  private error: Error | undefined;

  constructor(limits?: Partial<DecoderLimits>) {
    this.reader = new ImageReader({ endAtCheckpoint: true, limits });
  }

  /** The checkpoints handed on so far. */
  get complete(): number {
    return this.checkpoints;
  }

  get failure(): Error | undefined {
    return this.error;
  }

  /** The domain's name, from the xl header's config (once read; undefined without one). */
  get domainName(): string | undefined {
    const header = this.reader.header;
    if (header === undefined) return undefined;
    const s = summarizeXlConfig(header);
    return s.format === 'json' && s.valid ? s.name : undefined;
  }

  /** Feeds `chunk`; returns the epochs it completed (none after a failure). */
  push(chunk: Buffer): GatedEpoch[] {
    if (this.error !== undefined) return [];
    this.held.push(chunk);
    const items: ImageItem[] = [];
    try {
      this.reader.push(chunk, items);
    } catch (err) {
      this.error = err instanceof Error ? err : new Error(String(err));
    }
    const out: GatedEpoch[] = [];
    for (const item of items) {
      if (item.kind === 'record' && item.record.layer === 'libxl' && item.record.type === 'CHECKPOINT_END') out.push(this.cut(item.end, true));
    }
    // Before checkpoint 1, whatever is whole and valid goes on at once.
    const last = items.at(-1);
    if (this.checkpoints === 0 && last !== undefined && last.end > this.heldFrom) out.push(this.cut(last.end, false));
    return out;
  }

  /** The input ended: true if it ended right after a checkpoint (nothing torn), else why not. */
  end(): { clean: true } | { clean: false; reason: string } {
    if (this.error !== undefined) return { clean: false, reason: this.error.message };
    try {
      this.reader.end();
      return { clean: true };
    } catch (err) {
      this.error = err instanceof Error ? err : new Error(String(err));
      return { clean: false, reason: this.error.message };
    }
  }

  /** Hands on the held bytes up to stream offset `end` (completing a checkpoint or not); the rest stays held. */
  private cut(end: number, checkpoint: boolean): GatedEpoch {
    const chunks: Buffer[] = [];
    let at = this.heldFrom;
    let rest: Buffer[] = [];
    for (let i = 0; i < this.held.length; i++) {
      const c = this.held[i];
      const cEnd = at + c.length;
      if (cEnd <= end) chunks.push(c);
      else {
        // The boundary falls inside this chunk: the epoch gets its head, the rest stays held.
        if (at < end) chunks.push(c.subarray(0, end - at));
        rest = [c.subarray(Math.max(0, end - at)), ...this.held.slice(i + 1)];
        break;
      }
      at = cEnd;
    }
    const bytes = end - this.heldFrom;
    this.held = rest.filter((c) => c.length > 0);
    this.heldFrom = end;
    if (checkpoint) this.checkpoints++;
    return { checkpoint: checkpoint ? this.checkpoints : 0, chunks, bytes };
  }
}
