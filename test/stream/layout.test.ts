import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { ErrorCode } from '../../src/errors.js';
import { DomainType, LibxcType as XC, LibxlType as XL, type Layer } from '../../src/stream/format.js';
import { StreamLayout, type Framing } from '../../src/stream/layout.js';
import { assertStreamError } from './fixtures.js';

const at = (offset: number): { offset: number } => ({ offset });

/** A layout past its headers (and, for libxl, LIBXC_CONTEXT), at the first libxc record. */
function started(framing: Framing, version: 2 | 3, type: number): StreamLayout {
  const l = new StreamLayout(framing);
  if (framing === 'libxl') {
    l.libxlHeader(at(0));
    l.record('libxl', XL.LIBXC_CONTEXT, at(16));
  }
  l.imageHeader(version, at(24));
  l.domainHeader(type, at(48));
  return l;
}

/** Same, with static data finished (STATIC_DATA_END for v3; X86_PV_INFO + P2M frames for PV). */
function inDynamic(framing: Framing, version: 2 | 3, type: number): StreamLayout {
  const l = started(framing, version, type);
  if (type === DomainType.X86_PV) l.record('libxc', XC.X86_PV_INFO, at(64));
  if (version === 3) l.record('libxc', XC.STATIC_DATA_END, at(72));
  if (type === DomainType.X86_PV) l.record('libxc', XC.X86_PV_P2M_FRAMES, at(80));
  return l;
}

function refuses(l: StreamLayout, layer: Layer, code: number, want: ErrorCode, name: string): void {
  assertStreamError(() => l.record(layer, code, at(1234)), { code: want, offset: 1234, record: name });
}

const HVM = DomainType.X86_HVM;
const PV = DomainType.X86_PV;

