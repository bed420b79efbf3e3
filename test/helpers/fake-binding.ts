/**
 * A binding that is not the sim: a few pages of plain memory, a device model
 * that is a counter, and knobs to make each step slow or fail. The engine,
 * the secondary and the promoter run on it exactly as on the sim, which is
 * what shows they depend on the binding's interfaces and nothing else.
 */
import { createHash } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import type { DomainBinding, PageReplicaGuest, PrimaryGuest, PromoteOptions, PromotedGuest } from '../../src/domain/binding.js';
import { PageSaver } from '../../src/domain/page-saver.js';
import type { DeviceModelState, DomainInfo, PageDomain, PlatformContext, ProtectedDomain, ReplicaDomain } from '../../src/domain/types.js';
import { DomainType, EmulatorId, PAGE_SIZE } from '../../src/stream/format.js';
import type { CpuidLeaf, MsrEntry } from '../../src/stream/records.js';
import type { Address } from '../../src/util/address.js';

/** Plain memory with a dirty set: what PageSaver reads and the receiver writes. */
export class FakeMemory implements PageDomain {
  readonly info: DomainInfo;
  readonly ram: Buffer;
  private dirty = new Set<number>();
  private logging = false;
  private context = Buffer.from('fake vcpu state 0');

  constructor(pages: number) {
    this.info = { type: DomainType.X86_HVM, pages, vcpus: 1, emulatorId: EmulatorId.QEMU_UPSTREAM };
    this.ram = Buffer.alloc(pages * PAGE_SIZE);
  }

  /** A guest write (dirty-logged). */
  write(pfn: number, at: number, bytes: Buffer): void {
    bytes.copy(this.ram, pfn * PAGE_SIZE + at);
    if (this.logging) this.dirty.add(pfn);
  }

  /** The guest's vCPU moves on. */
  step(tag: string): void {
    this.context = Buffer.from(`fake vcpu state ${tag}`);
  }

  enableLogDirty(): void {
    this.logging = true;
    this.dirty.clear();
  }

  disableLogDirty(): void {
    this.logging = false;
  }

  readAndClearDirty(): Uint32Array {
    const out = Uint32Array.from(this.dirty).sort();
    this.dirty.clear();
    return out;
  }

  readPage(pfn: number): Buffer {
    return this.ram.subarray(pfn * PAGE_SIZE, (pfn + 1) * PAGE_SIZE);
  }

  copyPages(pfns: ArrayLike<number>, count: number, dest: Buffer): void {
    for (let i = 0; i < count; i++) this.readPage(pfns[i]).copy(dest, i * PAGE_SIZE);
  }

  writePages(pfns: ArrayLike<number>, pages: readonly Buffer[]): void {
    for (let i = 0; i < pfns.length; i++) pages[i].copy(this.ram, pfns[i] * PAGE_SIZE);
  }

  cpuidPolicy(): CpuidLeaf[] {
    return [{ leaf: 0, subleaf: 0xffffffff, a: 1, b: 0, c: 0, d: 0 }];
  }

  msrPolicy(): MsrEntry[] {
    return [{ idx: 0xce, flags: 0, val: 0n }];
  }

  platformContext(): PlatformContext {
    return { tsc: { mode: 0, khz: 1000, nsec: 0n, incarnation: 0 }, hvmParams: [], hvmContext: Buffer.from(this.context) };
  }

  setPlatformContext(ctx: PlatformContext): void {
    this.context = Buffer.from(ctx.hvmContext);
  }

  digest(deviceModel: number): string {
    return createHash('sha256').update(this.ram).update(this.context).update(String(deviceModel)).digest('hex');
  }
}

/** What a test may make slow or fail. */
export interface FakeKnobs {
  /** Suspend takes this long (a guest acking over xenstore). */
  suspendDelayMs?: number;
  /** The device model save (QMP) fails with this. */
  saveDeviceModelError?: Error;
  /** The replica's device-model load takes this long. */
  loadDelayMs?: number;
  /** The replica's device-model load refuses with this. */
  loadError?: Error;
}

