/**
 * The key-value service's persistence: a Redis-style append-only file on the
 * guest's virtual disk. Every change to the dataset is appended as the RESP
 * command that redoes it (SET with an absolute PXAT, APPEND, DEL, MSET,
 * FLUSHALL), the format `redis-check-aof` reads. Because the disk is
 * mirrored with the epochs, a replica's file always matches its RAM at the
 * epoch it holds: replaying it rebuilds the same dataset.
 *
 * On-disk layout: block 0 is a header, the file's bytes start at block 1.
 *
 *   0  "TANDMAOF"   magic
 *   8  u32 version  1
 *  12  u32 flags    bit 0 STALE: a change could not be logged (disk full);
 *                   the file is a true history up to there but lags the dataset
 *  16  u64 bytes    length of the file
 *  24  u64 base     length after the last rewrite
 *  32  u64 rewrites
 *  40  u32 checksum FNV-1a of bytes 0..40
 *
 * The header is rewritten after each append, so a reader never sees a
 * length covering bytes not yet written. When the file fills the disk it is
 * rewritten from the dataset (as BGREWRITEAOF does, but in one step of guest
 * code, so no checkpoint sees it half done).
 */
import type { SimDisk } from '../domain/sim/disk.js';
import { GuestError, GuestErrorCodes } from './errors.js';
import type { KvJournal, KvStore } from './kv-store.js';
import { fnv1a, readU64, writeU64 } from './layout.js';
import { RespParser } from './resp.js';

const MAGIC = Buffer.from('TANDMAOF', 'latin1');
const VERSION = 1;
const H_FLAGS = 12;
const H_BYTES = 16;
const H_BASE = 24;
const H_REWRITES = 32;
const H_CHECKSUM = 40;
const HEADER_BYTES = 44;
const FLAG_STALE = 1;
/** The file starts one block in: the header block changes on every append, the data blocks only at the tail. */
export const AOF_DATA_OFFSET = 4096;
/** A rewrite is written in pieces of this size. */
const REWRITE_CHUNK = 64 * 1024;

export interface AofInfo {
  /** Bytes in the file. */
  currentSize: number;
  /** Bytes right after the last rewrite. */
  baseSize: number;
  rewrites: number;
  /** False once a change could not be logged: the file lags the dataset until a rewrite succeeds. */
  ok: boolean;
  /** Bytes the disk can hold. */
  capacity: number;
}

export interface AofOptions {
  /** The guest's clock in Unix ms: keys already expired are left out of a rewrite. */
  clock?: () => number;
}

export class AppendOnlyFile implements KvJournal {
  private store: KvStore | undefined = undefined;
  private readonly header = Buffer.alloc(HEADER_BYTES);

  private constructor(
    private readonly disk: SimDisk,
    private readonly options: AofOptions,
  ) {}

  /** An empty file on `disk` (a guest write: the domain must be running). */
  static format(disk: SimDisk, options: AofOptions = {}): AppendOnlyFile {
    if (disk.capacityBytes <= AOF_DATA_OFFSET) throw new GuestError(GuestErrorCodes.AOF_FULL, `a ${disk.capacityBytes}-byte disk has no room for an append-only file`);
    const aof = new AppendOnlyFile(disk, options);
    MAGIC.copy(aof.header, 0);
    aof.header.writeUInt32LE(VERSION, 8);
    aof.writeHeader();
    return aof;
  }

  /** The file already on `disk` (a replica after failover); checks the header. */
  static open(disk: SimDisk, options: AofOptions = {}): AppendOnlyFile {
    const h = disk.read(0, HEADER_BYTES);
    if (!h.subarray(0, MAGIC.length).equals(MAGIC)) throw new GuestError(GuestErrorCodes.AOF_NOT_FOUND, 'no append-only file on the disk: bad magic');
    const corrupt = (detail: string): never => {
      throw new GuestError(GuestErrorCodes.AOF_CORRUPT, `append-only file header is corrupt: ${detail}`);
    };
    if (h.readUInt32LE(8) !== VERSION) corrupt(`version ${h.readUInt32LE(8)}, this build reads ${VERSION}`);
    if (h.readUInt32LE(H_CHECKSUM) !== fnv1a(h, 0, H_CHECKSUM)) corrupt('checksum mismatch');
    if ((h.readUInt32LE(H_FLAGS) & ~FLAG_STALE) !== 0) corrupt(`unknown flags 0x${h.readUInt32LE(H_FLAGS).toString(16)}`);
    const bytes = readU64(h, H_BYTES);
    if (bytes > disk.capacityBytes - AOF_DATA_OFFSET) corrupt(`length ${bytes} beyond the disk`);
    if (readU64(h, H_BASE) > bytes) corrupt('base size above the file size');
    const aof = new AppendOnlyFile(disk, options);
    h.copy(aof.header);
    return aof;
  }

