/**
 * The wire format between a guest's virtual NIC and the COLO front:
 * Ethernet II frames carrying IPv4 TCP segments (and ARP). Encoding writes
 * one buffer with correct IPv4 and TCP checksums; decoding checks every length against the bytes present and returns
 * views (no copies). This is the endpoint's view of a frame (addresses,
 * ports, sequence numbers); the COLO comparator has its own decoder
 * (proxy/packet.ts), which handles every kind of frame a real guest sends.
 */
import { WireError } from './errors.js';

export const ETH_HEADER = 14;
export const IPV4_HEADER = 20;
export const TCP_HEADER = 20;
/** Ethernet + IPv4 + TCP headers without options. */
export const FRAME_HEADERS = ETH_HEADER + IPV4_HEADER + TCP_HEADER;
/** Largest TCP payload in a 1500-byte IP packet. */
export const MSS = 1460;

export const ETHERTYPE_IPV4 = 0x0800;
export const IPPROTO_TCP = 6;

export const Tcp = { FIN: 0x01, SYN: 0x02, RST: 0x04, PSH: 0x08, ACK: 0x10 } as const;

export interface Endpoint {
  mac: Buffer;
  /** IPv4 address as a u32. */
  ip: number;
  port: number;
}

export interface Segment {
  src: Endpoint;
  dst: Endpoint;
  seq: number;
  ack: number;
  flags: number;
  window: number;
  /** A view into the frame. */
  payload: Buffer;
}

export function ipv4(text: string): number {
  const parts = text.split('.');
  if (parts.length !== 4 || parts.some((p) => !/^\d{1,3}$/.test(p) || Number(p) > 255)) throw new RangeError(`not an IPv4 address: ${text}`);
  return parts.reduce((n, p) => n * 256 + Number(p), 0);
}

export const ipv4Text = (ip: number): string => `${ip >>> 24}.${(ip >>> 16) & 255}.${(ip >>> 8) & 255}.${ip & 255}`;

/** RFC 1071 one's-complement sum of 16-bit words, folded (not inverted). */
function sum16(b: Buffer, from: number, to: number, acc: number): number {
  let s = acc;
  let i = from;
  for (; i + 1 < to; i += 2) s += (b[i] << 8) | b[i + 1];
  if (i < to) s += b[i] << 8;
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return s;
}

/** One frame holding a TCP segment from `src` to `dst`. */
export function encodeSegment(s: Omit<Segment, 'payload'> & { payload?: Uint8Array }): Buffer {
  const payload = s.payload ?? Buffer.alloc(0);
  if (payload.length > MSS) throw new RangeError(`TCP payload of ${payload.length} bytes exceeds the MSS of ${MSS}`);
  const f = Buffer.allocUnsafe(FRAME_HEADERS + payload.length);
  s.dst.mac.copy(f, 0);
  s.src.mac.copy(f, 6);
  f.writeUInt16BE(ETHERTYPE_IPV4, 12);
  const ip = ETH_HEADER;
  f[ip] = 0x45;
  f[ip + 1] = 0;
  f.writeUInt16BE(IPV4_HEADER + TCP_HEADER + payload.length, ip + 2);
  // Identification 0 with DF set: never fragmented, and both replicas agree on it.
  f.writeUInt16BE(0, ip + 4);
  f.writeUInt16BE(0x4000, ip + 6);
  f[ip + 8] = 64;
  f[ip + 9] = IPPROTO_TCP;
  f.writeUInt16BE(0, ip + 10);
  f.writeUInt32BE(s.src.ip >>> 0, ip + 12);
  f.writeUInt32BE(s.dst.ip >>> 0, ip + 16);
  f.writeUInt16BE(~sum16(f, ip, ip + IPV4_HEADER, 0) & 0xffff, ip + 10);
  const t = ip + IPV4_HEADER;
  f.writeUInt16BE(s.src.port, t);
  f.writeUInt16BE(s.dst.port, t + 2);
  f.writeUInt32BE(s.seq >>> 0, t + 4);
  f.writeUInt32BE(s.ack >>> 0, t + 8);
  f[t + 12] = (TCP_HEADER / 4) << 4;
  f[t + 13] = s.flags;
  f.writeUInt16BE(s.window, t + 14);
  f.writeUInt32BE(0, t + 16); // checksum and urgent pointer
  f.set(payload, t + TCP_HEADER);
  // The pseudo-header: addresses, protocol, TCP length.
  const tcpLen = TCP_HEADER + payload.length;
  let pseudo = sum16(f, ip + 12, ip + 20, 0) + IPPROTO_TCP + tcpLen;
  pseudo = sum16(f, t, t + tcpLen, pseudo);
  f.writeUInt16BE(~pseudo & 0xffff, t + 16);
  return f;
}

