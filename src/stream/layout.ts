/**
 * The layout rules of a stream: which header or record may come next, and in
 * which layer. Shared by the decoder (to reject a bad stream) and the writer
 * (so Tandem can never emit one).
 *
 * A libxl stream: header, LIBXC_CONTEXT (hands the stream to libxc), the libxc
 * image and domain headers and records. A libxc CHECKPOINT hands the stream
 * back to libxl, whose CHECKPOINT_END hands it to libxc again for the next
 * epoch; libxc END hands it back for good, and libxl END closes the stream.
 *
 * A COLO stream (libxl framing, `colo`) adds one hand-off: after each
 * CHECKPOINT_END the primary announces the next checkpoint with a libxl
 * CHECKPOINT_STATE record (Xen's "new checkpoint", which tells the
 * secondary to suspend its running guest) before the libxc records of that
 * epoch. Record type codes overlap between the layers, so only knowing the
 * stream is COLO tells a reader that this record is libxl's. Xen's COLO has
 * no orderly end (the primary runs until a failover); Tandem's primary,
 * stopping, ends a COLO stream at a checkpoint boundary with libxl END
 * where CHECKPOINT_STATE would come. The libxc stream is left without its
 * END: after CHECKPOINT_END a COLO reader takes type 0 as libxl's, so a
 * libxc END there would read as libxl END followed by trailing bytes.
 */
import { ErrorCodes, StreamError } from '../errors.js';
import { DomainType, LibxcType, LibxlType, isKnownType, isOptionalType, recordTypeName, type Layer } from './format.js';

export type Framing = 'libxc' | 'libxl';

export type Expect = 'libxl-header' | 'image-header' | 'domain-header' | 'record' | 'done';

const PV_ONLY = new Set<number>([
  LibxcType.X86_PV_INFO,
  LibxcType.X86_PV_P2M_FRAMES,
  LibxcType.X86_PV_VCPU_BASIC,
  LibxcType.X86_PV_VCPU_EXTENDED,
  LibxcType.X86_PV_VCPU_XSAVE,
  LibxcType.X86_PV_VCPU_MSRS,
  LibxcType.SHARED_INFO,
]);
const HVM_ONLY = new Set<number>([LibxcType.HVM_CONTEXT, LibxcType.HVM_PARAMS]);

/** Records describing guest state that v3 requires to follow STATIC_DATA_END. */
const DYNAMIC = new Set<number>([
  LibxcType.PAGE_DATA,
  LibxcType.X86_PV_P2M_FRAMES,
  LibxcType.X86_PV_VCPU_BASIC,
  LibxcType.X86_PV_VCPU_EXTENDED,
  LibxcType.X86_PV_VCPU_XSAVE,
  LibxcType.X86_PV_VCPU_MSRS,
  LibxcType.SHARED_INFO,
  LibxcType.X86_TSC_INFO,
  LibxcType.HVM_CONTEXT,
  LibxcType.HVM_PARAMS,
  LibxcType.VERIFY,
  LibxcType.CHECKPOINT,
  LibxcType.END,
]);
const STATIC = new Set<number>([LibxcType.X86_PV_INFO, LibxcType.X86_CPUID_POLICY, LibxcType.X86_MSR_POLICY]);

export interface Site {
  offset: number;
}

export class StreamLayout {
  /** Layer the next record belongs to. */
  layer: Layer;
  /** Completed checkpoints (libxc CHECKPOINT records seen). */
  checkpoints = 0;
  libxcVersion = 0;
  domainType = 0;
  private phase: Expect;
  private libxcStarted = false;
  private libxcEnded = false;
  private inCheckpoint = false;
  private staticDone = false;
  private pvInfoSeen = false;
  private p2mSeen = false;
  /** COLO: a CHECKPOINT_END was the last record; the next must be CHECKPOINT_STATE or END. */
  private awaitingNew = false;
  /** The last record was a libxl CHECKPOINT_END: the stream stands at a checkpoint boundary. */
  private boundary = false;

  constructor(
    readonly framing: Framing,
    readonly colo = false,
  ) {
    if (colo && framing !== 'libxl') throw new RangeError('a COLO stream has libxl framing');
    this.layer = framing;
    this.phase = framing === 'libxl' ? 'libxl-header' : 'image-header';
  }

  get expecting(): Expect {
    return this.phase;
  }