describe('StreamLayout: libxl framing', () => {
  test('a checkpointed stream hands over between the layers', () => {
    const l = new StreamLayout('libxl');
    assert.deepEqual([l.expecting, l.layer], ['libxl-header', 'libxl']);
    l.libxlHeader(at(0));
    assert.deepEqual([l.expecting, l.layer], ['record', 'libxl']);
    l.record('libxl', XL.LIBXC_CONTEXT, at(16));
    assert.deepEqual([l.expecting, l.layer], ['image-header', 'libxc']);
    l.imageHeader(3, at(24));
    assert.deepEqual([l.expecting, l.libxcVersion], ['domain-header', 3]);
    l.domainHeader(HVM, at(48));
    assert.deepEqual([l.expecting, l.layer, l.domainType], ['record', 'libxc', HVM]);
    l.record('libxc', XC.STATIC_DATA_END, at(64));
    for (let epoch = 1; epoch <= 3; epoch++) {
      for (const code of [XC.PAGE_DATA, XC.X86_TSC_INFO, XC.HVM_PARAMS, XC.HVM_CONTEXT]) l.record('libxc', code, at(100));
      l.record('libxc', XC.CHECKPOINT, at(200));
      assert.deepEqual([l.expecting, l.layer, l.checkpoints], ['record', 'libxl', epoch]);
      l.record('libxl', XL.EMULATOR_XENSTORE_DATA, at(300));
      l.record('libxl', XL.EMULATOR_CONTEXT, at(300));
      l.record('libxl', XL.CHECKPOINT_STATE, at(300));
      l.record('libxl', XL.CHECKPOINT_END, at(400));
      assert.deepEqual([l.expecting, l.layer, l.checkpoints], ['record', 'libxc', epoch]);
    }
    l.record('libxc', XC.END, at(500));
    assert.deepEqual([l.expecting, l.layer], ['record', 'libxl']);
    l.record('libxl', XL.EMULATOR_CONTEXT, at(508));
    l.record('libxl', XL.END, at(600));
    assert.equal(l.expecting, 'done');
  });

  test('CHECKPOINT_END without a preceding CHECKPOINT is refused', () => {
    const l = new StreamLayout('libxl');
    l.libxlHeader(at(0));
    refuses(l, 'libxl', XL.CHECKPOINT_END, 'ERR_RECORD_OUT_OF_ORDER', 'libxl CHECKPOINT_END');
    const l2 = inDynamic('libxl', 3, HVM);
    l2.record('libxc', XC.CHECKPOINT, at(80));
    l2.record('libxl', XL.CHECKPOINT_END, at(88));
    l2.record('libxc', XC.END, at(96));
    refuses(l2, 'libxl', XL.CHECKPOINT_END, 'ERR_RECORD_OUT_OF_ORDER', 'libxl CHECKPOINT_END');
  });

  test('a second LIBXC_CONTEXT is refused', () => {
    const l = inDynamic('libxl', 3, HVM);
    l.record('libxc', XC.CHECKPOINT, at(80));
    refuses(l, 'libxl', XL.LIBXC_CONTEXT, 'ERR_RECORD_OUT_OF_ORDER', 'libxl LIBXC_CONTEXT');
    const l2 = inDynamic('libxl', 3, HVM);
    l2.record('libxc', XC.END, at(80));
    refuses(l2, 'libxl', XL.LIBXC_CONTEXT, 'ERR_RECORD_OUT_OF_ORDER', 'libxl LIBXC_CONTEXT');
  });

  test('libxl END before libxc END is refused', () => {
    const l = new StreamLayout('libxl');
    l.libxlHeader(at(0));
    refuses(l, 'libxl', XL.END, 'ERR_RECORD_OUT_OF_ORDER', 'libxl END');
    const l2 = inDynamic('libxl', 3, HVM);
    l2.record('libxc', XC.CHECKPOINT, at(80));
    refuses(l2, 'libxl', XL.END, 'ERR_RECORD_OUT_OF_ORDER', 'libxl END');
  });

  test('a record of the other layer is refused', () => {
    const l = new StreamLayout('libxl');
    l.libxlHeader(at(0));
    refuses(l, 'libxc', XC.PAGE_DATA, 'ERR_RECORD_OUT_OF_ORDER', 'libxc PAGE_DATA');
    const l2 = inDynamic('libxl', 3, HVM);
    refuses(l2, 'libxl', XL.EMULATOR_CONTEXT, 'ERR_RECORD_OUT_OF_ORDER', 'libxl EMULATOR_CONTEXT');
  });

  test('headers are refused out of place', () => {
    const l = new StreamLayout('libxl');
    assertStreamError(() => l.imageHeader(3, at(0)), { code: 'ERR_RECORD_OUT_OF_ORDER', offset: 0, record: 'image header' });
    assertStreamError(() => l.record('libxl', XL.END, at(0)), { code: 'ERR_RECORD_OUT_OF_ORDER', offset: 0, record: 'libxl END' });
    l.libxlHeader(at(0));
    assertStreamError(() => l.libxlHeader(at(16)), { code: 'ERR_RECORD_OUT_OF_ORDER', offset: 16, record: 'libxl header' });
    assertStreamError(() => l.domainHeader(HVM, at(16)), { code: 'ERR_RECORD_OUT_OF_ORDER', offset: 16, record: 'domain header' });
    l.record('libxl', XL.LIBXC_CONTEXT, at(16));
    assertStreamError(() => l.record('libxc', XC.END, at(24)), { code: 'ERR_RECORD_OUT_OF_ORDER', offset: 24, record: 'libxc END' });
  });

  test('unknown mandatory libxl records are refused, optional ones accepted', () => {
    const l = new StreamLayout('libxl');
    l.libxlHeader(at(0));
    l.record('libxl', 0x80000000, at(16));
    l.record('libxl', 0xfffffffe, at(24));
    assert.deepEqual([l.expecting, l.layer], ['record', 'libxl']);
    refuses(l, 'libxl', 0x06, 'ERR_RECORD_UNKNOWN_MANDATORY', 'libxl UNKNOWN_0x00000006');
    refuses(l, 'libxl', 0x7fffffff, 'ERR_RECORD_UNKNOWN_MANDATORY', 'libxl UNKNOWN_0x7fffffff');
  });

  test('anything after libxl END is trailing data', () => {
    const l = inDynamic('libxl', 3, HVM);
    l.record('libxc', XC.END, at(80));
    l.record('libxl', XL.END, at(88));
    refuses(l, 'libxl', XL.END, 'ERR_STREAM_TRAILING_DATA', 'libxl END');
    assertStreamError(() => l.libxlHeader(at(96)), { code: 'ERR_STREAM_TRAILING_DATA', offset: 96, record: 'libxl header' });
  });
});

