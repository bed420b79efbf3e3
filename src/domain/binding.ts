/**
 * A binding: everything Tandem needs of one type of domain, on either host,
 * and nothing else. The factory in bindings.ts picks one by the
 * configuration's `domain.type`; the rest of Tandem sees only these
 * interfaces, so a new type of domain is a new binding, not edits across
 * the tree.
 *
 * - On the primary, a PrimaryGuest: the domain the engine checkpoints
 *   (ProtectedDomain, with its libxc saver), its block devices, and how
 *   clients reach the guest's service (over TCP for the Remus front, or
 *   through a virtual NIC for the COLO front).
 * - On the secondary, a ReplicaGuest: what the stream restores into, its
 *   block devices, COLO's running replica, and the promotion that resumes
 *   the guest and serves it when the primary is gone.
 */
import type { AddressInfo } from 'node:net';
import type { CheckpointDevice } from '../checkpoint/devices.js';
import type { BlockDevice } from '../disk/block-device.js';
import type { Endpoint } from '../net/wire.js';
import type { Address } from '../util/address.js';
import type { Logger } from '../util/logger.js';
import type { ProtectedDomain, ReplicaDomain } from './types.js';

export interface DomainBinding {
  /** The configuration's `domain.type`. */
  readonly type: string;
  /** The guest this host runs and protects (a real domain is found and opened first, hence the promise). */
  primary(logger: Logger): PrimaryGuest | Promise<PrimaryGuest>;
  /** The replica this host keeps; paused until a promotion (or, in COLO, a checkpoint) runs it. */
  replica(logger: Logger): ReplicaGuest;
}

/** The guest's virtual NIC (COLO): frames in; its output goes to the `transmit` given at attach. */
export interface GuestNic {
  /** The guest's address on its network: where the front sends clients' frames. */
  readonly endpoint: Endpoint;
  receive(frame: Buffer): void;
}

/** For benchmarks and tests: a guest that can be made to write chosen pages. */
export interface SyntheticLoad {
  /** Writes one word in each page of `pfns`, as guest code would (dirty-logged). */
  touch(pfns: Uint32Array, value: number): void;
}

export interface PrimaryGuest {
  readonly domain: ProtectedDomain;
  /** The guest's disks, in the order the stream numbers them. */
  readonly disks: readonly BlockDevice[];
  /**
   * Starts the guest's service reachable over TCP (Remus, or unprotected)
   * and resolves with its address, for the service front to forward to.
   */
  serveTcp(): Promise<Address>;
  /**
   * Starts the guest's service behind a virtual NIC (COLO): client frames
   * go in through the returned NIC, the guest's frames come out through
   * `transmit`. Absent where the domain has no NIC Tandem can drive.
   */
  attachNic?(transmit: (frame: Buffer) => void): GuestNic;
  /**
   * The guest's own output commit, where its network output is held below
   * Tandem (Xen: its vif's plug qdisc): clients then reach the guest at its
   * own address (serveTcp()'s), and no service front is put before it.
   */
  readonly outputCommit?: OutputCommit;
  /** A digest of the checkpointed state (memory, vCPUs, device model, disks); equal on the replica at the same checkpoint. Absent where Tandem cannot read the state (a real domain). */
  digest?(): string;
  synthetic?: SyntheticLoad;
  stop(): Promise<void>;
}

/** A checkpoint device that holds the guest's network output until its epoch is acked. */
export interface OutputCommit extends CheckpointDevice {
  /**
   * Fenced: nothing it holds may leave, ever, and the guest must not go on
   * serving (Xen: the plug stays shut and the domain is paused).
   */
  isolate(): Promise<void>;
}

/** COLO: the replica's guest running between checkpoints. */
export interface ColoReplicaGuest {
  /** A client frame the primary mirrored, for the guest's NIC (dropped until a checkpoint gives it a guest). */
  deliver(frame: Buffer): void;
  /** Stops the guest for an announced checkpoint; the pages it wrote since it last resumed, ascending. */
  suspend(): Uint32Array;
  /** Stops the guest outside any checkpoint (a new stream is about to write the replica, or the stream ended). */
  pause(): void;
  /** The replica holds checkpoint `epoch`: run the guest from it. */
  resume(epoch: number): void;
  /** Failover: the guest goes on from its own run (its disk writes since the checkpoint become real). */
  takeOver(): void;
}

/** The guest's own check that its persistent state (disk) and its memory agree at the checkpoint. */
export interface PersistenceCheck {
  consistent: boolean;
  keys: number;
  fileBytes: number;
  /** The first difference found, when not consistent. */
  detail?: string;
}

export interface PromoteOptions {
  /** Where to serve the guest's service. */
  service: Address;
  /** Check the guest's persistent state against its memory before serving (slow: for verification runs). */
  verifyPersistence?: boolean;
}

export interface PromotedGuest {
  service: AddressInfo;
  persistence?: PersistenceCheck;
}

/**
 * The replica's intake: Tandem applies the stream itself, page by page
 * (`domain`), or hands whole epochs of it to the hypervisor's own restore
 * (`restore`), which alone can build a real domain.
 */
export type ReplicaGuest = PageReplicaGuest | RestoreReplicaGuest;

export interface PageReplicaGuest extends ReplicaGuestBase {
  readonly domain: ReplicaDomain;
  readonly restore?: undefined;
}

export interface RestoreReplicaGuest extends ReplicaGuestBase {
  readonly domain?: undefined;
  readonly restore: EpochRestore;
}

/**
 * A hypervisor's restore of one stream at a time, fed only whole epochs
 * (src/secondary/restore-intake.ts decides what is whole and valid).
 */
export interface EpochRestore {
  /**
   * A new stream begins, whose toolstack config is `config`: a restore for
   * it starts. One that was under way (with the checkpoint it held) is given
   * up first: a hypervisor restore cannot take a second stream.
   */
  open(config: { json: string; name: string }): Promise<void>;
  /** Bytes of the stream (Tandem's own records taken out), in order; resolves once the hypervisor has them. */
  give(chunks: readonly Buffer[]): Promise<void>;
  /** The restore under way is given up (its stream failed before a checkpoint, or the node stops). */
  close(): Promise<void>;
}

interface ReplicaGuestBase {
  /** The replica's disks, in the order the stream numbers them. */
  readonly disks: readonly BlockDevice[];
  /** Equal to the primary's digest() at the checkpoint the replica holds; absent where the primary has none. */
  digest?(): string;
  /** COLO: the replica runs the guest between checkpoints; its frames go out through `transmit`. */
  runColo?(transmit: (frame: Buffer) => void): ColoReplicaGuest;
  /** Resumes the guest from the replica (which holds a complete checkpoint) and serves it. */
  promote(options: PromoteOptions): Promise<PromotedGuest>;
  /**
   * Resumes the guest from the replica as a guest this host protects (after
   * a failover, to be protected by a new secondary): its service starts with
   * serveTcp(), behind the front's output commit. The replica is used up.
   * Absent where the domain type cannot do it yet.
   */
  resumeAsPrimary?(logger: Logger): PrimaryGuest;
  stop(): Promise<void>;
}
