/**
 * pino logger for the CLI and services: JSON lines on stderr so stdout stays
 * for command output. Secrets never reach it: callers log names, not values.
 */
import { pino, type Logger } from 'pino';
import { LogSink } from './log-sink.js';

export type { Logger };

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

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
  const sink = new LogSink(2, { sync, name });
  if (level !== 'silent') flushAtExit(sink);
  return pino({ name, level, redact: { paths: ['token', '*.token', 'authorization', '*.authorization'], censor: '[redacted]' } }, sink);
}
