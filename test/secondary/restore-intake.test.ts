/**
 * RestoreIntake: a replica that a hypervisor restores itself gets only whole,
 * valid epochs, without Tandem's records, opened with the stream's domain
 * config; acks follow the hypervisor taking each epoch. The hypervisor here
 * is a recorder (the real one, Xen's, is driven in the lab: test-xen/).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DeviceSet } from '../../src/checkpoint/devices.js';
import { CheckpointSession } from '../../src/checkpoint/session.js';
import { remusEpochs } from '../../src/checkpoint/strategies.js';
import type { EpochRestore } from '../../src/domain/binding.js';
import { ErrorCodes, StreamError } from '../../src/errors.js';
import type { IntakeAction, StreamIntake } from '../../src/secondary/intake.js';
import { RestoreIntake } from '../../src/secondary/restore-intake.js';
import { StreamDecoder } from '../../src/stream/decoder.js';
import { TandemType } from '../../src/stream/format.js';
import { silent, simBinding, withToolstackConfig } from '../helpers/sim.js';

const CONFIG = JSON.stringify({ c_info: { name: 'lab-guest', type: 'pvh' }, b_info: { max_memkb: 262144 } });

/** A checkpointed stream as `tandem primary` sends it: TANDEM_PRIMARY, then TANDEM_DOMAIN_CONFIG (unless `config` is null), pre-copy, `checkpoints` epochs. */
async function primaryStream(checkpoints: number, config: string | null = CONFIG): Promise<Buffer> {
  const guest = simBinding(64).primary(silent);
  const chunks: Buffer[] = [];
  const domain = config === null ? guest.domain : withToolstackConfig(guest.domain, () => Promise.resolve(config));
  const session = new CheckpointSession({
    domain,
    devices: new DeviceSet(),
    target: { write: (c) => (c.forEach((b) => chunks.push(Buffer.from(b))), Promise.resolve()), flushed: () => Promise.resolve(), held: () => Promise.resolve() },
    strategy: remusEpochs,
    version: 3,
    precopyPolicy: () => 'stop-and-copy',
    now: () => performance.now(),
    generation: 7,
  });
  await session.precopy();
  for (let i = 1; i < checkpoints; i++) {
    guest.synthetic.touch(Uint32Array.of(i, i + 10), i);
    await session.checkpoint('timer');
  }
  return Buffer.concat(chunks);
}

/** Where each record ends, and which are Tandem's. */
function recordsOf(stream: Buffer): { type: string; code?: number; offset: number; end: number }[] {
  return new StreamDecoder().push(stream).flatMap((i) => (i.kind === 'record' ? [{ type: i.record.type, code: i.record.type === 'OPTIONAL' ? i.record.code : undefined, offset: i.offset, end: i.end }] : []));
}

class RecordingRestore implements EpochRestore {
  readonly opened: { json: string; name: string }[] = [];
  readonly given: Buffer[] = [];
  closed = 0;
  failGive: Error | undefined;

  open(config: { json: string; name: string }): Promise<void> {
    this.opened.push(config);
    return Promise.resolve();
  }

  give(chunks: readonly Buffer[]): Promise<void> {
    if (this.failGive !== undefined) return Promise.reject(this.failGive);
    for (const c of chunks) this.given.push(Buffer.from(c));
    return Promise.resolve();
  }

  close(): Promise<void> {
    this.closed++;
    return Promise.resolve();
  }

  get bytes(): Buffer {
    return Buffer.concat(this.given);
  }
}

/** A recording hypervisor, an intake over it, and a first stream, started. */
function rig(maxEpochBytes = 1 << 24): { restore: RecordingRestore; intake: RestoreIntake; stream: StreamIntake } {
  const restore = new RecordingRestore();
  const intake = new RestoreIntake(restore, { maxEpochBytes });
  const stream = intake.open({ maxRecordBytes: 1 << 20, colo: false });
  stream.start();
  return { restore, intake, stream };
}

/** Feeds `stream` in pieces of `size`, running each 'wait' as the server does; then ends it unless `end` is false. */
async function feed(stream: StreamIntake, bytes: Buffer, size: number, end = true): Promise<IntakeAction[]> {
  const actions: IntakeAction[] = [];
  let work: Promise<void> | undefined;
  const act = (a: IntakeAction): void => {
    actions.push(a);
    if (a.type === 'wait') {
      work = a.work().then(
        () => stream.settled({ ok: true }, act),
        (error: unknown) => stream.settled({ ok: false, error }, act),
      );
    }
  };
  for (let at = 0; at < bytes.length; at += size) {
    stream.push(bytes.subarray(at, at + size), act);
    while (work !== undefined) {
      const w = work;
      work = undefined;
      await w;
    }
  }
  if (end) stream.end(act);
  while (work !== undefined) {
    const w = work;
    work = undefined;
    await w;
  }
  return actions;
}

