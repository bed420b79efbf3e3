/**
 * Pure decoding of the Ethernet frames the guests send: Ethernet II with at
 * most one 802.1Q/802.1ad tag, then IPv4, IPv6 or ARP, then TCP, UDP or
 * ICMP/ICMPv6. Only what the comparator needs is extracted (the fields that
 * name the connection, looked up in flows.ts; where the compared bytes are;
 * TCP sequence fields), and every length is checked against the bytes
 * actually present before it is used: a frame whose headers contradict
 * themselves gets a typed error naming the field.
 */
import { ProxyError, ProxyErrorCodes as C } from './errors.js';

export const ETH_HLEN = 14;
const VLAN_TAG = 4;
export const EtherType = { IPV4: 0x0800, ARP: 0x0806, VLAN: 0x8100, QINQ: 0x88a8, IPV6: 0x86dd } as const;
export const IpProto = { ICMP: 1, TCP: 6, UDP: 17, ICMPV6: 58 } as const;
export const TcpFlag = { FIN: 0x01, SYN: 0x02, RST: 0x04, PSH: 0x08, ACK: 0x10, URG: 0x20 } as const;

/** IPv6 extension headers walked to find the transport header (RFC 8200 section 4). */
const IPV6_EXT_HOP = 0;
const IPV6_EXT_ROUTING = 43;
const IPV6_EXT_FRAGMENT = 44;
const IPV6_EXT_DSTOPTS = 60;
/** Bound on the extension header walk: a chain longer than this is refused. */
const MAX_IPV6_EXT_HEADERS = 8;

/**
 * - `tcp`, `udp`, `icmp`: compared per connection (ICMP includes ICMPv6).
 * - `ip`: another IP protocol, or a fragment (no transport header to key on):
 *   compared per address pair by its IP payload.
 * - `arp`, `l2`: not IP; passed through uncompared (see docs/proxy.md).
 */
export type PacketKind = 'tcp' | 'udp' | 'icmp' | 'ip' | 'arp' | 'l2';

/**
 * One decoded frame. A class with every field assigned in the constructor,
 * so all packets share one shape (this runs once per frame on the hot path).
 */
export class Packet {
  /** 4 or 6 for IP kinds, 0 otherwise. */
  family: 0 | 4 | 6 = 0;
  /** IP protocol (IPv6: the final next-header value), 0 when not IP. */
  proto = 0;
  /** Offset in the record data of the IP payload (transport header) and the end of the IP packet (padding excluded). */
  l4Start = 0;
  l4End = 0;
  /** TCP only (0 otherwise). */
  seq = 0;
  ack = 0;
  flags = 0;
  /** TCP payload bounds in the record data (equal when there is none). */
  payloadStart = 0;
  payloadEnd = 0;
  /** Ports (TCP, UDP), -1 otherwise; offset of the source address in the data (IP kinds). */
  sport = -1;
  dport = -1;
  addrAt = 0;
  /** EtherType for the `l2` kind. */
  etherType = 0;
  /** An IP fragment (kind `ip`): no transport header to key on. */
  fragment = false;

  constructor(
    /** The record data the offsets point into (see rebase()). */
    public data: Buffer,
    public kind: PacketKind,
    /** 802.1Q VLAN id, or -1 when untagged. */
    readonly vlan: number,
  ) {}

  /** The same bytes, now in `data` (a held frame's own copy): every offset stays valid. */
  rebase(data: Buffer): void {
    this.data = data;
  }

