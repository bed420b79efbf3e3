/**
 * The monitor's control token for the commands that ask a monitor to act
 * (and for reading a monitor that wants it): from --token-file FILE, else
 * from $TANDEM_MONITOR_TOKEN. Never from a flag holding the token itself:
 * flags show in `ps` and in shell histories.
 *
 * The file is read as the node reads monitor.token_file (src/monitor/token.ts):
 * a regular file of at most 4 KiB, readable by its owner only.
 */
import { TOKEN_ENV, envToken as tokenFromEnv, readTokenFile } from '../monitor/token.js';
import { TokenError, UsageError } from './errors.js';

const tokenError = (message: string, options?: { cause?: unknown }): TokenError => new TokenError(message, options);

/** The token from the environment, if set; a malformed one is refused rather than sent. */
export function envToken(env: NodeJS.ProcessEnv): string | undefined {
  return tokenFromEnv(env, tokenError);
}

/** --token-file if given (it wins over the environment), else $TANDEM_MONITOR_TOKEN, else none. */
export function resolveCliToken(tokenFile: string | undefined, env: NodeJS.ProcessEnv = process.env): string | undefined {
  return tokenFile === undefined ? envToken(env) : readTokenFile(tokenFile, '--token-file', tokenError);
}

/** The same, for an action that cannot be done without one: no token at all is bad usage, refused before anything is sent. */
export function requireCliToken(tokenFile: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  const token = resolveCliToken(tokenFile, env);
  if (token === undefined) throw new UsageError(`control needs the monitor's token: set ${TOKEN_ENV} or give --token-file FILE (a file only you can read)`);
  return token;
}
