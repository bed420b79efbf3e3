/**
 * `tandem save`: a domain's stream into a file, plain (one snapshot ending
 * in END) or checkpointed (a live pass over every page, then exactly N
 * checkpoints, then END). It runs the same CheckpointSession as protection
 * does, with the file as the target: a checkpoint is held once it is
 * written. The guest runs again whatever the sink does.
 */
import type { ProtectedDomain } from '../domain/types.js';
import type { Framing } from '../stream/layout.js';
import { DeviceSet } from './devices.js';
import { CheckpointSession, type CheckpointTarget, type EpochMetrics } from './session.js';
import { remusEpochs } from './strategies.js';

/** Takes the stream's chunks in order; may throw (a full disk), which ends the save. */
export type ChunkSink = (chunks: readonly Buffer[]) => void;

export interface SaveOptions {
  framing: Framing;
  /** libxc stream version. */
  version: 2 | 3;
  /** 0: a plain save. N > 0: a checkpointed stream of exactly N epochs. */
  checkpoints: number;
  /** A plain save that succeeded leaves the domain suspended for the caller (who destroys it, as `xl save` does); a failed one resumes it. */
  leaveSuspended?: boolean;
}

export interface EpochSummary {
  epoch: number;
  pages: number;
  bytes: number;
}

export interface SaveSummary {
  bytes: number;
  epochs: EpochSummary[];
  /** How a checkpointed stream ended: END, or right after its last checkpoint (a Xen domain's: its failover point). */
  end: 'END' | 'checkpoint';
}

/** A sink as a checkpoint target: what is written is held. */
function sinkTarget(sink: ChunkSink): CheckpointTarget {
  return {
    write: (chunks) => {
      sink(chunks);
      return Promise.resolve();
    },
    flushed: () => Promise.resolve(),
    held: () => Promise.resolve(),
  };
}

const summaryOf = (m: EpochMetrics): EpochSummary => ({ epoch: m.epoch, pages: m.dirtyPages, bytes: m.bytes });

export async function saveDomain(domain: ProtectedDomain, options: SaveOptions, sink: ChunkSink): Promise<SaveSummary> {
  // A plain save that fails resumes the guest only if it got as far as suspending it.
  let suspended = false;
  const session = new CheckpointSession({
    domain: {
      info: domain.info,
      saver: domain.saver,
      suspend: async () => {
        await domain.suspend();
        suspended = true;
      },
      resume: () => domain.resume(),
      saveDeviceModel: () => domain.saveDeviceModel(),
    },
    devices: new DeviceSet(),
    target: sinkTarget(sink),
    strategy: remusEpochs,
    framing: options.framing,
    version: options.version,
    // One live pass over every page, then the first checkpoint.
    precopyPolicy: () => 'stop-and-copy',
    now: () => performance.now(),
  });
  if (options.checkpoints === 0) {
    try {
      await session.plain();
    } catch (err) {
      if (suspended) await domain.resume();
      throw err;
    }
    if (options.leaveSuspended !== true) await domain.resume();
    return { bytes: session.bytesSent, epochs: [{ epoch: 0, pages: domain.info.pages, bytes: session.bytesSent }], end: 'END' };
  }
  const epochs = [summaryOf((await session.precopy()).first)];
  while (epochs.length < options.checkpoints) epochs.push(summaryOf(await session.checkpoint('operator')));
  await session.end();
  return { bytes: session.bytesSent, epochs, end: session.endedWith ?? 'END' };
}

/**
 * `domain`, with `step` run just before each suspend: a synchronous guest
 * (the sim's synthetic workload) thus runs between checkpoints, as a real
 * guest does all along.
 */
export function runBeforeEachSuspend(domain: ProtectedDomain, step: () => void): ProtectedDomain {
  return {
    info: domain.info,
    saver: domain.saver,
    suspend: () => {
      step();
      return domain.suspend();
    },
    resume: () => domain.resume(),
    saveDeviceModel: () => domain.saveDeviceModel(),
  };
}
