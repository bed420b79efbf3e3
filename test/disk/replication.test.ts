/**
 * Disk writes through the stream: a primary sim guest writing RAM and disk,
 * saved by the real StreamSaver with the DiskMirror's records in each
 * checkpoint, fed to the secondary's EpochReceiver with a DiskReplica. The
 * replica's disk moves only at CHECKPOINT_END, with its RAM.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { after, describe, test } from 'node:test';
import { StreamSaver } from '../helpers/stream-saver.js';
import { DiskMirror } from '../../src/disk/mirror.js';
import { DiskReplica } from '../../src/disk/replica.js';
import { DISK_BLOCK_SIZE } from '../../src/disk/record.js';
import { SimDisk } from '../../src/domain/sim/disk.js';
import { stateDigest } from '../../src/domain/sim/digest.js';
import { SimDomain } from '../../src/domain/sim/domain.js';
import { ErrorCodes, StreamError } from '../../src/errors.js';
import { LibxlType, PAGE_SIZE, TandemType } from '../../src/stream/format.js';
import { EpochReceiver, type ReceiverAction } from '../../src/secondary/receiver.js';
import { ReplicationSession } from '../../src/secondary/session.js';
import { below } from '../../src/util/xorshift.js';
import { feedSession, recordsOf } from '../secondary/fixtures.js';
import { silent, simBinding } from '../helpers/sim.js';
import { tempDir } from '../helpers/cli.js';
import { verifyCheckpointed } from '../helpers/xen.js';

const PAGES = 64;
const tmp = tempDir();
after(() => tmp.cleanup());
const DISK = 128 * DISK_BLOCK_SIZE;

interface Recorded {
  bytes: Buffer;
  digests: string[];
  epochEnds: number[];
}

/**
 * A checkpointed stream of `epochs` epochs; the guest writes RAM and disk in
 * each. `extra(epoch)` adds raw libxl records to a checkpoint (for refusals).
 */
function record(epochs: number, seed: number, opts: { mirror?: boolean; live?: boolean; extra?: (epoch: number) => Buffer[] } = {}): Recorded {
  const primary = new SimDomain({ pages: PAGES, now: () => 1n });
  const disk = new SimDisk({ capacityBytes: DISK, domain: primary });
  const mirror = new DiskMirror({ disk, maxBlocksPerRecord: 8 });
  const r = below(seed);
  const chunks: Buffer[] = [];
  const saver = new StreamSaver(primary, { framing: 'libxl', version: 3 }, (c) => {
    for (const b of c) chunks.push(Buffer.from(b));
  });
  const write = (n: number): void => {
    for (let i = 0; i < n; i++) {
      primary.write(r(PAGES) * PAGE_SIZE + r(PAGE_SIZE - 8), Buffer.from([r(256), r(256)]));
      disk.write(r(DISK - 8), Buffer.from([r(256), r(256), r(256)]));
    }
  };
  write(20); // before protection: reaches the replica only through the full sync
  if (opts.live === true) {
    // As the session does: the full sync goes live ahead of LIBXC_CONTEXT, the guest writing between its records.
    saver.begin();
    mirror.setup();
    for (const batch of mirror.liveSync()) {
      saver.libxlRecords(batch);
      write(2);
    }
    saver.startLibxc();
    primary.enableLogDirty();
  } else {
    saver.start();
    primary.enableLogDirty();
    if (opts.mirror !== false) mirror.setup();
  }
  saver.sendPages(Array.from({ length: PAGES }, (_, pfn) => pfn));
  const digests: string[] = [];
  const epochEnds: number[] = [];
  for (let epoch = 1; epoch <= epochs; epoch++) {
    write(6);
    primary.pause();
    mirror.postsuspend(epoch);
    saver.sendPages(primary.readAndClearDirty());
    saver.endOfCheckpoint();
    digests.push(stateDigest(primary, [disk]));
    primary.unpause();
    // As the session does: the device records go out after the resume, staged at the suspend.
    write(3);
    const extra = (opts.extra?.(epoch) ?? []).map((data) => ({ layer: 'libxl' as const, type: 'OPTIONAL' as const, code: TandemType.TANDEM_DISK_WRITES, data }));
    saver.checkpoint(undefined, [...mirror.records(epoch), ...extra]);
    epochEnds.push(saver.position);
  }
  saver.end();
  return { bytes: Buffer.concat(chunks), digests, epochEnds };
}

