/**
 * The one reader of the small files a node trusts: certificates, private
 * keys and control tokens. Each is read through one descriptor (the checks
 * and the read see the same file), bounded before anything is allocated,
 * and, for a secret, refused when other users of the host can read it.
 *
 * How the group is treated is the caller's: a private key may be shared
 * with a group on purpose (Debian's ssl-cert convention for
 * /etc/ssl/private), so that is a warning; a control token has no such
 * convention and is refused.
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';

export interface ReadFileRules {
  /** How the file is named in messages: the key or flag that gave it (`tls.key`, `--token-file`). */
  label: string;
  /** What the file should be, for messages: "a PEM certificate or key", "a token file". */
  what: string;
  maxBytes: number;
  /** Others may not read it; `group` says what a group-readable one gets. Undefined: not a secret. */
  secret?: { group: 'refuse' | 'warn'; warn?: (message: string) => void };
  /** The caller's error type (ConfigError for a node, TokenError for the CLI). */
  fail: (message: string, options?: { cause?: unknown }) => Error;
}

/** The file's bytes, after the checks `rules` ask for. Every refusal is `rules.fail(...)` naming the file. */
export function readLimitedFile(file: string, rules: ReadFileRules): Buffer {
  const { label, what, maxBytes, secret, fail } = rules;
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (err) {
    throw fail(`${label}: cannot read ${file}: ${(err as Error).message}`, { cause: err });
  }
  const failed = new WeakSet<Error>();
  const refuse = (message: string): Error => {
    const err = fail(message);
    failed.add(err);
    return err;
  };
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw refuse(`${label}: ${file} is not a regular file`);
    if (st.size > maxBytes) throw refuse(`${label}: ${file} is ${st.size} bytes; ${what} is at most ${maxBytes} bytes`);
    if (secret !== undefined) {
      const mode = (st.mode & 0o777).toString(8);
      if ((st.mode & 0o007) !== 0) throw refuse(`${label}: ${file} holds a secret that every user of this host can read (mode ${mode}); chmod 600 ${file}`);
      if ((st.mode & 0o070) !== 0) {
        if (secret.group === 'refuse') throw refuse(`${label}: ${file} holds a secret that its group can read (mode ${mode}); chmod 600 ${file}`);
        secret.warn?.(`${label}: ${file} holds a secret that its group can read (mode ${mode}); chmod 600 it unless that group is meant to`);
      }
    }
    // Read to the limit, not to st.size, and one byte past it: a file that grew since fstat is read whole or caught.
    const buf = Buffer.alloc(maxBytes + 1);
    let got = 0;
    for (let n; got < buf.length && (n = readSync(fd, buf, got, buf.length - got, null)) > 0; ) got += n;
    if (got > maxBytes) throw refuse(`${label}: ${file} is over ${maxBytes} bytes; ${what} is at most that`);
    return buf.subarray(0, got);
  } catch (err) {
    if (err instanceof Error && failed.has(err)) throw err;
    throw fail(`${label}: cannot read ${file}: ${(err as Error).message}`, { cause: err });
  } finally {
    closeSync(fd);
  }
}
