/**
 * Options common to the long-running commands: --config FILE, --log-level
 * and --monitor, merged so that flags win over the file.
 */
import type { Argv } from 'yargs';
import { defaultConfig, loadConfig, type TandemConfig } from '../config/config.js';
import { parseAddress, type Address } from '../util/address.js';
import { LOG_LEVELS, type LogLevel } from '../util/logger.js';
import { UsageError } from './errors.js';

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

/** The configuration file (or the defaults), with the common flags applied. */
export function baseConfig(args: CommonArgs): TandemConfig {
  const cfg = args.config === undefined ? defaultConfig() : loadConfig(args.config);
  if (args['log-level'] !== undefined) cfg.logLevel = args['log-level'];
  if (args.monitor !== undefined) cfg.monitor.listen = flagAddress(args.monitor, '--monitor', true);
  return cfg;
}

/** A HOST:PORT flag; a bad one is a usage error (exit status 2), like every bad flag. */
export function flagAddress(text: string, flag: string, allowZero = false): Address {
  try {
    return parseAddress(text, flag, allowZero);
  } catch (err) {
    throw new UsageError(err instanceof Error ? err.message : String(err), { cause: err });
  }
}

/** An integer flag within bounds; a bad one is a usage error. */
export function flagInt(value: number, flag: string, min: number, max: number): number {
  if (!Number.isInteger(value) || value < min || value > max) throw new UsageError(`${flag}: expected an integer in ${min}..${max}, got ${value}`);
  return value;
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
