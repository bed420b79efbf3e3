/**
 * CheckpointSession on its own: the one implementation of an epoch, driven
 * here over the in-memory transport to a real secondary server, on a fake
 * binding (not the sim), and against targets that fail at chosen points.
 * What it must keep: the replica equal to the primary at each acked epoch;
 * the guest paused only while its state is captured (COLO: until held), and
 * running again whatever fails; a stream that decodes as Xen's layout says.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { DeviceSet, type CheckpointDevice } from '../../src/checkpoint/devices.js';
import { CheckpointError } from '../../src/checkpoint/errors.js';
import { CheckpointSession, type CheckpointSessionOptions, type CheckpointTarget } from '../../src/checkpoint/session.js';
import { ColoEpochs, remusEpochs } from '../../src/checkpoint/strategies.js';
import { SecondaryServer } from '../../src/secondary/server.js';
import { StreamDecoder } from '../../src/stream/decoder.js';
import { ReplicationLink } from '../../src/transport/link.js';
import { FakeBinding, type FakeKnobs, type FakePrimary } from '../helpers/fake-binding.js';
import { MemoryTransport } from '../helpers/memory-transport.js';
import { silent } from '../helpers/sim.js';

const PAGES = 32;

/** A session of `primary` to a real secondary over the in-memory transport. */
async function overMemory(knobs: FakeKnobs = {}, devices: CheckpointDevice[] = []): Promise<{
  primary: FakePrimary;
  server: SecondaryServer;
  session: CheckpointSession;
  link: ReplicationLink;
  staged: Map<number, string>;
}> {
  const binding = new FakeBinding(PAGES, knobs);
  const primary = binding.primary();
  const transport = new MemoryTransport();
  const server = new SecondaryServer({ replica: binding.replica(), transport, listen: { host: 'secondary', port: 0 }, logger: silent });
  const at = await server.start();
  const link = new ReplicationLink({ transport, secondary: at, connectTimeoutMs: 1000, ackTimeoutMs: 2000 });
  await link.start();
  const staged = new Map<number, string>();
  const session = new CheckpointSession({
    domain: primary,
    devices: new DeviceSet(devices),
    target: link,
    strategy: remusEpochs,
    version: 3,
    precopyPolicy: (s) => (s.iteration >= 2 ? 'stop-and-copy' : 'continue'),
    now: () => performance.now(),
    digest: () => primary.digest(),
    onStaged: (epoch, digest) => staged.set(epoch, digest),
  });
  return { primary, server, session, link, staged };
}

/** A target that takes every write and holds every epoch at once, recording the bytes. */
function recorder(): CheckpointTarget & { bytes: () => Buffer } {
  const chunks: Buffer[] = [];
  return {
    write: (c) => {
      for (const b of c) chunks.push(Buffer.from(b));
      return Promise.resolve();
    },
    flushed: () => Promise.resolve(),
    held: () => Promise.resolve(),
    bytes: () => Buffer.concat(chunks),
  };
}

function session(primary: FakePrimary, target: CheckpointTarget, more: Partial<CheckpointSessionOptions> = {}): CheckpointSession {
  return new CheckpointSession({
    domain: primary,
    devices: new DeviceSet(),
    target,
    strategy: remusEpochs,
    version: 3,
    precopyPolicy: () => 'stop-and-copy',
    now: () => performance.now(),
    ...more,
  });
}

