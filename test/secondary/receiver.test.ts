/**
 * The secondary's epoch state machine, without sockets: streams written by
 * the real saver from a primary sim guest, split and cut at chosen bytes,
 * fed through ReplicationSession into an EpochReceiver.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { saveDomain } from '../../src/checkpoint/save.js';
import { stateDigest } from '../../src/domain/sim/digest.js';
import type { SimDomain } from '../../src/domain/sim/domain.js';
import { ErrorCodes, StreamError } from '../../src/errors.js';
import { LibxcType, PAGE_SIZE } from '../../src/stream/format.js';
import { EpochReceiver, type AckRecord, type ReceiverAction } from '../../src/secondary/receiver.js';
import { ReplicationSession } from '../../src/secondary/session.js';
import { AckStatus } from '../../src/transport/backchannel.js';
import { silent, simBinding } from '../helpers/sim.js';
import { below } from '../../src/util/xorshift.js';
import { feedSession, pvStreamHead, recordHeader, recordStream, recordsOf, simReplica, type RecordedStream } from './fixtures.js';

const PAGES = 256;
const BIG = 1 << 30;

class Harness {
  readonly actions: ReceiverAction[] = [];
  readonly receiver: EpochReceiver;
  session!: ReplicationSession;

  readonly replica: SimDomain;

  constructor(pages = PAGES, maxEpochBytes = BIG, maxKeptBytes?: number) {
    const { guest, sim } = simReplica(pages);
    this.replica = sim;
    this.receiver = new EpochReceiver(guest.domain, { maxEpochBytes, maxKeptBytes });
  }

  open(): this {
    this.session = new ReplicationSession(this.receiver, { replicaPages: this.replica.info.pages, maxRecordBytes: 16 << 20 });
    this.session.start();
    return this;
  }

  /** Pushes `bytes` cut at `splits` (offsets into bytes); `after` sees the actions of each push as it returns. */
  push(bytes: Buffer, splits: number[] = [], after?: (actions: ReceiverAction[]) => void): void {
    const cuts = [...new Set([0, ...splits.filter((s) => s > 0 && s < bytes.length), bytes.length])].sort((a, b) => a - b);
    for (let i = 1; i < cuts.length; i++) {
      const got: ReceiverAction[] = [];
      feedSession(this.session, this.replica, bytes.subarray(cuts[i - 1], cuts[i]), (a) => got.push(a));
      this.actions.push(...got);
      after?.(got);
    }
  }

  end(): void {
    feedSession(this.session, this.replica, 'end', (a) => this.actions.push(a));
  }

  acks(): AckRecord[] {
    return this.actions.flatMap((a) => (a.type === 'ack' ? [a.ack] : []));
  }

  closeAction(): Extract<ReceiverAction, { type: 'close' }> | undefined {
    return this.actions.find((a): a is Extract<ReceiverAction, { type: 'close' }> => a.type === 'close');
  }

  digest(): string {
    return stateDigest(this.replica);
  }
}

const applied = (n: number): AckRecord[] => Array.from({ length: n }, (_, i) => ({ type: 'ACK', epoch: i + 1, status: AckStatus.APPLIED, reason: '' }));

/** The replica's error, as the close action carries it. */
function streamError(h: Harness): StreamError {
  const close = h.closeAction();
  assert.ok(close && close.outcome === 'stream-error', `expected a stream-error close, got ${JSON.stringify(close)}`);
  assert.ok(close.error instanceof StreamError, `expected a StreamError, got ${String(close.error)}`);
  return close.error;
}

/** A replica holding the last epoch of a complete stream, its stream over. */
function syncedReplica(stream: RecordedStream): Harness {
  const h = new Harness().open();
  h.push(stream.bytes);
  const epochs = stream.epochEnds.length;
  assert.equal(h.closeAction()?.outcome, 'end');
  assert.equal(h.receiver.lastEpoch, epochs);
  assert.equal(h.digest(), stream.digests[epochs - 1]);
  return h;
}

