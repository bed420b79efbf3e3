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
import { verifyCheckpointed, verifyStream } from '../helpers/xen.js';

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
