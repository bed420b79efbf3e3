/**
 * libxc's save loop for a domain whose memory Tandem reads itself (the
 * sim): what Xen's libxenguest does inside libxl-save-helper for a real
 * domain, in the same order and with the same callbacks.
 *
 *   headers and static data
 *   plain:   suspend, every page, end-of-checkpoint state, END
 *   checkpointed: live rounds (every page, then what was dirtied, until the
 *            precopy policy says stop); then per checkpoint: suspend, copy
 *            the dirty pages into the staging buffer and capture the vCPU
 *            state, postcopy (the pause ends here for Remus), write the
 *            records, CHECKPOINT, the checkpoint callback
 *
 * The guest is paused only for the memory copy, never for the transfer:
 * records are written after postcopy, from the staging buffer.
 */
import { CheckpointError, CheckpointErrorCodes } from '../checkpoint/errors.js';
import { StreamEncoder } from '../stream/encoder.js';
import { PageType } from '../stream/format.js';
import { PageCache } from './page-cache.js';
import { PageCompressor } from './page-compressor.js';
import { StagingBuffer } from './staging.js';
import type { LibxcEpochStats, LibxcOutput, LibxcSaver, PageCompressionParameters, PageDomain, PlatformContext, SaveCallbacks, SaveParameters } from './types.js';

export interface PageSaverOptions {
  /** Pages per PAGE_DATA record; Xen batches 1024. */
  recordPages?: number;
  /** Pages sent between flushes in a live round: the guest runs between batches. */
  liveBatchPages?: number;
  /** The Xen version the domain header names. */
  xenMajor?: number;
  xenMinor?: number;
}

export const DEFAULT_RECORD_PAGES = 1024;
export const DEFAULT_LIVE_BATCH_PAGES = 1024;

export class PageSaver implements LibxcSaver {
  private readonly staging = new StagingBuffer();

  constructor(
    private readonly domain: PageDomain,
    private readonly options: PageSaverOptions = {},
  ) {}

  async save(out: LibxcOutput, params: SaveParameters, callbacks: SaveCallbacks): Promise<void> {
    const enc = new StreamEncoder('libxc');
    this.headers(out, enc, params.version);
    if (params.type === 'plain') return this.plain(out, enc, callbacks);
    // COLO's secondary runs its guest on the replica's RAM between checkpoints: no page there is a base both sides know.
    const compression = params.type === 'remus' ? params.compression : undefined;
    // One cache per stream: a new stream's secondary is synced afresh, and nothing this one learnt carries over.
    const packer: Packer | undefined = compression === undefined ? undefined : { params: compression, compressor: new PageCompressor(new PageCache(compression.cachePages)), checkpoints: 0 };
    this.domain.enableLogDirty();
    try {
      const carried = await this.live(out, enc, callbacks);
      // Pages of the last live round still queued are views of guest RAM:
      // they must be out before the guest resumes after the checkpoint, or
      // writes after it would reach the secondary as part of epoch 1.
      await out.flushed();
      let more = await this.checkpoint(out, enc, callbacks, carried, packer);
      while (more) {
        // The last checkpoint's records are views of the staging buffer the next one reuses.
        await out.flushed();
        more = await this.checkpoint(out, enc, callbacks, undefined, packer);
      }
      // After a COLO checkpoint only libxl may speak (StreamLayout): the libxc layer ends without END.
      if (params.type !== 'colo') out.write(enc.record({ layer: 'libxc', type: 'END' }));
      await out.flush();
    } finally {
      this.domain.disableLogDirty();
    }
  }

  private headers(out: LibxcOutput, enc: StreamEncoder, version: 2 | 3): void {
    out.write(enc.imageHeader(version));
    out.write(enc.domainHeader({ type: this.domain.info.type, pageShift: 12, xenMajor: this.options.xenMajor ?? 4, xenMinor: this.options.xenMinor ?? 17 }));
    if (version >= 3) {
      out.write(enc.record({ layer: 'libxc', type: 'X86_CPUID_POLICY', leaves: this.domain.cpuidPolicy() }));
      out.write(enc.record({ layer: 'libxc', type: 'X86_MSR_POLICY', msrs: this.domain.msrPolicy() }));
      out.write(enc.record({ layer: 'libxc', type: 'STATIC_DATA_END' }));
    }
  }

