/**
 * A node's TLS credentials from its configuration (the `tls:` section, or
 * --tls DIR --name NAME [--peer NAME]): the CA certificate, this node's
 * certificate and key, read with a bounded size and checked before anything
 * listens or dials, so that a wrong file is one clear ConfigError at start
 * rather than a refused handshake later. A key file that every user of the
 * host can read is refused; one its group can read is warned about.
 */
import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto';
import { readdirSync } from 'node:fs';
import type { TlsConfig } from './tls-config.js';
import { ConfigError } from '../errors.js';
import { CA_CERT_FILE, CA_KEY_FILE, CERT_SUFFIX, tlsPaths } from './certs.js';
import { certificateNodeNames, describeNames, nodeNameProblem } from './identity.js';
import type { TlsCredentials } from './tls.js';
import { readLimitedFile } from '../util/secret-file.js';

/** A PEM certificate or key is a few KiB; a chain, a few more. */
export const MAX_PEM_BYTES = 64 * 1024;
/** Warn when a certificate ends sooner than this. */
const EXPIRY_WARNING_DAYS = 30;
const DAY_MS = 86_400_000;

export interface LoadedCredentials extends TlsCredentials {
  /** SHA-256 fingerprint of the CA certificate, to compare between the hosts. */
  caFingerprint: string;
}

/** How a key is named in messages: the YAML key and the flag that sets it. */
const DIR = 'tls.dir (--tls)';
const NAME = 'tls.name (--name)';
const PEER = 'tls.peer (--peer)';

const configError = (message: string, options?: { cause?: unknown }): ConfigError => new ConfigError(message, options);

/** A PEM file; `secret`: a private key, refused if every user can read it, warned about if its group can. */
function readPem(file: string, label: string, secret: boolean, warn: (message: string) => void): Buffer {
  return readLimitedFile(file, { label, what: 'a PEM certificate or key', maxBytes: MAX_PEM_BYTES, secret: secret ? { group: 'warn', warn } : undefined, fail: configError });
}

function certificate(pem: Buffer, file: string, label: string): X509Certificate {
  if (!pem.includes('-----BEGIN CERTIFICATE-----')) throw new ConfigError(`${label}: ${file} is not a PEM certificate (no BEGIN CERTIFICATE line)`);
  try {
    return new X509Certificate(pem);
  } catch (err) {
    throw new ConfigError(`${label}: ${file} is not a valid PEM certificate: ${(err as Error).message}`, { cause: err });
  }
}

function privateKey(pem: Buffer, file: string, label: string): KeyObject {
  // OpenSSL's message for garbage is about the decoder; say what was expected. It never quotes the bytes.
  try {
    return createPrivateKey({ key: pem, format: 'pem' });
  } catch (err) {
    throw new ConfigError(`${label}: ${file} is not an unencrypted PEM private key: ${(err as Error).message}`, { cause: err });
  }
}

/** Refuses a certificate outside its validity; warns when it ends soon. */
function checkDates(cert: X509Certificate, file: string, label: string, now: number, warn: (message: string) => void): void {
  const from = Date.parse(cert.validFrom);
  const to = Date.parse(cert.validTo);
  if (now < from) throw new ConfigError(`${label}: ${file} is not valid before ${cert.validFrom}: is this host's clock right?`);
  if (now > to) throw new ConfigError(`${label}: ${file} expired on ${cert.validTo}; make new certificates (tandem certs init)`);
  if (to - now < EXPIRY_WARNING_DAYS * DAY_MS) warn(`${label}: ${file} expires on ${cert.validTo}, in ${Math.floor((to - now) / DAY_MS)} days`);
}

/** The node names of the certificates in a `tandem certs init` directory. */
export function certificateNames(dir: string): string[] {
  let entries: string[];
  try {
    entries = readdirSync(dir);
  } catch (err) {
    throw new ConfigError(`${DIR}: cannot read the directory ${dir}: ${(err as Error).message}`, { cause: err });
  }
  return entries
    .filter((f) => f.endsWith(CERT_SUFFIX) && f !== CA_CERT_FILE)
    .map((f) => f.slice(0, -CERT_SUFFIX.length))
    .filter((n) => nodeNameProblem(n) === undefined)
    .sort();
}