class Replica {
  readonly guest = simBinding(PAGES, { diskBytes: DISK }).replica(silent);
  readonly domain = this.guest.sim;
  readonly disk = this.guest.disk;
  readonly receiver = new EpochReceiver(this.guest.domain, { maxEpochBytes: 1 << 30, devices: [new DiskReplica([this.disk])] });
  readonly actions: ReceiverAction[] = [];
  readonly session = new ReplicationSession(this.receiver, { replicaPages: PAGES, maxRecordBytes: 16 << 20 });

  constructor() {
    this.session.start();
  }

  push(bytes: Buffer): ReceiverAction[] {
    const got: ReceiverAction[] = [];
    feedSession(this.session, this.domain, bytes, (a) => got.push(a));
    this.actions.push(...got);
    return got;
  }

  digest(): string {
    return stateDigest(this.domain, [this.disk]);
  }

  error(): StreamError {
    const close = this.actions.find((a) => a.type === 'close');
    assert.ok(close?.type === 'close' && close.outcome === 'stream-error', JSON.stringify(close));
    assert.ok(close.error instanceof StreamError);
    return close.error;
  }
}

/**
 * Feeds `stream` to a fresh replica cut at `n` random offsets and at every
 * epoch's end; after each commit the replica must equal the primary at that
 * epoch's suspend, and every epoch must commit in order.
 */
function replayCut(stream: Recorded, r: (n: number) => number, n: number): Replica {
  const rep = new Replica();
  const cuts = [...new Set([0, ...Array.from({ length: n }, () => r(stream.bytes.length)), ...stream.epochEnds, stream.bytes.length])].sort((a, b) => a - b);
  const seen: number[] = [];
  for (let i = 1; i < cuts.length; i++) {
    for (const a of rep.push(stream.bytes.subarray(cuts[i - 1], cuts[i]))) {
      if (a.type !== 'committed') continue;
      seen.push(a.commit.epoch);
      assert.equal(rep.digest(), stream.digests[a.commit.epoch - 1], `epoch ${a.commit.epoch}`);
    }
  }
  assert.deepEqual(seen, Array.from({ length: stream.digests.length }, (_, i) => i + 1));
  return rep;
}

