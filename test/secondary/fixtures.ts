/**
 * Streams for the secondary tests, written by the real save path
 * (StreamSaver) from a primary SimDomain running a seeded guest workload,
 * with the primary's stateDigest taken at each checkpoint while it is paused.
 */
import { Writable } from 'node:stream';
import { pino, type Logger } from 'pino';
import { StreamSaver } from '../helpers/stream-saver.js';
import { stateDigest } from '../../src/domain/sim/digest.js';
import { SimWorkload } from '../../src/domain/sim/workload.js';
import { SimDomain } from '../../src/domain/sim/domain.js';
import { StreamDecoder } from '../../src/stream/decoder.js';
import { StreamEncoder } from '../../src/stream/encoder.js';
import { DomainType, PAGE_SIZE, TandemType } from '../../src/stream/format.js';
import { encodePrimaryRecord } from '../../src/stream/primary-record.js';
import { SimBinding, type SimReplicaGuest } from '../../src/domain/sim/binding.js';
import type { ActionSink, ReplicationSession } from '../../src/secondary/session.js';
import { createLogger } from '../../src/util/logger.js';

const silentLogger = createLogger('silent');

export interface RecordedStream {
  bytes: Buffer;
  /** The primary's stateDigest at checkpoint k, at index k - 1. */
  digests: string[];
  /** Offset just past the k-th CHECKPOINT_END, at index k - 1: epoch k is complete once that many bytes arrived. */
  epochEnds: number[];
  pages: number;
}

export interface StreamPlan {
  pages: number;
  epochs: number;
  seed: number;
  /** Guest writes per epoch (and during each live round). */
  writes?: number;
  /** Live pre-copy rounds before the first suspend (default 2). */
  liveRounds?: number;
  /** Epochs in which the guest also dirties this many distinct pages. */
  heavy?: Record<number, number>;
  /** After the last checkpoint, pages that no CHECKPOINT_END commits before the END. */
  trailingPages?: number[];
  /** Open with TANDEM_PRIMARY naming this generation, as a Tandem primary's stream does. */
  generation?: number;
}

export function recordStream(plan: StreamPlan): RecordedStream {
  const { pages, epochs, seed } = plan;
  const writes = plan.writes ?? 30;
  const primary = new SimDomain({ pages, now: () => 1n });
  const guest = new SimWorkload(primary, seed);
  guest.boot();
  const chunks: Buffer[] = [];
  // Copies: page views change as soon as the guest runs again.
  const saver = new StreamSaver(primary, { framing: 'libxl', version: 3 }, (c) => {
    for (const b of c) chunks.push(Buffer.from(b));
  });
  const digests: string[] = [];
  const epochEnds: number[] = [];

  if (plan.generation === undefined) saver.start();
  else {
    saver.begin();
    saver.libxlRecords([{ layer: 'libxl', type: 'OPTIONAL', code: TandemType.TANDEM_PRIMARY, data: encodePrimaryRecord(plan.generation) }]);
    saver.startLibxc();
  }
  primary.enableLogDirty();
  saver.sendPages(Array.from({ length: pages }, (_, pfn) => pfn));
  for (let round = 1; round < (plan.liveRounds ?? 2); round++) {
    guest.run(writes);
    saver.sendPages(primary.readAndClearDirty());
  }
  for (let epoch = 1; epoch <= epochs; epoch++) {
    guest.run(writes);
    const heavy = plan.heavy?.[epoch] ?? 0;
    for (let i = 0; i < heavy; i++) primary.write(((i * 7) % pages) * PAGE_SIZE + 16, Buffer.from([epoch, i & 0xff, 0x5a]));
    primary.pause();
    saver.sendPages(primary.readAndClearDirty());
    saver.endOfCheckpoint();
    saver.checkpoint();
    digests.push(stateDigest(primary));
    epochEnds.push(saver.position);
    primary.unpause();
  }
  if (plan.trailingPages) saver.sendPages(plan.trailingPages);
  saver.end();
  return { bytes: Buffer.concat(chunks), digests, epochEnds, pages };
}

