/**
 * The save-helper driver's state machine, fds and failure handling.
 *
 * LABEL: the helper here is fake-save-helper.ts, a scripted Node stand-in that
 * speaks the helper's side of the protocol; it is NOT libxl-save-helper and
 * does no save. What is tested is the driver: argv, which fd is which,
 * replies, stream draining, the state machine and how every failure is
 * reported. The real helper is driven in the Xen lab.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, describe, test } from 'node:test';
import { SaveHelperError } from '../../../src/domain/xen/errors.js';
import { startRestore, startSave, type HelperLogEntry, type SaveHandlers, type SaveHelperDriver, type SaveHelperOptions, type RestoreHelperOptions } from '../../../src/domain/xen/save-helper.js';
import { FAKE_FLAG, type Step } from './fake-save-helper.js';

const FAKE = fileURLToPath(new URL('./fake-save-helper.js', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'tandem-helper-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let runs = 0;

type Record = { argv?: string[]; io?: string; reply?: number; to?: string; event?: string; bytes?: number; sum?: number; left?: number };

interface Run {
  driver: SaveHelperDriver;
  /** What the fake saw, read after it exited. */
  record: () => Record[];
}

function fake(steps: Step[]): { command: { file: string; args: string[] }; record: () => Record[] } {
  const n = ++runs;
  const scenario = join(dir, `scenario-${n}.json`);
  const rec = join(dir, `record-${n}.jsonl`);
  writeFileSync(scenario, JSON.stringify(steps));
  return {
    command: { file: process.execPath, args: [FAKE, FAKE_FLAG, scenario, rec] },
    record: () =>
      existsSync(rec)
        ? readFileSync(rec, 'utf8')
            .split('\n')
            .filter((l) => l !== '')
            .map((l) => JSON.parse(l) as Record)
        : [],
  };
}

function save(steps: Step[], options: Partial<SaveHelperOptions> & { handlers: SaveHandlers }): Run {
  const f = fake(steps);
  const driver = startSave({ domid: 5, streamType: 'remus', command: f.command, ...options });
  return { driver, record: f.record };
}

function restore(steps: Step[], options: Partial<RestoreHelperOptions> = {}): Run {
  const f = fake(steps);
  const driver = startRestore({ domid: 7, streamType: 'plain', storeEvtchn: 1, storeDomid: 0, consoleEvtchn: 2, consoleDomid: 0, command: f.command, ...options });
  return { driver, record: f.record };
}

async function failure(p: Promise<unknown>): Promise<SaveHelperError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof SaveHelperError, `expected SaveHelperError, got ${String(err)}`);
    return err;
  }
  assert.fail('expected a rejection');
}

/** Everything the stream yields, and whether it ended (as opposed to being destroyed). */
function collect(driver: SaveHelperDriver): Promise<{ bytes: Buffer; ended: boolean }> {
  const chunks: Buffer[] = [];
  const stream = driver.stream!;
  return new Promise((resolve) => {
    let ended = false;
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', () => (ended = true));
    stream.on('close', () => resolve({ bytes: Buffer.concat(chunks), ended }));
  });
}

const log = (level: number, text: string, context = 'xc'): Step => ({ send: { type: 'log', level, errno: -1, context, text } });
const msg = (type: string, fields: object = {}): Step => ({ send: { type, ...fields } });

/** What a Remus save looks like from the parent, epoch by epoch (the order libxc's save loop calls back in). */
function remusScenario(epochs: number, pageBytes: (epoch: number) => number): Step[] {
  const steps: Step[] = [log(1, 'starting save', 'libxl-save-helper'), msg('switch_qemu_logdirty', { domid: 5, enable: 1 }), { reply: 'logdirty on' }];
  for (let e = 1; e <= epochs; e++) {
    steps.push(
      msg('progress', { context: 'xc', doingWhat: 'Memory', done: String(e), total: String(epochs) }),
      msg('suspend'),
      { reply: `suspend ${e}` },
      { io: { bytes: pageBytes(e), fill: e } },
      msg('postcopy'),
      { reply: `postcopy ${e}` },
      msg('checkpoint'),
      { reply: `checkpoint ${e}` },
    );
  }
  steps.push(
    log(8, 'Save failed (0 = Success)'),
    msg('switch_qemu_logdirty', { domid: 5, enable: 0 }),
    { reply: 'logdirty off' },
    log(1, 'complete r=0', 'libxl-save-helper'),
    msg('complete', { retval: 0, errno: 0 }),
    { reply: 'complete' },
    log(1, 'after complete 1'),
    log(1, 'after complete 2'),
    { exit: 0 },
  );
  return steps;
}

