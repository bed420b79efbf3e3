/**
 * `sim`: a simulated x86 HVM-shaped domain inside the Tandem process. Guest
 * RAM is page-addressed memory; every guest write goes through write(),
 * which marks the pages it touches in the dirty log; pause() really stops
 * the guest: guest code runs only through run(), which holds tasks while the
 * domain is paused, and a guest write while paused is refused.
 */
import { DomainType, EmulatorId, PAGE_SIZE } from '../../stream/format.js';
import type { CpuidLeaf, HvmParam, MsrEntry } from '../../stream/records.js';
import { IndexSet } from '../index-set.js';
import type { DomainInfo, PageDomain, PlatformContext } from '../types.js';

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
const CPU_RECORD_BYTES = VCPU_REGISTERS.length * 8;

const DM_SIGNATURE = Buffer.from('TandemSimDM\0', 'latin1');
/** xenstore, ioreq and console pages at the top of RAM, as hvmloader places them. */
const RESERVED_TOP_PAGES = 3;

export interface SimDomainOptions {
  pages: number;
  vcpus?: number;
  tscKhz?: number;
  /** Clock for TSC_INFO; injected so tests control it. */
  now?: () => bigint;
  /** Told of an exception thrown by guest code run after an unpause (default: stderr). */
  onFault?: (err: unknown) => void;
}

export class SimDomain implements PageDomain {
  readonly info: DomainInfo;
  readonly ram: Buffer;
  /** PFNs dirtied since the last read (O(dirty) reads, whatever the RAM size). */
  private readonly dirty: IndexSet;
  private readonly vcpuState: VcpuState[];
  private readonly tscKhz: number;
  private readonly now: () => bigint;
  private readonly onFault: (err: unknown) => void;
  private logDirty = false;
  private isPaused = false;
  private dmGeneration = 0n;
  private held: (() => void)[] = [];
  private draining = false;

  constructor(options: SimDomainOptions) {
    const { pages } = options;
    if (!Number.isInteger(pages) || pages < 1 || pages > MAX_SIM_PAGES) {
      throw new RangeError(`sim domain pages must be an integer in 1..${MAX_SIM_PAGES}, got ${pages}`);
    }
    const vcpus = options.vcpus ?? 1;
    this.info = { type: DomainType.X86_HVM, pages, vcpus, emulatorId: EmulatorId.QEMU_UPSTREAM };
    this.ram = Buffer.alloc(pages * PAGE_SIZE);
    this.dirty = new IndexSet(pages);
    this.vcpuState = Array.from({ length: vcpus }, () => Object.fromEntries(VCPU_REGISTERS.map((r) => [r, 0n])) as VcpuState);
    this.tscKhz = options.tscKhz ?? 2_000_000;
    this.now = options.now ?? (() => process.hrtime.bigint());
    this.onFault = options.onFault ?? ((err) => process.stderr.write(`sim guest fault: ${err instanceof Error ? err.message : String(err)}\n`));
  }

  /** Guest RAM free for the guest's own use: the top pages hold the platform pages hvmParams() names. */
  get usableRamBytes(): number {
    return this.ram.length - RESERVED_TOP_PAGES * PAGE_SIZE;
  }

  get paused(): boolean {
    return this.isPaused;
  }

  /** Guest work waiting for an unpause (run() while paused): proof that the guest was asked, and did not run it. */
  get heldTasks(): number {
    return this.held.length;
  }

  pause(): void {
    this.isPaused = true;
  }

  unpause(): void {
    this.isPaused = false;
    if (this.held.length > 0 && !this.draining) {
      this.draining = true;
      // Held guest work runs after the caller (the engine's resume) returns.
      setImmediate(() => this.drain());
    }
  }

  /**
   * Runs guest code: now if the domain runs, else when it is unpaused, in
   * order. Every guest action (a service handling a request) goes through here.
   */
  run(task: () => void): void {
    if (this.isPaused || this.held.length > 0) this.held.push(task);
    else task();
  }

  private drain(): void {
    this.draining = false;
    while (this.held.length > 0 && !this.isPaused) {
      const task = this.held.shift()!;
      try {
        task();
      } catch (err) {
        // A fault in guest code is the guest's, not the hypervisor's: report it and carry on.
        this.onFault(err);
      }
    }
  }

