/**
 * How the CLI reports failure: one line on stderr, no stack trace, and an
 * exit code (1 for a failed operation, 2 for bad usage).
 */
import { ErrorCodes, TandemError } from '../errors.js';

/** A bad command line: a flag's value, a missing operand. */
export class UsageError extends TandemError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCodes.CLI_USAGE, message, options);
  }

  override get name(): string {
    return 'UsageError';
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

/** One line on stderr and the exit; `status` for a command whose failure has a status of its own (the default: 2 for bad usage, else 1). */
export function exitWith(err: unknown, status?: number): never {
  const line = describeError(err).replace(/\s*\n\s*/g, ' ');
  process.stderr.write(`tandem: error: ${line}\n`);
  process.exit(status ?? (err instanceof UsageError ? 2 : 1));
}
