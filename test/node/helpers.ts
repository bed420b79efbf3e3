/** The configuration every in-process node test starts from: a small sim guest, fast heartbeats and epochs, over a MemoryTransport. */
import { defaultConfig, type TandemConfig } from '../../src/config/config.js';

/**
 * Hosts are a MemoryTransport's: as a secondary the node listens on `host`,
 * as a primary it protects to `peer` (the same host for a plain pair, each
 * the other's for failback). Services on loopback port 0.
 */
export function nodeConfig(host = 'secondary', peer = host): TandemConfig {
  const cfg = defaultConfig();
  cfg.logLevel = 'silent';
  cfg.domain = { type: 'sim', memoryMib: 8, vcpus: 1, diskMib: 1 };
  cfg.heartbeat = { intervalMs: 20, timeoutMs: 150 };
  cfg.secondary.listen = { host, port: 7700 };
  cfg.secondary.heartbeat = { host, port: 7701 };
  cfg.secondary.service = { host: '127.0.0.1', port: 0 };
  cfg.primary.secondary = { host: peer, port: 7700 };
  cfg.primary.heartbeat = { host: peer, port: 7701 };
  cfg.primary.service = { host: '127.0.0.1', port: 0 };
  cfg.primary.intervalMs = 10;
  cfg.primary.retryMs = 50;
  cfg.primary.ackTimeoutMs = 300;
  return cfg;
}
