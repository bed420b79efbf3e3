import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { MAX_SIM_PAGES, SimDomain } from '../../../src/domain/sim/domain.js';
import { PAGE_SIZE } from '../../../src/stream/format.js';

describe('SimDomain', () => {
  test('guest writes mark exactly the pages they touch, once logging is on', () => {
    const d = new SimDomain({ pages: 100 });
    d.write(0, Buffer.from('before logging'));
    d.enableLogDirty();
    assert.deepEqual(Array.from(d.readAndClearDirty()), []);
    d.write(5 * PAGE_SIZE + 10, Buffer.alloc(8, 1));
    d.write(70 * PAGE_SIZE - 4, Buffer.alloc(8, 2)); // straddles pages 69 and 70
    d.write(33 * PAGE_SIZE, Buffer.alloc(3 * PAGE_SIZE, 3)); // 33, 34, 35
    d.write(99 * PAGE_SIZE + PAGE_SIZE - 1, Buffer.alloc(1, 4)); // last byte of RAM
    assert.deepEqual(Array.from(d.readAndClearDirty()), [5, 33, 34, 35, 69, 70, 99]);
    assert.deepEqual(Array.from(d.readAndClearDirty()), [], 'reading clears the log');
    assert.equal(d.readPage(5).readUInt8(10), 1);
    assert.equal(d.readPage(69).readUInt8(PAGE_SIZE - 1), 2);
    assert.equal(d.readPage(70).readUInt8(3), 2);
  });

  test('dirty pfns are reported for bit 31 of a bitmap word and beyond', () => {
    const d = new SimDomain({ pages: 200 });
    d.enableLogDirty();
    for (const pfn of [31, 32, 63, 64, 127, 128, 199]) d.write(pfn * PAGE_SIZE, Buffer.alloc(1, 9));
    assert.deepEqual(Array.from(d.readAndClearDirty()), [31, 32, 63, 64, 127, 128, 199]);
  });

  test('a paused domain refuses guest writes and register changes', () => {
    const d = new SimDomain({ pages: 4 });
    d.enableLogDirty();
    d.pause();
    assert.equal(d.paused, true);
    assert.throws(() => d.write(0, Buffer.alloc(1)), /paused/);
    assert.throws(() => d.setRegister(0, 'rip', 1n), /paused/);
    assert.deepEqual(Array.from(d.readAndClearDirty()), []);
    assert.equal(d.readPage(0)[0], 0, 'nothing landed');
    d.unpause();
    d.write(0, Buffer.alloc(1, 5));
    assert.deepEqual(Array.from(d.readAndClearDirty()), [0]);
  });

  test('writes outside RAM and bad sizes are refused', () => {
    const d = new SimDomain({ pages: 2 });
    assert.throws(() => d.write(2 * PAGE_SIZE - 1, Buffer.alloc(2)), RangeError);
    assert.throws(() => d.write(-1, Buffer.alloc(1)), RangeError);
    assert.throws(() => d.readPage(2), RangeError);
    assert.throws(() => new SimDomain({ pages: 0 }), RangeError);
    assert.throws(() => new SimDomain({ pages: MAX_SIM_PAGES + 1 }), RangeError);
  });

  test('the HVM context carries the vCPU registers in Xen save-record framing', () => {
    const d = new SimDomain({ pages: 1, vcpus: 2 });
    d.setRegister(1, 'rip', 0xfffff000n);
    const ctx = d.hvmContext();
    // header record: typecode 1, instance 0, length 24, magic
    assert.equal(ctx.readUInt16LE(0), 1);
    assert.equal(ctx.readUInt32LE(4), 24);
    assert.equal(ctx.readUInt32LE(8), 0x54381286);
    // then one CPU record (typecode 2) per vCPU, then END (typecode 0, length 0)
    const cpuLen = ctx.readUInt32LE(32 + 4);
    assert.equal(ctx.readUInt16LE(32), 2);
    assert.equal(ctx.readUInt16LE(32 + 8 + cpuLen + 2), 1, 'second CPU record is instance 1');
    const rip = ctx.readBigUInt64LE(32 + 8 + cpuLen + 8 + 16 * 8);
    assert.equal(rip, 0xfffff000n);
    assert.equal(ctx.length, 32 + 2 * (8 + cpuLen) + 8);
    assert.equal(ctx.readUInt32LE(ctx.length - 4), 0);
  });
});

