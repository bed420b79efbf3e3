/**
 * The key-value store of the sim guest, wholly inside guest RAM (layout in
 * layout.ts). The KvStore object holds no keys, values or counters: only the
 * superblock's immutable layout, read back on attach. So a replica whose RAM
 * is a copy of the primary's attaches and finds every key, TTL and counter.
 *
 * Reads come straight from RAM; every write goes through the domain, so the
 * dirty log sees it. A method that may need memory allocates everything it
 * needs before its first write, so running out (StoreFullError) leaves the
 * store as it was.
 *
 * Times are absolute Unix milliseconds passed in by the caller: the store has
 * no clock of its own, which keeps it deterministic for tests and for COLO.
 */
import { randomBytes } from 'node:crypto';

import { PAGE_SIZE } from '../stream/format.js';
import { GuestError, GuestErrorCodes, StoreFullError } from './errors.js';
import { Heap } from './heap.js';
import {
  ENTRY_HEADER_BYTES,
  E_EXPIRE_AT,
  E_HASH,
  E_KEY_LEN,
  E_NEXT,
  E_SLOT,
  E_TAG,
  E_VALUE_LEN,
  SB_BUCKETS,
  SB_CHECKSUM,
  SB_CLASS_COUNT,
  SB_EXPIRES_COUNT,
  SB_HASH_SEED,
  SB_HEAP_END,
  SB_HEAP_OFF,
  SB_HEAP_TOP,
  SB_HEAP_USED,
  SB_KEY_COUNT,
  SB_MAGIC,
  SB_MAX_KEYS,
  SB_REGION_BYTES,
  SB_SLOTS_OFF,
  SB_STAT_COMMANDS,
  SB_STAT_EXPIRED,
  SB_STAT_HITS,
  SB_STAT_MISSES,
  SB_STAT_OOM,
  SB_SUPERBLOCK_BYTES,
  SB_SWEEP_CURSOR,
  SB_TABLE_OFF,
  SB_VERSION,
  STORE_MAGIC,
  STORE_VERSION,
  SUPERBLOCK_BYTES,
  TAG_ENTRY,
  TAG_MASK,
  alignPage,
  classCountFor,
  fnv1a,
  hashKey,
  readU64,
  writeU64,
  type StoreLayout,
} from './layout.js';
import { GuestRam, type GuestDomain } from './ram.js';

export interface KvFormatOptions {
  /** Guest-physical address of the store, page-aligned (default 0). */
  base?: number;
  /** Bytes of RAM the store may use from `base` (default: the rest of RAM). */
  bytes?: number;
  /** Most keys the store holds (default: one per 128 bytes of the region). */
  maxKeys?: number;
  /** Hash buckets, a power of two (default: maxKeys / 2 rounded up to a power of two). */
  buckets?: number;
  /** Seed of the key hash (default: random). */
  hashSeed?: number;
}

export interface KvAttachOptions {
  base?: number;
}

/** `set` keeps the key's current TTL. */
export const KEEP_TTL = -1;

/**
 * Told of every change to the dataset after it is made (the append-only
 * file). Expiry is absolute, so keys that expire need no entry: a replay
 * drops them by the same rule.
 */
export interface KvJournal {
  /** `key` now holds `value`, expiring at `expireAt` (absolute ms, 0 for never). */
  set(key: Uint8Array, value: Uint8Array, expireAt: number): void;
  /** `suffix` was appended to the existing value of `key`. */
  append(key: Uint8Array, suffix: Uint8Array): void;
  /** MSET: the pairs were set, without expiry. */
  setMany(pairs: readonly Uint8Array[]): void;
  delete(key: Uint8Array): void;
  flush(): void;
}

export interface KvStats {
  commands: number;
  hits: number;
  misses: number;
  expired: number;
  oom: number;
}

export interface KvEntry {
  key: Buffer;
  value: Buffer;
  /** Absolute Unix ms, 0 for none. */
  expireAt: number;
}

/** Where an entry lies in guest RAM, for tests and diagnostics. */
export interface KvEntryLocation extends KvEntry {
  gpa: number;
  blockBytes: number;
}

export interface KvCheckReport {
  keys: number;
  expires: number;
  heapUsed: number;
  freeBlocks: number;
  freeBytes: number;
  heapTop: number;
  longestChain: number;
}

const MAX_REGION_BYTES = 2 ** 35; // entry references are u32 counts of 8 bytes
/** Small entries are assembled here and written with one guest write. */
const SCRATCH_BYTES = 512;

