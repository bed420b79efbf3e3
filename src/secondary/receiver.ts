/**
 * The secondary's epoch state machine: fed the decoded items of one
 * checkpointed stream at a time, it applies them to the replica and says
 * what to tell the primary. No sockets, no timers, no logging: it returns
 * actions and the caller carries them out.
 *
 * Everything up to the stream's first CHECKPOINT_END (the pre-copy and
 * epoch 1) goes straight into the replica, as Xen's restore does: it is the
 * whole of RAM, and until that checkpoint the replica is not a consistent
 * guest anyway. From epoch 2 on every record is held until the epoch's
 * CHECKPOINT_END and only then applied, so a torn epoch is dropped whole.
 *
 * An epoch's device-model state is loaded asynchronously (a real device
 * model answers over QMP): at CHECKPOINT_END the receiver sets the vCPU
 * state, then asks for the load with a 'load-device-model' action and
 * waits; deviceModelLoaded() applies the pages and commits, and
 * deviceModelRefused() puts the vCPU state back and fails the stream,
 * leaving the replica at its last epoch.
 */
import type { PlatformContext, ReplicaDomain, TscInfo } from '../domain/types.js';
import { ErrorCodes, StreamError } from '../errors.js';
import type { StreamItem } from '../stream/decoder.js';
import { ColoControl, DomainType, TandemFeature, pageTypeHasData, recordTypeName } from '../stream/format.js';
import type { HvmParam, LibxcRecord } from '../stream/records.js';
import { applyXbzrlePages, type XbzrleRecord } from '../stream/xbzrle-pages.js';
import { AckStatus, type BackChannelRecord } from '../transport/backchannel.js';
import { PageKeeper, type DeviceKeeper } from './undo.js';

export type ReplicaState =
  /** No primary is streaming. The replica may still hold a complete checkpoint (`lastEpoch > 0`). */
  | 'idle'
  /** A primary is streaming and this stream has not completed a checkpoint yet. */
  | 'syncing'
  /** A primary is streaming and the replica is at one of its complete checkpoints. */
  | 'protected';

export type AckRecord = Extract<BackChannelRecord, { type: 'ACK' }>;

export interface EpochCommit {
  epoch: number;
  /** Pages written into the replica for this epoch (epoch 1: the whole pre-copy). */
  pages: number;
  /** Stream bytes of the epoch, from the end of the previous CHECKPOINT_END through this one. */
  bytes: number;
  /** Time spent applying the epoch at its CHECKPOINT_END. */
  applyMs: number;
}

export type CloseOutcome =
  /** atCheckpoint: no END, the stream stopped right after a checkpoint (a Xen Remus stream's end, whether its primary stopped or died). */
  | { outcome: 'end'; atCheckpoint?: true }
  | { outcome: 'over-buffer-limit'; epoch: number; reason: string }
  | { outcome: 'stream-error'; epoch: number; error: Error };

export type ReceiverAction =
  | { type: 'committed'; commit: EpochCommit }
  | { type: 'ack'; ack: AckRecord }
  /** The replica no longer holds epoch `previousEpoch` of the previous stream: a new stream overwrote it, for `reason`. */
  | { type: 'invalidated'; previousEpoch: number; reason: string }
  /** COLO: the primary announced checkpoint `epoch`; the secondary's guest must stop and report its dirty pages. */
  | { type: 'colo-new'; epoch: number }
  /**
   * Load `state` into the replica's device model, then call
   * deviceModelLoaded() (or deviceModelRefused()); nothing else may be fed
   * until then.
   */
  | { type: 'load-device-model'; epoch: number; state: Buffer }
  /** Records after the last checkpoint that no CHECKPOINT_END committed, dropped at a clean END. */
  | { type: 'discarded'; epoch: number; bytes: number }
  | ({ type: 'close' } & CloseOutcome);

/** A checked change to a replica device, ready to apply. */
export interface ReplicaUpdate {
  /** Describes the device's whole state (blocks it leaves out are zero): a stream's first checkpoint must hold one. */
  readonly fullSync: boolean;
  apply(): void;
}

/**
 * A device the replica restores besides memory and the device model (a
 * disk, say), fed by its own libxl optional record. Its updates follow the
 * epochs: those of a stream's first checkpoint are applied as they arrive
 * (like the pre-copy), later ones at their epoch's CHECKPOINT_END.
 */
