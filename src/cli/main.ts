#!/usr/bin/env node
/**
 * The `tandem` command line. Each subcommand lives in commands/; this file
 * only wires them up and turns any failure into one line on stderr.
 */
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { benchCommand } from './commands/bench.js';
import { certsCommand } from './commands/certs.js';
import { demoCommand } from './commands/demo.js';
import { primaryCommand } from './commands/primary.js';
import { proxyCommand } from './commands/proxy.js';
import { restoreCommand } from './commands/restore.js';
import { saveCommand } from './commands/save.js';
import { secondaryCommand } from './commands/secondary.js';
import { statusCommand } from './commands/status.js';
import { switchoverCommand } from './commands/control.js';
import { watchCommand } from './commands/watch.js';
import { STDIN_ARG, streamCommand } from './commands/stream-inspect.js';
import { UsageError, exitWith } from './errors.js';

async function main(argv: string[]): Promise<void> {
  // yargs-parser reads a lone "-" as an empty flag; keep it as the stdin operand.
  let cli = yargs(argv.map((a) => (a === '-' ? STDIN_ARG : a))).scriptName('tandem');
  cli = saveCommand(cli);
  cli = restoreCommand(cli);
  cli = streamCommand(cli);
  cli = primaryCommand(cli);
  cli = secondaryCommand(cli);
  cli = benchCommand(cli);
  cli = demoCommand(cli);
  cli = proxyCommand(cli);
  cli = watchCommand(cli);
  cli = statusCommand(cli);
  cli = switchoverCommand(cli);
  cli = certsCommand(cli);
  await cli
    .demandCommand(1, 'name a command')
    .strict()
    .help()
    .version()
    .fail((msg: string | null, err: Error | undefined) => {
      exitWith(err ?? new UsageError(msg ?? 'bad usage'));
    })
    .parseAsync();
}

// A reader that closes our stdout (a supervisor's pipe, `| head`) must not take a
// service down with an unhandled EPIPE: its stdout is only ever informational.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code !== 'EPIPE') exitWith(err);
});

main(hideBin(process.argv)).catch(exitWith);
