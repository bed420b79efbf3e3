/**
 * Streams Tandem writes, checked by Xen's own verifier (Debian xen-utils-4.17).
 *
 * Not covered here, on purpose: EMULATOR_XENSTORE_DATA with a body. Xen
 * 4.17's verifier compares a bytes value with a str when it checks that body
 * under Python 3, so it rejects every non-empty one, valid or not; that
 * record is covered by Tandem's own golden-byte tests (records.test.ts).
 * Unknown optional records are not sent to it either: it rejects every type
 * it does not know, although the spec lets a reader skip optional ones.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { after, describe, test } from 'node:test';
import { StreamSaver } from '../helpers/stream-saver.js';
import { SimDomain } from '../../src/domain/sim/domain.js';
import { StreamDecoder } from '../../src/stream/decoder.js';
import { StreamEncoder, frameRecord } from '../../src/stream/encoder.js';
import { ColoControl, LibxcType, LibxlType, PageType, TandemType } from '../../src/stream/format.js';
import { AckStatus, encodeBackRecord } from '../../src/transport/backchannel.js';
import { recordCode } from '../../src/stream/records.js';
import { saveSim, tempDir } from '../helpers/cli.js';
import { PYTHON, XEN_PYTHONPATH, requireXenVerifier, verifyCheckpointed, verifyStream } from '../helpers/xen.js';
import { ErrorCodes, StreamError } from '../../src/errors.js';
import { ImageReader } from '../../src/stream/image-reader.js';
import { XL_FIXED_SIZE, XL_MAGIC, XlMandatoryFlag, parseXlHeader } from '../../src/stream/xl-header.js';
import { remusShaped, xlFile } from './xl-fixtures.js';

const tmp = tempDir();
after(() => tmp.cleanup());

const save = (name: string, args: string[]): string => saveSim(tmp, name, args);

/** The (layer, type) sequence Tandem's decoder reads from a file. */
function tandemRecords(file: string): [string, number][] {
  const d = new StreamDecoder();
  const out: [string, number][] = [];
  for (const item of d.push(readFileSync(file))) {
    if (item.kind === 'record') out.push([item.record.layer, recordCode(item.record)]);
  }
  d.end();
  return out;
}

describe('plain streams pass verify-stream-v2', () => {
  for (const format of ['libxc', 'libxl'] as const) {
    for (const version of ['2', '3']) {
      test(`${format} v${version}`, () => {
        const file = save(`plain-${format}-${version}.stream`, ['--format', format, '--stream-version', version, '--pages', '600']);
        const r = verifyStream(file, format);
        assert.equal(r.status, 0, `verifier rejected the stream:\n${r.stderr}`);
        assert.match(r.stdout, new RegExp(`Libxc Image Header: Version ${version}, little endian`));
        assert.match(r.stdout, /Domain Header: x86 HVM from Xen 4\.17/);
        // 600 pages in batches of 1024: one PAGE_DATA record.
        assert.match(r.stdout, /Squashed 1 Page Data records together/);
        assert.match(r.stdout, /Libxc Record: HVM params[\s\S]*Libxc Record: HVM context[\s\S]*Libxc Record: End/);
        if (version === '3') assert.match(r.stdout, /x86 CPUID policy[\s\S]*x86 MSR policy[\s\S]*Static data end/);
        else assert.doesNotMatch(r.stdout, /Static data end/);
        if (format === 'libxl') assert.match(r.stdout, /Libxl Record: Emulator context, length \d+\n\s+Index 0, type Qemu Upstream\nLibxl Record: End/);
      });
    }
  }

  test('a PV-shaped stream with every PV record type', () => {
    const e = new StreamEncoder('libxc');
    const chunks: Buffer[] = [];
    chunks.push(...e.imageHeader(3), ...e.domainHeader({ type: 1, pageShift: 12, xenMajor: 4, xenMinor: 17 }));
    chunks.push(...e.record({ layer: 'libxc', type: 'X86_PV_INFO', guestWidth: 8, ptLevels: 4 }));
    chunks.push(...e.record({ layer: 'libxc', type: 'X86_CPUID_POLICY', leaves: [{ leaf: 0, subleaf: 0xffffffff, a: 0xd, b: 1, c: 2, d: 3 }] }));
    chunks.push(...e.record({ layer: 'libxc', type: 'X86_MSR_POLICY', msrs: [{ idx: 0xce, flags: 0, val: 1n }] }));
    chunks.push(...e.record({ layer: 'libxc', type: 'STATIC_DATA_END' }));
    chunks.push(...e.record({ layer: 'libxc', type: 'X86_PV_P2M_FRAMES', startPfn: 0, endPfn: 511, frames: [0x1234n] }));
    const types = [PageType.NOTAB, PageType.L1TAB, PageType.L4TAB_PIN, PageType.XTAB, PageType.BROKEN, PageType.XALLOC];
    const pages = [Buffer.alloc(4096, 1), Buffer.alloc(4096, 2), Buffer.alloc(4096, 3)];
    chunks.push(...e.record({ layer: 'libxc', type: 'PAGE_DATA', pfns: [0, 1, 2, 3, 4, 5], types, pages }));
    chunks.push(...e.record({ layer: 'libxc', type: 'VERIFY' }));
    chunks.push(...e.record({ layer: 'libxc', type: 'PAGE_DATA', pfns: [0], types: [PageType.NOTAB], pages: [pages[0]] }));
    chunks.push(...e.record({ layer: 'libxc', type: 'X86_TSC_INFO', mode: 1, khz: 3_000_000, nsec: 99n, incarnation: 2 }));
    chunks.push(...e.record({ layer: 'libxc', type: 'SHARED_INFO', data: Buffer.alloc(4096, 7) }));
    for (const type of ['X86_PV_VCPU_BASIC', 'X86_PV_VCPU_EXTENDED', 'X86_PV_VCPU_XSAVE', 'X86_PV_VCPU_MSRS'] as const) {
      chunks.push(...e.record({ layer: 'libxc', type, vcpuId: 0, context: Buffer.alloc(40, 9) }));
    }
    chunks.push(...e.record({ layer: 'libxc', type: 'END' }));
    const file = tmp.path('pv.stream');
    writeFileSync(file, Buffer.concat(chunks));
    const r = verifyStream(file, 'libxc');
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /64bit guest, 4 levels of pagetables/);
    assert.match(r.stdout, /Start pfn 0x0, End 0x1ff/);
    assert.match(r.stdout, /vcpu0 msrs context, 40 bytes/);
    assert.match(r.stdout, /Libxc Record: Shared info/);
  });

  test('the verifier does reject a corrupted Tandem stream (negative control)', () => {
    const file = save('corrupt.stream', ['--format', 'libxc', '--pages', '64']);
    const bytes = readFileSync(file);
    // First record after the 40 bytes of headers: set its type to an unknown mandatory one.
    bytes.writeUInt32LE(0x42, 40);
    writeFileSync(file, bytes);
    const r = verifyStream(file, 'libxc');
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /Unrecognised record type 0x42/);
  });
});