/** A well-formed libxl-framed stream for a PV guest, up to its first page. */
export function pvStreamHead(): Buffer {
  const enc = new StreamEncoder('libxl');
  return Buffer.concat([
    ...enc.libxlHeader(),
    ...enc.record({ layer: 'libxl', type: 'LIBXC_CONTEXT' }),
    ...enc.imageHeader(3),
    ...enc.domainHeader({ type: DomainType.X86_PV, pageShift: 12, xenMajor: 4, xenMinor: 17 }),
    ...enc.record({ layer: 'libxc', type: 'X86_PV_INFO', guestWidth: 8, ptLevels: 4 }),
    ...enc.record({ layer: 'libxc', type: 'STATIC_DATA_END' }),
    ...enc.record({ layer: 'libxc', type: 'X86_PV_P2M_FRAMES', startPfn: 0, endPfn: 0, frames: [0n] }),
  ]);
}

/** A record header (type, body length) announcing a body of `length` bytes. */
export function recordHeader(type: number, length: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt32LE(type, 0);
  b.writeUInt32LE(length >>> 0, 4);
  return b;
}

export interface CapturedLog {
  logger: Logger;
  lines: () => Record<string, unknown>[];
  /** Lines whose message matches. */
  find: (re: RegExp) => Record<string, unknown>[];
}

/** A pino logger writing JSON lines into memory. */
export function captureLog(): CapturedLog {
  const text: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      text.push(chunk.toString('utf8'));
      done();
    },
  });
  const logger = pino({ level: 'debug' }, sink);
  const lines = (): Record<string, unknown>[] =>
    text
      .join('')
      .split('\n')
      .filter((l) => l.length > 0)
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  return { logger, lines, find: (re) => lines().filter((l) => re.test(String(l.msg))) };
}

/** Where each record of a complete stream starts and ends, by name (`libxc PAGE_DATA`). */
export function recordsOf(bytes: Buffer): { name: string; offset: number; end: number }[] {
  const decoder = new StreamDecoder({ format: 'libxl' });
  const out: { name: string; offset: number; end: number }[] = [];
  for (const item of decoder.push(bytes)) {
    if (item.kind === 'record') out.push({ name: `${item.record.layer} ${item.record.type}`, offset: item.offset, end: item.end });
  }
  decoder.end();
  return out;
}

/**
 * Feeds `bytes` (or the end of the stream) to a session and answers its
 * device-model loads at once with the sim replica's own synchronous load,
 * so every action of the push has been delivered when this returns. The
 * secondary server does the same asynchronously. Load requests are not
 * passed to `act`; what they lead to (the commit, or the refusal) is.
 */
export function feedSession(session: ReplicationSession, replica: SimDomain, bytes: Buffer | 'end', act: ActionSink): void {
  let pending: Buffer | undefined;
  const sink: ActionSink = (a) => {
    if (a.type === 'load-device-model') pending = a.state;
    else act(a);
  };
  if (bytes === 'end') session.end(sink);
  else session.push(bytes, sink);
  while (session.blocked && pending !== undefined) {
    const state = pending;
    pending = undefined;
    try {
      replica.loadDeviceModelState(state);
    } catch (err) {
      session.deviceModelRefused(err, sink);
      continue;
    }
    session.deviceModelLoaded(sink);
  }
}

/**
 * A sim replica of `pages` pages: its guest (domain for an EpochReceiver),
 * its SimDomain for checks, and the two as a server's replica whose digest
 * leaves the disk out, as recordStream's digests do.
 */
export function simReplica(pages: number): { guest: SimReplicaGuest; sim: SimDomain; withoutDisk: Pick<SimReplicaGuest, 'domain' | 'digest'> } {
  const guest = new SimBinding({ pages, vcpus: 1, diskBytes: 4096 }).replica(silentLogger);
  return { guest, sim: guest.sim, withoutDisk: { domain: guest.domain, digest: () => stateDigest(guest.sim) } };
}
