/**
 * The one place an arbiter is chosen: from the configuration's `arbiter`
 * section, for a node in `role`. The nodes take what this returns.
 */
import { readFileSync } from 'node:fs';
import type { TandemConfig } from '../config/config.js';
import { ConfigError } from '../errors.js';
import { parseAddress, type Address } from '../util/address.js';
import type { Logger } from '../util/logger.js';
import type { Arbiter } from './arbiter.js';
import { EtcdClient } from './etcd.js';
import { EtcdArbiter } from './etcd-arbiter.js';
import { NoArbiter } from './none.js';

/** Largest CA, certificate or key file read (PEM bundles are a few KiB). */
const MAX_PEM_BYTES = 1 << 20;

export function createArbiter(cfg: TandemConfig, role: 'primary' | 'secondary', logger: Logger, nodeName?: string): Arbiter {
  const a = cfg.arbiter;
  // Without an arbiter the primary's generation is the configured one; a secondary learns its primary's.
  if (a.kind === 'none') return new NoArbiter(role === 'primary' ? cfg.primary.generation : 1);
  const node = a.node ?? nodeName;
  if (node === undefined) throw new ConfigError('arbiter.node: each node of a pair needs its own name at the arbiter (arbiter.node, or --name)');
  const tls = a.ca === undefined ? undefined : { ca: pem(a.ca, 'arbiter.ca'), ...(a.cert === undefined ? {} : { cert: pem(a.cert, 'arbiter.cert'), key: pem(a.key!, 'arbiter.key') }) };
  const client = new EtcdClient({ endpoints: a.endpoints!, timeoutMs: a.timeoutMs, tls });
  const arbiter = new EtcdArbiter({ client, prefix: a.prefix, domain: a.domain, node, leaseMs: a.leaseMs, logger });
  arbiter.validate();
  return arbiter;
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
