/**
 * Where the key-value store's data structures sit in guest RAM. Everything
 * is little-endian, as an x86 guest would store it. Offsets are relative to
 * the start of the store's region (a page-aligned guest-physical address).
 *
 *   [0, 4096)                superblock: identity, layout, counters, free-list heads
 *   [tableOff, +4*buckets)   hash table: one u32 entry reference per bucket (0 = empty)
 *   [slotsOff, +4*maxKeys)   key slots: a dense array of every live entry's reference
 *   [heapOff, heapEnd)       heap: entries and free blocks, in size classes
 *
 * An entry reference is the entry's offset divided by 8 (blocks are 8-byte
 * aligned), so a u32 reaches 32 GiB, beyond the sim's 4 GiB RAM; 0 is null,
 * which is free because offset 0 is the superblock.
 *
 * The table is sized once, from the region, at format: it is never rehashed.
 * A rehash would rewrite the whole table in one go, and in a Remus epoch
 * that is every table page dirty at once; a fixed table keeps the pages a
 * command dirties proportional to what it changes. The key slots cap the
 * key count (maxKeys), so the load factor stays below maxKeys / buckets
 * (2 with the defaults). The slots also make RANDOMKEY uniform in O(1) and
 * KEYS, FLUSHALL and the expiry sweep O(keys) rather than O(buckets).
 */
import { PAGE_SIZE } from '../stream/format.js';

export const STORE_MAGIC = Buffer.from('TandemKV', 'latin1');
export const STORE_VERSION = 1;
export const SUPERBLOCK_BYTES = PAGE_SIZE;

/** Superblock fields. [0, SB_CHECKSUM) never changes after format and is checksummed. */
export const SB_MAGIC = 0; // 8 bytes
export const SB_VERSION = 8; // u32
export const SB_SUPERBLOCK_BYTES = 12; // u32
export const SB_REGION_BYTES = 16; // u64
export const SB_BUCKETS = 24; // u32, a power of two
export const SB_MAX_KEYS = 28; // u32
export const SB_TABLE_OFF = 32; // u64
export const SB_SLOTS_OFF = 40; // u64
export const SB_HEAP_OFF = 48; // u64
export const SB_HEAP_END = 56; // u64
export const SB_HASH_SEED = 64; // u32
export const SB_CLASS_COUNT = 68; // u32
export const SB_CHECKSUM = 72; // u32, FNV-1a over [0, SB_CHECKSUM)
// Mutable state, written as the guest runs.
export const SB_KEY_COUNT = 128; // u64
export const SB_EXPIRES_COUNT = 136; // u64: keys with a TTL
export const SB_HEAP_TOP = 144; // u64: bump pointer, heapOff <= top <= heapEnd
export const SB_HEAP_USED = 152; // u64: bytes in allocated blocks
export const SB_SWEEP_CURSOR = 160; // u64: next key slot the expiry sweep looks at
// Counters INFO reports; in RAM so they survive failover with the data.
export const SB_STAT_COMMANDS = 192; // u64
export const SB_STAT_HITS = 200; // u64
export const SB_STAT_MISSES = 208; // u64
export const SB_STAT_EXPIRED = 216; // u64
export const SB_STAT_OOM = 224; // u64
export const SB_FREE_HEADS = 256; // u32 per size class

/** Entry header; the key follows it, then the value. */
export const E_TAG = 0; // u32: TAG_ENTRY | class
export const E_NEXT = 4; // u32: next entry in the bucket chain
export const E_HASH = 8; // u32: the key's full hash, checked before the key bytes
export const E_SLOT = 12; // u32: index in the key slots
export const E_KEY_LEN = 16; // u32
export const E_VALUE_LEN = 20; // u32
export const E_EXPIRE_AT = 24; // u64: absolute Unix time in ms, 0 = no TTL
export const ENTRY_HEADER_BYTES = 32;

/** Free block: E_TAG holds TAG_FREE | class and E_NEXT the next free block of that class. */
export const TAG_ENTRY = 0xa5e70000;
export const TAG_FREE = 0x5af30000;
export const TAG_MASK = 0xffff0000;
export const CLASS_MASK = 0x0000ffff;

/** Size classes: 32..128 in steps of 8, then four per power of two (at most 25% slack). */
export const MIN_BLOCK = 32;
const LINEAR_CLASSES = 13; // 32, 40, ..., 128

export function classSize(cls: number): number {
  if (cls < LINEAR_CLASSES) return MIN_BLOCK + 8 * cls;
  const j = cls - LINEAR_CLASSES;
  const pow = 2 ** (7 + Math.floor(j / 4));
  return pow + ((j % 4) + 1) * (pow / 4);
}

/** The smallest class whose blocks hold `bytes`. */
export function classOf(bytes: number): number {
  if (bytes <= 128) return Math.max(0, Math.ceil((bytes - MIN_BLOCK) / 8));
  // pow: the power of two with pow < bytes <= 2 * pow.
  let pow = 128;
  let doublings = 0;
  while (pow * 2 < bytes) {
    pow *= 2;
    doublings++;
  }
  const within = Math.ceil((bytes - pow) / (pow / 4)) - 1;
  return LINEAR_CLASSES + doublings * 4 + within;
}

/** Classes needed so that the largest holds a block as big as the heap. */
export function classCountFor(heapBytes: number): number {
  return classOf(Math.max(heapBytes, MIN_BLOCK)) + 1;
}

export function alignPage(n: number): number {
  return Math.ceil(n / PAGE_SIZE) * PAGE_SIZE;
}

export interface StoreLayout {
  regionBytes: number;
  buckets: number;
  maxKeys: number;
  tableOff: number;
  slotsOff: number;
  heapOff: number;
  heapEnd: number;
  hashSeed: number;
  classCount: number;
}

/** FNV-1a over bytes: the superblock checksum. */
export function fnv1a(bytes: Uint8Array, from = 0, to = bytes.length): number {
  let h = 0x811c9dc5;
  for (let i = from; i < to; i++) h = Math.imul(h ^ bytes[i], 0x01000193);
  return h >>> 0;
}

/**
 * The key hash: FNV-1a seeded from the superblock, then murmur3's finalizer
 * so the low bits (the bucket index) depend on every byte. Not a defence
 * against chosen-key flooding; the seed only varies placement between stores.
 */
export function hashKey(seed: number, key: Uint8Array, from = 0, to = key.length): number {
  let h = (0x811c9dc5 ^ seed) >>> 0;
  for (let i = from; i < to; i++) h = Math.imul(h ^ key[i], 0x01000193);
  h ^= to - from;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** A little-endian u64 field holding a JS number below 2^53 (sizes, counts, offsets). */
export function writeU64(b: Buffer, at: number, v: number): void {
  b.writeUInt32LE(v % 2 ** 32, at);
  b.writeUInt32LE(Math.floor(v / 2 ** 32), at + 4);
}

export function readU64(b: Buffer, at: number): number {
  return b.readUInt32LE(at) + b.readUInt32LE(at + 4) * 2 ** 32;
}
