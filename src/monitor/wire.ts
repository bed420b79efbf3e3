/**
 * How a `tandem` process gets its monitor: one option (--monitor HOST:PORT,
 * in config-args.ts) and one call, so the primary, secondary and demo commands stay as they are
 * apart from a line or two.
 */
import type { MonitorConfig } from '../config/config.js';
import { ConfigError } from '../errors.js';
import { formatAddress, type Address } from '../util/address.js';
import type { Logger } from '../util/logger.js';
import { MonitorServer } from './http.js';
import type { MonitorSource } from './source.js';
import type { Detach, MonitorAttach } from './attach.js';
import type { NodeRole } from './events.js';
import { envToken, readTokenFile } from './token.js';

export { TOKEN_ENV } from './token.js';

const configError = (message: string, options?: { cause?: unknown }): ConfigError => new ConfigError(message, options);

/**
 * The control token: token_file, else token, else $TANDEM_MONITOR_TOKEN;
 * undefined means control is off. A token file is read as the CLI reads
 * one (src/monitor/token.ts): owner-only, bounded.
 */
export function resolveToken(cfg: MonitorConfig, env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (cfg.tokenFile !== undefined) return readTokenFile(cfg.tokenFile, 'monitor.token_file', configError);
  if (cfg.token !== undefined) return cfg.token;
  return envToken(env, configError);
}

/** The process's monitor, as the nodes and the command that started it see it. */
export interface SharedMonitor extends MonitorAttach {
  /** http://HOST:PORT/ it listens on. */
  readonly url: string;
  /** The domains shown, in the order they were attached. */
  readonly domains: string[];
  /** Stops listening and takes every domain off (their sources stop; the nodes' own detaches are then no-ops). */
  stop(): Promise<void>;
}

/**
 * The monitor of a process that runs several domains, if --monitor or
 * monitor.listen asks for one: started (listening) with no domain shown, a
 * MonitorAttach to hand to every node, whose sources must all be of `role`.
 * The caller stops it, after its nodes.
 */
export async function startSharedMonitor(cfg: MonitorConfig, logger: Logger, role: NodeRole): Promise<SharedMonitor | undefined> {
  return startMonitor(cfg, logger, { role });
}

/** Starts the monitor if --monitor or monitor.listen asks for one, with `shown.source` (if given) shown from the start; the caller stops it. */
export async function startMonitor(cfg: MonitorConfig, logger: Logger, shown: { role: NodeRole; source?: MonitorSource; domain?: string }): Promise<MonitorServer | undefined> {
  const at = cfg.listen;
  if (at === undefined) return undefined;
  const token = resolveToken(cfg);
  const monitor = new MonitorServer({
    host: at.host,
    port: at.port,
    ...shown,
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

/**
 * A node's own monitor, when it runs alone: started at its attach (if cfg
 * asks for one) showing that one domain, stopped at the detach. The source
 * is followed before the port opens, so no client ever sees it without its domain.
 */
export function ownMonitor(cfg: MonitorConfig, logger: Logger): MonitorAttach {
  return {
    async attach(domain: string, source: MonitorSource): Promise<Detach> {
      const monitor = await startMonitor(cfg, logger, { role: source.role, source, domain });
      return async () => {
        await monitor?.stop();
      };
    },
  };
}

/** Where the demo's two monitors listen. */
export interface DemoMonitors {
  primary: Address;
  secondary: Address;
}

/**
 * The demo's --monitor HOST:PORT: the primary's monitor there, the
 * secondary's on the next port. Port 0 (any free port): `pick` chooses two,
 * since each node must know the other's before it starts.
 */
export async function demoMonitors(at: Address, pick: (host: string) => Promise<number>): Promise<DemoMonitors> {
  if (at.port !== 0) return { primary: at, secondary: { host: at.host, port: Math.min(65535, at.port + 1) } };
  const primary = await pick(at.host);
  let secondary = await pick(at.host);
  // The port just released can come back at once; a second pick is a different port.
  for (let i = 0; secondary === primary && i < 8; i++) secondary = await pick(at.host);
  return { primary: { host: at.host, port: primary }, secondary: { host: at.host, port: secondary } };
}

/** A demo node's monitor flags: its own monitor, and the other's as its peer (--monitor-peer), so both dashboards show the pair. */
export function demoMonitorFlag(monitors: DemoMonitors | undefined, role: 'primary' | 'secondary'): string[] {
  if (monitors === undefined) return [];
  const [own, other] = role === 'primary' ? [monitors.primary, monitors.secondary] : [monitors.secondary, monitors.primary];
  return ['--monitor', formatAddress(own), '--monitor-peer', formatAddress(other)];
}

/** The URL a monitor logs when it listens (see MonitorServer.start). */
export const monitorUrlOf = (line: Record<string, unknown>): string | undefined =>
  typeof line.monitor === 'string' && /monitor listening/.test(String(line.msg)) ? line.monitor : undefined;
