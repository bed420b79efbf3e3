/**
 * The primary's side of COLO, assembled: the guest behind its virtual NIC,
 * the comparator (Tandem's in-process one, or one over colo-compare's
 * sockets), the net link to the secondary, and the COLO front on the
 * service address. It gives the engine its checkpoint device (the
 * comparator's) and the comparator's checkpoint requests; whether a request
 * starts a checkpoint is the mode controller's call, not this service's.
 */
import type { AddressInfo } from 'node:net';
import { Subject, type Observable } from 'rxjs';

import type { ComparatorAddresses } from '../../proxy/client.js';
import type { Authority } from '../arbiter/arbiter.js';
import type { CheckpointDevice } from '../checkpoint/devices.js';
import type { Trigger } from '../checkpoint/triggers.js';
import type { ColoConfig } from '../config/config.js';
import type { PrimaryGuest } from '../domain/binding.js';
import { ErrorCodes, TandemError } from '../errors.js';
import type { ClientLimitOptions, FrontClientStats } from '../front/client-limits.js';
import { ColoFront, CLIENT_ENDPOINT } from '../front/colo-front.js';
import type { Transport } from '../transport/transport.js';
import type { Address } from '../util/address.js';
import type { Logger } from '../util/logger.js';
import { ComparatorDevice } from './comparator-device.js';
import { InProcessComparator, SocketComparator, type FrameComparator } from './comparators.js';
import { NetLinkPrimary } from './net-link.js';

export interface ColoPrimaryOptions {
  guest: PrimaryGuest;
  colo: ColoConfig;
  transport: Transport;
  /** The secondary's net link. */
  net: Address;
  service: Address;
  /** The front's client slots: max_clients and when an idle client gives its up. */
  clients: ClientLimitOptions;
  logger: Logger;
  /** A comparator over its sockets (QEMU's colo-compare, `tandem proxy`) instead of Tandem's in-process one. */
  external?: ComparatorAddresses;
  /** May output no replica vouches for leave now? (the arbiter's lease; default: always) */
  authority?: Authority;
}

export class ColoPrimaryService {
  private readonly requests = new Subject<Trigger>();
  readonly device: CheckpointDevice;
  private readonly comparator: FrameComparator;
  private readonly link: NetLinkPrimary;
  /** Made at start(), once the guest's NIC (and so its address) exists. */
  private front: ColoFront | undefined = undefined;
  private readonly comparatorDevice: ComparatorDevice;

  constructor(private readonly options: ColoPrimaryOptions) {
    const { colo, logger } = options;
    this.comparator =
      options.external !== undefined
        ? new SocketComparator(options.external, logger)
        : new InProcessComparator({ compareTimeoutMs: colo.compareTimeoutMs, expiredScanCycleMs: colo.expiredScanCycleMs, maxQueueSize: colo.maxQueueSize }, logger);
    this.link = new NetLinkPrimary({ transport: options.transport, secondary: options.net, toComparator: (f) => this.comparator.pushSecondary(f), logger });
    let dropped = 0;
    this.comparatorDevice = new ComparatorDevice({
      comparator: this.comparator,
      link: this.link,
      release: (f) => this.front?.release(f),
      authority: options.authority,
      onDropped: () => {
        // The first, then every 1000th: a partition can last.
        if (dropped++ % 1000 === 0) logger.error({ dropped }, 'no authority to serve (arbiter lease not live): guest frames no replica vouches for are dropped');
      },
    });
    this.device = this.comparatorDevice;
  }

  /** Every checkpoint request of the comparator, as it made it (the mode controller decides which start a checkpoint). */
  get checkpointRequests$(): Observable<Trigger> {
    return this.requests;
  }

  /** Starts the guest behind its NIC and opens the front; the net link connects with each protection session. */
  async start(): Promise<AddressInfo> {
    const { guest, logger, service } = this.options;
    if (guest.attachNic === undefined) throw new TandemError(ErrorCodes.DOMAIN_UNSUPPORTED, 'COLO needs a guest with a virtual NIC Tandem can drive; this domain type has none');
    const nic = guest.attachNic((f) => {
      // The front counts what the primary sends a client as owed to it until the comparator releases it.
      this.front?.produced(f);
      this.comparatorDevice.transmit(f);
    });
    const front = new ColoFront({
      guest: nic.endpoint,
      client: CLIENT_ENDPOINT,
      toGuests: (f) => {
        nic.receive(f);
        this.link.send(f);
      },
      host: service.host,
      port: service.port,
      ...this.options.clients,
      logger,
    });
    this.front = front;
    this.comparator.onRelease((f) => this.comparatorDevice.deliver(f));
    this.comparator.onCheckpoint((request) => {
      logger.info({ reason: request.reason, flow: request.flow, detail: request.detail }, `divergence: ${request.flow}: ${request.reason}`);
      this.requests.next({ reason: 'divergence', request });
    });
    this.link.on('close', () => logger.warn('COLO net link to the secondary closed'));
    // The secondary takes the mirrored requests slower than clients send them: hold the clients, not the bytes.
    this.link.on('congested', () => {
      logger.warn('COLO net link congested: client requests held until the secondary catches up');
      front.hold();
    });
    this.link.on('drain', () => front.unhold());
    await this.comparator.start();
    return front.start();
  }

  /** The front's client slots (undefined before start). */
  clients(): FrontClientStats | undefined {
    return this.front?.clientStats();
  }

  /** Closes the client-facing side at once: no held output may leave (fenced). */
  async stopFront(): Promise<void> {
    await this.front?.stop();
  }

  async stop(): Promise<void> {
    await this.front?.stop();
    this.comparator.close();
    this.link.stop();
    this.requests.complete();
  }
}
