/**
 * Tandem's configuration: a YAML file, validated here, that command-line
 * flags then override.
 *
 * How it is organised: one zod schema per section of the file, below, whose
 * keys are the YAML's own (snake_case). Each key is declared once, with its
 * type, its limits and its default; from that one declaration come the
 * TypeScript type (the same keys in camelCase), defaultConfig(), the refusal
 * of unknown keys and the error message. Rules across keys sit with their
 * section. The domain section, whose keys depend on the kind of domain, is
 * declared in src/domain/config.ts, the tls section (the channels between
 * the hosts) in src/transport/tls-config.ts; the words the schemas are written in
 * (int, address, section...) and the making of messages are in ./schema.ts.
 *
 * Every error is a ConfigError naming the file, the key path as the YAML
 * spells it, what was expected and what the file held (never for a secret).
 */
import { readFileSync, statSync } from 'node:fs';
import { LineCounter, parse, YAMLError } from 'yaml';
import { z } from 'zod';
import { EPOCH_POLICIES } from '../checkpoint/triggers.js';
import { domainSchema } from '../domain/config.js';
import { ConfigError } from '../errors.js';
import { PAGE_SIZE } from '../stream/format.js';
import { insecureExposure, tlsSchema, type InterHostAddresses } from '../transport/tls-config.js';
import { formatAddress, isLoopbackHost, type Address } from '../util/address.js';
import { LOG_FORMATS, LOG_LEVELS } from '../util/logger.js';
import { MAX_TOKEN_CHARS, MIN_TOKEN_CHARS, tokenProblem } from '../monitor/token.js';
import { floatingAddressSchema, hooksSchema } from './role-change.js';
import { address, bool, checked, configError, defaulted, int, oneOf, optional, overlay, path, rule, secret, section } from './schema.js';
import { domainsProblem } from './domains.js';

export type { DomainConfig } from '../domain/config.js';
export type { TlsConfig } from '../transport/tls-config.js';
export type { FloatingAddressConfig, HooksConfig } from './role-change.js';
export { MIN_TOKEN_CHARS } from '../monitor/token.js';

export const MAX_CONFIG_BYTES = 1024 * 1024;
/** A control token shorter than this is refused: it would be guessable. */
/** A pre-copy target above the guest's page count only means one round; this bounds the input (4 GiB of pages). */
const MAX_TARGET_DIRTY_PAGES = (4 * 2 ** 30) / PAGE_SIZE;

/** The compression cache holds copies of guest pages: more than a 64 GiB guest's worth is a typo. */
export const MAX_COMPRESSION_CACHE_MIB = 65536;

const localhost = (port: number): Address => ({ host: '127.0.0.1', port });

/** A host name, a port and the scheme: anything longer is not a monitor's base URL. */
export const MAX_PEER_URL_CHARS = 300;

