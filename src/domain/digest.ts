/**
 * A digest of a domain's checkpointed state: RAM, vCPU/platform context,
 * device-model state and the contents of its disks. Primary (at suspend) and secondary (after applying an
 * epoch) compute it the same way, so equal digests mean an exact replica.
 * It reads all of RAM: a consistency check for tests and operators, not
 * something for every epoch of a production run.
 */
import { createHash } from 'node:crypto';
import type { Domain } from './types.js';

const CHUNK = 16 * 1024 * 1024;

/** What the digest reads of a disk. */
export interface DigestDisk {
  readonly capacityBytes: number;
  read(offset: number, length: number): Buffer;
}

export function stateDigest(domain: Domain & { readonly ram: Buffer }, disks: readonly DigestDisk[] = []): string {
  const h = createHash('sha256');
  for (let at = 0; at < domain.ram.length; at += CHUNK) h.update(domain.ram.subarray(at, at + CHUNK));
  // The TSC record carries wall-clock time; the registers in the HVM context are what must match.
  h.update(domain.platformContext().hvmContext);
  h.update(domain.deviceModelState());
  for (const d of disks) {
    for (let at = 0; at < d.capacityBytes; at += CHUNK) h.update(d.read(at, Math.min(CHUNK, d.capacityBytes - at)));
  }
  return h.digest('hex');
}
