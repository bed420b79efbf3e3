/**
 * The guest's view of its own RAM. Reads go straight to the domain's RAM;
 * every write goes through the domain's write methods, so the dirty log sees
 * it and a paused domain refuses it. Offsets are relative to `base`.
 */
import type { SimDomain } from '../domain/sim/domain.js';

/** What the guest service needs from its domain. */
export type GuestDomain = Pick<SimDomain, 'ram' | 'write' | 'writeU32' | 'writeU64' | 'run' | 'setRegister' | 'paused'>;

export class GuestRam {
  readonly ram: Buffer;

  constructor(
    readonly domain: GuestDomain,
    readonly base: number,
  ) {
    this.ram = domain.ram;
  }

  u32(off: number): number {
    return this.ram.readUInt32LE(this.base + off);
  }

  /** A u64 the store keeps below 2^53. */
  u64(off: number): number {
    const at = this.base + off;
    return this.ram.readUInt32LE(at) + this.ram.readUInt32LE(at + 4) * 2 ** 32;
  }

  setU32(off: number, value: number): void {
    this.domain.writeU32(this.base + off, value);
  }

  setU64(off: number, value: number): void {
    this.domain.writeU64(this.base + off, value);
  }

  write(off: number, data: Uint8Array): void {
    this.domain.write(this.base + off, data);
  }

  /** A view of guest RAM: valid only until the guest next writes there. */
  view(off: number, length: number): Buffer {
    return this.ram.subarray(this.base + off, this.base + off + length);
  }

  /** Whether the bytes at `off` equal `bytes`, without making a view. */
  equals(off: number, bytes: Uint8Array): boolean {
    const at = this.base + off;
    return this.ram.compare(bytes, 0, bytes.length, at, at + bytes.length) === 0;
  }
}
