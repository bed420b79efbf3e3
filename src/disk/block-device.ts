/**
 * A block device as Tandem's disk replication sees it, on either host:
 * fixed-size blocks of DISK_BLOCK_SIZE bytes (the unit of the
 * TANDEM_DISK_WRITES record), guest writes tracked the way the dirty log
 * tracks RAM, and a restore side that installs blocks without counting them
 * as guest writes. A binding gives one per guest disk.
 */
export interface BlockDevice {
  readonly capacityBytes: number;

  /** Starts tracking guest writes for the mirror (clears the marks). */
  enableTracking(): void;
  disableTracking(): void;
  /** Blocks written since the last call, ascending; clears the marks. */
  readAndClearDirty(): Uint32Array;
  /** Blocks that may be non-zero, ascending: what a fresh replica must be sent. */
  writtenBlocks(): Uint32Array;
  /** Copies blocks `blocks[from..from+count)` back to back into `dest` at `at`. */
  copyBlocks(blocks: ArrayLike<number>, from: number, count: number, dest: Buffer, at: number): void;

  /** Restore side: `data` (whole blocks) at block `first`; not a guest write. */
  installBlocks(first: number, data: Uint8Array): void;
  /** Restore side: the whole device reads as zeros. */
  zero(): void;
  /** The device's bytes at `offset` (for digests): a view or a copy, valid until the next write there. */
  read(offset: number, length: number): Buffer;
}
