/**
 * The Xen binding (`domain.type: xen`): a running Xen domain on this host.
 *
 * - Primary: the domain is found by name or id and opened (XenDomain:
 *   xenstore suspend, fast resume, Xen's own save helper for its memory);
 *   its vif's output is held by a plug qdisc until each epoch is acked
 *   (NetBuffer), so clients reach the guest at its own address and no front
 *   of Tandem's stands between.
 * - Secondary: Xen's own restore (`xl migrate-receive -r -e`) takes each
 *   whole epoch (src/secondary/restore-intake.ts decides what is whole);
 *   promotion ends its input at the last checkpoint, so Xen builds the domain
 *   from it, plugs its vif into this host's bridge and runs it.
 *
 * Nothing here runs unless the configuration names a Xen domain: the sim
 * needs none of Xen's tools.
 */
import { isIPv6 } from 'node:net';
import type { DomainBinding, EpochRestore, PrimaryGuest, PromotedGuest, PromoteOptions, RestoreReplicaGuest } from '../binding.js';
import { ErrorCodes, TandemError } from '../../errors.js';
import { formatAddress, type Address } from '../../util/address.js';
import { canConnect } from '../../util/net.js';
import type { Logger } from '../../util/logger.js';
import { XenDomain } from './domain.js';
import { XenError, XenErrorCodes as C } from './errors.js';
import { NetBuffer } from './netbuf.js';
import { XenRestore } from './restore.js';
import { DEFAULT_XL, runTool } from './tool.js';
import { XcOps } from './xc.js';
import { XenstoreClient } from './xenstore.js';

export interface XenBindingOptions {
  /** The domain to protect (primary): its name or domid. */
  name?: string;
  /** Where the guest's own service answers. */
  service: Address;
  vif?: string;
  ifb?: string;
  xl?: string;
  failoverTimeoutMs: number;
  /** The guest's bound to acknowledge a suspend request, and then to suspend. */
  suspendTimeoutMs: number;
}

/** How often a failover waiting for a same-named domain to go asks again. */
const NAME_POLL_MS = 200;

/** Largest domid of a domain (DOMID_FIRST_RESERVED - 1). */
const MAX_DOMID = 0x7fef;

export class XenBinding implements DomainBinding {
  readonly type = 'xen';

  constructor(private readonly options: XenBindingOptions) {}

  async primary(logger: Logger): Promise<PrimaryGuest> {
    const { name, service, xl = DEFAULT_XL } = this.options;
    if (name === undefined) throw new TandemError(ErrorCodes.CONFIG_INVALID, 'domain.name: say which Xen domain to protect (its name or id)');
    const domid = /^\d+$/.test(name) ? Number(name) : Number((await runTool(xl, ['domid', name], C.XEN_NO_DOMAIN)).trim());
    if (!Number.isInteger(domid) || domid < 1 || domid > MAX_DOMID) throw new XenError(C.XEN_NO_DOMAIN, `no guest domain ${JSON.stringify(name)} (domid ${domid}; dom0 is not protected)`);
    const xs = await XenstoreClient.connect();
    let xc: XcOps | undefined;
    try {
      xc = await XcOps.start();
      const { suspendTimeoutMs } = this.options;
      const domain = await XenDomain.open({ domid, xs, xc, logger, xl, suspend: { ackTimeoutMs: suspendTimeoutMs, suspendTimeoutMs } });
      const ops = xc;
      const netbuf = new NetBuffer({ vif: this.options.vif ?? `vif${domid}.0`, ifb: this.options.ifb ?? `tdm${domid}`, ops, stopGuest: () => ops.pause(domid) });
      logger.info({ domid, service: formatAddress(service) }, `Xen domain ${name} (domid ${domid}): its output held at ${this.options.vif ?? `vif${domid}.0`}, its service at ${formatAddress(service)}`);
      return new XenPrimaryGuest(domain, netbuf, service, async () => {
        await ops.stop();
        xs.close();
      });
    } catch (err) {
      await xc?.stop().catch(() => undefined);
      xs.close();
      throw err;
    }
  }

  replica(logger: Logger): XenReplicaGuest {
    return new XenReplicaGuest(this.options, logger);
  }
}

class XenPrimaryGuest implements PrimaryGuest {
  readonly disks = [];

  constructor(
    readonly domain: XenDomain,
    readonly outputCommit: NetBuffer,
    private readonly service: Address,
    private readonly close: () => Promise<void>,
  ) {}

  /** The guest serves on its own; this is where. */
  serveTcp(): Promise<Address> {
    return Promise.resolve(this.service);
  }

