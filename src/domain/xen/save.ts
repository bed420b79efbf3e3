/**
 * Saving a running Xen domain to an `xl save` file, with Tandem in libxl's
 * place: Xen's own save helper copies the memory (libxc), Tandem suspends
 * the guest through xenstore when the helper asks, and writes everything
 * around the helper's stream itself (xl header with the domain's config,
 * libxl header, LIBXC_CONTEXT, and the libxl END after the helper's END).
 * `xl restore FILE` brings the domain back; `verify-stream-v2 -f xl` checks
 * the file.
 *
 * Like `xl save`, the domain is destroyed once its state is safely in the
 * file, unless `keep` (`xl save -c`) asks for it to be resumed instead. A
 * save that fails after the guest suspended resumes it: a failed save never
 * leaves the guest stopped.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import { frameRecord } from '../../stream/encoder.js';
import { LibxlType } from '../../stream/format.js';
import { encodeLibxlHeader } from '../../stream/headers.js';
import { encodeXlHeader } from '../../stream/xl-header.js';
import type { Logger } from '../../util/logger.js';
import { XenError, XenErrorCodes as C } from './errors.js';
import { startSave, type SaveHelperOptions } from './save-helper.js';
import { suspendDomain, type SuspendOptions } from './suspend.js';
import type { XcOps } from './xc.js';
import type { XenstoreClient } from './xenstore.js';

export const DEFAULT_XL = '/usr/lib/xen-4.17/bin/xl';
/** `xl list -l` of one domain prints its config; more than this is not one. */
const MAX_CONFIG_OUTPUT = 4 * 2 ** 20;

export interface XenSaveOptions {
  domid: number;
  out: string;
  /** Resume the domain after the save instead of destroying it (`xl save -c`). */
  keep?: boolean;
  xs: XenstoreClient;
  xc: Pick<XcOps, 'info' | 'resume'>;
  logger: Logger;
  xl?: string;
  suspend?: SuspendOptions;
  /** The save helper's own options (a test's stand-in). */
  helper?: Pick<SaveHelperOptions, 'helperPath' | 'command'>;
}

export interface XenSaveResult {
  bytes: number;
  /** From the start to the stream's end (the guest is suspended for the part after pre-copy). */
  ms: number;
  /** Of those, the guest was suspended this long. */
  suspendedMs: number;
}

/** Runs `xl ARGS`; its stdout (bounded), or a XEN_SAVE_FAILED naming the command and its stderr. */
async function xl(path: string, args: string[]): Promise<string> {
  const child = spawn(path, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const out: Buffer[] = [];
  let outBytes = 0;
  let err = '';
  child.stdout.on('data', (d: Buffer) => {
    outBytes += d.length;
    if (outBytes <= MAX_CONFIG_OUTPUT) out.push(d);
  });
  child.stderr.on('data', (d: Buffer) => (err = (err + d.toString('utf8')).slice(-2048)));
  const [code] = (await Promise.race([once(child, 'close'), once(child, 'error').then(([e]) => Promise.reject(e as Error))])) as [number | null];
  if (code !== 0) throw new XenError(C.XEN_SAVE_FAILED, `xl ${args.join(' ')} failed (exit ${code}): ${err.trim().split('\n').slice(-3).join(' | ')}`);
  if (outBytes > MAX_CONFIG_OUTPUT) throw new XenError(C.XEN_SAVE_FAILED, `xl ${args.join(' ')} printed more than ${MAX_CONFIG_OUTPUT} bytes`);
  return Buffer.concat(out).toString('utf8');
}

/** The domain's libxl config as JSON, from `xl list -l DOMID` (an array of {domid, config}). */
export async function domainConfigJson(domid: number, xlPath = DEFAULT_XL): Promise<string> {
  const text = await xl(xlPath, ['list', '-l', String(domid)]);
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new XenError(C.XEN_SAVE_FAILED, `xl list -l ${domid} did not print JSON`, { cause: err });
  }
  const entry = Array.isArray(parsed) ? (parsed as unknown[]).find((e) => (e as { domid?: unknown })?.domid === domid) : undefined;
  const config = (entry as { config?: unknown } | undefined)?.config;
  if (config === null || typeof config !== 'object') throw new XenError(C.XEN_NO_DOMAIN, `xl list -l ${domid} has no config for domain ${domid}`);
  return JSON.stringify(config, null, 4);
}

