/**
 * The configuration's `hooks:` and `floating_address:` sections: what a
 * node does outside itself when its role changes (docs/failover.md,
 * "Role-change hooks" and "The floating service address"). Declared here,
 * apart from config.ts, so that the main schema only names them.
 */
import { isIP } from 'node:net';
import { z } from 'zod';
import { int, MAX_PATH_CHARS, section } from './schema.js';

/** Linux's IFNAMSIZ less its NUL. */
export const MAX_IFNAME_CHARS = 15;

/**
 * What is wrong with `text` as the name of a network interface, or
 * undefined. Stricter than the kernel (which takes any byte but '/', ':',
 * NUL and whitespace): the name reaches argv and a /proc path.
 */
export function interfaceNameProblem(text: string): string | undefined {
  if (text.length < 1 || text.length > MAX_IFNAME_CHARS || !/^[A-Za-z0-9_.-]+$/.test(text) || text === '.' || text === '..') {
    return `${JSON.stringify(text.slice(0, 40))} is not an interface name (1..${MAX_IFNAME_CHARS} of A-Z a-z 0-9 _ . -, not . or ..)`;
  }
  return undefined;
}

/** An address with its prefix length, as `ip addr` takes it. */
export interface PrefixedAddress {
  address: string;
  prefix: number;
  family: 4 | 6;
}

/**
 * Reads `ADDRESS/PREFIX` (IPv4 prefix 1..32, IPv6 1..128): the address, or
 * what is wrong. Refused: addresses a service cannot float on (unspecified,
 * loopback, multicast, link-local, IPv4 broadcast) and zone indexes.
 */
export function readPrefixedAddress(text: string): PrefixedAddress | string {
  const m = /^([0-9A-Fa-f.:]{2,45})\/(\d{1,3})$/.exec(text);
  if (m === null) return `expected ADDRESS/PREFIX (10.0.0.100/24, 2001:db8::100/64), got ${JSON.stringify(text.slice(0, 60))}`;
  const [, address, prefixText] = m;
  const family = isIP(address);
  if (family === 0) return `${JSON.stringify(address)} is not an IPv4 or IPv6 address`;
  const prefix = Number(prefixText);
  const max = family === 4 ? 32 : 128;
  if (prefix < 1 || prefix > max) return `prefix /${prefixText} is outside 1..${max} for an IPv${family} address`;
  // `ip -j addr` shows an IPv6 address in its canonical form: compared in that form, it is found however it was written.
  const canonical = family === 4 ? address : new URL(`http://[${address}]/`).hostname.slice(1, -1);
  const unfit = family === 4 ? unfitV4(canonical) : unfitV6(canonical);
  if (unfit !== undefined) return `${address} is ${unfit}: it cannot be a service address`;
  return { address: canonical, prefix, family: family === 4 ? 4 : 6 };
}

function unfitV4(address: string): string | undefined {
  const [a, b] = address.split('.').map(Number);
  if (address === '0.0.0.0') return 'the unspecified address';
  if (address === '255.255.255.255') return 'the broadcast address';
  if (a === 127) return 'a loopback address';
  if (a >= 224) return 'a multicast or reserved address';
  if (a === 169 && b === 254) return 'a link-local address';
  return undefined;
}

/** `a` in canonical form (lowercase, zeros compressed, an embedded IPv4 address in hex). */
function unfitV6(a: string): string | undefined {
  if (a === '::') return 'the unspecified address';
  if (a === '::1') return 'the loopback address';
  if (a.startsWith('ff')) return 'a multicast address';
  if (/^fe[89ab]/.test(a)) return 'a link-local address';
  if (a.startsWith('::ffff:') || /^::[0-9a-f]{1,4}:[0-9a-f]{1,4}$/.test(a)) return 'an IPv4-mapped or -compatible address (float the IPv4 address itself)';
  return undefined;
}

const prefixedAddress = () =>
  z
    .string({ error: (issue) => `expected ADDRESS/PREFIX, got ${issue.input === undefined ? 'nothing' : JSON.stringify(issue.input)}` })
    .max(60, { error: 'expected ADDRESS/PREFIX (at most 60 characters)' })
    .transform((text, ctx) => {
      const read = readPrefixedAddress(text);
      // Kept as text (canonical), as the file has it: its reader takes it apart with readPrefixedAddress().
      if (typeof read !== 'string') return `${read.address}/${read.prefix}`;
      ctx.issues.push({ code: 'custom', message: read, input: text });
      return z.NEVER;
    });

const interfaceName = () =>
  z
    .string({ error: 'expected a network interface name' })
    .max(64, { error: `expected a network interface name of at most ${MAX_IFNAME_CHARS} characters` })
    .transform((text, ctx) => {
      const wrong = interfaceNameProblem(text);
      if (wrong === undefined) return text;
      ctx.issues.push({ code: 'custom', message: wrong, input: text });
      return z.NEVER;
    });

/** What is wrong with `text` as a hook's path, or undefined: run without a shell and without a PATH search, so absolute. */
export function hookPathProblem(text: string): string | undefined {
  if (text.length === 0 || text.length > MAX_PATH_CHARS) return `expected an absolute path of 1..${MAX_PATH_CHARS} characters`;
  if (!text.startsWith('/')) return `expected an absolute path (the hook is run without a shell or a PATH search), got ${JSON.stringify(text.slice(0, 80))}`;
  if (text.includes('\0')) return 'expected a path without NUL bytes';
  return undefined;
}

const hookPath = () =>
  z
    .string({ error: 'expected the absolute path of an executable' })
    .max(MAX_PATH_CHARS, { error: `expected a path of at most ${MAX_PATH_CHARS} characters` })
    .transform((text, ctx) => {
      const wrong = hookPathProblem(text);
      if (wrong === undefined) return text;
      ctx.issues.push({ code: 'custom', message: wrong, input: text });
      return z.NEVER;
    });

/** Role-change hooks (docs/failover.md, "Role-change hooks"). */
export const hooksSchema = section({
  // An executable run at every change of this node's role (serving, promoted, fenced, ...), with no shell.
  role_change: hookPath().optional(),
  // A run still going after this long is killed (SIGTERM, then SIGKILL a second later); the next one runs.
  timeout_ms: int(100, 600_000).default(10_000),
});

/**
 * The service address that moves with the guest (docs/failover.md, "The
 * floating service address"): the node that serves adds it to `interface`
 * and announces it; a node that stops serving removes it.
 */
export const floatingAddressSchema = section({
  address: prefixedAddress(),
  interface: interfaceName(),
  // Unsolicited ARPs (IPv4) or neighbour advertisements (IPv6) after taking the address, one a second.
  announce_count: int(1, 30).default(3),
});

export type HooksConfig = z.output<typeof hooksSchema>;
export type FloatingAddressConfig = z.output<typeof floatingAddressSchema>;