describe('SimDomain restore side', () => {
  test('writePages installs every page, whether runs are adjacent in memory or not', () => {
    const d = new SimDomain({ pages: 16 });
    const block = Buffer.alloc(4 * PAGE_SIZE);
    for (let i = 0; i < 4; i++) block.fill(i + 1, i * PAGE_SIZE, (i + 1) * PAGE_SIZE);
    const view = (i: number): Buffer => block.subarray(i * PAGE_SIZE, (i + 1) * PAGE_SIZE);
    const loose = Buffer.alloc(PAGE_SIZE, 9);
    // pfns 3,4,5 adjacent in memory and in pfn order (one copy); then 10 (a gap); then 7 from another buffer.
    d.writePages([3, 4, 5, 10, 7], [view(0), view(1), view(2), view(3), loose]);
    const at = (pfn: number): number => d.readPage(pfn)[100];
    assert.deepEqual([3, 4, 5, 10, 7, 6, 0].map(at), [1, 2, 3, 4, 9, 0, 0]);
    d.enableLogDirty();
    d.writePages([0], [loose]);
    assert.deepEqual(Array.from(d.readAndClearDirty()), [], 'restore writes are not guest writes');
  });

  test('writePages refuses pfns outside RAM and short pages', () => {
    const d = new SimDomain({ pages: 4 });
    assert.throws(() => d.writePages([4], [Buffer.alloc(PAGE_SIZE)]), RangeError);
    assert.throws(() => d.writePages([2, 3, 4], [Buffer.alloc(PAGE_SIZE), Buffer.alloc(PAGE_SIZE), Buffer.alloc(PAGE_SIZE)]), RangeError);
    assert.throws(() => d.writePages([1], [Buffer.alloc(100)]), RangeError);
    assert.throws(() => d.writePages([1, 2], [Buffer.alloc(PAGE_SIZE)]), RangeError);
  });

  test('platform context and device-model state round-trip into another domain', () => {
    const a = new SimDomain({ pages: 4, vcpus: 2 });
    a.setRegister(1, 'rip', 0xabcdn);
    a.touchDeviceModel();
    const b = new SimDomain({ pages: 4, vcpus: 2 });
    b.setPlatformContext(a.platformContext());
    b.loadDeviceModelState(a.deviceModelState());
    assert.equal(b.registers(1).rip, 0xabcdn);
    assert.deepEqual(b.deviceModelState(), a.deviceModelState());
    assert.throws(() => b.loadDeviceModelState(Buffer.from('nope')), RangeError);
    assert.throws(() => new SimDomain({ pages: 4, vcpus: 1 }).setPlatformContext(a.platformContext()), RangeError);
  });

  test('guest work held while paused runs in order after unpause, and a faulting task does not stop the rest', async () => {
    const faults: unknown[] = [];
    const d = new SimDomain({ pages: 4, onFault: (e) => faults.push(e) });
    const ran: number[] = [];
    d.pause();
    d.run(() => ran.push(1));
    d.run(() => {
      throw new Error('guest bug');
    });
    d.run(() => ran.push(3));
    await new Promise((r) => setImmediate(r));
    assert.equal(ran.length, 0, 'nothing runs while paused');
    d.unpause();
    d.run(() => ran.push(4)); // queued behind the held tasks, not before them
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(ran, [1, 3, 4]);
    assert.equal(faults.length, 1);
  });
});
