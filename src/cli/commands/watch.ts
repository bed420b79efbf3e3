/**
 * `tandem watch [URL] [--json] [--count N]`: a live view of a monitor's
 * event stream. On a terminal the screen is redrawn at most four times a
 * second, when events came, and once a second otherwise (the lag grows);
 * otherwise (or with --lines) one line per event; --json prints the events
 * themselves, one per line, after checking them against the schema. A
 * monitor that goes away ends it with an error (exit status 1).
 */
import type { Argv } from 'yargs';
import { DEFAULT_MONITOR_URL, streamEvents } from '../../monitor/client.js';
import { DomainsWatchView, domainOf, eventLine } from '../../monitor/view.js';
import { flagInt, flagPath, operandMonitorUrls } from '../config-args.js';
import { jsonLine } from '../json-out.js';
import { resolveCliToken } from '../token.js';

interface WatchArgs {
  url: string | undefined;
  json: boolean;
  lines: boolean;
  count: number | undefined;
  'token-file': string | undefined;
}

/** The screen's pace: at most one redraw per FRAME_MS, and one per IDLE_FRAME_MS when nothing happened. */
const FRAME_MS = 250;
const IDLE_FRAME_MS = 1000;

export function watchCommand(yargs: Argv): Argv {
  return yargs.command<WatchArgs>(
    'watch [url]',
    "live view of a monitor's events (default URL: the conventional local monitor)",
    (y) =>
      y
        .positional('url', { type: 'string', describe: `monitor URL or HOST:PORT (default ${DEFAULT_MONITOR_URL})` })
        .option('json', { type: 'boolean', default: false, describe: 'print each event as a JSON line' })
        .option('lines', { type: 'boolean', default: false, describe: 'one line per event even on a terminal' })
        .option('count', { requiresArg: true, type: 'number', describe: 'exit after this many events (the snapshot counts)' })
        .option('token-file', { requiresArg: true, type: 'string', describe: 'file holding the token, for a monitor that wants it to be read (default: $TANDEM_MONITOR_TOKEN)' }),
    async (args) => {
      const count = args.count === undefined ? undefined : flagInt(args.count, '--count', 1, Number.MAX_SAFE_INTEGER);
      const urls = operandMonitorUrls(args.url ?? DEFAULT_MONITOR_URL);
      const token = resolveCliToken(args['token-file'] === undefined ? undefined : flagPath(args['token-file'], '--token-file'));
      const screen = process.stdout.isTTY && !args.json && !args.lines;
      const view = new DomainsWatchView();
      // Lines name their domain once the monitor has shown more than one.
      const domains = new Set<string>();
      const abort = new AbortController();
      const onSignal = (): void => abort.abort();
      process.once('SIGINT', onSignal);
      process.once('SIGTERM', onSignal);
      // Whoever read the events is gone (`tandem watch | head`): stop like a signal would.
      process.stdout.once('error', onSignal);
      let changed = true;
      let drawnAt = 0;
      const draw = (): void => {
        changed = false;
        drawnAt = Date.now();
        process.stdout.write(`\x1b[H\x1b[2J${view.render(drawnAt, process.stdout.columns)}\n`);
      };
      const timer = screen ? setInterval(() => (changed || Date.now() - drawnAt >= IDLE_FRAME_MS) && draw(), FRAME_MS) : undefined;
      let seen = 0;
      try {
        await streamEvents(
          urls,
          (e) => {
            seen++;
            if (args.json) process.stdout.write(jsonLine(e));
            else if (screen) {
              view.apply(e);
              changed = true;
            } else {
              const d = domainOf(e);
              if (d !== undefined && domains.size < 1024) domains.add(d);
              process.stdout.write(`${eventLine(e, domains.size > 1)}\n`);
            }
            return count === undefined || seen < count;
          },
          { signal: abort.signal, token },
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