  /** xl save: the guest stays suspended (the caller decides what becomes of it); pages are views of its RAM. */
  private async plain(out: LibxcOutput, enc: StreamEncoder, callbacks: SaveCallbacks): Promise<void> {
    await callbacks.suspend();
    await this.sendLive(out, enc, allPfns(this.domain.info.pages));
    this.endOfCheckpoint(out, enc, this.domain.platformContext());
    out.write(enc.record({ layer: 'libxc', type: 'END' }));
    await out.flush();
  }

  /** Live rounds until the policy stops them; the pages dirtied in the last one, for the first checkpoint. */
  private async live(out: LibxcOutput, enc: StreamEncoder, callbacks: SaveCallbacks): Promise<Uint32Array> {
    let toSend = allPfns(this.domain.info.pages);
    for (let iteration = 1; ; iteration++) {
      await this.sendLive(out, enc, toSend, (sent) => callbacks.precopyProgress?.({ iteration, sent, total: toSend.length }));
      const dirty = this.domain.readAndClearDirty();
      const decision = callbacks.precopyPolicy({ iteration, sentLast: toSend.length, dirtyCount: dirty.length });
      if (decision === 'abort') throw new CheckpointError(CheckpointErrorCodes.PRECOPY_ABORTED, `pre-copy aborted by the precopy policy after ${iteration} rounds`);
      if (decision === 'stop-and-copy') return dirty;
      toSend = dirty;
    }
  }

  /** Pages as they are now, batch by batch, flushed between batches (the guest runs meanwhile; the dirty log catches it). */
  private async sendLive(out: LibxcOutput, enc: StreamEncoder, pfns: Uint32Array, progress?: (sent: number) => void): Promise<void> {
    const batch = this.options.liveBatchPages ?? DEFAULT_LIVE_BATCH_PAGES;
    for (let i = 0; i < pfns.length; i += batch) {
      const slice = pfns.subarray(i, i + batch);
      this.pageRecords(out, enc, slice, (k) => this.domain.readPage(slice[k]));
      await out.flush();
      progress?.(i + slice.length);
    }
  }

  /** One checkpoint; the checkpoint callback's answer (another one?). */
  private async checkpoint(out: LibxcOutput, enc: StreamEncoder, callbacks: SaveCallbacks, carried: Uint32Array | undefined, packer: Packer | undefined): Promise<boolean> {
    let pfns: Uint32Array;
    let ctx: PlatformContext;
    await callbacks.suspend();
    try {
      const extra = await callbacks.secondaryDirtyPages?.();
      pfns = this.domain.readAndClearDirty();
      if (carried !== undefined) pfns = mergeSorted(carried, pfns);
      if (extra !== undefined && extra.length > 0) pfns = mergeSorted(pfns, extra);
      this.domain.copyPages(pfns, pfns.length, this.staging.reserve(pfns.length));
      ctx = this.domain.platformContext();
    } finally {
      await callbacks.postcopy();
    }
    const stats: LibxcEpochStats = { pages: pfns.length };
    if (packer === undefined) this.pageRecords(out, enc, pfns, (i) => this.staging.page(i));
    else stats.compression = this.packedRecords(out, enc, pfns, packer);
    this.endOfCheckpoint(out, enc, ctx);
    out.write(enc.record({ layer: 'libxc', type: 'CHECKPOINT' }));
    if (packer === undefined) return callbacks.checkpoint(stats);
    const { cache } = packer.compressor;
    let more: boolean;
    try {
      more = await callbacks.checkpoint(stats);
    } catch (err) {
      // Whether the secondary applied this epoch is unknown: none of its pages may be a base again.
      cache.discard();
      throw err;
    }
    // The secondary holds the epoch, and the staging buffer still holds its pages (the next epoch has not been staged).
    cache.commit();
    return more;
  }