export class KvStore {
  private readonly heap: Heap;
  private readonly scratch = Buffer.alloc(SCRATCH_BYTES);
  /** Where changes are logged (the guest's append-only file), if anywhere. */
  journal: KvJournal | undefined = undefined;

  private constructor(
    private readonly mem: GuestRam,
    readonly layout: Readonly<StoreLayout>,
  ) {
    this.heap = new Heap(mem, layout);
  }

  /** Lays out an empty store in guest RAM (the domain must be running: these are guest writes). */
  static format(domain: GuestDomain, options: KvFormatOptions = {}): KvStore {
    const ramBytes = domain.ram.length;
    const base = options.base ?? 0;
    const bad = (detail: string): never => {
      throw new GuestError(GuestErrorCodes.STORE_BAD_OPTIONS, `cannot format a key-value store: ${detail}`);
    };
    if (!Number.isInteger(base) || base < 0 || base % PAGE_SIZE !== 0 || base >= ramBytes) bad(`base ${base} is not a page-aligned address inside RAM`);
    const regionBytes = options.bytes ?? ramBytes - base;
    if (!Number.isInteger(regionBytes) || regionBytes <= 0 || base + regionBytes > ramBytes || regionBytes > MAX_REGION_BYTES) {
      bad(`region of ${regionBytes} bytes at ${base} does not fit RAM of ${ramBytes} bytes`);
    }
    const maxKeys = options.maxKeys ?? Math.max(16, Math.floor(regionBytes / 128));
    if (!Number.isInteger(maxKeys) || maxKeys < 1 || maxKeys > 0xffffffff) bad(`maxKeys ${maxKeys} is not in 1..2^32-1`);
    const buckets = options.buckets ?? 2 ** Math.ceil(Math.log2(Math.max(1, Math.ceil(maxKeys / 2))));
    if (!Number.isInteger(buckets) || buckets < 1 || buckets > 2 ** 31 || (buckets & (buckets - 1)) !== 0) bad(`buckets ${buckets} is not a power of two up to 2^31`);
    const tableOff = SUPERBLOCK_BYTES;
    const slotsOff = alignPage(tableOff + buckets * 4);
    const heapOff = alignPage(slotsOff + maxKeys * 4);
    const heapEnd = Math.floor(regionBytes / 8) * 8;
    if (heapEnd - heapOff < PAGE_SIZE) {
      bad(`region of ${regionBytes} bytes leaves less than a page of heap after the table (${buckets} buckets) and key slots (${maxKeys})`);
    }
    const hashSeed = options.hashSeed ?? randomBytes(4).readUInt32LE(0);
    if (!Number.isInteger(hashSeed) || hashSeed < 0 || hashSeed > 0xffffffff) bad(`hashSeed ${hashSeed} is not a u32`);
    const layout: StoreLayout = { regionBytes, buckets, maxKeys, tableOff, slotsOff, heapOff, heapEnd, hashSeed, classCount: classCountFor(heapEnd - heapOff) };

    const mem = new GuestRam(domain, base);
    // The table must read as empty whatever RAM held before.
    const zeros = Buffer.alloc(Math.min(buckets * 4, 64 * 1024));
    for (let at = 0; at < buckets * 4; at += zeros.length) mem.write(tableOff + at, zeros.subarray(0, Math.min(zeros.length, buckets * 4 - at)));
    const sb = Buffer.alloc(SUPERBLOCK_BYTES);
    sb.writeUInt32LE(STORE_VERSION, SB_VERSION);
    sb.writeUInt32LE(SUPERBLOCK_BYTES, SB_SUPERBLOCK_BYTES);
    writeU64(sb, SB_REGION_BYTES, regionBytes);
    sb.writeUInt32LE(buckets, SB_BUCKETS);
    sb.writeUInt32LE(maxKeys, SB_MAX_KEYS);
    writeU64(sb, SB_TABLE_OFF, tableOff);
    writeU64(sb, SB_SLOTS_OFF, slotsOff);
    writeU64(sb, SB_HEAP_OFF, heapOff);
    writeU64(sb, SB_HEAP_END, heapEnd);
    sb.writeUInt32LE(hashSeed, SB_HASH_SEED);
    sb.writeUInt32LE(layout.classCount, SB_CLASS_COUNT);
    writeU64(sb, SB_HEAP_TOP, heapOff);
    // The magic goes in last, with the rest in one write: RAM never holds a
    // valid-looking superblock over a half-made store.
    STORE_MAGIC.copy(sb, SB_MAGIC);
    sb.writeUInt32LE(fnv1a(sb, 0, SB_CHECKSUM), SB_CHECKSUM);
    mem.write(0, sb);
    return new KvStore(mem, layout);
  }

