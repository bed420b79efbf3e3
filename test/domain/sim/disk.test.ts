import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { DISK_BLOCK_SIZE } from '../../../src/disk/record.js';
import { MAX_DISK_BYTES, SimDisk } from '../../../src/domain/sim/disk.js';

const gate = (): { paused: boolean } => ({ paused: false });

describe('SimDisk', () => {
  test('refuses capacities that are not whole blocks within the limit', () => {
    for (const capacityBytes of [0, 100, DISK_BLOCK_SIZE + 1, MAX_DISK_BYTES + DISK_BLOCK_SIZE, 1.5 * DISK_BLOCK_SIZE, Number.NaN]) {
      assert.throws(() => new SimDisk({ capacityBytes, domain: gate() }), RangeError, String(capacityBytes));
    }
  });

  test('a guest write lands, marks the blocks it touches, and is refused while the domain is paused', () => {
    const domain = gate();
    const disk = new SimDisk({ capacityBytes: 16 * DISK_BLOCK_SIZE, domain });
    disk.enableTracking();
    // Straddles blocks 1 and 2.
    disk.write(2 * DISK_BLOCK_SIZE - 3, Buffer.from('abcdef'));
    disk.write(9 * DISK_BLOCK_SIZE, Buffer.from('x'));
    assert.equal(disk.read(2 * DISK_BLOCK_SIZE - 3, 6).toString(), 'abcdef');
    assert.deepEqual([...disk.readAndClearDirty()], [1, 2, 9]);
    assert.deepEqual([...disk.readAndClearDirty()], [], 'read-and-clear');
    domain.paused = true;
    assert.throws(() => disk.write(0, Buffer.from('z')), /paused/);
    assert.equal(disk.read(0, 1)[0], 0, 'nothing written while paused');
    assert.deepEqual([...disk.writtenBlocks()], [1, 2, 9]);
  });

  test('writes outside the disk are refused whole', () => {
    const disk = new SimDisk({ capacityBytes: 2 * DISK_BLOCK_SIZE, domain: gate() });
    assert.throws(() => disk.write(2 * DISK_BLOCK_SIZE - 1, Buffer.from('ab')), RangeError);
    assert.throws(() => disk.write(-1, Buffer.from('a')), RangeError);
    assert.throws(() => disk.read(0, 2 * DISK_BLOCK_SIZE + 1), RangeError);
    assert.deepEqual([...disk.writtenBlocks()], []);
    assert.equal(disk.read(2 * DISK_BLOCK_SIZE - 1, 1)[0], 0);
  });

  test('untracked writes are not in the dirty set but stay in the written set', () => {
    const disk = new SimDisk({ capacityBytes: 8 * DISK_BLOCK_SIZE, domain: gate() });
    disk.write(3 * DISK_BLOCK_SIZE, Buffer.from('q'));
    disk.enableTracking();
    assert.deepEqual([...disk.readAndClearDirty()], []);
    disk.write(5 * DISK_BLOCK_SIZE, Buffer.from('r'));
    disk.disableTracking();
    disk.write(6 * DISK_BLOCK_SIZE, Buffer.from('s'));
    assert.deepEqual([...disk.readAndClearDirty()], []);
    assert.deepEqual([...disk.writtenBlocks()], [3, 5, 6]);
  });

  test('restore side: installBlocks is not a guest write, zero() empties the disk', () => {
    const domain = { paused: true };
    const disk = new SimDisk({ capacityBytes: 4 * DISK_BLOCK_SIZE, domain });
    disk.enableTracking();
    const data = Buffer.alloc(2 * DISK_BLOCK_SIZE, 7);
    disk.installBlocks(1, data);
    assert.ok(disk.read(DISK_BLOCK_SIZE, 2 * DISK_BLOCK_SIZE).equals(data));
    assert.deepEqual([...disk.readAndClearDirty()], [], 'not dirty-tracked');
    assert.deepEqual([...disk.writtenBlocks()], [1, 2], 'but sent by a later full sync');
    assert.throws(() => disk.installBlocks(3, data), RangeError, 'past the end');
    assert.throws(() => disk.installBlocks(0, Buffer.alloc(10)), RangeError, 'not whole blocks');
    const before = disk.digest();
    disk.zero();
    assert.notEqual(disk.digest(), before);
    assert.equal(disk.digest(), new SimDisk({ capacityBytes: 4 * DISK_BLOCK_SIZE, domain }).digest());
    assert.deepEqual([...disk.writtenBlocks()], []);
  });

  test('zero() leaves no byte set, whatever wrote it: guest writes across blocks, installs, a merged overlay', () => {
    const domain = { paused: false };
    const blocks = 64;
    let seed = 0x9e3779b9;
    const rand = (n: number): number => {
      seed ^= seed << 13;
      seed ^= seed >>> 17;
      seed ^= seed << 5;
      return (seed >>> 0) % n;
    };
    const empty = new SimDisk({ capacityBytes: blocks * DISK_BLOCK_SIZE, domain }).digest();
    for (let round = 0; round < 20; round++) {
      const disk = new SimDisk({ capacityBytes: blocks * DISK_BLOCK_SIZE, domain });
      for (let k = 0; k < 1 + rand(12); k++) {
        const at = rand(blocks * DISK_BLOCK_SIZE - 1);
        disk.write(at, Buffer.alloc(1 + rand(Math.min(3 * DISK_BLOCK_SIZE, blocks * DISK_BLOCK_SIZE - at - 1)), 1 + rand(255)));
      }
      domain.paused = true;
      disk.installBlocks(rand(blocks), Buffer.alloc(DISK_BLOCK_SIZE, 0xaa));
      domain.paused = false;
      disk.startOverlay();
      disk.write(rand(blocks) * DISK_BLOCK_SIZE, Buffer.from('overlay'));
      disk.mergeOverlay();
      assert.notEqual(disk.digest(), empty, `round ${round}: something was written`);
      domain.paused = true;
      disk.zero();
      domain.paused = false;
      assert.equal(disk.digest(), empty, `round ${round}`);
      assert.deepEqual([...disk.writtenBlocks()], []);
    }
  });

  test('copyBlocks gathers blocks back to back and checks every index', () => {
    const disk = new SimDisk({ capacityBytes: 8 * DISK_BLOCK_SIZE, domain: gate() });
    for (let b = 0; b < 8; b++) disk.write(b * DISK_BLOCK_SIZE, Buffer.from([b + 1]));
    const dest = Buffer.alloc(3 * DISK_BLOCK_SIZE + 8);
    disk.copyBlocks([6, 2, 4, 0], 1, 2, dest, 8);
    assert.equal(dest[8], 3);
    assert.equal(dest[8 + DISK_BLOCK_SIZE], 5);
    assert.throws(() => disk.copyBlocks([8], 0, 1, dest, 0), RangeError);
    assert.throws(() => disk.copyBlocks([1, 2, 3, 4], 0, 4, dest, 0), RangeError, 'destination too small');
  });

  test('COLO overlay: guest writes land beside the base, read back merged, and are dropped or merged', () => {
    const disk = new SimDisk({ capacityBytes: 8 * DISK_BLOCK_SIZE, domain: gate() });
    disk.write(DISK_BLOCK_SIZE - 2, Buffer.from('base'));
    const base = disk.digest();
    disk.enableTracking();
    disk.readAndClearDirty();
    disk.startOverlay();
    disk.write(DISK_BLOCK_SIZE, Buffer.from('XY')); // over the tail of 'base', in block 1
    assert.equal(disk.read(DISK_BLOCK_SIZE - 2, 4).toString(), 'baXY', 'reads see the overlay');
    assert.equal(disk.digest(), base, 'the base is untouched');
    assert.deepEqual([...disk.readAndClearDirty()], [], 'overlay writes are not the mirror\'s to send');
    // A checkpoint replaces the base meanwhile; the overlay still shadows its block until dropped.
    assert.equal(disk.dropOverlay(), 1);
    assert.equal(disk.read(DISK_BLOCK_SIZE - 2, 4).toString(), 'base');
    disk.startOverlay();
    disk.write(5 * DISK_BLOCK_SIZE, Buffer.from('mine'));
    assert.equal(disk.mergeOverlay(), 1);
    assert.equal(disk.read(5 * DISK_BLOCK_SIZE, 4).toString(), 'mine');
    assert.deepEqual([...disk.readAndClearDirty()], [5], 'merged blocks are the disk\'s own now');
  });
});
