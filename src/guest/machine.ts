/**
 * The sim guest's software as a whole: the key-value store in RAM and its
 * append-only file on the virtual disk. A primary installs it on a fresh
 * domain; a promoted secondary finds it in the replica, where RAM and disk
 * are at the same epoch.
 */
import type { SimDisk } from '../disk/sim-disk.js';
import type { SimDomain } from '../domain/sim.js';
import { AppendOnlyFile, replayAof } from './aof.js';
import { KvStore } from './kv-store.js';

export interface GuestSoftware {
  store: KvStore;
  /** Absent for a guest without a disk. */
  aof: AppendOnlyFile | undefined;
}

/** Formats the store in RAM and, with a disk, an empty append-only file (guest writes: the domain must run). */
export function installGuest(domain: SimDomain, disk: SimDisk | undefined): GuestSoftware {
  const store = KvStore.format(domain, { bytes: domain.usableRamBytes });
  const aof = disk === undefined ? undefined : AppendOnlyFile.format(disk);
  aof?.attach(store);
  return { store, aof };
}

/** Opens the store and its file as a checkpoint left them (a replica being promoted). */
export function resumeGuest(domain: SimDomain, disk: SimDisk | undefined): GuestSoftware {
  const store = KvStore.attach(domain);
  const aof = disk === undefined ? undefined : AppendOnlyFile.open(disk);
  aof?.attach(store);
  return { store, aof };
}

export interface PersistenceCheck {
  /** The file replays to exactly the live dataset in RAM. */
  consistent: boolean;
  keys: number;
  fileBytes: number;
  /** The first difference found, when not consistent. */
  detail?: string;
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