  /**
   * Opens the store already in guest RAM (a replica after failover). Checks
   * the superblock and the layout it describes; check() walks the rest.
   */
  static attach(domain: GuestDomain, options: KvAttachOptions = {}): KvStore {
    const base = options.base ?? 0;
    const ram = domain.ram;
    const where = `guest-physical 0x${base.toString(16)}`;
    if (!Number.isInteger(base) || base < 0 || base % PAGE_SIZE !== 0 || base + SUPERBLOCK_BYTES > ram.length) {
      throw new GuestError(GuestErrorCodes.STORE_NOT_FOUND, `no key-value store at ${where}: not a page-aligned address inside RAM`);
    }
    const sb = ram.subarray(base, base + SUPERBLOCK_BYTES);
    if (!sb.subarray(SB_MAGIC, SB_MAGIC + STORE_MAGIC.length).equals(STORE_MAGIC)) {
      throw new GuestError(GuestErrorCodes.STORE_NOT_FOUND, `no key-value store at ${where}: bad magic`);
    }
    const version = sb.readUInt32LE(SB_VERSION);
    if (version !== STORE_VERSION) {
      throw new GuestError(GuestErrorCodes.STORE_BAD_VERSION, `key-value store at ${where} has layout version ${version}, this build reads ${STORE_VERSION}`);
    }
    const corrupt = (detail: string): never => {
      throw new GuestError(GuestErrorCodes.STORE_CORRUPT, `key-value store at ${where} is corrupt: ${detail}`);
    };
    if (sb.readUInt32LE(SB_CHECKSUM) !== fnv1a(sb, 0, SB_CHECKSUM)) corrupt('superblock checksum mismatch');
    const layout: StoreLayout = {
      regionBytes: readU64(sb, SB_REGION_BYTES),
      buckets: sb.readUInt32LE(SB_BUCKETS),
      maxKeys: sb.readUInt32LE(SB_MAX_KEYS),
      tableOff: readU64(sb, SB_TABLE_OFF),
      slotsOff: readU64(sb, SB_SLOTS_OFF),
      heapOff: readU64(sb, SB_HEAP_OFF),
      heapEnd: readU64(sb, SB_HEAP_END),
      hashSeed: sb.readUInt32LE(SB_HASH_SEED),
      classCount: sb.readUInt32LE(SB_CLASS_COUNT),
    };
    const l = layout;
    if (sb.readUInt32LE(SB_SUPERBLOCK_BYTES) !== SUPERBLOCK_BYTES) corrupt('superblock size');
    if (l.regionBytes > ram.length - base || l.regionBytes > MAX_REGION_BYTES) corrupt(`region of ${l.regionBytes} bytes does not fit RAM`);
    if (l.buckets < 1 || (l.buckets & (l.buckets - 1)) !== 0) corrupt(`bucket count ${l.buckets} is not a power of two`);
    if (l.maxKeys < 1) corrupt('maxKeys is 0');
    if (l.tableOff !== SUPERBLOCK_BYTES || l.slotsOff < l.tableOff + l.buckets * 4 || l.heapOff < l.slotsOff + l.maxKeys * 4) corrupt('overlapping table, key slots and heap');
    if (l.heapEnd > l.regionBytes || l.heapOff >= l.heapEnd || l.heapOff % 8 !== 0 || l.heapEnd % 8 !== 0) corrupt('heap bounds');
    if (l.classCount !== classCountFor(l.heapEnd - l.heapOff)) corrupt(`size class count ${l.classCount}`);
    const keys = readU64(sb, SB_KEY_COUNT);
    const top = readU64(sb, SB_HEAP_TOP);
    if (keys > l.maxKeys) corrupt(`key count ${keys} above maxKeys ${l.maxKeys}`);
    if (readU64(sb, SB_EXPIRES_COUNT) > keys) corrupt('more keys with a TTL than keys');
    if (top < l.heapOff || top > l.heapEnd || top % 8 !== 0) corrupt(`heap top ${top} outside the heap`);
    if (readU64(sb, SB_HEAP_USED) > top - l.heapOff) corrupt('heap usage above the heap top');
    return new KvStore(new GuestRam(domain, base), layout);
  }

