/**
 * How the CLI reports failure: one line on stderr, no stack trace, and an
 * exit status. The statuses are API (scripts and supervisors test them), the
 * same for every command, and listed in README.md, "Exit statuses".
 */
import { ErrorCodes, TandemError } from '../errors.js';

/** Something failed while running: an unreadable file, a refused action, a peer that went away. */
export const EXIT_FAILURE = 1;
/** Bad usage: an unknown command or flag, a missing operand, a flag value that does not parse or is out of range. Nothing was started. */
export const EXIT_USAGE = 2;
/** `tandem primary` or `secondary` stopped because it was fenced or superseded: another node serves the guest at a newer generation (docs/failover.md). */
export const EXIT_FENCED = 3;
/** `tandem status`: the monitor answered, and the node is not healthy (not protected, not standing by). */
export const EXIT_UNHEALTHY = 4;

/** A bad command line: a flag's value, a missing operand. */
export class UsageError extends TandemError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCodes.CLI_USAGE, message, options);
  }

  override get name(): string {
    return 'UsageError';
  }
}

/** A control token the CLI cannot use (src/cli/token.ts): exit status 1, like any file that cannot be read. */
export class TokenError extends TandemError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCodes.CLI_TOKEN, message, options);
  }

  override get name(): string {
    return 'TokenError';
  }
}

export function describeError(err: unknown): string {
  if (err instanceof TandemError) return `${err.message} [${err.code}]`;
  if (err instanceof Error) {
    const code = (err as NodeJS.ErrnoException).code;
    return code === undefined ? err.message : `${err.message} [${code}]`;
  }
  return String(err);
}

/** Writes the one line and exits: with `status` if given, else 2 for bad usage and 1 for anything else. */
export function exitWith(err: unknown, status?: number): never {
  const line = describeError(err).replace(/\s*\n\s*/g, ' ');
  process.stderr.write(`tandem: error: ${line}\n`);
  process.exit(status ?? (err instanceof UsageError ? EXIT_USAGE : EXIT_FAILURE));
}
