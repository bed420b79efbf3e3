/**
 * Options common to the long-running commands: --config FILE, --log-level
 * and --monitor, merged so that flags win over the file; where and how they
 * log (--log-format, --log-file, SIGHUP); and the readers of flag values
 * every command uses, so that a bad value is bad usage (exit status 2)
 * whichever command it is given to.
 */
import type { Argv } from 'yargs';
import { parseArbiterUrl } from '../arbiter/select.js';
import { MAX_PEER_URL_CHARS, defaultConfig, loadConfig, peerUrlProblem, requireRole, type NodeRole, type TandemConfig } from '../config/config.js';
import { MAX_PATH_CHARS } from '../config/schema.js';
import { TandemError } from '../errors.js';
import { nodeNameProblem } from '../transport/identity.js';
import { monitorUrls, type MonitorUrls } from '../monitor/client.js';
import { parseAddress, type Address } from '../util/address.js';
import { LOG_FORMATS, LOG_LEVELS, createServiceLogger, type LogFormat, type LogLevel, type Logger, type ServiceLog } from '../util/logger.js';
import { UsageError } from './errors.js';

/** Where a service logs and in which format (the level is the command's own: --log-level, or the file's). */
export interface LogArgs {
  'log-format': LogFormat | LogFormat[] | undefined;
  'log-file': string | string[] | undefined;
}

export function withLogOptions<T>(y: Argv<T>): Argv<T & LogArgs> {
  return y
    .option('log-format', { requiresArg: true, choices: LOG_FORMATS, describe: 'json (default: one JSON object a line, for journald and log shippers) or pretty (time, level, message, fields: one line an event)' })
    .option('log-file', { requiresArg: true, type: 'string', describe: 'append the log to this file instead of stderr; SIGHUP reopens it (log rotation)' });
}

/**
 * The service's logger as the flags say, and SIGHUP from now on reopening
 * its file (log rotation moves it away; a hangup no longer ends a service,
 * SIGTERM and SIGINT do). `fromFile`: the configuration's log_format and
 * log_file, which the flags override.
 */
export function serviceLog(args: LogArgs, level: LogLevel, name: string, sync = false, fromFile: { logFormat?: LogFormat; logFile?: string } = {}): ServiceLog {
  const format = args['log-format'] === undefined ? (fromFile.logFormat ?? 'json') : flagChoice(args['log-format'], '--log-format');
  const file = args['log-file'] === undefined ? fromFile.logFile : flagPath(args['log-file'], '--log-file');
  const log = createServiceLogger({ level, name, sync, format, file });
  process.on('SIGHUP', () => log.reopen());
  return log;
}

export interface CommonArgs extends LogArgs {
  config: string | undefined;
  'log-level': LogLevel | undefined;
  /** HOST:PORT of this process's monitor (see src/monitor/wire.ts). */
  monitor: string | undefined;
  /** none, or etcd://HOST:PORT[,HOST:PORT...] */
  arbiter: string | undefined;
  /** The other node's monitor (monitor.peer), for the pair view. */
  'monitor-peer': string | undefined;
}

export function withCommonOptions<T>(y: Argv<T>): Argv<T & CommonArgs> {
  return withLogOptions(y)
    .option('config', { requiresArg: true, type: 'string', describe: 'YAML configuration file (flags override it)' })
    .option('log-level', { requiresArg: true, choices: LOG_LEVELS, describe: 'log level (default: the file\'s, else info)' })
    .option('monitor', { requiresArg: true, type: 'string', describe: 'HOST:PORT for the dashboard, WebSocket events and /metrics (loopback unless a token is set)' })
    .option('arbiter', { requiresArg: true, type: 'string', describe: 'who may serve the guest: none, or etcd://HOST:PORT[,HOST:PORT...] (docs/failover.md)' })
    .option('monitor-peer', { requiresArg: true, type: 'string', describe: "the other node's monitor, http://HOST:PORT/ or HOST:PORT: this node's dashboard and status then show the pair" });
}

/** --tls DIR --name NAME [--peer NAME]: the certificates of the channels between the hosts (docs/security.md). */
export interface TlsArgs {
  tls: string | undefined;
  name: string | undefined;
  peer: string | undefined;
}

/** The flags; the demo, which runs both nodes, says whose names they are. */
export function withTlsOptions<T>(
  y: Argv<T>,
  says = { name: "this node's name (its certificate's, in DIR)", peer: "the other node's name (default: the other certificate in DIR, when there are two)" },
): Argv<T & TlsArgs> {
  return y
    .option('tls', { requiresArg: true, type: 'string', describe: 'mutual TLS with the certificates of `tandem certs init DIR` (DIR/ca.crt, DIR/NAME.crt, DIR/NAME.key)' })
    .option('name', { requiresArg: true, type: 'string', describe: says.name })
    .option('peer', { requiresArg: true, type: 'string', describe: says.peer });
}

/** The TLS flags over the file's `tls:` section: --tls replaces whatever certificates or insecure mode the file set. */
export function applyTlsFlags(cfg: TandemConfig, args: TlsArgs): void {
  if (args.tls !== undefined) {
    cfg.tls.dir = flagPath(args.tls, '--tls');
    cfg.tls.ca = cfg.tls.cert = cfg.tls.key = undefined;
    cfg.tls.insecure = false;
  }
  if (args.name !== undefined) cfg.tls.name = flagNodeName(args.name, '--name');
  if (args.peer !== undefined) cfg.tls.peer = flagNodeName(args.peer, '--peer');
}