  /** A guest write to guest-physical address `gpa`. */
  write(gpa: number, data: Uint8Array): void {
    if (this.isPaused) throw new Error('sim domain is paused: guest writes are stopped');
    if (!(gpa >= 0 && gpa + data.length <= this.ram.length)) throw new RangeError(`guest write [${gpa}, +${data.length}) outside RAM`);
    this.ram.set(data, gpa);
    if (this.logDirty && data.length > 0) this.markDirty(gpa, gpa + data.length - 1);
  }

  /** A guest write of a 32-bit little-endian value. */
  writeU32(gpa: number, value: number): void {
    if (this.isPaused) throw new Error('sim domain is paused: guest writes are stopped');
    this.ram.writeUInt32LE(value >>> 0, gpa);
    if (this.logDirty) this.markDirty(gpa, gpa + 3);
  }

  /** A guest write of a 64-bit little-endian value (a JS number up to 2^53). */
  writeU64(gpa: number, value: number): void {
    if (this.isPaused) throw new Error('sim domain is paused: guest writes are stopped');
    this.ram.writeUInt32LE(value % 2 ** 32, gpa);
    this.ram.writeUInt32LE(Math.floor(value / 2 ** 32), gpa + 4);
    if (this.logDirty) this.markDirty(gpa, gpa + 7);
  }

  private markDirty(first: number, last: number): void {
    this.dirty.add(Math.floor(first / PAGE_SIZE), Math.floor(last / PAGE_SIZE));
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
    this.dirty.clear();
  }

  disableLogDirty(): void {
    this.logDirty = false;
  }

  readAndClearDirty(): Uint32Array {
    const out = this.dirty.sorted();
    this.dirty.clear();
    return out;
  }

  readPage(pfn: number): Buffer {
    if (!Number.isInteger(pfn) || pfn < 0 || pfn >= this.info.pages) throw new RangeError(`pfn ${pfn} outside guest RAM`);
    return this.ram.subarray(pfn * PAGE_SIZE, (pfn + 1) * PAGE_SIZE);
  }

  copyPages(pfns: ArrayLike<number>, count: number, dest: Buffer): void {
    if (dest.length < count * PAGE_SIZE) throw new RangeError(`staging buffer of ${dest.length} bytes too small for ${count} pages`);
    const ram = this.ram;
    const pages = this.info.pages;
    for (let i = 0; i < count; i++) {
      const pfn = pfns[i];
      if (!(pfn >= 0 && pfn < pages)) throw new RangeError(`pfn ${pfn} outside guest RAM`);
      ram.copy(dest, i * PAGE_SIZE, pfn * PAGE_SIZE, pfn * PAGE_SIZE + PAGE_SIZE);
    }
  }

