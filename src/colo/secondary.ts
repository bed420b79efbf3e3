/**
 * The secondary's side of COLO, assembled: the replica's running guest and
 * the net link that feeds it the client frames the primary mirrors (and
 * carries its output back). The secondary server gets the guest's
 * checkpoint hooks from here; the promoter's 'promoting' event calls
 * takeOver(). `tandem secondary --mode colo` and the tests build it the
 * same way.
 */
import type { AddressInfo } from 'node:net';

import type { SimDisk } from '../disk/sim-disk.js';
import type { SimDomain } from '../domain/sim.js';
import type { Address } from '../util/address.js';
import type { Logger } from '../util/logger.js';
import { NetLinkSecondary } from './net-link.js';
import { SecondaryGuest } from './secondary-guest.js';

export interface ColoSecondaryOptions {
  /** The replica: paused until the first checkpoint gives its guest something to run. */
  replica: SimDomain;
  disk: SimDisk;
  /** Where the net link listens for the primary. */
  net: Address;
  logger: Logger;
}

export class ColoSecondary {
  /** The replica's running guest: the secondary server's `colo` hooks. */
  readonly guest: SecondaryGuest;
  private readonly link: NetLinkSecondary;

  constructor(options: ColoSecondaryOptions) {
    const { replica, disk, net, logger } = options;
    this.link = new NetLinkSecondary({ host: net.host, port: net.port, toGuest: (f) => this.guest.deliver(f), logger });
    this.guest = new SecondaryGuest({ replica, disk, link: this.link });
  }

  /** Listens for the primary's end of the net link. */
  start(): Promise<AddressInfo> {
    return this.link.start();
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