/** The configuration file (or the defaults), refused if it is the other node's, with the common flags applied. */
export function baseConfig(args: CommonArgs, role: NodeRole): TandemConfig {
  const file = args.config === undefined ? undefined : flagPath(args.config, '--config');
  const cfg = file === undefined ? defaultConfig() : loadConfig(file);
  if (file !== undefined) requireRole(cfg, file, role);
  if (args['log-level'] !== undefined) cfg.logLevel = flagChoice(args['log-level'], '--log-level');
  if (args.monitor !== undefined) cfg.monitor.listen = flagAddress(args.monitor, '--monitor', true);
  if (args['monitor-peer'] !== undefined) cfg.monitor.peer = flagMonitorPeer(args['monitor-peer']);
  if (args.arbiter !== undefined) {
    const chosen = asUsage(() => parseArbiterUrl(single(args.arbiter!, '--arbiter')));
    cfg.arbiter.kind = chosen.kind;
    cfg.arbiter.endpoints = chosen.kind === 'etcd' ? chosen.endpoints : undefined;
  }
  return cfg;
}

/** --monitor-peer: checked as monitor.peer is; a bad one is a usage error. */
function flagMonitorPeer(value: string | string[]): string {
  const text = String(single(value, '--monitor-peer'));
  const problem = text.length > MAX_PEER_URL_CHARS ? `expected at most ${MAX_PEER_URL_CHARS} characters` : peerUrlProblem(text);
  if (problem !== undefined) throw new UsageError(`--monitor-peer: ${problem}`);
  return text;
}

/** yargs turns a repeated flag into an array; every flag here takes one value. */
function single<T>(value: T | T[], flag: string): T {
  if (Array.isArray(value)) throw new UsageError(`${flag} given ${value.length} times; give it once`);
  return value;
}

/** The same refusal, as bad usage: the parsers below are shared with the configuration file, whose refusals are ConfigErrors. */
function asUsage<T>(parse: () => T): T {
  try {
    return parse();
  } catch (err) {
    if (err instanceof TandemError) throw new UsageError(err.message, { cause: err });
    throw err;
  }
}

/** A HOST:PORT flag; a bad one is a usage error (exit status 2), like every bad flag. */
export function flagAddress(value: string | string[], flag: string, allowZero = false): Address {
  const text = single(value, flag);
  return asUsage(() => parseAddress(text, flag, allowZero));
}

/** A path flag; whether the file is there is for its reader to say (exit status 1, like a missing --config file). */
export function flagPath(value: string | string[], flag: string): string {
  const text = single(value, flag);
  if (text.length === 0 || text.length > MAX_PATH_CHARS) throw new UsageError(`${flag}: expected a path of 1..${MAX_PATH_CHARS} characters`);
  return text;
}

/** A node name flag (--name, --peer, --nodes' names); a bad one is a usage error. */
export function flagNodeName(value: string | string[], flag: string): string {
  const text = String(single(value, flag));
  const problem = nodeNameProblem(text);
  if (problem !== undefined) throw new UsageError(`${flag}: ${problem}`);
  return text;
}

/** A flag whose value yargs checked against its `choices`, which lets a repeated one through as an array. */
export function flagChoice<T extends string>(value: T | T[], flag: string): T {
  return single(value, flag);
}

/** An integer flag within bounds; a bad one is a usage error. */
export function flagInt(value: number | number[], flag: string, min: number, max: number): number {
  const n = single(value, flag);
  if (!Number.isInteger(n) || n < min || n > max) throw new UsageError(`${flag}: expected an integer in ${min}..${max}, got ${n}`);
  return n;
}

/** A number flag (fractions allowed) within bounds; a bad one is a usage error. */
export function flagNumber(value: number | number[], flag: string, min: number, max: number): number {
  const n = single(value, flag);
  if (!(Number.isFinite(n) && n >= min && n <= max)) throw new UsageError(`${flag}: expected a number in ${min}..${max}, got ${n}`);
  return n;
}

/** The monitor operand of `tandem watch` and `status` (a URL or HOST:PORT); a bad one is a usage error. */
export function operandMonitorUrls(text: string): MonitorUrls {
  return asUsage(() => monitorUrls(text));
}

/**
 * untilSignal(), listened for before a node starts: a signal that comes
 * while it starts is said at once and acted on (a stop in order) as soon as
 * the start is over, instead of ending the process half-started.
 */
export function listenForStop(logger: Logger): { signalled: Promise<NodeJS.Signals>; started(): void } {
  let starting = true;
  const signalled = untilSignal();
  void signalled.then((signal) => {
    if (starting) logger.info({ signal }, `${signal} while starting: stopping once started`);
  });
  return { signalled, started: () => void (starting = false) };
}

/** Resolves on SIGINT or SIGTERM (SIGHUP, with serviceLog(), reopens the log). */
export function untilSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const on = (sig: NodeJS.Signals): void => {
      process.off('SIGINT', on);
      process.off('SIGTERM', on);
      resolve(sig);
    };
    process.on('SIGINT', on);
    process.on('SIGTERM', on);
  });
}
