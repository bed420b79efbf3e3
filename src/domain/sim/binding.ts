/**
 * The `sim` binding: a simulated HVM-shaped domain in this process, running
 * the guest's Redis-protocol service from its RAM, with one virtual disk
 * holding the service's append-only file. Tandem writes its libxc layer
 * itself (PageSaver), as it can read the guest's pages directly.
 */
import type { AddressInfo } from 'node:net';
import { checkPersistence, installGuest, GUEST_ENDPOINT, resumeGuest, resumeNetGuest } from '../../guest/machine.js';
import { KvServer } from '../../guest/server.js';
import { DomainType, EmulatorId, PAGE_SIZE } from '../../stream/format.js';
import type { Address } from '../../util/address.js';
import type { Logger } from '../../util/logger.js';
import type { ColoReplicaGuest, DomainBinding, GuestNic, PageReplicaGuest, PrimaryGuest, PromotedGuest, PromoteOptions, SyntheticLoad } from '../binding.js';
import { PageSaver, type PageSaverOptions } from '../page-saver.js';
import type { DeviceModelState, DomainInfo, ProtectedDomain, ReplicaDomain } from '../types.js';
import { SimColoGuest } from './colo-guest.js';
import { stateDigest } from './digest.js';
import { SimDisk } from './disk.js';
import { SimDomain } from './domain.js';

export interface SimBindingOptions {
  /** Guest RAM in 4 KiB pages. */
  pages: number;
  vcpus: number;
  /** The guest's disk, bytes (a multiple of the disk block size). */
  diskBytes: number;
  /** Pages per flush in the pre-copy's live rounds. */
  liveBatchPages?: number;
  /** The guests' clock (TIME), µs since the Unix epoch (tests skew it). */
  guestClock?: () => number;
  /** The replica's guest clock, when it should differ from the primary's (tests). */
  replicaGuestClock?: () => number;
}

/** A sim domain as the engine drives it: suspend is a pause, the device model a blob. */
export class SimProtectedDomain implements ProtectedDomain {
  readonly info: DomainInfo;
  readonly saver: PageSaver;

  constructor(
    private readonly sim: SimDomain,
    saver: PageSaverOptions = {},
  ) {
    this.info = sim.info;
    this.saver = new PageSaver(sim, saver);
  }

  suspend(): Promise<void> {
    this.sim.pause();
    return Promise.resolve();
  }

  resume(): Promise<void> {
    this.sim.unpause();
    return Promise.resolve();
  }

  saveDeviceModel(): Promise<DeviceModelState> {
    return Promise.resolve({ data: this.sim.deviceModelState(), xenstore: this.sim.deviceModelXenstore() });
  }
}

/** A sim domain with its disk, and the guest's service once one runs: either host's. */
abstract class SimMachine {
  readonly sim: SimDomain;
  readonly disk: SimDisk;
  readonly disks: readonly SimDisk[];
  protected server: KvServer | undefined;

  constructor(
    protected readonly options: SimBindingOptions,
    protected readonly logger: Logger,
    /** An existing machine (a replica resumed as the guest this host protects); a new one otherwise. */
    machine?: { sim: SimDomain; disk: SimDisk },
  ) {
    this.sim = machine?.sim ?? new SimDomain({ pages: options.pages, vcpus: options.vcpus });
    this.disk = machine?.disk ?? new SimDisk({ capacityBytes: options.diskBytes, domain: this.sim });
    this.disks = [this.disk];
  }

  /** RAM, vCPUs, device model and disk; a COLO replica's disk without its running guest's overlay. */
  digest(): string {
    return stateDigest(this.sim, this.disks);
  }

  async stop(): Promise<void> {
    await this.server?.stop();
    this.server = undefined;
  }
}

export class SimPrimaryGuest extends SimMachine implements PrimaryGuest {
  readonly domain: ProtectedDomain;
  /** The guest's software is already in RAM (a promoted replica): resumed, not installed. */
  private readonly resumed: boolean;

  constructor(options: SimBindingOptions, logger: Logger, machine?: { sim: SimDomain; disk: SimDisk }) {
    super(options, logger, machine);
    this.resumed = machine !== undefined;
    this.domain = new SimProtectedDomain(this.sim, { liveBatchPages: options.liveBatchPages });
  }

