/**
 * `tandem switchover [URL]`: asks a primary's monitor for a planned
 * handover (a last checkpoint, then the secondary takes over at once and the
 * primary stops). The control token comes from TANDEM_MONITOR_TOKEN, never
 * from a flag (flags show in `ps`).
 */
import type { Argv } from 'yargs';
import { DEFAULT_MONITOR_URL, sendControl } from '../../monitor/client.js';
import { operandMonitorUrls } from '../config-args.js';

interface ControlArgs {
  url: string | undefined;
}

export function switchoverCommand(yargs: Argv): Argv {
  return yargs.command<ControlArgs>(
    'switchover [url]',
    "hand the guest over to the secondary in order (the primary's monitor; token in TANDEM_MONITOR_TOKEN)",
    (y) => y.positional('url', { type: 'string', describe: `the primary's monitor URL or HOST:PORT (default ${DEFAULT_MONITOR_URL})` }),
    async (args) => {
      const result = await sendControl(operandMonitorUrls(args.url ?? DEFAULT_MONITOR_URL), 'switchover');
      process.stdout.write(`${typeof result?.switchover === 'string' ? `switchover ${result.switchover}` : 'switchover started'}\n`);
    },
  );
}
