/**
 * The disk's full sync sent live, through the real engine and a real
 * secondary over loopback TCP: a disk with thousands of written blocks at
 * the start of protection, a guest that keeps writing it throughout, and
 * after every acked epoch the replica (RAM, vCPU state, device model, disk)
 * equals the primary at that epoch's suspend. The first checkpoint carries
 * only the blocks written since the setup, not the whole disk.
 */
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { DeviceSet } from '../../src/checkpoint/devices.js';
import { DiskMirror, type DiskEpochStats } from '../../src/disk/mirror.js';
import { DiskReplica } from '../../src/disk/replica.js';
import { DISK_BLOCK_SIZE } from '../../src/disk/record.js';
import { xorshift32 } from '../../src/util/xorshift.js';
import { testEngine } from '../checkpoint/helpers.js';
import { secondaryFor, silent, simBinding } from '../helpers/sim.js';

const PAGES = 512;
const DISK_BYTES = 16 * 1024 * 1024;
const PREFILLED = 3000;
const EPOCHS = 12;

test('a disk written before protection is synced live; the first checkpoint carries only later writes, and every epoch matches', async () => {
  const binding = simBinding(PAGES, { diskBytes: DISK_BYTES, liveBatchPages: 64 });
  const primary = binding.primary(silent);
  const domain = primary.sim;
  const disk = primary.disk;
  const next = xorshift32(0x5a5a);
  const blocks = DISK_BYTES / DISK_BLOCK_SIZE;
  for (let i = 0; i < PREFILLED; i++) disk.write(((i * 7) % blocks) * DISK_BLOCK_SIZE + (next() % 4000), Buffer.from([next() & 0xff, 1]));
  const written = disk.writtenBlocks().length;
  assert.ok(written > 2500, `${written} blocks written before protection`);

  const replica = binding.replica(silent);
  const secondary = secondaryFor(replica, { devices: [new DiskReplica(replica.disks)] });
  const { port } = await secondary.start();
  const mirror = new DiskMirror({ disk, maxBlocksPerRecord: 256 });
  const engine = testEngine({ domain: primary.domain, devices: new DeviceSet([mirror]), port, options: { digest: () => primary.digest() } });
  // The guest writes RAM and disk every millisecond it runs, the live sync included.
  let guestWrites = 0;
  const guest = setInterval(() => {
    if (domain.paused) return;
    for (let i = 0; i < 4; i++) {
      disk.write((next() % blocks) * DISK_BLOCK_SIZE + (next() % 4000), Buffer.from([next() & 0xff]));
      domain.write((next() % PAGES) * 4096 + (next() % 4000), Buffer.from([next() & 0xff]));
      guestWrites++;
    }
  }, 1);
  after(async () => {
    clearInterval(guest);
    await engine.stop();
    await secondary.stop();
  });

  const mismatches: number[] = [];
  let first: DiskEpochStats | undefined;
  const done = new Promise<void>((resolve) => {
    engine.metrics$.subscribe((m) => {
      // Emitted after the ack and before the next epoch starts: the replica holds exactly epoch m.epoch.
      if (secondary.lastEpoch !== m.epoch || secondary.digest() !== m.digest) mismatches.push(m.epoch);
      if (m.epoch === 1) first = mirror.lastEpoch;
      if (m.epoch === EPOCHS) resolve();
    });
  });
  engine.start();
  await done;

  assert.deepEqual(mismatches, [], 'epochs whose replica differed from the primary at suspend');
  const live = mirror.lastLiveSync;
  assert.ok(live !== undefined, 'the engine ran the live sync');
  assert.ok(live.blocks >= written && live.records >= Math.ceil(written / 256), JSON.stringify(live));
  assert.ok(first !== undefined && first.epoch === 1, JSON.stringify(first));
  assert.equal(first.fullSync, false, 'the first checkpoint is not a full sync: the live sync was');
  assert.ok(first.blocks < written / 4, `the first checkpoint carried ${first.blocks} of the ${written} written blocks`);
  assert.ok(guestWrites > 0, 'the guest wrote while protected');
});
