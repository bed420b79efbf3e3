/**
 * The secondary server with a replica its hypervisor restores (the Xen
 * binding's kind), fed by the real engine over loopback TCP: the domain's
 * config opens the restore, only whole epochs reach it, without Tandem's
 * records, and each is acked once given. The hypervisor is a recorder here;
 * Xen's own restore is driven in the lab (test-xen/remus.test.ts).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DeviceSet } from '../../src/checkpoint/devices.js';
import type { EpochRestore } from '../../src/domain/binding.js';
import { StreamDecoder } from '../../src/stream/decoder.js';
import { secondaryFor, silent, simBinding, withToolstackConfig } from '../helpers/sim.js';
import { until } from '../helpers/wait.js';
import { busyGuest, testEngine } from '../checkpoint/helpers.js';

class RecordingRestore implements EpochRestore {
  readonly opened: string[] = [];
  readonly given: Buffer[] = [];
  closed = 0;

  open(config: { json: string; name: string }): Promise<void> {
    this.opened.push(config.name);
    this.given.length = 0;
    return Promise.resolve();
  }

  give(chunks: readonly Buffer[]): Promise<void> {
    for (const c of chunks) this.given.push(Buffer.from(c));
    // The hypervisor takes its time: acks must wait for it.
    return new Promise((resolve) => setTimeout(resolve, 1));
  }

  close(): Promise<void> {
    this.closed++;
    return Promise.resolve();
  }
}

test('the engine\'s stream reaches a restoring replica as whole epochs, opened by its config; acks follow the hypervisor', { timeout: 20_000 }, async () => {
  const guest = simBinding(512).primary(silent);
  const config = JSON.stringify({ c_info: { name: 'web1' } });
  const domain = withToolstackConfig(guest.domain, () => Promise.resolve(config));
  const restore = new RecordingRestore();
  const server = secondaryFor({ restore });
  const { port } = await server.start();
  const engine = testEngine({ domain, port, intervalMs: 5, options: { generation: 3 } });
  const stopGuest = busyGuest(guest.sim, 20);
  const acked: number[] = [];
  engine.metrics$.subscribe((m) => acked.push(m.epoch));
  try {
    engine.start();
    await until(() => acked.length >= 20, 'twenty acked epochs', 15_000);
    // At an ack the replica holds that epoch: the server can never be behind what the primary was told.
    assert.ok(server.lastEpoch >= acked.at(-1)!, `server at ${server.lastEpoch}, acked ${acked.at(-1)}`);
    assert.equal(server.state, 'protected');
  } finally {
    stopGuest();
    await engine.stop();
  }
  await until(() => server.state === 'idle', 'the stream to end', 5000);
  await server.stop();
  assert.deepEqual(restore.opened, ['web1']);
  // What Xen got: a libxl stream of whole checkpoints, none of Tandem's records, as many as the replica holds.
  const items = new StreamDecoder({ format: 'libxl' }).push(Buffer.concat(restore.given));
  const records = items.flatMap((i) => (i.kind === 'record' ? [i.record] : []));
  assert.equal(records.filter((r) => r.type === 'OPTIONAL').length, 0);
  assert.equal(records.filter((r) => r.type === 'CHECKPOINT_END').length, server.lastEpoch);
  assert.equal(records.at(-1)?.type, 'CHECKPOINT_END', 'nothing of an epoch not whole');
  assert.equal(restore.closed, 0, 'the restore holding the checkpoints stays for a failover');
});

test('a domain whose config and output buffer take longer to ready than the secondary gives a connection to name its primary is still taken: the prelude goes first', { timeout: 20_000 }, async () => {
  const guest = simBinding(256).primary(silent);
  // `xl list -l` on a loaded dom0: slower than the prelude's bound below.
  const domain = withToolstackConfig(guest.domain, () => new Promise((resolve) => setTimeout(() => resolve(JSON.stringify({ c_info: { name: 'slow1' } })), 600)));
  const restore = new RecordingRestore();
  const server = secondaryFor({ restore }, { primaries: { generation: 1 }, preludeTimeoutMs: 200 });
  const refused: string[] = [];
  server.on('connection-refused', (e) => refused.push(e.remote));
  const { port } = await server.start();
  // An output buffer whose setup spawns tools (`ip`, `tc`) on a loaded dom0.
  const devices = new DeviceSet([{ name: 'slow-netbuf', setup: () => new Promise<void>((resolve) => setTimeout(resolve, 600)) }]);
  const engine = testEngine({ domain, port, intervalMs: 5, devices, options: { generation: 1 } });
  const acked: number[] = [];
  engine.metrics$.subscribe((m) => acked.push(m.epoch));
  try {
    engine.start();
    await until(() => acked.length >= 3, 'three acked epochs', 15_000);
  } finally {
    await engine.stop();
    await server.stop();
  }
  assert.deepEqual(refused, []);
  assert.deepEqual(restore.opened, ['slow1']);
});