  get base(): number {
    return this.mem.base;
  }

  get keyCount(): number {
    return this.mem.u64(SB_KEY_COUNT);
  }

  get expiresCount(): number {
    return this.mem.u64(SB_EXPIRES_COUNT);
  }

  get heapBytes(): number {
    return this.heap.capacity;
  }

  get heapUsed(): number {
    return this.heap.used;
  }

  stats(): KvStats {
    const m = this.mem;
    return { commands: m.u64(SB_STAT_COMMANDS), hits: m.u64(SB_STAT_HITS), misses: m.u64(SB_STAT_MISSES), expired: m.u64(SB_STAT_EXPIRED), oom: m.u64(SB_STAT_OOM) };
  }

  /** Counts one executed command; returns the new total. */
  countCommand(): number {
    const n = this.mem.u64(SB_STAT_COMMANDS) + 1;
    this.mem.setU64(SB_STAT_COMMANDS, n);
    return n;
  }

  /** Counts a keyspace hit or miss, as Redis's keyspace_hits/misses. */
  noteLookup(hit: boolean): void {
    const at = hit ? SB_STAT_HITS : SB_STAT_MISSES;
    this.mem.setU64(at, this.mem.u64(at) + 1);
  }

  /** The live entry for `key` (0 if none); an expired one is deleted on the way. */
  find(key: Uint8Array, now: number): number {
    const hash = hashKey(this.layout.hashSeed, key);
    const ref = this.lookup(key, hash);
    if (ref !== 0 && this.isExpired(ref, now)) {
      this.expire(ref);
      return 0;
    }
    return ref;
  }

  valueLength(ref: number): number {
    return this.mem.u32(ref * 8 + E_VALUE_LEN);
  }

  /** The value as a view of guest RAM: copy it before the guest writes again. */
  value(ref: number): Buffer {
    const off = ref * 8;
    return this.mem.view(off + ENTRY_HEADER_BYTES + this.mem.u32(off + E_KEY_LEN), this.mem.u32(off + E_VALUE_LEN));
  }

  /** The key as a view of guest RAM. */
  key(ref: number): Buffer {
    const off = ref * 8;
    return this.mem.view(off + ENTRY_HEADER_BYTES, this.mem.u32(off + E_KEY_LEN));
  }

  /** Absolute Unix ms, 0 for none. */
  expireAt(ref: number): number {
    return this.mem.u64(ref * 8 + E_EXPIRE_AT);
  }

  /**
   * Sets `key` to `value` with `expireAt` (absolute ms, 0 for none, KEEP_TTL
   * to keep the current one). Rewrites in place when the entry's block has
   * room, so a small update dirties only the bytes it changes.
   */
  set(key: Uint8Array, value: Uint8Array, expireAt: number, now: number): void {
    const ttl = this.setEntry(key, value, expireAt, now);
    this.journal?.set(key, value, ttl);
  }

  /** set() without the journal; returns the expiry the key ends up with. */
  private setEntry(key: Uint8Array, value: Uint8Array, expireAt: number, now: number): number {
    const hash = hashKey(this.layout.hashSeed, key);
    let ref = this.lookup(key, hash);
    if (ref !== 0 && this.isExpired(ref, now)) {
      this.expire(ref);
      ref = 0;
    }
    const need = ENTRY_HEADER_BYTES + key.length + value.length;
    if (ref === 0) {
      const ttl = expireAt === KEEP_TTL ? 0 : expireAt;
      this.insert(key, value, ttl, hash, this.allocNew(need));
      return ttl;
    }
    const ttl = expireAt === KEEP_TTL ? this.expireAt(ref) : expireAt;
    const size = this.heap.blockBytes(ref);
    // In place unless the value shrank so much that the block would be mostly slack.
    if (need <= size && (need * 2 > size || size <= 64)) {
      this.rewriteValue(ref, value, ttl);
      return ttl;
    }
    const fresh = this.heap.alloc(need);
    if (fresh === 0) {
      if (need > size) this.outOfMemory(`no block for an entry of ${need} bytes`);
      this.rewriteValue(ref, value, ttl);
      return ttl;
    }
    this.replace(ref, fresh, hash, key, value, undefined, ttl);
    return ttl;
  }

