/**
 * A set of indexes below a bound (page frames, disk blocks) built for dirty
 * logs: a bitmap for membership, a list in first-add order so reading and
 * clearing cost O(members), whatever the bound.
 */
export class IndexSet {
  private readonly bitmap: Uint32Array;
  private list: Uint32Array;
  private count = 0;

  constructor(private readonly bound: number) {
    this.bitmap = new Uint32Array(Math.ceil(bound / 32));
    this.list = new Uint32Array(Math.min(bound, 4096));
  }

  get size(): number {
    return this.count;
  }

  /** Adds first..last (inclusive); the caller keeps them below the bound. */
  add(first: number, last: number): void {
    for (let i = first; i <= last; i++) {
      const bit = 1 << (i & 31);
      const w = i >>> 5;
      if ((this.bitmap[w] & bit) !== 0) continue;
      this.bitmap[w] |= bit;
      if (this.count === this.list.length) {
        const grown = new Uint32Array(Math.min(this.bound, this.list.length * 2));
        grown.set(this.list);
        this.list = grown;
      }
      this.list[this.count++] = i;
    }
  }

  /** The members, ascending (a copy). */
  sorted(): Uint32Array {
    return this.list.slice(0, this.count).sort();
  }

  clear(): void {
    for (let i = 0; i < this.count; i++) this.bitmap[this.list[i] >>> 5] = 0;
    this.count = 0;
  }
}
