/**
 * Tandem's configuration: a YAML file (validated against the schema below,
 * unknown keys refused) overridden by command-line flags. Every error names
 * the file, the key path and what was expected.
 */
import { readFileSync, statSync } from 'node:fs';
import { parse } from 'yaml';
import { MAX_DISK_BYTES } from '../disk/sim-disk.js';
import { MAX_SIM_PAGES } from '../domain/sim.js';
import { ConfigError } from '../errors.js';
import { type Address, parseAddress } from '../util/address.js';
import { LOG_LEVELS, type LogLevel } from '../util/logger.js';

export interface DomainConfig {
  type: 'sim';
  memoryMib: number;
  vcpus: number;
  /** The guest's virtual disk (its append-only file); primary and secondary must agree. */
  diskMib: number;
}

export interface PrimaryConfig {
  secondary: Address | undefined;
  service: Address;
  intervalMs: number;
  minIntervalMs: number;
  maxIntervalMs: number;
  ackTimeoutMs: number;
  connectTimeoutMs: number;
  retryMs: number;
  streamVersion: 2 | 3;
  precopy: { targetDirtyPages: number; maxIterations: number };
  verifyDigest: boolean;
  /** Output commit: most reply bytes held for unacked epochs before the guest's output is throttled. */
  maxHeldMib: number;
  /** When the standby is lost: release held output (available, unprotected), hold it, or drop it. */
  onUnprotected: 'release' | 'hold' | 'drop';
  maxClients: number;
  /** The secondary's heartbeat address (default: the secondary's host, its port + 1). */
  heartbeat: Address | undefined;
  /** This primary's generation; a promoted secondary takes a higher one and fences this one. */
  generation: number;
}

export interface SecondaryConfig {
  listen: Address;
  maxEpochMib: number;
  /** Where the promoted secondary serves the guest after a failover. */
  service: Address;
  /** Heartbeat channel: the secondary listens here, the primary connects (default: listen port + 1; 0 if that is 0). */
  heartbeat: Address | undefined;
}

export interface HeartbeatConfig {
  intervalMs: number;
  timeoutMs: number;
}

export interface MonitorConfig {
  /** HTTP/WebSocket monitor address; undefined: no monitor unless --monitor is given. */
  listen: Address | undefined;
  /** Control token, inline; token_file is better (not in the config file itself). */
  token: string | undefined;
  tokenFile: string | undefined;
  /** Remote clients may read events, status and metrics without the token. */
  allowRemoteRead: boolean;
  /** Loopback clients may read without the token (the default); false: every reader needs it. */
  loopbackRead: boolean;
}

/** COLO mode (docs/colo.md): the net link between the hosts and the comparator's settings. */
export interface ColoConfig {
  /** The secondary's net-link address: it listens there, the primary connects (default: the secondary's listen port + 2). */
  net: Address | undefined;
  /** A checkpoint at least this often even while the replicas agree. */
  maxIntervalMs: number;
  /** A primary packet held longer than this without its twin asks for a checkpoint (colo-compare's compare_timeout). */
  compareTimeoutMs: number;
  expiredScanCycleMs: number;
  maxQueueSize: number;
  /** A comparator over its sockets (QEMU colo-compare's chardevs) instead of Tandem's in-process one. */
  comparator: { primaryIn: Address; secondaryIn: Address; outdev: Address; notify: Address } | undefined;
}

export interface TandemConfig {
  logLevel: LogLevel;
  monitor: MonitorConfig;
  colo: ColoConfig;
  heartbeat: HeartbeatConfig;
  domain: DomainConfig;
  primary: PrimaryConfig;
  secondary: SecondaryConfig;
}

export const MAX_CONFIG_BYTES = 1024 * 1024;
/** A control token shorter than this is refused: it would be guessable. */
export const MIN_TOKEN_CHARS = 16;

