/**
 * The replication check: while the real redis-benchmark loads the guest's
 * key-value service, the engine checkpoints it to a real secondary over
 * loopback TCP, and after every acked epoch the digest of the replica (RAM +
 * vCPU context + device model + disk) equals the primary's at that epoch's
 * suspend — for hundreds of epochs. The guest logs every change to its
 * append-only file on a small disk, so the file fills and is rewritten
 * while replicated; the replica's file always replays to its RAM.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { after, test } from 'node:test';
import { DeviceSet } from '../../src/checkpoint/devices.js';
import type { EpochMetrics } from '../../src/checkpoint/session.js';
import type { PersistenceCheck } from '../../src/domain/binding.js';
import { DiskMirror } from '../../src/disk/mirror.js';
import { DiskReplica } from '../../src/disk/replica.js';
import { KvStore } from '../../src/guest/kv-store.js';
import { checkPersistence, installGuest, resumeGuest } from '../../src/guest/machine.js';
import { KvServer } from '../../src/guest/server.js';
import { createLogger } from '../../src/util/logger.js';
import { REDIS_BENCHMARK, requireRedisTools } from '../guest/helpers.js';
import { testEngine } from '../checkpoint/helpers.js';
import { secondaryFor, simBinding } from '../helpers/sim.js';

const logger = createLogger('silent');
const PAGES = 2048; // 8 MiB: small enough to digest twice per epoch
const EPOCHS = 300;
const DISK_BYTES = 2 * 1024 * 1024;

test(`${EPOCHS} epochs under redis-benchmark: the replica equals the primary at every acked epoch`, async () => {
  requireRedisTools();
  const binding = simBinding(PAGES, { diskBytes: DISK_BYTES });
  const primary = binding.primary(logger);
  const { sim: domain, disk } = primary;
  // The guest's software assembled here rather than by serveTcp(): the test reads its append-only file's counters.
  const { store, aof } = installGuest(domain, disk);
  const service = new KvServer({ domain, store, persistence: aof, host: '127.0.0.1', port: 0, logger });
  const { port: servicePort } = await service.start();
  const replica = binding.replica(logger);
  const secondary = secondaryFor(replica, { devices: [new DiskReplica(replica.disks)] });
  const { port } = await secondary.start();
  const engine = testEngine({ domain: primary.domain, devices: new DeviceSet([new DiskMirror({ disk })]), port, options: { digest: () => primary.digest() } });
  after(async () => {
    await engine.stop();
    await secondary.stop();
    await service.stop();
  });

  const mismatches: number[] = [];
  const epochs: EpochMetrics[] = [];
  const files: (PersistenceCheck & { epoch: number })[] = [];
  const enough = new Promise<void>((resolve) => {
    engine.metrics$.subscribe((m) => {
      // Emitted after the ack and before the next epoch starts: the replica holds exactly epoch m.epoch.
      if (secondary.lastEpoch !== m.epoch || secondary.digest() !== m.digest) mismatches.push(m.epoch);
      if (m.epoch % 20 === 0) {
        // Read-only: the replica stays paused; its file must replay to its RAM at this epoch.
        const r = resumeGuest(replica.sim, replica.disk);
        files.push({ epoch: m.epoch, ...checkPersistence(r.store, r.aof!, Date.now()) });
      }
      epochs.push(m);
      if (epochs.length === EPOCHS) resolve();
    });
  });
  engine.start();

  // Load for as long as the epochs take; redis-benchmark runs again until enough epochs are in.
  let benchRuns = 0;
  let loaded = true;
  const load = (async () => {
    while (loaded) {
      benchRuns++;
      const bench = spawn(REDIS_BENCHMARK, ['-p', String(servicePort), '-t', 'set,get,incr,mset', '-n', '4000', '-c', '8', '-r', '500', '-d', '64', '-q'], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      bench.stdout.on('data', (d: Buffer) => (out += d.toString()));
      const code = await new Promise<number | null>((res) => bench.on('close', res));
      assert.equal(code, 0, `redis-benchmark failed: ${out}`);
      assert.match(out, /SET: [\d.]+ requests per second/);
    }
  })();
  await enough;
  loaded = false;
  await load;

  assert.deepEqual(mismatches, [], 'epochs whose replica differed from the primary at suspend');
  assert.deepEqual(files.filter((f) => !f.consistent), [], "epochs whose replica's append-only file did not replay to its RAM");
  assert.ok(files.length >= EPOCHS / 20 && files.every((f) => f.keys > 0 || f.epoch < 40), JSON.stringify(files));
  assert.ok(aof!.info().rewrites > 0, `the ${DISK_BYTES}-byte disk never filled: the file was not rewritten under replication (${JSON.stringify(aof!.info())})`);
  assert.deepEqual(epochs.map((m) => m.epoch), Array.from({ length: epochs.length }, (_, i) => i + 1));
  const busy = epochs.filter((m) => m.dirtyPages > 0).length;
  assert.ok(busy > EPOCHS / 2, `only ${busy} of ${EPOCHS} epochs carried dirty pages: the load did not reach the guest`);
  assert.ok(benchRuns >= 1);
  // The service really served: the replica holds the keys the benchmark wrote.
  const replicaStore = KvStore.attach(replica.sim);
  assert.ok(replicaStore.keyCount > 0, 'the replica holds the keyspace');
});
