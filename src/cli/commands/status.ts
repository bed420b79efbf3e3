/**
 * `tandem status [URL] [--json]`: one snapshot from a monitor: state,
 * mode, last epoch, lag, what control actions it offers.
 */
import type { Argv } from 'yargs';
import { DEFAULT_MONITOR_URL, fetchStatus } from '../../monitor/client.js';
import { arbiterLine, epochLine } from '../../monitor/view.js';
import { operandMonitorUrls } from '../config-args.js';

interface StatusArgs {
  url: string | undefined;
  json: boolean;
}

export function statusCommand(yargs: Argv): Argv {
  return yargs.command<StatusArgs>(
    'status [url]',
    'one snapshot from a monitor',
    (y) =>
      y
        .positional('url', { type: 'string', describe: `monitor URL or HOST:PORT (default ${DEFAULT_MONITOR_URL})` })
        .option('json', { type: 'boolean', default: false, describe: 'print the snapshot event as JSON' }),
    async (args) => {
      const s = await fetchStatus(operandMonitorUrls(args.url ?? DEFAULT_MONITOR_URL));
      if (args.json) {
        process.stdout.write(`${JSON.stringify(s)}\n`);
        return;
      }
      const last = s.recent.at(-1);
      const lines = [
        `node:      ${s.node}`,
        `state:     ${s.state} (${s.reason})`,
        `mode:      ${s.mode ?? 'n/a'}${s.intervalMs === null ? '' : `, every ${s.intervalMs} ms`}`,
        `epoch:     ${s.lastEpoch}`,
        `lag:       ${s.lagMs === null ? '-' : `${Math.round(s.lagMs)} ms`}`,
        `last:      ${last ? epochLine(last) : '-'}`,
        `controls:  ${s.actions.join(', ') || 'none'}`,
        `clients:   ${s.clients}`,
        `arbiter:   ${arbiterLine(s.arbiter)}`,
      ];
      process.stdout.write(`${lines.join('\n')}\n`);
    },
  );
}