describe('StreamLayout: COLO streams', () => {
  /** A COLO layout at its first checkpoint's end. */
  function afterFirstCheckpoint(): StreamLayout {
    const l = new StreamLayout('libxl', true);
    l.libxlHeader(at(0));
    l.record('libxl', XL.LIBXC_CONTEXT, at(16));
    l.imageHeader(3, at(24));
    l.domainHeader(HVM, at(48));
    l.record('libxc', XC.STATIC_DATA_END, at(64));
    l.record('libxc', XC.PAGE_DATA, at(72));
    l.record('libxc', XC.HVM_CONTEXT, at(80));
    l.record('libxc', XC.CHECKPOINT, at(88));
    l.record('libxl', XL.EMULATOR_CONTEXT, at(96));
    l.record('libxl', XL.CHECKPOINT_END, at(104));
    return l;
  }

  test('each checkpoint after the first is announced by a libxl CHECKPOINT_STATE, then libxc resumes', () => {
    const l = afterFirstCheckpoint();
    assert.equal(l.layer, 'libxl', 'the record after CHECKPOINT_END is libxl\'s in a COLO stream');
    l.record('libxl', XL.CHECKPOINT_STATE, at(112));
    assert.equal(l.layer, 'libxc');
    l.record('libxc', XC.PAGE_DATA, at(120));
    l.record('libxc', XC.CHECKPOINT, at(128));
    l.record('libxl', XL.CHECKPOINT_END, at(136));
    assert.equal(l.checkpoints, 2);
    assert.equal(l.layer, 'libxl');
  });

  test('anything else after CHECKPOINT_END is refused', () => {
    refuses(afterFirstCheckpoint(), 'libxl', XL.EMULATOR_CONTEXT, 'ERR_RECORD_OUT_OF_ORDER', 'libxl EMULATOR_CONTEXT');
    refuses(afterFirstCheckpoint(), 'libxc', XC.PAGE_DATA, 'ERR_RECORD_OUT_OF_ORDER', 'libxc PAGE_DATA');
  });

  test('a stopping primary ends it between checkpoints with libxl END alone; nothing may follow', () => {
    const l = afterFirstCheckpoint();
    assert.equal(l.betweenColoCheckpoints, true);
    refuses(afterFirstCheckpoint(), 'libxc', XC.END, 'ERR_RECORD_OUT_OF_ORDER', 'libxc END');
    l.record('libxl', XL.END, at(112));
    assert.equal(l.expecting, 'done');
    assert.equal(l.betweenColoCheckpoints, false);
    assertStreamError(() => l.record('libxl', XL.END, at(120)), { code: 'ERR_STREAM_TRAILING_DATA', offset: 120, record: 'libxl END' });
  });

  test('END is not a way out in the middle of an epoch', () => {
    const l = afterFirstCheckpoint();
    l.record('libxl', XL.CHECKPOINT_STATE, at(112));
    l.record('libxc', XC.PAGE_DATA, at(120));
    refuses(l, 'libxl', XL.END, 'ERR_RECORD_OUT_OF_ORDER', 'libxl END');
  });

  test('only libxl framing can be COLO', () => {
    assert.throws(() => new StreamLayout('libxc', true), RangeError);
  });
});

describe('StreamLayout: libxc framing', () => {
  test('CHECKPOINT keeps the libxc layer; END finishes the stream', () => {
    const l = inDynamic('libxc', 3, HVM);
    l.record('libxc', XC.PAGE_DATA, at(80));
    l.record('libxc', XC.CHECKPOINT, at(90));
    assert.deepEqual([l.expecting, l.layer, l.checkpoints], ['record', 'libxc', 1]);
    l.record('libxc', XC.PAGE_DATA, at(100));
    l.record('libxc', XC.CHECKPOINT, at(110));
    assert.equal(l.checkpoints, 2);
    l.record('libxc', XC.END, at(120));
    assert.equal(l.expecting, 'done');
    refuses(l, 'libxc', XC.END, 'ERR_STREAM_TRAILING_DATA', 'libxc END');
  });

  test('the libxl header and libxl records have no place in a libxc stream', () => {
    const l = new StreamLayout('libxc');
    assert.deepEqual([l.expecting, l.layer], ['image-header', 'libxc']);
    assertStreamError(() => l.libxlHeader(at(0)), { code: 'ERR_RECORD_OUT_OF_ORDER', offset: 0, record: 'libxl header' });
    const l2 = inDynamic('libxc', 3, HVM);
    refuses(l2, 'libxl', XL.END, 'ERR_RECORD_OUT_OF_ORDER', 'libxl END');
  });

  test('unknown mandatory libxc records are refused, optional ones accepted', () => {
    const l = inDynamic('libxc', 3, HVM);
    l.record('libxc', 0x80000013, at(80));
    refuses(l, 'libxc', 0x13, 'ERR_RECORD_UNKNOWN_MANDATORY', 'libxc UNKNOWN_0x00000013');
    refuses(l, 'libxc', 0x7fffffff, 'ERR_RECORD_UNKNOWN_MANDATORY', 'libxc UNKNOWN_0x7fffffff');
  });

  test('CHECKPOINT_DIRTY_PFN_LIST belongs to the back-channel only', () => {
    for (const framing of ['libxc', 'libxl'] as const) {
      refuses(inDynamic(framing, 3, HVM), 'libxc', XC.CHECKPOINT_DIRTY_PFN_LIST, 'ERR_RECORD_OUT_OF_ORDER', 'libxc CHECKPOINT_DIRTY_PFN_LIST');
      refuses(inDynamic(framing, 2, PV), 'libxc', XC.CHECKPOINT_DIRTY_PFN_LIST, 'ERR_RECORD_OUT_OF_ORDER', 'libxc CHECKPOINT_DIRTY_PFN_LIST');
    }
  });
});

