/**
 * The primary's side of COLO, assembled: the guest with its virtual NIC,
 * the comparator (in-process ColoProxy), the net link to the secondary, and
 * the COLO front on the service address. The engine gets its checkpoint
 * devices (the comparator, the disk mirror) and its divergence requests
 * from here; it knows nothing else of COLO.
 */
import type { AddressInfo } from 'node:net';
import { Subject, share, tap, type Observable } from 'rxjs';

import type { ComparatorAddresses } from '../../proxy/client.js';
import type { CheckpointDevice } from '../checkpoint/devices.js';
import { DEFAULT_HYBRID, hybridPolicy, type HybridOptions, type ModeSwitch, type ReplicationMode } from '../checkpoint/hybrid.js';
import type { Trigger } from '../checkpoint/triggers.js';
import type { ColoConfig } from '../config/config.js';
import { DiskMirror } from '../disk/mirror.js';
import type { SimDisk } from '../disk/sim-disk.js';
import type { SimDomain } from '../domain/sim.js';
import { ColoFront } from '../front/colo-front.js';
import { CLIENT_ENDPOINT, GUEST_ENDPOINT, installGuest } from '../guest/machine.js';
import type { GuestNetStack } from '../guest/net/stack.js';
import type { Address } from '../util/address.js';
import type { Logger } from '../util/logger.js';
import { ComparatorDevice } from './comparator-device.js';
import { InProcessComparator, SocketComparator, type FrameComparator } from './comparators.js';
import { NetLinkPrimary } from './net-link.js';

export interface ColoPrimaryOptions {
  domain: SimDomain;
  disk: SimDisk;
  colo: ColoConfig;
  /** The secondary's net link. */
  net: Address;
  service: Address;
  maxClients: number;
  logger: Logger;
  hybrid?: HybridOptions;
  /** A comparator over its sockets (QEMU's colo-compare, `tandem proxy`) instead of Tandem's in-process one. */
  external?: ComparatorAddresses;
}

export class ColoPrimaryService {
  /** Checkpoint requests from the comparator, for the engine's divergence trigger (none while the hybrid policy is in Remus). */
  readonly divergence$ = new Subject<Trigger>();
  /** Every divergence the comparator reports, whatever the mode: what the hybrid policy watches. */
  private readonly observed$ = new Subject<Trigger>();
  /**
   * The hybrid policy's switches: to Remus while divergences come too often
   * (periodic checkpoints; mismatched output waits for the next one), back
   * to COLO once they calm down.
   */
  readonly modeSwitches$: Observable<ModeSwitch>;
  private mode: ReplicationMode = 'colo';
  readonly devices: CheckpointDevice[];
  private readonly proxy: FrameComparator;
  private readonly link: NetLinkPrimary;
  private readonly front: ColoFront;
  private readonly comparator: ComparatorDevice;
  private net: GuestNetStack | undefined = undefined;

  constructor(private readonly options: ColoPrimaryOptions) {
    const { colo, logger, domain } = options;
    this.proxy =
      options.external !== undefined
        ? new SocketComparator(options.external, logger)
        : new InProcessComparator({ compareTimeoutMs: colo.compareTimeoutMs, expiredScanCycleMs: colo.expiredScanCycleMs, maxQueueSize: colo.maxQueueSize }, logger);
    this.link = new NetLinkPrimary({ host: options.net.host, port: options.net.port, toComparator: (f) => this.proxy.pushSecondary(f), logger });
    this.front = new ColoFront({
      guest: GUEST_ENDPOINT,
      client: CLIENT_ENDPOINT,
      toGuests: (f) => {
        domain.run(() => this.net?.receive(f));
        this.link.send(f);
      },
      host: options.service.host,
      port: options.service.port,
      maxConnections: options.maxClients,
      logger,
    });
    this.comparator = new ComparatorDevice({ proxy: this.proxy, link: this.link, release: (f) => this.front.release(f) });
    this.devices = [this.comparator, new DiskMirror({ disk: options.disk })];
    this.modeSwitches$ = hybridPolicy(this.observed$, options.hybrid ?? DEFAULT_HYBRID).pipe(
      tap((m) => (this.mode = m.mode)),
      share(),
    );
  }

  /** Installs the guest (store, file, NIC) and opens the front; the net link connects with each protection session. */
  async start(): Promise<AddressInfo> {
    const { domain, disk, logger } = this.options;
    this.net = installGuest(domain, disk, { nic: { transmit: (f) => this.comparator.transmit(f) } }).net;
    this.proxy.onRelease((f) => this.front.release(f));
    this.proxy.onCheckpoint((req) => {
      logger.info({ reason: req.reason, flow: req.flow, detail: req.detail }, `divergence: ${req.flow}: ${req.reason}`);
      const t: Trigger = { reason: 'divergence', detail: `${req.flow}: ${req.reason}` };
      this.observed$.next(t);
      if (this.mode === 'colo') this.divergence$.next(t);
    });
    this.link.on('close', () => logger.warn('COLO net link to the secondary closed'));
    // The secondary takes the mirrored requests slower than clients send them: hold the clients, not the bytes.
    this.link.on('congested', () => {
      logger.warn('COLO net link congested: client requests held until the secondary catches up');
      this.front.hold();
    });
    this.link.on('drain', () => this.front.unhold());
    await this.proxy.start();
    return this.front.start();
  }

  async stop(): Promise<void> {
    await this.front.stop();
    this.proxy.close();
    this.link.stop();
  }
}
