/**
 * A domain's configuration as libxl holds it: what Xen's restore needs to
 * build the domain again (the xl header of a save file, the
 * TANDEM_DOMAIN_CONFIG record of a replication stream).
 */
import { XenError, XenErrorCodes as C } from './errors.js';
import { DEFAULT_XL, runTool } from './tool.js';

/** The domain's libxl config as JSON, from `xl list -l DOMID` (an array of {domid, config}). */
export async function domainConfigJson(domid: number, xlPath = DEFAULT_XL): Promise<string> {
  const text = await runTool(xlPath, ['list', '-l', String(domid)], C.XEN_SAVE_FAILED);
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new XenError(C.XEN_SAVE_FAILED, `xl list -l ${domid} did not print JSON`, { cause: err });
  }
  const entry = Array.isArray(parsed) ? (parsed as unknown[]).find((e) => (e as { domid?: unknown } | null)?.domid === domid) : undefined;
  const config = (entry as { config?: unknown } | undefined)?.config;
  if (config === null || typeof config !== 'object') throw new XenError(C.XEN_NO_DOMAIN, `xl list -l ${domid} has no config for domain ${domid}`);
  return JSON.stringify(config, null, 4);
}

