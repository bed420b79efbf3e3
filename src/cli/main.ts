#!/usr/bin/env node
/**
 * The `tandem` command line. Each subcommand lives in commands/; this file
 * only wires them up and turns any failure into one line on stderr, with
 * the exit statuses of ./errors.ts.
 */
import { readFileSync } from 'node:fs';
import yargs, { type Argv } from 'yargs';
import { hideBin } from 'yargs/helpers';
import { benchCommand } from './commands/bench.js';
import { certsCommand } from './commands/certs.js';
import { configCommand } from './commands/config.js';
import { controlCommands } from './commands/control.js';
import { demoCommand } from './commands/demo.js';
import { primaryCommand } from './commands/primary.js';
import { proxyCommand } from './commands/proxy.js';
import { restoreCommand } from './commands/restore.js';
import { saveCommand } from './commands/save.js';
import { secondaryCommand } from './commands/secondary.js';
import { statusCommand } from './commands/status.js';
import { watchCommand } from './commands/watch.js';
import { STDIN_ARG, streamCommand } from './commands/stream-inspect.js';
import { UsageError, exitWith } from './errors.js';

/** Commands that only group others (`tandem certs init`): an unknown word after one is an unknown subcommand. */
const GROUPS = new Set(['certs', 'stream', 'config']);

/** The package's own version: package.json sits three levels above dist/src/cli/, in the repository and in an installed package alike. */
function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version?: unknown };
  return typeof pkg.version === 'string' ? pkg.version : 'unknown';
}

/**
 * yargs says "Unknown command: X" for any stray word; say what it is: an
 * unknown command, an unknown subcommand of a group, or an operand too many.
 */
function unknownWord(word: string, argv: readonly string[]): UsageError {
  const before = argv.slice(0, Math.max(0, argv.indexOf(word))).filter((a) => !a.startsWith('-'));
  const shown = JSON.stringify(word.slice(0, 80));
  if (before.length === 0) return new UsageError(`unknown command ${shown}; \`tandem --help\` lists the commands`);
  const group = GROUPS.has(before[0]);
  if (group && before.length === 1) return new UsageError(`unknown command ${shown} of \`tandem ${before[0]}\`; \`tandem ${before[0]} --help\` lists them`);
  // The words after the command's own are its operands: this one is too many.
  const command = before.slice(0, group ? 2 : 1).join(' ');
  return new UsageError(`${command}: unexpected operand ${shown}; \`tandem ${command} --help\` shows the usage`);
}

function build(argv: string[]): Argv {
  // yargs-parser reads a lone "-" as an empty flag; keep it as the stdin operand.
  let cli = yargs(argv.map((a) => (a === '-' ? STDIN_ARG : a))).scriptName('tandem');
  cli = saveCommand(cli);
  cli = restoreCommand(cli);
  cli = streamCommand(cli);
  cli = primaryCommand(cli);
  cli = secondaryCommand(cli);
  cli = configCommand(cli);
  cli = benchCommand(cli);
  cli = demoCommand(cli);
  cli = proxyCommand(cli);
  cli = watchCommand(cli);
  cli = statusCommand(cli);
  cli = controlCommands(cli);
  cli = certsCommand(cli);
  return cli
    .demandCommand(1, 'name a command')
    .strict()
    .strictCommands()
    .help()
    .alias('h', 'help')
    .version(packageVersion())
    .alias('v', 'version')
    .epilogue('Exit status: 0 done; 1 failed; 2 bad usage; 3 a node stopped because it was fenced; 4 `tandem status`: the node is not healthy (README, "Exit statuses").')
    .fail((msg: string | null, err: Error | undefined) => {
      const unknown = msg === null ? null : /^Unknown commands?: (.+)$/.exec(msg);
      if (err === undefined && unknown !== null) exitWith(unknownWord(unknown[1].split(', ')[0], argv));
      // yargs' own refusals (a flag without its value, a bad choice) are bad usage like ours.
      if (err === undefined || err.name === 'YError') exitWith(new UsageError(msg ?? err?.message ?? 'bad usage'));
      exitWith(err);
    });
}

async function main(argv: string[]): Promise<void> {
  const cli = build(argv);
  if (argv.length === 0) {
    // No command at all: what there is to run, on stderr, since nothing was done.
    process.stderr.write(`${await cli.getHelp()}\n\n`);
    exitWith(new UsageError('name a command'));
  }
  await cli.parseAsync();
}

// A reader that closes our stdout (a supervisor's pipe, `| head`) must not take a
// service down with an unhandled EPIPE: its stdout is only ever informational.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code !== 'EPIPE') exitWith(err);
});

main(hideBin(process.argv)).catch(exitWith);