export interface ReplicaDevice {
  readonly name: string;
  /** The record type (libxl, optional range) that carries this device's updates. */
  readonly code: number;
  /** Parses and checks one record body against the replica; throws a StreamError to refuse the stream. */
  parse(body: Buffer, site: { offset: number }): ReplicaUpdate;
  /**
   * Keeps the last checkpoint's content of whatever the updates applied from
   * now on change, until the keeper is released or rolled back (undo.ts).
   * Absent: a new stream's first updates give the last checkpoint up.
   */
  keep?(): DeviceKeeper;
}

export interface ReceiverOptions {
  /** Most bytes of stream one buffered epoch may hold. */
  maxEpochBytes: number;
  /** Most bytes kept of the last checkpoint while a new stream syncs (default: maxEpochBytes). */
  maxKeptBytes?: number;
  /** Devices beyond memory; each must be fully synced by a stream's first checkpoint. */
  devices?: readonly ReplicaDevice[];
}

type PageDataRecord = Extract<LibxcRecord, { type: 'PAGE_DATA' }>;
type RecordItem = Extract<StreamItem, { kind: 'record' }>;

interface Held<T> {
  value: T;
  offset: number;
}

/** One epoch's records, held until its CHECKPOINT_END. */
class EpochBuffer {
  /** Page records in stream order: a delta's base is the page as the records before it leave it. */
  readonly pageRecords: (PageDataRecord | XbzrleRecord)[] = [];
  pages = 0;
  bytes = 0;
  tsc: TscInfo | undefined;
  params: HvmParam[] | undefined;
  hvmContext: Held<Buffer> | undefined;
  deviceModel: Held<Buffer> | undefined;
  readonly updates: ReplicaUpdate[] = [];
}

/** Per-stream progress; dropped as a whole when the stream ends or fails. */
class StreamProgress {
  /** Checkpoints of this stream applied to the replica. */
  epochs = 0;
  /** Stream offset where the epoch in progress began. */
  epochStart = 0;
  buffer = new EpochBuffer();
  /** Pre-copy: pages written straight into the replica, and which pfns the pre-copy has covered. */
  directPages = 0;
  covered = 0;
  libxcEnded = false;
  /** Devices whose full sync this stream has delivered. */
  readonly synced = new Set<ReplicaDevice>();

  constructor(
    readonly coverage: Uint32Array,
    /** TandemFeature bits offered to this stream's primary. */
    readonly features: number,
  ) {}
}

/** An epoch waiting for its device model to load. */
interface Loading {
  s: StreamProgress;
  b: EpochBuffer;
  item: RecordItem;
  /** The vCPU state before this epoch's, to put back if the load is refused. */
  before: PlatformContext | undefined;
}

const typeName = (t: number): string => (t === DomainType.X86_HVM ? 'x86 HVM' : t === DomainType.X86_PV ? 'x86 PV' : `type ${t}`);

export class EpochReceiver {
  private current: StreamProgress | undefined;
  private readonly devices: ReadonlyMap<number, ReplicaDevice>;
  private replicaState: ReplicaState = 'idle';
  private committed = 0;
  private loading: Loading | undefined;
  /** While a new stream syncs over a replica holding a checkpoint: what that checkpoint had of what changed. */
  private keepers: { pages: PageKeeper; devices: DeviceKeeper[] } | undefined;

  constructor(
    private readonly replica: ReplicaDomain,
    private readonly options: ReceiverOptions,
  ) {
    this.devices = new Map((options.devices ?? []).map((d) => [d.code, d]));
  }

  get state(): ReplicaState {
    return this.replicaState;
  }

  /** The epoch (of the latest stream) the replica holds; 0 when it holds no complete checkpoint. */
  get lastEpoch(): number {
    return this.committed;
  }

  /** The epoch a failure now would tear (the stream's next); 0 with no stream. */
  get epochInProgress(): number {
    return this.current === undefined ? 0 : this.current.epochs + 1;
  }

  /** Bytes held for the epoch in progress. */
  get bufferedBytes(): number {
    return this.current?.buffer.bytes ?? 0;
  }

  /** Bytes kept of the last checkpoint while a new stream syncs (0 when nothing is kept). */
  get keptBytes(): number {
    const k = this.keepers;
    return k === undefined ? 0 : k.pages.bytes + k.devices.reduce((n, d) => n + d.bytes, 0);
  }

  /**
   * TandemFeature bits this receiver can decode: a compressed page is a
   * delta applied in the replica's own page, so only a replica that lends
   * its pages out writable is offered them.
   */
  get features(): number {
    return this.replica.writablePage !== undefined ? TandemFeature.PAGE_XBZRLE : 0;
  }