describe('EpochReceiver', () => {
  const stream = recordStream({ pages: PAGES, epochs: 6, seed: 0xbeef });

  test('after each complete epoch the replica equals the primary at that checkpoint', () => {
    const h = new Harness().open();
    const r = below(7);
    // Random splits, plus one at every epoch end so each push commits at most one epoch.
    const splits = [...Array.from({ length: 60 }, () => r(stream.bytes.length)), ...stream.epochEnds];
    const seen: number[] = [];
    h.push(stream.bytes, splits, (actions) => {
      const commits = actions.flatMap((a) => (a.type === 'committed' ? [a.commit] : []));
      assert.ok(commits.length <= 1);
      if (commits.length === 0) return;
      const { epoch } = commits[0];
      seen.push(epoch);
      assert.equal(h.digest(), stream.digests[epoch - 1], `replica digest after epoch ${epoch}`);
      assert.equal(h.receiver.lastEpoch, epoch);
      assert.equal(h.receiver.state, 'protected');
    });
    assert.deepEqual(seen, [1, 2, 3, 4, 5, 6]);
    assert.deepEqual(h.acks(), applied(6));
    assert.deepEqual(h.closeAction(), { type: 'close', outcome: 'end' });
    assert.equal(h.receiver.state, 'idle');
    assert.equal(h.receiver.lastEpoch, 6);
    const commits = h.actions.flatMap((a) => (a.type === 'committed' ? [a.commit] : []));
    assert.ok(commits[0].pages >= PAGES, 'epoch 1 carries the whole pre-copy');
    assert.deepEqual(
      commits.map((c) => c.bytes),
      stream.epochEnds.map((end, i) => end - (i === 0 ? 0 : stream.epochEnds[i - 1])),
    );
  });

  test('until its first checkpoint a stream leaves the replica syncing; later epochs are held until their CHECKPOINT_END', () => {
    const h = new Harness();
    assert.equal(h.receiver.state, 'idle');
    h.open();
    assert.equal(h.receiver.state, 'syncing');
    h.push(stream.bytes.subarray(0, stream.epochEnds[0] - 1));
    assert.equal(h.receiver.state, 'syncing');
    assert.equal(h.receiver.lastEpoch, 0);
    assert.equal(h.receiver.epochInProgress, 1);
    h.push(stream.bytes.subarray(stream.epochEnds[0] - 1, stream.epochEnds[0]));
    assert.equal(h.receiver.state, 'protected');
    assert.equal(h.receiver.epochInProgress, 2);
    // Epoch 2 is held, every byte of it accounted, until its CHECKPOINT_END.
    const before = h.digest();
    h.push(stream.bytes.subarray(stream.epochEnds[0], stream.epochEnds[1] - 8));
    assert.equal(h.receiver.bufferedBytes, stream.epochEnds[1] - 8 - stream.epochEnds[0]);
    assert.equal(h.digest(), before);
    h.push(stream.bytes.subarray(stream.epochEnds[1] - 8, stream.epochEnds[1]));
    assert.equal(h.receiver.bufferedBytes, 0);
    assert.equal(h.digest(), stream.digests[1]);
  });

  test('a stream cut at any byte leaves the replica at the last complete epoch', () => {
    const r = below(99);
    const { bytes, epochEnds } = stream;
    const cuts = new Set<number>([1, 16, 100, bytes.length - 1]);
    for (const end of epochEnds) for (const d of [-9, -8, -1, 0, 1, 8]) cuts.add(end + d); // around and just before each CHECKPOINT_END
    for (let i = 0; i < 40; i++) cuts.add(1 + r(bytes.length - 1));
    for (let i = 0; i < 8; i++) cuts.add(1 + r(epochEnds[0] - 1)); // inside the pre-copy
    for (const cut of cuts) {
      const complete = epochEnds.filter((e) => e <= cut).length;
      const h = new Harness().open();
      h.push(bytes.subarray(0, cut), [r(cut)]);
      // Half the cuts end with a half-close (answered), half with a reset (nothing to answer).
      if (cut % 2 === 0) {
        h.end();
        assert.deepEqual(h.acks().slice(0, complete), applied(complete), `cut at ${cut}`);
        assert.deepEqual(h.acks().slice(complete), [
          { type: 'ACK', epoch: complete + 1, status: AckStatus.STREAM_ERROR, reason: streamError(h).message },
        ]);
        assert.equal(streamError(h).code, ErrorCodes.STREAM_TRUNCATED);
      } else {
        assert.equal(h.session.abort(), complete + 1, `cut at ${cut}: torn epoch`);
        assert.deepEqual(h.acks(), applied(complete), `cut at ${cut}`);
      }
      assert.equal(h.receiver.lastEpoch, complete, `cut at ${cut}`);
      assert.equal(h.receiver.state, 'idle');
      if (complete > 0) assert.equal(h.digest(), stream.digests[complete - 1], `cut at ${cut}: replica at epoch ${complete}`);
    }
  });

  test('an epoch bigger than maxEpochBytes is discarded and refused; a fresh stream then syncs again', () => {
    const heavy = recordStream({ pages: PAGES, epochs: 4, seed: 5, writes: 3, heavy: { 3: 60 } });
    // Buffered bytes of epoch 3: everything after epoch 2's CHECKPOINT_END up to (not counting) its own.
    const epoch3 = heavy.epochEnds[2] - heavy.epochEnds[1] - 8;

    const fits = new Harness(PAGES, epoch3).open();
    fits.push(heavy.bytes, [heavy.epochEnds[2]]);
    assert.deepEqual(fits.acks(), applied(4), 'an epoch of exactly the limit is applied');

    const h = new Harness(PAGES, epoch3 - 1).open();
    h.push(heavy.bytes, [heavy.epochEnds[1] + 5000]);
    assert.deepEqual(h.acks().slice(0, 2), applied(2));
    const over = h.acks()[2];
    assert.equal(h.acks().length, 3);
    assert.equal(over.status, AckStatus.OVER_BUFFER_LIMIT);
    assert.equal(over.epoch, 3);
    assert.match(over.reason, /epoch 3 needs more than/);
    const close = h.closeAction();
    assert.equal(close?.outcome, 'over-buffer-limit');
    assert.equal(h.session.active, false);
    assert.equal(h.receiver.lastEpoch, 2);
    assert.equal(h.digest(), heavy.digests[1], 'replica stays at epoch 2');

    // The primary starts over with a fresh pre-copy on a new connection.
    const fresh = recordStream({ pages: PAGES, epochs: 3, seed: 6, writes: 3 });
    h.actions.length = 0;
    h.open().push(fresh.bytes, [fresh.epochEnds[0] - 100]);
    // Another guest altogether: keeping epoch 2 would take more than this secondary's bound, so it is given up, and said so.
    const invalidated = h.actions[0];
    assert.ok(invalidated.type === 'invalidated' && invalidated.previousEpoch === 2, JSON.stringify(invalidated));
    assert.match(invalidated.reason, /differs from it by more than the \d+ bytes the secondary keeps/);
    assert.deepEqual(h.acks(), applied(3));
    assert.equal(h.digest(), fresh.digests[2]);
  });

  test('records after the last checkpoint that no CHECKPOINT_END commits are dropped at END', () => {
    const s = recordStream({ pages: PAGES, epochs: 2, seed: 11, trailingPages: [3, 4, 5] });
    const h = new Harness().open();
    h.push(s.bytes);
    assert.deepEqual(h.acks(), applied(2));
    assert.ok(h.actions.some((a) => a.type === 'discarded' && a.epoch === 3 && a.bytes > 3 * 4096));
    assert.equal(h.closeAction()?.outcome, 'end');
    assert.equal(h.digest(), s.digests[1]);
  });

  describe('refuses, with a STREAM_ERROR ack and the replica unchanged', () => {
    /** Runs `bytes` as a new stream on a replica synced to `stream`'s end; returns the error. */
    const refusedAfterSync = (bytes: Buffer, end = true): StreamError => {
      const h = syncedReplica(stream);
      h.actions.length = 0;
      h.open().push(bytes, [7, bytes.length >> 1]);
      if (end) h.end();
      const err = streamError(h);
      assert.deepEqual(h.acks(), [{ type: 'ACK', epoch: 1, status: AckStatus.STREAM_ERROR, reason: err.message }]);
      assert.equal(h.digest(), stream.digests[5], 'replica unchanged');
      assert.equal(h.receiver.lastEpoch, 6);
      assert.equal(h.receiver.state, 'idle');
      return err;
    };

    /** Runs epochs 1-2 of `stream` then `tail`; returns the error. */
    const refusedInEpoch3 = (tail: Buffer): StreamError => {
      const h = new Harness().open();
      h.push(Buffer.concat([stream.bytes.subarray(0, stream.epochEnds[1]), tail]), [stream.epochEnds[1] + 3]);
      h.end();
      const err = streamError(h);
      assert.deepEqual(h.acks(), [...applied(2), { type: 'ACK', epoch: 3, status: AckStatus.STREAM_ERROR, reason: err.message }]);
      assert.equal(h.digest(), stream.digests[1], 'replica stays at epoch 2');
      assert.equal(h.receiver.lastEpoch, 2);
      return err;
    };

    test('garbage instead of a stream', () => {
      const r = below(3);
      const garbage = Buffer.from(Array.from({ length: 200 }, () => r(256)));
      assert.equal(refusedAfterSync(garbage).code, ErrorCodes.STREAM_BAD_IDENT);
    });

    test('a garbage record body in the middle of an epoch', () => {
      const tail = Buffer.concat([recordHeader(LibxcType.PAGE_DATA, 8 + 8 + 4096).subarray(0, 8), Buffer.alloc(8 + 8 + 4096, 0xa5)]);
      const err = refusedInEpoch3(tail);
      assert.equal(err.code, ErrorCodes.RECORD_RESERVED_NONZERO);
      assert.equal(err.offset, stream.epochEnds[1]);
      assert.equal(err.record, 'libxc PAGE_DATA');
    });

    test('a truncated record', () => {
      const next = recordsOf(stream.bytes).find((r) => r.offset === stream.epochEnds[1]);
      assert.equal(next?.name, 'libxc PAGE_DATA');
      const err = refusedInEpoch3(stream.bytes.subarray(next.offset, next.offset + ((next.end - next.offset) >> 1)));
      assert.equal(err.code, ErrorCodes.STREAM_TRUNCATED);
      assert.equal(err.offset, next.offset);
    });

    test('an oversized record length', () => {
      const err = refusedInEpoch3(recordHeader(LibxcType.HVM_CONTEXT, 0xfffffff8));
      assert.equal(err.code, ErrorCodes.RECORD_TOO_LARGE);
      assert.equal(err.record, 'libxc HVM_CONTEXT');
    });

    test('an HVM context the replica refuses (before any page of the epoch is written)', () => {
      const ctx = recordsOf(stream.bytes).find((r) => r.name === 'libxc HVM_CONTEXT' && r.offset > stream.epochEnds[1])!;
      const tampered = Buffer.from(stream.bytes.subarray(stream.epochEnds[1], stream.epochEnds[2]));
      tampered.writeUInt32LE(0xdeadbeef, ctx.offset - stream.epochEnds[1] + 8 + 8); // the HVM save header's magic
      const err = refusedInEpoch3(tampered);
      assert.equal(err.code, ErrorCodes.REPLICA_MISMATCH);
      assert.equal(err.offset, ctx.offset);
      assert.match(err.message, /replica refused it: HVM context: bad header record/);
      assert.ok(err.cause instanceof RangeError);
    });

    test('a device model the replica refuses, after the vCPU context was loaded (rolled back)', () => {
      const dm = recordsOf(stream.bytes).find((r) => r.name === 'libxl EMULATOR_CONTEXT' && r.offset > stream.epochEnds[1])!;
      const tampered = Buffer.from(stream.bytes.subarray(stream.epochEnds[1], stream.epochEnds[2]));
      tampered[dm.offset - stream.epochEnds[1] + 8 + 8] ^= 0xff; // the device-model blob's signature
      const err = refusedInEpoch3(tampered);
      assert.equal(err.code, ErrorCodes.REPLICA_MISMATCH);
      assert.equal(err.record, 'libxl EMULATOR_CONTEXT');
      assert.match(err.message, /not a sim device-model blob/);
    });

    test('a stream for a larger guest than the replica', () => {
      const larger = recordStream({ pages: PAGES + 44, epochs: 1, seed: 2 });
      const err = refusedAfterSync(larger.bytes, false);
      assert.equal(err.code, ErrorCodes.RECORD_BAD_FIELD);
      assert.equal(err.record, 'libxc PAGE_DATA');
      assert.match(err.message, /exceeds the limit 0xff/);
    });

    test('a PV stream', () => {
      const err = refusedAfterSync(pvStreamHead(), false);
      assert.equal(err.code, ErrorCodes.STREAM_BAD_DOMAIN_TYPE);
      assert.equal(err.record, 'libxc domain header');
      assert.match(err.message, /x86 PV stream cannot restore into this x86 HVM replica/);
    });
  });

  test('a stream for a smaller guest is refused at its first checkpoint; the replica goes back to its last checkpoint', () => {
    const smaller = recordStream({ pages: PAGES - 56, epochs: 2, seed: 4 });
    const h = syncedReplica(stream);
    h.actions.length = 0;
    h.open().push(smaller.bytes);
    assert.ok(!h.actions.some((a) => a.type === 'invalidated'), 'what it overwrote was kept');
    const err = streamError(h);
    assert.equal(err.code, ErrorCodes.REPLICA_MISMATCH);
    assert.equal(err.record, 'libxl CHECKPOINT_END');
    assert.match(err.message, /pre-copy of 200 of the replica's 256 pages/);
    assert.equal(h.receiver.lastEpoch, 6);
    assert.equal(h.digest(), stream.digests[5], 'the replica is epoch 6 again, page for page');
    assert.equal(h.receiver.keptBytes, 0);
  });

  describe('a new stream over a replica holding a checkpoint', () => {
    /** Pages in which two replicas differ. */
    const differing = (a: SimDomain, b: SimDomain): number => {
      let n = 0;
      for (let pfn = 0; pfn < PAGES; pfn++) if (!a.readPage(pfn).equals(b.readPage(pfn))) n++;
      return n;
    };

    test('cut anywhere before its first checkpoint, by a reset or a half-close, it leaves the replica at its last checkpoint', () => {
      const other = recordStream({ pages: PAGES, epochs: 2, seed: 0x0dd });
      const r = below(21);
      const cuts = new Set<number>([1, 100, other.epochEnds[0] - 8, other.epochEnds[0] - 1]);
      for (let i = 0; i < 12; i++) cuts.add(1 + r(other.epochEnds[0] - 1));
      for (const cut of cuts) {
        const h = syncedReplica(stream);
        h.actions.length = 0;
        h.open().push(other.bytes.subarray(0, cut), [r(cut)]);
        assert.equal(h.receiver.state, 'syncing', `cut at ${cut}`);
        assert.equal(h.receiver.lastEpoch, 6, `cut at ${cut}: epoch 6 is still there to fail over to`);
        if (cut % 2 === 0) h.end();
        else assert.equal(h.session.abort(), 1, `cut at ${cut}: torn epoch`);
        assert.ok(!h.actions.some((a) => a.type === 'invalidated' || a.type === 'committed'), `cut at ${cut}: ${JSON.stringify(h.actions.map((a) => a.type))}`);
        assert.equal(h.receiver.lastEpoch, 6, `cut at ${cut}`);
        assert.equal(h.receiver.keptBytes, 0, `cut at ${cut}: nothing left kept`);
        assert.equal(h.digest(), stream.digests[5], `cut at ${cut}: the replica is epoch 6 again, vCPUs and pages`);
      }
    });

    test('it keeps a page only if it changes, and once; its first checkpoint lets them go', () => {
      // The same guest reconnecting: its pre-copy mostly matches what the replica has.
      const again = recordStream({ pages: PAGES, epochs: 6, seed: 0xbeef });
      const h = syncedReplica(stream);
      const before = simReplica(PAGES).sim;
      before.writePages(Array.from({ length: PAGES }, (_, pfn) => pfn), Array.from({ length: PAGES }, (_, pfn) => Buffer.from(h.replica.readPage(pfn))));
      h.actions.length = 0;
      h.open().push(again.bytes.subarray(0, again.epochEnds[0] - 1));
      // Every page that now differs was kept; pages the pre-copy sent as they already were were not.
      // (A page can be kept and then sent back as it was: the same guest replays the same writes.)
      const changed = differing(before, h.replica);
      const kept = h.receiver.keptBytes / PAGE_SIZE;
      assert.ok(changed > 0, 'the pre-copy changed the replica');
      assert.ok(kept >= changed && kept < PAGES, `${kept} pages kept, ${changed} changed, of ${PAGES}`);
      h.push(again.bytes.subarray(again.epochEnds[0] - 1));
      assert.deepEqual(h.acks(), applied(6));
      const first = h.actions.find((a) => a.type === 'committed');
      assert.ok(first?.type === 'committed' && first.commit.pages > PAGES, 'the pre-copy sent some pages more than once, each kept once at most');
      assert.equal(h.receiver.keptBytes, 0);
      assert.equal(h.receiver.lastEpoch, 6);
      assert.equal(h.digest(), again.digests[5]);
      assert.ok(!h.actions.some((a) => a.type === 'invalidated'));
    });

    test('past maxKeptBytes it gives the checkpoint up, says why, and a cut then leaves nothing to fail over to', () => {
      const other = recordStream({ pages: PAGES, epochs: 2, seed: 0x0dd });
      const h = new Harness(PAGES, BIG, 16 * PAGE_SIZE).open();
      h.push(stream.bytes);
      h.actions.length = 0;
      h.open().push(other.bytes.subarray(0, other.epochEnds[0] - 1));
      const gone = h.actions.filter((a) => a.type === 'invalidated');
      assert.equal(gone.length, 1);
      assert.ok(gone[0].type === 'invalidated' && gone[0].previousEpoch === 6);
      const m = /^the new stream differs from it by more than the (\d+) bytes the secondary keeps \((\d+) so far\)$/.exec(gone[0].reason);
      assert.ok(m, gone[0].reason);
      assert.equal(Number(m[1]), 16 * PAGE_SIZE);
      assert.ok(Number(m[2]) > 16 * PAGE_SIZE);
      assert.equal(h.receiver.keptBytes, 0);
      assert.equal(h.receiver.lastEpoch, 0);
      h.session.abort();
      assert.equal(h.receiver.lastEpoch, 0);
    });
  });

  test('a plain (non-checkpointed) stream is refused', async () => {
    const primary = simBinding(PAGES).primary(silent);
    const chunks: Buffer[] = [];
    await saveDomain(primary.domain, { framing: 'libxl', version: 3, checkpoints: 0 }, (c) => chunks.push(...c.map((b) => Buffer.from(b))));
    const h = new Harness().open();
    h.push(Buffer.concat(chunks));
    const err = streamError(h);
    assert.equal(err.code, ErrorCodes.STREAM_NOT_CHECKPOINTED);
    assert.equal(err.record, 'libxc END');
    assert.equal(h.acks()[0].status, AckStatus.STREAM_ERROR);
  });

  test('after the stream closed, further bytes change nothing', () => {
    const h = new Harness().open();
    h.push(stream.bytes.subarray(0, stream.epochEnds[1]));
    h.push(recordHeader(0x7fffffff, 8)); // unknown mandatory record: refused
    assert.equal(h.closeAction()?.outcome, 'stream-error');
    const count = h.actions.length;
    h.push(stream.bytes.subarray(stream.epochEnds[1], stream.epochEnds[2]));
    h.end();
    assert.equal(h.actions.length, count);
    assert.equal(h.digest(), stream.digests[1]);
  });

  test('a receiver serves one stream at a time', () => {
    const h = new Harness().open();
    assert.throws(() => h.receiver.begin(), /already in progress/);
  });
});
