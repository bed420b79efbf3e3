import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { TandemError } from '../../src/errors.js';
import { WireError } from '../../src/net/errors.js';
import { FRAME_HEADERS, MSS, Tcp, checksumsValid, decodeSegment, encodeSegment, ipv4, ipv4Text, seqAdd } from '../../src/net/wire.js';

const client = { mac: Buffer.from('525400abcdef', 'hex'), ip: ipv4('10.0.0.2'), port: 40000 };
const guest = { mac: Buffer.from('525400123456', 'hex'), ip: ipv4('10.0.0.1'), port: 6379 };

describe('sim network wire format', () => {
  test('a segment encodes with valid checksums (golden header bytes) and decodes back to views', () => {
    const f = encodeSegment({ src: client, dst: guest, seq: 0xfffffff0, ack: 7, flags: Tcp.ACK | Tcp.PSH, window: 65535, payload: Buffer.from('PING\r\n') });
    assert.equal(f.length, FRAME_HEADERS + 6);
    assert.equal(f.subarray(0, 14).toString('hex'), '525400123456' + '525400abcdef' + '0800');
    // IPv4: version/IHL, TOS, total length 46, id 0, DF, TTL 64, TCP, checksum, 10.0.0.2 -> 10.0.0.1.
    assert.equal(f.subarray(14, 34).toString('hex'), '4500002e' + '00004000' + '4006' + f.subarray(24, 26).toString('hex') + '0a000002' + '0a000001');
    assert.ok(checksumsValid(f));
    const s = decodeSegment(f);
    assert.equal(ipv4Text(s.src.ip), '10.0.0.2');
    assert.equal(s.dst.port, 6379);
    assert.equal(s.seq, 0xfffffff0);
    assert.equal(s.ack, 7);
    assert.equal(s.flags, Tcp.ACK | Tcp.PSH);
    assert.equal(s.payload.toString(), 'PING\r\n');
    assert.equal(s.payload.buffer, f.buffer, 'a view, not a copy');
    const corrupt = Buffer.from(f);
    corrupt[FRAME_HEADERS] ^= 1;
    assert.equal(checksumsValid(corrupt), false);
  });

  test('odd payload lengths and sequence wrap-around', () => {
    for (const n of [0, 1, 3, MSS]) assert.ok(checksumsValid(encodeSegment({ src: guest, dst: client, seq: 1, ack: 2, flags: Tcp.ACK, window: 1, payload: Buffer.alloc(n, 0xa5) })), `payload ${n}`);
    assert.throws(() => encodeSegment({ src: guest, dst: client, seq: 1, ack: 2, flags: 0, window: 1, payload: Buffer.alloc(MSS + 1) }), RangeError);
    assert.equal(seqAdd(0xffffffff, 2), 1);
  });

  test('frames that are not IPv4 TCP, or whose lengths lie, are refused by kind', () => {
    const good = encodeSegment({ src: client, dst: guest, seq: 1, ack: 0, flags: Tcp.SYN, window: 1 });
    const kind = (f: Buffer): string => {
      try {
        decodeSegment(f);
        return 'ok';
      } catch (err) {
        assert.ok(err instanceof WireError && err instanceof TandemError);
        assert.equal(err.code, 'ERR_NET_BAD_FRAME');
        return err.kind;
      }
    };
    assert.equal(kind(good), 'ok');
    assert.equal(kind(good.subarray(0, 20)), 'short');
    const arp = Buffer.from(good);
    arp.writeUInt16BE(0x0806, 12);
    assert.equal(kind(arp), 'not-ipv4-tcp');
    const udp = Buffer.from(good);
    udp[23] = 17;
    assert.equal(kind(udp), 'not-ipv4-tcp');
    const long = Buffer.from(good);
    long.writeUInt16BE(1000, 16);
    assert.equal(kind(long), 'bad-length');
    const frag = Buffer.from(good);
    frag.writeUInt16BE(0x2000, 20);
    assert.equal(kind(frag), 'fragment');
    const off = Buffer.from(good);
    off[46] = 0xf0; // data offset 60 > segment
    assert.equal(kind(off), 'bad-length');
    assert.throws(() => ipv4('10.0.0.256'), RangeError);
  });
});
