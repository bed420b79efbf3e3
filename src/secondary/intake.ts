/**
 * What the secondary server feeds a primary's stream into: the replica's
 * intake. The server owns the connections and their policy (one primary,
 * generations, acks on the wire, events); an intake owns what a stream does
 * to the replica. Two kinds, chosen by the replica (src/domain/binding.ts):
 *
 * - PageIntake: Tandem decodes the stream and applies it page by page
 *   (EpochReceiver), for a replica Tandem can write (the sim).
 * - RestoreIntake (restore-intake.ts): whole epochs go to the hypervisor's
 *   own restore, which alone can build a real domain (Xen).
 *
 * A stream's work that is not synchronous (a device model taking its state,
 * Xen taking an epoch) is a 'wait' action: the server stops reading the
 * connection, runs the work, and reports how it went with settled().
 */
import type { ReplicaDomain } from '../domain/types.js';
import { EpochReceiver, type ReceiverAction, type ReceiverOptions, type ReplicaState } from './receiver.js';
import { ReplicationSession } from './session.js';

export type IntakeAction =
  | Exclude<ReceiverAction, { type: 'load-device-model' }>
  /** Run `work`, then call settled() with its outcome; nothing else may be fed meanwhile. */
  | { type: 'wait'; epoch: number; work: () => Promise<void> };

export type IntakeSink = (action: IntakeAction) => void;

export type Outcome = { ok: true } | { ok: false; error: unknown };

export interface StreamOptions {
  /** Largest non-page record body accepted. */
  maxRecordBytes: number;
  /** A COLO stream (CHECKPOINT_STATE announces each checkpoint after the first). */
  colo: boolean;
  /** TandemFeature bits offered to this stream's primary; a subset of the intake's `features`. */
  features?: number;
}

/** One stream from one primary: bytes in, actions out. */
export interface StreamIntake {
  /** Waiting for the work of a 'wait' action: the caller should stop reading the connection meanwhile. */
  readonly blocked: boolean;
  start(): void;
  /** Feeds bytes from the primary. After the stream has closed, bytes are ignored. */
  push(chunk: Buffer, act: IntakeSink): void;
  /** The primary sent its last byte (half-close). */
  end(act: IntakeSink): void;
  /** The connection is gone with no chance to answer. Returns the epoch torn (0 if none was open). */
  abort(): number;
  /** The work the last 'wait' asked for is over. */
  settled(outcome: Outcome, act: IntakeSink): void;
}

/** The replica as streams see it, kept across them. */
export interface ReplicaIntake {
  readonly state: ReplicaState;
  /** The epoch (of the latest stream) the replica holds; 0 when it holds no complete checkpoint. */
  readonly lastEpoch: number;
  /** TandemFeature bits its streams may use, when offered to their primary (TANDEM_FEATURES). */
  readonly features: number;
  /** A new stream (a new connection). */
  open(options: StreamOptions): StreamIntake;
}

/** Tandem applies the stream to a replica it can write, page by page. */
export class PageIntake implements ReplicaIntake {
  private readonly receiver: EpochReceiver;

  constructor(
    private readonly domain: ReplicaDomain,
    options: ReceiverOptions,
  ) {
    this.receiver = new EpochReceiver(domain, options);
  }

  get state(): ReplicaState {
    return this.receiver.state;
  }

  get lastEpoch(): number {
    return this.receiver.lastEpoch;
  }

  get features(): number {
    return this.receiver.features;
  }

  open(options: StreamOptions): StreamIntake {
    return new PageStream(new ReplicationSession(this.receiver, { replicaPages: this.domain.info.pages, ...options }), this.domain);
  }
}

/** A ReplicationSession, its device-model loads as 'wait' actions. */
class PageStream implements StreamIntake {
  constructor(
    private readonly session: ReplicationSession,
    private readonly domain: ReplicaDomain,
  ) {}

  get blocked(): boolean {
    return this.session.blocked;
  }

  start(): void {
    this.session.start();
  }

  push(chunk: Buffer, act: IntakeSink): void {
    this.session.push(chunk, this.sink(act));
  }

  end(act: IntakeSink): void {
    this.session.end(this.sink(act));
  }

  abort(): number {
    return this.session.abort();
  }

  settled(outcome: Outcome, act: IntakeSink): void {
    if (outcome.ok) this.session.deviceModelLoaded(this.sink(act));
    else this.session.deviceModelRefused(outcome.error, this.sink(act));
  }

  private sink(act: IntakeSink): (a: ReceiverAction) => void {
    return (a) => {
      if (a.type !== 'load-device-model') return act(a);
      const state = a.state;
      act({ type: 'wait', epoch: a.epoch, work: () => this.domain.loadDeviceModel(state) });
    };
  }
}