  /** Tandem lets go of the domain; the domain itself runs on (a fenced one was paused by isolate()). */
  stop(): Promise<void> {
    return this.close();
  }
}

export class XenReplicaGuest implements RestoreReplicaGuest {
  readonly disks = [];
  readonly restore: EpochRestore = {
    open: (config) => this.open(config),
    give: (chunks) => this.current().give(chunks),
    close: () => this.close(),
  };
  private restoring: { xen: XenRestore; name: string } | undefined;
  private promoted = false;

  constructor(
    private readonly options: XenBindingOptions,
    private readonly logger: Logger,
  ) {}

  private async open(config: { json: string; name: string }): Promise<void> {
    await this.close();
    const xl = this.options.xl ?? DEFAULT_XL;
    // Left by a restore whose Tandem died (its receiver was killed with it): paused, half-built, never run.
    await runTool(xl, ['destroy', `${config.name}--incoming`], C.XEN_RESTORE_FAILED).then(
      () => this.logger.warn(`destroyed ${config.name}--incoming, a restore left by an earlier run`),
      () => undefined,
    );
    this.restoring = { xen: new XenRestore({ xl, configJson: config.json, failoverTimeoutMs: this.options.failoverTimeoutMs }), name: config.name };
    this.logger.info({ xenDomain: config.name }, `Xen's restore of ${config.name} started (xl migrate-receive -r -e): the domain is built paused as ${config.name}--incoming`);
  }

  private current(): XenRestore {
    if (this.restoring === undefined) throw new XenError(C.XEN_RESTORE_FAILED, 'no restore is open: the stream gave no domain config');
    return this.restoring.xen;
  }

  private async close(): Promise<void> {
    const r = this.restoring;
    this.restoring = undefined;
    if (r !== undefined) await r.xen.abort(r.name);
  }

  async promote(_options: PromoteOptions): Promise<PromotedGuest> {
    const r = this.restoring;
    if (r === undefined) throw new XenError(C.XEN_RESTORE_FAILED, 'nothing to fail over to: no restore is open');
    const xl = this.options.xl ?? DEFAULT_XL;
    const { service, failoverTimeoutMs } = this.options;
    const started = performance.now();
    await this.waitForNameFree(xl, r.name, started + failoverTimeoutMs);
    this.promoted = true;
    await r.xen.failover();
    await waitForService(service, failoverTimeoutMs - (performance.now() - started));
    this.logger.warn(`Xen built ${r.name} from the last checkpoint and runs it; its service answers at ${formatAddress(service)}`);
    return { service: { address: service.host, port: service.port, family: isIPv6(service.host) ? 'IPv6' : 'IPv4' } };
  }

  /**
   * Xen renames NAME--incoming to NAME at the end of the failover, so a
   * domain of that name here is the primary's own (one host, as `xl remus
   * localhost` runs): never run beside it. One being destroyed (the primary
   * died with its domain, and `xl destroy` has not finished, which on a
   * busy host outlasts the heartbeat timeout) is waited for, within the
   * failover's bound; one still there then refuses the failover.
   */
  private async waitForNameFree(xl: string, name: string, deadline: number): Promise<void> {
    let said = false;
    for (;;) {
      const domid = await runTool(xl, ['domid', name], C.XEN_RESTORE_FAILED).then(
        (out) => out.trim(),
        () => undefined,
      );
      if (domid === undefined) return;
      if (performance.now() >= deadline) throw new XenError(C.XEN_RESTORE_FAILED, `a domain named ${name} (domid ${domid}) is still on this host after ${this.options.failoverTimeoutMs} ms: not failing over beside it`);
      if (!said) this.logger.warn({ xenDomain: name, domid }, `a domain named ${name} (domid ${domid}) is still on this host: waiting for it to go (being destroyed?) before failing over, up to ${this.options.failoverTimeoutMs} ms`);
      said = true;
      await new Promise((r) => setTimeout(r, NAME_POLL_MS));
    }
  }

  async stop(): Promise<void> {
    // A promoted domain is the guest now: it runs on. Otherwise the restore goes, with its paused domain.
    if (!this.promoted) await this.close();
  }
}

/** Resolves once `service` accepts a TCP connection (the guest's network is up), within `ms`. */
async function waitForService(service: Address, ms: number): Promise<void> {
  const deadline = performance.now() + Math.max(0, ms);
  for (;;) {
    const ok = await canConnect(service.host, service.port);
    if (ok) return;
    if (performance.now() > deadline) throw new XenError(C.XEN_RESTORE_FAILED, `the failed-over guest's service at ${formatAddress(service)} did not answer in time`);
    await new Promise((r) => setTimeout(r, 200));
  }
}