/** What is wrong with a peer monitor's URL (undefined: nothing). A monitor serves plain http at its root. */
export function peerUrlProblem(text: string): string | undefined {
  let url: URL;
  try {
    url = new URL(/^[a-z][a-z0-9+.-]*:\/\//i.test(text) ? text : `http://${text}/`);
  } catch {
    return `expected the peer's monitor as http://HOST:PORT/ or HOST:PORT, got ${JSON.stringify(text)}`;
  }
  if (url.protocol !== 'http:') return `expected an http:// URL (a monitor serves plain HTTP), got ${url.protocol}//`;
  if (url.username !== '' || url.password !== '') return 'expected no user or password in the URL: the token comes from monitor.token or monitor.token_file';
  if (url.pathname !== '/' || url.search !== '' || url.hash !== '') return `expected the monitor's root, http://HOST:PORT/, got ${JSON.stringify(text)}`;
  return undefined;
}

const primaryShape = {
  secondary: address().optional(),
  service: address({ zero: true }).default(localhost(6379)),
  interval_ms: int(1, 60_000).default(50),
  // When Remus epochs start: timer (every interval_ms) or output (as soon as a reply is held and the
  // previous epoch is acked, at most every min_interval_ms; the timer while nothing is held).
  policy: oneOf(EPOCH_POLICIES).default('timer'),
  min_interval_ms: int(0, 60_000).default(1),
  max_interval_ms: int(0, 3_600_000).default(0),
  ack_timeout_ms: int(1, 600_000).default(5000),
  connect_timeout_ms: int(1, 600_000).default(2000),
  retry_ms: int(1, 600_000).default(1000),
  // The wait between reconnection attempts doubles after each failed one, up to this.
  retry_max_ms: int(1, 3_600_000).default(30_000),
  stream_version: oneOf([2, 3]).default(3),
  precopy: defaulted(
    section({
      target_dirty_pages: int(0, MAX_TARGET_DIRTY_PAGES).default(50),
      max_iterations: int(1, 1000).default(5),
    }),
  ),
  verify_digest: bool().default(false),
  // Output commit: most reply bytes held for unacked epochs before the guest's output is throttled.
  max_held_mib: int(1, 65536).default(64),
  // When the standby is lost: release held output (available, unprotected), hold it, or drop it.
  on_unprotected: oneOf(['release', 'hold', 'drop']).default('release'),
  max_clients: int(1, 100_000).default(1000),
  // At max_clients a new client evicts the one idle longest, if it has been idle this long (0: any idle client; at most a week).
  client_evict_idle_ms: int(0, 604_800_000).default(10_000),
  // A client idle this long is closed even below max_clients; 0: never (Redis's `timeout 0`).
  client_idle_timeout_ms: int(0, 604_800_000).default(0),
  // The secondary's heartbeat address (default: the secondary's host, its port + 1).
  heartbeat: address().optional(),
  // On SIGTERM/SIGINT: stand-down (the secondary keeps its replica and does not take over) or
  // switchover (a last checkpoint, then the secondary takes over at once). Never a failover by silence.
  on_stop: oneOf(['stand-down', 'switchover']).default('stand-down'),
  // This primary's generation; a promoted secondary takes a higher one and fences this one.
  generation: int(1, Number.MAX_SAFE_INTEGER).default(1),
  // Remus checkpoint pages as deltas against what the secondary holds (TANDEM_PAGE_XBZRLE, docs/stream.md), where the
  // secondary offers to decode them; none: a plain Xen stream, byte for byte.
  compression: oneOf(['none', 'xbzrle']).default('none'),
  // The primary's cache of the secondary's page contents, the deltas' bases (least recently used pages go first).
  compression_cache_mib: int(1, MAX_COMPRESSION_CACHE_MIB).default(64),
};

/** Checked on the primary section, and again on each domain's once its overlay is applied (./domains.ts). */
export const primaryIntervalProblem = (p: { minIntervalMs: number; intervalMs: number }, at = 'primary'): string | undefined =>
  p.minIntervalMs > p.intervalMs ? `${at}.min_interval_ms (${p.minIntervalMs}) exceeds ${at}.interval_ms (${p.intervalMs})` : undefined;

const primarySchema = section(primaryShape).check(
  rule((p) => primaryIntervalProblem(p)),
  rule((p) => (p.retryMaxMs < p.retryMs ? `primary.retry_max_ms (${p.retryMaxMs}) is below primary.retry_ms (${p.retryMs})` : undefined)),
);

const secondaryShape = {
  listen: address({ zero: true }).default(localhost(7700)),
  max_epoch_mib: int(1, 65536).default(256),
  // Where the promoted secondary serves the guest after a failover.
  service: address({ zero: true }).default(localhost(6379)),
  // Heartbeat channel: the secondary listens here, the primary connects (default: listen port + 1; 0 if that is 0).
  heartbeat: address({ zero: true }).optional(),
};

const secondarySchema = section(secondaryShape);

const heartbeatSchema = section({
  interval_ms: int(1, 60_000).default(50),
  timeout_ms: int(2, 600_000).default(250),
}).check(
  rule((h) => (h.timeoutMs <= h.intervalMs ? `heartbeat.timeout_ms (${h.timeoutMs}) must exceed heartbeat.interval_ms (${h.intervalMs})` : undefined)),
);

const monitorSchema = section({
  // HTTP/WebSocket monitor address; left out: no monitor unless --monitor is given.
  listen: address({ zero: true }).optional(),
  // The control token inline; token_file is better (the secret stays out of the configuration).
  token: secret(MIN_TOKEN_CHARS, MAX_TOKEN_CHARS).optional(),
  token_file: secret(1, 4096).optional(),
  // Remote clients may read events, status and metrics without the token.
  allow_remote_read: bool().default(false),
  // Loopback clients may read without the token; false: every reader needs it.
  loopback_read: bool().default(true),
  // WebSocket clients at once; operator_slots of them are kept for clients presenting the control token.
  max_clients: int(1, 65_536).default(256),
  operator_slots: int(0, 65_536).default(16),
  // A connection must send its whole request (or WebSocket upgrade) within this.
  handshake_timeout_ms: int(100, 600_000).default(10_000),
  // The other node's monitor, http://HOST:PORT/ (or HOST:PORT): read for the pair view in the dashboard and `tandem status`.
  peer: checked("the peer's monitor as http://HOST:PORT/ or HOST:PORT", MAX_PEER_URL_CHARS, peerUrlProblem).optional(),
  // How often the peer's monitor is read.
  peer_interval_ms: int(100, 60_000).default(1000),
}).check(
  rule((m) => (m.token !== undefined && m.tokenFile !== undefined ? 'monitor: set token or token_file, not both' : undefined)),
  rule((m) => (m.token === undefined ? undefined : tokenProblem(m.token, 'monitor.token'))),
  rule((m) => (m.operatorSlots > m.maxClients ? `monitor.operator_slots (${m.operatorSlots}) exceeds monitor.max_clients (${m.maxClients}); set operator_slots too` : undefined)),
  rule((m) =>
    m.allowRemoteRead && !m.loopbackRead ? 'monitor: allow_remote_read opens reading to everyone; loopback_read: false would close it to this machine only' : undefined,
  ),
);

/** COLO mode (docs/colo.md): the net link between the hosts and the comparator's settings. */
const coloShape = {
  // The secondary's net-link address: it listens there, the primary connects (default: the secondary's listen port + 2).
  net: address({ zero: true }).optional(),
  // A checkpoint at least this often even while the replicas agree.
  max_interval_ms: int(10, 3_600_000).default(5000),
  // A primary packet held longer than this without its twin asks for a checkpoint (colo-compare's compare_timeout).
  compare_timeout_ms: int(1, 600_000).default(3000),
  expired_scan_cycle_ms: int(1, 600_000).default(1000),
  max_queue_size: int(1, 1_048_576).default(1024),
  // A comparator over its sockets (QEMU colo-compare's chardevs) instead of Tandem's in-process one: all four or none.
  comparator: optional(
    section({
      primary_in: address(),
      secondary_in: address(),
      outdev: address(),
      notify: address(),
    }),
  ),
};

const coloSchema = section(coloShape);

/** A name at the arbiter (a domain, a node): what etcd keys and certificate names may hold. */
const arbiterName = () =>
  z
    .string({ error: 'expected a name: letters, digits, ".", "_", "-" (at most 63)' })
    .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/, { error: 'expected a name: letters, digits, ".", "_", "-" (at most 63)' });

