/**
 * A replica a hypervisor restores itself (Xen: `xl migrate-receive -r -e`):
 * the stream goes to it only in whole, valid epochs (EpochGate), without
 * Tandem's own records, which it does not know; an epoch is acked once the
 * hypervisor has it. The stream's TANDEM_DOMAIN_CONFIG opens the restore:
 * the hypervisor builds the domain from that config.
 *
 * What a stream's failure leaves:
 * - torn or invalid inside an epoch: the restore keeps every checkpoint it
 *   was given (a failover goes from the last of them);
 * - failing before its first checkpoint: the restore holds nothing and is
 *   given up;
 * - the restore itself failing (the hypervisor's tool died): nothing is
 *   held any more.
 *
 * A new stream opens a new restore and gives up the one before, with its
 * checkpoint (a hypervisor restore takes one stream; said as 'invalidated').
 */
import type { EpochRestore } from '../domain/binding.js';
import { ErrorCodes, StreamError } from '../errors.js';
import { parseDomainConfigRecord, type DomainConfig } from '../stream/domain-config-record.js';
import { TandemType } from '../stream/format.js';
import { AckStatus } from '../transport/backchannel.js';
import { EpochGate, type GatedEpoch } from './epoch-gate.js';
import type { IntakeAction, IntakeSink, Outcome, ReplicaIntake, StreamIntake, StreamOptions } from './intake.js';
import type { ReplicaState } from './receiver.js';

const TANDEM_CODES: ReadonlySet<number> = new Set(Object.values(TandemType));
/** Pre-copy bytes handed on without holding the connection, before a wait makes the primary slow down to the hypervisor's pace. */
const FLOW_BYTES = 8 * 2 ** 20;

export interface RestoreIntakeOptions {
  /** Most bytes one epoch may hold here before the hypervisor gets it. */
  maxEpochBytes: number;
}

export class RestoreIntake implements ReplicaIntake {
  /** Checkpoints the restore under way holds. */
  held = 0;
  /** The latest stream: only its restore is the one open. */
  current: RestoreStream | undefined;

  constructor(
    readonly restore: EpochRestore,
    readonly options: RestoreIntakeOptions,
  ) {}

  get state(): ReplicaState {
    const s = this.current;
    if (s === undefined || s.closed) return 'idle';
    return s.checkpoints > 0 ? 'protected' : 'syncing';
  }

  get lastEpoch(): number {
    return this.held;
  }

  /** Xen's restore reads the stream: it knows no Tandem page records, so nothing beyond Xen's stream is offered. */
  readonly features = 0;

  open(options: StreamOptions): StreamIntake {
    const stream = new RestoreStream(this, options);
    this.current = stream;
    return stream;
  }
}

class RestoreStream implements StreamIntake {
  private readonly gate: EpochGate;
  private config: DomainConfig | undefined;
  /** Handed-on bytes waiting for the config (only at the stream's opening). */
  private early: GatedEpoch[] = [];
  private waiting = false;
  /** Chunks that came while waiting, and an end seen meanwhile. */
  private queue: Buffer[] = [];
  private ended = false;
  /** Epochs under way to the hypervisor. */
  private inFlight: GatedEpoch[] = [];
  /** This stream's checkpoints the restore holds. */
  checkpoints = 0;
  closed = false;
  private started = false;
  /** This stream's restore is open (the hypervisor got its config). */
  private ownRestore = false;
  /** Pre-copy bytes on their way to the hypervisor that no wait has taken up yet. */
  private flowing: Promise<void> = Promise.resolve();
  private flowingBytes = 0;

  constructor(
    private readonly intake: RestoreIntake,
    options: StreamOptions,
  ) {
    this.gate = new EpochGate({
      limits: { maxRecordBytes: options.maxRecordBytes },
      strip: (item) => {
        const rec = item.record;
        // Xen's libxc would skip it as an optional record it does not know, and the replica would miss its pages.
        if (rec.type === 'TANDEM_PAGE_XBZRLE') throw new StreamError(ErrorCodes.RECORD_NOT_NEGOTIATED, "compressed pages, which Xen's restore cannot read and this secondary did not offer", { offset: item.offset, record: 'libxc TANDEM_PAGE_XBZRLE' });
        if (rec.layer !== 'libxl' || rec.type !== 'OPTIONAL' || !TANDEM_CODES.has(rec.code)) {
          // The config opens the stream (after TANDEM_PRIMARY): without it there is no domain to build.
          if (this.config === undefined) throw new StreamError(ErrorCodes.STREAM_BAD_DOMAIN_TYPE, `the stream carries no TANDEM_DOMAIN_CONFIG before its first record: its domain is not one this replica's hypervisor can build (is the primary's domain of the same type?)`, { offset: item.offset });
          return false;
        }
        if (rec.code === TandemType.TANDEM_DOMAIN_CONFIG && this.config === undefined) this.config = parseDomainConfigRecord(rec.data, { offset: item.offset });
        return true;
      },
    });
  }

  get blocked(): boolean {
    return this.waiting;
  }

  start(): void {
    this.started = true;
  }

  push(chunk: Buffer, act: IntakeSink): void {
    if (this.closed || !this.started) return;
    if (this.waiting) {
      this.queue.push(chunk);
      return;
    }
    let epochs: GatedEpoch[];
    try {
      epochs = this.gate.push(chunk);
    } catch (err) {
      // A strip callback's refusal (a malformed config record): the gate's own errors are in `failure`.
      return this.fail(err, act);
    }
    this.forward(epochs, act);
  }

