/**
 * How the CLI reports failure: one line on stderr, no stack trace, and an
 * exit code (1 for a failed operation, 2 for bad usage).
 */
import { TandemError } from '../errors.js';

export class UsageError extends Error {
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

export function exitWith(err: unknown): never {
  const line = describeError(err).replace(/\s*\n\s*/g, ' ');
  process.stderr.write(`tandem: error: ${line}\n`);
  process.exit(err instanceof UsageError ? 2 : 1);
}
