/**
 * The configuration's `domain:` section: which kind of guest Tandem protects.
 * One schema per domain type, told apart by `type`, each with its own keys
 * and limits: `sim` (the default, the embedded simulated domain) and `xen` (a
 * running Xen domain on this host, src/domain/xen/).
 */
import { z } from 'zod';
import { address, checked, int, path, section, byType } from '../config/schema.js';
import { MAX_DISK_BYTES } from './sim/disk.js';
import { PAGE_SIZE } from '../stream/format.js';
import { MAX_SIM_PAGES } from './sim/domain.js';

const MIB = 2 ** 20;

const simDomain = section({
  // The default makes `sim` what a domain section without `type` means.
  type: z.literal('sim').default('sim'),
  memory_mib: int(1, (MAX_SIM_PAGES * PAGE_SIZE) / MIB).default(256),
  vcpus: int(1, 128).default(1),
  // The guest's virtual disk (its append-only file); primary and secondary must agree.
  disk_mib: int(1, MAX_DISK_BYTES / MIB).default(64),
});

const IFNAME = /^[A-Za-z0-9_.-]{1,15}$/;
const ifname = () => checked('a network interface name', 15, (t) => (IFNAME.test(t) ? undefined : `${JSON.stringify(t)} is not an interface name (1..15 of A-Z a-z 0-9 _ . -)`));

const xenDomain = section({
  type: z.literal('xen'),
  // The domain to protect, on the primary: its name (as `xl list` shows it) or its domid.
  name: checked('a domain name or id', 64, (t) => (/^[A-Za-z0-9_.-]{1,64}$/.test(t) ? undefined : `${JSON.stringify(t)} is not a domain name or id`)).optional(),
  // Where the guest's own service answers, on its own network (the primary reports it; the secondary waits for it after a failover).
  service: address(),
  // The guest's vif in dom0, whose output is held until acked (default: vifDOMID.0, xl's name for the first one).
  vif: ifname().optional(),
  // The IFB device Tandem makes for the output buffer (default: tdmDOMID).
  ifb: ifname().optional(),
  // Where xl is (default: Debian's, /usr/lib/xen-4.17/bin/xl).
  xl: path().optional(),
  // The bound on a failover: Xen's restore of the last checkpoint, its devices, the unpause, the service answering.
  failover_timeout_ms: int(1000, 600_000).default(120_000),
  // How long the guest has to acknowledge a suspend request, and then to suspend (each; libxl's is 60 s).
  suspend_timeout_ms: int(100, 600_000).default(60_000),
});

export const domainSchema = byType([simDomain, xenDomain]);

export type DomainConfig = z.output<typeof domainSchema>;
