/** Token checks and the read policy. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MonitorAuth, TOKEN_PROTOCOL_PREFIX, bearer, tokenFromProtocols } from '../../src/monitor/auth.js';
import { isLoopback, isLoopbackHost } from '../../src/util/address.js';

test('only the configured token passes, whatever its length or type', () => {
  const auth = new MonitorAuth({ token: 'correct horse battery staple', allowRemoteRead: false });
  assert.ok(auth.checkToken('correct horse battery staple'));
  for (const wrong of ['', 'correct horse battery stapl', 'correct horse battery staple ', 'x'.repeat(10_000), 42, null, undefined, ['correct horse battery staple']]) {
    assert.equal(auth.checkToken(wrong), false, String(wrong).slice(0, 30));
  }
  assert.equal(new MonitorAuth({ token: undefined, allowRemoteRead: false }).checkToken(''), false);
});

test('reading: loopback always, remote only when allowed or with the token', () => {
  const closed = new MonitorAuth({ token: 'tok-0123456789abcdef', allowRemoteRead: false });
  assert.ok(closed.mayRead('127.0.0.1', undefined));
  assert.ok(closed.mayRead('::1', undefined));
  assert.ok(closed.mayRead('::ffff:127.0.0.1', undefined));
  assert.equal(closed.mayRead('10.1.2.3', undefined), false);
  assert.equal(closed.mayRead(undefined, undefined), false);
  assert.ok(closed.mayRead('10.1.2.3', 'tok-0123456789abcdef'));
  assert.ok(new MonitorAuth({ token: undefined, allowRemoteRead: true }).mayRead('10.1.2.3', undefined));
});

test('loopback addresses and bind hosts', () => {
  assert.ok(isLoopback('127.8.9.10'));
  assert.equal(isLoopback('128.0.0.1'), false);
  assert.equal(isLoopback('::2'), false);
  assert.ok(isLoopbackHost('localhost'));
  assert.ok(isLoopbackHost('127.0.0.1'));
  assert.equal(isLoopbackHost('0.0.0.0'), false);
  assert.equal(isLoopbackHost('::'), false);
});

test('bearer tokens from an Authorization header', () => {
  assert.equal(bearer('Bearer abc'), 'abc');
  assert.equal(bearer('bearer   abc  '), 'abc');
  assert.equal(bearer('Basic abc'), undefined);
  assert.equal(bearer('Bearer a b'), undefined);
  assert.equal(bearer(undefined), undefined);
});

test('with loopback_read off, every reader needs the token', () => {
  const auth = new MonitorAuth({ token: 'tok-0123456789abcdef', allowRemoteRead: false, loopbackRead: false });
  assert.equal(auth.mayRead('127.0.0.1', undefined), false);
  assert.equal(auth.mayRead('127.0.0.1', 'wrong'), false);
  assert.ok(auth.mayRead('127.0.0.1', 'tok-0123456789abcdef'));
});

test('a token offered as a WebSocket subprotocol', () => {
  const offered = `tandem.v1, ${TOKEN_PROTOCOL_PREFIX}${Buffer.from('tøken/with+odd=chars').toString('base64url')}`;
  assert.equal(tokenFromProtocols(offered), 'tøken/with+odd=chars');
  assert.equal(tokenFromProtocols('tandem.v1'), undefined);
  assert.equal(tokenFromProtocols(undefined), undefined);
});

test('wrong tokens lock an address out; while locked even the right one is not looked at', () => {
  const clock = { now: 0 };
  const auth = new MonitorAuth({ token: 'tok-0123456789abcdef', allowRemoteRead: false, throttle: { maxFailures: 3, windowMs: 60_000, lockoutMs: 60_000, now: () => clock.now } });
  assert.equal(auth.verify(undefined, '10.0.0.5'), 'missing');
  assert.equal(auth.verify('', '10.0.0.5'), 'missing');
  assert.equal(auth.verify('guess-1', '10.0.0.5'), 'wrong');
  assert.equal(auth.verify('guess-2', '::ffff:10.0.0.5'), 'wrong', 'the IPv4-mapped spelling is the same host');
  assert.equal(auth.verify('guess-3', '10.0.0.5'), 'wrong');
  assert.equal(auth.verify('tok-0123456789abcdef', '10.0.0.5'), 'locked');
  assert.equal(auth.readAccess('10.0.0.5', 'tok-0123456789abcdef'), 'locked');
  assert.equal(auth.lockedFor('10.0.0.5'), 60_000);
  assert.equal(auth.verify('tok-0123456789abcdef', '10.0.0.6'), 'ok', 'another address is not locked');
  assert.equal(auth.readAccess('127.0.0.1', undefined), 'ok', 'loopback reads need no token');
  clock.now = 60_000;
  assert.equal(auth.verify('tok-0123456789abcdef', '10.0.0.5'), 'ok');
  assert.equal(auth.verify('guess-4', '10.0.0.5'), 'wrong', 'the right token cleared the count');
  assert.equal(auth.verify('guess-5', '10.0.0.5'), 'wrong');
  assert.equal(auth.verify('tok-0123456789abcdef', '10.0.0.5'), 'ok');
  assert.equal(new MonitorAuth({ token: undefined, allowRemoteRead: false }).verify('anything', '10.0.0.5'), 'unconfigured');
});
