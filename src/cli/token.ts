/**
 * The monitor's control token for the commands that ask a monitor to act
 * (and for reading a monitor that wants it): from --token-file FILE, else
 * from $TANDEM_MONITOR_TOKEN. Never from a flag holding the token itself:
 * flags show in `ps` and in shell histories.
 *
 * The file is read like a private key (src/transport/tls-files.ts): a
 * regular file, at most MAX_TOKEN_FILE_BYTES, readable by its owner only.
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { MIN_TOKEN_CHARS } from '../config/config.js';
import { TOKEN_ENV } from '../monitor/wire.js';
import { TokenError, UsageError } from './errors.js';

/** What the monitor accepts (src/monitor/control.ts); a token file is the token and a newline. */
export const MAX_TOKEN_CHARS = 512;
const MAX_TOKEN_FILE_BYTES = 4096;
/** An Authorization header carries it: printable ASCII only (a control character would end the header). */
const TOKEN_CHARS = /^[\x20-\x7e]+$/;

/** What is wrong with `token` (named `from` in the message), or undefined. Never quotes the token. */
function tokenProblem(token: string, from: string): string | undefined {
  if (token.length < MIN_TOKEN_CHARS || token.length > MAX_TOKEN_CHARS) return `${from}: the token must be ${MIN_TOKEN_CHARS}..${MAX_TOKEN_CHARS} characters, it has ${token.length}`;
  if (!TOKEN_CHARS.test(token)) return `${from}: the token may hold only printable ASCII characters`;
  return undefined;
}

/** The token in FILE: its text without surrounding whitespace (a trailing newline). */
export function readTokenFile(file: string): string {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (err) {
    throw new TokenError(`--token-file: cannot read ${file}: ${(err as Error).message}`, { cause: err });
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new TokenError(`--token-file: ${file} is not a regular file`);
    const mode = (st.mode & 0o777).toString(8);
    if ((st.mode & 0o077) !== 0) throw new TokenError(`--token-file: ${file} holds a secret but its group or other users can read it (mode ${mode}); chmod 600 ${file}`);
    if (st.size > MAX_TOKEN_FILE_BYTES) throw new TokenError(`--token-file: ${file} is ${st.size} bytes; a token file is at most ${MAX_TOKEN_FILE_BYTES}`);
    // One byte more than the limit: a file that grew since fstat is still caught.
    const buf = Buffer.alloc(MAX_TOKEN_FILE_BYTES + 1);
    let got = 0;
    for (let n; got < buf.length && (n = readSync(fd, buf, got, buf.length - got, null)) > 0; ) got += n;
    if (got > MAX_TOKEN_FILE_BYTES) throw new TokenError(`--token-file: ${file} is over ${MAX_TOKEN_FILE_BYTES} bytes; a token file is at most that`);
    const token = buf.subarray(0, got).toString('utf8').trim();
    const problem = tokenProblem(token, `--token-file: ${file}`);
    if (problem !== undefined) throw new TokenError(problem);
    return token;
  } catch (err) {
    if (err instanceof TokenError) throw err;
    throw new TokenError(`--token-file: cannot read ${file}: ${(err as Error).message}`, { cause: err });
  } finally {
    closeSync(fd);
  }
}

/** The token from the environment, if set; a malformed one is refused rather than sent. */
export function envToken(env: NodeJS.ProcessEnv): string | undefined {
  const token = env[TOKEN_ENV];
  if (token === undefined || token === '') return undefined;
  const problem = tokenProblem(token, TOKEN_ENV);
  if (problem !== undefined) throw new TokenError(problem);
  return token;
}

/** --token-file if given (it wins over the environment), else $TANDEM_MONITOR_TOKEN, else none. */
export function resolveCliToken(tokenFile: string | undefined, env: NodeJS.ProcessEnv = process.env): string | undefined {
  return tokenFile === undefined ? envToken(env) : readTokenFile(tokenFile);
}

/** The same, for an action that cannot be done without one: no token at all is bad usage, refused before anything is sent. */
export function requireCliToken(tokenFile: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  const token = resolveCliToken(tokenFile, env);
  if (token === undefined) throw new UsageError(`control needs the monitor's token: set ${TOKEN_ENV} or give --token-file FILE (a file only you can read)`);
  return token;
}
