/** HOST:PORT operands and config values, validated. */
import { isIP } from 'node:net';
import { ConfigError } from '../errors.js';

export interface Address {
  host: string;
  port: number;
}

const HOSTNAME = /^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;
const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

/**
 * Reads `host:port` or `[v6]:port`: the address, or a sentence saying what is
 * wrong with the text (for a caller that names the text's origin itself, like
 * the configuration schema). Port 0 (any free port) only where `allowZero`.
 */
export function readAddress(text: string, allowZero = false): Address | string {
  const m = /^\[([0-9A-Fa-f:.]+)\]:(\d{1,5})$/.exec(text) ?? /^([^:[\]]+):(\d{1,5})$/.exec(text);
  if (!m) return `expected HOST:PORT (or [IPv6]:PORT), got ${JSON.stringify(text)}`;
  const [, host, portText] = m;
  const port = Number(portText);
  if (!(port <= 65535 && (port > 0 || allowZero))) return `port ${portText} is outside ${allowZero ? 0 : 1}..65535`;
  const v6 = text.startsWith('[');
  // All digits and dots is meant as IPv4, so it must be a valid one (300.1.1.1 is not a host name).
  const numeric = /^[\d.]+$/.test(host);
  if (!v6 && !(numeric ? IPV4.test(host) : HOSTNAME.test(host))) return `${JSON.stringify(host)} is not a host name or IPv4 address`;
  return { host, port };
}

/** Parses `host:port` or `[v6]:port`; `what` (a flag, a key) starts the error message. Port 0 only where `allowZero`. */
export function parseAddress(text: string, what: string, allowZero = false): Address {
  const read = readAddress(text, allowZero);
  if (typeof read === 'string') throw new ConfigError(`${what}: ${read}`);
  return read;
}

export const formatAddress = (a: Address): string => (a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`);

/** 127.0.0.0/8, ::1 and IPv4-mapped loopback. */
export function isLoopback(address: string | undefined): boolean {
  if (address === undefined) return false;
  const a = address.startsWith('::ffff:') ? address.slice(7) : address;
  if (isIP(a) === 4) return a.startsWith('127.');
  return a === '::1';
}

/** Whether `host` (an address to bind or dial) stays on this machine. */
export function isLoopbackHost(host: string): boolean {
  return host === 'localhost' || isLoopback(host);
}
