import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  encodeDomainHeader,
  encodeImageHeader,
  encodeLibxlHeader,
  isImageMarker,
  isLibxlIdent,
  parseDomainHeader,
  parseImageHeader,
  parseLibxlHeader,
} from '../../src/stream/headers.js';
import {
  DOMAIN_HEADER_HVM_417_HEX,
  DOMAIN_HEADER_PV_417_HEX,
  HVM_417,
  IMAGE_HEADER_V2_HEX,
  IMAGE_HEADER_V3_HEX,
  LIBXL_HEADER_HEX,
  LIBXL_HEADER_LEGACY_HEX,
  PV_417,
  assertStreamError,
  hex,
} from './fixtures.js';

const IMG = 'libxc image header';
const DOM = 'libxc domain header';
const XL = 'libxl header';

describe('image header', () => {
  test('v2 golden bytes', () => {
    assert.equal(encodeImageHeader({ version: 2 }).toString('hex'), hex(IMAGE_HEADER_V2_HEX).toString('hex'));
    assert.deepEqual(parseImageHeader(hex(IMAGE_HEADER_V2_HEX), 0), { version: 2 });
  });

  test('v3 golden bytes', () => {
    assert.equal(encodeImageHeader({ version: 3 }).toString('hex'), hex(IMAGE_HEADER_V3_HEX).toString('hex'));
    assert.deepEqual(parseImageHeader(hex(IMAGE_HEADER_V3_HEX), 0), { version: 3 });
  });

  test('marker: any zero bit is refused (a legacy image)', () => {
    for (let byte = 0; byte < 8; byte++) {
      const b = hex(IMAGE_HEADER_V3_HEX);
      b[byte] = 0xfe;
      assertStreamError(() => parseImageHeader(b, 100), { code: 'ERR_STREAM_BAD_MARKER', offset: 100, record: IMG });
    }
  });

  test('id other than "XENF" is refused', () => {
    const b = hex('ffffffff ffffffff | 58454e47 | 00000003 | 0000 0000 00000000');
    assertStreamError(() => parseImageHeader(b, 24), { code: 'ERR_STREAM_BAD_IDENT', offset: 24, record: IMG });
  });

  for (const version of [0, 1, 4, 0x03000000]) {
    test(`version ${version} is refused`, () => {
      const b = hex(IMAGE_HEADER_V3_HEX);
      b.writeUInt32BE(version, 12);
      assertStreamError(() => parseImageHeader(b, 8), { code: 'ERR_STREAM_BAD_VERSION', offset: 8, record: IMG });
    });
  }

  for (const options of [0x0002, 0x0100, 0x8000, 0xfffe]) {
    test(`reserved option bits 0x${options.toString(16)} are refused`, () => {
      const b = hex(IMAGE_HEADER_V3_HEX);
      b.writeUInt16BE(options, 16);
      assertStreamError(() => parseImageHeader(b, 0), { code: 'ERR_STREAM_BAD_OPTIONS', offset: 0, record: IMG });
    });
  }

  test('the big-endian option bit is refused (x86 streams are little-endian)', () => {
    const b = hex('ffffffff ffffffff | 58454e46 | 00000003 | 0001 | 0000 | 00000000');
    assertStreamError(() => parseImageHeader(b, 0), { code: 'ERR_STREAM_BAD_OPTIONS', offset: 0, record: IMG });
  });

  test('non-zero reserved fields are refused', () => {
    for (const at of [18, 19, 20, 23]) {
      const b = hex(IMAGE_HEADER_V2_HEX);
      b[at] = 1;
      assertStreamError(() => parseImageHeader(b, 0), { code: 'ERR_STREAM_RESERVED_NONZERO', offset: 0, record: IMG });
    }
  });

  test('isImageMarker', () => {
    assert.equal(isImageMarker(hex('ffffffffffffffff')), true);
    assert.equal(isImageMarker(hex('ffffffff7fffffff')), false);
    assert.equal(isImageMarker(hex('00000000ffffffff')), false);
  });
});

