/**
 * `tandem save --sim --out FILE`: writes a migration stream from a simulated
 * HVM domain, plain or checkpointed. `tandem save --xen DOMID --out FILE`:
 * saves a running Xen domain to an `xl save` file (src/domain/xen/save.ts),
 * which `xl restore` brings back.
 */
import { closeSync, openSync } from 'node:fs';
import type { Argv } from 'yargs';
import { runBeforeEachSuspend, saveDomain } from '../../checkpoint/save.js';
import { DISK_BLOCK_SIZE } from '../../disk/record.js';
import { SimBinding } from '../../domain/sim/binding.js';
import { MAX_SIM_PAGES } from '../../domain/sim/domain.js';
import { SimWorkload } from '../../domain/sim/workload.js';
import { writeAllSync } from '../../util/file-sink.js';
import { createLogger } from '../../util/logger.js';
import { flagChoice, flagInt, flagPath } from '../config-args.js';
import { UsageError } from '../errors.js';

export const MAX_CHECKPOINTS = 1_000_000;

interface SaveArgs {
  sim: boolean;
  xen: number | undefined;
  keep: boolean;
  out: string;
  format: 'libxc' | 'libxl' | undefined;
  'stream-version': number;
  checkpoints: number;
  pages: number;
}

export function saveCommand(yargs: Argv): Argv {
  return yargs.command<SaveArgs>(
    'save',
    'write a migration stream from a domain',
    (y) =>
      y
        .option('sim', { type: 'boolean', default: false, describe: 'save the embedded simulated domain' })
        .option('xen', { requiresArg: true, type: 'number', describe: 'save the running Xen domain with this id to an xl save file (as xl save; needs Xen and root)' })
        .option('keep', { type: 'boolean', default: false, describe: 'with --xen: resume the domain after saving it instead of destroying it (xl save -c)' })
        .option('out', { requiresArg: true, type: 'string', demandOption: true, describe: 'output file' })
        .option('format', { requiresArg: true, choices: ['libxc', 'libxl'] as const, describe: 'stream framing (default: libxl)' })
        .option('stream-version', { requiresArg: true, type: 'number', choices: [2, 3], default: 3, describe: 'libxc stream version' })
        .option('checkpoints', { requiresArg: true, type: 'number', default: 0, describe: 'N > 0: a checkpointed stream of exactly N epochs' })
        .option('pages', { requiresArg: true, type: 'number', default: 4096, describe: `guest RAM in 4 KiB pages (1..${MAX_SIM_PAGES})` })
        .check((a) => {
          if (a.sim === (a.xen !== undefined)) throw new UsageError('say which domain to save: --sim (the embedded simulated one) or --xen DOMID');
          if (a.xen !== undefined) {
            flagInt(a.xen, '--xen', 1, 0x7fef);
            if (a.format !== undefined) throw new UsageError('--xen writes an xl save file: --format is for --sim');
            if (a.keep && a.checkpoints > 0) throw new UsageError('--keep is for a plain save: after --checkpoints the guest runs on anyway');
          } else if (a.keep) throw new UsageError('--keep is for --xen');
          flagPath(a.out, '--out');
          if (a.format !== undefined) flagChoice(a.format, '--format');
          flagInt(a['stream-version'], '--stream-version', 2, 3);
          flagInt(a.checkpoints, '--checkpoints', 0, MAX_CHECKPOINTS);
          flagInt(a.pages, '--pages', 1, MAX_SIM_PAGES);
          return true;
        }),
    async (args) => {
      if (args.xen !== undefined) {
        await saveXen(args.xen, args.out, args.keep, args.checkpoints);
        return;
      }
      // The guest's disk is not part of a saved stream: the smallest one will do.
      const guest = new SimBinding({ pages: args.pages, vcpus: 1, diskBytes: DISK_BLOCK_SIZE }).primary(createLogger('silent'));
      const workload = new SimWorkload(guest.sim);
      workload.boot();
      const fd = openSync(args.out, 'w');
      try {
        const summary = await saveDomain(
          args.checkpoints === 0 ? guest.domain : runBeforeEachSuspend(guest.domain, () => workload.run(Math.max(16, args.pages >>> 6))),
          { framing: args.format ?? 'libxl', version: args['stream-version'] as 2 | 3, checkpoints: args.checkpoints },
          (chunks) => writeAllSync(fd, chunks),
        );
        const kind = args.checkpoints === 0 ? 'plain' : `${args.checkpoints} checkpoints`;
        process.stdout.write(`wrote ${args.out}: ${summary.bytes} bytes, ${kind}, ${args.pages} pages\n`);
      } finally {
        closeSync(fd);
      }
    },
  );
}


async function saveXen(domid: number, out: string, keep: boolean, checkpoints: number): Promise<void> {
  // Loaded only here: nothing of the Xen binding is needed unless a Xen domain is saved.
  const { XenstoreClient } = await import('../../domain/xen/xenstore.js');
  const { XcOps } = await import('../../domain/xen/xc.js');
  const { saveXenDomain } = await import('../../domain/xen/save.js');
  const logger = createLogger('info');
  const started = performance.now();
  const xs = await XenstoreClient.connect();
  try {
    const xc = await XcOps.start();
    try {
      const r = await saveXenDomain({ domid, out, keep, checkpoints, xs, xc, logger });
      const ms = Math.round(performance.now() - started);
      const what =
        checkpoints === 0
          ? `plain; domain ${domid} ${keep ? 'resumed' : 'destroyed'}`
          : `${r.epochs.length} checkpoints (pages ${r.epochs.map((e) => e.pages).join(',')}), ended ${r.end === 'checkpoint' ? 'after the last checkpoint: a failover point' : 'with END'}; domain ${domid} runs on`;
      process.stdout.write(`wrote ${out}: ${r.bytes} bytes, xl save format, ${what}; ${ms} ms\n`);
    } finally {
      await xc.stop();
    }
  } finally {
    xs.close();
  }
}
