/**
 * Page compression end to end: redis-benchmark loads the sim guest's
 * key-value service while the engine checkpoints it, with
 * primary.compression xbzrle, to a real secondary over loopback TCP. After
 * every acked epoch the replica's digest (RAM, vCPU context, device model)
 * equals the primary's at that epoch's suspend; the epochs after the first
 * carry their pages as TANDEM_PAGE_XBZRLE and put far fewer bytes on the
 * wire than the same pages as PAGE_DATA would.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { after, test } from 'node:test';
import { DeviceSet } from '../../src/checkpoint/devices.js';
import type { EpochMetrics } from '../../src/checkpoint/session.js';
import { DiskMirror } from '../../src/disk/mirror.js';
import { DiskReplica } from '../../src/disk/replica.js';
import { installGuest } from '../../src/guest/machine.js';
import { KvServer } from '../../src/guest/server.js';
import { PAGE_SIZE } from '../../src/stream/format.js';
import { createLogger } from '../../src/util/logger.js';
import { testEngine } from '../checkpoint/helpers.js';
import { REDIS_BENCHMARK, requireRedisTools } from '../guest/helpers.js';
import { secondaryFor, simBinding } from '../helpers/sim.js';

const logger = createLogger('silent');
const PAGES = 2048;
const EPOCHS = 150;

test(`${EPOCHS} compressed epochs under redis-benchmark: the replica equals the primary at every acked epoch, on far fewer bytes`, async () => {
  requireRedisTools();
  const binding = simBinding(PAGES);
  const primary = binding.primary(logger);
  const { sim: domain, disk } = primary;
  const { store, aof } = installGuest(domain, disk);
  const service = new KvServer({ domain, store, persistence: aof, host: '127.0.0.1', port: 0, logger });
  const { port: servicePort } = await service.start();
  const replica = binding.replica(logger);
  const secondary = secondaryFor(replica, { devices: [new DiskReplica(replica.disks)] });
  const { port } = await secondary.start();
  // A small cache (64 pages): evictions happen, and an evicted page must go whole and still be right.
  const engine = testEngine({ domain: primary.domain, devices: new DeviceSet([new DiskMirror({ disk })]), port, options: { digest: () => primary.digest(), compression: { cachePages: 64 } } });
  after(async () => {
    await engine.stop();
    await secondary.stop();
    await service.stop();
  });

  const mismatches: number[] = [];
  const epochs: EpochMetrics[] = [];
  const enough = new Promise<void>((resolve) => {
    engine.metrics$.subscribe((m) => {
      if (epochs.length >= EPOCHS) return;
      if (secondary.lastEpoch !== m.epoch || secondary.digest() !== m.digest) mismatches.push(m.epoch);
      epochs.push(m);
      if (epochs.length === EPOCHS) resolve();
    });
  });
  engine.start();
  let loaded = true;
  const load = (async () => {
    while (loaded) {
      const bench = spawn(REDIS_BENCHMARK, ['-p', String(servicePort), '-t', 'set,get,incr,mset', '-n', '4000', '-c', '8', '-r', '500', '-d', '64', '-q'], { stdio: ['ignore', 'pipe', 'pipe'] });
      const code = await new Promise<number | null>((res) => bench.on('close', res));
      assert.equal(code, 0, 'redis-benchmark failed');
    }
  })();
  await enough;
  loaded = false;
  await load;

  assert.deepEqual(mismatches, [], 'epochs whose replica differed from the primary at suspend');
  const later = epochs.filter((m) => m.epoch > 1 && m.dirtyPages > 0);
  assert.ok(later.length > EPOCHS / 2, `only ${later.length} epochs carried pages: the load did not reach the guest`);
  assert.ok(later.every((m) => m.compression !== undefined), 'every epoch after the first went compressed');
  const deltas = later.reduce((n, m) => n + m.compression!.delta, 0);
  const raws = later.reduce((n, m) => n + m.compression!.raw, 0);
  assert.ok(deltas > 0 && raws > 0, `deltas ${deltas}, raw pages ${raws}: both expected (a 64-page cache evicts)`);
  const bytes = later.reduce((n, m) => n + m.bytes, 0);
  const plain = later.reduce((n, m) => n + m.dirtyPages * (PAGE_SIZE + 8), 0);
  assert.ok(bytes * 2 < plain, `compressed epochs took ${bytes} bytes; their pages alone as PAGE_DATA take ${plain}`);
});