const delay = (ms: number | undefined): Promise<void> => (ms === undefined ? Promise.resolve() : new Promise((r) => setTimeout(r, ms)));

export class FakePrimary implements PrimaryGuest, ProtectedDomain {
  readonly memory: FakeMemory;
  readonly saver: PageSaver;
  readonly disks = [];
  /** Bumped as the guest runs; saved as its device-model state. */
  deviceModel = 0;
  suspended = false;
  /** Every suspend and resume, in order. */
  readonly calls: string[] = [];

  constructor(
    pages: number,
    readonly knobs: FakeKnobs = {},
  ) {
    this.memory = new FakeMemory(pages);
    this.saver = new PageSaver(this.memory, { liveBatchPages: 4 });
  }

  get domain(): ProtectedDomain {
    return this;
  }

  get info(): DomainInfo {
    return this.memory.info;
  }

  async suspend(): Promise<void> {
    this.calls.push('suspend');
    await delay(this.knobs.suspendDelayMs);
    this.suspended = true;
  }

  resume(): Promise<void> {
    this.calls.push('resume');
    this.suspended = false;
    return Promise.resolve();
  }

  saveDeviceModel(): Promise<DeviceModelState> {
    if (this.knobs.saveDeviceModelError !== undefined) return Promise.reject(this.knobs.saveDeviceModelError);
    return Promise.resolve({ data: Buffer.from(`dm ${this.deviceModel}`), xenstore: [['state', 'running']] });
  }

  /** The guest runs a little: one page written, the vCPU and the device model move on. */
  run(pfn: number, tag: string): void {
    if (this.suspended) throw new Error('the fake guest is suspended');
    this.memory.write(pfn, 0, Buffer.from(tag));
    this.memory.step(tag);
    this.deviceModel++;
  }

  serveTcp(): Promise<Address> {
    return Promise.reject(new Error('the fake guest serves nothing'));
  }

  digest(): string {
    return this.memory.digest(this.deviceModel);
  }

  stop(): Promise<void> {
    return Promise.resolve();
  }
}

export class FakeReplica implements PageReplicaGuest {
  readonly memory: FakeMemory;
  readonly domain: ReplicaDomain;
  readonly disks = [];
  deviceModel = 0;
  promoted: PromoteOptions | undefined;

  constructor(
    pages: number,
    readonly knobs: FakeKnobs = {},
  ) {
    this.memory = new FakeMemory(pages);
    const m = this.memory;
    this.domain = {
      info: m.info,
      writePages: (pfns, pages) => m.writePages(pfns, pages),
      readPage: (pfn) => m.readPage(pfn),
      platformContext: () => m.platformContext(),
      setPlatformContext: (ctx) => m.setPlatformContext(ctx),
      loadDeviceModel: async (state) => {
        await delay(this.knobs.loadDelayMs);
        if (this.knobs.loadError !== undefined) throw this.knobs.loadError;
        const match = /^dm (\d+)$/.exec(state.toString());
        if (match === null) throw new Error(`not a fake device model: ${JSON.stringify(state.toString().slice(0, 20))}`);
        this.deviceModel = Number(match[1]);
      },
    };
  }

  digest(): string {
    return this.memory.digest(this.deviceModel);
  }

  promote(options: PromoteOptions): Promise<PromotedGuest> {
    this.promoted = options;
    const service: AddressInfo = { address: options.service.host, family: 'IPv4', port: options.service.port };
    return Promise.resolve({ service });
  }

  stop(): Promise<void> {
    return Promise.resolve();
  }
}

export class FakeBinding implements DomainBinding {
  readonly type = 'fake';
  readonly info: DomainInfo;

  constructor(
    private readonly pages: number,
    private readonly knobs: FakeKnobs = {},
  ) {
    this.info = new FakeMemory(1).info;
    this.info = { ...this.info, pages };
  }

  primary(): FakePrimary {
    return new FakePrimary(this.pages, this.knobs);
  }

  replica(): FakeReplica {
    return new FakeReplica(this.pages, this.knobs);
  }
}
