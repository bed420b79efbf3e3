import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { after, describe, test } from 'node:test';
import { runTandem, saveSim, tempDir } from '../helpers/cli.js';

const tmp = tempDir();
after(() => tmp.cleanup());

const save = (name: string, args: string[]): string => saveSim(tmp, name, args);

/** One line on stderr, naming the code, and no stack trace. */
function assertOneLineError(stderr: string, pattern: RegExp): void {
  const lines = stderr.trimEnd().split('\n');
  assert.equal(lines.length, 1, `expected one line, got:\n${stderr}`);
  assert.match(lines[0], /^tandem: error: /);
  assert.match(lines[0], pattern);
  assert.doesNotMatch(stderr, /\n\s+at /);
}

describe('tandem stream inspect', () => {
  test('prints every record and one summary line per epoch of a checkpointed stream', () => {
    const file = save('c.stream', ['--checkpoints', '4', '--pages', '1100']);
    const r = runTandem(['stream', 'inspect', file]);
    assert.equal(r.status, 0, r.stderr);
    const lines = r.stdout.trimEnd().split('\n');
    assert.equal(lines[0], 'libxl header: version 2, little-endian');
    assert.equal(lines[1], 'libxl LIBXC_CONTEXT, length 0');
    assert.equal(lines[2], 'libxc image header: version 3, little-endian');
    assert.equal(lines[3], 'libxc domain header: x86 HVM, page shift 12, from Xen 4.17');
    const epochs = lines.filter((l) => l.startsWith('epoch '));
    assert.deepEqual(epochs.map((l) => l.split(':')[0]), ['epoch 1', 'epoch 2', 'epoch 3', 'epoch 4']);
    // Epoch 1 carries the whole of RAM (live pass) plus what was dirtied meanwhile.
    const pages = epochs.map((l) => Number(/: (\d+) pages/.exec(l)![1]));
    assert.ok(pages[0] >= 1100, `epoch 1 has ${pages[0]} pages`);
    for (const p of pages.slice(1)) assert.ok(p > 0 && p < 1100, `later epoch has ${p} pages`);
    // Epoch 1 counts from the start of the stream (headers, static data), so
    // the epochs plus the closing libxc END and libxl END make up the file.
    const size = readFileSync(file).length;
    const epochBytes = epochs.reduce((n, l) => n + Number(/, (\d+) bytes/.exec(l)![1]), 0);
    assert.equal(size - epochBytes, 8 + 8);
    assert.match(lines.at(-1)!, new RegExp(`^summary: libxl stream, libxc v3, x86 HVM, 4 checkpoints, \\d+ records, ${pages.reduce((a, b) => a + b)} pages, ${size} bytes$`));
  });

  test('reads a stream from stdin with -', () => {
    const file = save('p.stream', ['--format', 'libxc', '--stream-version', '2', '--pages', '10']);
    const r = runTandem(['stream', 'inspect', '-'], { input: readFileSync(file) });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /libxc PAGE_DATA x 1: 10 pfns, 10 pages with data/);
    assert.match(r.stdout, /summary: libxc stream, libxc v2, x86 HVM, 0 checkpoints, 5 records, 10 pages/);
  });

  test('a bad stream ends in one line naming the record, the offset and the code', () => {
    const file = save('bad.stream', ['--format', 'libxc', '--pages', '4']);
    const bytes = readFileSync(file);
    bytes[40 + 8 + 4] = 0xff; // CPUID policy body, fine; corrupt the MSR record's type instead
    bytes.writeUInt32LE(0x77, 40 + 8 + 48); // record after CPUID policy (48-byte body)
    writeFileSync(file, bytes);
    const r = runTandem(['stream', 'inspect', file]);
    assert.equal(r.status, 1);
    assertOneLineError(r.stderr, /libxc UNKNOWN_0x00000077 at offset 96: unknown mandatory record type \[ERR_RECORD_UNKNOWN_MANDATORY\]$/);
  });

  test('a truncated stream, garbage and a missing file fail cleanly', () => {
    const file = save('t.stream', ['--checkpoints', '1', '--pages', '8']);
    const trunc = tmp.path('trunc.stream');
    writeFileSync(trunc, readFileSync(file).subarray(0, 5000));
    let r = runTandem(['stream', 'inspect', trunc]);
    assert.equal(r.status, 1);
    assertOneLineError(r.stderr, /stream ends inside libxc PAGE_DATA .*\[ERR_STREAM_TRUNCATED\]/);

    r = runTandem(['stream', 'inspect', '-'], { input: Buffer.from('GET / HTTP/1.1\r\n\r\n') });
    assert.equal(r.status, 1);
    assertOneLineError(r.stderr, /\[ERR_STREAM_UNKNOWN_FORMAT\]/);

    r = runTandem(['stream', 'inspect', tmp.path('absent')]);
    assert.equal(r.status, 1);
    assertOneLineError(r.stderr, /ENOENT/);
  });
});

describe('tandem save', () => {
  test('a checkpointed libxc-only stream has its epochs delimited by CHECKPOINT', () => {
    const file = save('xc.stream', ['--format', 'libxc', '--checkpoints', '3', '--pages', '16']);
    const r = runTandem(['stream', 'inspect', file]);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout.split('\n').filter((l) => l.startsWith('epoch ')).length, 3);
    assert.match(r.stdout, /summary: libxc stream, libxc v3, x86 HVM, 3 checkpoints/);
  });

  test('bad flags are refused with one line and exit status 2', () => {
    const out = tmp.path('never.stream');
    const cases: [string[], RegExp][] = [
      [['--pages', '0'], /--pages: expected an integer in 1\.\.1048576, got 0 \[ERR_CLI_USAGE\]/],
      [['--pages', '1.5'], /--pages: expected an integer/],
      [['--pages', '1048577'], /--pages: expected an integer/],
      [['--checkpoints', '-1'], /--checkpoints: expected an integer in 0\.\.1000000, got -1/],
      [['--stream-version', '4'], /Invalid values:[\s\S]*stream-version/],
      [['--format', 'xl'], /Invalid values:[\s\S]*format/],
    ];
    for (const [args, pattern] of cases) {
      const r = runTandem(['save', '--sim', '--out', out, ...args]);
      assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
      assertOneLineError(r.stderr, pattern);
    }
    const r = runTandem(['save', '--out', out]);
    assert.equal(r.status, 2);
    assertOneLineError(r.stderr, /pass --sim/);
  });
});
