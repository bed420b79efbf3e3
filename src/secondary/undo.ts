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
 * What it costs: a 4 KiB compare per page written during the pre-copy, and
 * memory for what differs, bounded by `limitBytes`. A stream that differs
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

  /** Call before `pfns` get `pages`: keeps the old content of every page that is about to change. */
  beforeWrite(pfns: ArrayLike<number>, pages: readonly Buffer[]): void {
    for (let i = 0; i < pfns.length; i++) {
      const pfn = pfns[i];
      if (this.saved.has(pfn)) continue;
      const current = this.replica.readPage(pfn);
      // Unchanged, or changed back: what is there now is still the checkpoint's.
      if (current.equals(pages[i])) continue;
      this.saved.set(pfn, Buffer.from(current));
    }
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
