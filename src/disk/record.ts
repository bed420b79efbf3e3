/**
 * TANDEM_DISK_WRITES (libxl layer, optional type 0x80005402): the blocks a
 * disk changed during one epoch, carried in that epoch's checkpoint between
 * CHECKPOINT and CHECKPOINT_END, so the secondary applies them at the same
 * commit as the epoch's memory. Body (little endian, like every stream field):
 *
 *   0  u32 disk          index of the disk (0 for the first)
 *   4  u32 flags         bit 0 RESET: zero the disk first (a stream's first
 *                        checkpoint: blocks it does not send are zero)
 *   8  u64 capacity      bytes; must equal the replica disk's
 *  16  u32 block_size    4096
 *  20  u32 extents
 *  24  extents, each:    u32 first block, u32 block count, count * 4096 bytes
 *
 * Extents are whole blocks, so the body is a multiple of 8 octets and needs
 * no padding. The parser checks every field against the body length and the
 * replica disk before anything is applied, and returns views (no copies).
 */
import { ErrorCodes, StreamError } from '../errors.js';
import type { RecordSite } from '../stream/records.js';

/** The record's block size: every BlockDevice is read and written in blocks of this many bytes. */
export const DISK_BLOCK_SIZE = 4096;

export const DISK_WRITES_HEADER = 24;
export const EXTENT_HEADER = 8;
export const DiskWritesFlags = { RESET: 1 } as const;

export interface DiskExtent {
  first: number;
  /** Whole blocks: a view into the record body. */
  data: Buffer;
}

export interface DiskWrites {
  disk: number;
  reset: boolean;
  capacity: number;
  extents: DiskExtent[];
  /** Blocks in all extents. */
  blocks: number;
}

export interface DiskWritesHeader {
  disk: number;
  flags: number;
  capacity: number;
  extents: number;
}

/** Writes the record header at `at` of `dest`. */
export function writeDiskWritesHeader(dest: Buffer, at: number, h: DiskWritesHeader): void {
  dest.writeUInt32LE(h.disk, at);
  dest.writeUInt32LE(h.flags, at + 4);
  dest.writeUInt32LE(h.capacity % 2 ** 32, at + 8);
  dest.writeUInt32LE(Math.floor(h.capacity / 2 ** 32), at + 12);
  dest.writeUInt32LE(DISK_BLOCK_SIZE, at + 16);
  dest.writeUInt32LE(h.extents, at + 20);
}

export function writeExtentHeader(dest: Buffer, at: number, first: number, count: number): void {
  dest.writeUInt32LE(first, at);
  dest.writeUInt32LE(count, at + 4);
}

/** What the replica's disks are: the parser refuses writes that do not fit them. */
export interface ReplicaDisks {
  /** Capacity in bytes of disk `index`, undefined when the replica has no such disk. */
  capacityOf(index: number): number | undefined;
}

const RECORD = 'libxl TANDEM_DISK_WRITES';

/** Parses and validates a TANDEM_DISK_WRITES body against the replica's disks. */
export function parseDiskWrites(body: Buffer, disks: ReplicaDisks, site: Pick<RecordSite, 'offset'>): DiskWrites {
  const fail = (code: (typeof ErrorCodes)[keyof typeof ErrorCodes], detail: string): never => {
    throw new StreamError(code, detail, { offset: site.offset, record: RECORD });
  };
  if (body.length < DISK_WRITES_HEADER) fail(ErrorCodes.RECORD_BAD_LENGTH, `body length ${body.length}, expected at least ${DISK_WRITES_HEADER}`);
  const disk = body.readUInt32LE(0);
  const flags = body.readUInt32LE(4);
  const capacity = body.readUInt32LE(8) + body.readUInt32LE(12) * 2 ** 32;
  const blockSize = body.readUInt32LE(16);
  const count = body.readUInt32LE(20);
  if ((flags & ~DiskWritesFlags.RESET) !== 0) fail(ErrorCodes.RECORD_RESERVED_NONZERO, `flags 0x${flags.toString(16)} set reserved bits`);
  if (blockSize !== DISK_BLOCK_SIZE) fail(ErrorCodes.RECORD_BAD_FIELD, `block size ${blockSize}, expected ${DISK_BLOCK_SIZE}`);
  const own = disks.capacityOf(disk);
  if (own === undefined) fail(ErrorCodes.REPLICA_MISMATCH, `writes for disk ${disk}, which the replica does not have`);
  if (capacity !== own) fail(ErrorCodes.REPLICA_MISMATCH, `disk ${disk} of ${capacity} bytes on the primary, ${own} bytes on the replica`);
  const blocksOnDisk = own! / DISK_BLOCK_SIZE;
  // Each extent takes at least its header and one block: bound the count before walking.
  if (count > (body.length - DISK_WRITES_HEADER) / (EXTENT_HEADER + DISK_BLOCK_SIZE)) {
    fail(ErrorCodes.RECORD_BAD_LENGTH, `${count} extents cannot fit a body of ${body.length} bytes`);
  }
  const extents: DiskExtent[] = [];
  let at = DISK_WRITES_HEADER;
  let blocks = 0;
  for (let i = 0; i < count; i++) {
    if (at + EXTENT_HEADER > body.length) fail(ErrorCodes.RECORD_BAD_LENGTH, `extent ${i} header runs past the body`);
    const first = body.readUInt32LE(at);
    const n = body.readUInt32LE(at + 4);
    if (n === 0) fail(ErrorCodes.RECORD_BAD_FIELD, `extent ${i} is empty`);
    if (first + n > blocksOnDisk) fail(ErrorCodes.REPLICA_MISMATCH, `extent ${i} (blocks ${first}..${first + n - 1}) outside the ${blocksOnDisk}-block disk`);
    const end = at + EXTENT_HEADER + n * DISK_BLOCK_SIZE;
    if (end > body.length) fail(ErrorCodes.RECORD_BAD_LENGTH, `extent ${i} of ${n} blocks runs past the body`);
    extents.push({ first, data: body.subarray(at + EXTENT_HEADER, end) });
    blocks += n;
    at = end;
  }
  if (at !== body.length) fail(ErrorCodes.RECORD_BAD_LENGTH, `${body.length - at} bytes after the last extent`);
  return { disk, reset: (flags & DiskWritesFlags.RESET) !== 0, capacity, extents, blocks };
}
