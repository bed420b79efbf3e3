/**
 * The primary's service in Remus mode (or unprotected): the guest's own
 * service on its internal address, and the service front on the service
 * address, whose output buffer holds every reply until the epoch that
 * covers it is acked (output commit). The output buffer is the engine's
 * checkpoint device.
 */
import type { AddressInfo } from 'node:net';
import { Subject, type Observable } from 'rxjs';
import type { Authority } from '../arbiter/arbiter.js';
import type { CheckpointDevice } from '../checkpoint/devices.js';
import type { PrimaryGuest } from '../domain/binding.js';
import type { Address } from '../util/address.js';
import type { Logger } from '../util/logger.js';
import type { ClientLimitOptions, FrontClientStats } from './client-limits.js';
import { OutputBuffer, type OutputMode, type TeardownPolicy } from './output-buffer.js';
import { ServiceFront } from './service-front.js';

export interface RemusServiceOptions {
  guest: PrimaryGuest;
  /** remus: hold output per epoch; none: pass it straight through (unprotected). */
  mode: OutputMode;
  service: Address;
  /** When the standby is lost: release held output, hold it, or drop it. */
  onUnprotected: TeardownPolicy;
  maxHeldBytes: number;
  /** The front's client slots: max_clients and when an idle client gives its up. */
  clients: ClientLimitOptions;
  logger: Logger;
  /** May output no replica holds be released now? (the arbiter's lease; default: always) */
  authority?: Authority;
}

export class RemusService {
  readonly device: CheckpointDevice;
  private readonly output: OutputBuffer;
  private front: ServiceFront | undefined = undefined;
  private readonly waiting$ = new Subject<number>();

  constructor(private readonly options: RemusServiceOptions) {
    const waiting$ = this.waiting$;
    this.output = new OutputBuffer({
      mode: options.mode,
      teardownPolicy: options.onUnprotected,
      maxHeldBytes: options.maxHeldBytes,
      logger: options.logger,
      authority: options.authority,
      onWaiting: (tag) => waiting$.next(tag),
    });
    this.device = this.output;
  }

  /** Output began waiting for epoch N (once per epoch): the engine's output policy starts N at once. */
  get outputWaiting$(): Observable<number> {
    return this.waiting$;
  }

  /** The authority came back: what waited for it goes. */
  private readonly onAuthority = (e: { valid: boolean }): void => {
    if (e.valid) this.output.authorityRestored();
  };

  /** Starts the guest's service, then the front that clients reach it through. */
  async start(): Promise<AddressInfo> {
    const { guest, service, clients, logger } = this.options;
    this.options.authority?.on('authority', this.onAuthority);
    const internal = await guest.serveTcp();
    this.front = new ServiceFront({ buffer: this.output, guest: internal, host: service.host, port: service.port, ...clients, logger });
    return this.front.start();
  }

  /** Output held until an epoch covering it is acked, bytes. */
  heldBytes(): number {
    return this.output.stats().heldBytes;
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
    this.options.authority?.off('authority', this.onAuthority);
    this.waiting$.complete();
    await this.front?.stop();
    await this.options.guest.stop();
  }
}
