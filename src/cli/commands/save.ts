/**
 * `tandem save --sim --out FILE`: writes a migration stream from a simulated
 * HVM domain, plain or checkpointed.
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
import { flagInt } from '../config-args.js';
import { UsageError } from '../errors.js';

export const MAX_CHECKPOINTS = 1_000_000;

interface SaveArgs {
  sim: boolean;
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
        .option('out', { type: 'string', demandOption: true, describe: 'output file' })
        .option('format', { choices: ['libxc', 'libxl'] as const, describe: 'stream framing (default: libxl when checkpointed, else libxl)' })
        .option('stream-version', { type: 'number', choices: [2, 3], default: 3, describe: 'libxc stream version' })
        .option('checkpoints', { type: 'number', default: 0, describe: 'N > 0: a checkpointed stream of exactly N epochs' })
        .option('pages', { type: 'number', default: 4096, describe: `guest RAM in 4 KiB pages (1..${MAX_SIM_PAGES})` })
        .check((a) => {
          if (!a.sim) throw new UsageError('only the simulated domain can be saved here: pass --sim');
          flagInt(a.checkpoints, '--checkpoints', 0, MAX_CHECKPOINTS);
          flagInt(a.pages, '--pages', 1, MAX_SIM_PAGES);
          if (a.out === '') throw new UsageError('--out must name a file');
          return true;
        }),
    async (args) => {
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

