/**
 * LABEL: a stand-in for libxl-save-helper, NOT the real helper. It speaks the
 * helper's side of the callback protocol (through the codec under test) from
 * a scripted scenario, so the driver's state machine can be exercised on a
 * machine without Xen: replies, deaths mid-epoch, signals, bad messages,
 * a flood on the io fd. The real helper is driven in the Xen lab.
 *
 * Like the real helper it does blocking I/O: it writes messages to fd 1,
 * reads each reply (one int32) from fd 0 and exits 254 when stdin ends
 * there (the helper's exit(-2)), and writes or reads the stream on fd 3.
 * Everything it sees (argv, replies, signals) is appended as JSON lines to
 * a record file the test reads afterwards.
 *
 * Run as `node fake-save-helper.js FAKE_FLAG SCENARIO.json RECORD.jsonl
 * --save-domain ...`. The test runner also loads this file as a test file;
 * without the flag it does nothing.
 */
import { appendFileSync, fstatSync, readFileSync, readSync, writeSync } from 'node:fs';
import { encodeMessage, type HelperMessage } from '../../../src/domain/xen/save-helper-wire.js';

export const FAKE_FLAG = '--tandem-fake-save-helper';

/** One step of a scenario. u64 fields of messages are given as decimal strings (JSON has no bigint). */
export type Step =
  | { send: Record<string, unknown> }
  /** Bytes written to stdout as they are (a malformed message). */
  | { raw: string }
  /** Reads one reply; records it under `reply`. */
  | { reply: string }
  /** Writes `bytes` bytes of `fill` to the io fd, in chunks of `chunk` (default 64 KiB); stops early, going on with `onSigterm`, if SIGTERM comes. */
  | { io: { bytes: number; fill: number; chunk?: number }; onSigterm?: Step[] }
  /** Writes these bytes (hex) to the io fd: a stream of chosen records. */
  | { ioHex: string }
  /** Reads the io fd: `bytes` of them, or to its end; records how many and their sum. */
  | { readIo: number | 'eof' }
  | { awaitSigterm: true }
  | { sleep: number }
  | { exit: number }
  | { kill: NodeJS.Signals };

let sigterm = false;
let onSigterm: (() => void) | undefined;

function record(path: string, entry: Record<string, unknown>): void {
  appendFileSync(path, `${JSON.stringify(entry)}\n`);
}

/** Blocking read of exactly n bytes; fewer only at EOF. */
function readExactly(fd: number, n: number): Buffer {
  const buf = Buffer.alloc(n);
  let got = 0;
  while (got < n) {
    let r: number;
    try {
      r = readSync(fd, buf, got, n - got, null);
    } catch (err) {
      // EAGAIN should not happen on these blocking fds; EINTR can, when a signal comes.
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EAGAIN' || code === 'EINTR') continue;
      throw err;
    }
    if (r === 0) break;
    got += r;
  }
  return buf.subarray(0, got);
}

function writeAll(fd: number, bytes: Buffer): void {
  let at = 0;
  while (at < bytes.length) {
    try {
      at += writeSync(fd, bytes, at);
    } catch (err) {
      // EAGAIN should not happen on these blocking fds; EINTR can, when a signal comes.
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EAGAIN' || code === 'EINTR') continue;
      throw err;
    }
  }
}

function toMessage(m: Record<string, unknown>): HelperMessage {
  const out: Record<string, unknown> = { ...m };
  for (const k of ['done', 'total', 'storeGfn', 'consoleGfn']) {
    const v = out[k];
    if (typeof v === 'string') out[k] = BigInt(v);
  }
  return out as HelperMessage;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function run(steps: Step[], rec: string): Promise<void> {
  for (const step of steps) {
    if ('send' in step) writeAll(1, encodeMessage(toMessage(step.send)));
    else if ('raw' in step) writeAll(1, Buffer.from(step.raw, 'hex'));
    else if ('ioHex' in step) writeAll(3, Buffer.from(step.ioHex, 'hex'));
    else if ('reply' in step) {
      const b = readExactly(0, 4);
      if (b.length < 4) {
        record(rec, { event: 'stdin-eof', waiting: step.reply });
        process.exit(254); // the helper's exit(-2)
      }
      record(rec, { reply: b.readInt32LE(0), to: step.reply });
    } else if ('io' in step) {
      const chunk = step.io.chunk ?? 65536;
      let left = step.io.bytes;
      while (left > 0) {
        if (sigterm) {
          record(rec, { event: 'io-stopped', left });
          await run(step.onSigterm ?? [], rec);
          break;
        }
        const n = Math.min(chunk, left);
        writeAll(3, Buffer.alloc(n, step.io.fill));
        left -= n;
        // Let a SIGTERM handler run between chunks (the real helper's handler is asynchronous to libxc).
        await new Promise((r) => setImmediate(r));
      }
    } else if ('readIo' in step) {
      let got = 0;
      let sum = 0;
      const want = step.readIo === 'eof' ? Infinity : step.readIo;
      while (got < want) {
        const ask = Math.min(65536, want - got);
        const b = readExactly(3, ask);
        for (const x of b) sum = (sum + x) % 65521;
        got += b.length;
        if (b.length < ask) break; // EOF
      }
      record(rec, { event: 'io-read', bytes: got, sum });
    } else if ('awaitSigterm' in step) {
      if (!sigterm) {
        const got = await Promise.race([new Promise<boolean>((r) => (onSigterm = () => r(true))), sleep(10_000).then(() => false)]);
        if (!got) {
          record(rec, { event: 'no-sigterm' });
          process.exit(3);
        }
      }
    } else if ('sleep' in step) await sleep(step.sleep);
    else if ('exit' in step) process.exit(step.exit);
    else if ('kill' in step) {
      process.kill(process.pid, step.kill);
      await sleep(10_000);
    }
  }
}

async function main(): Promise<void> {
  const at = process.argv.indexOf(FAKE_FLAG);
  const [scenarioFile, rec, ...helperArgv] = process.argv.slice(at + 1);
  const steps = JSON.parse(readFileSync(scenarioFile, 'utf8')) as Step[];
  // SIGTERM is recorded, not fatal: what the fake does next is the scenario's to say.
  process.on('SIGTERM', () => {
    sigterm = true;
    record(rec, { event: 'SIGTERM' });
    onSigterm?.();
  });
  let io: string;
  try {
    const st = fstatSync(3);
    io = st.isSocket() ? 'socket' : st.isFIFO() ? 'fifo' : 'other';
  } catch {
    io = 'missing';
  }
  record(rec, { argv: helperArgv, io });
  await run(steps, rec);
  process.exit(0);
}

if (process.argv.includes(FAKE_FLAG)) void main();
