/**
 * Logging never stops the node: a full disk, a closed descriptor, a reader
 * that stops reading. The event loop keeps turning, what could not be
 * written is counted, and once writing works again one line says so.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { closeSync, constants, mkdtempSync, openSync, readSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { LogSink } from '../../src/util/log-sink.js';
import { until } from '../helpers/wait.js';

const line = (i: number, pad = 0): string => `${JSON.stringify({ level: 30, i, pad: 'x'.repeat(pad) })}\n`;

/** How many times a 1 ms interval fires while `work` runs and `ms` pass: the loop was not held. */
async function ticksDuring(ms: number, work: () => void): Promise<number> {
  let ticks = 0;
  const t = setInterval(() => ticks++, 1);
  work();
  await new Promise((r) => setTimeout(r, ms));
  clearInterval(t);
  return ticks;
}

describe('LogSink', () => {
  test('a full disk (/dev/full): lines are dropped and counted, the loop keeps turning, nothing throws', async () => {
    const fd = openSync('/dev/full', 'w');
    const sink = new LogSink(fd, { retryMs: 5 });
    try {
      const ticks = await ticksDuring(100, () => {
        for (let i = 0; i < 500; i++) sink.write(line(i));
      });
      assert.ok(ticks > 20, `only ${ticks} ticks in 100 ms: the loop was held`);
      await until(() => sink.dropped === 500, 'every line counted as dropped');
      assert.equal(sink.closed, undefined, 'a full disk may free up: not closed for good');
      for (let i = 0; i < 10; i++) sink.write(line(i));
      await until(() => sink.dropped === 510, 'later lines tried and dropped too');
    } finally {
      closeSync(fd);
    }
  });

  test('a closed descriptor: writing stops for good (EBADF), lines are counted, nothing throws', async () => {
    const fd = openSync('/dev/null', 'w');
    closeSync(fd);
    const sink = new LogSink(fd);
    sink.write(line(1));
    await until(() => sink.closed !== undefined, 'the sink to give up');
    assert.equal(sink.closed, 'EBADF');
    for (let i = 0; i < 100; i++) sink.write(line(i));
    assert.equal(sink.dropped, 101);
  });

  test('a reader that stops reading: the queue is bounded, the loop turns, and when it reads again the drops are reported', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tandem-log-'));
    const fifo = join(dir, 'log');
    assert.equal(spawnSync('mkfifo', [fifo]).status, 0, 'mkfifo');
    const reader = openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK);
    const writer = openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK);
    const sink = new LogSink(writer, { maxQueuedBytes: 64 * 1024, retryMs: 5 });
    try {
      // Far more than the pipe (64 KiB) and the queue (64 KiB) hold together.
      const ticks = await ticksDuring(200, () => {
        for (let i = 0; i < 2000; i++) sink.write(line(i, 200));
      });
      assert.ok(ticks > 40, `only ${ticks} ticks in 200 ms: the loop was held`);
      assert.ok(sink.dropped > 0, 'beyond the bound lines are dropped, not queued without end');
      const dropped = sink.dropped;
      // The reader catches up: everything queued arrives, with one line saying what was lost.
      const chunks: Buffer[] = [];
      const buf = Buffer.alloc(65536);
      let text = '';
      await until(() => {
        try {
          const n = readSync(reader, buf, 0, buf.length, null);
          if (n > 0) chunks.push(Buffer.from(buf.subarray(0, n)));
        } catch {
          // EAGAIN: nothing to read yet.
        }
        text = Buffer.concat(chunks).toString();
        return text.includes('log lines dropped');
      }, 'the drop notice');
      assert.match(text, new RegExp(`"msg":"${dropped} log lines dropped: the log could not take them`));
      const kept = text.split('\n').filter((l) => l.startsWith('{"level":30')).length;
      assert.ok(kept > 100 && kept + dropped <= 2000, `${kept} lines arrived, ${dropped} dropped`);
    } finally {
      closeSync(writer);
      closeSync(reader);
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('sync mode writes each line before returning while the descriptor takes it', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tandem-log-'));
    const fifo = join(dir, 'log');
    spawnSync('mkfifo', [fifo]);
    const reader = openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK);
    const writer = openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK);
    try {
      const sink = new LogSink(writer, { sync: true });
      sink.write(line(7));
      const buf = Buffer.alloc(1024);
      const n = readSync(reader, buf, 0, buf.length, null);
      assert.equal(buf.subarray(0, n).toString(), line(7), 'on the descriptor before write() returned');
    } finally {
      closeSync(writer);
      closeSync(reader);
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