describe('StreamLayout: versions', () => {
  test('v2 streams have no STATIC_DATA_END, CPUID or MSR policy', () => {
    for (const type of [HVM, PV]) {
      for (const [code, name] of [
        [XC.STATIC_DATA_END, 'STATIC_DATA_END'],
        [XC.X86_CPUID_POLICY, 'X86_CPUID_POLICY'],
        [XC.X86_MSR_POLICY, 'X86_MSR_POLICY'],
      ] as const) {
        refuses(started('libxc', 2, type), 'libxc', code, 'ERR_RECORD_NOT_IN_VERSION', `libxc ${name}`);
      }
    }
  });

  test('v3: guest state before STATIC_DATA_END is refused', () => {
    const hvmDynamic: [number, string][] = [
      [XC.PAGE_DATA, 'PAGE_DATA'],
      [XC.X86_TSC_INFO, 'X86_TSC_INFO'],
      [XC.HVM_CONTEXT, 'HVM_CONTEXT'],
      [XC.HVM_PARAMS, 'HVM_PARAMS'],
      [XC.VERIFY, 'VERIFY'],
      [XC.CHECKPOINT, 'CHECKPOINT'],
      [XC.END, 'END'],
    ];
    for (const [code, name] of hvmDynamic) refuses(started('libxc', 3, HVM), 'libxc', code, 'ERR_RECORD_OUT_OF_ORDER', `libxc ${name}`);
    const pv = started('libxl', 3, PV);
    pv.record('libxc', XC.X86_PV_INFO, at(64));
    refuses(pv, 'libxc', XC.X86_PV_P2M_FRAMES, 'ERR_RECORD_OUT_OF_ORDER', 'libxc X86_PV_P2M_FRAMES');
    refuses(pv, 'libxc', XC.SHARED_INFO, 'ERR_RECORD_OUT_OF_ORDER', 'libxc SHARED_INFO');
  });

  test('v3: static data after STATIC_DATA_END is refused, and STATIC_DATA_END only once', () => {
    const l = inDynamic('libxc', 3, HVM);
    refuses(l, 'libxc', XC.X86_CPUID_POLICY, 'ERR_RECORD_OUT_OF_ORDER', 'libxc X86_CPUID_POLICY');
    refuses(l, 'libxc', XC.X86_MSR_POLICY, 'ERR_RECORD_OUT_OF_ORDER', 'libxc X86_MSR_POLICY');
    refuses(l, 'libxc', XC.STATIC_DATA_END, 'ERR_RECORD_OUT_OF_ORDER', 'libxc STATIC_DATA_END');
    const pv = inDynamic('libxc', 3, PV);
    refuses(pv, 'libxc', XC.X86_PV_INFO, 'ERR_RECORD_OUT_OF_ORDER', 'libxc X86_PV_INFO');
  });

  test('v3: static records in any order before STATIC_DATA_END', () => {
    const l = started('libxc', 3, PV);
    for (const code of [XC.X86_MSR_POLICY, XC.X86_PV_INFO, XC.X86_CPUID_POLICY, 0x80000042, XC.STATIC_DATA_END, XC.X86_PV_P2M_FRAMES, XC.PAGE_DATA, XC.END]) {
      l.record('libxc', code, at(64));
    }
    assert.equal(l.expecting, 'done');
  });

  test('v2: the end of static data is inferred at the first guest state record', () => {
    const hvm = started('libxc', 2, HVM);
    hvm.record('libxc', XC.PAGE_DATA, at(40));
    hvm.record('libxc', XC.END, at(50));
    assert.equal(hvm.expecting, 'done');
    const pv = started('libxc', 2, PV);
    pv.record('libxc', XC.X86_PV_INFO, at(40));
    pv.record('libxc', XC.X86_PV_P2M_FRAMES, at(56));
    refuses(pv, 'libxc', XC.X86_PV_INFO, 'ERR_RECORD_OUT_OF_ORDER', 'libxc X86_PV_INFO');
  });
});