  /**
   * A new stream begins (a new connection): it must sync the replica from
   * its pre-copy. A replica that holds a checkpoint keeps it, where it can,
   * until this stream reaches its own first checkpoint. `features`: what
   * was offered to its primary; records of any other feature are refused.
   */
  begin(features = 0): void {
    if (this.current !== undefined) throw new Error('a stream is already in progress; end or abort it first');
    if ((features & ~this.features) !== 0) throw new Error(`features 0x${features.toString(16)} offered beyond what this replica decodes (0x${this.features.toString(16)})`);
    this.current = new StreamProgress(new Uint32Array(Math.ceil(this.replica.info.pages / 32)), features);
    this.replicaState = 'syncing';
    const devices = [...this.devices.values()];
    const readPage = this.replica.readPage?.bind(this.replica);
    if (this.committed > 0 && readPage !== undefined && devices.every((d) => d.keep !== undefined)) {
      this.keepers = { pages: new PageKeeper({ readPage, writePages: (pfns, pages) => this.replica.writePages(pfns, pages) }), devices: devices.map((d) => d.keep!()) };
    }
  }

  /**
   * Applies one decoded item. Throws a StreamError for a stream this replica
   * must refuse; the caller then calls fail(). Items after the stream has
   * closed are ignored.
   */
  feed(item: StreamItem): ReceiverAction[] {
    const s = this.current;
    if (s === undefined) return [];
    if (this.loading !== undefined) throw new Error('an item fed while the device model loads: wait for deviceModelLoaded()');
    switch (item.kind) {
      case 'libxl-header':
      case 'image-header':
        return [];
      case 'domain-header':
        if (item.header.type !== this.replica.info.type) {
          throw new StreamError(
            ErrorCodes.STREAM_BAD_DOMAIN_TYPE,
            `an ${typeName(item.header.type)} stream cannot restore into this ${typeName(this.replica.info.type)} replica`,
            { offset: item.offset, record: 'libxc domain header' },
          );
        }
        return [];
      case 'record':
        return this.record(s, item);
    }
  }

  /** The stream failed (malformed, refused, torn): drop the epoch in progress and tell the primary. */
  fail(error: Error): ReceiverAction[] {
    const s = this.current;
    if (s === undefined) return [];
    const epoch = s.epochs + 1;
    this.close();
    return [
      { type: 'ack', ack: { type: 'ACK', epoch, status: AckStatus.STREAM_ERROR, reason: error.message } },
      { type: 'close', outcome: 'stream-error', epoch, error },
    ];
  }

  /**
   * The connection is gone with no chance to answer: drop the epoch in
   * progress. Returns the epoch torn. Call it only once a device-model load
   * asked for has settled: aborted mid-load, the replica holds no epoch.
   */
  abort(): number {
    const s = this.current;
    if (s === undefined) return 0;
    this.close();
    return s.epochs + 1;
  }

  private close(): void {
    const l = this.loading;
    if (l !== undefined) {
      // Closed with the device model still taking this epoch's state (the
      // server waits for the load, so only a caller that did not): the vCPUs
      // go back, but the device model may hold either epoch's state.
      if (l.before !== undefined) this.replica.setPlatformContext(l.before);
      this.committed = 0;
    }
    // A stream that ends before its first checkpoint leaves the replica at the last one it kept.
    this.rollback();
    this.current = undefined;
    this.loading = undefined;
    this.replicaState = 'idle';
  }

  private rollback(): void {
    const k = this.keepers;
    if (k === undefined) return;
    this.keepers = undefined;
    k.pages.rollback();
    for (const d of k.devices) d.rollback();
  }

  private release(): void {
    const k = this.keepers;
    if (k === undefined) return;
    this.keepers = undefined;
    k.pages.release();
    for (const d of k.devices) d.release();
  }

  /** The device model took the epoch's state: its pages go in and the epoch commits. */
  deviceModelLoaded(): ReceiverAction[] {
    const l = this.loading;
    if (l === undefined) return [];
    this.loading = undefined;
    return this.finishCommit(l.s, l.b, l.item);
  }

  /** The device model refused the epoch's state: the vCPU state goes back and the stream fails; the replica stays at its last epoch. */
  deviceModelRefused(err: unknown): ReceiverAction[] {
    const l = this.loading;
    if (l === undefined) return [];
    this.loading = undefined;
    if (l.before !== undefined) {
      try {
        this.replica.setPlatformContext(l.before);
      } catch {
        // Nothing left to trust about the replica's vCPU state.
        this.committed = 0;
      }
    }
    const dm = l.b.deviceModel!;
    const detail = err instanceof Error ? err.message : String(err);
    return this.fail(new StreamError(ErrorCodes.REPLICA_MISMATCH, `the replica refused it: ${detail}`, { offset: dm.offset, record: 'libxl EMULATOR_CONTEXT' }, { cause: err }));
  }