  /** MSET: all pairs or none (on StoreFullError nothing changed); clears their TTLs. */
  setMany(pairs: readonly Uint8Array[], now: number): void {
    const n = pairs.length / 2;
    if (this.keyCount + n > this.layout.maxKeys) {
      // Only near the cap is it worth knowing exactly how many keys are new.
      const fresh = new Set<string>();
      for (let i = 0; i < pairs.length; i += 2) {
        if (this.lookup(pairs[i], hashKey(this.layout.hashSeed, pairs[i])) === 0) fresh.add(Buffer.from(pairs[i]).toString('latin1'));
      }
      if (this.keyCount + fresh.size > this.layout.maxKeys) this.outOfMemory(`key slots full (${this.layout.maxKeys} keys)`);
    }
    const blocks: number[] = [];
    for (let i = 0; i < pairs.length; i += 2) {
      const ref = this.heap.alloc(ENTRY_HEADER_BYTES + pairs[i].length + pairs[i + 1].length);
      if (ref === 0) {
        for (const b of blocks) this.heap.free(b);
        this.outOfMemory(`no room for ${n} entries`);
      }
      blocks.push(ref);
    }
    for (let i = 0; i < pairs.length; i += 2) {
      const key = pairs[i];
      const hash = hashKey(this.layout.hashSeed, key);
      const old = this.lookup(key, hash);
      if (old !== 0 && this.isExpired(old, now)) this.noteExpired(1);
      if (old === 0) this.insert(key, pairs[i + 1], 0, hash, blocks[i / 2]);
      else this.replace(old, blocks[i / 2], hash, key, pairs[i + 1], undefined, 0);
    }
    this.journal?.setMany(pairs);
  }

  /** APPEND: the value's new length. Keeps the TTL, as Redis does. */
  append(key: Uint8Array, suffix: Uint8Array, now: number): number {
    const ref = this.find(key, now);
    if (ref === 0) {
      this.set(key, suffix, 0, now);
      return suffix.length;
    }
    const off = ref * 8;
    const keyLen = this.mem.u32(off + E_KEY_LEN);
    const oldLen = this.mem.u32(off + E_VALUE_LEN);
    const newLen = oldLen + suffix.length;
    const need = ENTRY_HEADER_BYTES + keyLen + newLen;
    if (need <= this.heap.blockBytes(ref)) {
      this.mem.write(off + ENTRY_HEADER_BYTES + keyLen + oldLen, suffix);
      this.mem.setU32(off + E_VALUE_LEN, newLen);
    } else {
      const fresh = this.heap.alloc(need);
      if (fresh === 0) this.outOfMemory(`no block for an entry of ${need} bytes`);
      this.replace(ref, fresh, this.mem.u32(off + E_HASH), this.key(ref), this.value(ref), suffix, this.expireAt(ref));
    }
    this.journal?.append(key, suffix);
    return newLen;
  }

  /** DEL of one key: whether a live key was deleted. */
  delete(key: Uint8Array, now: number): boolean {
    const ref = this.find(key, now);
    if (ref === 0) return false;
    this.remove(ref);
    this.journal?.delete(key);
    return true;
  }

  /**
   * Visits every live entry in slot order. `key` and `value` are views of
   * guest RAM, valid during the call only; `visit` must not change the store.
   */
  forEach(now: number, visit: (key: Buffer, value: Buffer, expireAt: number) => void): void {
    const count = this.keyCount;
    for (let i = 0; i < count; i++) {
      const ref = this.slot(i);
      if (!this.isExpired(ref, now)) visit(this.key(ref), this.value(ref), this.expireAt(ref));
    }
  }

  /** Copies of the live keys `filter` accepts (it gets views of RAM), in slot order. */
  keys(filter: (key: Buffer) => boolean, now: number): Buffer[] {
    const out: Buffer[] = [];
    const count = this.keyCount;
    for (let i = 0; i < count; i++) {
      const ref = this.slot(i);
      if (this.isExpired(ref, now)) continue;
      const k = this.key(ref);
      if (filter(k)) out.push(Buffer.from(k));
    }
    return out;
  }

  /**
   * A live key drawn uniformly from the key slots with `random` (in [0, 1)),
   * or null when there is none. Expired keys drawn on the way are deleted.
   */
  randomKey(random: () => number, now: number): Buffer | null {
    let count = this.keyCount;
    while (count > 0) {
      const ref = this.slot(Math.min(count - 1, Math.floor(random() * count)));
      if (!this.isExpired(ref, now)) return Buffer.from(this.key(ref));
      this.expire(ref);
      count--;
    }
    return null;
  }

