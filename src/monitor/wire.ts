/**
 * How a `tandem` process gets its monitor: one option (--monitor HOST:PORT,
 * in config-args.ts) and one call, so the primary, secondary and demo commands stay as they are
 * apart from a line or two.
 */
import { readFileSync } from 'node:fs';
import { MIN_TOKEN_CHARS, type MonitorConfig } from '../config/config.js';
import { ConfigError } from '../errors.js';
import { formatAddress, type Address } from '../util/address.js';
import type { Logger } from '../util/logger.js';
import { MonitorServer } from './http.js';
import type { MonitorSource } from './source.js';

export const TOKEN_ENV = 'TANDEM_MONITOR_TOKEN';

/** The control token: token_file, else token, else $TANDEM_MONITOR_TOKEN; undefined means control is off. */
export function resolveToken(cfg: MonitorConfig, env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (cfg.tokenFile !== undefined) {
    let text: string;
    try {
      text = readFileSync(cfg.tokenFile, 'utf8');
    } catch (err) {
      throw new ConfigError(`monitor.token_file: cannot read ${cfg.tokenFile}: ${(err as Error).message}`, { cause: err });
    }
    const token = text.trim();
    if (token.length < MIN_TOKEN_CHARS || token.length > 512) throw new ConfigError(`monitor.token_file: ${cfg.tokenFile}: the token must be ${MIN_TOKEN_CHARS}..512 characters`);
    return token;
  }
  if (cfg.token !== undefined) return cfg.token;
  const fromEnv = env[TOKEN_ENV];
  if (fromEnv === undefined || fromEnv === '') return undefined;
  if (fromEnv.length < MIN_TOKEN_CHARS || fromEnv.length > 512) throw new ConfigError(`${TOKEN_ENV}: the token must be ${MIN_TOKEN_CHARS}..512 characters`);
  return fromEnv;
}

/** Starts the monitor if --monitor or monitor.listen asks for one; the caller stops it. */
export async function startMonitor(cfg: MonitorConfig, logger: Logger, source: MonitorSource): Promise<MonitorServer | undefined> {
  const at = cfg.listen;
  if (at === undefined) return undefined;
  const token = resolveToken(cfg);
  const monitor = new MonitorServer({
    host: at.host,
    port: at.port,
    source,
    logger,
    auth: { token, allowRemoteRead: cfg.allowRemoteRead, loopbackRead: cfg.loopbackRead },
    maxClients: cfg.maxClients,
    operatorSlots: cfg.operatorSlots,
    handshakeTimeoutMs: cfg.handshakeTimeoutMs,
    // The pair's other node: read with this node's token, should its monitor want one.
    peer: cfg.peer === undefined ? undefined : { url: cfg.peer, token, intervalMs: cfg.peerIntervalMs },
  });
  if (!cfg.loopbackRead && token === undefined) throw new ConfigError('monitor.loopback_read is false but no token is configured: nobody could read the monitor');
  await monitor.start();
  if (token === undefined) logger.info('monitor: no control token configured; control actions are refused (reading is open on loopback)');
  return monitor;
}

/** The demo's --monitor: the primary's monitor there, the secondary's on the next port (0 stays 0). */
export function demoMonitorFlag(at: Address | undefined, role: 'primary' | 'secondary'): string[] {
  if (at === undefined) return [];
  const port = at.port === 0 || role === 'primary' ? at.port : Math.min(65535, at.port + 1);
  return ['--monitor', formatAddress({ host: at.host, port })];
}

/** The URL a monitor logs when it listens (see MonitorServer.start). */
export const monitorUrlOf = (line: Record<string, unknown>): string | undefined =>
  typeof line.monitor === 'string' && /monitor listening/.test(String(line.msg)) ? line.monitor : undefined;
