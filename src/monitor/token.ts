/**
 * The monitor's control token, wherever it comes from: a node's
 * `monitor.token` / `monitor.token_file`, the CLI's `--token-file`, or
 * $TANDEM_MONITOR_TOKEN. One rule for what a token may be and one reader for
 * a token file, so that the node and the commands that talk to it accept the
 * same tokens and the same files.
 */
import { readLimitedFile } from '../util/secret-file.js';

export const TOKEN_ENV = 'TANDEM_MONITOR_TOKEN';
/** A control token shorter than this is refused: it would be guessable. */
export const MIN_TOKEN_CHARS = 16;
export const MAX_TOKEN_CHARS = 512;
/** A token file is the token and a newline; anything much bigger is not one. */
export const MAX_TOKEN_FILE_BYTES = 4096;
/** An Authorization header carries it: printable ASCII only (a control character would end the header). */
const TOKEN_CHARS = /^[\x20-\x7e]+$/;

/** What is wrong with `token` (named `from` in the message), or undefined. Never quotes the token. */
export function tokenProblem(token: string, from: string): string | undefined {
  if (token.length < MIN_TOKEN_CHARS || token.length > MAX_TOKEN_CHARS) return `${from}: the token must be ${MIN_TOKEN_CHARS}..${MAX_TOKEN_CHARS} characters, it has ${token.length}`;
  if (!TOKEN_CHARS.test(token)) return `${from}: the token may hold only printable ASCII characters`;
  return undefined;
}

type Fail = (message: string, options?: { cause?: unknown }) => Error;

/**
 * The token in `file` (named `label` in messages, the key or flag that gave
 * it): its text without surrounding whitespace. The file must be regular, at
 * most MAX_TOKEN_FILE_BYTES, and readable by its owner only.
 */
export function readTokenFile(file: string, label: string, fail: Fail): string {
  const bytes = readLimitedFile(file, { label, what: 'a token file', maxBytes: MAX_TOKEN_FILE_BYTES, secret: { group: 'refuse' }, fail });
  const token = bytes.toString('utf8').trim();
  const problem = tokenProblem(token, `${label}: ${file}`);
  if (problem !== undefined) throw fail(problem);
  return token;
}

/** The token in the environment, if set; a malformed one is refused rather than used. */
export function envToken(env: NodeJS.ProcessEnv, fail: Fail): string | undefined {
  const token = env[TOKEN_ENV];
  if (token === undefined || token === '') return undefined;
  const problem = tokenProblem(token, TOKEN_ENV);
  if (problem !== undefined) throw fail(problem);
  return token;
}
