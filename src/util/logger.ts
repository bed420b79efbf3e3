/**
 * pino logger for the CLI and services: JSON lines on stderr so stdout stays
 * for command output, or in a file (`--log-file`, reopened on SIGHUP for
 * log rotation), or one human-readable line per event (`--log-format
 * pretty`). Secrets never reach it: callers log names, not values, and the
 * fields that could carry one are redacted whatever the format.
 */
import { closeSync, constants, openSync } from 'node:fs';
import { pino, type Logger } from 'pino';
import { ConfigError } from '../errors.js';
import { LogSink } from './log-sink.js';
import { prettyLine } from './pretty-log.js';

export type { Logger };

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export const LOG_FORMATS = ['json', 'pretty'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

/**
 * Fields that may hold a secret, at the top and one level down (pino's
 * paths take no deeper wildcard): the monitor's control token, an HTTP
 * Authorization or Cookie header, a password, a private key's text.
 */
export const REDACTED_PATHS = ['token', '*.token', 'authorization', '*.authorization', 'cookie', '*.cookie', 'password', '*.password', 'privateKey', '*.privateKey'];

const sinks = new Set<LogSink>();

/** What is still queued goes out as the process exits (as far as stderr takes it): one exit hook for every logger. */
function flushAtExit(sink: LogSink): void {
  if (sinks.size === 0) process.once('exit', () => sinks.forEach((s) => s.flushSync()));
  sinks.add(sink);
}

/**
 * `sync`: write each line before returning. Off by default (logging must not
 * stall an epoch); on where a line must survive a crash (verification mode).
 * Either way the sink never blocks the event loop on a full disk or a closed
 * stderr (log-sink.ts); what it could not write is counted and said later.
 */
export function createLogger(level: LogLevel = 'info', name = 'tandem', sync = false): Logger {
  return createServiceLogger({ level, name, sync }).logger;
}

export interface ServiceLogOptions {
  level: LogLevel;
  name: string;
  sync?: boolean;
  /** json (the default) or pretty. */
  format?: LogFormat;
  /** Append to this file instead of writing to stderr. */
  file?: string;
}

export interface ServiceLog {
  logger: Logger;
  /**
   * Opens the log file again by its path and writes there from now on (after
   * logrotate moved it away, say); the old one is closed once nothing more
   * is written to it. If the path cannot be opened the log stays where it
   * was and says why. Without a file, only says there is nothing to reopen.
   */
  reopen(): void;
}

/** A logger writing to stderr or to `file` (opened for appending: a missing or unwritable file is a ConfigError naming it). */
export function createServiceLogger(o: ServiceLogOptions): ServiceLog {
  const fd = o.file === undefined ? 2 : openLogFile(o.file);
  const sink = new LogSink(fd, { sync: o.sync ?? false, name: o.name, format: o.format === 'pretty' ? prettyLine : undefined });
  if (o.level !== 'silent') flushAtExit(sink);
  const logger = pino({ name: o.name, level: o.level, redact: { paths: REDACTED_PATHS, censor: '[redacted]' } }, sink);
  const reopen = (): void => {
    if (o.file === undefined) {
      logger.info('log: writing to stderr, no file to reopen');
      return;
    }
    let next: number;
    try {
      next = openLogFile(o.file);
    } catch (err) {
      logger.error({ err, file: o.file }, `log: could not reopen ${o.file}; still writing to the file open before`);
      return;
    }
    sink.switchTo(next, (old) => closeQuietly(old));
    logger.info({ file: o.file }, `log: reopened ${o.file}`);
  };
  return { logger, reopen };
}

/** 0640: a log says much about a host (addresses, names), if never a secret. */
const LOG_FILE_MODE = 0o640;

function openLogFile(path: string): number {
  try {
    // O_APPEND: every write lands at the end, whoever else appends (a second writer, logrotate's copytruncate).
    return openSync(path, constants.O_WRONLY | constants.O_CREAT | constants.O_APPEND, LOG_FILE_MODE);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'EIO';
    throw new ConfigError(`--log-file: cannot open ${path} for appending: ${code}`, { cause: err });
  }
}

function closeQuietly(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // Already closed: nothing holds it either way.
  }
}
