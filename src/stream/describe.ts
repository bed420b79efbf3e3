/**
 * Human-readable description of a decoded stream, for `tandem stream
 * inspect`: the xl header and its config if there is one, one line per
 * header and record (runs of PAGE_DATA squashed into one line, as Xen's
 * verifier does), a line per completed epoch of a checkpointed stream, how
 * the stream ended if it ended at a checkpoint, and a closing summary. Pure:
 * items in, lines out.
 */
import { PageEncoding } from './xbzrle.js';
import type { StreamEnd } from './decoder.js';
import { ColoControl, DomainType, EmulatorId, pageTypeHasData } from './format.js';
import type { ImageItem } from './image-reader.js';
import type { StreamRecord } from './records.js';
import { describeXlConfig, summarizeXlConfig } from './xl-config.js';
import { XlMandatoryFlag, type XlHeader } from './xl-header.js';

const DOMAIN_NAMES: Record<number, string> = { [DomainType.X86_PV]: 'x86 PV', [DomainType.X86_HVM]: 'x86 HVM' };
const EMULATOR_NAMES: Record<number, string> = {
  [EmulatorId.UNKNOWN]: 'unknown',
  [EmulatorId.QEMU_TRADITIONAL]: 'QEMU traditional',
  [EmulatorId.QEMU_UPSTREAM]: 'QEMU upstream',
};
const CHECKPOINT_STATES = new Map<number, string>(Object.entries(ColoControl).map(([name, id]) => [id, name]));

interface Run {
  records: number;
  pfns: number;
  pages: number;
}

export interface StreamTotals {
  framing: string;
  libxcVersion: number;
  domain: string;
  checkpoints: number;
  records: number;
  pages: number;
  bytes: number;
}

export class StreamDescriber {
  private run: Run | undefined;
  /** Where the current epoch began; epoch 1 begins with the migration stream (after any xl header). */
  private epochStart: number | undefined;
  private epochPages = 0;
  /** Framing of the migration stream itself: who ends an epoch (libxl's CHECKPOINT_END, or libxc's CHECKPOINT). */
  private framing = 'libxc';
  readonly totals: StreamTotals = { framing: 'libxc', libxcVersion: 0, domain: '?', checkpoints: 0, records: 0, pages: 0, bytes: 0 };

  /** Lines for one decoded item. */
  describe(item: ImageItem): string[] {
    const { end } = item;
    const out: string[] = [];
    if (item.kind !== 'record' || item.record.type !== 'PAGE_DATA') this.flushRun(out);
    if (item.kind !== 'xl-header') this.epochStart ??= item.offset;
    switch (item.kind) {
      case 'xl-header':
        this.totals.framing = 'xl-framed libxl';
        out.push(describeXlHeader(item.header), describeXlConfig(summarizeXlConfig(item.header)));
        break;
      case 'libxl-header':
        this.framing = 'libxl';
        if (this.totals.framing !== 'xl-framed libxl') this.totals.framing = 'libxl';
        out.push(`libxl header: version ${item.header.version}, little-endian${item.header.legacy ? ', legacy converted' : ''}`);
        break;
      case 'image-header':
        this.totals.libxcVersion = item.header.version;
        out.push(`libxc image header: version ${item.header.version}, little-endian`);
        break;
      case 'domain-header': {
        const h = item.header;
        this.totals.domain = DOMAIN_NAMES[h.type] ?? `type ${h.type}`;
        const from = h.xenMajor === 0 ? 'legacy converted' : `from Xen ${h.xenMajor}.${h.xenMinor}`;
        out.push(`libxc domain header: ${this.totals.domain}, page shift ${h.pageShift}, ${from}`);
        break;
      }
      case 'record':
        this.totals.records++;
        this.record(item.record, item.length, end, out);
        break;
    }
    this.totals.bytes = end;
    return out;
  }

  /** Closing lines once the stream is complete, by its END or (Xen's checkpointed streams) after a CHECKPOINT_END. */
  finish(end: StreamEnd = { kind: 'end' }): string[] {
    const out: string[] = [];
    this.flushRun(out);
    if (end.kind === 'checkpoint') out.push(`ended after checkpoint ${end.checkpoint}: a failover point`);
    const t = this.totals;
    out.push(
      `summary: ${t.framing} stream, libxc v${t.libxcVersion}, ${t.domain}, ${t.checkpoints} checkpoint${t.checkpoints === 1 ? '' : 's'}, ` +
        `${t.records} records, ${t.pages} pages, ${t.bytes} bytes`,
    );
    return out;
  }