  /** Human-readable flow, for logs and events: "tcp 10.0.0.1:80 > 10.0.0.2:40000". */
  flow(): string {
    if (this.kind === 'arp') return 'arp';
    if (this.kind === 'l2') return `ethertype 0x${this.etherType.toString(16).padStart(4, '0')}`;
    const d = this.data;
    const [sa, da] = this.family === 4 ? [ipv4Text(d, this.addrAt), ipv4Text(d, this.addrAt + 4)] : [`[${ipv6Text(d, this.addrAt)}]`, `[${ipv6Text(d, this.addrAt + 16)}]`];
    const name = PROTO_NAMES[this.proto] ?? `proto ${this.proto}`;
    const vlan = this.vlan < 0 ? '' : ` vlan ${this.vlan}`;
    if (this.fragment) return `${name} fragment ${sa} > ${da}${vlan}`;
    if (this.sport >= 0) return `${name} ${sa}:${this.sport} > ${da}:${this.dport}${vlan}`;
    return `${name} ${sa} > ${da}${vlan}`;
  }
}

function malformed(what: string): never {
  throw new ProxyError(C.PROXY_PACKET_MALFORMED, what);
}

const ipv4Text = (d: Buffer, at: number): string => `${d[at]}.${d[at + 1]}.${d[at + 2]}.${d[at + 3]}`;

function ipv6Text(d: Buffer, at: number): string {
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(d.readUInt16BE(at + i).toString(16));
  return groups.join(':').replace(/(^|:)0(:0)+(:|$)/, '::');
}

const PROTO_NAMES: Record<number, string> = { 1: 'icmp', 6: 'tcp', 17: 'udp', 58: 'icmpv6' };

/**
 * Decodes the frame in `data`, which starts after `vnetHdrLen` bytes of
 * virtio-net header. Throws ProxyError(ERR_PROXY_PACKET_MALFORMED) on a
 * frame whose headers do not fit.
 */
export function decodePacket(data: Buffer, vnetHdrLen = 0): Packet {
  const end = data.length;
  let at = vnetHdrLen;
  if (end - at < ETH_HLEN) malformed(`Ethernet frame of ${end - at} bytes is shorter than its ${ETH_HLEN}-byte header`);
  let type = data.readUInt16BE(at + 12);
  at += ETH_HLEN;
  let vlan = -1;
  if (type === EtherType.VLAN || type === EtherType.QINQ) {
    if (end - at < VLAN_TAG) malformed('802.1Q tag cut short');
    vlan = data.readUInt16BE(at) & 0x0fff;
    type = data.readUInt16BE(at + 2);
    at += VLAN_TAG;
  }
  if (type === EtherType.IPV4) return decodeIpv4(new Packet(data, 'ip', vlan), at, end);
  if (type === EtherType.IPV6) return decodeIpv6(new Packet(data, 'ip', vlan), at, end);
  const p = new Packet(data, type === EtherType.ARP ? 'arp' : 'l2', vlan);
  p.etherType = type;
  p.l4Start = at;
  p.l4End = end;
  return p;
}

function decodeIpv4(p: Packet, at: number, end: number): Packet {
  const d = p.data;
  if (end - at < 20) malformed(`IPv4 header cut short: ${end - at} bytes, at least 20 needed`);
  const vihl = d[at];
  if (vihl >> 4 !== 4) malformed(`IPv4 version field is ${vihl >> 4}, expected 4`);
  const ihl = (vihl & 0x0f) * 4;
  if (ihl < 20) malformed(`IPv4 header length ${ihl} is below the minimum of 20`);
  const total = d.readUInt16BE(at + 2);
  // Total length covers header and payload; Ethernet may pad beyond it, never cut it.
  if (total < ihl) malformed(`IPv4 total length ${total} is shorter than its header length ${ihl}`);
  if (total > end - at) malformed(`IPv4 total length ${total} exceeds the ${end - at} bytes present`);
  // A fragment other than an unfragmented packet's only piece: ports are absent or partial.
  const fragmented = (d.readUInt16BE(at + 6) & 0x3fff) !== 0;
  p.family = 4;
  p.proto = d[at + 9];
  p.addrAt = at + 12;
  return transport(p, at + ihl, at + total, fragmented);
}

