/**
 * DiskMirror, the primary's disk checkpoint device: what it stages at each
 * suspend and the records it hands the session, read back with the real parser.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { DiskMirror } from '../../src/disk/mirror.js';
import { parseDiskWrites, type DiskWrites } from '../../src/disk/record.js';
import { DISK_BLOCK_SIZE } from '../../src/disk/record.js';
import { SimDisk } from '../../src/domain/sim/disk.js';
import { TandemType } from '../../src/stream/format.js';

const CAPACITY = 256 * DISK_BLOCK_SIZE;

function setup(maxBlocksPerRecord?: number): { domain: { paused: boolean }; disk: SimDisk; mirror: DiskMirror } {
  const domain = { paused: false };
  const disk = new SimDisk({ capacityBytes: CAPACITY, domain });
  return { domain, disk, mirror: new DiskMirror({ disk, maxBlocksPerRecord }) };
}

/** Suspend for `epoch`, take its records, resume; parsed back. */
function epoch(d: ReturnType<typeof setup>, n: number): DiskWrites[] {
  d.domain.paused = true;
  d.mirror.postsuspend(n);
  d.domain.paused = false;
  return d.mirror.records(n).map((r) => {
    assert.equal(r.layer, 'libxl');
    assert.ok(r.type === 'OPTIONAL');
    assert.equal(r.code, TandemType.TANDEM_DISK_WRITES);
    return parseDiskWrites(r.data, { capacityOf: (i) => (i === 0 ? CAPACITY : undefined) }, { offset: 0 });
  });
}

/** Runs the live sync to its end (the guest may write between batches: `between(batch)`); parsed back, batch by batch. */
function liveSync(d: ReturnType<typeof setup>, between: (batch: number) => void = () => {}): DiskWrites[][] {
  const out: DiskWrites[][] = [];
  for (const batch of d.mirror.liveSync()) {
    out.push(batch.map((r) => parseDiskWrites(r.type === 'OPTIONAL' ? r.data : Buffer.alloc(0), { capacityOf: () => CAPACITY }, { offset: 0 })));
    between(out.length);
  }
  return out;
}

const blocksOf = (ws: DiskWrites[]): number[] => ws.flatMap((w) => w.extents.flatMap((e) => Array.from({ length: e.data.length / DISK_BLOCK_SIZE }, (_, i) => e.first + i)));

