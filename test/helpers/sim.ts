/** The sim binding and a secondary for it, as most engine-level tests build them. */
import type { ProtectedDomain } from '../../src/domain/types.js';
import { DISK_BLOCK_SIZE } from '../../src/disk/record.js';
import { SimBinding, type SimBindingOptions } from '../../src/domain/sim/binding.js';
import { SecondaryServer, type SecondaryServerOptions } from '../../src/secondary/server.js';
import { tcpTransport } from '../../src/transport/tcp.js';
import { createLogger } from '../../src/util/logger.js';

export const silent = createLogger('silent');

/** A sim binding of `pages` pages and (unless given) a 256 KiB disk. */
export function simBinding(pages: number, options: Partial<SimBindingOptions> = {}): SimBinding {
  return new SimBinding({ pages, vcpus: 1, diskBytes: 64 * DISK_BLOCK_SIZE, ...options });
}

/** A secondary server for `replica` on loopback (TCP unless a transport is given; port 0 unless given). */
export function secondaryFor(replica: SecondaryServerOptions['replica'], options: Partial<SecondaryServerOptions> = {}): SecondaryServer {
  return new SecondaryServer({ replica, transport: tcpTransport, listen: { host: '127.0.0.1', port: 0 }, logger: silent, ...options });
}


/** `domain`, whose streams carry a toolstack config as a Xen domain's do (TANDEM_DOMAIN_CONFIG). */
export function withToolstackConfig(domain: ProtectedDomain, config: () => Promise<string>): ProtectedDomain {
  return {
    info: domain.info,
    saver: domain.saver,
    suspend: () => domain.suspend(),
    resume: () => domain.resume(),
    saveDeviceModel: () => domain.saveDeviceModel(),
    toolstackConfig: config,
  };
}