describe("checkpointed streams pass Xen's verifier classes record by record", () => {
  for (const version of ['2', '3']) {
    test(`libxl, libxc v${version}, 5 epochs`, () => {
      const file = save(`ckpt-${version}.stream`, ['--checkpoints', '5', '--stream-version', version, '--pages', '1500']);
      const r = verifyCheckpointed(file);
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.epochs, 5);
      // Xen's classes and Tandem's decoder see the same records in the same order.
      assert.deepEqual(r.records, tandemRecords(file));
      const seq = r.records.map(([layer, type]) => `${layer}:${type}`);
      assert.equal(seq[0], `libxl:${LibxlType.LIBXC_CONTEXT}`);
      assert.deepEqual(seq.slice(-2), [`libxc:${LibxcType.END}`, `libxl:${LibxlType.END}`]);
      assert.equal(seq.filter((s) => s === `libxl:${LibxlType.CHECKPOINT_END}`).length, 5);
      assert.equal(seq.filter((s) => s === `libxl:${LibxlType.EMULATOR_CONTEXT}`).length, 5);
    });
  }

  test('a stream with a torn epoch is rejected (negative control)', () => {
    const file = save('torn.stream', ['--checkpoints', '2', '--pages', '64']);
    const bytes = readFileSync(file);
    writeFileSync(file, bytes.subarray(0, bytes.length - 4096 - 100));
    const r = verifyCheckpointed(file);
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /stream error/);
  });
});

