/**
 * What differs between a Remus epoch and a COLO epoch, and nothing else:
 * the session (session.ts) runs the rest of every epoch the same way.
 *
 * - Remus: the secondary only keeps checkpoints. The guest resumes as soon
 *   as the checkpoint is captured (postcopy) and runs while it is sent.
 * - COLO: the secondary runs its own copy of the guest. Each checkpoint
 *   after the first is announced (libxl CHECKPOINT_STATE "new checkpoint")
 *   so the secondary suspends its guest; the pages that guest dirtied are
 *   sent too; and the primary's guest stays paused until the secondary
 *   holds the checkpoint and is ready, because output after the resume must
 *   be compared against the secondary's, never released on the strength of
 *   this checkpoint.
 */
import { ColoControl } from '../stream/format.js';
import type { BackChannelRecord } from '../transport/backchannel.js';
import { CheckpointError, CheckpointErrorCodes } from './errors.js';

export type ReplicationKind = 'remus' | 'colo';

/** Writes libxl records into the stream (the session's writer). */
export interface LibxlRecordWriter {
  coloNewCheckpoint(): void;
  flush(): Promise<void>;
}

export interface EpochStrategy {
  readonly kind: ReplicationKind;
  /** When the guest runs again: at postcopy, or once the secondary holds the checkpoint. */
  readonly resumeAt: 'postcopy' | 'held';
  /** Before the guest is suspended for `epoch` (the first is the pre-copy's). */
  beforeSuspend?(epoch: number, writer: LibxlRecordWriter): Promise<void>;
  /** After the suspend: pages the secondary's guest dirtied, ascending. */
  secondaryDirtyPages?(epoch: number): Promise<Uint32Array>;
  /** The secondary holds `epoch`; before the devices commit it. */
  afterHeld?(epoch: number): Promise<void>;
}

export const remusEpochs: EpochStrategy = { kind: 'remus', resumeAt: 'postcopy' };

/** The back-channel records the COLO handshake reads (the replication link's). */
export interface ColoBackChannel {
  nextRecord<T extends 'CHECKPOINT_STATE' | 'CHECKPOINT_DIRTY_PFN_LIST'>(type: T, timeoutMs: number): Promise<Extract<BackChannelRecord, { type: T }>>;
}

const handshake = (message: string): CheckpointError => new CheckpointError(CheckpointErrorCodes.COLO_HANDSHAKE, message);

export class ColoEpochs implements EpochStrategy {
  readonly kind = 'colo';
  readonly resumeAt = 'held';

  constructor(
    private readonly backChannel: ColoBackChannel,
    private readonly pages: number,
    private readonly timeoutMs: number,
  ) {}

  async beforeSuspend(epoch: number, writer: LibxlRecordWriter): Promise<void> {
    // The first checkpoint is the pre-copy's: no secondary guest runs yet to announce it to.
    if (epoch === 1) return;
    writer.coloNewCheckpoint();
    await writer.flush();
  }

  /** The secondary's guest is paused: the pages it wrote since the last checkpoint, ascending, checked. */
  async secondaryDirtyPages(epoch: number): Promise<Uint32Array> {
    if (epoch === 1) return new Uint32Array(0);
    // The previous checkpoint ended with the secondary's SVM_RESUMED; this one starts with SVM_SUSPENDED.
    const resumed = await this.backChannel.nextRecord('CHECKPOINT_STATE', this.timeoutMs);
    if (resumed.controlId !== ColoControl.SVM_RESUMED) throw handshake(`expected the secondary's SVM_RESUMED of the last checkpoint, got control id ${resumed.controlId}`);
    const state = await this.backChannel.nextRecord('CHECKPOINT_STATE', this.timeoutMs);
    if (state.controlId !== ColoControl.SVM_SUSPENDED) throw handshake(`expected the secondary's SVM_SUSPENDED, got control id ${state.controlId}`);
    const list = await this.backChannel.nextRecord('CHECKPOINT_DIRTY_PFN_LIST', this.timeoutMs);
    const pfns = Uint32Array.from(list.pfns).sort();
    if (pfns.length > 0 && pfns[pfns.length - 1] >= this.pages) {
      throw handshake(`the secondary reported dirty pfn ${pfns[pfns.length - 1]} beyond the guest's ${this.pages} pages`);
    }
    return pfns;
  }

  async afterHeld(epoch: number): Promise<void> {
    const ready = await this.backChannel.nextRecord('CHECKPOINT_STATE', this.timeoutMs);
    if (ready.controlId !== ColoControl.SVM_READY) throw handshake(`expected the secondary's SVM_READY after epoch ${epoch}, got control id ${ready.controlId}`);
  }
}