  /** Logs `store`'s changes from now on. */
  attach(store: KvStore): void {
    this.store = store;
    store.journal = this;
  }

  info(): AofInfo {
    const h = this.header;
    return {
      currentSize: readU64(h, H_BYTES),
      baseSize: readU64(h, H_BASE),
      rewrites: readU64(h, H_REWRITES),
      ok: (h.readUInt32LE(H_FLAGS) & FLAG_STALE) === 0,
      capacity: this.disk.capacityBytes - AOF_DATA_OFFSET,
    };
  }

  /** A copy of the file's bytes. */
  contents(): Buffer {
    return Buffer.from(this.disk.read(AOF_DATA_OFFSET, readU64(this.header, H_BYTES)));
  }

  set(key: Uint8Array, value: Uint8Array, expireAt: number): void {
    this.log(expireAt === 0 ? [SET, key, value] : [SET, key, value, PXAT, Buffer.from(String(expireAt), 'latin1')]);
  }

  append(key: Uint8Array, suffix: Uint8Array): void {
    this.log([APPEND, key, suffix]);
  }

  setMany(pairs: readonly Uint8Array[]): void {
    this.log([MSET, ...pairs]);
  }

  delete(key: Uint8Array): void {
    this.log([DEL, key]);
  }

  flush(): void {
    this.log([FLUSHALL]);
  }

  /**
   * Replaces the file with the commands that build the current dataset.
   * Throws AOF_FULL (file unchanged) when even that does not fit the disk.
   */
  rewrite(): void {
    const store = this.store;
    if (store === undefined) throw new Error('append-only file not attached to a store');
    const now = (this.options.clock ?? Date.now)();
    let total = 0;
    store.forEach(now, (k, v, at) => (total += commandBytes(at === 0 ? [SET, k, v] : [SET, k, v, PXAT, Buffer.from(String(at), 'latin1')])));
    const room = this.disk.capacityBytes - AOF_DATA_OFFSET;
    if (total > room) {
      throw new GuestError(GuestErrorCodes.AOF_FULL, `the dataset needs ${total} bytes of append-only file, the disk holds ${room}`);
    }
    let at = AOF_DATA_OFFSET;
    let pending: Buffer[] = [];
    let pendingBytes = 0;
    const out = (): void => {
      this.disk.write(at, pending.length === 1 ? pending[0] : Buffer.concat(pending, pendingBytes));
      at += pendingBytes;
      pending = [];
      pendingBytes = 0;
    };
    store.forEach(now, (k, v, exp) => {
      const cmd = encodeCommand(exp === 0 ? [SET, k, v] : [SET, k, v, PXAT, Buffer.from(String(exp), 'latin1')]);
      pending.push(cmd);
      pendingBytes += cmd.length;
      if (pendingBytes >= REWRITE_CHUNK) out();
    });
    if (pendingBytes > 0) out();
    const h = this.header;
    writeU64(h, H_BYTES, total);
    writeU64(h, H_BASE, total);
    writeU64(h, H_REWRITES, readU64(h, H_REWRITES) + 1);
    h.writeUInt32LE(h.readUInt32LE(H_FLAGS) & ~FLAG_STALE, H_FLAGS);
    this.writeHeader();
  }

  private log(args: readonly Uint8Array[]): void {
    const h = this.header;
    // Once stale, appending would make a file that skips a change: only a rewrite brings it back.
    if ((h.readUInt32LE(H_FLAGS) & FLAG_STALE) !== 0) return;
    const cmd = encodeCommand(args);
    const size = readU64(h, H_BYTES);
    if (AOF_DATA_OFFSET + size + cmd.length <= this.disk.capacityBytes) {
      this.disk.write(AOF_DATA_OFFSET + size, cmd);
      writeU64(h, H_BYTES, size + cmd.length);
      this.writeHeader();
      return;
    }
    // Full: the change is already in the dataset, so a rewrite of the dataset includes it.
    try {
      this.rewrite();
    } catch (err) {
      if (!(err instanceof GuestError) || err.code !== GuestErrorCodes.AOF_FULL) throw err;
      h.writeUInt32LE(h.readUInt32LE(H_FLAGS) | FLAG_STALE, H_FLAGS);
      this.writeHeader();
    }
  }