/** Decodes an IPv4 TCP frame; anything else is a WireError saying what it is. */
export function decodeSegment(f: Buffer): Segment {
  if (f.length < ETH_HEADER + IPV4_HEADER) throw new WireError('short', `frame of ${f.length} bytes is too short for Ethernet and IPv4 headers`);
  if (f.readUInt16BE(12) !== ETHERTYPE_IPV4) throw new WireError('not-ipv4-tcp', `ethertype 0x${f.readUInt16BE(12).toString(16)} is not IPv4`);
  const ip = ETH_HEADER;
  if (f[ip] >> 4 !== 4) throw new WireError('not-ipv4-tcp', `IP version ${f[ip] >> 4}`);
  const ihl = (f[ip] & 15) * 4;
  const total = f.readUInt16BE(ip + 2);
  if (ihl < IPV4_HEADER || total < ihl || ip + total > f.length) throw new WireError('bad-length', `IPv4 header length ${ihl} / total length ${total} do not fit the ${f.length - ip} bytes present`);
  if (f[ip + 9] !== IPPROTO_TCP) throw new WireError('not-ipv4-tcp', `IP protocol ${f[ip + 9]} is not TCP`);
  if ((f.readUInt16BE(ip + 6) & 0x3fff) !== 0) throw new WireError('fragment', 'IPv4 fragment');
  const t = ip + ihl;
  const end = ip + total;
  if (end - t < TCP_HEADER) throw new WireError('bad-length', `TCP header cut short: ${end - t} bytes`);
  const off = (f[t + 12] >> 4) * 4;
  if (off < TCP_HEADER || t + off > end) throw new WireError('bad-length', `TCP data offset ${off} does not fit the ${end - t}-byte segment`);
  return {
    src: { mac: f.subarray(6, 12), ip: f.readUInt32BE(ip + 12), port: f.readUInt16BE(t) },
    dst: { mac: f.subarray(0, 6), ip: f.readUInt32BE(ip + 16), port: f.readUInt16BE(t + 2) },
    seq: f.readUInt32BE(t + 4),
    ack: f.readUInt32BE(t + 8),
    flags: f[t + 13],
    window: f.readUInt16BE(t + 14),
    payload: f.subarray(t + off, end),
  };
}

/** Whether the frame's IPv4 and TCP checksums hold. */
export function checksumsValid(f: Buffer): boolean {
  const ip = ETH_HEADER;
  const ihl = (f[ip] & 15) * 4;
  if (sum16(f, ip, ip + ihl, 0) !== 0xffff) return false;
  const total = f.readUInt16BE(ip + 2);
  const tcpLen = total - ihl;
  let s = sum16(f, ip + 12, ip + 20, 0) + IPPROTO_TCP + tcpLen;
  s = sum16(f, ip + ihl, ip + total, s);
  return s === 0xffff;
}

/** Sequence arithmetic (RFC 1982 style): a + n mod 2^32. */
export const seqAdd = (a: number, n: number): number => (a + n) >>> 0;