describe("COLO streams and the back-channel pass Xen's verifier classes", () => {
  /** Two checkpoints, the second announced with CHECKPOINT_STATE, then the orderly END. */
  function coloStream(): Buffer {
    const domain = new SimDomain({ pages: 64, now: () => 1n });
    const chunks: Buffer[] = [];
    const saver = new StreamSaver(domain, { framing: 'libxl', version: 3, colo: true }, (c) => chunks.push(...c.map((b) => Buffer.from(b))));
    saver.start();
    saver.sendPages(Array.from({ length: 64 }, (_, i) => i));
    saver.endOfCheckpoint();
    saver.checkpoint();
    saver.newCheckpoint();
    saver.sendPages([3, 9]);
    saver.endOfCheckpoint();
    saver.checkpoint();
    saver.end();
    return Buffer.concat(chunks);
  }

  test('a COLO stream with its announcements and orderly END', () => {
    const file = tmp.path('colo.stream');
    writeFileSync(file, coloStream());
    const r = verifyCheckpointed(file, { colo: true });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.epochs, 2);
    const seq = r.records!.map(([layer, type]) => `${layer}:${type}`);
    assert.equal(seq.filter((s) => s === `libxl:${LibxlType.CHECKPOINT_STATE}`).length, 1);
    assert.equal(seq.at(-1), `libxl:${LibxlType.END}`);
    assert.ok(!seq.includes(`libxc:${LibxcType.END}`), 'a COLO stream stops without libxc END');
  });

  test('read as a plain checkpointed stream, the same bytes are refused (negative control)', () => {
    const file = tmp.path('colo-as-plain.stream');
    writeFileSync(file, coloStream());
    const r = verifyCheckpointed(file);
    assert.notEqual(r.status, 0);
  });

  test('the back-channel: SVM_SUSPENDED, the dirty pfn list, the ack, SVM_READY, SVM_RESUMED', () => {
    const file = tmp.path('back.channel');
    writeFileSync(
      file,
      Buffer.concat([
        encodeBackRecord({ type: 'CHECKPOINT_STATE', controlId: ColoControl.SVM_SUSPENDED }),
        encodeBackRecord({ type: 'CHECKPOINT_DIRTY_PFN_LIST', pfns: Uint32Array.from([1, 7, 4095]) }),
        encodeBackRecord({ type: 'ACK', epoch: 2, status: AckStatus.APPLIED, reason: '' }),
        encodeBackRecord({ type: 'CHECKPOINT_STATE', controlId: ColoControl.SVM_READY }),
        encodeBackRecord({ type: 'CHECKPOINT_STATE', controlId: ColoControl.SVM_RESUMED }),
      ]),
    );
    const r = verifyCheckpointed(file, { backChannel: true, optional: [TandemType.TANDEM_ACK] });
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(r.records, [
      ['libxl', LibxlType.CHECKPOINT_STATE],
      ['libxc', LibxcType.CHECKPOINT_DIRTY_PFN_LIST],
      ['libxl', TandemType.TANDEM_ACK],
      ['libxl', LibxlType.CHECKPOINT_STATE],
      ['libxl', LibxlType.CHECKPOINT_STATE],
    ]);
  });

  test('a dirty pfn list that is not whole u64 pfns, or bad padding, is refused (negative controls)', () => {
    const bad = tmp.path('back-bad.channel');
    writeFileSync(bad, Buffer.concat(frameRecord(LibxcType.CHECKPOINT_DIRTY_PFN_LIST, [Buffer.alloc(12)])));
    const r = verifyCheckpointed(bad, { backChannel: true });
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /not whole u64 pfns/);
    const padded = Buffer.from(encodeBackRecord({ type: 'CHECKPOINT_STATE', controlId: ColoControl.SVM_READY }));
    padded[padded.length - 1] = 1;
    writeFileSync(bad, padded);
    const p = verifyCheckpointed(bad, { backChannel: true });
    assert.notEqual(p.status, 0);
    assert.match(p.stderr, /Padding/);
  });
});

/** (layer, type) of every record, and how the input ended, read by Tandem's ImageReader as inspect reads it. */
function readerRecords(bytes: Buffer): { records: [string, number][]; end: string } {
  const r = new ImageReader({ endAtCheckpoint: true });
  const records: [string, number][] = [];
  for (const item of r.push(bytes)) if (item.kind === 'record') records.push([item.record.layer, recordCode(item.record)]);
  const end = r.end();
  return { records, end: end.kind === 'end' ? 'END' : 'checkpoint' };
}

/** The StreamError Tandem's reader throws for `bytes`, pushed whole then ended. */
function readerError(bytes: Buffer): StreamError {
  const r = new ImageReader({ endAtCheckpoint: true });
  try {
    r.push(bytes);
    r.end();
  } catch (err) {
    assert.ok(err instanceof StreamError, String(err));
    return err;
  }
  assert.fail("Tandem's reader accepted it");
}

