/**
 * `sim`: a simulated x86 HVM-shaped domain inside the Tandem process. Guest
 * RAM is page-addressed memory; every guest write goes through write(),
 * which marks the pages it touches in a dirty bitmap; pause() really stops
 * the guest (a write while paused is refused).
 */
import { DomainType, EmulatorId, PAGE_SHIFT, PAGE_SIZE } from '../stream/format.js';
import type { CpuidLeaf, HvmParam, MsrEntry } from '../stream/records.js';
import type { Domain, DomainInfo, TscInfo } from './types.js';

export const MAX_SIM_PAGES = (4 * 1024 * 1024 * 1024) / PAGE_SIZE; // 4 GiB

/** vCPU registers kept by the sim, in the order they are saved. */
export const VCPU_REGISTERS = [
  'rax', 'rbx', 'rcx', 'rdx', 'rsi', 'rdi', 'rbp', 'rsp',
  'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15',
  'rip', 'rflags', 'cr0', 'cr2', 'cr3', 'cr4', 'efer', 'tsc',
] as const;
export type VcpuRegister = (typeof VCPU_REGISTERS)[number];
export type VcpuState = Record<VcpuRegister, bigint>;

// Xen's HVM save-record framing: u16 typecode, u16 instance, u32 length.
const HVM_SAVE_END = 0;
const HVM_SAVE_HEADER = 1;
const HVM_SAVE_CPU = 2;
const HVM_FILE_MAGIC = 0x54381286;
const HVM_FILE_VERSION = 1;

export interface SimDomainOptions {
  pages: number;
  vcpus?: number;
  tscKhz?: number;
  /** Clock for TSC_INFO; injected so tests control it. */
  now?: () => bigint;
}

export class SimDomain implements Domain {
  readonly info: DomainInfo;
  readonly ram: Buffer;
  private readonly dirty: Uint32Array;
  private readonly vcpuState: VcpuState[];
  private readonly tscKhz: number;
  private readonly now: () => bigint;
  private logDirty = false;
  private isPaused = false;
  private dmGeneration = 0;

  constructor(options: SimDomainOptions) {
    const { pages } = options;
    if (!Number.isInteger(pages) || pages < 1 || pages > MAX_SIM_PAGES) {
      throw new RangeError(`sim domain pages must be an integer in 1..${MAX_SIM_PAGES}, got ${pages}`);
    }
    const vcpus = options.vcpus ?? 1;
    this.info = { type: DomainType.X86_HVM, pages, vcpus, emulatorId: EmulatorId.QEMU_UPSTREAM };
    this.ram = Buffer.alloc(pages * PAGE_SIZE);
    this.dirty = new Uint32Array(Math.ceil(pages / 32));
    this.vcpuState = Array.from({ length: vcpus }, () => Object.fromEntries(VCPU_REGISTERS.map((r) => [r, 0n])) as VcpuState);
    this.tscKhz = options.tscKhz ?? 2_000_000;
    this.now = options.now ?? (() => process.hrtime.bigint());
  }

  get paused(): boolean {
    return this.isPaused;
  }

  pause(): void {
    this.isPaused = true;
  }

  unpause(): void {
    this.isPaused = false;
  }

  /** A guest write to guest-physical address `gpa`. */
  write(gpa: number, data: Buffer): void {
    if (this.isPaused) throw new Error('sim domain is paused: guest writes are stopped');
    if (gpa < 0 || gpa + data.length > this.ram.length) throw new RangeError(`guest write [${gpa}, +${data.length}) outside RAM`);
    data.copy(this.ram, gpa);
    if (!this.logDirty || data.length === 0) return;
    const last = (gpa + data.length - 1) >>> PAGE_SHIFT;
    for (let pfn = gpa >>> PAGE_SHIFT; pfn <= last; pfn++) this.dirty[pfn >>> 5] |= 1 << (pfn & 31);
  }

  /** Guest vCPU execution changes registers; saved in the HVM context. */
  setRegister(vcpu: number, reg: VcpuRegister, value: bigint): void {
    if (this.isPaused) throw new Error('sim domain is paused: vCPUs are stopped');
    this.vcpuState[vcpu][reg] = BigInt.asUintN(64, value);
  }

  registers(vcpu: number): Readonly<VcpuState> {
    return this.vcpuState[vcpu];
  }

