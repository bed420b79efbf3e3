import assert from 'node:assert/strict';
import { test } from 'node:test';
import { foreignPeer } from '../../src/transport/foreign-peer.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

test('names what answered from its first bytes', () => {
  assert.equal(foreignPeer(Buffer.from('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n'))?.name, 'an HTTP server');
  assert.equal(foreignPeer(Buffer.from('HTTP/1.1 400 Bad Request\r\n'))?.said, '"HTTP/1.1 400 Bad Request"');
  assert.equal(foreignPeer(Buffer.from('SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n'))?.name, 'an SSH server');
  assert.equal(foreignPeer(Buffer.from('-ERR unknown command\r\n'))?.name, 'a Redis-protocol server');
  assert.equal(foreignPeer(Buffer.from('220 mail.example ESMTP\r\n'))?.name, 'an SMTP or FTP server');
  // A TLS 1.2 alert record (content type 21), as a TLS server answers bytes that are not a ClientHello.
  assert.match(foreignPeer(hex('15 03 03 00 02 02 46'))?.name ?? '', /^a TLS server/);
  assert.equal(foreignPeer(hex('16 03 01 00 2a'))?.said, 'TLS record type 22');
});

test('a Tandem back-channel record, or bytes too short to tell, are not foreign', () => {
  // TANDEM_ACK (0x80005401), little-endian, as the secondary sends it.
  assert.equal(foreignPeer(hex('01 54 00 80 18 00 00 00 01 00 00 00 00 00 00 00')), undefined);
  assert.equal(foreignPeer(hex('07 00 00 00 08 00 00 00')), undefined); // CHECKPOINT_STATE
  assert.equal(foreignPeer(Buffer.from('HT')), undefined);
  assert.equal(foreignPeer(Buffer.alloc(0)), undefined);
});

test('what is quoted is one printable line, bounded', () => {
  const said = foreignPeer(Buffer.concat([Buffer.from('HTTP/1.1 200 OK \x1b[31m'), Buffer.alloc(200, 0x41)]))!.said;
  assert.ok(!said.includes('\x1b'));
  assert.ok(said.length <= 64 + 2, said);
});
