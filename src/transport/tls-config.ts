/**
 * The configuration's `tls:` section: how the channels between the hosts
 * are secured (docs/security.md). Mutual TLS from a certificate directory
 * (`tandem certs init`) or three files, or, on one machine only, plain TCP.
 * Declared here, next to the transport that reads it, so that
 * src/config/config.ts only names the section. Which transport a node runs,
 * and the refusal of neither, is decided in ./select.ts once the flags are
 * applied.
 */
import type { z } from 'zod';
import { bool, checked, int, path, rule, section } from '../config/schema.js';
import { formatAddress, isLoopbackHost, type Address } from '../util/address.js';
import { NODE_NAME_RULE, nodeNameProblem } from './identity.js';

/** A DNS label is at most 63 characters; longer input is refused before it is looked at. */
const nodeName = () => checked(NODE_NAME_RULE, 63, nodeNameProblem);

export const tlsSchema = section({
  // A `tandem certs init` directory: ca.crt, NAME.crt and NAME.key are read from it.
  dir: path().optional(),
  // Or the three files, each anywhere (all three, and no dir).
  ca: path().optional(),
  cert: path().optional(),
  key: path().optional(),
  // This node's name: its certificate carries it (URI tandem:NAME).
  name: nodeName().optional(),
  // The one node this one accepts; with dir it defaults to the other certificate there, when there are exactly two.
  peer: nodeName().optional(),
  // A connection that has not finished its TLS handshake this long after it was accepted is dropped.
  handshake_timeout_ms: int(10, 60_000).default(2000),
  // Plain TCP between the hosts, unauthenticated and unencrypted: refused unless every inter-host address is loopback.
  insecure: bool().default(false),
}).check(
  rule((t) =>
    t.insecure && (t.dir ?? t.ca ?? t.cert ?? t.key) !== undefined ? 'tls.insecure: true turns TLS off, yet certificates are configured (tls.dir, tls.ca, tls.cert or tls.key): keep one or the other' : undefined,
  ),
  rule((t) => (t.dir !== undefined && (t.ca ?? t.cert ?? t.key) !== undefined ? 'tls: set tls.dir or tls.ca, tls.cert and tls.key, not both' : undefined)),
  rule((t) => {
    const given = [t.ca, t.cert, t.key].filter((f) => f !== undefined).length;
    return given > 0 && given < 3 ? 'tls: tls.ca, tls.cert and tls.key go together (or use tls.dir)' : undefined;
  }),
  rule((t) => (t.name !== undefined && t.name === t.peer ? `tls.peer: "${t.peer}" is this node's own name (tls.name)` : undefined)),
);

export type TlsConfig = z.output<typeof tlsSchema>;

/** What insecureExposure() reads of a configuration: the addresses between the hosts. */
export interface InterHostAddresses {
  primary: { secondary: Address | undefined; heartbeat: Address | undefined };
  secondary: { listen: Address; heartbeat: Address | undefined };
  colo: { net: Address | undefined };
  tls: { insecure: boolean };
}

/**
 * tls.insecure (plain TCP) is for one machine: what is wrong when an
 * inter-host address is set to something other than loopback, naming each
 * such key; undefined otherwise. Defaults derived from these addresses
 * (heartbeat and net link ports) are on the same hosts, so the keys set
 * are the ones to look at. Checked when the file is read and again once
 * the flags are applied (select.ts).
 */
export function insecureExposure(cfg: InterHostAddresses): string | undefined {
  if (!cfg.tls.insecure) return undefined;
  const keys: [string, Address | undefined][] = [
    ['primary.secondary', cfg.primary.secondary],
    ['primary.heartbeat', cfg.primary.heartbeat],
    ['secondary.listen', cfg.secondary.listen],
    ['secondary.heartbeat', cfg.secondary.heartbeat],
    ['colo.net', cfg.colo.net],
  ];
  const open = keys.filter((k): k is [string, Address] => k[1] !== undefined && !isLoopbackHost(k[1].host));
  if (open.length === 0) return undefined;
  const where = open.map(([key, a]) => `${key} (${formatAddress(a)})`).join(', ');
  return `tls.insecure: true (plain TCP, unauthenticated) is refused on an address other than loopback: ${where}; set up mutual TLS instead (tandem certs init DIR --nodes A,B, then --tls DIR --name NAME, or tls.dir and tls.name)`;
}
