/**
 * Options common to the long-running commands: --config FILE, --log-level
 * and --monitor, merged so that flags win over the file.
 */
import type { Argv } from 'yargs';
import { defaultConfig, loadConfig, type TandemConfig } from '../config/config.js';
import { LOG_LEVELS, type LogLevel } from '../util/logger.js';

export interface CommonArgs {
  config: string | undefined;
  'log-level': LogLevel | undefined;
  /** HOST:PORT of this process's monitor (see src/monitor/wire.ts). */
  monitor: string | undefined;
}

export function withCommonOptions<T>(y: Argv<T>): Argv<T & CommonArgs> {
  return y
    .option('config', { type: 'string', describe: 'YAML configuration file (flags override it)' })
    .option('log-level', { choices: LOG_LEVELS, describe: 'log level (default: the file\'s, else info)' })
    .option('monitor', { type: 'string', describe: 'HOST:PORT for the dashboard, WebSocket events and /metrics (loopback unless a token is set)' });
}

export function baseConfig(args: CommonArgs): TandemConfig {
  const cfg = args.config === undefined ? defaultConfig() : loadConfig(args.config);
  if (args['log-level'] !== undefined) cfg.logLevel = args['log-level'];
  return cfg;
}

/** Resolves on SIGINT or SIGTERM. */
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
