import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { after, describe, test } from 'node:test';
import { runTandem, saveSim, tempDir } from '../helpers/cli.js';
import { encodeXlHeader } from '../../src/stream/xl-header.js';
import { LIBXL_DOMAIN_CONFIG, remusShaped, xlFile } from '../stream/xl-fixtures.js';

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

describe('tandem stream inspect: xl save files and Remus streams', () => {
  const write = (name: string, bytes: Buffer): string => {
    const file = tmp.path(name);
    writeFileSync(file, bytes);
    return file;
  };

  test('an xl save file: the xl header and its config, then the stream as usual', () => {
    const stream = readFileSync(save('xl-src.stream', ['--format', 'libxl', '--pages', '40']));
    const file = write('plain.xl', xlFile(stream));
    const headerSize = encodeXlHeader({ configJson: LIBXL_DOMAIN_CONFIG }).length;
    const r = runTandem(['stream', 'inspect', file]);
    assert.equal(r.status, 0, r.stderr);
    const lines = r.stdout.trimEnd().split('\n');
    assert.equal(
      lines[0],
      `xl header: mandatory flags 0x3 (config JSON, stream v2), optional flags 0x0, ${headerSize - 48} bytes of optional data; the libxl stream starts at offset ${headerSize}`,
    );
    assert.equal(lines[1], `xl config: ${headerSize - 52} bytes of JSON: domain "lab-guest", type pvh, memory 131072 KiB, max memory 131072 KiB, 1 vCPU`);
    assert.equal(lines[2], 'libxl header: version 2, little-endian');
    assert.doesNotMatch(r.stdout, /failover point/);
    assert.match(lines.at(-1)!, new RegExp(`^summary: xl-framed libxl stream, libxc v3, x86 HVM, 0 checkpoints, \\d+ records, 40 pages, ${stream.length + headerSize} bytes$`));
  });

  test('an xl-framed Remus stream from stdin that stops after a CHECKPOINT_END ended cleanly there: exit 0', () => {
    const stream = readFileSync(save('remus-src.stream', ['--checkpoints', '3', '--pages', '64']));
    const r = runTandem(['stream', 'inspect', '-'], { input: xlFile(remusShaped(stream)) });
    assert.equal(r.status, 0, r.stderr);
    const lines = r.stdout.trimEnd().split('\n');
    assert.deepEqual(lines.slice(-4, -1), [lines.at(-4)!, lines.at(-3)!, 'ended after checkpoint 3: a failover point']);
    assert.match(lines.at(-3)!, /^epoch 3: \d+ pages, \d+ bytes$/);
    assert.match(lines.at(-1)!, /^summary: xl-framed libxl stream, libxc v3, x86 HVM, 3 checkpoints/);
    assert.equal(r.stderr, '');
    // A bare libxl Remus stream (no xl header) ends cleanly by the same rule.
    const bare = runTandem(['stream', 'inspect', '-'], { input: remusShaped(stream) });
    assert.equal(bare.status, 0, bare.stderr);
    assert.match(bare.stdout, /ended after checkpoint 3: a failover point\nsummary: libxl stream/);
  });

  test('the same stream cut inside an epoch is a truncation: one line, exit 1', () => {
    const stream = readFileSync(save('remus-cut.stream', ['--checkpoints', '3', '--pages', '64']));
    const remus = xlFile(remusShaped(stream));
    const r = runTandem(['stream', 'inspect', write('cut.xl', remus.subarray(0, remus.length - 30))]);
    assert.equal(r.status, 1);
    assertOneLineError(r.stderr, /epoch 3 is incomplete \(the last complete checkpoint is 2\) \[ERR_STREAM_TRUNCATED\]$/);
    assert.doesNotMatch(r.stdout, /failover point/);
  });

  test('a malformed config is reported, and the stream still read: exit 0', () => {
    const stream = readFileSync(save('badcfg.stream', ['--format', 'libxl', '--pages', '8']));
    const good = xlFile(stream, '{"c_info": {"name": "x"}}');
    const bytes = Buffer.from(good);
    bytes[52 + 10] = 0x7b; // '{' where the JSON wants a string or '}': still 52 + length bytes, NUL-terminated
    const r = runTandem(['stream', 'inspect', write('badcfg.xl', bytes)]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout.split('\n')[1], /^xl config: 26 bytes of JSON, malformed: not valid JSON: /);
    assert.match(r.stdout, /summary: xl-framed libxl stream/);
  });

  test('a corrupt xl header fails with one line naming the code', () => {
    const stream = readFileSync(save('badhdr.stream', ['--format', 'libxl', '--pages', '8']));
    const cases: [(b: Buffer) => void, RegExp][] = [
      [(b) => (b[20] = 0x21), /xl header at offset 0: magic is not .*\[ERR_XL_BAD_MAGIC\]$/],
      [(b) => b.writeUInt32LE(0x10003, 36), /xl header at offset 36: mandatory flags 0x10000 are unknown.*\[ERR_XL_UNKNOWN_MANDATORY_FLAGS\]$/],
      [(b) => b.writeUInt32LE(0xfffffff0, 44), /xl header at offset 44: optional data of 4294967280 bytes exceeds the limit .*\[ERR_XL_OPTIONAL_TOO_LARGE\]$/],
    ];
    for (const [patch, pattern] of cases) {
      const bytes = xlFile(stream);
      patch(bytes);
      const r = runTandem(['stream', 'inspect', '-'], { input: bytes });
      assert.equal(r.status, 1);
      assertOneLineError(r.stderr, pattern);
    }
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
    // Which domain: exactly one of --sim and --xen; --xen takes a guest's domain id and none of the sim's stream options.
    const which: [string[], RegExp][] = [
      [[], /--sim \(the embedded simulated one\) or --xen DOMID/],
      [['--sim', '--xen', '5'], /--sim \(the embedded simulated one\) or --xen DOMID/],
      [['--xen', '0'], /--xen: expected an integer in 1\.\.32751, got 0/],
      [['--xen', '32752'], /--xen: expected an integer in 1\.\.32751/],
      [['--xen', '5', '--format', 'libxl'], /--format is for --sim/],
      [['--xen', '5', '--checkpoints', '3', '--keep'], /--keep is for a plain save/],
      [['--sim', '--keep'], /--keep is for --xen/],
    ];
    for (const [args, pattern] of which) {
      const r = runTandem(['save', '--out', out, ...args]);
      assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
      assertOneLineError(r.stderr, pattern);
    }
    // restore: only --xen; a missing file, or one without a whole checkpoint, is one error line and exit 1.
    const r1 = runTandem(['restore', '--in', out]);
    assert.equal(r1.status, 2);
    assertOneLineError(r1.stderr, /pass --xen/);
    const r2 = runTandem(['restore', '--xen', '--in', `${out}.missing`]);
    assert.equal(r2.status, 1);
    assertOneLineError(r2.stderr, /no such file or directory.*\.missing/);
    writeFileSync(`${out}.empty`, '');
    const r3 = runTandem(['restore', '--xen', '--in', `${out}.empty`]);
    assert.equal(r3.status, 1);
    assertOneLineError(r3.stderr, /holds no whole checkpoint.*nothing was restored \[ERR_XEN_RESTORE_FAILED\]/);
  });
});
