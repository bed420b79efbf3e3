/** TANDEM_DOMAIN_CONFIG's body: the domain's libxl JSON, bounded and checked before a hypervisor sees it. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ErrorCodes, StreamError } from '../../src/errors.js';
import { encodeDomainConfigRecord, MAX_DOMAIN_CONFIG_BYTES, parseDomainConfigRecord } from '../../src/stream/domain-config-record.js';

const site = { offset: 40 };

test('a config round-trips: its JSON as sent, and the domain name it gives', () => {
  const json = JSON.stringify({ c_info: { name: 'lab-guest', type: 'pvh' }, b_info: { max_memkb: 131072 } }, null, 4);
  assert.deepEqual(parseDomainConfigRecord(encodeDomainConfigRecord(json), site), { json, name: 'lab-guest' });
});

test('refused, with the record and offset named: empty, oversized, not UTF-8, not JSON, no name, a name xl could not pass on', () => {
  const cases: [Buffer, string][] = [
    [Buffer.alloc(0), ErrorCodes.RECORD_BAD_LENGTH],
    [Buffer.alloc(MAX_DOMAIN_CONFIG_BYTES + 1, 0x20), ErrorCodes.RECORD_BAD_LENGTH],
    [Buffer.from([0x7b, 0xff, 0xfe, 0x7d]), ErrorCodes.RECORD_BAD_FIELD],
    [Buffer.from('{"c_info": '), ErrorCodes.RECORD_BAD_FIELD],
    [Buffer.from('[1, 2]'), ErrorCodes.RECORD_BAD_FIELD],
    [Buffer.from('{"c_info": {"name": 7}}'), ErrorCodes.RECORD_BAD_FIELD],
    [Buffer.from('{"c_info": {"name": "a b; rm -rf /"}}'), ErrorCodes.RECORD_BAD_FIELD],
    [Buffer.from(`{"c_info": {"name": "${'x'.repeat(65)}"}}`), ErrorCodes.RECORD_BAD_FIELD],
  ];
  for (const [body, code] of cases) {
    assert.throws(
      () => parseDomainConfigRecord(body, site),
      (err: unknown) => err instanceof StreamError && err.code === code && err.offset === 40 && err.record === 'libxl TANDEM_DOMAIN_CONFIG',
      `${body.subarray(0, 40).toString('latin1')}: ${code}`,
    );
  }
});

test('the encoder refuses what the parser would', () => {
  assert.throws(() => encodeDomainConfigRecord(''), RangeError);
  assert.throws(() => encodeDomainConfigRecord('x'.repeat(MAX_DOMAIN_CONFIG_BYTES + 1)), RangeError);
});
