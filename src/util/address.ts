/** HOST:PORT operands and config values, validated. */
import { ConfigError } from '../errors.js';

export interface Address {
  host: string;
  port: number;
}

const HOSTNAME = /^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;
const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

/** Parses `host:port` or `[v6]:port`. Port 0 (any free port) only where `allowZero`. */
export function parseAddress(text: string, what: string, allowZero = false): Address {
  const m = /^\[([0-9A-Fa-f:.]+)\]:(\d{1,5})$/.exec(text) ?? /^([^:[\]]+):(\d{1,5})$/.exec(text);
  if (!m) throw new ConfigError(`${what}: expected HOST:PORT (or [IPv6]:PORT), got ${JSON.stringify(text)}`);
  const [, host, portText] = m;
  const port = Number(portText);
  if (!(port <= 65535 && (port > 0 || allowZero))) throw new ConfigError(`${what}: port ${portText} is outside ${allowZero ? 0 : 1}..65535`);
  const v6 = text.startsWith('[');
  // All digits and dots is meant as IPv4, so it must be a valid one (300.1.1.1 is not a host name).
  const numeric = /^[\d.]+$/.test(host);
  if (!v6 && !(numeric ? IPV4.test(host) : HOSTNAME.test(host))) throw new ConfigError(`${what}: ${JSON.stringify(host)} is not a host name or IPv4 address`);
  return { host, port };
}

export const formatAddress = (a: Address): string => (a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`);