  /** COLO, between checkpoints: the next record is CHECKPOINT_STATE, or the END that closes the stream. */
  get betweenColoCheckpoints(): boolean {
    return this.awaitingNew;
  }

  /**
   * The last record was a libxl CHECKPOINT_END and nothing of the next epoch
   * has come yet. Xen's Remus and COLO streams have no END: one that stops
   * here ended cleanly at this checkpoint, its failover point.
   */
  get atCheckpointBoundary(): boolean {
    return this.boundary;
  }

  /**
   * Checkpoints complete on the libxl side: a checkpoint counts from its libxc
   * CHECKPOINT (`checkpoints`), but is whole only at its CHECKPOINT_END.
   */
  get completedCheckpoints(): number {
    return this.checkpoints - (this.inCheckpoint ? 1 : 0);
  }

  /** The libxc stream has ended (its END, or an opaque libxc layer handed back for good). */
  get libxcFinished(): boolean {
    return this.libxcEnded;
  }

  libxlHeader(site: Site): void {
    this.expect('libxl-header', 'libxl header', site);
    this.phase = 'record';
  }

  imageHeader(version: number, site: Site): void {
    this.expect('image-header', 'image header', site);
    this.libxcVersion = version;
    this.phase = 'domain-header';
  }

  domainHeader(type: number, site: Site): void {
    this.expect('domain-header', 'domain header', site);
    this.domainType = type;
    this.phase = 'record';
  }

  /** Checks that a record of `code` may come next in `layer`, and moves on. */
  record(layer: Layer, code: number, site: Site): void {
    const name = `${layer} ${recordTypeName(layer, code)}`;
    this.expect('record', name, site);
    if (layer !== this.layer) this.fail(ErrorCodes.RECORD_OUT_OF_ORDER, `a ${this.layer} record is due here`, name, site);
    if (!isKnownType(layer, code) && !isOptionalType(code)) {
      this.fail(ErrorCodes.RECORD_UNKNOWN_MANDATORY, 'unknown mandatory record type', name, site);
    }
    if (layer === 'libxl') this.libxlRecord(code, name, site);
    else this.libxcRecord(code, name, site);
    // Set only once the record is accepted: a refused record leaves the layout as it was.
    this.boundary = layer === 'libxl' && code === LibxlType.CHECKPOINT_END;
  }

  /**
   * A writer that passes on a libxc layer it did not encode (libxc wrote
   * it): libxc's bytes are due now. Their own layout is libxc's business.
   */
  libxcOpaque(site: Site): void {
    if (this.framing !== 'libxl' || this.layer !== 'libxc' || this.phase === 'done' || this.phase === 'libxl-header') {
      this.fail(ErrorCodes.RECORD_OUT_OF_ORDER, `a ${this.layer} record is due here`, 'libxc data', site);
    }
    this.boundary = false;
  }

  /**
   * The opaque libxc layer handed the stream back to libxl: after its
   * CHECKPOINT record ('checkpoint') or its END ('end').
   */
  libxcHandBack(kind: 'checkpoint' | 'end', site: Site): void {
    this.libxcOpaque(site);
    this.phase = 'record';
    if (kind === 'checkpoint') {
      this.checkpoints++;
      this.inCheckpoint = true;
    } else {
      this.libxcEnded = true;
    }
    this.layer = 'libxl';
  }

  private libxlRecord(code: number, name: string, site: Site): void {
    if (this.awaitingNew) {
      if (code === LibxlType.END) {
        this.awaitingNew = false;
        this.phase = 'done';
        return;
      }
      if (code !== LibxlType.CHECKPOINT_STATE) this.fail(ErrorCodes.RECORD_OUT_OF_ORDER, 'a COLO stream announces each checkpoint after the first with CHECKPOINT_STATE (or ends with END)', name, site);
      this.awaitingNew = false;
      this.layer = 'libxc';
      return;
    }
    switch (code) {
      case LibxlType.LIBXC_CONTEXT:
        if (this.libxcStarted) this.fail(ErrorCodes.RECORD_OUT_OF_ORDER, 'the libxc stream was already started', name, site);
        this.libxcStarted = true;
        this.layer = 'libxc';
        this.phase = 'image-header';
        return;
      case LibxlType.CHECKPOINT_END:
        if (!this.inCheckpoint) this.fail(ErrorCodes.RECORD_OUT_OF_ORDER, 'no libxc CHECKPOINT precedes it', name, site);
        this.inCheckpoint = false;
        if (this.colo) this.awaitingNew = true;
        else this.layer = 'libxc';
        return;
      case LibxlType.END:
        if (!this.libxcEnded) this.fail(ErrorCodes.RECORD_OUT_OF_ORDER, 'the libxc stream has not ended', name, site);
        this.phase = 'done';
        return;
      default:
        return;
    }
  }