describe('xl save files', () => {
  test("Xen's own xl module agrees on the magic, the header layout and the stream-v2 flag", () => {
    requireXenVerifier();
    const script = "from xen.migration import xl; import struct, sys; sys.stdout.write('%s %d %d' % (xl.MAGIC.encode('latin1').hex(), struct.calcsize(xl.HEADER_FORMAT), xl.MANDATORY_FLAG_STREAMV2))";
    const r = spawnSync(PYTHON, ['-c', script], { env: { ...process.env, PYTHONPATH: XEN_PYTHONPATH }, encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    // The 32-byte magic, then four u32s (byte order, mandatory flags, optional flags, optional length), bit 1 for v2.
    assert.equal(r.stdout, `${XL_MAGIC.toString('hex')} ${XL_FIXED_SIZE - XL_MAGIC.length} ${XlMandatoryFlag.STREAM_V2}`);
  });

  for (const version of ['2', '3']) {
    test(`a plain libxl v${version} stream of Tandem's, wrapped in an xl header, passes verify-stream-v2 -f xl and reads back`, () => {
      const streamFile = save(`xl-plain-${version}.stream`, ['--format', 'libxl', '--stream-version', version, '--pages', '600']);
      const stream = readFileSync(streamFile);
      const file = tmp.path(`plain-${version}.xl`);
      writeFileSync(file, xlFile(stream));
      const r = verifyStream(file, 'xl');
      assert.equal(r.status, 0, `verifier rejected the file:\n${r.stderr}`);
      assert.match(r.stdout, /^Processed xl header\nLibxl Header: little endian\n/);
      assert.match(r.stdout, new RegExp(`Libxc Image Header: Version ${version}, little endian`));
      assert.match(r.stdout, /Libxl Record: End, length 0\n$/);
      // Tandem's reader sees the stream's records, unchanged by the wrapping.
      assert.deepEqual(readerRecords(readFileSync(file)), { records: tandemRecords(streamFile), end: 'END' });
    });
  }

  test('without a config (mandatory flags 2) the verifier accepts it too', () => {
    const stream = readFileSync(save('xl-noconfig.stream', ['--format', 'libxl', '--pages', '64']));
    const file = tmp.path('noconfig.xl');
    const bytes = xlFile(stream, null);
    assert.equal(parseXlHeader(bytes).mandatoryFlags, 2);
    writeFileSync(file, bytes);
    const r = verifyStream(file, 'xl');
    assert.equal(r.status, 0, r.stderr);
  });

  test('a corrupted xl header is rejected by Xen\'s verifier and by Tandem\'s reader (negative controls)', () => {
    const good = xlFile(readFileSync(save('xl-bad.stream', ['--format', 'libxl', '--pages', '64'])));
    const size = parseXlHeader(good).size;
    const corruptions: { name: string; patch: (b: Buffer) => void; code: string; offset: number }[] = [
      { name: 'a magic byte', patch: (b) => (b[9] ^= 0x01), code: ErrorCodes.XL_BAD_MAGIC, offset: 0 },
      { name: 'the stream-v2 flag cleared', patch: (b) => b.writeUInt32LE(XlMandatoryFlag.CONFIG_JSON, 36), code: ErrorCodes.XL_LEGACY_STREAM, offset: 36 },
      { name: 'the optional data 8 bytes too long', patch: (b) => b.writeUInt32LE(b.readUInt32LE(44) + 8, 44), code: ErrorCodes.STREAM_BAD_IDENT, offset: size + 8 },
      { name: 'the optional data 4 bytes too short', patch: (b) => b.writeUInt32LE(b.readUInt32LE(44) - 4, 44), code: ErrorCodes.XL_BAD_OPTIONAL_DATA, offset: 48 },
    ];
    for (const c of corruptions) {
      const bytes = Buffer.from(good);
      c.patch(bytes);
      const file = tmp.path('corrupt.xl');
      writeFileSync(file, bytes);
      const r = verifyStream(file, 'xl');
      assert.notEqual(r.status, 0, `${c.name}: Xen's verifier accepted it`);
      assert.match(r.stderr, /Stream Error/, c.name);
      const err = readerError(bytes);
      assert.equal(err.code, c.code, `${c.name}: ${err.message}`);
      assert.equal(err.offset, c.offset, c.name);
    }
  });

  test("an xl-framed Remus stream (no END) passes Xen's verifier classes and ends at its last checkpoint in both readers", () => {
    const stream = readFileSync(save('xl-remus.stream', ['--checkpoints', '5', '--pages', '300']));
    const file = tmp.path('remus.xl');
    const bytes = xlFile(remusShaped(stream));
    writeFileSync(file, bytes);
    const r = verifyCheckpointed(file, { xl: true, remus: true });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.epochs, 5);
    assert.equal(r.end, 'checkpoint');
    assert.deepEqual(readerRecords(bytes), { records: r.records, end: 'checkpoint' });
    assert.equal(r.records!.at(-1)![1], LibxlType.CHECKPOINT_END);

    // Negative controls: without the Remus rule the driver wants END; cut inside an epoch both refuse it.
    assert.notEqual(verifyCheckpointed(file, { xl: true }).status, 0);
    const torn = tmp.path('remus-torn.xl');
    writeFileSync(torn, bytes.subarray(0, bytes.length - 4096 - 100));
    const t = verifyCheckpointed(torn, { xl: true, remus: true });
    assert.notEqual(t.status, 0);
    assert.equal(readerError(bytes.subarray(0, bytes.length - 4096 - 100)).code, ErrorCodes.STREAM_TRUNCATED);
  });
});
