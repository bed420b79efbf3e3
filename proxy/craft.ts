/**
 * Builds Ethernet frames (IPv4/IPv6 TCP, UDP, ICMP; ARP; 802.1Q tags; vnet
 * headers) for the tests, the benchmark and the sim guests' virtual NICs.
 * Checksums are left zero: neither comparator checks them, and a frame that
 * leaves toward a real stack is built by that NIC's own code path.
 */
import { EtherType, IpProto, TcpFlag } from './packet.js';

export { TcpFlag };

const MAC_GUEST = Buffer.from('525400123456', 'hex');
const MAC_CLIENT = Buffer.from('525400abcdef', 'hex');

export interface L2Options {
  /** 802.1Q VLAN id. */
  vlan?: number;
  srcMac?: Buffer;
  dstMac?: Buffer;
}

export function ethernet(type: number, payload: Buffer, o: L2Options = {}): Buffer {
  const tag = o.vlan === undefined ? 0 : 4;
  const f = Buffer.alloc(14 + tag + payload.length);
  (o.dstMac ?? MAC_CLIENT).copy(f, 0);
  (o.srcMac ?? MAC_GUEST).copy(f, 6);
  if (o.vlan !== undefined) {
    f.writeUInt16BE(EtherType.VLAN, 12);
    f.writeUInt16BE(o.vlan & 0x0fff, 14);
    f.writeUInt16BE(type, 16);
  } else {
    f.writeUInt16BE(type, 12);
  }
  payload.copy(f, 14 + tag);
  return f;
}

const ipv4Bytes = (a: string): Buffer => Buffer.from(a.split('.').map(Number));

function ipv6Bytes(a: string): Buffer {
  const [head, tail] = a.includes('::') ? a.split('::') : [a, undefined];
  const hs = head === '' ? [] : head.split(':');
  const ts = tail === undefined || tail === '' ? [] : tail.split(':');
  const groups = [...hs, ...Array<string>(8 - hs.length - ts.length).fill('0'), ...ts];
  const b = Buffer.alloc(16);
  groups.forEach((g, i) => b.writeUInt16BE(parseInt(g, 16), i * 2));
  return b;
}

export interface IpOptions extends L2Options {
  src: string;
  dst: string;
  /** IPv4 identification (a field the guests may set differently). */
  id?: number;
  ttl?: number;
}

/** An IP packet (v4 or v6 by the address form) carrying `l4` with protocol `proto`, in an Ethernet frame. */
export function ip(proto: number, l4: Buffer, o: IpOptions): Buffer {
  if (o.src.includes(':')) {
    const h = Buffer.alloc(40);
    h[0] = 0x60;
    h.writeUInt16BE(l4.length, 4);
    h[6] = proto;
    h[7] = o.ttl ?? 64;
    ipv6Bytes(o.src).copy(h, 8);
    ipv6Bytes(o.dst).copy(h, 24);
    return ethernet(EtherType.IPV6, Buffer.concat([h, l4]), o);
  }
  const h = Buffer.alloc(20);
  h[0] = 0x45;
  h.writeUInt16BE(20 + l4.length, 2);
  h.writeUInt16BE(o.id ?? 0, 4);
  h.writeUInt16BE(0x4000, 6); // don't fragment
  h[8] = o.ttl ?? 64;
  h[9] = proto;
  ipv4Bytes(o.src).copy(h, 12);
  ipv4Bytes(o.dst).copy(h, 16);
  return ethernet(EtherType.IPV4, Buffer.concat([h, l4]), o);
}

export interface TcpOptions extends IpOptions {
  sport: number;
  dport: number;
  seq: number;
  ack?: number;
  /** Default ACK (| PSH when there is a payload). */
  flags?: number;
  payload?: Buffer;
  window?: number;
}

export function tcp(o: TcpOptions): Buffer {
  const payload = o.payload ?? Buffer.alloc(0);
  const h = Buffer.alloc(20);
  h.writeUInt16BE(o.sport, 0);
  h.writeUInt16BE(o.dport, 2);
  h.writeUInt32BE(o.seq >>> 0, 4);
  h.writeUInt32BE((o.ack ?? 0) >>> 0, 8);
  h[12] = 5 << 4;
  h[13] = o.flags ?? (payload.length > 0 ? TcpFlag.ACK | TcpFlag.PSH : TcpFlag.ACK);
  h.writeUInt16BE(o.window ?? 64240, 14);
  return ip(IpProto.TCP, Buffer.concat([h, payload]), o);
}

export interface UdpOptions extends IpOptions {
  sport: number;
  dport: number;
  payload: Buffer;
}

export function udp(o: UdpOptions): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt16BE(o.sport, 0);
  h.writeUInt16BE(o.dport, 2);
  h.writeUInt16BE(8 + o.payload.length, 4);
  return ip(IpProto.UDP, Buffer.concat([h, o.payload]), o);
}

export interface IcmpOptions extends IpOptions {
  /** Default 0 (echo reply). */
  type?: number;
  code?: number;
  payload: Buffer;
}

export function icmp(o: IcmpOptions): Buffer {
  const h = Buffer.alloc(4);
  h[0] = o.type ?? 0;
  h[1] = o.code ?? 0;
  return ip(o.src.includes(':') ? IpProto.ICMPV6 : IpProto.ICMP, Buffer.concat([h, o.payload]), o);
}

/** An ARP reply "ip is-at the guest's MAC". */
export function arp(ipAddr: string, o: L2Options = {}): Buffer {
  const b = Buffer.alloc(28);
  b.writeUInt16BE(1, 0); // Ethernet
  b.writeUInt16BE(EtherType.IPV4, 2);
  b[4] = 6;
  b[5] = 4;
  b.writeUInt16BE(2, 6); // reply
  (o.srcMac ?? MAC_GUEST).copy(b, 8);
  ipv4Bytes(ipAddr).copy(b, 14);
  (o.dstMac ?? MAC_CLIENT).copy(b, 18);
  return ethernet(EtherType.ARP, b, o);
}

/** Prepends a zeroed virtio-net header of `len` bytes (10 or 12 in practice). */
export const withVnetHeader = (frame: Buffer, len: number): Buffer => Buffer.concat([Buffer.alloc(len), frame]);
