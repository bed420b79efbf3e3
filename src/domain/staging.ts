/**
 * The staging buffer: while the guest is paused, dirty pages are copied
 * here (one memcpy per page, the whole pause), so the guest can resume
 * before the network transfer. One buffer is reused epoch after epoch: only
 * one epoch is in flight, and it is acked (so fully sent) before the next
 * is staged. It grows to the largest epoch seen, never shrinks below that.
 */
import { PAGE_SIZE } from '../stream/format.js';

export class StagingBuffer {
  private buffer = Buffer.alloc(0);

  /** A buffer holding at least `pages` pages. */
  reserve(pages: number): Buffer {
    const need = pages * PAGE_SIZE;
    if (this.buffer.length < need) {
      // Grow geometrically so a slowly rising dirty rate does not reallocate every epoch.
      this.buffer = Buffer.allocUnsafe(Math.max(need, Math.min(this.buffer.length * 2, need * 2)));
    }
    return this.buffer;
  }

  /** View of staged page `i`. */
  page(i: number): Buffer {
    return this.buffer.subarray(i * PAGE_SIZE, (i + 1) * PAGE_SIZE);
  }

  get capacityPages(): number {
    return this.buffer.length / PAGE_SIZE;
  }
}
