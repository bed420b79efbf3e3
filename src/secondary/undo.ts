/**
 * Keeping the replica's last checkpoint while a new stream syncs it.
 *
 * A new stream writes its pre-copy straight into the replica (the whole of
 * RAM, as Xen's restore does). Until that stream reaches its own first
 * checkpoint the replica is neither the old checkpoint nor the new one; a
 * primary that dies then, or a stream that is refused or torn, would leave
 * nothing to fail over to. So before a page or a disk block of the old
 * checkpoint is overwritten, its old content is kept once, and only if the
 * new content differs (a primary that reconnects after a link blip sends
 * mostly what the replica has). If the new stream fails before its first
 * checkpoint, the kept contents go back and the replica is at its old
 * checkpoint again; once the new stream's first checkpoint is applied, they
 * are let go.
 *
 * What it costs: a 4 KiB compare per page written during the pre-copy (which
 * pays for itself: a page found equal is not written), and memory for what
 * differs, bounded by `limitBytes`. A stream that differs
 * by more (a different primary, a long partition) gives the old checkpoint
 * up, as the replica did before this existed, and says so.
 */
import { PAGE_SIZE } from '../stream/format.js';

/** What a replica device keeps of its last checkpoint while a new stream syncs it. */
export interface DeviceKeeper {
  /** Bytes kept so far. */
  readonly bytes: number;
  /** Puts the device back as the last checkpoint left it. */
  rollback(): void;
  /** The new stream's first checkpoint is applied: what was kept is no longer needed. */
  release(): void;
}

/** The replica's page reads and writes the page keeper needs. */
export interface KeptPages {
  readPage(pfn: number): Buffer;
  writePages(pfns: ArrayLike<number>, pages: readonly Buffer[]): void;
}

/** The pages of the last checkpoint that a new stream's pre-copy has overwritten. */
export class PageKeeper {
  private readonly saved = new Map<number, Buffer>();

  constructor(private readonly replica: KeptPages) {}

  get bytes(): number {
    return this.saved.size * PAGE_SIZE;
  }

  /**
   * Call before `pfns` get `pages`: keeps the old content of every page that
   * is about to change, and returns only those pages, the ones to write. A
   * page the replica already holds needs no write (the compare was paid for
   * anyway): a primary re-syncing after a blip sends mostly such pages.
   */
  changes(pfns: ArrayLike<number>, pages: readonly Buffer[]): { pfns: number[]; pages: Buffer[] } {
    const outPfns: number[] = [];
    const outPages: Buffer[] = [];
    for (let i = 0; i < pfns.length; ) {
      // A run of consecutive pages lying back to back on both sides (a received chunk holds
      // up to 16) is compared in one call: per-call cost dominates 4 KiB compares.
      const here = this.replica.readPage(pfns[i]);
      const end = runEnd(pfns, pages, i, here, this.replica);
      if (end > i + 1 && sameSpan(here, pages[i], (end - i) * PAGE_SIZE)) {
        i = end;
        continue;
      }
      for (; i < end; i++) {
        const pfn = pfns[i];
        const current = this.replica.readPage(pfn);
        // Unchanged, or changed back: what is there now is still the checkpoint's, and stays.
        if (current.equals(pages[i])) continue;
        if (!this.saved.has(pfn)) this.saved.set(pfn, Buffer.from(current));
        outPfns.push(pfn);
        outPages.push(pages[i]);
      }
    }
    return { pfns: outPfns, pages: outPages };
  }

  rollback(): void {
    const pfns = [...this.saved.keys()];
    this.replica.writePages(pfns, pfns.map((p) => this.saved.get(p)!));
    this.saved.clear();
  }

  release(): void {
    this.saved.clear();
  }
}

/** End (exclusive) of the run from `i` of consecutive pfns whose new pages, and whose replica pages (from `here`, pfns[i]'s), lie back to back. */
function runEnd(pfns: ArrayLike<number>, pages: readonly Buffer[], i: number, here: Buffer, replica: KeptPages): number {
  const first = pages[i];
  let j = i + 1;
  for (; j < pfns.length && j - i < MAX_RUN; j++) {
    const p = pages[j];
    if (pfns[j] !== pfns[j - 1] + 1 || p.length !== PAGE_SIZE || p.buffer !== first.buffer || p.byteOffset !== first.byteOffset + (j - i) * PAGE_SIZE) break;
    const r = replica.readPage(pfns[j]);
    if (r.buffer !== here.buffer || r.byteOffset !== here.byteOffset + (j - i) * PAGE_SIZE) break;
  }
  return j;
}

/** Most pages compared in one call (a received chunk holds 16). */
const MAX_RUN = 64;

/** Whether `length` bytes from the start of `a` and of `b` are equal (both lie within their buffers). */
function sameSpan(a: Buffer, b: Buffer, length: number): boolean {
  return Buffer.compare(new Uint8Array(a.buffer, a.byteOffset, length), new Uint8Array(b.buffer, b.byteOffset, length)) === 0;
}