  /**
   * A checkpoint's pages where compression is configured: as
   * TANDEM_PAGE_XBZRLE once enabled, else as PAGE_DATA; either way staged
   * in the cache, which then holds what the secondary holds.
   */
  private packedRecords(out: LibxcOutput, enc: StreamEncoder, pfns: Uint32Array, packer: Packer): LibxcEpochStats['compression'] {
    const { compressor } = packer;
    packer.checkpoints++;
    const enabled = !packer.off && packer.params.enabled();
    if (!enabled && !packer.off && packer.checkpoints > 1) {
      // Epoch 1 is held and nothing was offered: nothing will be, on this stream. The cache goes.
      packer.off = true;
      compressor.cache.clear();
    }
    if (!enabled) {
      // Epoch 1 (as PAGE_DATA) is cached all the same: it is what the secondary holds when compression starts.
      if (!packer.off) for (let i = 0; i < pfns.length; i++) compressor.cache.stage(pfns[i], this.staging.page(i));
      this.pageRecords(out, enc, pfns, (i) => this.staging.page(i));
      return undefined;
    }
    compressor.beginEpoch(pfns.length);
    for (const { slice, pages } of this.batches(pfns, (i) => this.staging.page(i))) out.write(enc.record(compressor.record(slice, pages)));
    return compressor.stats;
  }

  /** PAGE_DATA records for `pfns`; `pageAt(i)` gives the data of `pfns[i]`. */
  private pageRecords(out: LibxcOutput, enc: StreamEncoder, pfns: Uint32Array, pageAt: (i: number) => Buffer): void {
    for (const { slice, pages } of this.batches(pfns, pageAt)) {
      out.write(enc.record({ layer: 'libxc', type: 'PAGE_DATA', pfns: slice, types: new Array<number>(slice.length).fill(PageType.NOTAB), pages }));
    }
  }

  /** `pfns` and their data in record-sized batches (recordPages each, the last one shorter). */
  private *batches(pfns: Uint32Array, pageAt: (i: number) => Buffer): Generator<{ slice: number[]; pages: Buffer[] }> {
    const per = this.options.recordPages ?? DEFAULT_RECORD_PAGES;
    for (let i = 0; i < pfns.length; i += per) {
      const n = Math.min(per, pfns.length - i);
      const slice = new Array<number>(n);
      const pages = new Array<Buffer>(n);
      for (let k = 0; k < n; k++) {
        slice[k] = pfns[i + k];
        pages[k] = pageAt(i + k);
      }
      yield { slice, pages };
    }
  }

  /**
   * vCPU and platform state that closes a consistent snapshot. The spec's
   * order: "HVM_PARAMS must precede HVM_CONTEXT" (Xen 4.17's own saver
   * writes them the other way round; its restore accepts both).
   */
  private endOfCheckpoint(out: LibxcOutput, enc: StreamEncoder, ctx: PlatformContext): void {
    out.write(enc.record({ layer: 'libxc', type: 'X86_TSC_INFO', ...ctx.tsc }));
    out.write(enc.record({ layer: 'libxc', type: 'HVM_PARAMS', params: ctx.hvmParams }));
    out.write(enc.record({ layer: 'libxc', type: 'HVM_CONTEXT', data: ctx.hvmContext }));
  }
}

/** A stream's compression: what it was asked for, and its compressor (with the cache). */
interface Packer {
  params: PageCompressionParameters;
  compressor: PageCompressor;
  /** Checkpoints of this stream so far. */
  checkpoints: number;
  /** Not offered by the time epoch 1 was held: plain PAGE_DATA for the rest of the stream, and no cache. */
  off?: boolean;
}

function allPfns(pages: number): Uint32Array {
  const all = new Uint32Array(pages);
  for (let i = 0; i < pages; i++) all[i] = i;
  return all;
}

/** Union of two ascending pfn lists, ascending, without duplicates. */
function mergeSorted(a: Uint32Array, b: Uint32Array): Uint32Array {
  const out = new Uint32Array(a.length + b.length);
  let i = 0;
  let j = 0;
  let n = 0;
  while (i < a.length || j < b.length) {
    const x = j >= b.length || (i < a.length && a[i] < b[j]) ? a[i++] : b[j++];
    if (n === 0 || out[n - 1] !== x) out[n++] = x;
  }
  return out.subarray(0, n);
}
