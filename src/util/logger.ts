/**
 * pino logger for the CLI and services: JSON lines on stderr so stdout stays
 * for command output. Secrets never reach it: callers log names, not values.
 */
import { pino, type Logger } from 'pino';

export type { Logger };

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/**
 * `sync`: write each line before returning. Off by default (logging must not
 * stall an epoch); on where a line must survive a crash (verification mode).
 */
export function createLogger(level: LogLevel = 'info', name = 'tandem', sync = false): Logger {
  return pino({ name, level, redact: { paths: ['token', '*.token', 'authorization', '*.authorization'], censor: '[redacted]' } }, pino.destination({ dest: 2, sync }));
}
