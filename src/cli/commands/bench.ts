/**
 * `tandem bench engine [--json] [--quick]`: measures this host's checkpoint
 * engine (pause, RAM scaling, stream throughput, epoch rate) with same-run
 * baselines. --json prints one JSON object.
 */
import type { Argv } from 'yargs';
import { benchEngine, engineTargets } from '../../bench/engine.js';

interface BenchArgs {
  what: string;
  json: boolean;
  quick: boolean;
}

export function benchCommand(yargs: Argv): Argv {
  return yargs.command<BenchArgs>(
    'bench <what>',
    'measure this host: `engine` (pause, RAM scaling, stream throughput, epoch rate)',
    (y) =>
      y
        .positional('what', { choices: ['engine'] as const, demandOption: true })
        .option('json', { type: 'boolean', default: false, describe: 'print one JSON object' })
        .option('quick', { type: 'boolean', default: false, describe: 'smaller guests, fewer rounds' }),
    async (args) => {
      const log = (line: string): void => void process.stderr.write(`${line}\n`);
      const result = await benchEngine({ quick: args.quick, log });
      if (args.json) {
        process.stdout.write(`${JSON.stringify(result)}\n`);
        return;
      }
      for (const t of engineTargets(result)) process.stdout.write(`${t.pass ? 'PASS' : 'FAIL'}  ${t.what}: ${t.value} (target ${t.target})\n`);
    },
  );
}
