/**
 * A stream builder for tests that need a stream cut, bent or paused at a
 * chosen point (Tandem's own saving goes through CheckpointSession): it
 * writes a sim domain in the order Xen's save code does, libxl header and
 * LIBXC_CONTEXT; libxc headers and static data; per epoch the pages, then
 * end-of-checkpoint state and CHECKPOINT, then libxl's emulator records and
 * CHECKPOINT_END; finally libxc END and libxl END.
 *
 * It only encodes; the test decides when the guest is paused and which
 * pages to send. Chunks go to a sink in order; page data is passed by
 * reference (the sink must consume it before the guest runs again).
 */
import type { ChunkSink } from '../../src/checkpoint/save.js';
import type { SimDomain } from '../../src/domain/sim/domain.js';
import type { PlatformContext } from '../../src/domain/types.js';
import { StreamEncoder } from '../../src/stream/encoder.js';
import { ColoControl, PageType } from '../../src/stream/format.js';
import type { Framing } from '../../src/stream/layout.js';
import type { StreamRecord } from '../../src/stream/records.js';

export interface SaverOptions {
  framing: Framing;
  /** libxc stream version: 3 (Xen 4.14+) carries CPUID/MSR policy and STATIC_DATA_END. */
  version: 2 | 3;
  xenMajor?: number;
  xenMinor?: number;
  /** Pages per PAGE_DATA record; Xen batches 1024. */
  batchPages?: number;
  /** A COLO stream: each checkpoint after the first is announced with CHECKPOINT_STATE. */
  colo?: boolean;
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
    private readonly domain: SimDomain,
    private readonly options: SaverOptions,
    private readonly sink: ChunkSink,
  ) {
    this.encoder = new StreamEncoder(options.framing, options.colo ?? false);
    this.batch = options.batchPages ?? 1024;
  }

  /** Bytes written so far. */
  get position(): number {
    return this.encoder.position;
  }

  /** Stream and libxc headers, then static data. */
  start(): void {
    this.begin();
    this.startLibxc();
  }

  /** libxl framing: the stream header, after which libxl records may come before the libxc stream. */
  begin(): void {
    if (this.options.framing === 'libxl') this.sink(this.encoder.libxlHeader());
  }

  /**
   * libxl records ahead of the libxc stream (checkpoint devices' live
   * syncs). The encoder's layout refuses them once the libxc stream has
   * begun, and in a libxc-framed stream.
   */
  libxlRecords(records: readonly StreamRecord[]): void {
    for (const rec of records) this.sink(this.encoder.record(rec));
  }

  /** LIBXC_CONTEXT (libxl framing), the libxc headers and static data. */
  startLibxc(): void {
    const { framing, version } = this.options;
    if (framing === 'libxl') this.sink(this.encoder.record({ layer: 'libxl', type: 'LIBXC_CONTEXT' }));
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

  /**
   * PAGE_DATA records for `pfns`, in batches. `pageAt(i)` gives the data of
   * `pfns[i]`; by default the live page in guest RAM (right for a paused
   * guest or a live pre-copy round, where the dirty log catches later writes).
   */
  sendPages(pfns: ArrayLike<number>, pageAt: (i: number) => Buffer = (i) => this.domain.readPage(pfns[i])): SentPages {
    const before = this.encoder.position;
    for (let i = 0; i < pfns.length; i += this.batch) {
      const n = Math.min(this.batch, pfns.length - i);
      const slice = new Array<number>(n);
      const pages = new Array<Buffer>(n);
      for (let k = 0; k < n; k++) {
        slice[k] = pfns[i + k];
        pages[k] = pageAt(i + k);
      }
      this.sink(this.encoder.record({ layer: 'libxc', type: 'PAGE_DATA', pfns: slice, types: new Array<number>(n).fill(PageType.NOTAB), pages }));
    }
    return { pages: pfns.length, bytes: this.encoder.position - before };
  }

  /**
   * vCPU and platform state that closes a consistent snapshot. The spec's
   * order: "HVM_PARAMS must precede HVM_CONTEXT" (Xen 4.17's own saver
   * writes them the other way round; its restore accepts both). `ctx` is
   * state staged while the guest was paused; by default it is read now.
   */
  endOfCheckpoint(ctx: PlatformContext = this.domain.platformContext()): void {
    this.sink(this.encoder.record({ layer: 'libxc', type: 'X86_TSC_INFO', ...ctx.tsc }));
    this.sink(this.encoder.record({ layer: 'libxc', type: 'HVM_PARAMS', params: ctx.hvmParams }));
    this.sink(this.encoder.record({ layer: 'libxc', type: 'HVM_CONTEXT', data: ctx.hvmContext }));
  }

  /**
   * CHECKPOINT, then (libxl framing) the device-model records, `extra`
   * libxl records (checkpoint devices' own, e.g. disk writes) and
   * CHECKPOINT_END. `dmState` is the save_qemu blob staged at suspend.
   */
  checkpoint(dmState: Buffer = this.domain.deviceModelState(), extra: readonly StreamRecord[] = []): void {
    this.sink(this.encoder.record({ layer: 'libxc', type: 'CHECKPOINT' }));
    this.checkpoints++;
    if (this.options.framing === 'libxl') {
      this.emulatorRecords(dmState);
      for (const rec of extra) this.sink(this.encoder.record(rec));
      this.sink(this.encoder.record({ layer: 'libxl', type: 'CHECKPOINT_END' }));
    }
  }

  /** COLO: announces the next checkpoint, so the secondary suspends its running guest. */
  newCheckpoint(): void {
    this.sink(this.encoder.record({ layer: 'libxl', type: 'CHECKPOINT_STATE', controlId: ColoControl.NEW }));
  }

  /**
   * Ends the stream. A plain libxl stream carries the device model after the
   * libxc END; a checkpointed one already sent it with every checkpoint. A
   * COLO stream between checkpoints ends with libxl END alone (StreamLayout
   * says why).
   */
  end(): void {
    if (this.encoder.betweenColoCheckpoints) {
      this.sink(this.encoder.record({ layer: 'libxl', type: 'END' }));
      return;
    }
    this.sink(this.encoder.record({ layer: 'libxc', type: 'END' }));
    if (this.options.framing === 'libxl') {
      if (this.checkpoints === 0) this.emulatorRecords(this.domain.deviceModelState());
      this.sink(this.encoder.record({ layer: 'libxl', type: 'END' }));
    }
  }

  private emulatorRecords(dmState: Buffer): void {
    const { emulatorId } = this.domain.info;
    const entries = this.domain.deviceModelXenstore();
    if (entries.length > 0) {
      this.sink(this.encoder.record({ layer: 'libxl', type: 'EMULATOR_XENSTORE_DATA', emulatorId, index: 0, entries }));
    }
    this.sink(this.encoder.record({ layer: 'libxl', type: 'EMULATOR_CONTEXT', emulatorId, index: 0, data: dmState }));
  }
}