describe('domain header', () => {
  test('HVM, Xen 4.17 golden bytes', () => {
    assert.equal(encodeDomainHeader(HVM_417).toString('hex'), hex(DOMAIN_HEADER_HVM_417_HEX).toString('hex'));
    assert.deepEqual(parseDomainHeader(hex(DOMAIN_HEADER_HVM_417_HEX), 24), { type: 2, pageShift: 12, xenMajor: 4, xenMinor: 17 });
  });

  test('PV, Xen 4.17 golden bytes', () => {
    assert.equal(encodeDomainHeader(PV_417).toString('hex'), hex(DOMAIN_HEADER_PV_417_HEX).toString('hex'));
    assert.deepEqual(parseDomainHeader(hex(DOMAIN_HEADER_PV_417_HEX), 24), { type: 1, pageShift: 12, xenMajor: 4, xenMinor: 17 });
  });

  test('xen_major 0 (legacy conversion tool) is accepted', () => {
    assert.deepEqual(parseDomainHeader(hex('02000000 0c00 0000 00000000 01000000'), 24), { type: 2, pageShift: 12, xenMajor: 0, xenMinor: 1 });
  });

  for (const type of [0, 3, 0x100, 0xffffffff]) {
    test(`domain type 0x${type.toString(16)} is refused`, () => {
      const b = hex(DOMAIN_HEADER_HVM_417_HEX);
      b.writeUInt32LE(type, 0);
      assertStreamError(() => parseDomainHeader(b, 24), { code: 'ERR_STREAM_BAD_DOMAIN_TYPE', offset: 24, record: DOM });
    });
  }

  for (const shift of [0, 11, 13, 21]) {
    test(`page shift ${shift} is refused`, () => {
      const b = hex(DOMAIN_HEADER_HVM_417_HEX);
      b.writeUInt16LE(shift, 4);
      assertStreamError(() => parseDomainHeader(b, 48), { code: 'ERR_STREAM_BAD_PAGE_SHIFT', offset: 48, record: DOM });
    });
  }

  test('non-zero reserved field is refused', () => {
    for (const at of [6, 7]) {
      const b = hex(DOMAIN_HEADER_HVM_417_HEX);
      b[at] = 0x80;
      assertStreamError(() => parseDomainHeader(b, 24), { code: 'ERR_STREAM_RESERVED_NONZERO', offset: 24, record: DOM });
    }
  });
});

describe('libxl header', () => {
  test('golden bytes', () => {
    assert.equal(encodeLibxlHeader().toString('hex'), hex(LIBXL_HEADER_HEX).toString('hex'));
    assert.deepEqual(parseLibxlHeader(hex(LIBXL_HEADER_HEX), 0), { version: 2, legacy: false });
  });

  test('the legacy-format option bit is accepted and reported', () => {
    assert.deepEqual(parseLibxlHeader(hex(LIBXL_HEADER_LEGACY_HEX), 0), { version: 2, legacy: true });
  });

  test('bad ident is refused', () => {
    assertStreamError(() => parseLibxlHeader(hex('4c6962786c466d75 00000002 00000000'), 0), { code: 'ERR_STREAM_BAD_IDENT', offset: 0, record: XL });
    assertStreamError(() => parseLibxlHeader(hex('6c6962786c466d74 00000002 00000000'), 0), { code: 'ERR_STREAM_BAD_IDENT', offset: 0, record: XL });
  });

  for (const version of [0, 1, 3, 0x02000000]) {
    test(`version ${version} is refused`, () => {
      const b = hex(LIBXL_HEADER_HEX);
      b.writeUInt32BE(version, 8);
      assertStreamError(() => parseLibxlHeader(b, 0), { code: 'ERR_STREAM_BAD_VERSION', offset: 0, record: XL });
    });
  }

  for (const options of [0x4, 0x100, 0x80000000, 0xfffffffc]) {
    test(`reserved option bits 0x${options.toString(16)} are refused`, () => {
      const b = hex(LIBXL_HEADER_HEX);
      b.writeUInt32BE(options, 12);
      assertStreamError(() => parseLibxlHeader(b, 0), { code: 'ERR_STREAM_BAD_OPTIONS', offset: 0, record: XL });
    });
  }

  test('the big-endian option bit is refused', () => {
    assertStreamError(() => parseLibxlHeader(hex('4c6962786c466d74 00000002 00000001'), 0), { code: 'ERR_STREAM_BAD_OPTIONS', offset: 0, record: XL });
    assertStreamError(() => parseLibxlHeader(hex('4c6962786c466d74 00000002 00000003'), 0), { code: 'ERR_STREAM_BAD_OPTIONS', offset: 0, record: XL });
  });

  test('isLibxlIdent', () => {
    assert.equal(isLibxlIdent(hex(LIBXL_HEADER_HEX)), true);
    assert.equal(isLibxlIdent(Buffer.from('LibxlFmt', 'latin1')), true);
    assert.equal(isLibxlIdent(Buffer.from('LibxlFmT', 'latin1')), false);
    assert.equal(isLibxlIdent(hex('ffffffffffffffff')), false);
  });
});