export function defaultConfig(): TandemConfig {
  return {
    logLevel: 'info',
    colo: { net: undefined, maxIntervalMs: 5000, compareTimeoutMs: 3000, expiredScanCycleMs: 1000, maxQueueSize: 1024, comparator: undefined },
    monitor: { listen: undefined, token: undefined, tokenFile: undefined, allowRemoteRead: false, loopbackRead: true },
    heartbeat: { intervalMs: 50, timeoutMs: 250 },
    domain: { type: 'sim', memoryMib: 256, vcpus: 1, diskMib: 64 },
    primary: {
      secondary: undefined,
      service: { host: '127.0.0.1', port: 6379 },
      intervalMs: 50,
      minIntervalMs: 1,
      maxIntervalMs: 0,
      ackTimeoutMs: 5000,
      connectTimeoutMs: 2000,
      retryMs: 1000,
      streamVersion: 3,
      precopy: { targetDirtyPages: 50, maxIterations: 5 },
      verifyDigest: false,
      maxHeldMib: 64,
      onUnprotected: 'release',
      maxClients: 1000,
      heartbeat: undefined,
      generation: 1,
    },
    secondary: {
      listen: { host: '127.0.0.1', port: 7700 },
      maxEpochMib: 256,
      service: { host: '127.0.0.1', port: 6379 },
      heartbeat: undefined,
    },
  };
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

class Reader {
  constructor(private readonly source: string) {}

  fail(path: string, expected: string, got: unknown): never {
    throw new ConfigError(`${this.source}: ${path}: expected ${expected}, got ${JSON.stringify(got) ?? String(got)}`);
  }

  section(obj: Obj, key: string, path: string, known: string[]): Obj | undefined {
    const v = obj[key];
    if (v === undefined || v === null) return undefined;
    if (!isObj(v)) this.fail(path, 'a mapping', v);
    for (const k of Object.keys(v)) if (!known.includes(k)) throw new ConfigError(`${this.source}: ${path}.${k}: unknown key (known: ${known.join(', ')})`);
    return v;
  }

  int(obj: Obj, key: string, path: string, min: number, max: number, fallback: number): number {
    const v = obj[key];
    if (v === undefined) return fallback;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) this.fail(path, `an integer in ${min}..${max}`, v);
    return v;
  }

  bool(obj: Obj, key: string, path: string, fallback: boolean): boolean {
    const v = obj[key];
    if (v === undefined) return fallback;
    if (typeof v !== 'boolean') this.fail(path, 'true or false', v);
    return v;
  }

  address(obj: Obj, key: string, path: string, fallback: Address | undefined, allowZero = false): Address | undefined {
    const v = obj[key];
    if (v === undefined) return fallback;
    if (typeof v !== 'string') this.fail(path, 'a HOST:PORT string', v);
    return parseAddress(v, `${this.source}: ${path}`, allowZero);
  }

  str(obj: Obj, key: string, path: string, minLength: number, maxLength: number): string | undefined {
    const v = obj[key];
    if (v === undefined) return undefined;
    // Never echo the value: this may be a secret.
    if (typeof v !== 'string' || v.length < minLength || v.length > maxLength) throw new ConfigError(`${this.source}: ${path}: expected a string of ${minLength}..${maxLength} characters`);
    return v;
  }

  oneOf<T extends string | number>(obj: Obj, key: string, path: string, choices: readonly T[], fallback: T): T {
    const v = obj[key];
    if (v === undefined) return fallback;
    if (!choices.includes(v as T)) this.fail(path, `one of ${choices.map((c) => JSON.stringify(c)).join(', ')}`, v);
    return v as T;
  }
}