const acks = (actions: IntakeAction[]): [number, number][] => actions.flatMap((a) => (a.type === 'ack' ? [[a.ack.epoch, a.ack.status] as [number, number]] : []));

test('whole epochs reach the hypervisor without Tandem\'s records, opened with the stream\'s config; each is acked once given, whatever the chunking', async () => {
  const bytes = await primaryStream(4);
  const records = recordsOf(bytes);
  const tandem = records.filter((r) => r.code === TandemType.TANDEM_PRIMARY || r.code === TandemType.TANDEM_DOMAIN_CONFIG);
  assert.equal(tandem.length, 2);
  const lastCheckpoint = records.filter((r) => r.type === 'CHECKPOINT_END').at(-1)!.end;
  // What Xen must get: the stream up to its last checkpoint with Tandem's two records cut out.
  const expected = Buffer.concat([bytes.subarray(0, tandem[0].offset), bytes.subarray(tandem[1].end, lastCheckpoint)]);
  for (const size of [1, 13, 4096, bytes.length]) {
    const { restore, intake, stream } = rig();
    const actions = await feed(stream, bytes, size);
    assert.deepEqual(restore.opened, [{ json: CONFIG, name: 'lab-guest' }], `chunks of ${size}`);
    assert.ok(restore.bytes.equals(expected), `chunks of ${size}: the bytes given are the stream's, Tandem's records cut out`);
    assert.ok(!recordsOf(restore.bytes).some((r) => r.type === 'OPTIONAL'), 'no Tandem record reaches the hypervisor');
    assert.deepEqual(acks(actions), [1, 2, 3, 4].map((e) => [e, 0]), `chunks of ${size}`);
    assert.deepEqual(actions.filter((a) => a.type === 'committed').map((a) => a.type === 'committed' && a.commit.epoch), [1, 2, 3, 4]);
    assert.deepEqual(actions.at(-1), { type: 'close', outcome: 'end', atCheckpoint: true }, 'a stream that ends right after a checkpoint ended there, not torn');
    assert.equal(intake.lastEpoch, 4);
    assert.equal(restore.closed, 0, 'the restore holding the checkpoints stays open for a failover');
  }
});

test('a stream cut inside an epoch leaves the restore at the checkpoint before; the torn epoch never reaches it', async () => {
  const bytes = await primaryStream(4);
  const ends = recordsOf(bytes).filter((r) => r.type === 'CHECKPOINT_END').map((r) => r.end);
  const { restore, intake, stream } = rig();
  const actions = await feed(stream, bytes.subarray(0, ends[2] - 10), 4096, false);
  const givenBefore = restore.bytes.length;
  assert.equal(stream.abort(), 3, 'epoch 3 was torn');
  assert.equal(intake.lastEpoch, 2);
  assert.equal(intake.state, 'idle');
  assert.equal(restore.closed, 0);
  assert.deepEqual(acks(actions), [[1, 0], [2, 0]]);
  assert.equal(givenBefore, ends[1] - (recordsOf(bytes).filter((r) => r.type === 'OPTIONAL').reduce((n, r) => n + r.end - r.offset, 0)));
});

test('a corrupted epoch fails the stream with the reader\'s error; the checkpoints before it stay', async () => {
  const bytes = Buffer.from(await primaryStream(4));
  const ends = recordsOf(bytes).filter((r) => r.type === 'CHECKPOINT_END').map((r) => r.end);
  bytes.writeUInt32LE(0x7fff_fff0, ends[2] - 8); // the third CHECKPOINT_END's type: an unknown mandatory record
  const { restore, intake, stream } = rig();
  const actions = await feed(stream, bytes, 65536);
  const close = actions.find((a) => a.type === 'close');
  assert.ok(close?.type === 'close' && close.outcome === 'stream-error');
  assert.ok(close.error instanceof StreamError && close.error.code === ErrorCodes.RECORD_UNKNOWN_MANDATORY, String(close.error));
  assert.deepEqual(acks(actions), [[1, 0], [2, 0], [3, 2]], 'epoch 3 refused with STREAM_ERROR');
  assert.equal(intake.lastEpoch, 2);
  assert.equal(restore.closed, 0);
});