  /**
   * The active expiry sweep: looks at up to `maxChecks` key slots from where
   * the last sweep stopped (the cursor is in RAM, so a replica carries on
   * where the primary was) and deletes the expired ones. Returns how many.
   */
  sweepExpired(now: number, maxChecks: number): number {
    if (this.expiresCount === 0) return 0;
    const start = this.mem.u64(SB_SWEEP_CURSOR);
    let cursor = start;
    let expired = 0;
    let count = this.keyCount;
    for (let checks = 0; checks < maxChecks && count > 0; checks++) {
      if (cursor >= count) cursor = 0;
      const ref = this.slot(cursor);
      if (this.isExpired(ref, now)) {
        // The last slot moves into this one, so the cursor stays to look at it next.
        this.remove(ref);
        expired++;
        count--;
        if (this.expiresCount === 0) break;
      } else {
        cursor++;
      }
    }
    if (cursor !== start) this.mem.setU64(SB_SWEEP_CURSOR, cursor);
    if (expired > 0) this.noteExpired(expired);
    return expired;
  }

  /** FLUSHALL: O(keys) writes, touching only the buckets in use. Counters are kept. */
  flush(): void {
    const count = this.keyCount;
    for (let i = 0; i < count; i++) {
      const bucketOff = this.bucketOff(this.mem.u32(this.slot(i) * 8 + E_HASH));
      if (this.mem.u32(bucketOff) !== 0) this.mem.setU32(bucketOff, 0);
    }
    this.mem.setU64(SB_KEY_COUNT, 0);
    this.mem.setU64(SB_EXPIRES_COUNT, 0);
    this.mem.setU64(SB_SWEEP_CURSOR, 0);
    this.heap.reset();
    this.journal?.flush();
  }

  /** Read-only lookup (no lazy expiry, no write): safe while the domain is paused. */
  peek(key: Uint8Array): KvEntryLocation | undefined {
    const ref = this.lookup(key, hashKey(this.layout.hashSeed, key));
    if (ref === 0) return undefined;
    return { ...this.copyEntry(ref), gpa: this.mem.base + ref * 8, blockBytes: this.heap.blockBytes(ref) };
  }

  /** Copies of every entry (expired ones included), in slot order. */
  *entries(): Generator<KvEntry> {
    const count = this.keyCount;
    for (let i = 0; i < count; i++) yield this.copyEntry(this.slot(i));
  }

  /**
   * Walks the whole store and verifies every invariant: chains, hashes, key
   * slots, counts, free lists, and that every heap byte below the top is in
   * exactly one allocated or free block. Throws STORE_CORRUPT on the first
   * inconsistency.
   */
  check(): KvCheckReport {
    const l = this.layout;
    const m = this.mem;
    const corrupt = (detail: string, cause?: unknown): never => {
      throw new GuestError(GuestErrorCodes.STORE_CORRUPT, `key-value store at guest-physical 0x${m.base.toString(16)} is corrupt: ${detail}`, { cause });
    };
    const keys = this.keyCount;
    let seen = 0;
    let expires = 0;
    let used = 0;
    let longestChain = 0;
    for (let b = 0; b < l.buckets; b++) {
      let ref = m.u32(l.tableOff + b * 4);
      let chain = 0;
      while (ref !== 0) {
        const off = ref * 8;
        if (!this.heap.isBlockRef(ref)) corrupt(`bucket ${b}: reference ${ref} outside the heap`);
        const tag = m.u32(off + E_TAG);
        if ((tag & TAG_MASK) >>> 0 !== TAG_ENTRY) corrupt(`bucket ${b}: block at offset ${off} is not an entry (tag 0x${tag.toString(16)})`);
        const size = this.heap.blockBytes(ref);
        const keyLen = m.u32(off + E_KEY_LEN);
        const valueLen = m.u32(off + E_VALUE_LEN);
        if (off + size > this.heap.top || ENTRY_HEADER_BYTES + keyLen + valueLen > size) corrupt(`entry at offset ${off} overruns its block`);
        const hash = m.u32(off + E_HASH);
        if (hash !== hashKey(l.hashSeed, m.ram, m.base + off + ENTRY_HEADER_BYTES, m.base + off + ENTRY_HEADER_BYTES + keyLen)) corrupt(`entry at offset ${off}: stored hash does not match its key`);
        if ((hash & (l.buckets - 1)) !== b) corrupt(`entry at offset ${off} is in bucket ${b}, its hash says ${hash & (l.buckets - 1)}`);
        const slot = m.u32(off + E_SLOT);
        if (slot >= keys || this.slot(slot) !== ref) corrupt(`entry at offset ${off}: key slot ${slot} does not point back`);
        if (this.expireAt(ref) !== 0) expires++;
        used += size;
        seen++;
        chain++;
        if (seen > keys) corrupt(`more entries in the table than the key count ${keys} (or a cycle)`);
        ref = m.u32(off + E_NEXT);
      }
      longestChain = Math.max(longestChain, chain);
    }
    if (seen !== keys) corrupt(`${seen} entries in the table, key count says ${keys}`);
    if (expires !== this.expiresCount) corrupt(`${expires} entries with a TTL, counter says ${this.expiresCount}`);
    if (used !== this.heap.used) corrupt(`entries use ${used} heap bytes, counter says ${this.heap.used}`);
    let free = { blocks: 0, bytes: 0 };
    try {
      free = this.heap.checkFreeLists();
    } catch (err) {
      corrupt((err as Error).message, err);
    }
    const top = this.heap.top;
    if (used + free.bytes !== top - l.heapOff) corrupt(`allocated (${used}) and free (${free.bytes}) bytes do not add up to the heap in use (${top - l.heapOff})`);
    return { keys, expires, heapUsed: used, freeBlocks: free.blocks, freeBytes: free.bytes, heapTop: top, longestChain };
  }

