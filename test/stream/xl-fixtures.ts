/**
 * xl save files for tests: Tandem's own streams wrapped in an xl header,
 * with a domain config shaped like the JSON `xl list -l` prints for a PVH
 * guest (libxl_domain_config: c_info, b_info, devices).
 */
import { runBeforeEachSuspend, saveDomain } from '../../src/checkpoint/save.js';
import { SimProtectedDomain } from '../../src/domain/sim/binding.js';
import { SimDomain } from '../../src/domain/sim/domain.js';
import { SimWorkload } from '../../src/domain/sim/workload.js';
import { wrapInXlSaveFile } from '../../src/stream/xl-writer.js';

export const LIBXL_DOMAIN_CONFIG = JSON.stringify(
  {
    c_info: { type: 'pvh', name: 'lab-guest', uuid: '5e1f6c0a-2b7d-4c1e-9a43-0d2f7b9e6a11', run_hotplug_scripts: 'True' },
    b_info: {
      max_vcpus: 1,
      avail_vcpus: [0],
      max_memkb: 131072,
      target_memkb: 131072,
      shadow_memkb: 1536,
      sched_params: {},
      kernel: '/lab/vmlinuz',
      cmdline: 'console=hvc0 rdinit=/init',
      ramdisk: '/lab/guest.cpio.gz',
      'type.pvh': {},
      arch_arm: {},
    },
    nics: [{ backend_domid: 0, devid: 0, mac: '00:16:3e:5a:01:02', bridge: 'xenbr0', nictype: 'vif' }],
    on_reboot: 'restart',
    on_soft_reset: 'soft_reset',
  },
  null,
  4,
);

/** Fixed clock: the sim's TSC_INFO, and so the bytes, are the same every run. */
const FIXED_NOW = (): bigint => 1_700_000_000_123_456_789n;

/** A libxl stream of a small sim domain: plain (0) or with that many checkpoints, ending with END. */
export async function simLibxlStream(options: { pages: number; checkpoints: number; version?: 2 | 3; seed?: number }): Promise<Buffer> {
  const domain = new SimDomain({ pages: options.pages, vcpus: 1, now: FIXED_NOW });
  const guest = new SimWorkload(domain, options.seed ?? 7);
  guest.boot();
  const parts: Buffer[] = [];
  const protectedDomain = new SimProtectedDomain(domain, { recordPages: 8 });
  const saved = options.checkpoints === 0 ? protectedDomain : runBeforeEachSuspend(protectedDomain, () => guest.run(5));
  // Page data is lent by reference until the guest runs again: copy it now.
  await saveDomain(saved, { framing: 'libxl', version: options.version ?? 3, checkpoints: options.checkpoints }, (chunks) => parts.push(Buffer.concat(chunks)));
  return Buffer.concat(parts);
}

/** Bytes of a checkpointed libxl stream's closing libxc END and libxl END (two empty records). */
export const CLOSING_ENDS = 16;

/**
 * An xl-framed stream as `xl remus` sends it: no END records, so it stops
 * right after its last CHECKPOINT_END (Tandem's stream, its closing ENDs cut).
 */
export function remusShaped(checkpointedStream: Buffer): Buffer {
  const cut = checkpointedStream.length - CLOSING_ENDS;
  // CHECKPOINT_END, then libxc END and libxl END: three empty records, types 4, 0, 0.
  const tail = checkpointedStream.subarray(cut - 8).toString('hex');
  if (tail !== `0400000000000000${'0'.repeat(32)}`) throw new Error(`not a checkpointed stream's closing records: ${tail}`);
  return checkpointedStream.subarray(0, cut);
}

/** `stream` in an xl header with `configJson` (null: no config). */
export const xlFile = (stream: Buffer, configJson: string | null = LIBXL_DOMAIN_CONFIG): Buffer => Buffer.concat(wrapInXlSaveFile([stream], { configJson: configJson ?? undefined }));
