/**
 * `tandem certs init DIR --nodes NAME,NAME`: a private CA and, for each
 * node, a certificate and key the TLS transport accepts (identity.ts),
 * written in the layout `--tls DIR` reads:
 *
 *   DIR/ca.crt      the CA certificate (every node needs it)
 *   DIR/ca.key      the CA's key: stays where it was made, never on a node
 *   DIR/NAME.crt    node NAME's certificate (tandem:NAME, server and client use)
 *   DIR/NAME.key    node NAME's key (0600)
 *   DIR/etcd.crt    with --etcd HOST,...: a server certificate for the
 *   DIR/etcd.key    arbiter's etcd members at those addresses, so that the
 *                   nodes reach etcd over HTTPS with their own certificates
 *                   as client certificates (etcd --client-cert-auth)
 *
 * Keys are ECDSA P-256, made with Node's WebCrypto; @peculiar/x509 writes the
 * certificates, so no system `openssl` is needed. It is loaded only here,
 * when certificates are made, not by every `tandem` command.
 */
import { KeyObject, randomBytes, webcrypto } from 'node:crypto';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { TransportError, TransportErrorCodes as C } from './errors.js';
import { nodeNameProblem, nodeUri } from './identity.js';

export const CA_CERT_FILE = 'ca.crt';
export const CA_KEY_FILE = 'ca.key';
export const CERT_SUFFIX = '.crt';
export const KEY_SUFFIX = '.key';
export const MAX_CERT_DAYS = 36_500;
export const DEFAULT_CERT_DAYS = 825;
/** Certificates start this long before they are made: the other host's clock may be a little behind. */
const BACKDATE_MS = 5 * 60_000;
const DAY_MS = 86_400_000;

/** Where node `name`'s files are in a certificate directory. */
export function tlsPaths(dir: string, name: string): { ca: string; cert: string; key: string } {
  return { ca: join(dir, CA_CERT_FILE), cert: join(dir, `${name}${CERT_SUFFIX}`), key: join(dir, `${name}${KEY_SUFFIX}`) };
}

export interface CertsInitOptions {
  nodes: readonly string[];
  /** Validity of every certificate, days. */
  days: number;
  /** When the certificates start (tests make expired ones); default now. */
  now?: Date;
  /** Addresses (IPs or DNS names) of etcd members: an etcd server certificate naming them all is made too. */
  etcd?: readonly string[];
}

/** The etcd members' certificate and key in a certificate directory. */
export const ETCD_CERT_NAME = 'etcd';
/** A few members per cluster, each with an address or two. */
const MAX_ETCD_HOSTS = 32;
const DNS_NAME = /^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

/** Refuses an etcd host list: returns what is wrong, or undefined. */
export function etcdHostsProblem(hosts: readonly string[], nodes: readonly string[]): string | undefined {
  if (hosts.length === 0) return 'name at least one etcd host';
  if (hosts.length > MAX_ETCD_HOSTS) return `at most ${MAX_ETCD_HOSTS} etcd hosts`;
  const bad = hosts.find((h) => isIP(h) === 0 && !DNS_NAME.test(h));
  if (bad !== undefined) return `etcd host ${JSON.stringify(bad.slice(0, 300))} is neither an IP address nor a DNS name`;
  if (nodes.includes(ETCD_CERT_NAME)) return `a node named "${ETCD_CERT_NAME}" would share its files with etcd's certificate`;
  return undefined;
}

export interface CertsInitResult {
  dir: string;
  /** The files written, CA first. */
  files: string[];
  /** SHA-256 fingerprint of the CA certificate, to compare on each host. */
  caFingerprint: string;
}

const ECDSA = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;

/** A positive serial number of 16 random bytes, as hex. */
const serial = (): string => {
  const b = randomBytes(16);
  b[0] &= 0x7f;
  return b.toString('hex');
};

const pemKey = (key: webcrypto.CryptoKey): string => KeyObject.from(key).export({ type: 'pkcs8', format: 'pem' }) as string;

/** Refuses a node list `tandem certs init` cannot make: returns what is wrong, or undefined. */
export function nodesProblem(nodes: readonly string[]): string | undefined {
  if (nodes.length === 0) return 'name at least one node';
  for (const n of nodes) {
    const problem = nodeNameProblem(n);
    if (problem !== undefined) return problem;
  }
  const twice = nodes.find((n, i) => nodes.indexOf(n) !== i);
  return twice === undefined ? undefined : `"${twice}" is named twice`;
}

