/**
 * `tandem demo`: runs the whole system on this machine (secondary, primary
 * with the sim guest, the service address, load) and prints where to look;
 * --json prints a summary object at the end. SIGINT, SIGTERM or SIGHUP
 * stop everything it started, then end the demo by that signal; a second
 * one ends it at once (its lifeline then ends the rest: src/demo/run.ts).
 */
import { randomBytes } from 'node:crypto';
import { constants } from 'node:os';
import type { Argv } from 'yargs';
import { runDemo, type DemoSummary, type DemoTls } from '../../demo/run.js';
import { TOKEN_ENV } from '../../monitor/wire.js';
import { defaultPeer } from '../../transport/tls-files.js';
import { flagAddress, flagChoice, flagInt, flagNodeName, flagNumber, flagPath, withTlsOptions, type TlsArgs } from '../config-args.js';
import { UsageError } from '../errors.js';

type Mode = 'remus' | 'colo' | 'none';
type Load = 'none' | 'benchmark';
type ArbiterKind = 'none' | 'etcd';

interface DemoArgs extends TlsArgs {
  service: string;
  // yargs checks a choice's values but lets a repeated flag through as an array.
  mode: Mode | Mode[];
  load: Load | Load[];
  duration: number;
  'kill-primary-after': number | undefined;
  'memory-mib': number;
  interval: number;
  json: boolean;
  monitor: string | undefined;
  arbiter: ArbiterKind | ArbiterKind[];
}

export function demoCommand(yargs: Argv): Argv {
  return yargs.command<DemoArgs>(
    'demo',
    'run the whole system here: secondary, primary with the sim guest, the service address, load',
    (y) =>
      withTlsOptions(y, { name: "with --tls: the primary's name in DIR", peer: "with --tls: the secondary's name (default: the other certificate in DIR)" })
        .option('service', { requiresArg: true, type: 'string', default: '127.0.0.1:6379', describe: 'HOST:PORT clients use; it stays the same across a failover' })
        .option('mode', { requiresArg: true, choices: ['remus', 'colo', 'none'] as const, default: 'remus' as const, describe: 'remus: checkpoint every interval; colo: both replicas run, checkpoint when their replies differ; none: unprotected baseline' })
        .option('load', { requiresArg: true, choices: ['none', 'benchmark'] as const, default: 'none' as const, describe: 'also run redis-benchmark against the service' })
        .option('duration', { requiresArg: true, type: 'number', default: 20, describe: 'seconds to run (1..3600)' })
        .option('kill-primary-after', { requiresArg: true, type: 'number', describe: 'SIGKILL the primary after this many seconds' })
        .option('memory-mib', { requiresArg: true, type: 'number', default: 64, describe: 'guest RAM, MiB (1..4096)' })
        .option('interval', { requiresArg: true, type: 'number', default: 25, describe: 'Remus interval, ms (1..60000)' })
        .option('json', { type: 'boolean', default: false, describe: 'print a JSON summary' })
        .option('monitor', { requiresArg: true, type: 'string', describe: "HOST:PORT for the primary's dashboard; the secondary's is on the next port" })
        .option('arbiter', { requiresArg: true, choices: ['none', 'etcd'] as const, default: 'none' as const, describe: "who may serve: none, each node decides alone; etcd, a local etcd the demo starts on loopback (Debian's etcd-server)" }),
    async (args) => {
      const durationS = flagNumber(args.duration, '--duration', 1, 3600);
      const killPrimaryAfterS = args['kill-primary-after'] === undefined ? undefined : flagNumber(args['kill-primary-after'], '--kill-primary-after', 0, 3600);
      const memoryMib = flagInt(args['memory-mib'], '--memory-mib', 1, 4096);
      const intervalMs = flagInt(args.interval, '--interval', 1, 60_000);
      const service = flagAddress(args.service, '--service', true);
      const monitor = args.monitor === undefined ? undefined : flagAddress(args.monitor, '--monitor', true);
      const mode = flagChoice(args.mode, '--mode');
      const load = flagChoice(args.load, '--load');
      const arbiter = flagChoice(args.arbiter, '--arbiter');
      if (monitor !== undefined && mode === 'none') throw new UsageError('--monitor: the dashboards watch protection; use --mode remus or colo');
      if (killPrimaryAfterS !== undefined && killPrimaryAfterS > durationS) {
        throw new UsageError(`--kill-primary-after ${killPrimaryAfterS} is beyond the run's end (--duration ${durationS}): the primary would never be killed`);
      }
      if (killPrimaryAfterS !== undefined && mode === 'none') throw new UsageError('--kill-primary-after: with --mode none there is no standby to fail over to');
      if (arbiter !== 'none' && mode === 'none') throw new UsageError('--arbiter: it decides between a primary and its standby; use --mode remus or colo');
      const tls = demoTls(args);
      const say = (line: string): void => void (args.json ? process.stderr : process.stdout).write(`${line}\n`);
      if (monitor !== undefined && !process.env[TOKEN_ENV]) {
        // The demo's nodes inherit it; a throwaway token so the dashboard's buttons can be tried.
        process.env[TOKEN_ENV] = randomBytes(18).toString('base64url');
        say(`dashboard control token (this run only): ${process.env[TOKEN_ENV]}`);
      }
      const stopped = new AbortController();
      const signals = stopOnSignals(stopped, say);
      let summary: DemoSummary | undefined;
      try {
        summary = await runDemo({ service, mode, load, durationS, killPrimaryAfterS, memoryMib, intervalMs, monitor, tls, arbiter, say, signal: stopped.signal });
      } catch (err) {
        if (signals.first() === undefined) throw err;
      } finally {
        signals.release();
      }
      const sig = signals.first();
      if (sig !== undefined) {
        say(`demo: stopped on ${sig}: what it started is stopped`);
        endBy(sig);
      }
      // Without a signal, runDemo returned, or its error went on above.
      summary = summary!;
      if (args.json) process.stdout.write(`${JSON.stringify(summary)}\n`);
      else {
        say(`epochs: ${summary.epochs}   acked writes: ${summary.acked_writes}   lost acked writes: ${summary.lost_acked_writes}`);
        if (summary.failover_ms !== null) say(`failover: first reply from the survivor ${summary.failover_ms} ms after the primary died`);
        if (summary.arbiter === 'etcd') say(`arbiter generation: ${summary.primary_generation} -> ${summary.survivor_generation ?? `${summary.primary_generation} (nobody took over)`}`);
      }
    },
  );
}