/** Who may serve the domain (docs/failover.md, "The arbiter"): none, or an etcd cluster both hosts reach. */
const arbiterSchema = section({
  kind: oneOf(['none', 'etcd']).default('none'),
  // etcd's client URLs as HOST:PORT, one per member (at most 7: an etcd cluster's useful size).
  endpoints: z.array(address(), { error: 'expected a list of HOST:PORT strings' }).min(1).max(7).optional(),
  prefix: z
    .string({ error: 'expected a key prefix like /tandem' })
    .regex(/^\/[A-Za-z0-9._/-]{0,200}$/, { error: 'expected a key prefix like /tandem' })
    .refine((v) => !v.endsWith('/'), { error: 'expected a key prefix without a trailing /' })
    .default('/tandem'),
  // The protected domain's name: one owner per name. Both nodes of a pair use the same.
  domain: arbiterName().default('guest'),
  // This node's name (each node of a pair its own; with TLS, the certificate's name is the default).
  node: arbiterName().optional(),
  // The lease a holder renews (every third of it); etcd counts whole seconds.
  lease_ms: int(1000, 600_000).default(2000),
  // Per request to one endpoint.
  timeout_ms: int(10, 60_000).default(500),
  // HTTPS to etcd with this CA (and a client certificate and key, for etcd's mutual TLS).
  ca: z.string().min(1).max(4096).optional(),
  cert: z.string().min(1).max(4096).optional(),
  key: z.string().min(1).max(4096).optional(),
}).check(
  rule((a) => (a.kind === 'etcd' && a.endpoints === undefined ? 'arbiter: kind etcd needs endpoints (HOST:PORT of each etcd member)' : undefined)),
  rule((a) => (a.kind === 'none' && a.endpoints !== undefined ? 'arbiter: endpoints are given but kind is none; set kind: etcd' : undefined)),
  rule((a) => ((a.cert === undefined) !== (a.key === undefined) ? 'arbiter: cert and key go together' : undefined)),
  rule((a) => (a.cert !== undefined && a.ca === undefined ? 'arbiter: a client certificate needs ca (the etcd server\'s CA)' : undefined)),
);