/** The peer when it is not named: with a directory of exactly two node certificates, the other one. */
export function defaultPeer(dir: string, name: string): string {
  const names = certificateNames(dir);
  const others = names.filter((n) => n !== name);
  if (names.length === 2 && others.length === 1) return others[0];
  const held = names.length === 0 ? 'no node certificate' : `certificates for ${describeNames(names)}`;
  throw new ConfigError(`${PEER}: name the peer: the default is the other certificate of two, and ${dir} holds ${held}`);
}

/**
 * This node's credentials, checked: the CA is a CA, this node's certificate
 * is the CA's, names this node and belongs to the key, and all are within
 * their dates. `warn` gets what deserves attention but not a refusal.
 */
export function loadTlsCredentials(t: TlsConfig, warn: (message: string) => void, now = Date.now()): LoadedCredentials {
  const name = t.name;
  if (name === undefined) throw new ConfigError(`${NAME}: this node's name is required with TLS: the NAME its certificate was made for (tandem certs init DIR --nodes NAME,...)`);
  const labels = t.dir === undefined ? { ca: 'tls.ca', cert: 'tls.cert', key: 'tls.key' } : { ca: DIR, cert: DIR, key: DIR };
  let files: { ca: string; cert: string; key: string };
  if (t.dir !== undefined) files = tlsPaths(t.dir, name);
  else if (t.ca !== undefined && t.cert !== undefined && t.key !== undefined) files = { ca: t.ca, cert: t.cert, key: t.key };
  else throw new ConfigError('tls: no certificates: set tls.dir (or --tls DIR), or tls.ca, tls.cert and tls.key');

  let peer = t.peer;
  if (peer === undefined) {
    if (t.dir === undefined) throw new ConfigError(`${PEER}: the peer's name is required with tls.cert (the NAME its certificate carries)`);
    peer = defaultPeer(t.dir, name);
  }
  if (peer === name) throw new ConfigError(`${PEER}: "${peer}" is this node's own name`);

  const caPem = readPem(files.ca, labels.ca, false, warn);
  const certPem = readPem(files.cert, labels.cert, false, warn);
  const keyPem = readPem(files.key, labels.key, true, warn);
  const ca = certificate(caPem, files.ca, labels.ca);
  const cert = certificate(certPem, files.cert, labels.cert);
  const key = privateKey(keyPem, files.key, labels.key);

  if (!ca.ca) throw new ConfigError(`${labels.ca}: ${files.ca} is not a CA certificate (${ca.subject.replace(/\n/g, ', ')})`);
  if (cert.checkIssued(ca) === false || !cert.verify(ca.publicKey)) {
    throw new ConfigError(`${labels.cert}: ${files.cert} is not issued by the CA in ${files.ca}: the CA and the certificate come from two different \`tandem certs init\` runs`);
  }
  const names = certificateNodeNames(cert);
  if (!names.includes(name)) throw new ConfigError(`${labels.cert}: ${files.cert} is the certificate of ${describeNames(names)}, not of this node's name "${name}" (${NAME})`);
  if (!cert.checkPrivateKey(key)) throw new ConfigError(`${labels.key}: the key in ${files.key} does not belong to the certificate in ${files.cert}`);
  checkDates(ca, files.ca, labels.ca, now, warn);
  checkDates(cert, files.cert, labels.cert, now, warn);
  if (t.dir !== undefined && holdsCaKey(t.dir)) {
    warn(`${DIR}: ${t.dir} holds the CA's key (${CA_KEY_FILE}): whoever reads it can make certificates every node accepts; keep it where certificates are made, not on a node`);
  }
  return { ca: caPem, cert: certPem, key: keyPem, name, peer, caFingerprint: ca.fingerprint256 };
}

function holdsCaKey(dir: string): boolean {
  try {
    return readdirSync(dir).includes(CA_KEY_FILE);
  } catch {
    return false;
  }
}