  /** The guest's RESP server on an internal loopback port. */
  async serveTcp(): Promise<Address> {
    const { store, aof } = this.resumed ? resumeGuest(this.sim, this.disk) : installGuest(this.sim, this.disk);
    // A replica was paused while it was one.
    if (this.resumed) this.sim.unpause();
    this.server = new KvServer({ domain: this.sim, store, persistence: aof, host: '127.0.0.1', port: 0, logger: this.logger, clock: this.options.guestClock });
    const bound = await this.server.start();
    return { host: '127.0.0.1', port: bound.port };
  }

  attachNic(transmit: (frame: Buffer) => void): GuestNic {
    const nic = { transmit, clock: this.options.guestClock };
    const net = this.resumed ? resumeNetGuest(this.sim, this.disk, nic).net : installGuest(this.sim, this.disk, { nic }).net;
    if (this.resumed) this.sim.unpause();
    return { endpoint: GUEST_ENDPOINT, receive: (frame) => this.sim.run(() => net!.receive(frame)) };
  }

  readonly synthetic: SyntheticLoad = {
    touch: (pfns, value) => {
      for (let i = 0; i < pfns.length; i++) this.sim.writeU32(pfns[i] * PAGE_SIZE + ((i * 8) % PAGE_SIZE), value + i);
    },
  };
}

export class SimReplicaGuest extends SimMachine implements PageReplicaGuest {
  readonly domain: ReplicaDomain;

  constructor(options: SimBindingOptions, logger: Logger) {
    super(options, logger);
    // The replica never runs while it is a secondary (COLO runs it from each checkpoint).
    this.sim.pause();
    const sim = this.sim;
    this.domain = {
      info: sim.info,
      writePages: (pfns, pages) => sim.writePages(pfns, pages),
      readPage: (pfn) => sim.readPage(pfn),
      // Lent out only for compressed pages, which a secondary offers only in Remus, where the
      // replica does not run: its RAM is written by the stream alone (a COLO replica runs and is offered none).
      writablePage: (pfn) => sim.readPage(pfn),
      platformContext: () => sim.platformContext(),
      setPlatformContext: (ctx) => sim.setPlatformContext(ctx),
      loadDeviceModel: (state) => {
        // Checked whole before anything changes: a refusal leaves the previous state.
        sim.loadDeviceModelState(state);
        return Promise.resolve();
      },
    };
  }

  runColo(transmit: (frame: Buffer) => void): ColoReplicaGuest {
    return new SimColoGuest({ replica: this.sim, disk: this.disk, transmit, clock: this.options.replicaGuestClock ?? this.options.guestClock });
  }

  resumeAsPrimary(logger: Logger): PrimaryGuest {
    // The replica's machine becomes the protected guest; this object no longer serves anything.
    return new SimPrimaryGuest(this.options, logger, { sim: this.sim, disk: this.disk });
  }

  async promote(options: PromoteOptions): Promise<PromotedGuest> {
    const { store, aof } = resumeGuest(this.sim, this.disk);
    const persistence = options.verifyPersistence === true && aof !== undefined ? checkPersistence(store, aof, Date.now()) : undefined;
    this.sim.unpause();
    this.server = new KvServer({ domain: this.sim, store, persistence: aof, host: options.service.host, port: options.service.port, logger: this.logger, clock: this.options.guestClock });
    const service: AddressInfo = await this.server.start();
    return persistence === undefined ? { service } : { service, persistence };
  }
}

export class SimBinding implements DomainBinding {
  readonly type = 'sim';
  readonly info: DomainInfo;

  constructor(private readonly options: SimBindingOptions) {
    this.info = { type: DomainType.X86_HVM, pages: options.pages, vcpus: options.vcpus, emulatorId: EmulatorId.QEMU_UPSTREAM };
  }

  primary(logger: Logger): SimPrimaryGuest {
    return new SimPrimaryGuest(this.options, logger);
  }

  replica(logger: Logger): SimReplicaGuest {
    return new SimReplicaGuest(this.options, logger);
  }
}
