/**
 * A stand-in guest for the sim domain until it runs a real service: it
 * writes to pseudo-random pages and advances vCPU registers, from a seed, so
 * a run is repeatable.
 */
import { PAGE_SIZE } from '../../stream/format.js';
import { xorshift32 } from '../../util/xorshift.js';
import type { SimDomain } from './domain.js';

export class SimWorkload {
  private readonly next: () => number;
  private step = 0n;

  constructor(
    private readonly domain: SimDomain,
    seed = 0x7a6d,
  ) {
    this.next = xorshift32(seed);
  }

  /** Fills every page with a pattern derived from its pfn, as a booted guest's RAM would not be all zero. */
  boot(): void {
    const { ram } = this.domain;
    for (let pfn = 0; pfn < this.domain.info.pages; pfn++) {
      ram.writeUInt32LE(pfn, pfn * PAGE_SIZE);
      ram.writeUInt32LE(this.next(), pfn * PAGE_SIZE + 4);
    }
  }

  /** Runs the guest for a while: `writes` writes of 8..256 bytes at random addresses. */
  run(writes: number): void {
    const size = this.domain.ram.length;
    const data = Buffer.allocUnsafe(256);
    for (let i = 0; i < writes; i++) {
      const len = 8 + (this.next() % 249);
      const gpa = this.next() % (size - len);
      data.fill(this.next() & 0xff, 0, len);
      this.domain.write(gpa, data.subarray(0, len));
    }
    this.step++;
    this.domain.setRegister(0, 'rip', 0x100000n + this.step * 16n);
    this.domain.setRegister(0, 'rax', this.step);
    this.domain.setRegister(0, 'tsc', this.step * 1000n);
    this.domain.touchDeviceModel();
  }
}