  private record(s: StreamProgress, item: RecordItem): ReceiverAction[] {
    const rec = item.record;
    if (s.libxcEnded) {
      // Only libxl's END may follow a checkpointed stream's libxc END; nothing after it changes the replica.
      if (rec.layer === 'libxl' && rec.type === 'END') {
        this.close();
        return [{ type: 'close', outcome: 'end' }];
      }
      return [];
    }
    if (rec.layer === 'libxc' && rec.type === 'PAGE_DATA' && s.epochs === 0) return this.applyDirect(s, rec);
    if (rec.type === 'TANDEM_PAGE_XBZRLE') this.checkXbzrleAllowed(s, item);
    if (rec.layer === 'libxl' && rec.type === 'OPTIONAL' && s.epochs === 0) {
      const device = this.devices.get(rec.code);
      if (device !== undefined) return this.applyDeviceDirect(s, device, rec.data, item);
    }
    if (rec.layer === 'libxl' && rec.type === 'CHECKPOINT_END') return this.commit(s, item);
    if (rec.layer === 'libxl' && rec.type === 'CHECKPOINT_STATE') {
      // The layout admits it only where a COLO stream announces a checkpoint; only "new checkpoint" goes forward.
      if (rec.controlId !== ColoControl.NEW) {
        throw new StreamError(ErrorCodes.RECORD_BAD_FIELD, `control id ${rec.controlId} belongs on the back-channel; forward, only 0 (new checkpoint)`, {
          offset: item.offset,
          record: 'libxl CHECKPOINT_STATE',
        });
      }
      return [{ type: 'colo-new', epoch: s.epochs + 1 }];
    }
    if (rec.layer === 'libxl' && rec.type === 'END') {
      // Before libxc's END only a COLO stream between checkpoints may end (the layout saw to it): the primary stopped there.
      this.close();
      return [{ type: 'close', outcome: 'end' }];
    }
    if (rec.layer === 'libxc' && rec.type === 'END') {
      if (s.epochs === 0) {
        throw new StreamError(ErrorCodes.STREAM_NOT_CHECKPOINTED, 'END before any checkpoint: the secondary replicates checkpointed streams only', {
          offset: item.offset,
          record: 'libxc END',
        });
      }
      s.libxcEnded = true;
      const torn = s.buffer;
      s.buffer = new EpochBuffer();
      return torn.bytes > 0 ? [{ type: 'discarded', epoch: s.epochs + 1, bytes: torn.bytes }] : [];
    }

    const size = item.end - item.offset;
    const b = s.buffer;
    if (b.bytes + size > this.options.maxEpochBytes) return this.overLimit(s, b.bytes + size);
    // Every record of the epoch counts, held or not: page views pin the
    // socket chunks they point into, and those chunks hold the whole epoch.
    b.bytes += size;
    switch (rec.type) {
      case 'PAGE_DATA':
      case 'TANDEM_PAGE_XBZRLE':
        b.pageRecords.push(rec);
        b.pages += rec.pfns.length;
        break;
      case 'X86_TSC_INFO':
        b.tsc = { mode: rec.mode, khz: rec.khz, nsec: rec.nsec, incarnation: rec.incarnation };
        break;
      case 'HVM_PARAMS':
        b.params = rec.params;
        break;
      case 'HVM_CONTEXT':
        b.hvmContext = { value: rec.data, offset: item.offset };
        break;
      case 'EMULATOR_CONTEXT':
        b.deviceModel = { value: rec.data, offset: item.offset };
        break;
      case 'OPTIONAL': {
        const device = rec.layer === 'libxl' ? this.devices.get(rec.code) : undefined;
        if (device !== undefined) {
          const update = device.parse(rec.data, { offset: item.offset });
          if (update.fullSync) {
            throw new StreamError(ErrorCodes.RECORD_BAD_FIELD, `a full sync of ${device.name} after the stream's first checkpoint`, {
              offset: item.offset,
              record: `libxl ${recordTypeName('libxl', rec.code)}`,
            });
          }
          b.updates.push(update);
        }
        break;
      }
      default:
        // Static data, CHECKPOINT, xenstore data (the sim keeps none), optional records: nothing to apply.
        break;
    }
    return [];
  }

