/**
 * Who a node is, as its certificate says: a node name (a DNS label, such as
 * the host's name) carried as the URI `tandem:NAME` in the certificate's
 * subject alternative names. The transport accepts a peer only if its
 * certificate chains to the configured CA *and* carries the configured
 * peer's URI, so a certificate the same CA issued to a third node is
 * refused. `tandem certs init` issues certificates of this shape.
 */
import type { X509Certificate } from 'node:crypto';

/**
 * A lowercase DNS label. Kept this narrow so that a name is also a safe file
 * name (DIR/NAME.crt) and so that Node's text form of the subject
 * alternative names, which the check below reads, cannot be forged by a
 * name with commas or quotes in it.
 */
export const NODE_NAME = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
export const NODE_NAME_RULE = 'a lowercase DNS label (a-z, 0-9 and inner dashes, at most 63 characters)';
/** `ca` names the CA's own files in a certificate directory. */
export const RESERVED_NAMES: readonly string[] = ['ca'];

const URI_PREFIX = 'tandem:';

/** What is wrong with `name` as a node name, or undefined if it is one. */
export function nodeNameProblem(name: string): string | undefined {
  if (!NODE_NAME.test(name)) return `${JSON.stringify(name.slice(0, 80))} is not ${NODE_NAME_RULE}`;
  if (RESERVED_NAMES.includes(name)) return `"${name}" is reserved for the CA's files`;
  return undefined;
}

/** The subject alternative name that identifies node `name`. */
export const nodeUri = (name: string): string => `${URI_PREFIX}${name}`;

/**
 * The node names a certificate carries. Node prints the alternative names
 * as `TYPE:value` entries joined by ", ", quoting any value with a comma or
 * a quote in it; such an entry never matches a node name, so splitting is
 * safe for what is looked for.
 */
export function certificateNodeNames(cert: Pick<X509Certificate, 'subjectAltName'>): string[] {
  const names: string[] = [];
  for (const entry of (cert.subjectAltName ?? '').split(', ')) {
    if (!entry.startsWith(`URI:${URI_PREFIX}`)) continue;
    const name = entry.slice(`URI:${URI_PREFIX}`.length);
    if (NODE_NAME.test(name)) names.push(name);
  }
  return names;
}

/** How a set of names reads in a message. */
export const describeNames = (names: readonly string[]): string => (names.length === 0 ? 'no node name (no tandem:NAME URI)' : names.map((n) => `"${n}"`).join(', '));
