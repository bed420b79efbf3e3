/**
 * The guest's append-only file: every change logged as the RESP command that
 * redoes it; the real redis-check-aof accepts the file; replaying it gives
 * back the dataset in RAM, through expiry, rewrites and a full disk.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { after, describe, test } from 'node:test';
import { DISK_BLOCK_SIZE } from '../../src/disk/record.js';
import { SimDisk } from '../../src/domain/sim/disk.js';
import { SimDomain } from '../../src/domain/sim/domain.js';
import { AOF_DATA_OFFSET, AppendOnlyFile, encodeCommand, replayAof } from '../../src/guest/aof.js';
import { KvCommands, type Session } from '../../src/guest/commands.js';
import { GuestError, GuestErrorCodes } from '../../src/guest/errors.js';
import { KvStore } from '../../src/guest/kv-store.js';
import { checkPersistence, resumeGuest } from '../../src/guest/machine.js';
import { tempDir } from '../helpers/cli.js';
import { uniform } from '../../src/util/xorshift.js';
import { REDIS_CHECK_AOF, T0_US, requireRedisTools } from './helpers.js';

const tmp = tempDir();
after(() => tmp.cleanup());

function guest(diskBytes = 256 * DISK_BLOCK_SIZE) {
  const domain = new SimDomain({ pages: 512 });
  const disk = new SimDisk({ capacityBytes: diskBytes, domain });
  const clock = { us: T0_US };
  const nowMs = (): number => Math.floor(clock.us / 1000);
  const store = KvStore.format(domain, { bytes: domain.usableRamBytes, hashSeed: 1 });
  const aof = AppendOnlyFile.format(disk, { clock: nowMs });
  aof.attach(store);
  const commands = new KvCommands({ store, clock: () => clock.us, random: uniform(3), persistence: aof });
  const session: Session = { quit: false };
  const run = (...args: string[]): string => commands.execute(args.map((a) => Buffer.from(a, 'latin1')), session).toString('latin1');
  return { domain, disk, store, aof, clock, nowMs, run };
}

let checks = 0;

/** redis-check-aof's verdict on the file's bytes. */
function redisCheck(file: Buffer): { ok: boolean; out: string } {
  const path = tmp.path(`check-${checks++}.aof`);
  writeFileSync(path, file);
  const r = spawnSync(REDIS_CHECK_AOF, [path], { encoding: 'utf8' });
  return { ok: r.status === 0, out: `${r.stdout}${r.stderr}` };
}

