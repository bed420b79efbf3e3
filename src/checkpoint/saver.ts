/**
 * Writes a domain as a migration stream, in the order Xen's save code does:
 * libxl header and LIBXC_CONTEXT; libxc headers and static data; per epoch
 * the pages, then end-of-checkpoint state and CHECKPOINT, then libxl's
 * emulator records and CHECKPOINT_END; finally libxc END and libxl END.
 *
 * The saver only encodes; the caller decides when the guest is paused and
 * which pages to send. Chunks go to a sink in order; page data is passed by
 * reference (the sink must consume it before the guest runs again).
 */
import type { Domain } from '../domain/types.js';
import { StreamEncoder } from '../stream/encoder.js';
import { PageType } from '../stream/format.js';
import type { Framing } from '../stream/layout.js';

export type ChunkSink = (chunks: Buffer[]) => void;

export interface SaverOptions {
  framing: Framing;
  /** libxc stream version: 3 (Xen 4.14+) carries CPUID/MSR policy and STATIC_DATA_END. */
  version: 2 | 3;
  xenMajor?: number;
  xenMinor?: number;
  /** Pages per PAGE_DATA record; Xen batches 1024. */
  batchPages?: number;
}

export interface SentPages {
  pages: number;
  bytes: number;
}

export class StreamSaver {
  private readonly encoder: StreamEncoder;
  private readonly batch: number;
  private checkpoints = 0;

  constructor(
    private readonly domain: Domain,
    private readonly options: SaverOptions,
    private readonly sink: ChunkSink,
  ) {
    this.encoder = new StreamEncoder(options.framing);
    this.batch = options.batchPages ?? 1024;
  }

  /** Bytes written so far. */
  get position(): number {
    return this.encoder.position;
  }

  /** Stream and libxc headers, then static data. */
  start(): void {
    const { framing, version } = this.options;
    if (framing === 'libxl') {
      this.sink(this.encoder.libxlHeader());
      this.sink(this.encoder.record({ layer: 'libxl', type: 'LIBXC_CONTEXT' }));
    }
    this.sink(this.encoder.imageHeader(version));
    this.sink(
      this.encoder.domainHeader({
        type: this.domain.info.type,
        pageShift: 12,
        xenMajor: this.options.xenMajor ?? 4,
        xenMinor: this.options.xenMinor ?? 17,
      }),
    );
    if (version >= 3) {
      this.sink(this.encoder.record({ layer: 'libxc', type: 'X86_CPUID_POLICY', leaves: this.domain.cpuidPolicy() }));
      this.sink(this.encoder.record({ layer: 'libxc', type: 'X86_MSR_POLICY', msrs: this.domain.msrPolicy() }));
      this.sink(this.encoder.record({ layer: 'libxc', type: 'STATIC_DATA_END' }));
    }
  }

  /** PAGE_DATA records for `pfns`, in batches. */
  sendPages(pfns: ArrayLike<number>): SentPages {
    const before = this.encoder.position;
    for (let i = 0; i < pfns.length; i += this.batch) {
      const slice = Array.from({ length: Math.min(this.batch, pfns.length - i) }, (_, k) => pfns[i + k]);
      const pages = slice.map((pfn) => this.domain.readPage(pfn));
      this.sink(this.encoder.record({ layer: 'libxc', type: 'PAGE_DATA', pfns: slice, types: slice.map(() => PageType.NOTAB), pages }));
    }
    return { pages: pfns.length, bytes: this.encoder.position - before };
  }

  /**
   * vCPU and platform state that closes a consistent snapshot. The spec's
   * order: "HVM_PARAMS must precede HVM_CONTEXT" (Xen 4.17's own saver
   * writes them the other way round; its restore accepts both).
   */
  endOfCheckpoint(): void {
    const ctx = this.domain.platformContext();
    this.sink(this.encoder.record({ layer: 'libxc', type: 'X86_TSC_INFO', ...ctx.tsc }));
    this.sink(this.encoder.record({ layer: 'libxc', type: 'HVM_PARAMS', params: ctx.hvmParams }));
    this.sink(this.encoder.record({ layer: 'libxc', type: 'HVM_CONTEXT', data: ctx.hvmContext }));
  }

  /** CHECKPOINT, then (libxl framing) the device-model records and CHECKPOINT_END. */
  checkpoint(): void {
    this.sink(this.encoder.record({ layer: 'libxc', type: 'CHECKPOINT' }));
    this.checkpoints++;
    if (this.options.framing === 'libxl') {
      this.emulatorRecords();
      this.sink(this.encoder.record({ layer: 'libxl', type: 'CHECKPOINT_END' }));
    }
  }

  /**
   * Ends the stream. A plain libxl stream carries the device model after the
   * libxc END; a checkpointed one already sent it with every checkpoint.
   */
  end(): void {
    this.sink(this.encoder.record({ layer: 'libxc', type: 'END' }));
    if (this.options.framing === 'libxl') {
      if (this.checkpoints === 0) this.emulatorRecords();
      this.sink(this.encoder.record({ layer: 'libxl', type: 'END' }));
    }
  }

  private emulatorRecords(): void {
    const { emulatorId } = this.domain.info;
    const entries = this.domain.deviceModelXenstore();
    if (entries.length > 0) {
      this.sink(this.encoder.record({ layer: 'libxl', type: 'EMULATOR_XENSTORE_DATA', emulatorId, index: 0, entries }));
    }
    this.sink(this.encoder.record({ layer: 'libxl', type: 'EMULATOR_CONTEXT', emulatorId, index: 0, data: this.domain.deviceModelState() }));
  }
}