  /**
   * A new stream has written into the replica. Kept: the replica still
   * holds the earlier checkpoint (recoverably), unless what is kept has
   * grown past its bound. Not kept: it holds it no longer.
   */
  private invalidate(): ReceiverAction[] {
    if (this.committed === 0) return [];
    let reason = 'a new stream is overwriting it';
    if (this.keepers !== undefined) {
      const limit = this.options.maxKeptBytes ?? this.options.maxEpochBytes;
      const kept = this.keptBytes;
      if (kept <= limit) return [];
      reason = `the new stream differs from it by more than the ${limit} bytes the secondary keeps (${kept} so far)`;
      // Nothing to go back to any more: the kept contents are let go.
      this.keepers.pages.release();
      for (const d of this.keepers.devices) d.release();
      this.keepers = undefined;
    }
    const previousEpoch = this.committed;
    this.committed = 0;
    return [{ type: 'invalidated', previousEpoch, reason }];
  }

  /**
   * Compressed pages only where this secondary offered them, and only once
   * the stream holds a checkpoint: a delta applies to the page this stream
   * left, and before its first checkpoint the replica may still hold another
   * stream's. (Not in COLO either: the server offers nothing there.)
   */
  private checkXbzrleAllowed(s: StreamProgress, item: RecordItem): void {
    const site = { offset: item.offset, record: 'libxc TANDEM_PAGE_XBZRLE' };
    if ((s.features & TandemFeature.PAGE_XBZRLE) === 0) {
      throw new StreamError(ErrorCodes.RECORD_NOT_NEGOTIATED, 'compressed pages, which this secondary did not offer on this connection', site);
    }
    if (s.epochs === 0) throw new StreamError(ErrorCodes.RECORD_OUT_OF_ORDER, "compressed pages before the stream's first checkpoint: there is no base to apply a delta to yet", site);
  }

  private applyDeviceDirect(s: StreamProgress, device: ReplicaDevice, body: Buffer, item: RecordItem): ReceiverAction[] {
    const update = device.parse(body, { offset: item.offset });
    // The full sync (which zeroes what it does not send) must come before any other update, or it would wipe them.
    if (!update.fullSync && !s.synced.has(device)) {
      throw new StreamError(ErrorCodes.RECORD_OUT_OF_ORDER, `${device.name} updates before its full sync`, {
        offset: item.offset,
        record: `libxl ${recordTypeName('libxl', device.code)}`,
      });
    }
    update.apply();
    s.synced.add(device);
    return this.invalidate();
  }

  private applyDirect(s: StreamProgress, rec: PageDataRecord): ReceiverAction[] {
    // Types without data (XTAB, XALLOC, BROKEN) name a pfn with nothing to copy; they still count as sent.
    const pfns = dataPfns(rec);
    const keeper = this.keepers?.pages;
    if (keeper === undefined) this.replica.writePages(pfns, rec.pages);
    else {
      const changed = keeper.changes(pfns, rec.pages);
      if (changed.pfns.length > 0) this.replica.writePages(changed.pfns, changed.pages);
    }
    const actions = this.invalidate();
    for (let i = 0; i < rec.pfns.length; i++) {
      const pfn = rec.pfns[i];
      const bit = 1 << (pfn & 31);
      if ((s.coverage[pfn >>> 5] & bit) === 0) {
        s.coverage[pfn >>> 5] |= bit;
        s.covered++;
      }
    }
    s.directPages += rec.pfns.length;
    return actions;
  }

  private commit(s: StreamProgress, item: RecordItem): ReceiverAction[] {
    const b = s.buffer;
    const epoch = s.epochs + 1;
    const site = { offset: item.offset, record: 'libxl CHECKPOINT_END' };
    if (epoch === 1) {
      // The first checkpoint must leave a whole guest: every page, the vCPUs and the device model.
      const pages = this.replica.info.pages;
      if (s.covered !== pages) {
        throw new StreamError(
          ErrorCodes.REPLICA_MISMATCH,
          `first checkpoint after a pre-copy of ${s.covered} of the replica's ${pages} pages (the primary's guest is smaller than the replica?)`,
          site,
        );
      }
      if (b.hvmContext === undefined) throw new StreamError(ErrorCodes.RECORD_OUT_OF_ORDER, 'first checkpoint without HVM_CONTEXT', site);
      if (b.deviceModel === undefined) throw new StreamError(ErrorCodes.RECORD_OUT_OF_ORDER, 'first checkpoint without EMULATOR_CONTEXT', site);
      for (const device of this.devices.values()) {
        if (!s.synced.has(device)) throw new StreamError(ErrorCodes.REPLICA_MISMATCH, `first checkpoint without a full sync of ${device.name} (the primary has no such device?)`, site);
      }
    }
    const before = this.applyContext(b);
    if (b.deviceModel !== undefined) {
      this.loading = { s, b, item, before };
      return [{ type: 'load-device-model', epoch, state: b.deviceModel.value }];
    }
    return this.finishCommit(s, b, item);
  }

