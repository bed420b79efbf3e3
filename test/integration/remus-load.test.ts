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
import { stateDigest } from '../../src/domain/sim/digest.js';
import { SimDomain } from '../../src/domain/sim/domain.js';
import { DiskMirror } from '../../src/disk/mirror.js';
import { DiskReplica } from '../../src/disk/replica.js';
import { SimDisk } from '../../src/domain/sim/disk.js';
import { KvStore } from '../../src/guest/kv-store.js';
import { checkPersistence, installGuest, resumeGuest, type PersistenceCheck } from '../../src/guest/machine.js';
import { KvServer } from '../../src/guest/server.js';
import { SecondaryServer } from '../../src/secondary/server.js';
import { createLogger } from '../../src/util/logger.js';
import { REDIS_BENCHMARK, requireRedisTools } from '../guest/helpers.js';
import { loopbackEngine } from '../checkpoint/helpers.js';

const logger = createLogger('silent');
const PAGES = 2048; // 8 MiB: small enough to digest twice per epoch
const EPOCHS = 300;
const DISK_BYTES = 2 * 1024 * 1024;

test(`${EPOCHS} epochs under redis-benchmark: the replica equals the primary at every acked epoch`, async () => {
  requireRedisTools();
  const domain = new SimDomain({ pages: PAGES });
  const disk = new SimDisk({ capacityBytes: DISK_BYTES, domain });
  const { store, aof } = installGuest(domain, disk);
  const service = new KvServer({ domain, store, persistence: aof, host: '127.0.0.1', port: 0, logger });
  const { port: servicePort } = await service.start();
  const replica = new SimDomain({ pages: PAGES });
  replica.pause();
  const replicaDisk = new SimDisk({ capacityBytes: DISK_BYTES, domain: replica });
  const secondary = new SecondaryServer({ replica, devices: [new DiskReplica([replicaDisk])], disks: [replicaDisk], host: '127.0.0.1', port: 0, logger });
  const { port } = await secondary.start();
  const devices = new DeviceSet();
  devices.add(new DiskMirror({ disk }));
  const engine = loopbackEngine(domain, devices, port, { verifyDigest: () => stateDigest(domain, [disk]) });
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
        const r = resumeGuest(replica, replicaDisk);
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
  const replicaStore = KvStore.attach(replica);
  assert.ok(replicaStore.keyCount > 0, 'the replica holds the keyspace');
});