  /** The device model changes state (e.g. an emulated device is touched). */
  touchDeviceModel(): void {
    this.dmGeneration++;
  }

  enableLogDirty(): void {
    this.logDirty = true;
    this.dirty.fill(0);
  }

  readAndClearDirty(): number[] {
    const out: number[] = [];
    const words = this.dirty;
    for (let w = 0; w < words.length; w++) {
      let bits = words[w];
      if (bits === 0) continue;
      words[w] = 0;
      while (bits !== 0) {
        const low = bits & -bits;
        out.push(w * 32 + 31 - Math.clz32(low));
        bits ^= low;
      }
    }
    return out;
  }

  readPage(pfn: number): Buffer {
    if (!Number.isInteger(pfn) || pfn < 0 || pfn >= this.info.pages) throw new RangeError(`pfn ${pfn} outside guest RAM`);
    return this.ram.subarray(pfn * PAGE_SIZE, (pfn + 1) * PAGE_SIZE);
  }

  cpuidPolicy(): CpuidLeaf[] {
    // Leaf 0: max basic leaf and vendor "TandemSimCPU"; leaf 1: family/model and feature bits.
    const vendor = Buffer.from('TandemSimCPU', 'latin1');
    return [
      { leaf: 0, subleaf: 0xffffffff, a: 0xd, b: vendor.readUInt32LE(0), c: vendor.readUInt32LE(8), d: vendor.readUInt32LE(4) },
      { leaf: 1, subleaf: 0xffffffff, a: 0x000806f8, b: 0x00010800, c: 0x80202001, d: 0x178bfbff },
    ];
  }

  msrPolicy(): MsrEntry[] {
    // MSR_INTEL_PLATFORM_INFO and MSR_ARCH_CAPABILITIES as a guest would see them.
    return [
      { idx: 0xce, flags: 0, val: 0n },
      { idx: 0x10a, flags: 0, val: 0n },
    ];
  }

  tscInfo(): TscInfo {
    return { mode: 0, khz: this.tscKhz, nsec: this.now(), incarnation: 0 };
  }

  hvmParams(): HvmParam[] {
    // HVM_PARAM_STORE_PFN (1), HVM_PARAM_CONSOLE_PFN (17), HVM_PARAM_IOREQ_PFN (5):
    // the sim places them in the top pages of RAM, as hvmloader would.
    const top = BigInt(this.info.pages);
    return [
      { index: 1n, value: top - 1n },
      { index: 5n, value: top - 2n },
      { index: 17n, value: top - 3n },
    ];
  }

  hvmContext(): Buffer {
    const cpuBytes = VCPU_REGISTERS.length * 8;
    const parts: Buffer[] = [];
    const desc = (type: number, instance: number, length: number): Buffer => {
      const d = Buffer.alloc(8);
      d.writeUInt16LE(type, 0);
      d.writeUInt16LE(instance, 2);
      d.writeUInt32LE(length, 4);
      return d;
    };
    const header = Buffer.alloc(24);
    header.writeUInt32LE(HVM_FILE_MAGIC, 0);
    header.writeUInt32LE(HVM_FILE_VERSION, 4);
    header.writeUInt32LE(this.tscKhz, 20);
    parts.push(desc(HVM_SAVE_HEADER, 0, header.length), header);
    this.vcpuState.forEach((regs, i) => {
      const b = Buffer.alloc(cpuBytes);
      VCPU_REGISTERS.forEach((r, k) => b.writeBigUInt64LE(regs[r], k * 8));
      parts.push(desc(HVM_SAVE_CPU, i, cpuBytes), b);
    });
    parts.push(desc(HVM_SAVE_END, 0, 0));
    return Buffer.concat(parts);
  }

  deviceModelState(): Buffer {
    // A QEMU save file starts with its own signature; the sim's blob is
    // versioned the same way and carries the device-model generation.
    const sig = Buffer.from('TandemSimDM\0', 'latin1');
    const b = Buffer.alloc(sig.length + 8);
    sig.copy(b);
    b.writeBigUInt64LE(BigInt(this.dmGeneration), sig.length);
    return b;
  }

  deviceModelXenstore(): [string, string][] {
    // The sim's device model keeps no xenstore keys, so (like libxl with an
    // empty set) no EMULATOR_XENSTORE_DATA record is written.
    return [];
  }
}
