import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { describeXlConfig, summarizeXlConfig } from '../../src/stream/xl-config.js';
import { encodeXlHeader, parseXlHeader, type XlHeader } from '../../src/stream/xl-header.js';
import { LIBXL_DOMAIN_CONFIG } from './xl-fixtures.js';

/** A decoded header holding `config` as raw bytes (JSON flag set unless told). */
function header(config: Buffer | undefined, configJson = true): XlHeader {
  const optionalLength = config === undefined ? 0 : 4 + config.length;
  return { mandatoryFlags: configJson ? 3 : 2, optionalFlags: 0, optionalLength, config, configJson, tailLength: 0, size: 48 + optionalLength };
}
const json = (text: string): XlHeader => header(Buffer.from(`${text}\0`, 'utf8'));

describe('xl config summary', () => {
  test("libxl's JSON of a PVH guest: name, type, memory and vCPUs", () => {
    const s = summarizeXlConfig(json(LIBXL_DOMAIN_CONFIG));
    assert.deepEqual(s, { format: 'json', bytes: Buffer.byteLength(LIBXL_DOMAIN_CONFIG) + 1, valid: true, name: 'lab-guest', type: 'pvh', maxMemKiB: 131072, targetMemKiB: 131072, vcpus: 1 });
    assert.equal(describeXlConfig(s), `xl config: ${Buffer.byteLength(LIBXL_DOMAIN_CONFIG) + 1} bytes of JSON: domain "lab-guest", type pvh, memory 131072 KiB, max memory 131072 KiB, 1 vCPU`);
  });

  test('the summary of a config read back from a header the encoder wrote', () => {
    const s = summarizeXlConfig(parseXlHeader(encodeXlHeader({ configJson: LIBXL_DOMAIN_CONFIG })));
    assert.ok(s.format === 'json' && s.valid);
    assert.equal(s.name, 'lab-guest');
  });

  test('fields of the wrong type, or missing, are left out rather than trusted', () => {
    const s = summarizeXlConfig(json('{"c_info":{"name":7,"type":"hvm"},"b_info":{"max_memkb":-1,"target_memkb":"lots","max_vcpus":1.5}}'));
    assert.deepEqual(s, { format: 'json', bytes: s.format === 'json' ? s.bytes : 0, valid: true, type: 'hvm' });
    const empty = summarizeXlConfig(json('{}'));
    assert.match(describeXlConfig(empty), /^xl config: 3 bytes of JSON, no domain name, type or memory in it$/);
    assert.deepEqual(summarizeXlConfig(json('{"c_info":[],"b_info":null}')), { format: 'json', bytes: 28, valid: true });
  });

  test('malformed JSON, bad UTF-8 and a non-object are reported, never thrown', () => {
    const cases: [Buffer, RegExp][] = [
      [Buffer.from('{"c_info":\0'), /not valid JSON/],
      [Buffer.from('\0'), /not valid JSON/],
      [Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x7d, 0]), /not valid JSON: .*(decode|encoded|UTF)/i],
      [Buffer.from('[1,2,3]\0'), /the JSON is not an object/],
      [Buffer.from('null\0'), /the JSON is not an object/],
      // Nesting deep enough to overflow a recursive parser.
      [Buffer.from(`${'['.repeat(1 << 20)}\0`), /not valid JSON|not an object/],
    ];
    for (const [bytes, pattern] of cases) {
      const s = summarizeXlConfig(header(bytes));
      assert.equal(s.format, 'json');
      assert.ok(s.format === 'json' && !s.valid, `${bytes.subarray(0, 16).toString('hex')}: reported as malformed`);
      const line = describeXlConfig(s);
      assert.match(line, /^xl config: \d+ bytes of JSON, malformed: /);
      assert.match(line, pattern);
      assert.doesNotMatch(line, /\p{Cc}/u);
      assert.ok(line.length < 300, 'a bounded line');
    }
  });

  test('a hostile domain name cannot forge output: control characters escaped, length cut', () => {
    const name = `evil\nsummary: libxl stream\u001b[31m\u009b${'x'.repeat(200)}`;
    const line = describeXlConfig(summarizeXlConfig(json(JSON.stringify({ c_info: { name, type: 'pv\nh' } }))));
    assert.equal(line.split('\n').length, 1);
    assert.doesNotMatch(line, /\p{Cc}/u);
    assert.match(line, /domain "evil\\nsummary: libxl stream\\u001b\[31m\\u009bx+\.\.\."/);
    assert.match(line, /type "pv\\nh"/);
    assert.ok(line.length < 200, `${line.length} characters`);
  });

  test('no config, an empty one, and one in xl config-file syntax', () => {
    assert.equal(describeXlConfig(summarizeXlConfig(header(undefined))), 'xl config: none (xl restore needs a config file)');
    assert.equal(describeXlConfig(summarizeXlConfig(header(Buffer.alloc(0)))), 'xl config: none (xl restore needs a config file)');
    assert.equal(describeXlConfig(summarizeXlConfig(header(Buffer.from('name = "g"\n'), false))), 'xl config: 11 bytes in xl config-file syntax (not parsed)');
  });
});
