/**
 * Synchronous gathered writes to a file descriptor, for tools that write a
 * stream to disk: one writev per chunk list, looping over partial writes.
 */
import { writevSync } from 'node:fs';

export function writeAllSync(fd: number, chunks: readonly Buffer[]): void {
  let pending = chunks.filter((c) => c.length > 0);
  while (pending.length > 0) {
    // IOV_MAX is 1024 on Linux.
    const batch = pending.slice(0, 1024);
    let written = writevSync(fd, batch);
    let i = 0;
    while (i < batch.length && written >= batch[i].length) {
      written -= batch[i].length;
      i++;
    }
    const rest = pending.slice(i);
    if (written > 0) rest[0] = rest[0].subarray(written);
    pending = rest;
  }
}