describe('DiskMirror', () => {
  test('the first checkpoint of a session is a full sync flagged RESET, including writes from before the session', () => {
    const d = setup();
    d.disk.write(3 * DISK_BLOCK_SIZE, Buffer.from('before'));
    d.mirror.setup();
    d.disk.write(7 * DISK_BLOCK_SIZE, Buffer.from('during'));
    const first = epoch(d, 1);
    assert.equal(first.length, 1);
    assert.equal(first[0].reset, true);
    assert.deepEqual(blocksOf(first), [3, 7]);
    assert.equal(first[0].extents[0].data.subarray(0, 6).toString(), 'before');
  });

  test('a full sync of an empty disk still sends its RESET; a quiet epoch sends nothing', () => {
    const d = setup();
    d.mirror.setup();
    const first = epoch(d, 1);
    assert.equal(first.length, 1);
    assert.equal(first[0].reset, true);
    assert.equal(first[0].blocks, 0);
    assert.deepEqual(epoch(d, 2), []);
  });

  test('later epochs carry the blocks written since the last suspend, as of the suspend, adjacent ones as one extent', () => {
    const d = setup();
    d.mirror.setup();
    epoch(d, 1);
    d.disk.write(10 * DISK_BLOCK_SIZE, Buffer.alloc(2 * DISK_BLOCK_SIZE + 1, 1)); // blocks 10, 11, 12
    d.disk.write(40 * DISK_BLOCK_SIZE, Buffer.from('x'));
    d.domain.paused = true;
    d.mirror.postsuspend(2);
    d.domain.paused = false;
    // Written after the suspend: belongs to epoch 3, must not leak into epoch 2's records.
    d.disk.write(40 * DISK_BLOCK_SIZE, Buffer.from('y'));
    const second = d.mirror.records(2).map((r) => parseDiskWrites(r.type === 'OPTIONAL' ? r.data : Buffer.alloc(0), { capacityOf: () => CAPACITY }, { offset: 0 }));
    assert.equal(second.length, 1);
    assert.equal(second[0].reset, false);
    assert.deepEqual(
      second[0].extents.map((e) => [e.first, e.data.length / DISK_BLOCK_SIZE]),
      [
        [10, 3],
        [40, 1],
      ],
    );
    assert.equal(second[0].extents[1].data.toString('latin1', 0, 1), 'x');
    assert.deepEqual(blocksOf(epoch(d, 3)), [40]);
    assert.equal(d.mirror.lastEpoch?.blocks, 1);
  });

  test('records are split at maxBlocksPerRecord, only the first of a full sync resets', () => {
    const d = setup(4);
    for (let b = 0; b < 10; b++) d.disk.write(b * 2 * DISK_BLOCK_SIZE, Buffer.from([b]));
    d.mirror.setup();
    const first = epoch(d, 1);
    assert.deepEqual(
      first.map((w) => [w.reset, w.blocks]),
      [
        [true, 4],
        [false, 4],
        [false, 2],
      ],
    );
    assert.deepEqual(blocksOf(first), [0, 2, 4, 6, 8, 10, 12, 14, 16, 18]);
  });

  test('live sync: every written block, one record a batch, the first flagged RESET; the first checkpoint then carries only what was written since the setup', () => {
    const d = setup(4);
    for (let b = 0; b < 10; b++) d.disk.write(b * 2 * DISK_BLOCK_SIZE, Buffer.from([b + 1]));
    d.mirror.setup();
    // The guest runs between batches: it rewrites a block already sent (2), one
    // not yet sent (16) and a fresh one (21); all three must reach epoch 1 as of its suspend.
    const batches = liveSync(d, (n) => {
      if (n === 1) {
        d.disk.write(2 * DISK_BLOCK_SIZE, Buffer.from('A'));
        d.disk.write(16 * DISK_BLOCK_SIZE, Buffer.from('B'));
        d.disk.write(21 * DISK_BLOCK_SIZE, Buffer.from('C'));
      }
    });
    assert.deepEqual(
      batches.map((b) => b.map((w) => [w.reset, w.blocks])),
      [[[true, 4]], [[false, 4]], [[false, 2]]],
    );
    const live = batches.flat();
    assert.deepEqual(blocksOf(live), [0, 2, 4, 6, 8, 10, 12, 14, 16, 18]);
    // Copied as it was when its batch was made: block 2 before the rewrite, block 16 after.
    assert.equal(live[0].extents[1].data[0], 2);
    assert.equal(live[2].extents[0].data.toString('latin1', 0, 1), 'B');
    assert.deepEqual(d.mirror.lastLiveSync, { blocks: 10, records: 3 });
    const first = epoch(d, 1);
    assert.equal(first.length, 1);
    assert.equal(first[0].reset, false, 'the live sync already reset the replica');
    assert.deepEqual(blocksOf(first), [2, 16, 21]);
    assert.equal(first[0].extents[0].data.toString('latin1', 0, 1), 'A');
  });

  test('live sync of an empty disk is one RESET record; a second run sends nothing', () => {
    const d = setup();
    d.mirror.setup();
    const batches = liveSync(d);
    assert.equal(batches.length, 1);
    assert.deepEqual(batches[0].map((w) => [w.reset, w.blocks]), [[true, 0]]);
    assert.deepEqual(liveSync(d), []);
    assert.deepEqual(epoch(d, 1), []);
  });

  test('a live sync cut short (the link failed) leaves the full sync to the first checkpoint; before setup it sends nothing', () => {
    const d = setup(2);
    assert.deepEqual(liveSync(d), [], 'not set up: no session to sync');
    for (let b = 0; b < 6; b++) d.disk.write(b * DISK_BLOCK_SIZE, Buffer.from([b]));
    d.mirror.setup();
    const it = d.mirror.liveSync()[Symbol.iterator]();
    assert.equal(it.next().done, false);
    it.return?.(undefined);
    const first = epoch(d, 1);
    assert.equal(first[0].reset, true);
    assert.deepEqual(blocksOf(first), [0, 1, 2, 3, 4, 5]);
    assert.equal(d.mirror.lastLiveSync, undefined);
  });

  test('records for another epoch than the staged one are empty; teardown stops tracking and a new setup syncs in full', () => {
    const d = setup();
    d.mirror.setup();
    epoch(d, 1);
    d.disk.write(0, Buffer.from('a'));
    d.mirror.postsuspend(2);
    assert.deepEqual(d.mirror.records(3), []);
    d.mirror.teardown();
    d.disk.write(DISK_BLOCK_SIZE, Buffer.from('b'));
    d.mirror.setup();
    const resync = epoch(d, 1);
    assert.equal(resync[0].reset, true);
    assert.deepEqual(blocksOf(resync), [0, 1]);
  });
});
