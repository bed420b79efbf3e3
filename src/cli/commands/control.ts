/**
 * The monitor's control actions from the command line, one command each:
 * `tandem checkpoint|failover|switchover|stop|start [URL]`, `tandem
 * set-interval MS [URL]` and `tandem set-mode MODE [URL]` (stop and start
 * are the monitor's stop-protection and start-protection). Each sends one
 * request to the node's monitor (src/monitor/control.ts) and prints what
 * came of it in one line. The token comes from --token-file FILE or
 * $TANDEM_MONITOR_TOKEN (./token.ts), never from a flag holding it.
 */
import type { Argv } from 'yargs';
import { parseDomain, type ControlCommand, type SettableMode } from '../../monitor/control.js';
import { TandemError } from '../../errors.js';
import { UsageError } from '../errors.js';
import { DEFAULT_MONITOR_URL, sendControl, type ControlReply } from '../../monitor/client.js';
import { flagChoice, flagInt, flagPath, operandMonitorUrls } from '../config-args.js';
import { requireCliToken } from '../token.js';

/** The bounds the monitor itself enforces on set-interval (src/monitor/control.ts). */
const MIN_INTERVAL_MS = 1;
const MAX_INTERVAL_MS = 60_000;
const SETTABLE_MODES = ['remus', 'manual', 'colo'] as const satisfies readonly SettableMode[];

interface ControlArgs {
  url: string | undefined;
  'token-file': string | undefined;
  domain: string | undefined;
}

/** --domain NAME: the domain meant, on a monitor showing several; a name the monitor could not take is a usage error. */
export function flagDomain(value: string | string[] | undefined): string | undefined {
  if (value === undefined) return undefined;
  if (Array.isArray(value)) throw new UsageError(`--domain given ${value.length} times; give it once`);
  try {
    return parseDomain(value);
  } catch (err) {
    if (err instanceof TandemError) throw new UsageError(`--${err.message}`, { cause: err });
    throw err;
  }
}

/** [URL] and --token-file, which every control command takes. */
function withTarget<T>(y: Argv<T>, whose: string): Argv<T & ControlArgs> {
  return y
    .positional('url', { type: 'string', describe: `${whose} monitor URL or HOST:PORT (default ${DEFAULT_MONITOR_URL})` })
    .option('token-file', { requiresArg: true, type: 'string', describe: 'file holding the control token, readable by its owner only (default: $TANDEM_MONITOR_TOKEN)' })
    .option('domain', { requiresArg: true, type: 'string', describe: 'the domain to act on, on a monitor showing several' });
}

/** Checks the operands, then sends: a bad operand is refused before anything is asked of the node. */
async function perform(args: ControlArgs, command: ControlCommand, say: (reply: ControlReply) => string): Promise<void> {
  const urls = operandMonitorUrls(args.url ?? DEFAULT_MONITOR_URL);
  const domain = flagDomain(args.domain);
  const token = requireCliToken(args['token-file'] === undefined ? undefined : flagPath(args['token-file'], '--token-file'));
  const reply = await sendControl(urls, command, token, undefined, domain);
  process.stdout.write(`${reply.node} at ${urls.http.host}: ${say(reply)}\n`);
}

const text = (v: unknown): string => (typeof v === 'string' || typeof v === 'number' ? String(v) : '?');

interface Simple {
  name: string;
  command: ControlCommand;
  describe: string;
  whose: string;
  say: (r: ControlReply) => string;
}

const SIMPLE: Simple[] = [
  {
    name: 'checkpoint',
    command: { action: 'checkpoint' },
    describe: 'take a checkpoint now (the primary)',
    whose: "the primary's",
    say: () => 'checkpoint requested; it is taken at the next safe point (`tandem watch` shows it, trigger "operator")',
  },
  {
    name: 'failover',
    command: { action: 'failover' },
    describe: 'make the secondary take over now from its last checkpoint (the secondary; a live primary is fenced)',
    whose: "the secondary's",
    say: (r) => `failed over: the guest runs here from epoch ${text(r.result?.epoch)}, serving ${text(r.result?.service)} (took ${text(r.result?.tookMs)} ms)`,
  },
  {
    name: 'switchover',
    command: { action: 'switchover' },
    describe: 'hand the guest over to the secondary in order: a last checkpoint, then it takes over and the primary stops',
    whose: "the primary's",
    say: (r) => `switchover ${typeof r.result?.switchover === 'string' ? r.result.switchover : 'started'}`,
  },
  {
    name: 'stop',
    command: { action: 'stop-protection' },
    describe: 'stop protecting the guest (the primary; the guest runs on unprotected)',
    whose: "the primary's",
    say: () => 'protection stopped: the guest runs unprotected until `tandem start`',
  },
  {
    name: 'start',
    command: { action: 'start-protection' },
    describe: 'start protecting the guest again (the primary: a fresh pre-copy to the secondary)',
    whose: "the primary's",
    say: () => 'protection starting: a fresh pre-copy to the secondary (`tandem status` says when it is protected)',
  },
];

export function controlCommands(yargs: Argv): Argv {
  let cli = yargs;
  for (const c of SIMPLE) {
    cli = cli.command<ControlArgs>(
      `${c.name} [url]`,
      `${c.describe}; needs the control token`,
      (y) => withTarget(y, c.whose),
      (args) => perform(args, c.command, c.say),
    );
  }
  return cli
    .command<ControlArgs & { ms: number }>(
      'set-interval <ms> [url]',
      `set the Remus checkpoint interval, ms (${MIN_INTERVAL_MS}..${MAX_INTERVAL_MS}; the primary); needs the control token`,
      (y) => withTarget(y.positional('ms', { type: 'number', demandOption: true, describe: 'the interval, ms' }), "the primary's"),
      (args) => {
        const intervalMs = flagInt(args.ms, 'MS', MIN_INTERVAL_MS, MAX_INTERVAL_MS);
        return perform(args, { action: 'set-interval', intervalMs }, () => `checkpoint interval set to ${intervalMs} ms`);
      },
    )
    .command<ControlArgs & { mode: SettableMode }>(
      'set-mode <mode> [url]',
      'set how checkpoints are paced (the primary): remus, every interval; manual, only when asked (`tandem checkpoint`); colo, when the replicas differ; needs the control token',
      (y) => withTarget(y.positional('mode', { choices: SETTABLE_MODES, demandOption: true, describe: 'remus, manual or colo' }), "the primary's"),
      (args) => {
        const mode = flagChoice(args.mode, 'MODE');
        return perform(args, { action: 'set-mode', mode }, () => `checkpoint mode set to ${mode}`);
      },
    );
}
