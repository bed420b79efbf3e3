/**
 * The `hooks:` and `floating_address:` sections (src/config/role-change.ts):
 * what they accept, and a bad value refused naming its key, what was
 * expected and what the file held.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { configFromObject } from '../../src/config/config.js';
import { interfaceNameProblem, readPrefixedAddress } from '../../src/config/role-change.js';
import { ConfigError } from '../../src/errors.js';

const refused = (doc: unknown, pattern: RegExp): void =>
  assert.throws(
    () => configFromObject(doc, 'f.yaml'),
    (err: unknown) => err instanceof ConfigError && err.code === 'ERR_CONFIG_INVALID' && pattern.test(err.message),
    `${JSON.stringify(doc)} should be refused with ${pattern}`,
  );

describe('hooks and floating_address in the configuration', () => {
  test('left out: no hook, a 10 s timeout, no floating address', () => {
    const c = configFromObject(undefined, 'f.yaml');
    assert.deepEqual(c.hooks, { roleChange: undefined, timeoutMs: 10_000 });
    assert.equal(c.floatingAddress, undefined);
    assert.equal(configFromObject({ floating_address: null }, 'f.yaml').floatingAddress, undefined);
  });

  test('a hook and a floating address, IPv4 and IPv6 (kept canonical, as `ip -j addr` prints it)', () => {
    const c = configFromObject({ hooks: { role_change: '/usr/local/bin/tandem-notify', timeout_ms: 2500 }, floating_address: { address: '192.0.2.10/24', interface: 'br-lan.10' } }, 'f.yaml');
    assert.deepEqual(c.hooks, { roleChange: '/usr/local/bin/tandem-notify', timeoutMs: 2500 });
    assert.deepEqual(c.floatingAddress, { address: '192.0.2.10/24', interface: 'br-lan.10', announceCount: 3 });
    const v6 = configFromObject({ floating_address: { address: '2001:DB8:0:0::0:100/64', interface: 'eth0', announce_count: 5 } }, 'f.yaml');
    assert.deepEqual(v6.floatingAddress, { address: '2001:db8::100/64', interface: 'eth0', announceCount: 5 });
    assert.deepEqual(readPrefixedAddress('2001:db8::100/128'), { address: '2001:db8::100', prefix: 128, family: 6 });
    assert.deepEqual(readPrefixedAddress('10.0.0.1/32'), { address: '10.0.0.1', prefix: 32, family: 4 });
  });

  test('bad values name the key, what was expected and what the file held', () => {
    const fa = (floating: Record<string, unknown>): unknown => ({ floating_address: { address: '10.0.0.100/24', interface: 'eth0', ...floating } });
    const cases: [unknown, RegExp][] = [
      [{ hooks: { role_change: 'notify.sh' } }, /^f\.yaml: hooks\.role_change: expected an absolute path \(the hook is run without a shell or a PATH search\), got "notify\.sh"$/],
      [{ hooks: { role_change: '' } }, /hooks\.role_change: expected an absolute path of 1\.\.4096 characters/],
      [{ hooks: { role_change: 7 } }, /hooks\.role_change: expected the absolute path of an executable/],
      [{ hooks: { role_change: `/${'x'.repeat(5000)}` } }, /hooks\.role_change: expected a path of at most 4096 characters/],
      [{ hooks: { timeout_ms: 0 } }, /hooks\.timeout_ms: expected an integer in 100\.\.600000, got 0/],
      [{ hooks: { on_promote: '/bin/true' } }, /hooks\.on_promote: unknown key \(known: role_change, timeout_ms\)/],
      [fa({ address: '10.0.0.100/33' }), /floating_address\.address: prefix \/33 is outside 1\.\.32 for an IPv4 address/],
      [fa({ address: '2001:db8::1/129' }), /floating_address\.address: prefix \/129 is outside 1\.\.128 for an IPv6 address/],
      [fa({ address: '10.0.0.100/0' }), /prefix \/0 is outside 1\.\.32/],
      [fa({ address: '10.0.0.100' }), /floating_address\.address: expected ADDRESS\/PREFIX \(10\.0\.0\.100\/24, 2001:db8::100\/64\), got "10\.0\.0\.100"/],
      [fa({ address: '10.0.0.300/24' }), /"10\.0\.0\.300" is not an IPv4 or IPv6 address/],
      [fa({ address: 'host.example/24' }), /expected ADDRESS\/PREFIX/],
      [fa({ address: '127.0.0.5/8' }), /127\.0\.0\.5 is a loopback address: it cannot be a service address/],
      [fa({ address: '0.0.0.0/24' }), /the unspecified address/],
      [fa({ address: '224.0.0.1/24' }), /a multicast or reserved address/],
      [fa({ address: '169.254.1.1/16' }), /a link-local address/],
      [fa({ address: 'fe80::1/64' }), /fe80::1 is a link-local address/],
      [fa({ address: 'ff02::1/64' }), /a multicast address/],
      [fa({ address: '::ffff:10.0.0.1/96' }), /an IPv4-mapped or -compatible address/],
      [fa({ address: '::1/128' }), /the loopback address/],
      [fa({ address: 24 }), /floating_address\.address: expected ADDRESS\/PREFIX, got 24/],
      [fa({ interface: 'eth0; reboot' }), /floating_address\.interface: "eth0; reboot" is not an interface name/],
      [fa({ interface: 'a-name-too-long0' }), /floating_address\.interface: "a-name-too-long0" is not an interface name \(1\.\.15 of/],
      [fa({ interface: '..' }), /"\.\." is not an interface name/],
      [fa({ interface: 'eth0/1' }), /is not an interface name/],
      [fa({ interface: '' }), /"" is not an interface name/],
      [fa({ announce_count: 0 }), /floating_address\.announce_count: expected an integer in 1\.\.30, got 0/],
      [{ floating_address: { interface: 'eth0' } }, /floating_address\.address: expected ADDRESS\/PREFIX, got nothing/],
      [{ floating_address: { address: '10.0.0.100/24' } }, /floating_address\.interface: expected a network interface name/],
      [{ floating_address: '10.0.0.100/24' }, /floating_address: expected a mapping/],
    ];
    for (const [doc, pattern] of cases) refused(doc, pattern);
    assert.equal(interfaceNameProblem('eth0.100'), undefined);
    assert.equal(interfaceNameProblem('veth_a-1'), undefined);
  });
});
