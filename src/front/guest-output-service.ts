/**
 * The primary's service where the guest holds its own output (a Xen guest's
 * vif behind the plug qdisc: src/domain/xen/netbuf.ts): clients reach the
 * guest at its own address, nothing of Tandem's stands between, and the
 * output commit is the guest's checkpoint device. A fenced node isolates
 * the guest: what it holds never leaves, and it stops running.
 */
import { isIPv6, type AddressInfo } from 'node:net';
import type { OutputCommit, PrimaryGuest } from '../domain/binding.js';

export class GuestOutputService {
  constructor(
    private readonly guest: PrimaryGuest,
    readonly device: OutputCommit,
  ) {}

  /** The guest's own service address: it already serves there. */
  async start(): Promise<AddressInfo> {
    const a = await this.guest.serveTcp();
    return { address: a.host, port: a.port, family: isIPv6(a.host) ? 'IPv6' : 'IPv4' };
  }

  /** No front, so no client slots of Tandem's to count. */
  clients(): undefined {
    return undefined;
  }

  /**
   * Fenced, or handing over: the guest must neither serve nor let out what
   * it holds. Standing the secondary down leaves it the only copy: it runs
   * on, and the device's teardown lets its output go.
   */
  async stopFront(why: 'fenced' | 'switchover' | 'stand-down'): Promise<void> {
    if (why !== 'stand-down') await this.device.isolate();
  }

  stop(): Promise<void> {
    return this.guest.stop();
  }
}
