/**
 * The one place a binding is chosen: the configuration's `domain.type`
 * names it. Adding a type of domain means adding its schema (config.ts)
 * and its case here.
 */
import type { DomainConfig } from './config.js';
import type { DomainBinding } from './binding.js';
import { SimBinding, type SimBindingOptions } from './sim/binding.js';
import { XenBinding } from './xen/binding.js';

const MIB = 2 ** 20;
const PAGE = 4096;

/** Tuning and test hooks a binding may take beyond its configuration. */
export type BindingExtras = Pick<SimBindingOptions, 'liveBatchPages' | 'guestClock' | 'replicaGuestClock'>;

export function createBinding(cfg: DomainConfig, extras: BindingExtras = {}): DomainBinding {
  switch (cfg.type) {
    case 'sim':
      return new SimBinding({ pages: (cfg.memoryMib * MIB) / PAGE, vcpus: cfg.vcpus, diskBytes: cfg.diskMib * MIB, ...extras });
    case 'xen':
      return new XenBinding({ name: cfg.name, service: cfg.service, vif: cfg.vif, ifb: cfg.ifb, xl: cfg.xl, failoverTimeoutMs: cfg.failoverTimeoutMs, suspendTimeoutMs: cfg.suspendTimeoutMs });
  }
}
