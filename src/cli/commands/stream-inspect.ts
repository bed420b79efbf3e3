/**
 * `tandem stream inspect FILE|-`: decodes a stream (libxc or libxl framing,
 * detected) and prints its records and, for a checkpointed stream, one line
 * per epoch. A bad stream ends with a one-line error and exit status 1.
 */
import { createReadStream } from 'node:fs';
import type { Readable } from 'node:stream';
import type { Argv } from 'yargs';
import { StreamDecoder } from '../../stream/decoder.js';
import { StreamDescriber } from '../../stream/describe.js';

/** Stand-in for a "-" operand, which yargs would otherwise swallow. */
export const STDIN_ARG = '\0stdin';

interface InspectArgs {
  file: string;
}

async function writeOut(lines: string[]): Promise<void> {
  if (lines.length === 0) return;
  if (!process.stdout.write(lines.join('\n') + '\n')) {
    await new Promise<void>((resolve) => process.stdout.once('drain', resolve));
  }
}

export async function inspect(input: Readable): Promise<void> {
  const decoder = new StreamDecoder();
  const describer = new StreamDescriber();
  for await (const chunk of input) {
    const items = decoder.push(chunk as Buffer);
    await writeOut(items.flatMap((item) => describer.describe(item)));
  }
  decoder.end();
  await writeOut(describer.finish());
}

export function streamCommand(yargs: Argv): Argv {
  return yargs.command('stream', 'work with migration streams', (y) =>
    y
      .command<InspectArgs>(
        'inspect <file>',
        'print the headers, records and epochs of a stream (file, or - for stdin)',
        (z) => z.positional('file', { type: 'string', demandOption: true }),
        async (args) => {
          const input = args.file === STDIN_ARG ? process.stdin : createReadStream(args.file, { highWaterMark: 1 << 20 });
          await inspect(input);
        },
      )
      .demandCommand(1, 'name a stream subcommand: inspect'),
  );
}