/**
 * Makes the CA and one certificate per node and writes them to `dir`
 * (created 0700 if missing). Refuses, writing nothing, if any of the files
 * exists: a CA is not replaced by accident.
 */
export async function certsInit(dir: string, options: CertsInitOptions): Promise<CertsInitResult> {
  const problem = nodesProblem(options.nodes);
  if (problem !== undefined) throw new TransportError(C.CERTS_INIT_FAILED, `certs init: ${problem}`);
  if (!(Number.isInteger(options.days) && options.days >= 1 && options.days <= MAX_CERT_DAYS)) {
    throw new TransportError(C.CERTS_INIT_FAILED, `certs init: days must be an integer in 1..${MAX_CERT_DAYS}, got ${options.days}`);
  }
  const etcd = options.etcd;
  const etcdProblem = etcd === undefined ? undefined : etcdHostsProblem(etcd, options.nodes);
  if (etcdProblem !== undefined) throw new TransportError(C.CERTS_INIT_FAILED, `certs init: ${etcdProblem}`);
  const named = etcd === undefined ? options.nodes : [...options.nodes, ETCD_CERT_NAME];
  const files = [join(dir, CA_CERT_FILE), join(dir, CA_KEY_FILE), ...named.flatMap((n) => [tlsPaths(dir, n).cert, tlsPaths(dir, n).key])];
  const existing = files.filter((f) => existsSync(f));
  if (existing.length > 0) throw new TransportError(C.CERTS_INIT_FAILED, `certs init: ${existing.join(', ')} already exist${existing.length === 1 ? 's' : ''}; remove them or choose another directory`);

  // Loaded here only: about 100 ms of module loading that no other command needs.
  await import('reflect-metadata');
  const x509 = await import('@peculiar/x509');
  // Node's WebCrypto is the standard one; its typings are not the DOM's, which the library names.
  x509.cryptoProvider.set(webcrypto as never);
  const { subtle } = webcrypto;

  const notBefore = new Date((options.now ?? new Date()).getTime() - BACKDATE_MS);
  const notAfter = new Date(notBefore.getTime() + BACKDATE_MS + options.days * DAY_MS);
  const caKeys = await subtle.generateKey(ECDSA, true, ['sign', 'verify']);
  // A random id in the CA's name: two deployments' CAs are told apart in every message that names one.
  const caName = `CN=Tandem CA ${randomBytes(4).toString('hex')}`;
  const ca = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: caName,
    notBefore,
    notAfter,
    signingAlgorithm: ECDSA,
    keys: caKeys,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(caKeys.publicKey),
    ],
  });

  const written: [string, string, number][] = [
    [join(dir, CA_CERT_FILE), ca.toString('pem'), 0o644],
    [join(dir, CA_KEY_FILE), pemKey(caKeys.privateKey), 0o600],
  ];
  for (const name of named) {
    const keys = await subtle.generateKey(ECDSA, true, ['sign', 'verify']);
    // etcd checks a client's certificate against the CA only; its own is checked by host, as HTTPS is.
    const names = name === ETCD_CERT_NAME && etcd !== undefined ? etcd.map((h) => (isIP(h) === 0 ? { type: 'dns' as const, value: h } : { type: 'ip' as const, value: h })) : [{ type: 'url' as const, value: nodeUri(name) }];
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: serial(),
      subject: `CN=${name}`,
      issuer: ca.subject,
      notBefore,
      notAfter,
      signingAlgorithm: ECDSA,
      publicKey: keys.publicKey,
      signingKey: caKeys.privateKey,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        // Both: a node listens (secondary) and dials (primary), and a promoted secondary swaps roles.
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
        new x509.SubjectAlternativeNameExtension(names),
        await x509.AuthorityKeyIdentifierExtension.create(caKeys.publicKey),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      ],
    });
    const paths = tlsPaths(dir, name);
    written.push([paths.cert, cert.toString('pem'), 0o644], [paths.key, pemKey(keys.privateKey), 0o600]);
  }

  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    // 'wx': never over a file that appeared since the check above.
    for (const [file, text, mode] of written) writeFileSync(file, text, { mode, flag: 'wx' });
  } catch (err) {
    throw new TransportError(C.CERTS_INIT_FAILED, `certs init: cannot write ${dir}: ${(err as Error).message}`, { cause: err });
  }
  const fingerprint = Buffer.from(await ca.getThumbprint('SHA-256')).toString('hex').toUpperCase().match(/../g)!.join(':');
  return { dir, files: written.map(([f]) => f), caFingerprint: fingerprint };
}
