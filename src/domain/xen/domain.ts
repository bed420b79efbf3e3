/**
 * A running Xen domain as the checkpoint engine drives it (ProtectedDomain,
 * src/domain/types.ts): suspended through xenstore as libxl does, resumed
 * with the cooperative fast resume, its memory saved by Xen's own libxc
 * (XenSaver). PV and PVH guests have no device model: no emulator records.
 */
import type { Logger } from '../../util/logger.js';
import type { DeviceModelState, DomainInfo, ProtectedDomain } from '../types.js';
import { XenError, XenErrorCodes as C } from './errors.js';
import type { SaveHelperOptions } from './save-helper.js';
import { XenSaver } from './saver.js';
import { suspendDomain, type SuspendOptions } from './suspend.js';
import type { XcOps } from './xc.js';
import type { XenstoreClient } from './xenstore.js';
import { domainConfigJson } from './xl-config.js';

/** libxc saves a PVH guest as x86 HVM (Xen's DomainType 2). */
const X86_HVM = 2;

export interface XenDomainOptions {
  domid: number;
  xs: XenstoreClient;
  xc: Pick<XcOps, 'info' | 'resume'>;
  logger: Logger;
  suspend?: SuspendOptions;
  helper?: Pick<SaveHelperOptions, 'helperPath' | 'command' | 'maxBufferedBytes'>;
  /** Where `xl` is (for the domain's config). */
  xl?: string;
}

export class XenDomain implements ProtectedDomain {
  readonly saver: XenSaver;

  private constructor(
    private readonly options: XenDomainOptions,
    readonly info: DomainInfo,
  ) {
    this.saver = new XenSaver({ domid: options.domid, logger: options.logger, helper: options.helper });
  }

  /** The domain `domid`, which must exist and run. */
  static async open(options: XenDomainOptions): Promise<XenDomain> {
    const { domid, xc } = options;
    const state = await xc.info(domid);
    if (state === undefined || state.dying) throw new XenError(C.XEN_NO_DOMAIN, `no domain ${domid}`);
    if (state.shutdown) throw new XenError(C.XEN_SAVE_FAILED, `domain ${domid} is shut down (reason ${state.shutdownReason}): nothing runs to protect or save`);
    return new XenDomain(options, { type: X86_HVM, pages: Math.ceil((state.memKb ?? 0) / 4), vcpus: state.vcpus ?? 1, emulatorId: 0 });
  }

  get domid(): number {
    return this.options.domid;
  }

  /** Timed (debug log), as the resume: with Xen's copy between them they are the guest's pause. */
  async suspend(): Promise<void> {
    const { xs, xc, domid, suspend, logger } = this.options;
    const t0 = performance.now();
    await suspendDomain(xs, xc, domid, suspend);
    logger.debug({ domid, ms: performance.now() - t0 }, 'xen suspend');
  }

  /** The cooperative fast resume (the guest's suspend call returns 1: no device reconnect), then xenstore's RESUME, as libxl does. */
  async resume(): Promise<void> {
    const { xs, xc, domid, logger } = this.options;
    const t0 = performance.now();
    await xc.resume(domid, true);
    await xs.resume(domid);
    logger.debug({ domid, ms: performance.now() - t0 }, 'xen resume');
  }

  saveDeviceModel(): Promise<DeviceModelState | null> {
    return Promise.resolve(null);
  }

  /** libxl's JSON of the domain, read afresh for each stream (a device added since is in it). */
  toolstackConfig(): Promise<string> {
    return domainConfigJson(this.options.domid, this.options.xl);
  }
}