  private libxcRecord(code: number, name: string, site: Site): void {
    // Every check first, then the state changes: a refused record leaves the
    // layout as it was (the encoder relies on this).
    const hvm = this.domainType === DomainType.X86_HVM;
    const v3 = this.libxcVersion >= 3;
    if ((hvm && PV_ONLY.has(code)) || (!hvm && HVM_ONLY.has(code))) {
      this.fail(ErrorCodes.RECORD_WRONG_DOMAIN_TYPE, `not valid for an ${hvm ? 'HVM' : 'PV'} domain`, name, site);
    }
    if (code === LibxcType.CHECKPOINT_DIRTY_PFN_LIST) this.fail(ErrorCodes.RECORD_OUT_OF_ORDER, 'only valid on the COLO back-channel', name, site);
    if (!v3 && (code === LibxcType.STATIC_DATA_END || code === LibxcType.X86_CPUID_POLICY || code === LibxcType.X86_MSR_POLICY)) {
      this.fail(ErrorCodes.RECORD_NOT_IN_VERSION, 'not valid in a v2 stream', name, site);
    }
    if (STATIC.has(code) && this.staticDone) this.fail(ErrorCodes.RECORD_OUT_OF_ORDER, 'static data record after the end of static data', name, site);
    if (code === LibxcType.STATIC_DATA_END && this.staticDone) this.fail(ErrorCodes.RECORD_OUT_OF_ORDER, 'duplicate STATIC_DATA_END', name, site);
    // v3 "mandates the presence of a STATIC_DATA_END record ahead of any
    // memory/register content"; a v2 reader infers it at the first
    // X86_PV_P2M_FRAMES (PV) or PAGE_DATA (HVM).
    if (v3 && DYNAMIC.has(code) && !this.staticDone) this.fail(ErrorCodes.RECORD_OUT_OF_ORDER, 'guest state before STATIC_DATA_END', name, site);
    // PV ordering: "X86_PV_INFO record, X86_PV_P2M_FRAMES record, PAGE_DATA records".
    if (!hvm && code === LibxcType.X86_PV_P2M_FRAMES && !this.pvInfoSeen) this.fail(ErrorCodes.RECORD_OUT_OF_ORDER, 'X86_PV_P2M_FRAMES before X86_PV_INFO', name, site);
    if (!hvm && code === LibxcType.PAGE_DATA && !this.p2mSeen) this.fail(ErrorCodes.RECORD_OUT_OF_ORDER, 'PAGE_DATA before X86_PV_P2M_FRAMES', name, site);

    if (code === LibxcType.STATIC_DATA_END || DYNAMIC.has(code)) this.staticDone = true;
    switch (code) {
      case LibxcType.X86_PV_INFO:
        this.pvInfoSeen = true;
        return;
      case LibxcType.X86_PV_P2M_FRAMES:
        this.p2mSeen = true;
        return;
      case LibxcType.CHECKPOINT:
        this.checkpoints++;
        // Inside a libxl stream the CHECKPOINT hands the stream back to libxl.
        if (this.framing === 'libxl') {
          this.inCheckpoint = true;
          this.layer = 'libxl';
        }
        return;
      case LibxcType.END:
        this.libxcEnded = true;
        if (this.framing === 'libxl') this.layer = 'libxl';
        else this.phase = 'done';
        return;
      default:
        return;
    }
  }

  private expect(phase: Expect, what: string, site: Site): void {
    if (this.phase === phase) return;
    const code = this.phase === 'done' ? ErrorCodes.STREAM_TRAILING_DATA : ErrorCodes.RECORD_OUT_OF_ORDER;
    this.fail(code, this.phase === 'done' ? 'data after the final END record' : `expected ${this.phase}`, what, site);
  }

  private fail(code: (typeof ErrorCodes)[keyof typeof ErrorCodes], detail: string, record: string, site: Site): never {
    throw new StreamError(code, detail, { offset: site.offset, record });
  }
}