describe('disk replication through the stream', () => {
  const stream = record(8, 0x5eed);

  test('after each CHECKPOINT_END the replica disk and RAM equal the primary at that suspend, for any split', () => {
    const rep = replayCut(stream, below(3), 80);
    assert.equal(rep.actions.at(-1)?.type, 'close');
  });

  test('a full sync sent live ahead of LIBXC_CONTEXT: the replica equals the primary at every CHECKPOINT_END, for any split, and Xen reads the stream', () => {
    const live = record(5, 0x11fe, { live: true });
    const records = recordsOf(live.bytes);
    const context = records.findIndex((x) => x.name === 'libxl LIBXC_CONTEXT');
    const ahead = records.slice(0, context).filter((x) => x.name === 'libxl OPTIONAL');
    assert.ok(ahead.length > 1, `the full sync went ahead of the libxc stream in ${ahead.length} records`);
    const firstEnd = records.findIndex((x) => x.name === 'libxl CHECKPOINT_END');
    const inFirst = records.slice(context, firstEnd).filter((x) => x.name === 'libxl OPTIONAL');
    assert.ok(inFirst.length >= 1, 'epoch 1 carries the blocks written during the live sync');
    assert.ok(
      inFirst.every((x) => (live.bytes.readUInt32LE(x.offset + 8 + 4) & 1) === 0),
      'only the live sync resets; the first checkpoint adds to it',
    );
    const r = below(9);
    for (let trial = 0; trial < 4; trial++) replayCut(live, r, 40);
    const file = tmp.path('live-sync.stream');
    writeFileSync(file, live.bytes);
    const v = verifyCheckpointed(file, { optional: [TandemType.TANDEM_DISK_WRITES] });
    assert.equal(v.status, 0, v.stderr);
    assert.equal(v.epochs, 5);
    assert.deepEqual(v.records?.slice(0, ahead.length + 1), [...ahead.map(() => ['libxl', TandemType.TANDEM_DISK_WRITES]), ['libxl', LibxlType.LIBXC_CONTEXT]]);
    // Negative control: without leave to skip it, Xen's verifier refuses the optional record.
    assert.notEqual(verifyCheckpointed(file).status, 0);
  });

  test('a torn epoch leaves the disk at the last checkpoint, even with its disk records all received', () => {
    const records = recordsOf(stream.bytes);
    // Epoch 4: everything up to (not including) its CHECKPOINT_END.
    const ends = records.filter((x) => x.name === 'libxl CHECKPOINT_END');
    const diskRecs = records.filter((x) => x.name === 'libxl OPTIONAL' && x.offset > ends[2].end && x.end <= ends[3].offset);
    assert.ok(diskRecs.length > 0, 'epoch 4 carries disk writes');
    const rep = new Replica();
    rep.push(stream.bytes.subarray(0, ends[3].offset));
    assert.equal(rep.receiver.lastEpoch, 3);
    assert.equal(rep.digest(), stream.digests[2], 'replica (disk included) still at epoch 3');
    assert.equal(rep.session.abort(), 4);
    assert.equal(rep.digest(), stream.digests[2]);
  });

  test('a new stream resets the disk: blocks the old stream wrote and the new one never did read as zero', () => {
    const rep = new Replica();
    rep.push(stream.bytes);
    const other = record(2, 0xabcd);
    const again = new ReplicationSession(rep.receiver, { replicaPages: PAGES, maxRecordBytes: 16 << 20 });
    again.start();
    const acts: ReceiverAction[] = [];
    feedSession(again, rep.domain, other.bytes, (a) => acts.push(a));
    assert.equal(rep.receiver.lastEpoch, 2);
    assert.equal(rep.digest(), other.digests[1]);
  });

  test('a new stream that fails before its first checkpoint leaves RAM and disk at the last checkpoint', () => {
    const other = record(2, 0xabcd);
    const records = recordsOf(other.bytes);
    const firstEnd = records.filter((x) => x.name === 'libxl CHECKPOINT_END')[0];
    const diskRecs = records.filter((x) => x.name === 'libxl OPTIONAL' && x.end <= firstEnd.offset);
    assert.ok(diskRecs.length > 1, 'the full sync spans records');
    // Cut after the disk's RESET, inside its full sync, and just before the first CHECKPOINT_END.
    for (const cut of [diskRecs[0].end, diskRecs[1].end - 3, firstEnd.offset]) {
      for (const how of ['reset', 'half-close'] as const) {
        const rep = new Replica();
        rep.push(stream.bytes);
        assert.equal(rep.receiver.lastEpoch, 8);
        const again = new ReplicationSession(rep.receiver, { replicaPages: PAGES, maxRecordBytes: 16 << 20 });
        again.start();
        const acts: ReceiverAction[] = [];
        feedSession(again, rep.domain, other.bytes.subarray(0, cut), (a) => acts.push(a));
        assert.ok(rep.receiver.keptBytes > 0, `cut at ${cut}: something was kept`);
        if (how === 'reset') again.abort();
        else feedSession(again, rep.domain, 'end', (a) => acts.push(a));
        assert.ok(!acts.some((a) => a.type === 'invalidated'), `cut at ${cut}`);
        assert.equal(rep.receiver.lastEpoch, 8, `cut at ${cut} (${how})`);
        assert.equal(rep.receiver.keptBytes, 0);
        assert.equal(rep.digest(), stream.digests[7], `cut at ${cut} (${how}): RAM and disk are epoch 8 again`);
      }
    }
  });

  test('a first checkpoint without the disk full sync is refused: the primary has no disk', () => {
    const rep = new Replica();
    rep.push(record(2, 1, { mirror: false }).bytes);
    const err = rep.error();
    assert.equal(err.code, ErrorCodes.REPLICA_MISMATCH);
    assert.match(err.message, /first checkpoint without a full sync of disk/);
    assert.equal(rep.receiver.lastEpoch, 0);
  });

  test('a RESET after the first checkpoint, or writes before any RESET, are refused', () => {
    const reset = Buffer.alloc(24);
    reset.writeUInt32LE(1, 4);
    reset.writeUInt32LE(DISK % 2 ** 32, 8);
    reset.writeUInt32LE(DISK_BLOCK_SIZE, 16);
    const rep = new Replica();
    const late = record(3, 2, { extra: (e) => (e === 2 ? [reset] : []) });
    rep.push(late.bytes);
    assert.equal(rep.error().code, ErrorCodes.RECORD_BAD_FIELD);
    assert.match(rep.error().message, /full sync of disk after the stream's first checkpoint/);
    assert.equal(rep.receiver.lastEpoch, 1);
    assert.equal(rep.digest(), late.digests[0], 'the refused epoch 2 left nothing behind');

    // Before the mirror's own RESET in epoch 1: a plain write record first.
    const plain = Buffer.alloc(24);
    plain.writeUInt32LE(DISK % 2 ** 32, 8);
    plain.writeUInt32LE(DISK_BLOCK_SIZE, 16);
    const early = new Replica();
    const s = record(1, 3, { mirror: false, extra: () => [plain, reset] });
    early.push(s.bytes);
    assert.equal(early.error().code, ErrorCodes.RECORD_OUT_OF_ORDER);
    assert.match(early.error().message, /disk updates before its full sync/);
  });

  test('a disk of another size is refused at its first record', () => {
    const small = simBinding(PAGES, { diskBytes: DISK / 2 }).replica(silent);
    const receiver = new EpochReceiver(small.domain, { maxEpochBytes: 1 << 30, devices: [new DiskReplica(small.disks)] });
    const session = new ReplicationSession(receiver, { replicaPages: PAGES, maxRecordBytes: 16 << 20 });
    session.start();
    const acts: ReceiverAction[] = [];
    feedSession(session, small.sim, stream.bytes, (a) => acts.push(a));
    const close = acts.find((a) => a.type === 'close');
    assert.ok(close?.type === 'close' && close.outcome === 'stream-error');
    assert.ok(close.error instanceof StreamError);
    assert.equal(close.error.code, ErrorCodes.REPLICA_MISMATCH);
    assert.match(close.error.message, /524288 bytes on the primary, 262144 bytes on the replica/);
  });

  test('a replica without disk devices skips the optional records, as the spec allows', () => {
    const plain = simBinding(PAGES).replica(silent);
    const receiver = new EpochReceiver(plain.domain, { maxEpochBytes: 1 << 30 });
    const session = new ReplicationSession(receiver, { replicaPages: PAGES, maxRecordBytes: 16 << 20 });
    session.start();
    const acts: ReceiverAction[] = [];
    feedSession(session, plain.sim, stream.bytes, (a) => acts.push(a));
    assert.equal(receiver.lastEpoch, 8);
    assert.deepEqual(acts.at(-1), { type: 'close', outcome: 'end' });
  });
});
