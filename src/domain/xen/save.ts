/**
 * `tandem save --xen`: a running Xen domain into an `xl save` file, with
 * Tandem in libxl's place. The same CheckpointSession as protection runs it
 * (src/checkpoint/save.ts) over a XenDomain: Xen's save helper copies the
 * memory, Tandem suspends the guest through xenstore when asked and writes
 * everything around the helper's stream (the xl header with the domain's
 * config, the libxl header, LIBXC_CONTEXT, and the libxl records after).
 *
 * - Plain (`xl save`): the domain is destroyed once its state is in the
 *   file, unless `keep` (`xl save -c`) resumes it; `xl restore FILE` brings
 *   it back, and `verify-stream-v2 -f xl` checks the file.
 * - Checkpointed (N > 0): a Remus stream of N checkpoints, ending right
 *   after the last (its failover point: `xl migrate-receive -r -e` reading
 *   the file on its stdin builds the domain from that checkpoint); the guest
 *   runs on.
 *
 * A save that fails after the guest suspended resumes it.
 */
import { closeSync, openSync } from 'node:fs';
import { saveDomain, type SaveSummary } from '../../checkpoint/save.js';
import { encodeXlHeader } from '../../stream/xl-header.js';
import { writeAllSync } from '../../util/file-sink.js';
import type { Logger } from '../../util/logger.js';
import { XenDomain, type XenDomainOptions } from './domain.js';
import { XenError, XenErrorCodes as C } from './errors.js';
import { DEFAULT_XL, runTool } from './tool.js';
import { domainConfigJson } from './xl-config.js';

export interface XenSaveOptions extends XenDomainOptions {
  out: string;
  /** 0: plain (xl save). N > 0: a Remus stream of N checkpoints, the guest left running. */
  checkpoints?: number;
  /** Plain: resume the domain after the save instead of destroying it (`xl save -c`). */
  keep?: boolean;
  logger: Logger;
  xl?: string;
}

export async function saveXenDomain(o: XenSaveOptions): Promise<SaveSummary> {
  const { domid, logger } = o;
  const checkpoints = o.checkpoints ?? 0;
  const domain = await XenDomain.open(o);
  const configJson = await domainConfigJson(domid, o.xl);
  const fd = openSync(o.out, 'w', 0o600);
  let summary: SaveSummary;
  try {
    writeAllSync(fd, [encodeXlHeader({ configJson })]);
    summary = await saveDomain(domain, { framing: 'libxl', version: 3, checkpoints, leaveSuspended: checkpoints === 0 && o.keep !== true }, (chunks) => writeAllSync(fd, chunks));
  } catch (err) {
    throw err instanceof XenError ? err : new XenError(C.XEN_SAVE_FAILED, `saving domain ${domid}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  } finally {
    closeSync(fd);
  }
  if (checkpoints === 0 && o.keep !== true) {
    await runTool(o.xl ?? DEFAULT_XL, ['destroy', String(domid)], C.XEN_SAVE_FAILED);
    logger.info({ domid }, `domain ${domid} saved and destroyed`);
  }
  return summary;
}
