/**
 * XenSaver: Xen's save helper behind the LibxcSaver seam.
 *
 * LABEL: the helper is fake-save-helper.ts, a scripted stand-in, NOT
 * libxl-save-helper. What is tested is the mapping: the helper's callbacks
 * become the engine's, its io fd's bytes pass on untouched, and a
 * checkpoint is handed to the engine only once its CHECKPOINT record has
 * arrived (the helper's message comes first here on purpose). The real
 * helper runs in the Xen lab (test-xen/basics.test.ts).
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, test } from 'node:test';
import { XenSaver } from '../../../src/domain/xen/saver.js';
import type { LibxcOutput, SaveCallbacks } from '../../../src/domain/types.js';
import { FAKE_FLAG, type Step } from './fake-save-helper.js';
import { captureLog } from '../../secondary/fixtures.js';

const FAKE = fileURLToPath(new URL('./fake-save-helper.js', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'tandem-saver-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function rec(type: number, body: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32LE(type, 0);
  head.writeUInt32LE(body.length, 4);
  return Buffer.concat([head, body, Buffer.alloc((8 - (body.length % 8)) % 8)]);
}
function pageData(count: number, fill: number): Buffer {
  const body = Buffer.alloc(8 + count * 8 + count * 4096, fill);
  body.writeUInt32LE(count, 0);
  body.writeUInt32LE(0, 4);
  return rec(0x01, body);
}
const HEADERS = Buffer.alloc(40, 0x11);
const CHECKPOINT = rec(0x0e, Buffer.alloc(0));
const msg = (type: string, fields: object = {}): Step => ({ send: { type, ...fields } });

test('a Remus save: callbacks in libxc\'s order, bytes passed on untouched, each checkpoint handed on only after its CHECKPOINT record, stop ends it', async () => {
  const epochs = [Buffer.concat([pageData(3, 1), CHECKPOINT]), Buffer.concat([pageData(1, 2), CHECKPOINT])];
  const steps: Step[] = [msg('switch_qemu_logdirty', { domid: 5, enable: 1 }), { reply: 'logdirty on' }, { ioHex: HEADERS.toString('hex') }];
  epochs.forEach((bytes, i) => {
    steps.push(
      msg('suspend'),
      { reply: `suspend ${i + 1}` },
      // The pages, then postcopy and checkpoint on the message channel, and only then the CHECKPOINT record.
      { ioHex: bytes.subarray(0, bytes.length - CHECKPOINT.length).toString('hex') },
      msg('postcopy'),
      { reply: `postcopy ${i + 1}` },
      msg('checkpoint'),
      { sleep: 50 },
      { ioHex: CHECKPOINT.toString('hex') },
      { reply: `checkpoint ${i + 1}` },
    );
  });
  steps.push(msg('switch_qemu_logdirty', { domid: 5, enable: 0 }), { reply: 'logdirty off' }, msg('complete', { retval: 0, errno: 0 }), { reply: 'complete' }, { exit: 0 });
  const scenario = join(dir, 'remus.json');
  const record = join(dir, 'remus.jsonl');
  writeFileSync(scenario, JSON.stringify(steps));
  const written: Buffer[] = [];
  const out: LibxcOutput = { write: (c) => void written.push(...c), flush: () => Promise.resolve(), flushed: () => Promise.resolve() };
  const calls: string[] = [];
  let checkpoints = 0;
  const callbacks: SaveCallbacks = {
    suspend: () => (calls.push('suspend'), Promise.resolve()),
    precopyPolicy: () => 'continue',
    postcopy: () => (calls.push('postcopy'), Promise.resolve()),
    checkpoint: (stats) => {
      const have = Buffer.concat(written);
      calls.push(`checkpoint ${stats.pages} pages, stream ends with CHECKPOINT: ${have.subarray(have.length - CHECKPOINT.length).equals(CHECKPOINT)}`);
      return Promise.resolve(++checkpoints < 2);
    },
  };
  const saver = new XenSaver({ domid: 5, logger: captureLog().logger, helper: { command: { file: process.execPath, args: [FAKE, FAKE_FLAG, scenario, record] } } });
  await saver.save(out, { type: 'remus', version: 3 }, callbacks);
  assert.deepEqual(calls, ['suspend', 'postcopy', 'checkpoint 3 pages, stream ends with CHECKPOINT: true', 'suspend', 'postcopy', 'checkpoint 1 pages, stream ends with CHECKPOINT: true']);
  assert.deepEqual(Buffer.concat(written), Buffer.concat([HEADERS, ...epochs]), 'the helper\'s bytes, untouched and in order');
  const replies = existsSync(record) ? readFileSync(record, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { reply?: number; to?: string }).filter((r) => r.reply !== undefined).map((r) => `${r.to}=${r.reply}`) : [];
  assert.deepEqual(replies, ['logdirty on=0', 'suspend 1=1', 'postcopy 1=1', 'checkpoint 1=1', 'suspend 2=1', 'postcopy 2=1', 'checkpoint 2=0', 'logdirty off=0', 'complete=0']);
});

test("libxc's progress steps of its live rounds become the pre-copy's page counts: a count that falls back or a new total is the next round; nothing after the first suspend, nothing out of range", async () => {
  const progress = (done: number, total: number): Step => msg('progress', { context: 'xc', doingWhat: 'Frames', done: String(done), total: String(total) });
  const steps: Step[] = [
    msg('switch_qemu_logdirty', { domid: 5, enable: 1 }),
    { reply: 'logdirty on' },
    { ioHex: HEADERS.toString('hex') },
    progress(0, 32768),
    progress(16384, 32768),
    progress(32768, 32768),
    // Round 2: the dirty pages, fewer of them.
    progress(0, 900),
    progress(900, 900),
    // Round 3: the same total again, counting from the start.
    progress(0, 900),
    progress(7, 0), // no total: not a step
    progress(5, 4), // more done than there is: refused
    msg('suspend'),
    { reply: 'suspend 1' },
    progress(10, 20), // after the suspend: not a live round
    { ioHex: pageData(1, 3).toString('hex') },
    msg('postcopy'),
    { reply: 'postcopy 1' },
    msg('checkpoint'),
    { ioHex: CHECKPOINT.toString('hex') },
    { reply: 'checkpoint 1' },
    msg('switch_qemu_logdirty', { domid: 5, enable: 0 }),
    { reply: 'logdirty off' },
    msg('complete', { retval: 0, errno: 0 }),
    { reply: 'complete' },
    { exit: 0 },
  ];
  const scenario = join(dir, 'progress.json');
  writeFileSync(scenario, JSON.stringify(steps));
  const seen: string[] = [];
  const callbacks: SaveCallbacks = {
    suspend: () => Promise.resolve(),
    precopyPolicy: () => 'continue',
    precopyProgress: (p) => void seen.push(`${p.iteration}:${p.sent}/${p.total}`),
    postcopy: () => Promise.resolve(),
    checkpoint: () => Promise.resolve(false),
  };
  const out: LibxcOutput = { write: () => undefined, flush: () => Promise.resolve(), flushed: () => Promise.resolve() };
  const saver = new XenSaver({ domid: 5, logger: captureLog().logger, helper: { command: { file: process.execPath, args: [FAKE, FAKE_FLAG, scenario, join(dir, 'progress.jsonl')] } } });
  await saver.save(out, { type: 'remus', version: 3 }, callbacks);
  assert.deepEqual(seen, ['1:0/32768', '1:16384/32768', '1:32768/32768', '2:0/900', '2:900/900', '3:0/900']);
});

test('COLO and stream versions other than 3 are refused before anything runs', async () => {
  const saver = new XenSaver({ domid: 5, logger: captureLog().logger, helper: { command: { file: '/nonexistent', args: [] } } });
  const out: LibxcOutput = { write: () => undefined, flush: () => Promise.resolve(), flushed: () => Promise.resolve() };
  const cb = {} as SaveCallbacks;
  await assert.rejects(saver.save(out, { type: 'colo', version: 3 }, cb), /COLO is not built for Xen domains/);
  await assert.rejects(saver.save(out, { type: 'remus', version: 2 }, cb), /writes libxc stream version 3, not 2/);
});
