/**
 * The secondary's side of COLO, assembled: the replica's running guest (the
 * binding's) and the net link that feeds it the client frames the primary
 * mirrors and carries its output back to the comparator. It gives the
 * secondary server the checkpoint hooks, with the net link kept in step:
 * what the guest sent before a suspend leaves ahead of SVM_SUSPENDED, and a
 * marker precedes everything it sends after a resume (net-link.ts).
 */
import type { ColoReplicaGuest, ReplicaGuest } from '../domain/binding.js';
import { ErrorCodes, TandemError } from '../errors.js';
import type { ColoReplicaHooks } from '../secondary/server.js';
import type { Transport } from '../transport/transport.js';
import type { Address } from '../util/address.js';
import type { Logger } from '../util/logger.js';
import { NetLinkSecondary } from './net-link.js';

export interface ColoSecondaryOptions {
  /** The replica: paused until the first checkpoint gives its guest something to run. */
  replica: ReplicaGuest;
  transport: Transport;
  /** Where the net link listens for the primary. */
  net: Address;
  logger: Logger;
}

export class ColoSecondary implements ColoReplicaHooks {
  private readonly link: NetLinkSecondary;
  private readonly guest: ColoReplicaGuest;

  constructor(options: ColoSecondaryOptions) {
    const { replica, transport, net, logger } = options;
    if (replica.runColo === undefined) throw new TandemError(ErrorCodes.DOMAIN_UNSUPPORTED, 'COLO needs a replica that can run the guest between checkpoints; this domain type cannot');
    this.link = new NetLinkSecondary({ transport, listen: net, toGuest: (f) => this.guest.deliver(f), logger });
    this.guest = replica.runColo((f) => this.link.send(f));
  }

  /** Listens for the primary's end of the net link. */
  start(): Promise<Address> {
    return this.link.start();
  }

  suspend(): Uint32Array {
    const pfns = this.guest.suspend();
    // What the guest sent before the pause goes to the comparator ahead of SVM_SUSPENDED.
    this.link.flush();
    return pfns;
  }

  pause(): void {
    this.guest.pause();
    // Its last output still goes out: it was produced from a checkpoint the primary committed.
    this.link.flush();
  }

  resume(epoch: number): void {
    // Before the guest can send anything: what follows is from this checkpoint on.
    this.link.resumed(epoch);
    this.guest.resume(epoch);
  }

  /**
   * Failover (the promoter's 'promoting' hook): COLO goes on from the
   * secondary guest's own run, so no more mirrored frames reach it and its
   * disk writes since the last checkpoint are kept.
   */
  takeOver(): void {
    // stop() destroys the connection at once; only the listener's close is awaited.
    this.link.stop().catch(() => {});
    this.guest.takeOver();
  }

  async stop(): Promise<void> {
    await this.link.stop();
  }
}
