/**
 * The replica's device model answers asynchronously (QMP on a real one): the
 * secondary server stops reading the stream while a checkpoint's state loads,
 * commits and acks that checkpoint only once it is in, and a refused load
 * leaves the replica at its last epoch. Over the in-memory transport, with
 * the fake binding.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { DeviceSet } from '../../src/checkpoint/devices.js';
import { EpochRefusedError } from '../../src/checkpoint/errors.js';
import { CheckpointSession } from '../../src/checkpoint/session.js';
import { remusEpochs } from '../../src/checkpoint/strategies.js';
import { SecondaryServer } from '../../src/secondary/server.js';
import { AckStatus } from '../../src/transport/backchannel.js';
import { ReplicationLink } from '../../src/transport/link.js';
import { FakeBinding, type FakeKnobs } from '../helpers/fake-binding.js';
import { MemoryTransport } from '../helpers/memory-transport.js';
import { captureLog } from './fixtures.js';

const PAGES = 16;

async function rig(knobs: FakeKnobs): Promise<{ session: CheckpointSession; server: SecondaryServer; primary: ReturnType<FakeBinding['primary']>; digests: Map<number, string>; log: ReturnType<typeof captureLog> }> {
  const binding = new FakeBinding(PAGES, knobs);
  const primary = binding.primary();
  const transport = new MemoryTransport();
  const log = captureLog();
  const server = new SecondaryServer({ replica: binding.replica(), transport, listen: { host: 'secondary', port: 0 }, logger: log.logger });
  const link = new ReplicationLink({ transport, secondary: await server.start(), connectTimeoutMs: 1000, ackTimeoutMs: 5000 });
  await link.start();
  const digests = new Map<number, string>();
  const session = new CheckpointSession({
    domain: primary,
    devices: new DeviceSet(),
    target: link,
    strategy: remusEpochs,
    version: 3,
    precopyPolicy: () => 'stop-and-copy',
    now: () => performance.now(),
    digest: () => primary.digest(),
    onStaged: (e, d) => digests.set(e, d),
  });
  return { session, server, primary, digests, log };
}

describe('the replica device model, loaded asynchronously', () => {
  test('a slow load: the epoch commits and is acked only once its device model is in, epochs stay in order', async () => {
    const knobs: FakeKnobs = { loadDelayMs: 20 };
    const { session, server, primary, digests } = await rig(knobs);
    const order: string[] = [];
    server.on('epoch', (c) => {
      order.push(`commit ${c.epoch}`);
      assert.equal(server.digest(), digests.get(c.epoch), `the replica at the commit of epoch ${c.epoch}`);
    });
    const t0 = performance.now();
    await session.precopy();
    assert.ok(performance.now() - t0 >= 20, 'epoch 1 waited for its load');
    for (let e = 2; e <= 4; e++) {
      primary.run(e, `e${e}`);
      const m = await session.checkpoint('operator');
      order.push(`acked ${m.epoch}`);
      assert.ok(m.ackMs >= 15, `epoch ${e}: acked after ${m.ackMs.toFixed(1)} ms, the load takes 20`);
    }
    assert.deepEqual(order, ['commit 1', 'commit 2', 'acked 2', 'commit 3', 'acked 3', 'commit 4', 'acked 4']);
    await session.end();
    await server.stop();
  });

  test('a refused load refuses the epoch (STREAM_ERROR): the replica keeps the last epoch, memory and device model alike', async () => {
    const knobs: FakeKnobs = {};
    const { session, server, primary, digests, log } = await rig(knobs);
    await session.precopy();
    primary.run(2, 'two');
    await session.checkpoint('operator');
    const atTwo = server.digest();
    assert.equal(atTwo, digests.get(2));
    knobs.loadError = new Error('QMP: device state version mismatch');
    primary.run(3, 'three');
    await assert.rejects(session.checkpoint('operator'), (e: unknown) => e instanceof EpochRefusedError && e.epoch === 3 && e.status === AckStatus.STREAM_ERROR && /device state version mismatch/.test(e.message));
    assert.equal(server.lastEpoch, 2);
    assert.equal(server.digest(), atTwo, 'nothing of epoch 3 reached the replica');
    const refusal = log.lines().find((l) => l.code === 'ERR_REPLICA_MISMATCH');
    assert.ok(refusal !== undefined && refusal.record === 'libxl EMULATOR_CONTEXT', JSON.stringify(log.lines().slice(-3)));
    await server.stop();
  });
});
