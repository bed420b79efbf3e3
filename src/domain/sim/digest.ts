/**
 * A digest of a sim domain's checkpointed state: RAM, vCPU/platform
 * context, device-model state and the contents of its disks. Primary (at
 * suspend) and secondary (after applying an epoch) compute it the same way,
 * so equal digests mean an exact replica. A COLO replica's disk is read
 * without its running guest's overlay: that is the checkpoint it holds.
 * It reads all of RAM: a consistency check for tests and operators, not
 * something for every epoch of a production run.
 */
import { createHash } from 'node:crypto';
import type { SimDisk } from './disk.js';
import type { SimDomain } from './domain.js';

const CHUNK = 16 * 1024 * 1024;

export function stateDigest(domain: SimDomain, disks: readonly SimDisk[] = []): string {
  const h = createHash('sha256');
  for (let at = 0; at < domain.ram.length; at += CHUNK) h.update(domain.ram.subarray(at, at + CHUNK));
  // The TSC record carries wall-clock time; the registers in the HVM context are what must match.
  h.update(domain.platformContext().hvmContext);
  h.update(domain.deviceModelState());
  for (const d of disks) h.update(d.base());
  return h.digest('hex');
}
