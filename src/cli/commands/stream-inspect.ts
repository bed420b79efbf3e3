/**
 * `tandem stream inspect FILE|-`: decodes a stream (an xl save file or
 * xl-framed stream, libxl or libxc framing: detected) and prints its records
 * and, for a checkpointed stream, one line per epoch. A checkpointed stream
 * may end right after a CHECKPOINT_END, as Xen's Remus streams do: that is a
 * clean end (a failover point). A bad or truncated stream ends with a
 * one-line error and exit status 1.
 */
import { createReadStream } from 'node:fs';
import type { Readable } from 'node:stream';
import type { Argv } from 'yargs';
import { StreamDescriber } from '../../stream/describe.js';
import { ImageReader } from '../../stream/image-reader.js';
import { flagPath } from '../config-args.js';

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
  // Inspect reads what Xen writes, so Xen's rule holds: a checkpointed stream has no END.
  const reader = new ImageReader({ endAtCheckpoint: true });
  const describer = new StreamDescriber();
  for await (const chunk of input) {
    const items = reader.push(chunk as Buffer);
    await writeOut(items.flatMap((item) => describer.describe(item)));
  }
  await writeOut(describer.finish(reader.end()));
}

export function streamCommand(yargs: Argv): Argv {
  return yargs.command('stream', 'work with migration streams', (y) =>
    y
      .command<InspectArgs>(
        'inspect <file>',
        'print the headers, records and epochs of a stream or xl save file (file, or - for stdin)',
        (z) => z.positional('file', { type: 'string', demandOption: true }),
        async (args) => {
          const input = args.file === STDIN_ARG ? process.stdin : createReadStream(flagPath(args.file, 'FILE'), { highWaterMark: 1 << 20 });
          await inspect(input);
        },
      )
      .demandCommand(1, 'name a stream subcommand: inspect'),
  );
}
