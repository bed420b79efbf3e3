/**
 * Options common to the long-running commands: --config FILE and
 * --log-level, merged so that flags win over the file.
 */
import type { Argv } from 'yargs';
import { defaultConfig, loadConfig, type TandemConfig } from '../config/config.js';
import { LOG_LEVELS, type LogLevel } from '../util/logger.js';

export interface CommonArgs {
  config: string | undefined;
  'log-level': LogLevel | undefined;
}

export function withCommonOptions<T>(y: Argv<T>): Argv<T & CommonArgs> {
  return y
    .option('config', { type: 'string', describe: 'YAML configuration file (flags override it)' })
    .option('log-level', { choices: LOG_LEVELS, describe: 'log level (default: the file\'s, else info)' });
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
