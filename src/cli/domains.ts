/**
 * `tandem primary` and `tandem secondary` with `domains:` in their
 * configuration (src/node/domains.ts): the flags that name one domain's
 * address or setting are refused (each domain sets its own in the file),
 * and the process runs while any domain runs.
 *
 * Exit status, once every domain has ended or a signal stopped them:
 * EXIT_FAILURE (1) if a domain failed to start for any reason but another
 * node serving it (the others ran all the same; the status says the
 * process did not do all it was asked); else EXIT_FENCED (3) if every
 * domain ended because another node serves it (fenced, superseded, or
 * refused at its start), as one domain's process exits, so that a
 * supervisor does not restart a process with nothing left to serve; else 0
 * (stopped in order, or handed over at a switchover).
 */
import { ErrorCodes, TandemError } from '../errors.js';
import type { DomainEnd } from '../node/domains.js';
import type { Logger } from '../util/logger.js';
import { EXIT_FAILURE, EXIT_FENCED, UsageError, exitWith } from './errors.js';
import { listenForStop } from './config-args.js';

/** The exit status for how the domains ended (see the top of this file). */
export function domainsExitStatus(endings: Iterable<DomainEnd>): number {
  const ends = [...endings];
  if (ends.includes('failed')) return EXIT_FAILURE;
  if (ends.length > 0 && ends.every((e) => e === 'fenced' || e === 'refused')) return EXIT_FENCED;
  return 0;
}

/**
 * Refuses each flag of `perDomain` that was given (a bad usage, exit status
 * 2): with many domains it would name one address or setting for all of
 * them. `where`: the key each domain sets instead, by flag.
 */
export function refusePerDomainFlags(args: Record<string, unknown>, perDomain: Readonly<Record<string, string>>, file: string): void {
  for (const [flag, key] of Object.entries(perDomain)) {
    if (args[flag] === undefined) continue;
    throw new UsageError(`--${flag} names one domain's ${key}, and ${file} lists domains: set ${key} in each entry of domains: instead (or run without domains:)`);
  }
}

/** What the CLI drives of PrimaryDomains or SecondaryDomains. */
interface Runner {
  start(): Promise<void>;
  whenAllEnded(): Promise<void>;
  stop(signal: string): Promise<void>;
  readonly endings: ReadonlyMap<string, DomainEnd>;
}

/** Starts the domains, runs until they have all ended or a signal, stops what runs, and sets the exit status. */
export async function runDomains(runner: Runner, logger: Logger): Promise<void> {
  // Listening before the start: a SIGTERM while the domains start stops them in order once started.
  const stop = listenForStop(logger);
  try {
    await runner.start();
  } catch (err) {
    // As one domain's process: refused everywhere because other nodes serve them.
    if (err instanceof TandemError && err.code === ErrorCodes.FENCED) exitWith(err, EXIT_FENCED);
    throw err;
  }
  stop.started();
  const signal = await Promise.race([stop.signalled, runner.whenAllEnded().then(() => undefined)]);
  if (signal !== undefined) await runner.stop(signal);
  else logger.warn('every domain has ended: the process exits');
  process.exitCode = domainsExitStatus(runner.endings.values());
}
