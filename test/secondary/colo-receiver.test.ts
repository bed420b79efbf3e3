/** The secondary's side of a COLO stream: checkpoint announcements, and what it refuses. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { StreamSaver } from '../helpers/stream-saver.js';
import { SimDomain } from '../../src/domain/sim/domain.js';
import { ErrorCodes, StreamError } from '../../src/errors.js';
import { frameRecord } from '../../src/stream/encoder.js';
import { LibxlType } from '../../src/stream/format.js';
import { EpochReceiver, type ReceiverAction } from '../../src/secondary/receiver.js';
import { ReplicationSession } from '../../src/secondary/session.js';
import { feedSession, simReplica } from './fixtures.js';

const PAGES = 32;

/** A COLO saver that has written the stream's first checkpoint (every page) into `chunks`. */
function afterFirstCheckpoint(): { primary: SimDomain; saver: StreamSaver; chunks: Buffer[] } {
  const primary = new SimDomain({ pages: PAGES, now: () => 1n });
  const chunks: Buffer[] = [];
  const saver = new StreamSaver(primary, { framing: 'libxl', version: 3, colo: true }, (c) => chunks.push(...c.map((b) => Buffer.from(b))));
  saver.start();
  saver.sendPages(Array.from({ length: PAGES }, (_, i) => i));
  saver.endOfCheckpoint();
  saver.checkpoint();
  return { primary, saver, chunks };
}

/** A COLO stream: the first checkpoint, then `announce` control id, then a second epoch. */
function coloStream(announce: number): Buffer {
  const { primary, saver, chunks } = afterFirstCheckpoint();
  // The announcement, framed by hand (the saver only writes "new checkpoint").
  const body = Buffer.alloc(4);
  body.writeUInt32LE(announce, 0);
  chunks.push(Buffer.concat(frameRecord(LibxlType.CHECKPOINT_STATE, [body])));
  const mark = chunks.length;
  saver.newCheckpoint(); // keeps the saver's own layout in step; its bytes are not used
  chunks.length = mark;
  primary.write(5 * 4096, Buffer.from('second epoch'));
  saver.sendPages([5]);
  saver.endOfCheckpoint();
  saver.checkpoint();
  return Buffer.concat(chunks);
}

function feed(bytes: Buffer, colo: boolean): { actions: ReceiverAction[]; receiver: EpochReceiver } {
  const replica = simReplica(PAGES);
  const receiver = new EpochReceiver(replica.guest.domain, { maxEpochBytes: 1 << 24 });
  const session = new ReplicationSession(receiver, { replicaPages: PAGES, maxRecordBytes: 1 << 20, colo });
  session.start();
  const actions: ReceiverAction[] = [];
  feedSession(session, replica.sim, bytes, (a) => actions.push(a));
  return { actions, receiver };
}

describe('EpochReceiver on a COLO stream', () => {
  test('the announcement of checkpoint 2 comes between the epochs, and epoch 2 commits after it', () => {
    const { actions, receiver } = feed(coloStream(0), true);
    const kinds = actions.map((a) => (a.type === 'committed' ? `committed ${a.commit.epoch}` : a.type === 'colo-new' ? `new ${a.epoch}` : a.type));
    assert.deepEqual(kinds, ['committed 1', 'ack', 'new 2', 'committed 2', 'ack']);
    assert.equal(receiver.lastEpoch, 2);
  });

  test('a back-channel control id sent forward is refused', () => {
    const { actions, receiver } = feed(coloStream(2), true);
    const close = actions.find((a) => a.type === 'close');
    assert.ok(close?.type === 'close' && close.outcome === 'stream-error' && close.error instanceof StreamError);
    assert.equal(close.error.code, ErrorCodes.RECORD_BAD_FIELD);
    assert.match(close.error.message, /control id 2 belongs on the back-channel/);
    assert.equal(receiver.lastEpoch, 1);
  });

  test('a secondary not expecting COLO refuses the stream at the announcement', () => {
    const { actions, receiver } = feed(coloStream(0), false);
    const close = actions.find((a) => a.type === 'close');
    assert.ok(close?.type === 'close' && close.outcome === 'stream-error');
    assert.equal(receiver.lastEpoch, 1, 'the first checkpoint stands');
  });

  test('a COLO stream that stops between checkpoints ends cleanly with libxl END alone', () => {
    const { saver, chunks } = afterFirstCheckpoint();
    const before = Buffer.concat(chunks).length;
    saver.end();
    const bytes = Buffer.concat(chunks);
    // One record, type 0 (END), length 0: a COLO reader takes it as libxl's after CHECKPOINT_END.
    assert.deepEqual([...bytes.subarray(before)], [0, 0, 0, 0, 0, 0, 0, 0]);
    const { actions, receiver } = feed(bytes, true);
    const close = actions.find((a) => a.type === 'close');
    assert.ok(close?.type === 'close' && close.outcome === 'end', JSON.stringify(close));
    assert.equal(receiver.lastEpoch, 1);
  });
});
