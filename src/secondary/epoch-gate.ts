/**
 * Lets only whole, valid checkpoints through to a hypervisor's restore
 * (Xen's). Fed the raw bytes of a Remus stream (xl-framed, as a file, or
 * bare libxl, as the wire carries it) in any chunking, it decodes them with
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
 * Records the caller strips (Tandem's own) are checked, shown to it, and
 * cut out of what is handed on.
 *
 * Pure: chunks in, epochs out (views of the input, never copies: an epoch
 * boundary inside a chunk splits it into two views). It stops
 * for good at the first error, as the reader does; `failure` says why.
 */
import { ImageReader, type ImageItem } from '../stream/image-reader.js';
import type { DecoderLimits } from '../stream/decoder.js';
import { summarizeXlConfig } from '../stream/xl-config.js';

export interface GatedEpoch {
  /** The checkpoint these bytes complete; 0: part of the stream before checkpoint 1 (valid records, no checkpoint yet). */
  checkpoint: number;
  chunks: Buffer[];
  bytes: number;
  /** Guest pages in these bytes' PAGE_DATA records. */
  pages: number;
}

export interface EpochGateOptions {
  limits?: Partial<DecoderLimits>;
  /**
   * Records to take out of what is handed on (Tandem's own, which Xen's
   * restore does not know), each shown to the caller first. They are still
   * decoded and checked.
   */
  strip?: (item: ImageItem & { kind: 'record' }) => boolean;
}

export class EpochGate {
  private readonly reader: ImageReader;
  /** Raw bytes not yet sorted (from `heldFrom` on), and those of the epoch in progress that go on. */
  private held: Buffer[] = [];
  private heldFrom = 0;
  private kept: Buffer[] = [];
  private keptBytes = 0;
  private keptPages = 0;
  private checkpoints = 0;
  private error: Error | undefined;

  constructor(private readonly options: EpochGateOptions = {}) {
    this.reader = new ImageReader({ endAtCheckpoint: true, limits: options.limits });
  }

  /** The checkpoints handed on so far. */
  get complete(): number {
    return this.checkpoints;
  }

  get failure(): Error | undefined {
    return this.error;
  }

  /** Bytes of the epoch in progress held here (what a torn epoch would lose). */
  get heldBytes(): number {
    return this.keptBytes + this.held.reduce((n, c) => n + c.length, 0);
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
      if (item.kind !== 'record') continue;
      const rec = item.record;
      if (this.options.strip?.(item) === true) {
        this.take(item.offset, true);
        this.take(item.end, false);
        continue;
      }
      if (rec.layer === 'libxc' && rec.type === 'PAGE_DATA') this.keptPages += rec.pfns.length;
      if (rec.layer === 'libxl' && rec.type === 'CHECKPOINT_END') {
        this.take(item.end, true);
        out.push(this.handOn(true));
      }
    }
    // Before checkpoint 1, whatever is whole and valid goes on at once.
    const last = items.at(-1);
    if (this.checkpoints === 0 && last !== undefined) {
      if (last.end > this.heldFrom) this.take(last.end, true);
      if (this.keptBytes > 0) out.push(this.handOn(false));
    }
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

  /** Moves the held bytes up to stream offset `end` to the epoch in progress (keep) or drops them; the rest stays held. */
  private take(end: number, keep: boolean): void {
    let at = this.heldFrom;
    let rest: Buffer[] = [];
    for (let i = 0; i < this.held.length; i++) {
      const c = this.held[i];
      const cEnd = at + c.length;
      if (cEnd <= end) {
        if (keep) this.kept.push(c);
      } else {
        // The boundary falls inside this chunk: its head is taken, the rest stays held.
        if (at < end && keep) this.kept.push(c.subarray(0, end - at));
        rest = [c.subarray(Math.max(0, end - at)), ...this.held.slice(i + 1)];
        break;
      }
      at = cEnd;
    }
    if (keep) this.keptBytes += end - this.heldFrom;
    this.held = rest.filter((c) => c.length > 0);
    this.heldFrom = end;
  }

  private handOn(checkpoint: boolean): GatedEpoch {
    if (checkpoint) this.checkpoints++;
    const epoch: GatedEpoch = { checkpoint: checkpoint ? this.checkpoints : 0, chunks: this.kept, bytes: this.keptBytes, pages: this.keptPages };
    this.kept = [];
    this.keptBytes = 0;
    this.keptPages = 0;
    return epoch;
  }
}
