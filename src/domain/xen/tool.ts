/**
 * Runs one of the host's tools (`xl`, `ip`, `tc`) once, for the steps that
 * happen once per save or per protection, never per epoch: its stdout
 * (bounded), or an error of the caller's code naming the command, its exit
 * and its last stderr lines.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { XenError, type XenErrorCode } from './errors.js';

export const DEFAULT_XL = '/usr/lib/xen-4.17/bin/xl';
/** The most of a tool's stdout kept: `xl list -l` of one domain is a few KiB. */
const MAX_STDOUT = 4 * 2 ** 20;

export async function runTool(file: string, args: readonly string[], code: XenErrorCode): Promise<string> {
  const what = `${file} ${args.join(' ')}`;
  const child = spawn(file, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const out: Buffer[] = [];
  let outBytes = 0;
  let err = '';
  child.stdout.on('data', (d: Buffer) => {
    outBytes += d.length;
    if (outBytes <= MAX_STDOUT) out.push(d);
  });
  child.stderr.on('data', (d: Buffer) => (err = (err + d.toString('utf8')).slice(-2048)));
  let exit: number | null;
  try {
    [exit] = (await Promise.race([once(child, 'close'), once(child, 'error').then(([e]) => Promise.reject(e as Error))])) as [number | null];
  } catch (e) {
    throw new XenError(code, `${what}: cannot run it: ${(e as Error).message}`, { cause: e });
  }
  if (exit !== 0) throw new XenError(code, `${what} failed (exit ${exit}): ${err.trim().split('\n').slice(-3).join(' | ')}`);
  if (outBytes > MAX_STDOUT) throw new XenError(code, `${what} printed more than ${MAX_STDOUT} bytes`);
  return Buffer.concat(out).toString('utf8');
}