const okHandlers = (calls: string[] = [], stopAfter = 3): SaveHandlers => {
  let checkpoints = 0;
  return {
    suspend: () => (calls.push('suspend'), Promise.resolve()),
    switchQemuLogdirty: (domid, enable) => (calls.push(`logdirty ${domid} ${enable}`), Promise.resolve()),
    postcopy: () => (calls.push('postcopy'), Promise.resolve('continue')),
    checkpoint: () => (calls.push('checkpoint'), Promise.resolve(++checkpoints >= stopAfter ? 'stop' : 'continue')),
  };
};

describe('save helper driver (against a scripted fake helper, not libxl-save-helper)', () => {
  test('a Remus save: argv, fd 3, every callback answered in order, the stream drained whole, judged by complete (not by the error-level log)', async () => {
    const calls: string[] = [];
    const logs: HelperLogEntry[] = [];
    const progress: bigint[] = [];
    const { driver, record } = save(remusScenario(3, (e) => 70_000 * e), {
      handlers: okHandlers(calls),
      onLog: (l) => logs.push(l),
      onProgress: (p) => progress.push(p.done),
    });
    assert.deepEqual(driver.argv, ['--save-domain', '3', '-1', '5', '1', '184', '1']);
    const streamed = collect(driver);
    const outcome = await driver.done;
    assert.equal(outcome.retval, 0);
    assert.equal(outcome.checkpoints, 3);
    assert.equal(driver.state, 'closed');
    assert.deepEqual(calls, ['logdirty 5 true', ...[1, 2, 3].flatMap(() => ['suspend', 'postcopy', 'checkpoint']), 'logdirty 5 false']);
    const rec = record();
    assert.deepEqual(rec[0], { argv: ['--save-domain', '3', '-1', '5', '1', '184', '1'], io: 'socket' });
    assert.deepEqual(
      rec.filter((r) => r.reply !== undefined).map((r) => `${r.to}=${r.reply}`),
      ['logdirty on=0', 'suspend 1=1', 'postcopy 1=1', 'checkpoint 1=1', 'suspend 2=1', 'postcopy 2=1', 'checkpoint 2=1', 'suspend 3=1', 'postcopy 3=1', 'checkpoint 3=0', 'logdirty off=0', 'complete=0'],
    );
    const { bytes, ended } = await streamed;
    assert.ok(ended, 'the stream ends because the save succeeded');
    assert.equal(bytes.length, 70_000 * 6);
    assert.equal(driver.bytesDrained, bytes.length);
    assert.ok(bytes.subarray(0, 70_000).every((b) => b === 1) && bytes.subarray(70_000, 210_000).every((b) => b === 2) && bytes.subarray(210_000).every((b) => b === 3));
    assert.deepEqual(progress, [1n, 2n, 3n]);
    assert.equal(logs.length, 5, 'logs after complete are read too, until the helper closes stdout');
    assert.equal(logs[1].levelName, 'error');
    assert.match(outcome.lastLogs.join('\n'), /error xc: Save failed \(0 = Success\)/);
  });

  test('while the guest runs (a live round), the io fd is read only as the stream is taken: a consumer that waits holds libxc back, and nothing is lost', async () => {
    const LIVE = 24 * 2 ** 20;
    const steps: Step[] = [
      msg('switch_qemu_logdirty', { domid: 5, enable: 1 }),
      { reply: 'logdirty on' },
      { io: { bytes: LIVE, fill: 4 } },
      msg('suspend'),
      { reply: 'suspend' },
      { io: { bytes: 100_000, fill: 5 } },
      msg('postcopy'),
      { reply: 'postcopy' },
      msg('checkpoint'),
      { reply: 'checkpoint' },
      msg('switch_qemu_logdirty', { domid: 5, enable: 0 }),
      { reply: 'logdirty off' },
      msg('complete', { retval: 0, errno: 0 }),
      { reply: 'complete' },
      { exit: 0 },
    ];
    const { driver } = save(steps, { handlers: okHandlers([], 1) });
    // Nobody takes the stream for a while: the driver stops reading at the stream's high-water mark (4 MiB).
    await new Promise((r) => setTimeout(r, 1500));
    const held = driver.bytesDrained;
    assert.ok(held >= 4 * 2 ** 20 && held < 4 * 2 ** 20 + 2 * 65536, `read ${held} bytes of a live round nobody took`);
    assert.equal(driver.state, 'running', 'the helper is still writing its live round');
    const streamed = collect(driver);
    assert.equal((await driver.done).checkpoints, 1);
    const { bytes } = await streamed;
    assert.equal(bytes.length, LIVE + 100_000);
    assert.ok(bytes.subarray(0, LIVE).every((b) => b === 4) && bytes.subarray(LIVE).every((b) => b === 5));
  });

  test('a plain, non-live save passes xcflags 0 and cbflags 136 (0x88)', async () => {
    const steps: Step[] = [msg('suspend'), { reply: 'suspend' }, { io: { bytes: 10, fill: 9 } }, msg('complete', { retval: 0, errno: 0 }), { reply: 'complete' }, { exit: 0 }];
    const { driver } = save(steps, { streamType: 'plain', live: false, handlers: okHandlers() });
    assert.deepEqual(driver.argv, ['--save-domain', '3', '-1', '5', '0', '136', '0']);
    const streamed = collect(driver);
    assert.equal((await driver.done).checkpoints, 0);
    assert.equal((await streamed).bytes.length, 10);
  });

  test('a helper that dies mid-epoch: ERR_SAVE_HELPER_EXITED naming its exit code, the epoch, the last callback and its last log lines; the stream does not end', async () => {
    const steps: Step[] = [
      msg('switch_qemu_logdirty', { domid: 5, enable: 1 }),
      { reply: 'on' },
      msg('suspend'),
      { reply: 'suspend' },
      log(7, 'about to copy'),
      { io: { bytes: 1000, fill: 1 } },
      { exit: 255 },
    ];
    const { driver } = save(steps, { handlers: okHandlers() });
    const streamed = collect(driver);
    const err = await failure(driver.done);
    assert.equal(err.code, 'ERR_SAVE_HELPER_EXITED');
    assert.equal(err.exitCode, 255);
    assert.equal(err.signal, null);
    assert.match(err.message, /exited with code 255 before completing \(epoch 1, 0 checkpoints, last callback suspend\)/);
    assert.deepEqual(err.lastLogs, ['warn xc: about to copy']);
    assert.equal((await streamed).ended, false);
  });

  test('a helper killed by a signal mid-epoch: the error names the signal', async () => {
    const steps: Step[] = [msg('switch_qemu_logdirty', { domid: 5, enable: 1 }), { reply: 'on' }, msg('suspend'), { reply: 'suspend' }, { kill: 'SIGKILL' }];
    const { driver } = save(steps, { handlers: okHandlers() });
    const err = await failure(driver.done);
    assert.equal(err.code, 'ERR_SAVE_HELPER_EXITED');
    assert.equal(err.signal, 'SIGKILL');
    assert.match(err.message, /was killed by SIGKILL before completing/);
  });

  for (const [name, raw, code] of [
    ['an unknown type', '02000b00', 'ERR_SAVE_HELPER_UNKNOWN_TYPE'],
    ['a string without its NUL', '0f000100' + '08000000' + 'ffffffff' + '01000000' + '78' + '00000000', 'ERR_SAVE_HELPER_BAD_MESSAGE'],
    ['a body length of 1', '010003', 'ERR_SAVE_HELPER_BAD_MESSAGE'],
    ['static_data_done while saving', '060008000000' + '0000', 'ERR_SAVE_HELPER_UNEXPECTED_MESSAGE'],
    ['restore_results while saving', '1200' + '0900' + '00'.repeat(16), 'ERR_SAVE_HELPER_UNEXPECTED_MESSAGE'],
  ] as const) {
    test(`${name} stops the driver for good with ${code} and SIGTERMs the helper`, async () => {
      const steps: Step[] = [log(5, 'before'), { raw }, { awaitSigterm: true }, log(5, 'ignored: after the bad message'), { exit: 255 }];
      const { driver, record } = save(steps, { handlers: okHandlers() });
      const err = await failure(driver.done);
      assert.equal(err.code, code, err.message);
      assert.equal(err.offset, 2 + 2 + 4 + 4 + (4 + 3) + (4 + 7), 'at the offset of the bad message, after the log');
      assert.match(err.message, /the helper then exited with code 255/);
      assert.deepEqual(err.lastLogs, ['info xc: before'], 'what followed the bad message was not read');
      assert.ok(record().some((r) => r.event === 'SIGTERM'));
    });
  }

  test('a message while the helper owes us only silence (it waits for a reply) is refused; stdin is closed, so the helper exits as it does on EOF (254)', async () => {
    let release!: () => void;
    const steps: Step[] = [msg('suspend'), log(5, 'talking while it should be waiting'), { reply: 'suspend' }, { exit: 0 }];
    const { driver, record } = save(steps, {
      streamType: 'plain',
      handlers: { ...okHandlers(), suspend: () => new Promise<void>((r) => (release = r)) },
    });
    const err = await failure(driver.done);
    release();
    assert.equal(err.code, 'ERR_SAVE_HELPER_UNEXPECTED_MESSAGE');
    assert.match(err.message, /blocked waiting for our reply to suspend/);
    assert.equal(err.exitCode, 254);
    assert.ok(record().some((r) => r.event === 'stdin-eof'));
  });

  test('complete with a non-zero retval is ERR_SAVE_HELPER_FAILED carrying retval, errno and the last logs', async () => {
    const steps: Step[] = [
      msg('suspend'),
      { reply: 'suspend' },
      { send: { type: 'log', level: 8, errno: 28, context: 'xc', text: 'Failed to write page data' } },
      msg('complete', { retval: -1, errno: 28 }),
      { reply: 'complete' },
      { exit: 0 },
    ];
    const { driver } = save(steps, { streamType: 'plain', handlers: okHandlers() });
    const err = await failure(driver.done);
    assert.equal(err.code, 'ERR_SAVE_HELPER_FAILED');
    assert.equal(err.retval, -1);
    assert.equal(err.errno, 28);
    assert.deepEqual(err.lastLogs, ['error xc: Failed to write page data (errno 28)']);
  });

  test('a handler that throws is answered with its failure value (suspend: 0) and gives ERR_SAVE_HELPER_CALLBACK_FAILED with the error as cause', async () => {
    const boom = new Error('guest did not acknowledge suspend');
    const steps: Step[] = [msg('suspend'), { reply: 'suspend' }, log(8, 'save callback suspend() failed: 0'), msg('complete', { retval: -1, errno: 0 }), { reply: 'complete' }, { exit: 0 }];
    const { driver, record } = save(steps, { streamType: 'plain', handlers: { ...okHandlers(), suspend: () => Promise.reject(boom) } });
    const err = await failure(driver.done);
    assert.equal(err.code, 'ERR_SAVE_HELPER_CALLBACK_FAILED');
    assert.equal(err.cause, boom);
    assert.equal(err.retval, -1);
    assert.match(err.message, /the suspend handler failed \(epoch 1\): guest did not acknowledge suspend/);
    assert.deepEqual(
      record()
        .filter((r) => r.reply !== undefined)
        .map((r) => r.reply),
      [0, 0],
    );
  });

  test('a consumer that falls behind more than maxBufferedBytes stops the save (ERR_SAVE_HELPER_STREAM_OVERFLOW): SIGTERM, and the protocol goes on to complete', async () => {
    const steps: Step[] = [
      msg('suspend'),
      { reply: 'suspend' },
      {
        io: { bytes: 64 * 2 ** 20, fill: 7, chunk: 32 * 1024 },
        // What the real helper does after SIGTERM: libxc's write fails, it cleans up and completes with -1.
        onSigterm: [log(8, 'Failed to write page data'), msg('switch_qemu_logdirty', { domid: 5, enable: 0 }), { reply: 'logdirty off' }, msg('complete', { retval: -1, errno: 9 }), { reply: 'complete' }, { exit: 0 }],
      },
      { exit: 9 },
    ];
    const calls: string[] = [];
    const { driver, record } = save(steps, { streamType: 'plain', maxBufferedBytes: 256 * 1024, handlers: okHandlers(calls) });
    // Nobody reads driver.stream.
    const err = await failure(driver.done);
    assert.equal(err.code, 'ERR_SAVE_HELPER_STREAM_OVERFLOW');
    assert.match(err.message, /fell \d+ bytes behind \(maxBufferedBytes 262144\)/);
    assert.equal(err.exitCode, 0);
    const rec = record();
    assert.ok(rec.some((r) => r.event === 'SIGTERM'));
    const stopped = rec.find((r) => r.event === 'io-stopped');
    assert.ok(stopped && stopped.left! > 0, 'the helper stopped writing before the end');
    assert.deepEqual(calls, ['suspend', 'logdirty 5 false'], "libxc's cleanup callback still reached its handler");
    assert.ok(driver.stream!.destroyed);
  });

  test('abort() during a handler answers it at once with its failure value, SIGTERMs, keeps answering the cleanup callbacks, and gives ERR_SAVE_HELPER_ABORTED', async () => {
    const steps: Step[] = [
      msg('suspend'),
      { reply: 'suspend' },
      msg('postcopy'),
      { reply: 'postcopy' },
      msg('checkpoint'),
      { reply: 'checkpoint' },
      { awaitSigterm: true },
      msg('switch_qemu_logdirty', { domid: 5, enable: 0 }),
      { reply: 'logdirty off' },
      msg('complete', { retval: -1, errno: 0 }),
      { reply: 'complete' },
      { exit: 0 },
    ];
    let entered!: () => void;
    const inCheckpoint = new Promise<void>((r) => (entered = r));
    const calls: string[] = [];
    const { driver, record } = save(steps, {
      handlers: {
        ...okHandlers(calls),
        checkpoint: () => {
          entered();
          return new Promise(() => undefined); // waits for the interval, forever
        },
      },
    });
    await inCheckpoint;
    assert.equal(driver.state, 'callback');
    driver.abort('operator stopped protection');
    assert.equal(driver.state, 'stopping');
    const err = await failure(driver.done);
    assert.equal(err.code, 'ERR_SAVE_HELPER_ABORTED');
    assert.match(err.message, /operator stopped protection \(the helper then exited with code 0\)/);
    assert.deepEqual(
      record()
        .filter((r) => r.reply !== undefined || r.event === 'SIGTERM')
        .map((r) => r.event ?? `${r.to}=${r.reply}`),
      ['suspend=1', 'postcopy=1', 'checkpoint=-1', 'SIGTERM', 'logdirty off=0', 'complete=0'],
    );
    assert.deepEqual(calls, ['suspend', 'postcopy', 'logdirty 5 false']);
  });

  test('a helper that ignores SIGTERM gets SIGKILL after killTimeoutMs', async () => {
    const steps: Step[] = [msg('suspend'), { reply: 'suspend' }, { awaitSigterm: true }, { sleep: 20_000 }];
    const { driver, record } = save(steps, { streamType: 'plain', killTimeoutMs: 200, handlers: okHandlers() });
    // Once it has its reply it is past its start, where it sets its SIGTERM handler.
    while (!record().some((r) => r.reply !== undefined)) await new Promise((r) => setTimeout(r, 10));
    driver.abort();
    const err = await failure(driver.done);
    assert.equal(err.code, 'ERR_SAVE_HELPER_ABORTED');
    assert.equal(err.signal, 'SIGKILL');
  });

  test('a helper that dies in the middle of writing a message: the error says its output ended inside one', async () => {
    const { driver } = save([msg('suspend'), { reply: 'suspend' }, { raw: '0a000a00ffff' }, { exit: 255 }], { streamType: 'plain', handlers: okHandlers() });
    const err = await failure(driver.done);
    assert.equal(err.code, 'ERR_SAVE_HELPER_EXITED');
    assert.match(err.message, /last callback suspend; its output ended inside a message\)/);
  });

  test('a helper that exits 0 without complete did not save', async () => {
    const { driver } = save([msg('suspend'), { reply: 'suspend' }, { exit: 0 }], { streamType: 'plain', handlers: okHandlers() });
    const err = await failure(driver.done);
    assert.equal(err.code, 'ERR_SAVE_HELPER_EXITED');
    assert.equal(err.exitCode, 0);
  });

  test('a helper that cannot be started is ERR_SAVE_HELPER_SPAWN_FAILED', async () => {
    const driver = startSave({ domid: 5, streamType: 'plain', helperPath: join(dir, 'no-such-helper'), handlers: okHandlers() });
    const err = await failure(driver.done);
    assert.equal(err.code, 'ERR_SAVE_HELPER_SPAWN_FAILED');
    assert.equal((err.cause as NodeJS.ErrnoException).code, 'ENOENT');
  });

  test('options libxc cannot run with are refused before anything is spawned', () => {
    const bad: [string, () => unknown][] = [
      ['Remus without checkpoint', () => startSave({ domid: 5, streamType: 'remus', handlers: { ...okHandlers(), checkpoint: undefined } })],
      ['no switchQemuLogdirty', () => startSave({ domid: 5, streamType: 'plain', handlers: { suspend: () => Promise.resolve() } as unknown as SaveHandlers })],
      ['COLO', () => startSave({ domid: 5, streamType: 'colo' as 'plain', handlers: okHandlers() })],
      ['domid 0', () => startSave({ domid: 0, streamType: 'plain', handlers: okHandlers() })],
      ['maxBufferedBytes 0', () => startSave({ domid: 5, streamType: 'plain', maxBufferedBytes: 0, handlers: okHandlers() })],
      ['a Remus restore without checkpoint', () => startRestore({ domid: 7, streamType: 'remus', storeEvtchn: 1, storeDomid: 0, consoleEvtchn: 2, consoleDomid: 0 })],
    ];
    for (const [name, fn] of bad) {
      assert.throws(fn, (e: unknown) => e instanceof SaveHelperError && e.code === 'ERR_SAVE_HELPER_BAD_OPTIONS', name);
    }
  });

  test('a Remus restore: argv, the stream written into fd 3, checkpoints answered continue then failover, restore_results, complete', async () => {
    const steps: Step[] = [
      msg('static_data_done', { missing: 0 }),
      { reply: 'static_data_done' },
      { readIo: 5000 },
      msg('checkpoint'),
      { reply: 'checkpoint 1' },
      { readIo: 'eof' },
      msg('checkpoint'),
      { reply: 'checkpoint 2' },
      msg('restore_results', { storeGfn: '1044476', consoleGfn: '1044475' }),
      msg('complete', { retval: 0, errno: 0 }),
      { reply: 'complete' },
      { exit: 0 },
    ];
    const missing: number[] = [];
    let checkpoints = 0;
    const { driver, record } = restore(steps, {
      streamType: 'remus',
      handlers: {
        staticDataDone: (m) => (missing.push(m), Promise.resolve()),
        checkpoint: () => Promise.resolve(++checkpoints === 1 ? 'continue' : 'failover'),
      },
    });
    assert.deepEqual(driver.argv, ['--restore-domain', '3', '-1', '7', '1', '0', '2', '0', '800', '1']);
    driver.input!.write(Buffer.alloc(5000, 1));
    driver.input!.end(Buffer.alloc(3000, 2));
    const outcome = await driver.done;
    assert.deepEqual(outcome.restoreResults, { storeGfn: 0xfeffcn, consoleGfn: 0xfeffbn });
    assert.equal(outcome.checkpoints, 2);
    assert.deepEqual(missing, [0]);
    const rec = record();
    assert.equal(rec[0].io, 'socket');
    assert.deepEqual(
      rec.filter((r) => r.reply !== undefined).map((r) => r.reply),
      [0, 1, 2, 0],
    );
    assert.deepEqual(
      rec.filter((r) => r.event === 'io-read').map((r) => [r.bytes, r.sum]),
      [
        [5000, 5000],
        [3000, 6000],
      ],
    );
  });

  test('a restore that completes before sending restore_results broke the protocol', async () => {
    const steps: Step[] = [msg('complete', { retval: 0, errno: 0 }), { reply: 'complete' }, { exit: 0 }];
    const { driver } = restore(steps);
    const err = await failure(driver.done);
    assert.equal(err.code, 'ERR_SAVE_HELPER_UNEXPECTED_MESSAGE');
    assert.match(err.message, /complete at offset 0: came before restore_results/);
  });
});