  private record(rec: StreamRecord, length: number, end: number, out: string[]): void {
    if (rec.type === 'TANDEM_PAGE_XBZRLE') {
      this.epochPages += rec.pfns.length;
      this.totals.pages += rec.pfns.length;
    }
    if (rec.type === 'PAGE_DATA') {
      const withData = rec.types.reduce((n, t) => n + (pageTypeHasData(t) ? 1 : 0), 0);
      this.run ??= { records: 0, pfns: 0, pages: 0 };
      this.run.records++;
      this.run.pfns += rec.pfns.length;
      this.run.pages += withData;
      this.epochPages += withData;
      this.totals.pages += withData;
      return;
    }
    const name = rec.type === 'OPTIONAL' ? `optional record 0x${rec.code.toString(16)}` : rec.type;
    out.push(`${rec.layer} ${name}, length ${length}${detail(rec)}`);
    const epochEnds = (rec.layer === 'libxl' && rec.type === 'CHECKPOINT_END') || (this.framing === 'libxc' && rec.layer === 'libxc' && rec.type === 'CHECKPOINT');
    if (rec.layer === 'libxc' && rec.type === 'CHECKPOINT') this.totals.checkpoints++;
    if (epochEnds) {
      out.push(`epoch ${this.totals.checkpoints}: ${this.epochPages} pages, ${end - (this.epochStart ?? 0)} bytes`);
      this.epochStart = end;
      this.epochPages = 0;
    }
  }

  private flushRun(out: string[]): void {
    if (!this.run) return;
    const r = this.run;
    out.push(`libxc PAGE_DATA x ${r.records}: ${r.pfns} pfns, ${r.pages} pages with data`);
    this.run = undefined;
  }
}

const FLAG_NAMES: [number, string][] = [
  [XlMandatoryFlag.CONFIG_JSON, 'config JSON'],
  [XlMandatoryFlag.STREAM_V2, 'stream v2'],
];

function describeXlHeader(h: XlHeader): string {
  const flags = FLAG_NAMES.filter(([bit]) => h.mandatoryFlags & bit).map(([, name]) => name);
  const tail = h.tailLength > 0 ? `, ${h.tailLength} bytes after the config (skipped, as xl does)` : '';
  return (
    `xl header: mandatory flags 0x${h.mandatoryFlags.toString(16)} (${flags.join(', ')}), optional flags 0x${h.optionalFlags.toString(16)}, ` +
    `${h.optionalLength} bytes of optional data${tail}; the libxl stream starts at offset ${h.size}`
  );
}

function detail(rec: StreamRecord): string {
  if (rec.layer === 'libxl') {
    switch (rec.type) {
      case 'EMULATOR_XENSTORE_DATA':
        return `: ${EMULATOR_NAMES[rec.emulatorId]}, index ${rec.index}, ${rec.entries.length} keys`;
      case 'EMULATOR_CONTEXT':
        return `: ${EMULATOR_NAMES[rec.emulatorId]}, index ${rec.index}, ${rec.data.length} bytes of state`;
      case 'CHECKPOINT_STATE':
        return `: ${CHECKPOINT_STATES.get(rec.controlId) ?? rec.controlId}`;
      default:
        return '';
    }
  }
  switch (rec.type) {
    case 'X86_TSC_INFO':
      return `: mode ${rec.mode}, ${rec.khz} kHz, ${rec.nsec} ns, incarnation ${rec.incarnation}`;
    case 'HVM_PARAMS':
      return `: ${rec.params.length} params`;
    case 'X86_CPUID_POLICY':
      return `: ${rec.leaves.length} leaves`;
    case 'X86_MSR_POLICY':
      return `: ${rec.msrs.length} MSRs`;
    case 'X86_PV_INFO':
      return `: ${rec.guestWidth * 8}-bit guest, ${rec.ptLevels} levels of page tables`;
    case 'X86_PV_P2M_FRAMES':
      return `: pfns 0x${rec.startPfn.toString(16)}-0x${rec.endPfn.toString(16)}, ${rec.frames.length} frames`;
    case 'X86_PV_VCPU_BASIC':
    case 'X86_PV_VCPU_EXTENDED':
    case 'X86_PV_VCPU_XSAVE':
    case 'X86_PV_VCPU_MSRS':
      return `: vcpu ${rec.vcpuId}, ${rec.context.length} bytes`;
    case 'TANDEM_PAGE_XBZRLE': {
      const count = (e: number): number => rec.encodings.reduce((n, x) => n + (x === e ? 1 : 0), 0);
      return `: ${rec.pfns.length} pages (${count(PageEncoding.DELTA)} delta, ${count(PageEncoding.ZERO)} zero, ${count(PageEncoding.RAW)} raw)`;
    }
    default:
      return '';
  }
}
