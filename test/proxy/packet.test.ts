import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ErrorCodes } from '../../src/errors.js';
import { arp, icmp, udp, withVnetHeader } from '../../proxy/craft.js';
import { ProxyError } from '../../proxy/errors.js';
import { decodePacket } from '../../proxy/packet.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

const malformed = (pattern: RegExp) => (err: unknown): boolean => {
  assert.ok(err instanceof ProxyError, String(err));
  assert.equal(err.code, ErrorCodes.PROXY_PACKET_MALFORMED);
  assert.match(err.message, pattern);
  return true;
};

// A hand-written IPv4/TCP frame: 10.0.0.2:80 -> 10.0.0.9:40000, seq 0x01020304,
// ack 0x0a0b0c0d, ACK|PSH, payload "hi", then 4 bytes of Ethernet padding.
const TCP_FRAME = hex(`
  525400abcdef 525400123456 0800
  45 00 002a 0000 4000 40 06 0000 0a000002 0a000009
  0050 9c40 01020304 0a0b0c0d 50 18 faf0 0000 0000
  6869
  00000000`);

describe('decodePacket', () => {
  test('IPv4 TCP: ports, sequence fields, payload bounds; padding beyond the IP total length excluded', () => {
    const p = decodePacket(TCP_FRAME);
    assert.equal(p.kind, 'tcp');
    assert.equal(p.family, 4);
    assert.equal(p.seq, 0x01020304);
    assert.equal(p.ack, 0x0a0b0c0d);
    assert.equal(p.flags, 0x18);
    assert.equal(TCP_FRAME.subarray(p.payloadStart, p.payloadEnd).toString(), 'hi');
    assert.equal(p.l4End, 14 + 0x2a);
    assert.equal(p.flow(), 'tcp 10.0.0.2:80 > 10.0.0.9:40000');
  });

  test('a vnet header in front shifts everything', () => {
    const p = decodePacket(withVnetHeader(TCP_FRAME, 12), 12);
    assert.equal(p.kind, 'tcp');
    assert.equal(p.payloadStart, 12 + 14 + 20 + 20);
  });

  test('IPv6 UDP and ICMPv6, IPv4 ICMP, 802.1Q-tagged, ARP, other EtherTypes', () => {
    const u6 = decodePacket(udp({ src: 'fd00::2', dst: 'fd00::9', sport: 53, dport: 5353, payload: Buffer.from('abc') }));
    assert.equal(u6.kind, 'udp');
    assert.equal(u6.family, 6);
    assert.equal(u6.flow(), 'udp [fd00::2]:53 > [fd00::9]:5353');
    assert.equal(decodePacket(icmp({ src: 'fd00::2', dst: 'fd00::9', payload: Buffer.from('x') })).kind, 'icmp');
    assert.equal(decodePacket(icmp({ src: '10.0.0.2', dst: '10.0.0.9', payload: Buffer.from('x') })).kind, 'icmp');
    const tagged = decodePacket(udp({ src: '10.0.0.2', dst: '10.0.0.9', sport: 1, dport: 2, payload: Buffer.from('x'), vlan: 42 }));
    assert.equal(tagged.kind, 'udp');
    assert.equal(tagged.vlan, 42);
    assert.equal(decodePacket(arp('10.0.0.2')).kind, 'arp');
    assert.equal(decodePacket(hex('525400abcdef 525400123456 88cc 0102')).kind, 'l2');
  });

  test('IPv6 extension headers are walked; a fragment is compared as plain IP', () => {
    // Hop-by-hop (8 bytes) then UDP.
    const l4 = hex('0035 14e9 000b 0000 616263');
    const hop = hex('11 00 0000 00000000');
    const ip6 = Buffer.concat([hex('60000000'), Buffer.from([0, hop.length + l4.length]), hex('00 40'), Buffer.alloc(32, 1), hop, l4]);
    const frame = Buffer.concat([hex('525400abcdef 525400123456 86dd'), ip6]);
    const p = decodePacket(frame);
    assert.equal(p.kind, 'udp');
    assert.equal(p.l4Start, 14 + 40 + 8);
    // Fragment header with offset 8: a later piece.
    const frag = hex('11 00 0040 00000001');
    const f6 = Buffer.concat([hex('60000000'), Buffer.from([0, frag.length + l4.length]), hex('2c 40'), Buffer.alloc(32, 1), frag, l4]);
    assert.equal(decodePacket(Buffer.concat([hex('525400abcdef 525400123456 86dd'), f6])).kind, 'ip');
  });

  test('an IPv4 fragment is compared as plain IP (no ports to key on)', () => {
    const f = Buffer.from(TCP_FRAME);
    f.writeUInt16BE(0x2001, 14 + 6); // MF set, offset 1
    assert.equal(decodePacket(f).kind, 'ip');
  });

  test('every length is checked against the bytes present', () => {
    const cases: [string, Buffer, RegExp][] = [
      ['short Ethernet', hex('525400abcdef5254'), /shorter than its 14-byte header/],
      ['cut VLAN tag', hex('525400abcdef 525400123456 8100 00'), /802\.1Q tag cut short/],
      ['cut IPv4 header', TCP_FRAME.subarray(0, 14 + 19), /IPv4 header cut short/],
    ];
    const mut = (at: number, bytes: string): Buffer => {
      const f = Buffer.from(TCP_FRAME);
      hex(bytes).copy(f, at);
      return f;
    };
    cases.push(['IPv4 version', mut(14, '55'), /IPv4 version field is 5/]);
    cases.push(['IHL below 5', mut(14, '44'), /header length 16 is below the minimum of 20/]);
    cases.push(['total length beyond the frame', mut(16, '0400'), /total length 1024 exceeds the 46 bytes present/]);
    cases.push(['total length below IHL', mut(16, '0010'), /total length 16 is shorter than its header length 20/]);
    cases.push(['TCP data offset below 5', mut(14 + 20 + 12, '40'), /TCP data offset 16 is below the minimum of 20/]);
    cases.push(['TCP data offset beyond the segment', mut(14 + 20 + 12, 'f0'), /TCP data offset 60 exceeds the 22 bytes/]);
    const u = udp({ src: '10.0.0.2', dst: '10.0.0.9', sport: 1, dport: 2, payload: Buffer.from('abc') });
    const badU = Buffer.from(u);
    badU.writeUInt16BE(200, 14 + 20 + 4);
    cases.push(['UDP length', badU, /UDP length 200 is outside 8\.\.11/]);
    const v6 = Buffer.from(udp({ src: 'fd00::2', dst: 'fd00::9', sport: 1, dport: 2, payload: Buffer.from('abc') }));
    v6.writeUInt16BE(999, 14 + 4);
    cases.push(['IPv6 payload length', v6, /IPv6 payload length 999 exceeds/]);
    for (const [name, frame, pattern] of cases) assert.throws(() => decodePacket(frame), malformed(pattern), name);
  });

  test('an IPv6 extension header chain longer than 8 is refused', () => {
    const hops = Buffer.concat(Array.from({ length: 9 }, () => hex('00 00 0000 00000000')));
    const ip6 = Buffer.concat([hex('60000000'), Buffer.from([0, hops.length]), hex('00 40'), Buffer.alloc(32), hops]);
    assert.throws(() => decodePacket(Buffer.concat([hex('525400abcdef 525400123456 86dd'), ip6])), malformed(/more than 8 IPv6 extension headers/));
  });
});
