/**
 * Output commit on a Xen guest's real network, as a checkpoint device: what
 * the guest sends through its vif is held from the checkpoint that follows
 * it until the secondary acked that checkpoint. libxl's scheme (which
 * Debian's libxl is built without): the vif's ingress, which is the guest's
 * output, is redirected to an IFB device by a mirred action, and a plug
 * qdisc on the IFB does the holding. The filter is matchall with protocol
 * all, so ARP and IPv6 are held too, not only IPv4.
 *
 * Per epoch, on the hot path, two rtnetlink requests through the node's
 * co-process (xc.ts), each answered by the kernel's ack, never a `tc`
 * spawn: postsuspend closes the output so far behind a plug ("block"), and
 * commit releases everything before the oldest plug ("release"). The kernel
 * keeps one closed epoch only, so the next block must come after the
 * previous release; the engine's epochs do not overlap, so they do.
 *
 * Setup and teardown (once per protection, not per epoch) run `ip` and `tc`.
 */
import { readFile } from 'node:fs/promises';
import type { OutputCommit } from '../binding.js';
import { XenError, XenErrorCodes as C } from './errors.js';
import { runTool } from './tool.js';
import type { PlugAction } from './xc.js';

/** The plug qdisc's handle on the IFB (1:). */
const PLUG_HANDLE = 0x10000;
/** Bytes the plug holds at most before it drops (the guest's output in one epoch). */
export const DEFAULT_PLUG_LIMIT = 32 * 2 ** 20;
const IFNAME = /^[A-Za-z0-9_.-]{1,15}$/;

export interface NetBufferOptions {
  /** The guest's vif in dom0 (xl names domain D's first one `vifD.0`). */
  vif: string;
  /** The IFB device to create for it (at most 15 characters). */
  ifb: string;
  /** The co-process that sends the plug requests. */
  ops: { plug(ifindex: number, handle: number, action: PlugAction): Promise<void> };
  /** Fenced: stops the guest (Xen: pauses the domain), once its output is shut for good. */
  stopGuest?: () => Promise<void>;
  limitBytes?: number;
  /** Where `ip` and `tc` are (default: on PATH). */
  ip?: string;
  tc?: string;
}

const run = (file: string, args: string[]): Promise<string> => runTool(file, args, C.XEN_NETBUF_FAILED);

export class NetBuffer implements OutputCommit {
  readonly name = 'xen-netbuf';
  private ifindex: number | undefined;
  /** Isolated: nothing held leaves any more, and the plug stays in place at teardown. */
  private sealed = false;

  constructor(private readonly options: NetBufferOptions) {
    for (const n of [options.vif, options.ifb]) if (!IFNAME.test(n)) throw new XenError(C.XEN_NETBUF_FAILED, `not an interface name: ${JSON.stringify(n)}`);
  }

  /** Creates the IFB, its plug and the vif's redirect; output passes freely until the first block. */
  async setup(): Promise<void> {
    if (this.ifindex !== undefined) return;
    const { vif, ifb, ip = 'ip', tc = 'tc' } = this.options;
    const limit = this.options.limitBytes ?? DEFAULT_PLUG_LIMIT;
    // One left by a Tandem that died goes first: deleting its plug drops what it held, never sends it.
    await this.remove();
    await run(ip, ['link', 'add', ifb, 'type', 'ifb']);
    try {
      await run(ip, ['link', 'set', ifb, 'up']);
      await run(tc, ['qdisc', 'add', 'dev', ifb, 'root', 'handle', '1:', 'plug', 'limit', String(limit)]);
      const ifindex = Number((await readFile(`/sys/class/net/${ifb}/ifindex`, 'utf8')).trim());
      // A new plug qdisc holds everything: let output pass until the first checkpoint closes an epoch.
      await this.options.ops.plug(ifindex, PLUG_HANDLE, 'release-all');
      await run(tc, ['qdisc', 'add', 'dev', vif, 'clsact']);
      await run(tc, ['filter', 'add', 'dev', vif, 'ingress', 'protocol', 'all', 'matchall', 'action', 'mirred', 'egress', 'redirect', 'dev', ifb]);
      this.ifindex = ifindex;
    } catch (err) {
      await this.remove();
      throw err;
    }
  }

  /** The guest stopped for a checkpoint: what it sent so far belongs to that checkpoint. */
  async postsuspend(): Promise<void> {
    await this.options.ops.plug(this.index(), PLUG_HANDLE, 'block');
  }

  /** The secondary holds the checkpoint: its output may leave. */
  async commit(): Promise<void> {
    if (this.sealed) return;
    await this.options.ops.plug(this.index(), PLUG_HANDLE, 'release');
  }

  /**
   * Fenced (another node serves the guest) or handing over: what the guest
   * sent since the last release never leaves, nor anything after it, and
   * the guest stops. The plug outlives Tandem: the domain stays cut off.
   */
  async isolate(): Promise<void> {
    this.sealed = true;
    if (this.ifindex !== undefined) await this.options.ops.plug(this.ifindex, PLUG_HANDLE, 'block');
    await this.options.stopGuest?.();
  }

  /** Protection ends: everything held leaves, and the vif's output goes straight out again (unless isolated). */
  async teardown(): Promise<void> {
    if (this.ifindex === undefined || this.sealed) return;
    await this.options.ops.plug(this.ifindex, PLUG_HANDLE, 'release-all').catch(() => undefined);
    await this.remove();
  }

  private index(): number {
    if (this.ifindex === undefined) throw new XenError(C.XEN_NETBUF_FAILED, `the output buffer of ${this.options.vif} is not set up`);
    return this.ifindex;
  }

  private async remove(): Promise<void> {
    const { vif, ifb, ip = 'ip', tc = 'tc' } = this.options;
    this.ifindex = undefined;
    // The redirect first, so the vif's output is never sent to a device that is gone.
    await run(tc, ['qdisc', 'del', 'dev', vif, 'clsact']).catch(() => undefined);
    await run(ip, ['link', 'del', ifb]).catch(() => undefined);
  }
}