function decodeIpv6(p: Packet, at: number, end: number): Packet {
  const d = p.data;
  if (end - at < 40) malformed(`IPv6 header cut short: ${end - at} bytes, 40 needed`);
  if (d[at] >> 4 !== 6) malformed(`IPv6 version field is ${d[at] >> 4}, expected 6`);
  const payloadLen = d.readUInt16BE(at + 4);
  if (payloadLen > end - at - 40) malformed(`IPv6 payload length ${payloadLen} exceeds the ${end - at - 40} bytes present`);
  const l4End = at + 40 + payloadLen;
  let next = d[at + 6];
  let l4Start = at + 40;
  let fragmented = false;
  for (let hops = 0; ; hops++) {
    if (next === IPV6_EXT_HOP || next === IPV6_EXT_ROUTING || next === IPV6_EXT_DSTOPTS) {
      if (hops >= MAX_IPV6_EXT_HEADERS) malformed(`more than ${MAX_IPV6_EXT_HEADERS} IPv6 extension headers`);
      if (l4End - l4Start < 8) malformed(`IPv6 extension header ${next} cut short`);
      const len = (d[l4Start + 1] + 1) * 8;
      if (len > l4End - l4Start) malformed(`IPv6 extension header ${next} of ${len} bytes exceeds the payload`);
      next = d[l4Start];
      l4Start += len;
    } else if (next === IPV6_EXT_FRAGMENT) {
      if (hops >= MAX_IPV6_EXT_HEADERS) malformed(`more than ${MAX_IPV6_EXT_HEADERS} IPv6 extension headers`);
      if (l4End - l4Start < 8) malformed('IPv6 fragment header cut short');
      // Offset or more-fragments set: this packet is a piece of a larger one.
      fragmented = (d.readUInt16BE(l4Start + 2) & 0xfff9) !== 0;
      next = d[l4Start];
      l4Start += 8;
    } else {
      break;
    }
  }
  p.family = 6;
  p.proto = next;
  p.addrAt = at + 8;
  return transport(p, l4Start, l4End, fragmented);
}

function transport(p: Packet, l4Start: number, l4End: number, fragmented: boolean): Packet {
  const d = p.data;
  const len = l4End - l4Start;
  const proto = p.proto;
  p.l4Start = l4Start;
  p.l4End = l4End;
  if (fragmented) {
    p.fragment = true;
    return p; // kind 'ip'
  }
  if (proto === IpProto.TCP) {
    if (len < 20) malformed(`TCP header cut short: ${len} bytes, at least 20 needed`);
    const off = (d[l4Start + 12] >> 4) * 4;
    if (off < 20) malformed(`TCP data offset ${off} is below the minimum of 20`);
    if (off > len) malformed(`TCP data offset ${off} exceeds the ${len} bytes of the segment`);
    p.kind = 'tcp';
    p.sport = d.readUInt16BE(l4Start);
    p.dport = d.readUInt16BE(l4Start + 2);
    p.seq = d.readUInt32BE(l4Start + 4);
    p.ack = d.readUInt32BE(l4Start + 8);
    p.flags = d[l4Start + 13];
    p.payloadStart = l4Start + off;
    p.payloadEnd = l4End;
    return p;
  }
  if (proto === IpProto.UDP) {
    if (len < 8) malformed(`UDP header cut short: ${len} bytes, 8 needed`);
    const ulen = d.readUInt16BE(l4Start + 4);
    if (ulen < 8 || ulen > len) malformed(`UDP length ${ulen} is outside 8..${len} (the IP payload)`);
    p.kind = 'udp';
    p.sport = d.readUInt16BE(l4Start);
    p.dport = d.readUInt16BE(l4Start + 2);
    return p;
  }
  if (proto === IpProto.ICMP || proto === IpProto.ICMPV6) {
    if (len < 4) malformed(`ICMP header cut short: ${len} bytes, at least 4 needed`);
    p.kind = 'icmp';
  }
  return p;
}