  // ---------------------------------------------------------------------------

  private slot(i: number): number {
    return this.mem.u32(this.layout.slotsOff + i * 4);
  }

  private bucketOff(hash: number): number {
    return this.layout.tableOff + (hash & (this.layout.buckets - 1)) * 4;
  }

  private lookup(key: Uint8Array, hash: number): number {
    const m = this.mem;
    let ref = m.u32(this.bucketOff(hash));
    while (ref !== 0) {
      const off = ref * 8;
      if (m.u32(off + E_HASH) === hash && m.u32(off + E_KEY_LEN) === key.length && m.equals(off + ENTRY_HEADER_BYTES, key)) return ref;
      ref = m.u32(off + E_NEXT);
    }
    return 0;
  }

  private isExpired(ref: number, now: number): boolean {
    const at = this.expireAt(ref);
    // As Redis: a key is gone once now is past its expiry time.
    return at !== 0 && now > at;
  }

  private expire(ref: number): void {
    this.remove(ref);
    this.noteExpired(1);
  }

  private noteExpired(n: number): void {
    this.mem.setU64(SB_STAT_EXPIRED, this.mem.u64(SB_STAT_EXPIRED) + n);
  }

  private outOfMemory(detail: string): never {
    this.mem.setU64(SB_STAT_OOM, this.mem.u64(SB_STAT_OOM) + 1);
    throw new StoreFullError(detail);
  }

  /** A block for a new key, or StoreFullError (nothing written). */
  private allocNew(need: number): number {
    if (this.keyCount >= this.layout.maxKeys) this.outOfMemory(`key slots full (${this.layout.maxKeys} keys)`);
    const ref = this.heap.alloc(need);
    if (ref === 0) this.outOfMemory(`no block for an entry of ${need} bytes`);
    return ref;
  }

  /** Writes an entry (header after the tag, key, value, extra) into the block at `ref`. */
  private writeEntry(ref: number, next: number, hash: number, slot: number, key: Uint8Array, value: Uint8Array, extra: Uint8Array | undefined, expireAt: number): void {
    const extraLen = extra === undefined ? 0 : extra.length;
    const s = this.scratch;
    s.writeUInt32LE(next, 0);
    s.writeUInt32LE(hash, E_HASH - 4);
    s.writeUInt32LE(slot, E_SLOT - 4);
    s.writeUInt32LE(key.length, E_KEY_LEN - 4);
    s.writeUInt32LE(value.length + extraLen, E_VALUE_LEN - 4);
    s.writeUInt32LE(expireAt % 2 ** 32, E_EXPIRE_AT - 4);
    s.writeUInt32LE(Math.floor(expireAt / 2 ** 32), E_EXPIRE_AT);
    const head = ENTRY_HEADER_BYTES - 4;
    const off = ref * 8;
    if (head + key.length + value.length + extraLen <= SCRATCH_BYTES) {
      // Small entry: one guest write for all of it.
      s.set(key, head);
      s.set(value, head + key.length);
      if (extra !== undefined) s.set(extra, head + key.length + value.length);
      this.mem.write(off + 4, s.subarray(0, head + key.length + value.length + extraLen));
      return;
    }
    this.mem.write(off + 4, s.subarray(0, head));
    this.mem.write(off + ENTRY_HEADER_BYTES, key);
    this.mem.write(off + ENTRY_HEADER_BYTES + key.length, value);
    if (extra !== undefined) this.mem.write(off + ENTRY_HEADER_BYTES + key.length + value.length, extra);
  }

