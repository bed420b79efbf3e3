/**
 * PageKeeper.changes(): of the pages a new stream's pre-copy writes, only
 * those that differ from the replica are returned (to write) and kept (to
 * roll back); runs of back-to-back pages are compared whole. Random page
 * histories, the new pages cut into views at random offsets as a socket's
 * chunks would cut them, checked against a page-by-page model.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { PageKeeper } from '../../src/secondary/undo.js';
import { PAGE_SIZE } from '../../src/stream/format.js';
import { xorshift32 } from '../../src/util/xorshift.js';

const PAGES = 96;

class Ram {
  readonly bytes = Buffer.alloc(PAGES * PAGE_SIZE);
  readPage(pfn: number): Buffer {
    return this.bytes.subarray(pfn * PAGE_SIZE, (pfn + 1) * PAGE_SIZE);
  }
  writePages(pfns: ArrayLike<number>, pages: readonly Buffer[]): void {
    for (let i = 0; i < pfns.length; i++) pages[i].copy(this.bytes, pfns[i] * PAGE_SIZE);
  }
}

test('random histories: exactly the differing pages are written and kept; rollback restores the checkpoint', () => {
  const rng = xorshift32(0x5eed);
  const below = (n: number): number => rng() % n;
  for (let round = 0; round < 60; round++) {
    const ram = new Ram();
    for (let i = 0; i < ram.bytes.length; i += 64) ram.bytes[i] = below(256);
    const checkpoint = Buffer.from(ram.bytes);
    const keeper = new PageKeeper(ram);
    // A batch of pfns: runs of consecutive ones (as a pre-copy sends them) with gaps.
    const pfns: number[] = [];
    for (let pfn = below(4); pfn < PAGES; pfn += below(5) === 0 ? 2 + below(3) : 1) pfns.push(pfn);
    // Their new contents, back to back in one buffer: most equal to the replica's, some changed by one byte.
    const data = Buffer.alloc(pfns.length * PAGE_SIZE);
    const differs = new Set<number>();
    pfns.forEach((pfn, i) => {
      ram.readPage(pfn).copy(data, i * PAGE_SIZE);
      if (below(6) === 0) {
        data[i * PAGE_SIZE + below(PAGE_SIZE)] ^= 1 + below(255);
        differs.add(pfn);
      }
    });
    // Views as a socket's chunks cut them: a page split across two chunks arrives as a copy.
    const pages: Buffer[] = [];
    let cut = below(5) * PAGE_SIZE + below(PAGE_SIZE);
    for (let i = 0; i < pfns.length; i++) {
      const at = i * PAGE_SIZE;
      if (cut > at && cut < at + PAGE_SIZE) {
        pages.push(Buffer.from(data.subarray(at, at + PAGE_SIZE)));
        cut += (1 + below(6)) * PAGE_SIZE;
      } else pages.push(data.subarray(at, at + PAGE_SIZE));
    }
    const changed = keeper.changes(pfns, pages);
    assert.deepEqual(changed.pfns, pfns.filter((p) => differs.has(p)), `round ${round}`);
    assert.equal(keeper.bytes, differs.size * PAGE_SIZE, `round ${round}: kept`);
    ram.writePages(changed.pfns, changed.pages);
    pfns.forEach((pfn, i) => assert.ok(ram.readPage(pfn).equals(data.subarray(i * PAGE_SIZE, (i + 1) * PAGE_SIZE)), `round ${round}: pfn ${pfn}`));
    // The same pages again change nothing more and keep nothing more.
    assert.equal(keeper.changes(pfns, pages).pfns.length, 0);
    assert.equal(keeper.bytes, differs.size * PAGE_SIZE);
    keeper.rollback();
    assert.ok(ram.bytes.equals(checkpoint), `round ${round}: rolled back`);
  }
});