describe('append-only file', () => {
  test('every change is logged as the command that redoes it, with absolute expiry', () => {
    const g = guest();
    g.run('SET', 'a', '1');
    g.run('SET', 'b', 'x', 'PX', '5000');
    g.run('INCR', 'a');
    g.run('APPEND', 'b', 'yz');
    g.run('GET', 'a'); // reads are not logged
    g.run('SET', 'c', 'no', 'XX'); // a SET that changes nothing is not logged
    g.run('MSET', 'k1', 'v1', 'k2', 'v2');
    g.run('DEL', 'k1', 'missing');
    g.run('FLUSHALL');
    const at = String(g.nowMs() + 5000);
    const expected = Buffer.concat([
      encodeCommand(['SET', 'a', '1'].map((s) => Buffer.from(s))),
      encodeCommand(['SET', 'b', 'x', 'PXAT', at].map((s) => Buffer.from(s))),
      encodeCommand(['SET', 'a', '2'].map((s) => Buffer.from(s))),
      encodeCommand(['APPEND', 'b', 'yz'].map((s) => Buffer.from(s))),
      encodeCommand(['MSET', 'k1', 'v1', 'k2', 'v2'].map((s) => Buffer.from(s))),
      encodeCommand(['DEL', 'k1'].map((s) => Buffer.from(s))),
      encodeCommand(['FLUSHALL'].map((s) => Buffer.from(s))),
    ]);
    assert.equal(g.aof.contents().toString('latin1'), expected.toString('latin1'));
    assert.ok(g.disk.read(AOF_DATA_OFFSET, expected.length).equals(expected), 'the file starts one block into the disk');
  });

  test('a random workload: the real redis-check-aof accepts the file and it replays to the dataset in RAM', () => {
    requireRedisTools();
    const g = guest();
    const r = uniform(99);
    const key = (): string => `key:${Math.floor(r() * 60)}`;
    for (let i = 0; i < 3000; i++) {
      const p = r();
      if (p < 0.3) g.run('SET', key(), `v${i}`);
      else if (p < 0.4) g.run('SET', key(), `t${i}`, 'PX', String(1 + Math.floor(r() * 200)));
      else if (p < 0.45) g.run('SET', key(), `k${i}`, 'KEEPTTL');
      else if (p < 0.5) g.run('SET', key(), `n${i}`, 'NX');
      else if (p < 0.6) g.run('INCRBY', `ctr:${Math.floor(r() * 5)}`, String(Math.floor(r() * 100)));
      else if (p < 0.7) g.run('APPEND', key(), `+${i}`);
      else if (p < 0.8) g.run('MSET', key(), `m${i}`, key(), `M${i}`);
      else if (p < 0.9) g.run('DEL', key(), key());
      else if (p < 0.9005) g.run('FLUSHALL');
      if (i % 7 === 0) g.clock.us += Math.floor(r() * 20_000); // time passes: keys expire
    }
    const check = redisCheck(g.aof.contents());
    assert.ok(check.ok, check.out);
    assert.match(check.out, /is valid/);
    const res = checkPersistence(g.store, g.aof, g.nowMs());
    assert.ok(res.consistent, res.detail);
    assert.ok(res.keys > 10, `only ${res.keys} keys live`);
    // The check is not vacuous: a change the file never saw is found.
    g.store.journal = undefined;
    g.run('SET', 'unlogged', '1');
    const off = checkPersistence(g.store, g.aof, g.nowMs());
    assert.equal(off.consistent, false);
    assert.match(off.detail ?? '', /unlogged/);
  });

  test('a full disk rewrites the file from the dataset; the rewritten file is valid and consistent', () => {
    requireRedisTools();
    const g = guest(8 * DISK_BLOCK_SIZE); // 28 KiB of file
    for (let i = 0; i < 2000; i++) g.run('SET', `k${i % 40}`, `value-${i}`);
    const info = g.aof.info();
    assert.ok(info.rewrites > 0, JSON.stringify(info));
    assert.ok(info.ok);
    assert.ok(info.currentSize < info.capacity);
    assert.ok(redisCheck(g.aof.contents()).ok);
    const res = checkPersistence(g.store, g.aof, g.nowMs());
    assert.ok(res.consistent, res.detail);
    assert.equal(res.keys, 40);
    assert.match(g.run('INFO', 'persistence'), /aof_enabled:1\r\naof_last_write_status:ok\r\naof_rewrites:[1-9]/);
    assert.match(g.run('CONFIG', 'GET', 'appendonly'), /appendonly\r\n\$3\r\nyes/);
  });

  test('a dataset larger than the disk marks the file stale; BGREWRITEAOF brings it back once it fits', () => {
    const g = guest(2 * DISK_BLOCK_SIZE); // 4 KiB of file
    const big = 'x'.repeat(1000);
    for (let i = 0; i < 6; i++) g.run('SET', `big${i}`, big);
    assert.equal(g.aof.info().ok, false);
    assert.match(g.run('INFO', 'persistence'), /aof_last_write_status:err/);
    const stale = checkPersistence(g.store, g.aof, g.nowMs());
    assert.equal(stale.consistent, false);
    assert.match(g.run('BGREWRITEAOF'), /^-ERR the dataset needs \d+ bytes of append-only file, the disk holds 4096/);
    g.run('DEL', 'big0', 'big1', 'big2', 'big3');
    assert.equal(g.aof.info().ok, false, 'a stale file is not appended to');
    assert.equal(g.run('BGREWRITEAOF'), '+Background append only file rewriting started\r\n');
    assert.equal(g.aof.info().ok, true);
    const res = checkPersistence(g.store, g.aof, g.nowMs());
    assert.ok(res.consistent, res.detail);
    assert.equal(res.keys, 2);
  });

  test('open() finds the file a checkpoint left, and refuses a missing or damaged one', () => {
    const g = guest();
    g.run('SET', 'a', '1');
    const reopened = resumeGuest(g.domain, g.disk);
    assert.equal(reopened.aof?.info().currentSize, g.aof.info().currentSize);
    const blank = new SimDisk({ capacityBytes: 4 * DISK_BLOCK_SIZE, domain: g.domain });
    assert.throws(() => AppendOnlyFile.open(blank), (e: unknown) => e instanceof GuestError && e.code === GuestErrorCodes.AOF_NOT_FOUND);
    const damage = (at: number, value: number, re: RegExp): void => {
      const d = new SimDisk({ capacityBytes: 4 * DISK_BLOCK_SIZE, domain: g.domain });
      d.installBlocks(0, Buffer.from(g.disk.read(0, DISK_BLOCK_SIZE)));
      d.installBlocks(0, Buffer.from(d.read(0, DISK_BLOCK_SIZE)).fill(value, at, at + 1));
      assert.throws(() => AppendOnlyFile.open(d), (e: unknown) => e instanceof GuestError && e.code === GuestErrorCodes.AOF_CORRUPT && re.test(e.message));
    };
    damage(20, 0xff, /checksum/);
    damage(8, 2, /checksum|version/);
    // A length beyond a smaller disk, with a valid checksum: copied onto a 2-block disk.
    const huge = guest();
    for (let i = 0; i < 200; i++) huge.run('SET', `k${i}`, 'v'.repeat(40));
    const tiny = new SimDisk({ capacityBytes: 2 * DISK_BLOCK_SIZE, domain: g.domain });
    tiny.installBlocks(0, Buffer.from(huge.disk.read(0, DISK_BLOCK_SIZE)));
    assert.throws(() => AppendOnlyFile.open(tiny), (e: unknown) => e instanceof GuestError && /beyond the disk/.test(e.message));
  });

  test('replay refuses a damaged or foreign file', () => {
    const bad = (file: string, re: RegExp): void => {
      assert.throws(() => replayAof(Buffer.from(file, 'latin1'), 0), (e: unknown) => e instanceof GuestError && e.code === GuestErrorCodes.AOF_CORRUPT && re.test(e.message));
    };
    bad('*2\r\n$3\r\nDEL\r\n$1\r\n', /ends inside a command/);
    bad('*2\r\n$3\r\nDEL\r\n$x\r\n', /Protocol error/);
    bad('*1\r\n$4\r\nPING\r\n', /command 1 \(PING\)/);
    bad('*4\r\n$3\r\nSET\r\n$1\r\na\r\n$1\r\nb\r\n$2\r\nEX\r\n', /command 1 \(SET\)/);
    bad('*5\r\n$3\r\nSET\r\n$1\r\na\r\n$1\r\nb\r\n$4\r\nPXAT\r\n$2\r\n-1\r\n', /command 1/);
    const ok = replayAof(Buffer.from('*3\r\n$3\r\nSET\r\n$1\r\na\r\n$1\r\nb\r\n*5\r\n$3\r\nSET\r\n$1\r\nc\r\n$1\r\nd\r\n$4\r\nPXAT\r\n$2\r\n10\r\n', 'latin1'), 11);
    assert.deepEqual([...ok.keys()], ['a'], 'c expired at 10, now is 11');
    assert.equal(replayAof(Buffer.from('*5\r\n$3\r\nSET\r\n$1\r\nc\r\n$1\r\nd\r\n$4\r\nPXAT\r\n$2\r\n10\r\n', 'latin1'), 10).size, 1, 'not yet past its expiry');
  });
});