/**
 * An arbiter decides who serves, so its channel is authenticated both ways
 * like the channels between the hosts: etcd anywhere but loopback is reached
 * over HTTPS with a client certificate (etcd's --client-cert-auth), from
 * arbiter.ca, cert and key or, by default, the `tls:` section's CA and this
 * node's certificate. What is wrong, naming the endpoints; undefined when
 * nothing is.
 */
export function arbiterExposure(c: {
  arbiter: { kind: string; endpoints?: Address[] | undefined; ca?: string | undefined; cert?: string | undefined };
  tls: { dir?: string | undefined; cert?: string | undefined };
}): string | undefined {
  const a = c.arbiter;
  if (a.kind !== 'etcd' || (a.ca !== undefined && a.cert !== undefined)) return undefined;
  const open = (a.endpoints ?? []).filter((e) => !isLoopbackHost(e.host));
  if (open.length === 0) return undefined;
  if (a.ca === undefined && (c.tls.dir !== undefined || c.tls.cert !== undefined)) return undefined;
  return `arbiter: etcd at ${open.map(formatAddress).join(', ')} is not on loopback, so it needs mutual TLS: set up tls (its CA and this node's certificate are used) or arbiter.ca (etcd's CA), arbiter.cert and arbiter.key (a client certificate etcd accepts)`;
}

/** The most domains one process runs: each holds its guest (or replica), a stream and a heartbeat channel. */
export const MAX_DOMAINS = 64;

/** The primary's keys a domain may set for itself (the rest are the process's, from the top level). */
const PRIMARY_DOMAIN_KEYS = [
  'secondary',
  'service',
  'heartbeat',
  'interval_ms',
  'policy',
  'min_interval_ms',
  'max_interval_ms',
  'ack_timeout_ms',
  'max_held_mib',
  'on_unprotected',
  'on_stop',
  'generation',
] as const;

/**
 * One entry of `domains:`: a domain this process protects (tandem primary)
 * or holds the replica of (tandem secondary), named as at the arbiter. Its
 * sections are laid over the file's top-level ones (./domains.ts); `domain:`
 * was merged with the top-level one before it is read here (mergeDomainSections).
 */
const domainEntrySchema = section({
  name: arbiterName(),
  // Left out: the command's --mode.
  mode: oneOf(['remus', 'colo']).optional(),
  domain: optional(domainSchema),
  primary: optional(overlay(primaryShape, PRIMARY_DOMAIN_KEYS)),
  secondary: optional(overlay(secondaryShape, ['listen', 'heartbeat', 'service', 'max_epoch_mib'])),
  colo: optional(overlay(coloShape, ['net', 'max_interval_ms'])),
});

export type DomainEntry = z.output<typeof domainEntrySchema>;

const domainsSchema = z
  .array(domainEntrySchema, { error: expectedDomains })
  .min(1, { error: 'expected at least one domain (or no domains: key, for one domain)' })
  .max(MAX_DOMAINS, { error: `expected at most ${MAX_DOMAINS} domains` });

function expectedDomains(issue: { input?: unknown }): string {
  return `expected a list of domains (each with a name), got ${Array.isArray(issue.input) ? 'a list' : typeof issue.input}`;
}

type Mapping = Record<string, unknown>;
const isMapping = (v: unknown): v is Mapping => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * A domain's `domain:` over the top-level one, as the YAML says it: without
 * `type`, or of the same type, its keys are laid over the top level's (two
 * sim guests differ only in size); of another type it stands alone (a sim
 * top level says nothing about a Xen domain). Any other shape is left for
 * the schema to refuse.
 */
function mergeDomainSections(doc: unknown): unknown {
  if (!isMapping(doc) || !Array.isArray(doc.domains)) return doc;
  const top = isMapping(doc.domain) ? doc.domain : {};
  const domains = doc.domains.map((entry: unknown) => {
    if (!isMapping(entry) || !isMapping(entry.domain)) return entry;
    const own = entry.domain;
    const sameType = own.type === undefined || own.type === (top.type ?? 'sim');
    return { ...entry, domain: sameType ? { ...top, ...own } : own };
  });
  return { ...doc, domains };
}

export const NODE_ROLES = ['primary', 'secondary'] as const;
export type NodeRole = (typeof NODE_ROLES)[number];

