/**
 * The guest's vCPU as the checkpoint sees it: each command the service runs
 * retires on vCPU 0, moving rip to that command's handler and rax to the
 * running command count. So the HVM context in a checkpoint changes as the
 * guest works, and depends only on the command sequence (a COLO pair that
 * ran the same requests has the same registers).
 */
import type { GuestDomain } from './ram.js';

/** Where the sim guest's service "text" starts; each handler gets 256 bytes of it. */
export const GUEST_TEXT_BASE = 0x400000n;
const HANDLER_STRIDE = 0x100n;

export class GuestVcpu {
  constructor(
    private readonly domain: GuestDomain,
    private readonly vcpu = 0,
  ) {}

  retire(handler: number, commands: number): void {
    this.domain.setRegister(this.vcpu, 'rip', GUEST_TEXT_BASE + BigInt(handler) * HANDLER_STRIDE);
    this.domain.setRegister(this.vcpu, 'rax', BigInt(commands));
  }
}