  private finishCommit(s: StreamProgress, b: EpochBuffer, item: RecordItem): ReceiverAction[] {
    const epoch = s.epochs + 1;
    const started = performance.now();
    this.applyPages(b);
    const applyMs = performance.now() - started;

    s.epochs = epoch;
    this.committed = epoch;
    // The stream's first checkpoint replaces the one kept while it synced.
    if (epoch === 1) this.release();
    this.replicaState = 'protected';
    const commit: EpochCommit = { epoch, pages: b.pages + (epoch === 1 ? s.directPages : 0), bytes: item.end - s.epochStart, applyMs };
    s.epochStart = item.end;
    s.buffer = new EpochBuffer();
    return [
      { type: 'committed', commit },
      { type: 'ack', ack: { type: 'ACK', epoch, status: AckStatus.APPLIED, reason: '' } },
    ];
  }

  /**
   * The vCPU/platform context goes first, pages last: the context and the
   * device model are what a replica may refuse, and a refusal before any
   * page is written leaves the replica at its last epoch. Returns the
   * context it replaced, for a refused device model to put back.
   */
  private applyContext(b: EpochBuffer): PlatformContext | undefined {
    if (b.hvmContext === undefined) return undefined;
    const current = this.replica.platformContext();
    const ctx = b.hvmContext;
    this.guard(ctx, 'libxc HVM_CONTEXT', () => this.replica.setPlatformContext({ tsc: b.tsc ?? current.tsc, hvmParams: b.params ?? current.hvmParams, hvmContext: ctx.value }));
    return current;
  }

  private applyPages(b: EpochBuffer): void {
    try {
      for (const rec of b.pageRecords) {
        if (rec.type === 'PAGE_DATA') this.replica.writePages(dataPfns(rec), rec.pages);
        else this.applyXbzrle(rec);
      }
      // Device updates were checked when they arrived: like pages, only a failing hypervisor refuses them now.
      for (const u of b.updates) u.apply();
    } catch (err) {
      // The decoder bounds every pfn by the replica's size, so only a
      // failing hypervisor gets here; the replica is then half-written.
      this.committed = 0;
      throw err;
    }
  }

  /**
   * Writes a compressed record's pages, each delta applied to the replica's
   * page as the records before it left it (checked at decode: this cannot
   * fail halfway). Only offered to a replica with writablePage (features).
   */
  private applyXbzrle(rec: XbzrleRecord): void {
    const replica = this.replica;
    applyXbzrlePages(rec, replica.writablePage!.bind(replica), (pfns, pages) => replica.writePages(pfns, pages));
  }

  /** Runs a replica call; a refusal becomes a StreamError on the record. */
  private guard(held: Held<Buffer>, name: string, apply: () => void): void {
    try {
      apply();
    } catch (err) {
      const detail = err instanceof Error ? err.message : String(err);
      throw new StreamError(ErrorCodes.REPLICA_MISMATCH, `the replica refused it: ${detail}`, { offset: held.offset, record: name }, { cause: err });
    }
  }

  private overLimit(s: StreamProgress, needed: number): ReceiverAction[] {
    const epoch = s.epochs + 1;
    const reason = `epoch ${epoch} needs more than the ${this.options.maxEpochBytes}-byte epoch buffer (${needed} bytes so far)`;
    this.close();
    return [
      { type: 'ack', ack: { type: 'ACK', epoch, status: AckStatus.OVER_BUFFER_LIMIT, reason } },
      { type: 'close', outcome: 'over-buffer-limit', epoch, reason },
    ];
  }
}

/** The pfns of a PAGE_DATA record that carry data, in order (all of them, usually). */
function dataPfns(rec: PageDataRecord): number[] {
  let all = true;
  for (let i = 0; i < rec.types.length && all; i++) all = pageTypeHasData(rec.types[i]);
  return all ? rec.pfns : rec.pfns.filter((_, i) => pageTypeHasData(rec.types[i]));
}