export async function saveXenDomain(o: XenSaveOptions): Promise<XenSaveResult> {
  const { domid, xs, xc, logger } = o;
  const started = performance.now();
  const info = await xc.info(domid);
  if (info === undefined || info.dying) throw new XenError(C.XEN_NO_DOMAIN, `no domain ${domid} to save`);
  if (info.shutdown) throw new XenError(C.XEN_SAVE_FAILED, `domain ${domid} is shut down (reason ${info.shutdownReason}): nothing runs to save`);
  const configJson = await domainConfigJson(domid, o.xl);
  const file = createWriteStream(o.out, { flags: 'w', mode: 0o600 });
  const fileError = new Promise<never>((_, reject) => file.once('error', (err) => reject(new XenError(C.XEN_SAVE_FAILED, `writing ${o.out}: ${err.message}`, { cause: err }))));
  fileError.catch(() => undefined);
  let bytes = 0;
  const write = async (chunks: readonly Buffer[]): Promise<void> => {
    for (const c of chunks) {
      bytes += c.length;
      if (!file.write(c)) await Promise.race([once(file, 'drain'), fileError]);
    }
  };
  let suspendedAt: number | undefined;
  const driver = startSave({
    ...o.helper,
    domid,
    streamType: 'plain',
    // As `xl save`: the guest suspends first, then libxc copies all of its memory once.
    live: false,
    handlers: {
      suspend: async () => {
        await suspendDomain(xs, xc, domid, o.suspend);
        suspendedAt = performance.now();
        logger.info({ domid }, `domain ${domid} suspended`);
      },
      // PVH and HVM guests have it asked for; without a device model there is nothing to switch.
      switchQemuLogdirty: () => Promise.resolve(),
    },
    onLog: (e) => logger.debug({ level: e.levelName, context: e.context }, `save helper: ${e.text}`),
  });
  try {
    await write([encodeXlHeader({ configJson }), encodeLibxlHeader(), ...frameRecord(LibxlType.LIBXC_CONTEXT, [])]);
    const draining = (async () => {
      for await (const chunk of driver.stream!) await write([chunk as Buffer]);
    })();
    const outcome = await driver.done;
    await draining;
    if (outcome.retval !== 0) throw new XenError(C.XEN_SAVE_FAILED, `the save helper completed with retval ${outcome.retval} (errno ${outcome.errno}): ${outcome.lastLogs.slice(-3).join(' | ')}`);
    // No device model (PV, PVH): no emulator records between libxc's END and libxl's.
    await write(frameRecord(LibxlType.END, []));
    file.end();
    await Promise.race([once(file, 'close'), fileError]);
  } catch (err) {
    file.destroy();
    if (suspendedAt !== undefined) await resumeAfterFailure(o, err);
    throw err instanceof XenError ? err : new XenError(C.XEN_SAVE_FAILED, `saving domain ${domid}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
  const ended = performance.now();
  if (o.keep === true) {
    await xc.resume(domid, true);
    await xs.resume(domid);
    logger.info({ domid }, `domain ${domid} saved and resumed`);
  } else {
    await xl(o.xl ?? DEFAULT_XL, ['destroy', String(domid)]);
    logger.info({ domid }, `domain ${domid} saved and destroyed`);
  }
  return { bytes, ms: ended - started, suspendedMs: suspendedAt === undefined ? 0 : ended - suspendedAt };
}

async function resumeAfterFailure(o: XenSaveOptions, cause: unknown): Promise<void> {
  try {
    await o.xc.resume(o.domid, true);
    await o.xs.resume(o.domid);
    o.logger.warn({ domid: o.domid }, `save failed after domain ${o.domid} suspended; it was resumed and runs on: ${cause instanceof Error ? cause.message : String(cause)}`);
  } catch (err) {
    o.logger.error({ err, domid: o.domid }, `save failed after domain ${o.domid} suspended, and resuming it failed too: it stays suspended`);
  }
}
