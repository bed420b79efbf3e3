/**
 * Naming a peer that is not Tandem at all. A misconfigured address (the
 * secondary's port given to a web server, an sshd, a redis) otherwise shows
 * up as a "malformed back-channel" with a record type made of ASCII: the
 * operator should read what answered instead.
 */

/** How many of the peer's first bytes are looked at (and quoted). */
export const SNIFF_BYTES = 64;

const BANNERS: readonly { test: RegExp; name: string }[] = [
  { test: /^HTTP\/\d(\.\d)? \d{3}/, name: 'an HTTP server' },
  { test: /^SSH-\d\.\d+-/, name: 'an SSH server' },
  { test: /^[-+][A-Za-z]/, name: 'a Redis-protocol server' },
  { test: /^220[ -]/, name: 'an SMTP or FTP server' },
];

/**
 * What kind of server sent `first` (the peer's first bytes), or undefined
 * when it may be Tandem. A TLS record header (content type 21 alert or 22
 * handshake, version 3.x) means a TLS server was spoken to in plain TCP.
 */
export function foreignPeer(first: Buffer): { name: string; said: string } | undefined {
  const head = first.subarray(0, SNIFF_BYTES);
  if (head.length >= 3 && (head[0] === 0x15 || head[0] === 0x16) && head[1] === 0x03 && head[2] <= 0x04) {
    return { name: 'a TLS server (this side speaks plain TCP: check transport.tls on both nodes)', said: `TLS record type ${head[0]}` };
  }
  const text = head.toString('latin1');
  for (const b of BANNERS) {
    // Only the first line, printable characters only: it goes into a log line.
    if (b.test.test(text)) return { name: b.name, said: JSON.stringify(text.split(/\r?\n/, 1)[0].replace(/[^\x20-\x7e]/g, '?')) };
  }
  return undefined;
}