describe('CheckpointSession over the in-memory transport, on a fake binding', () => {
  test('each acked epoch leaves the replica equal to the primary at its suspend; the guest runs between epochs', async () => {
    const { primary, server, session, link, staged } = await overMemory();
    primary.run(3, 'before protection');
    const applied: number[] = [];
    server.on('epoch', (c) => {
      applied.push(c.epoch);
      assert.equal(server.digest(), staged.get(c.epoch), `replica at epoch ${c.epoch}`);
    });
    const summary = await session.precopy();
    assert.equal(summary.first.epoch, 1);
    assert.equal(summary.rounds, 2, 'the precopy policy decided the rounds');
    assert.equal(summary.pagesSent, PAGES, 'the first round sends every page, the second nothing dirty');
    for (let e = 2; e <= 6; e++) {
      primary.run(e, `epoch ${e}`);
      assert.equal(primary.suspended, false);
      const m = await session.checkpoint('operator');
      assert.equal(m.epoch, e);
      assert.equal(m.dirtyPages, 1);
      assert.equal(server.lastEpoch, e, 'resolved once the secondary holds it');
      assert.ok(m.pauseUs >= 0 && m.bytes > 4096);
    }
    assert.deepEqual(applied, [1, 2, 3, 4, 5, 6]);
    await session.end();
    await link.stop();
    assert.deepEqual(primary.calls.slice(0, 4), ['suspend', 'resume', 'suspend', 'resume'], 'each epoch suspends once and resumes once');
    assert.equal(primary.calls.length, 12);
    await server.stop();
  });

  test('a slow suspend (a guest acking over xenstore) and a slow device-model load on the replica change nothing but time', async () => {
    const { primary, server, session, staged } = await overMemory({ suspendDelayMs: 15, loadDelayMs: 15 });
    const first = await session.precopy();
    assert.ok(first.first.pauseUs >= 15_000, `pause ${first.first.pauseUs} µs includes the slow suspend`);
    primary.run(7, 'slow');
    const m = await session.checkpoint('timer');
    assert.equal(server.digest(), staged.get(m.epoch));
    await session.end();
    await server.stop();
  });

  test('the replica refusing the device model refuses the epoch: the session fails with EPOCH_REFUSED and the guest runs', async () => {
    const { primary, server, session } = await overMemory({ loadError: new Error('QMP: load failed') });
    await assert.rejects(session.precopy(), (e: unknown) => e instanceof CheckpointError && e.code === 'ERR_EPOCH_REFUSED' && /QMP: load failed/.test(e.message));
    assert.equal(primary.suspended, false, 'the guest runs again');
    assert.equal(server.lastEpoch, 0);
    await server.stop();
  });

  test('a device failing at postsuspend or commit fails the epoch with the device named, and the guest runs again', async () => {
    for (const hook of ['postsuspend', 'commit'] as const) {
      const broken: CheckpointDevice = { name: 'netbuf', [hook]: () => Promise.reject(new Error('queue gone')) };
      const { primary, server, session } = await overMemory({}, [broken]);
      await assert.rejects(session.precopy(), (e: unknown) => e instanceof CheckpointError && e.code === 'ERR_CHECKPOINT_DEVICE_FAILED' && /netbuf: .* failed: queue gone/.test(e.message), hook);
      assert.equal(primary.suspended, false, `the guest runs again after a failed ${hook}`);
      assert.equal(primary.calls.at(-1), 'resume');
      await server.stop();
    }
  });

  test('the device model cannot be saved: the epoch fails, the guest is resumed, and a later call says the session failed', async () => {
    const primary = new FakeBinding(PAGES, { saveDeviceModelError: new Error('QMP: no device model') }).primary();
    const s = session(primary, recorder());
    await assert.rejects(s.precopy(), /QMP: no device model/);
    assert.equal(primary.suspended, false);
    await assert.rejects(s.checkpoint('timer'), /QMP: no device model/);
    await assert.rejects(s.end(), /QMP: no device model/);
  });

  test('the target failing at any write or hold fails that epoch, and the guest is never left suspended', async () => {
    for (let failAt = 1; failAt <= 6; failAt++) {
      const primary = new FakeBinding(PAGES).primary();
      let writes = 0;
      const target: CheckpointTarget = {
        write: () => (++writes === failAt ? Promise.reject(new Error(`write ${failAt} lost`)) : Promise.resolve()),
        flushed: () => Promise.resolve(),
        held: () => Promise.resolve(),
      };
      const s = session(primary, target);
      const run = (async () => {
        await s.precopy();
        primary.run(1, 'a');
        await s.checkpoint('timer');
        primary.run(2, 'b');
        await s.checkpoint('timer');
        await s.end();
      })();
      await assert.rejects(run, new RegExp(`write ${failAt} lost`));
      assert.equal(primary.suspended, false, `failing write ${failAt}`);
    }
  });

  test('COLO: the guest stays suspended until the secondary holds the checkpoint and is ready; Remus resumes before sending', async () => {
    for (const kind of ['remus', 'colo'] as const) {
      const primary = new FakeBinding(PAGES).primary();
      const seen: boolean[] = [];
      const target: CheckpointTarget = {
        write: () => Promise.resolve(),
        flushed: () => Promise.resolve(),
        held: () => {
          seen.push(primary.suspended);
          return Promise.resolve();
        },
      };
      const backChannel = {
        nextRecord: (type: string): Promise<never> => Promise.resolve((type === 'CHECKPOINT_STATE' ? { type, controlId: 2 } : { type, pfns: new Uint32Array(0) }) as never),
      };
      const s = session(primary, target, { strategy: kind === 'colo' ? new ColoEpochs(backChannel, PAGES, 1000) : remusEpochs });
      await s.precopy();
      assert.deepEqual(seen, [kind === 'colo'], `${kind}: suspended while the target takes the first checkpoint`);
      assert.equal(primary.suspended, false, `${kind}: running after it`);
    }
  });

  test('a checkpointed stream to a recorder decodes to the layout Xen writes, and ends with libxc END and libxl END', async () => {
    const primary = new FakeBinding(PAGES).primary();
    const target = recorder();
    const s = session(primary, target);
    await s.precopy();
    primary.run(5, 'x');
    await s.checkpoint('operator');
    await s.end();
    const names: string[] = [];
    const decoder = new StreamDecoder({ format: 'libxl' });
    for (const item of decoder.push(target.bytes())) if (item.kind === 'record') names.push(`${item.record.layer} ${item.record.type}`);
    decoder.end();
    const ends = names.map((n, i) => (n === 'libxl CHECKPOINT_END' ? i : -1)).filter((i) => i >= 0);
    assert.equal(ends.length, 2, 'two checkpoints');
    assert.deepEqual(names.slice(ends[0] - 3, ends[0] + 1), ['libxc CHECKPOINT', 'libxl EMULATOR_XENSTORE_DATA', 'libxl EMULATOR_CONTEXT', 'libxl CHECKPOINT_END']);
    assert.deepEqual(names.slice(-2), ['libxc END', 'libxl END']);
    assert.equal(names[0], 'libxl LIBXC_CONTEXT');
  });

  test('out of order is refused with SESSION_STATE: a checkpoint before the pre-copy, a second pre-copy, an end before anything', async () => {
    const primary = new FakeBinding(PAGES).primary();
    const s = session(primary, recorder());
    await assert.rejects(s.checkpoint('timer'), (e: unknown) => e instanceof CheckpointError && e.code === 'ERR_SESSION_STATE');
    await assert.rejects(s.end(), (e: unknown) => e instanceof CheckpointError && e.code === 'ERR_SESSION_STATE');
    await s.precopy();
    await assert.rejects(s.precopy(), (e: unknown) => e instanceof CheckpointError && e.code === 'ERR_SESSION_STATE');
    await s.end();
    await assert.rejects(s.checkpoint('timer'), (e: unknown) => e instanceof CheckpointError && e.code === 'ERR_SESSION_STATE');
  });

  test('abandoned between epochs (the link is gone): the saver is told to stop, and nothing waits on it', async () => {
    const primary = new FakeBinding(PAGES).primary();
    let fail = false;
    const target: CheckpointTarget = {
      write: () => (fail ? Promise.reject(new Error('link gone')) : Promise.resolve()),
      flushed: () => Promise.resolve(),
      held: () => Promise.resolve(),
    };
    const s = session(primary, target);
    await s.precopy();
    fail = true;
    s.abandon();
    // The saver's last writes fail on their own; the session reports that, and the guest runs.
    await new Promise((r) => setImmediate(r));
    await assert.rejects(s.checkpoint('timer'), /link gone|SESSION_STATE|ended/);
    assert.equal(primary.suspended, false);
  });
});
