/**
 * `tandem restore --xen --in FILE`: brings a Xen domain back from an
 * xl-framed Remus stream, as Tandem's Xen secondary does at failover: the
 * stream is read with Tandem's own reader, only whole and valid checkpoints
 * reach Xen's restore (`xl migrate-receive -r -e`), and the domain runs
 * from the last of them. A stream torn or corrupted inside an epoch thus
 * still gives the domain as it was at the checkpoint before.
 */
import { createReadStream } from 'node:fs';
import type { Readable } from 'node:stream';
import type { Argv } from 'yargs';
import { flagPath } from '../config-args.js';
import { UsageError } from '../errors.js';
import { STDIN_ARG } from './stream-inspect.js';

interface RestoreArgs {
  xen: boolean;
  in: string;
}

export function restoreCommand(yargs: Argv): Argv {
  return yargs.command<RestoreArgs>(
    'restore',
    'bring a Xen domain back from a Remus stream, at its last whole checkpoint',
    (y) =>
      y
        .option('xen', { type: 'boolean', default: false, describe: 'restore into Xen (xl migrate-receive -r -e); needs Xen and root' })
        .option('in', { requiresArg: true, type: 'string', demandOption: true, describe: 'the xl-framed Remus stream (tandem save --xen --checkpoints N, or a recording); - for standard input' })
        .check((a) => {
          if (!a.xen) throw new UsageError('only a Xen domain is restored this way: pass --xen');
          if (a.in !== STDIN_ARG) flagPath(a.in, '--in');
          return true;
        }),
    async (args) => {
      const { EpochGate } = await import('../../secondary/epoch-gate.js');
      const { XenRestore } = await import('../../domain/xen/restore.js');
      const { XenError, XenErrorCodes } = await import('../../domain/xen/errors.js');
      const gate = new EpochGate();
      // Opened first: a missing file is an error before Xen is asked for anything.
      const stdin = args.in === STDIN_ARG;
      const input: Readable = stdin ? process.stdin : createReadStream(args.in, { highWaterMark: 1 << 20 });
      if (!stdin) await new Promise<void>((resolve, reject) => input.once('open', () => resolve()).once('error', reject));
      const xen = new XenRestore();
      let given = 0;
      try {
        for await (const chunk of input) {
          for (const epoch of gate.push(chunk as Buffer)) {
            await xen.give(epoch.chunks);
            if (epoch.checkpoint > 0) given = epoch.checkpoint;
          }
          if (gate.failure !== undefined) break;
        }
      } catch (err) {
        await xen.abort(gate.domainName);
        throw err;
      }
      const end = gate.end();
      if (given === 0) {
        await xen.abort(gate.domainName);
        throw new XenError(XenErrorCodes.XEN_RESTORE_FAILED, `${args.in} holds no whole checkpoint${end.clean ? '' : `: ${end.reason}`}; nothing was restored`);
      }
      await xen.failover();
      const after = end.clean ? 'the stream ended there' : `what came after it was not used: ${end.reason}`;
      process.stdout.write(`restored the domain from checkpoint ${given} of ${stdin ? 'the stream on standard input' : args.in}; ${after}\n`);
    },
  );
}
