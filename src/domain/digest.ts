/**
 * A digest of a domain's checkpointed state: RAM, vCPU/platform context and
 * device-model state. Primary (at suspend) and secondary (after applying an
 * epoch) compute it the same way, so equal digests mean an exact replica.
 * It reads all of RAM: a consistency check for tests and operators, not
 * something for every epoch of a production run.
 */
import { createHash } from 'node:crypto';
import type { Domain } from './types.js';

const CHUNK = 16 * 1024 * 1024;

export function stateDigest(domain: Domain & { readonly ram: Buffer }): string {
  const h = createHash('sha256');
  for (let at = 0; at < domain.ram.length; at += CHUNK) h.update(domain.ram.subarray(at, at + CHUNK));
  // The TSC record carries wall-clock time; the registers in the HVM context are what must match.
  h.update(domain.platformContext().hvmContext);
  h.update(domain.deviceModelState());
  return h.digest('hex');
}