  writePages(pfns: ArrayLike<number>, pages: readonly Buffer[]): void {
    if (pages.length !== pfns.length) throw new RangeError(`${pfns.length} pfns but ${pages.length} pages`);
    const limit = this.info.pages;
    for (let i = 0; i < pfns.length; ) {
      const first = pages[i];
      if (!(Number.isInteger(pfns[i]) && pfns[i] >= 0 && pfns[i] < limit)) throw new RangeError(`pfn ${pfns[i]} outside guest RAM`);
      if (first.length !== PAGE_SIZE) throw new RangeError(`a page is ${PAGE_SIZE} bytes, got ${first.length}`);
      // One copy for a run of consecutive pfns whose data lie back to back (a
      // received chunk usually holds 16 such pages): per-call cost dominates 4 KiB copies.
      let end = first.byteOffset + PAGE_SIZE;
      let j = i + 1;
      while (j < pfns.length && pfns[j] === pfns[j - 1] + 1 && pfns[j] < limit && pages[j].length === PAGE_SIZE && pages[j].buffer === first.buffer && pages[j].byteOffset === end) {
        end += PAGE_SIZE;
        j++;
      }
      this.ram.set(j === i + 1 ? first : new Uint8Array(first.buffer, first.byteOffset, end - first.byteOffset), pfns[i] * PAGE_SIZE);
      i = j;
    }
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

  platformContext(): PlatformContext {
    return {
      tsc: { mode: 0, khz: this.tscKhz, nsec: this.now(), incarnation: 0 },
      hvmParams: this.hvmParams(),
      hvmContext: this.hvmContext(),
    };
  }

  setPlatformContext(ctx: PlatformContext): void {
    this.loadHvmContext(ctx.hvmContext);
  }

  private hvmParams(): HvmParam[] {
    // HVM_PARAM_STORE_PFN (1), HVM_PARAM_IOREQ_PFN (5), HVM_PARAM_CONSOLE_PFN (17):
    // the sim places them in the top pages of RAM, as hvmloader would.
    const below = (k: number): bigint => BigInt(Math.max(0, this.info.pages - k));
    return [
      { index: 1n, value: below(1) },
      { index: 5n, value: below(2) },
      { index: 17n, value: below(3) },
    ];
  }

  hvmContext(): Buffer {
    const b = Buffer.alloc(8 + 24 + this.vcpuState.length * (8 + CPU_RECORD_BYTES) + 8);
    let at = 0;
    const desc = (type: number, instance: number, length: number): void => {
      b.writeUInt16LE(type, at);
      b.writeUInt16LE(instance, at + 2);
      b.writeUInt32LE(length, at + 4);
      at += 8;
    };
    desc(HVM_SAVE_HEADER, 0, 24);
    b.writeUInt32LE(HVM_FILE_MAGIC, at);
    b.writeUInt32LE(HVM_FILE_VERSION, at + 4);
    b.writeUInt32LE(this.tscKhz, at + 20);
    at += 24;
    this.vcpuState.forEach((regs, i) => {
      desc(HVM_SAVE_CPU, i, CPU_RECORD_BYTES);
      VCPU_REGISTERS.forEach((r, k) => b.writeBigUInt64LE(regs[r], at + k * 8));
      at += CPU_RECORD_BYTES;
    });
    desc(HVM_SAVE_END, 0, 0);
    return b;
  }

  /** Restores vCPU registers from an HVM context this sim wrote; refuses anything else. */
  private loadHvmContext(ctx: Buffer): void {
    let at = 0;
    const loaded: VcpuState[] = [];
    let sawHeader = false;
    while (true) {
      if (at + 8 > ctx.length) throw new RangeError('HVM context: truncated record descriptor');
      const type = ctx.readUInt16LE(at);
      const instance = ctx.readUInt16LE(at + 2);
      const length = ctx.readUInt32LE(at + 4);
      at += 8;
      if (at + length > ctx.length) throw new RangeError(`HVM context: record type ${type} overruns the blob`);
      if (type === HVM_SAVE_END) break;
      if (type === HVM_SAVE_HEADER) {
        if (length !== 24 || ctx.readUInt32LE(at) !== HVM_FILE_MAGIC) throw new RangeError('HVM context: bad header record');
        sawHeader = true;
      } else if (type === HVM_SAVE_CPU) {
        if (length !== CPU_RECORD_BYTES || instance !== loaded.length || instance >= this.vcpuState.length) {
          throw new RangeError(`HVM context: bad CPU record for vCPU ${instance}`);
        }
        const regs = {} as VcpuState;
        VCPU_REGISTERS.forEach((r, k) => (regs[r] = ctx.readBigUInt64LE(at + k * 8)));
        loaded.push(regs);
      }
      at += length;
    }
    if (!sawHeader || loaded.length !== this.vcpuState.length) throw new RangeError('HVM context: missing header or vCPU records');
    loaded.forEach((regs, i) => Object.assign(this.vcpuState[i], regs));
  }

  deviceModelState(): Buffer {
    // A QEMU save file starts with its own signature; the sim's blob is
    // versioned the same way and carries the device-model generation.
    const b = Buffer.alloc(DM_SIGNATURE.length + 8);
    DM_SIGNATURE.copy(b);
    b.writeBigUInt64LE(this.dmGeneration, DM_SIGNATURE.length);
    return b;
  }

  loadDeviceModelState(state: Buffer): void {
    if (state.length !== DM_SIGNATURE.length + 8 || !state.subarray(0, DM_SIGNATURE.length).equals(DM_SIGNATURE)) {
      throw new RangeError('device-model state is not a sim device-model blob');
    }
    this.dmGeneration = state.readBigUInt64LE(DM_SIGNATURE.length);
  }

  deviceModelXenstore(): [string, string][] {
    // The sim's device model keeps no xenstore keys, so (like libxl with an
    // empty set) no EMULATOR_XENSTORE_DATA record is written.
    return [];
  }
}

