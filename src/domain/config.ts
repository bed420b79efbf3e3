/**
 * The configuration's `domain:` section: which kind of guest Tandem protects,
 * and its size. One schema per domain type, told apart by `type`; another
 * type (a Xen binding) is another member of `domainSchema`, with its own keys
 * and limits. The limits here are the simulated domain's own.
 */
import { z } from 'zod';
import { byType, int, section } from '../config/schema.js';
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

export const domainSchema = byType([simDomain]);

export type DomainConfig = z.output<typeof domainSchema>;