describe('StreamLayout: domain types', () => {
  const PV_ONLY: [number, string][] = [
    [XC.X86_PV_INFO, 'X86_PV_INFO'],
    [XC.X86_PV_P2M_FRAMES, 'X86_PV_P2M_FRAMES'],
    [XC.X86_PV_VCPU_BASIC, 'X86_PV_VCPU_BASIC'],
    [XC.X86_PV_VCPU_EXTENDED, 'X86_PV_VCPU_EXTENDED'],
    [XC.X86_PV_VCPU_XSAVE, 'X86_PV_VCPU_XSAVE'],
    [XC.X86_PV_VCPU_MSRS, 'X86_PV_VCPU_MSRS'],
    [XC.SHARED_INFO, 'SHARED_INFO'],
  ];
  const HVM_ONLY: [number, string][] = [
    [XC.HVM_CONTEXT, 'HVM_CONTEXT'],
    [XC.HVM_PARAMS, 'HVM_PARAMS'],
  ];

  test('PV records in an HVM stream are refused', () => {
    for (const version of [2, 3] as const) {
      for (const [code, name] of PV_ONLY) {
        refuses(inDynamic('libxc', version, HVM), 'libxc', code, 'ERR_RECORD_WRONG_DOMAIN_TYPE', `libxc ${name}`);
        refuses(started('libxl', version, HVM), 'libxc', code, 'ERR_RECORD_WRONG_DOMAIN_TYPE', `libxc ${name}`);
      }
    }
  });

  test('HVM records in a PV stream are refused', () => {
    for (const version of [2, 3] as const) {
      for (const [code, name] of HVM_ONLY) {
        refuses(inDynamic('libxc', version, PV), 'libxc', code, 'ERR_RECORD_WRONG_DOMAIN_TYPE', `libxc ${name}`);
        refuses(inDynamic('libxl', version, PV), 'libxc', code, 'ERR_RECORD_WRONG_DOMAIN_TYPE', `libxc ${name}`);
      }
    }
  });

  test('PV: X86_PV_INFO, then X86_PV_P2M_FRAMES, then PAGE_DATA', () => {
    const noInfo = started('libxc', 3, PV);
    noInfo.record('libxc', XC.STATIC_DATA_END, at(64));
    refuses(noInfo, 'libxc', XC.X86_PV_P2M_FRAMES, 'ERR_RECORD_OUT_OF_ORDER', 'libxc X86_PV_P2M_FRAMES');
    const noP2m = started('libxc', 3, PV);
    noP2m.record('libxc', XC.X86_PV_INFO, at(64));
    noP2m.record('libxc', XC.STATIC_DATA_END, at(72));
    refuses(noP2m, 'libxc', XC.PAGE_DATA, 'ERR_RECORD_OUT_OF_ORDER', 'libxc PAGE_DATA');
    const v2 = started('libxc', 2, PV);
    refuses(v2, 'libxc', XC.X86_PV_P2M_FRAMES, 'ERR_RECORD_OUT_OF_ORDER', 'libxc X86_PV_P2M_FRAMES');
  });

  test('a refused record leaves the layout unchanged (v2 PV)', () => {
    for (const early of [XC.X86_PV_P2M_FRAMES, XC.PAGE_DATA]) {
      const l = started('libxc', 2, PV);
      assert.throws(() => l.record('libxc', early, at(40)), { code: 'ERR_RECORD_OUT_OF_ORDER' });
      // Exactly as in a fresh layout, X86_PV_INFO is what is due next.
      assert.doesNotThrow(() => l.record('libxc', XC.X86_PV_INFO, at(40)));
    }
  });
});
