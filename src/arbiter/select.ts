/**
 * The one place an arbiter is chosen: from the configuration's `arbiter`
 * section, for a node in `role`. The nodes take what this returns.
 */
import { readFileSync } from 'node:fs';
import { arbiterExposure, type TandemConfig } from '../config/config.js';
import { ConfigError } from '../errors.js';
import { tlsPaths } from '../transport/certs.js';
import { isLoopbackHost, parseAddress, type Address } from '../util/address.js';
import type { Logger } from '../util/logger.js';
import type { Arbiter } from './arbiter.js';
import { EtcdClient } from './etcd.js';
import { EtcdArbiter } from './etcd-arbiter.js';
import { NoArbiter } from './none.js';

/** Largest CA, certificate or key file read (PEM bundles are a few KiB). */
const MAX_PEM_BYTES = 1 << 20;

export function createArbiter(cfg: TandemConfig, role: 'primary' | 'secondary', logger: Logger): Arbiter {
  const a = cfg.arbiter;
  // Without an arbiter the primary's generation is the configured one; a secondary learns its primary's.
  if (a.kind === 'none') return new NoArbiter(role === 'primary' ? cfg.primary.generation : 1);
  const exposed = arbiterExposure(cfg);
  if (exposed !== undefined) throw new ConfigError(exposed);
  // The name its certificate proves to the peer is the natural one to hold the domain under.
  const node = a.node ?? cfg.tls.name;
  if (node === undefined) throw new ConfigError('arbiter.node: each node of a pair needs its own name at the arbiter (arbiter.node, or the TLS name: tls.name or --name)');
  const files = etcdTlsFiles(cfg);
  const tls = files === undefined ? undefined : { ca: pem(files.ca, files.from.ca), ...(files.cert === undefined ? {} : { cert: pem(files.cert, files.from.cert), key: pem(files.key!, files.from.key) }) };
  const client = new EtcdClient({ endpoints: a.endpoints!, timeoutMs: a.timeoutMs, tls });
  const arbiter = new EtcdArbiter({ client, prefix: a.prefix, domain: a.domain, node, leaseMs: a.leaseMs, logger });
  arbiter.validate();
  return arbiter;
}

interface EtcdTlsFiles {
  ca: string;
  cert: string | undefined;
  key: string | undefined;
  /** The configuration keys they came from, for messages. */
  from: { ca: string; cert: string; key: string };
}

/**
 * HTTPS to etcd: arbiter.ca (cert, key) when set; else, for etcd off
 * loopback, the `tls:` section's CA and this node's certificate (a pair's
 * etcd can use the pair's CA: `tandem certs init DIR --etcd HOST,...`);
 * else plain HTTP, which the configuration allows on loopback only.
 */
function etcdTlsFiles(cfg: TandemConfig): EtcdTlsFiles | undefined {
  const a = cfg.arbiter;
  if (a.ca !== undefined) return { ca: a.ca, cert: a.cert, key: a.key, from: { ca: 'arbiter.ca', cert: 'arbiter.cert', key: 'arbiter.key' } };
  if ((a.endpoints ?? []).every((e) => isLoopbackHost(e.host))) return undefined;
  const t = cfg.tls;
  if (t.dir !== undefined) {
    if (t.name === undefined) throw new ConfigError('arbiter: etcd over the TLS directory\'s certificates needs this node\'s name (tls.name or --name)');
    const p = tlsPaths(t.dir, t.name);
    return { ...p, from: { ca: 'tls.dir (ca.crt)', cert: `tls.dir (${t.name}.crt)`, key: `tls.dir (${t.name}.key)` } };
  }
  if (t.ca !== undefined) return { ca: t.ca, cert: t.cert, key: t.key, from: { ca: 'tls.ca', cert: 'tls.cert', key: 'tls.key' } };
  return undefined;
}

function pem(file: string, key: string): Buffer {
  try {
    const bytes = readFileSync(file);
    if (bytes.length > MAX_PEM_BYTES) throw new Error(`${bytes.length} bytes; at most ${MAX_PEM_BYTES}`);
    return bytes;
  } catch (err) {
    throw new ConfigError(`${key}: cannot read ${file}: ${(err as Error).message}`, { cause: err });
  }
}

/**
 * `--arbiter`: `none`, or `etcd://HOST:PORT[,HOST:PORT...]` (the members'
 * client addresses). Returns what it sets in the arbiter section.
 */
export function parseArbiterUrl(text: string): { kind: 'none' } | { kind: 'etcd'; endpoints: Address[] } {
  if (text === 'none') return { kind: 'none' };
  const m = /^etcd:\/\/([^/?#\s]{1,2048})\/?$/.exec(text);
  if (m === null) throw new ConfigError(`--arbiter: expected none or etcd://HOST:PORT[,HOST:PORT...], got ${JSON.stringify(text.slice(0, 200))}`);
  const endpoints = m[1].split(',');
  if (endpoints.length > 7) throw new ConfigError(`--arbiter: ${endpoints.length} endpoints; at most 7`);
  return { kind: 'etcd', endpoints: endpoints.map((e) => parseAddress(e, '--arbiter')) };
}
