/**
 * The sim guest's software as a whole: the key-value store in RAM and its
 * append-only file on the virtual disk. A primary installs it on a fresh
 * domain; a promoted secondary finds it in the replica, where RAM and disk
 * are at the same epoch.
 */
import type { PersistenceCheck } from '../domain/binding.js';
import type { SimDisk } from '../domain/sim/disk.js';
import type { SimDomain } from '../domain/sim/domain.js';
import { PAGE_SIZE } from '../stream/format.js';
import { AppendOnlyFile, replayAof } from './aof.js';
import { KvCommands } from './commands.js';
import { KvStore } from './kv-store.js';
import { GuestNetStack, netStackBytes } from './net/stack.js';
import { ipv4, type Endpoint } from '../net/wire.js';
import type { GuestVcpu } from './vcpu.js';

export interface GuestSoftware {
  store: KvStore;
  /** Absent for a guest without a disk. */
  aof: AppendOnlyFile | undefined;
}

/** The guest's network identity behind its virtual NIC (COLO): the same on both replicas. */
export const GUEST_ENDPOINT: Endpoint = { mac: Buffer.from('525400000001', 'hex'), ip: ipv4('10.0.0.1'), port: 6379 };
const NET_RX_BYTES = 16 * 1024;

/** Sockets the guest's stack has: as many as an eighth of its RAM holds, 16 to 1024 (Redis's default maxclients is 10000). */
function netSockets(domain: SimDomain): number {
  const perSocket = netStackBytes(1, NET_RX_BYTES);
  return Math.max(16, Math.min(1024, Math.floor(domain.usableRamBytes / 8 / perSocket)));
}

/** Where the network stack sits: at the top of the guest's usable RAM, page aligned; the store below it. */
function netBase(domain: SimDomain): number {
  const bytes = netStackBytes(netSockets(domain), NET_RX_BYTES);
  return Math.floor((domain.usableRamBytes - bytes) / PAGE_SIZE) * PAGE_SIZE;
}

export interface GuestOptions {
  /** A virtual NIC (COLO): the guest's TCP endpoint in RAM, sending frames through `transmit`. */
  nic?: { transmit: (frame: Buffer) => void; clock?: () => number; vcpu?: GuestVcpu };
}

export interface NetGuestSoftware extends GuestSoftware {
  net: GuestNetStack;
}

/** Formats the store in RAM and, with a disk, an empty append-only file (guest writes: the domain must run). */
export function installGuest(domain: SimDomain, disk: SimDisk | undefined, options: GuestOptions = {}): GuestSoftware & { net: GuestNetStack | undefined } {
  const nic = options.nic;
  const store = KvStore.format(domain, { bytes: nic === undefined ? domain.usableRamBytes : netBase(domain) });
  const aof = disk === undefined ? undefined : AppendOnlyFile.format(disk);
  aof?.attach(store);
  if (nic === undefined) return { store, aof, net: undefined };
  const commands = new KvCommands({ store, clock: nic.clock, persistence: aof, vcpu: nic.vcpu });
  const g = GUEST_ENDPOINT;
  const secret = (Math.random() * 2 ** 32) >>> 0;
  const net = GuestNetStack.format(domain, { base: netBase(domain), maxSockets: netSockets(domain), rxBytes: NET_RX_BYTES, ip: g.ip, port: g.port, mac: g.mac, secret }, commands, nic.transmit);
  return { store, aof, net };
}

/** Opens the store and its file as a checkpoint left them (a replica being promoted). */
export function resumeGuest(domain: SimDomain, disk: SimDisk | undefined): GuestSoftware {
  const store = KvStore.attach(domain);
  const aof = disk === undefined ? undefined : AppendOnlyFile.open(disk);
  aof?.attach(store);
  return { store, aof };
}

/** The guest's software with its NIC, as a checkpoint left it (a COLO secondary resuming). */
export function resumeNetGuest(domain: SimDomain, disk: SimDisk | undefined, nic: NonNullable<GuestOptions['nic']>): NetGuestSoftware {
  const { store, aof } = resumeGuest(domain, disk);
  const commands = new KvCommands({ store, clock: nic.clock, persistence: aof, vcpu: nic.vcpu });
  return { store, aof, net: GuestNetStack.attach(domain, netBase(domain), commands, nic.transmit) };
}

/**
 * Replays the append-only file and compares it with the store, key by key:
 * proof that disk and RAM are at the same point. Reads everything; for
 * verification runs, not for every failover of a production guest.
 */
export function checkPersistence(store: KvStore, aof: AppendOnlyFile, now: number): PersistenceCheck {
  const file = aof.contents();
  const replayed = replayAof(file, now);
  let keys = 0;
  let detail: string | undefined;
  store.forEach(now, (key, value, expireAt) => {
    keys++;
    if (detail !== undefined) return;
    const k = key.toString('latin1');
    const e = replayed.get(k);
    if (e === undefined) detail = `key ${JSON.stringify(k.slice(0, 64))} is in RAM but not in the file`;
    else if (!e.value.equals(value)) detail = `key ${JSON.stringify(k.slice(0, 64))} differs`;
    else if (e.expireAt !== expireAt) detail = `key ${JSON.stringify(k.slice(0, 64))} expires at ${expireAt} in RAM, ${e.expireAt} in the file`;
  });
  if (detail === undefined && replayed.size !== keys) detail = `${replayed.size} keys in the file, ${keys} in RAM`;
  if (detail === undefined && !aof.info().ok) detail = 'the file is marked stale (a change could not be logged)';
  const out: PersistenceCheck = { consistent: detail === undefined, keys, fileBytes: file.length };
  if (detail !== undefined) out.detail = detail;
  return out;
}