  private writeHeader(): void {
    const h = this.header;
    h.writeUInt32LE(fnv1a(h, 0, H_CHECKSUM), H_CHECKSUM);
    this.disk.write(0, h);
  }
}

const SET = Buffer.from('SET');
const PXAT = Buffer.from('PXAT');
const APPEND = Buffer.from('APPEND');
const MSET = Buffer.from('MSET');
const DEL = Buffer.from('DEL');
const FLUSHALL = Buffer.from('FLUSHALL');

function commandBytes(args: readonly Uint8Array[]): number {
  let n = 3 + String(args.length).length;
  for (const a of args) n += 5 + String(a.length).length + a.length;
  return n;
}

/** `*<n>\r\n` then `$<len>\r\n<bytes>\r\n` per argument: a RESP array of bulk strings. */
export function encodeCommand(args: readonly Uint8Array[]): Buffer {
  const out = Buffer.allocUnsafe(commandBytes(args));
  let at = out.write(`*${args.length}\r\n`, 0, 'latin1');
  for (const a of args) {
    at += out.write(`$${a.length}\r\n`, at, 'latin1');
    out.set(a, at);
    at += a.length;
    out[at++] = 0x0d;
    out[at++] = 0x0a;
  }
  return out;
}

export interface ReplayedEntry {
  value: Buffer;
  /** Absolute Unix ms, 0 for none. */
  expireAt: number;
}

/**
 * Replays an append-only file into a plain map (key as latin1), as a
 * restart would: the independent check that a replica's disk matches its
 * RAM. Keys already expired at `now` (by the store's rule: now past the
 * expiry) are left out.
 */
export function replayAof(file: Buffer, now: number): Map<string, ReplayedEntry> {
  const parser = new RespParser();
  const { commands, error } = parser.feed(file);
  if (error !== undefined) throw new GuestError(GuestErrorCodes.AOF_CORRUPT, `append-only file: ${error.message} at byte ${error.offset}`, { cause: error });
  if (!parser.atBoundary) throw new GuestError(GuestErrorCodes.AOF_CORRUPT, 'append-only file ends inside a command');
  const data = new Map<string, ReplayedEntry>();
  commands.forEach((args, i) => {
    const bad = (): never => {
      throw new GuestError(GuestErrorCodes.AOF_CORRUPT, `append-only file command ${i + 1} (${args[0].toString('latin1', 0, 32)}) is not one this file holds`);
    };
    const name = args[0].toString('latin1').toUpperCase();
    const key = args.length > 1 ? args[1].toString('latin1') : '';
    switch (name) {
      case 'SET': {
        if (args.length !== 3 && !(args.length === 5 && args[3].toString('latin1').toUpperCase() === 'PXAT')) bad();
        const expireAt = args.length === 5 ? Number(args[4].toString('latin1')) : 0;
        if (!Number.isSafeInteger(expireAt) || expireAt < 0) bad();
        data.set(key, { value: args[2], expireAt });
        break;
      }
      case 'APPEND': {
        if (args.length !== 3) bad();
        const old = data.get(key);
        data.set(key, old === undefined ? { value: args[2], expireAt: 0 } : { value: Buffer.concat([old.value, args[2]]), expireAt: old.expireAt });
        break;
      }
      case 'MSET':
        if (args.length < 3 || args.length % 2 !== 1) bad();
        for (let k = 1; k < args.length; k += 2) data.set(args[k].toString('latin1'), { value: args[k + 1], expireAt: 0 });
        break;
      case 'DEL':
        if (args.length !== 2) bad();
        data.delete(key);
        break;
      case 'FLUSHALL':
        if (args.length !== 1) bad();
        data.clear();
        break;
      default:
        bad();
    }
  });
  for (const [k, e] of data) if (e.expireAt !== 0 && now > e.expireAt) data.delete(k);
  return data;
}