test('a stream without TANDEM_DOMAIN_CONFIG is refused before the hypervisor is asked for anything', async () => {
  const bytes = await primaryStream(2, null);
  const { restore, stream } = rig();
  const actions = await feed(stream, bytes, 4096);
  const close = actions.find((a) => a.type === 'close');
  assert.ok(close?.type === 'close' && close.outcome === 'stream-error' && close.error instanceof StreamError);
  assert.equal(close.error.code, ErrorCodes.STREAM_BAD_DOMAIN_TYPE);
  assert.match(close.error.message, /TANDEM_DOMAIN_CONFIG/);
  assert.equal(restore.opened.length, 0);
  assert.equal(restore.given.length, 0);
});

test('a malformed config record is refused with a typed error naming the record', async () => {
  const bytes = Buffer.from(await primaryStream(1, JSON.stringify({ c_info: { name: 'bad name!' } })));
  const { restore, stream } = rig();
  const actions = await feed(stream, bytes, 4096);
  const close = actions.find((a) => a.type === 'close');
  assert.ok(close?.type === 'close' && close.outcome === 'stream-error' && close.error instanceof StreamError);
  assert.equal(close.error.code, ErrorCodes.RECORD_BAD_FIELD);
  assert.equal(close.error.record, 'libxl TANDEM_DOMAIN_CONFIG');
  assert.equal(restore.opened.length, 0);
});

test('the hypervisor failing to take an epoch fails the stream and leaves nothing held', async () => {
  const bytes = await primaryStream(3);
  const ends = recordsOf(bytes).filter((r) => r.type === 'CHECKPOINT_END').map((r) => r.end);
  const { restore, intake, stream } = rig();
  await feed(stream, bytes.subarray(0, ends[1]), 65536, false);
  assert.equal(intake.lastEpoch, 2);
  restore.failGive = new Error('xl migrate-receive exited');
  const actions = await feed(stream, bytes.subarray(ends[1]), 65536, false);
  const close = actions.find((a) => a.type === 'close');
  assert.ok(close?.type === 'close' && close.outcome === 'stream-error');
  assert.match(close.error.message, /xl migrate-receive exited/);
  assert.equal(intake.lastEpoch, 0, 'a restore that failed holds no checkpoint');
});

test('a stream that fails before its first checkpoint gives its restore up; a new stream opens a new one and says the old checkpoint is gone', async () => {
  const bytes = await primaryStream(2);
  const ends = recordsOf(bytes).filter((r) => r.type === 'CHECKPOINT_END').map((r) => r.end);
  const restore = new RecordingRestore();
  const intake = new RestoreIntake(restore, { maxEpochBytes: 1 << 24 });
  const first = intake.open({ maxRecordBytes: 1 << 20, colo: false });
  first.start();
  await feed(first, bytes.subarray(0, ends[0] - 100), 4096, false);
  first.abort();
  await new Promise((r) => setImmediate(r));
  assert.equal(restore.closed, 1, 'nothing to fail over to: the restore goes');

  const second = intake.open({ maxRecordBytes: 1 << 20, colo: false });
  second.start();
  await feed(second, bytes, 4096, false);
  assert.equal(intake.lastEpoch, 2);
  second.abort();
  const third = intake.open({ maxRecordBytes: 1 << 20, colo: false });
  third.start();
  const actions = await feed(third, bytes.subarray(0, 4096), 4096, false);
  assert.deepEqual(actions.filter((a) => a.type === 'invalidated').map((a) => a.type === 'invalidated' && a.previousEpoch), [2]);
  assert.equal(restore.opened.length, 3);
  assert.equal(intake.lastEpoch, 0);
});

test('an epoch larger than the limit is refused with OVER_BUFFER_LIMIT before it reaches the hypervisor', async () => {
  const bytes = await primaryStream(3);
  const ends = recordsOf(bytes).filter((r) => r.type === 'CHECKPOINT_END').map((r) => r.end);
  const { intake, stream } = rig(4096);
  const actions = await feed(stream, bytes, 1024);
  assert.ok(ends[1] - ends[0] > 4096, 'the fixture\'s epoch 2 is over the limit');
  assert.deepEqual(acks(actions), [[1, 0], [2, 1]]);
  assert.equal(intake.lastEpoch, 1);
});