/** Validates a parsed YAML document into a full configuration. */
export function configFromObject(doc: unknown, source: string): TandemConfig {
  const cfg = defaultConfig();
  if (doc === undefined || doc === null) return cfg;
  const r = new Reader(source);
  if (!isObj(doc)) return r.fail('(top level)', 'a mapping', doc);
  const top: Obj = doc;
  for (const k of Object.keys(top)) if (!['log_level', 'heartbeat', 'domain', 'primary', 'secondary', 'monitor', 'colo'].includes(k)) throw new ConfigError(`${source}: ${k}: unknown key (known: log_level, heartbeat, domain, primary, secondary, monitor, colo)`);
  cfg.logLevel = r.oneOf(top, 'log_level', 'log_level', LOG_LEVELS, cfg.logLevel);

  const d = r.section(top, 'domain', 'domain', ['type', 'memory_mib', 'vcpus', 'disk_mib']);
  if (d) {
    cfg.domain.type = r.oneOf(d, 'type', 'domain.type', ['sim'] as const, 'sim');
    cfg.domain.memoryMib = r.int(d, 'memory_mib', 'domain.memory_mib', 1, (MAX_SIM_PAGES * 4096) / 2 ** 20, cfg.domain.memoryMib);
    cfg.domain.vcpus = r.int(d, 'vcpus', 'domain.vcpus', 1, 128, cfg.domain.vcpus);
    cfg.domain.diskMib = r.int(d, 'disk_mib', 'domain.disk_mib', 1, MAX_DISK_BYTES / 2 ** 20, cfg.domain.diskMib);
  }

  const p = r.section(top, 'primary', 'primary', [
    'secondary', 'service', 'interval_ms', 'min_interval_ms', 'max_interval_ms', 'ack_timeout_ms', 'connect_timeout_ms', 'retry_ms', 'stream_version', 'precopy', 'verify_digest', 'max_held_mib', 'on_unprotected', 'max_clients', 'heartbeat', 'generation',
  ]);
  if (p) {
    const c = cfg.primary;
    c.secondary = r.address(p, 'secondary', 'primary.secondary', c.secondary);
    c.service = r.address(p, 'service', 'primary.service', c.service, true)!;
    c.intervalMs = r.int(p, 'interval_ms', 'primary.interval_ms', 1, 60_000, c.intervalMs);
    c.minIntervalMs = r.int(p, 'min_interval_ms', 'primary.min_interval_ms', 0, 60_000, c.minIntervalMs);
    c.maxIntervalMs = r.int(p, 'max_interval_ms', 'primary.max_interval_ms', 0, 3_600_000, c.maxIntervalMs);
    c.ackTimeoutMs = r.int(p, 'ack_timeout_ms', 'primary.ack_timeout_ms', 1, 600_000, c.ackTimeoutMs);
    c.connectTimeoutMs = r.int(p, 'connect_timeout_ms', 'primary.connect_timeout_ms', 1, 600_000, c.connectTimeoutMs);
    c.retryMs = r.int(p, 'retry_ms', 'primary.retry_ms', 1, 600_000, c.retryMs);
    c.streamVersion = r.oneOf(p, 'stream_version', 'primary.stream_version', [2, 3] as const, c.streamVersion);
    c.verifyDigest = r.bool(p, 'verify_digest', 'primary.verify_digest', c.verifyDigest);
    c.maxHeldMib = r.int(p, 'max_held_mib', 'primary.max_held_mib', 1, 65536, c.maxHeldMib);
    c.onUnprotected = r.oneOf(p, 'on_unprotected', 'primary.on_unprotected', ['release', 'hold', 'drop'] as const, c.onUnprotected);
    c.maxClients = r.int(p, 'max_clients', 'primary.max_clients', 1, 100_000, c.maxClients);
    c.heartbeat = r.address(p, 'heartbeat', 'primary.heartbeat', c.heartbeat);
    c.generation = r.int(p, 'generation', 'primary.generation', 1, Number.MAX_SAFE_INTEGER, c.generation);
    const pc = r.section(p, 'precopy', 'primary.precopy', ['target_dirty_pages', 'max_iterations']);
    if (pc) {
      c.precopy.targetDirtyPages = r.int(pc, 'target_dirty_pages', 'primary.precopy.target_dirty_pages', 0, MAX_SIM_PAGES, c.precopy.targetDirtyPages);
      c.precopy.maxIterations = r.int(pc, 'max_iterations', 'primary.precopy.max_iterations', 1, 1000, c.precopy.maxIterations);
    }
    if (c.minIntervalMs > c.intervalMs) throw new ConfigError(`${source}: primary.min_interval_ms (${c.minIntervalMs}) exceeds primary.interval_ms (${c.intervalMs})`);
  }

  const s = r.section(top, 'secondary', 'secondary', ['listen', 'max_epoch_mib', 'service', 'heartbeat']);
  if (s) {
    cfg.secondary.listen = r.address(s, 'listen', 'secondary.listen', cfg.secondary.listen, true)!;
    cfg.secondary.maxEpochMib = r.int(s, 'max_epoch_mib', 'secondary.max_epoch_mib', 1, 65536, cfg.secondary.maxEpochMib);
    cfg.secondary.service = r.address(s, 'service', 'secondary.service', cfg.secondary.service, true)!;
    cfg.secondary.heartbeat = r.address(s, 'heartbeat', 'secondary.heartbeat', cfg.secondary.heartbeat, true);
  }
  const co = r.section(top, 'colo', 'colo', ['net', 'max_interval_ms', 'compare_timeout_ms', 'expired_scan_cycle_ms', 'max_queue_size', 'comparator']);
  if (co) {
    cfg.colo.net = r.address(co, 'net', 'colo.net', cfg.colo.net, true);
    cfg.colo.maxIntervalMs = r.int(co, 'max_interval_ms', 'colo.max_interval_ms', 10, 3_600_000, cfg.colo.maxIntervalMs);
    cfg.colo.compareTimeoutMs = r.int(co, 'compare_timeout_ms', 'colo.compare_timeout_ms', 1, 600_000, cfg.colo.compareTimeoutMs);
    cfg.colo.expiredScanCycleMs = r.int(co, 'expired_scan_cycle_ms', 'colo.expired_scan_cycle_ms', 1, 600_000, cfg.colo.expiredScanCycleMs);
    cfg.colo.maxQueueSize = r.int(co, 'max_queue_size', 'colo.max_queue_size', 1, 1_048_576, cfg.colo.maxQueueSize);
    const cc = r.section(co, 'comparator', 'colo.comparator', ['primary_in', 'secondary_in', 'outdev', 'notify']);
    if (cc) {
      const need = (key: string): Address => r.address(cc, key, `colo.comparator.${key}`, undefined) ?? r.fail(`colo.comparator.${key}`, 'HOST:PORT', undefined);
      cfg.colo.comparator = { primaryIn: need('primary_in'), secondaryIn: need('secondary_in'), outdev: need('outdev'), notify: need('notify') };
    }
  }

  const m = r.section(top, 'monitor', 'monitor', ['listen', 'token', 'token_file', 'allow_remote_read', 'loopback_read']);
  if (m) {
    cfg.monitor.listen = r.address(m, 'listen', 'monitor.listen', cfg.monitor.listen, true);
    cfg.monitor.token = r.str(m, 'token', 'monitor.token', MIN_TOKEN_CHARS, 512);
    cfg.monitor.tokenFile = r.str(m, 'token_file', 'monitor.token_file', 1, 4096);
    if (cfg.monitor.token !== undefined && cfg.monitor.tokenFile !== undefined) throw new ConfigError(`${source}: monitor: set token or token_file, not both`);
    cfg.monitor.allowRemoteRead = r.bool(m, 'allow_remote_read', 'monitor.allow_remote_read', cfg.monitor.allowRemoteRead);
    cfg.monitor.loopbackRead = r.bool(m, 'loopback_read', 'monitor.loopback_read', cfg.monitor.loopbackRead);
    if (cfg.monitor.allowRemoteRead && !cfg.monitor.loopbackRead) throw new ConfigError(`${source}: monitor: allow_remote_read opens reading to everyone; loopback_read: false would close it to this machine only`);
  }
  const hb = r.section(top, 'heartbeat', 'heartbeat', ['interval_ms', 'timeout_ms']);
  if (hb) {
    cfg.heartbeat.intervalMs = r.int(hb, 'interval_ms', 'heartbeat.interval_ms', 1, 60_000, cfg.heartbeat.intervalMs);
    cfg.heartbeat.timeoutMs = r.int(hb, 'timeout_ms', 'heartbeat.timeout_ms', 2, 600_000, cfg.heartbeat.timeoutMs);
    if (cfg.heartbeat.timeoutMs <= cfg.heartbeat.intervalMs) {
      throw new ConfigError(`${source}: heartbeat.timeout_ms (${cfg.heartbeat.timeoutMs}) must exceed heartbeat.interval_ms (${cfg.heartbeat.intervalMs})`);
    }
  }
  return cfg;
}

/** Reads and validates a YAML configuration file. */
export function loadConfig(file: string): TandemConfig {
  let text: string;
  try {
    const size = statSync(file).size;
    if (size > MAX_CONFIG_BYTES) throw new ConfigError(`${file}: ${size} bytes; a configuration file is at most ${MAX_CONFIG_BYTES} bytes`);
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    throw new ConfigError(`${file}: cannot read the configuration: ${(err as Error).message}`, { cause: err });
  }
  let doc: unknown;
  try {
    doc = parse(text, { maxAliasCount: 100, prettyErrors: false });
  } catch (err) {
    throw new ConfigError(`${file}: not valid YAML: ${(err as Error).message.split('\n')[0]}`, { cause: err });
  }
  return configFromObject(doc, file);
}

/** Port + 1 on the same host (0 stays 0: any free port), the default heartbeat address next to a replication one. */
export const nextPort = (a: Address): Address => ({ host: a.host, port: a.port === 0 ? 0 : Math.min(65535, a.port + 1) });
