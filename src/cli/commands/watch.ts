/**
 * `tandem watch [URL] [--json] [--count N]`: a live view of a monitor's
 * event stream. On a terminal the screen is redrawn a few times a second;
 * otherwise (or with --lines) one line per event; --json prints the events
 * themselves, one per line, after checking them against the schema.
 */
import type { Argv } from 'yargs';
import { DEFAULT_MONITOR_URL, streamEvents } from '../../monitor/client.js';
import { WatchView, eventLine } from '../../monitor/view.js';
import { flagInt, operandMonitorUrls } from '../config-args.js';

interface WatchArgs {
  url: string | undefined;
  json: boolean;
  lines: boolean;
  count: number | undefined;
}

export function watchCommand(yargs: Argv): Argv {
  return yargs.command<WatchArgs>(
    'watch [url]',
    "live view of a monitor's events (default URL: the conventional local monitor)",
    (y) =>
      y
        .positional('url', { type: 'string', describe: `monitor URL or HOST:PORT (default ${DEFAULT_MONITOR_URL})` })
        .option('json', { type: 'boolean', default: false, describe: 'print each event as a JSON line' })
        .option('lines', { type: 'boolean', default: false, describe: 'one line per event even on a terminal' })
        .option('count', { type: 'number', describe: 'exit after this many events (the snapshot counts)' }),
    async (args) => {
      const count = args.count === undefined ? undefined : flagInt(args.count, '--count', 1, Number.MAX_SAFE_INTEGER);
      const urls = operandMonitorUrls(args.url ?? DEFAULT_MONITOR_URL);
      const screen = process.stdout.isTTY && !args.json && !args.lines;
      const view = new WatchView();
      const abort = new AbortController();
      const onSignal = (): void => abort.abort();
      process.once('SIGINT', onSignal);
      process.once('SIGTERM', onSignal);
      // Whoever read the events is gone (`tandem watch | head`): stop like a signal would.
      process.stdout.once('error', onSignal);
      const draw = (): void => void process.stdout.write(`\x1b[H\x1b[2J${view.render(Date.now(), process.stdout.columns)}\n`);
      const timer = screen ? setInterval(draw, 250) : undefined;
      let seen = 0;
      try {
        await streamEvents(
          urls,
          (e) => {
            seen++;
            if (args.json) process.stdout.write(`${JSON.stringify(e)}\n`);
            else if (screen) view.apply(e);
            else process.stdout.write(`${eventLine(e)}\n`);
            return count === undefined || seen < count;
          },
          { signal: abort.signal },
        );
      } finally {
        clearInterval(timer);
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
        if (screen && !process.stdout.destroyed) draw();
      }
    },
  );
}