const tandemSchema = defaulted(
  z.preprocess(
    mergeDomainSections,
    section({
      // Which command the file is for (`tandem primary` or `tandem secondary`); left out: either (a pair's shared file).
      role: oneOf(NODE_ROLES).optional(),
      log_level: oneOf(LOG_LEVELS).default('info'),
      // json: one object a line (journald, log shippers); pretty: for a person at a terminal. --log-format wins.
      log_format: oneOf(LOG_FORMATS).default('json'),
      // Append the log here instead of stderr; SIGHUP reopens it (log rotation). --log-file wins.
      log_file: path().optional(),
      heartbeat: defaulted(heartbeatSchema),
      domain: defaulted(domainSchema),
      primary: defaulted(primarySchema),
      secondary: defaulted(secondarySchema),
      monitor: defaulted(monitorSchema),
      colo: defaulted(coloSchema),
      arbiter: defaulted(arbiterSchema),
      tls: defaulted(tlsSchema),
      // What a change of role does outside the node (./role-change.ts).
      hooks: defaulted(hooksSchema),
      floating_address: optional(floatingAddressSchema),
      // Many domains in one process (./domains.ts): each entry's own keys over the ones above. Left out: one domain.
      domains: optional(domainsSchema),
    }).check(
      rule((c: InterHostAddresses) => insecureExposure(c)),
      rule((c: Parameters<typeof arbiterExposure>[0]) => arbiterExposure(c)),
    ),
  ),
);

export type TandemConfig = z.output<typeof tandemSchema>;
export type MonitorConfig = z.output<typeof monitorSchema>;
export type ColoConfig = z.output<typeof coloSchema>;
export type ArbiterConfig = z.output<typeof arbiterSchema>;

/** The configuration of an empty file: a fresh object on each call, for the caller to change with its flags. */
export function defaultConfig(): TandemConfig {
  return configFromObject(undefined, '(defaults)');
}

/** Validates a parsed YAML document (undefined or null: an empty file) into a full configuration. */
export function configFromObject(doc: unknown, source: string): TandemConfig {
  const result = tandemSchema.safeParse(doc);
  if (!result.success) throw configError(source, result.error);
  // Many domains: their derived configurations as a whole (names, addresses two would share, rules across keys).
  const many = result.data.domains === undefined ? undefined : domainsProblem(result.data);
  if (many !== undefined) throw new ConfigError(`${source}: ${many}`);
  return result.data;
}

/** The file's text, refused if unreadable or too large to be a configuration. */
function readConfigText(file: string): string {
  try {
    const size = statSync(file).size;
    if (size > MAX_CONFIG_BYTES) throw new ConfigError(`${file}: ${size} bytes; a configuration file is at most ${MAX_CONFIG_BYTES} bytes`);
    return readFileSync(file, 'utf8');
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    throw new ConfigError(`${file}: cannot read the configuration: ${(err as Error).message}`, { cause: err });
  }
}

/** The YAML document in `text`; a syntax error names its line and column. */
function parseYaml(text: string, file: string): unknown {
  const lines = new LineCounter();
  try {
    return parse(text, { maxAliasCount: 100, prettyErrors: false, lineCounter: lines });
  } catch (err) {
    const problem = (err as Error).message.split('\n')[0];
    // Errors found while reading the text carry where; one found later (the alias limit) does not.
    const at = err instanceof YAMLError ? lines.linePos(err.pos[0]) : undefined;
    const where = at === undefined ? '' : ` at line ${at.line}, column ${at.col}`;
    throw new ConfigError(`${file}: not valid YAML${where}: ${problem}`, { cause: err });
  }
}

/** Reads and validates a YAML configuration file. */
export function loadConfig(file: string): TandemConfig {
  return configFromObject(parseYaml(readConfigText(file), file), file);
}

/**
 * Refuses a file that says it is the other node's (its `role:`): a
 * primary's configuration given to `tandem secondary` would run a secondary
 * on the primary's settings. A file without `role:` is for either node, as
 * a pair's shared configuration is (docs/failover.md, "Failback").
 */
export function requireRole(cfg: TandemConfig, file: string, wanted: NodeRole): void {
  const role = cfg.role;
  if (role === undefined || role === wanted) return;
  throw new ConfigError(`${file} is a ${role}'s configuration (role: ${role}); \`tandem ${wanted}\` needs a ${wanted}'s (role: ${wanted}, as in examples/${wanted}.yaml) or one without role: (for either node)`);
}

/** Port + 1 on the same host (0 stays 0: any free port), the default heartbeat address next to a replication one. */
export const nextPort = (a: Address): Address => ({ host: a.host, port: a.port === 0 ? 0 : Math.min(65535, a.port + 1) });