const STOP_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

/**
 * The first of SIGINT, SIGTERM and SIGHUP aborts the demo (which stops what
 * it started); a second ends the process at once. Returns which came
 * first, and `release` to hand the signals back to their default action.
 */
function stopOnSignals(stopped: AbortController, say: (line: string) => void): { first: () => NodeJS.Signals | undefined; release: () => void } {
  let first: NodeJS.Signals | undefined;
  const release = (): void => {
    for (const s of STOP_SIGNALS) process.off(s, on);
  };
  function on(sig: NodeJS.Signals): void {
    if (first !== undefined) {
      release();
      endBy(sig);
    }
    first = sig;
    say(`demo: ${sig}: stopping what the demo started (again to end it at once)`);
    stopped.abort(new Error(`stopped on ${sig}`));
  }
  for (const s of STOP_SIGNALS) process.on(s, on);
  return { first: () => first, release };
}

/** Ends this process by `sig`'s default action, so that whoever waits for it sees the signal, as with any program it ended. */
function endBy(sig: NodeJS.Signals): never {
  for (const s of STOP_SIGNALS) process.removeAllListeners(s);
  process.kill(process.pid, sig);
  // The signal is delivered on the way out of kill(2); should it be held up, the conventional status instead.
  process.exit(128 + constants.signals[sig]);
}

/**
 * --tls DIR --name NAME [--peer NAME]: the demo's nodes run with existing
 * certificates, the primary as NAME and the secondary as the peer (by
 * default the other certificate in DIR). Without --tls the demo makes its own.
 */
function demoTls(args: TlsArgs): DemoTls | undefined {
  if (args.tls === undefined) {
    if (args.name !== undefined || args.peer !== undefined) throw new UsageError('--name and --peer name certificates in a --tls DIR; without --tls the demo makes its own');
    return undefined;
  }
  const dir = flagPath(args.tls, '--tls');
  if (args.name === undefined) throw new UsageError("--tls needs --name: the primary's name in DIR (the secondary runs as --peer, by default the other certificate there)");
  const primary = flagNodeName(args.name, '--name');
  const secondary = args.peer === undefined ? defaultPeer(dir, primary) : flagNodeName(args.peer, '--peer');
  if (secondary === primary) throw new UsageError(`--peer: "${secondary}" is the primary's own name (--name)`);
  return { dir, primary, secondary };
}