  end(act: IntakeSink): void {
    if (this.closed) return;
    if (this.waiting) {
      this.ended = true;
      return;
    }
    this.ended = true;
    const end = this.gate.end();
    if (end.clean && this.checkpoints > 0) {
      // Right after a checkpoint: the stream's failover point, not a truncation. The restore stays open.
      this.close();
      act({ type: 'close', outcome: 'end', atCheckpoint: true });
      return;
    }
    this.fail(this.gate.failure ?? new StreamError(ErrorCodes.STREAM_TRUNCATED, 'the stream ended before its first checkpoint', { offset: 0 }), act);
  }

  abort(): number {
    if (this.closed) return 0;
    this.close();
    void this.giveUpIfEmpty();
    return this.checkpoints + 1;
  }

  settled(outcome: Outcome, act: IntakeSink): void {
    if (!this.waiting) return;
    this.waiting = false;
    const done = this.inFlight;
    this.inFlight = [];
    if (!outcome.ok) {
      // The hypervisor's restore failed: whatever it held is gone with it.
      this.intake.held = 0;
      const error = outcome.error instanceof Error ? outcome.error : new Error(String(outcome.error));
      this.fail(new StreamError(ErrorCodes.REPLICA_MISMATCH, `the hypervisor's restore refused the stream: ${error.message}`, { offset: 0 }, { cause: error }), act, false);
      return;
    }
    for (const e of done) {
      if (e.checkpoint === 0) continue;
      this.checkpoints = e.checkpoint;
      this.intake.held = e.checkpoint;
      act({ type: 'committed', commit: { epoch: e.checkpoint, pages: e.pages, bytes: e.bytes, applyMs: 0 } });
      act({ type: 'ack', ack: { type: 'ACK', epoch: e.checkpoint, status: AckStatus.APPLIED, reason: '' } });
    }
    if (this.closed) return;
    const failure = this.gate.failure;
    if (failure !== undefined) return this.fail(failure, act);
    // Chunks that came meanwhile, in order: once a push waits again, push() queues the rest itself.
    const queued = this.queue;
    this.queue = [];
    for (const chunk of queued) this.push(chunk, act);
    if (this.ended && !this.waiting) this.end(act);
  }

  /** Sends what the gate let through to the hypervisor, as one piece of work; checks the gate's failure and the epoch's size. */
  private forward(epochs: GatedEpoch[], act: IntakeSink): void {
    const failure = this.gate.failure;
    if (this.config === undefined) {
      // Only the libxl header so far: it goes with the first bytes after the config.
      this.early.push(...epochs);
      if (failure !== undefined) this.fail(failure, act);
      return;
    }
    const open = !this.ownRestore;
    const batch = open ? [...this.early, ...epochs] : epochs;
    this.early = [];
    const limit = this.intake.options.maxEpochBytes;
    if (this.checkpoints > 0 && this.gate.heldBytes > limit) {
      const epoch = this.checkpoints + 1;
      const reason = `epoch ${epoch} holds more than ${limit} bytes`;
      this.close();
      act({ type: 'ack', ack: { type: 'ACK', epoch, status: AckStatus.OVER_BUFFER_LIMIT, reason } });
      act({ type: 'close', outcome: 'over-buffer-limit', epoch, reason });
      return;
    }
    if (batch.length === 0 && !open) {
      if (failure !== undefined) this.fail(failure, act);
      return;
    }
    const config = this.config;
    const previous = this.intake.held;
    if (open) {
      this.ownRestore = true;
      this.intake.held = 0;
      if (previous > 0) act({ type: 'invalidated', previousEpoch: previous, reason: 'a new stream opens a new restore; the hypervisor\'s restore of the previous one is given up' });
    }
    const restore = this.intake.restore;
    const bytes = batch.reduce((n, e) => n + e.bytes, 0);
    if (!open && failure === undefined && batch.every((e) => e.checkpoint === 0) && this.flowingBytes + bytes <= FLOW_BYTES) {
      // Before checkpoint 1 nothing is acked: the pre-copy flows on behind what went before without
      // holding the connection for each chunk (a round trip per TLS record, were it held). The next
      // wait takes up whatever this leaves pending, its failure included.
      this.flowingBytes += bytes;
      this.flowing = this.flowing.then(async () => {
        for (const e of batch) await restore.give(e.chunks);
      });
      this.flowing.catch(() => undefined);
      return;
    }
    const before = this.flowing;
    this.flowing = Promise.resolve();
    this.flowingBytes = 0;
    this.inFlight = batch;
    this.waiting = true;
    const work = async (): Promise<void> => {
      await before;
      if (open) await restore.open({ json: config.json, name: config.name });
      for (const e of batch) await restore.give(e.chunks);
    };
    const action: IntakeAction = { type: 'wait', epoch: this.checkpoints + 1, work };
    act(action);
  }

  private fail(err: unknown, act: IntakeSink, giveUp = true): void {
    if (this.closed) return;
    const error = err instanceof Error ? err : new Error(String(err));
    const epoch = this.checkpoints + 1;
    this.close();
    if (giveUp) void this.giveUpIfEmpty();
    act({ type: 'ack', ack: { type: 'ACK', epoch, status: AckStatus.STREAM_ERROR, reason: error.message } });
    act({ type: 'close', outcome: 'stream-error', epoch, error });
  }

  /** A restore that holds no checkpoint of this stream has nothing to fail over to: it goes. */
  private async giveUpIfEmpty(): Promise<void> {
    if (this.checkpoints > 0 || !this.ownRestore || this.intake.current !== this) return;
    this.ownRestore = false;
    this.intake.held = 0;
    await this.intake.restore.close().catch(() => undefined);
  }

  private close(): void {
    this.closed = true;
    this.queue = [];
  }
}