  private insert(key: Uint8Array, value: Uint8Array, expireAt: number, hash: number, ref: number): void {
    const bucketOff = this.bucketOff(hash);
    const slot = this.keyCount;
    this.writeEntry(ref, this.mem.u32(bucketOff), hash, slot, key, value, undefined, expireAt);
    this.mem.setU32(bucketOff, ref);
    this.mem.setU32(this.layout.slotsOff + slot * 4, ref);
    this.mem.setU64(SB_KEY_COUNT, slot + 1);
    if (expireAt !== 0) this.mem.setU64(SB_EXPIRES_COUNT, this.expiresCount + 1);
  }

  /** Moves the entry at `old` into the block `fresh` with a new value, in the same chain position and key slot. */
  private replace(old: number, fresh: number, hash: number, key: Uint8Array, value: Uint8Array, extra: Uint8Array | undefined, expireAt: number): void {
    const off = old * 8;
    const slot = this.mem.u32(off + E_SLOT);
    const hadTtl = this.expireAt(old) !== 0;
    this.writeEntry(fresh, this.mem.u32(off + E_NEXT), hash, slot, key, value, extra, expireAt);
    this.relink(old, fresh, hash);
    this.mem.setU32(this.layout.slotsOff + slot * 4, fresh);
    this.adjustExpires(hadTtl, expireAt !== 0);
    this.heap.free(old);
  }

  private rewriteValue(ref: number, value: Uint8Array, expireAt: number): void {
    const off = ref * 8;
    const keyLen = this.mem.u32(off + E_KEY_LEN);
    this.mem.write(off + ENTRY_HEADER_BYTES + keyLen, value);
    if (this.mem.u32(off + E_VALUE_LEN) !== value.length) this.mem.setU32(off + E_VALUE_LEN, value.length);
    const old = this.expireAt(ref);
    if (old !== expireAt) {
      this.mem.setU64(off + E_EXPIRE_AT, expireAt);
      this.adjustExpires(old !== 0, expireAt !== 0);
    }
  }

  private adjustExpires(had: boolean, has: boolean): void {
    if (had !== has) this.mem.setU64(SB_EXPIRES_COUNT, this.expiresCount + (has ? 1 : -1));
  }

  /** Makes whatever points at `old` in its chain (the bucket or the previous entry) point at `to`. */
  private relink(old: number, to: number, hash: number): void {
    const bucketOff = this.bucketOff(hash);
    let ref = this.mem.u32(bucketOff);
    if (ref === old) {
      this.mem.setU32(bucketOff, to);
      return;
    }
    for (let steps = 0; ref !== 0 && steps <= this.layout.maxKeys; steps++) {
      const next = this.mem.u32(ref * 8 + E_NEXT);
      if (next === old) {
        this.mem.setU32(ref * 8 + E_NEXT, to);
        return;
      }
      ref = next;
    }
    throw new GuestError(GuestErrorCodes.STORE_CORRUPT, `entry at offset ${old * 8} is not in its bucket chain`);
  }

  /** Unlinks and frees an entry; the last key slot moves into its slot. */
  private remove(ref: number): void {
    const off = ref * 8;
    this.relink(ref, this.mem.u32(off + E_NEXT), this.mem.u32(off + E_HASH));
    const slot = this.mem.u32(off + E_SLOT);
    const last = this.keyCount - 1;
    if (slot !== last) {
      const moved = this.slot(last);
      this.mem.setU32(this.layout.slotsOff + slot * 4, moved);
      this.mem.setU32(moved * 8 + E_SLOT, slot);
    }
    this.mem.setU64(SB_KEY_COUNT, last);
    this.adjustExpires(this.expireAt(ref) !== 0, false);
    this.heap.free(ref);
  }

  private copyEntry(ref: number): KvEntry {
    return { key: Buffer.from(this.key(ref)), value: Buffer.from(this.value(ref)), expireAt: this.expireAt(ref) };
  }
}
