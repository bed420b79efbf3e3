/**
 * The comparator the COLO controller works with, wherever it runs: Tandem's
 * own in-process (ColoComparator), or any comparator reached over colo-compare's
 * four sockets and notify protocol — QEMU's colo-compare, or a standalone
 * `tandem proxy`. The controller needs only this much of either.
 */
import type { CheckpointRequest } from '../../proxy/compare.js';
import { ComparatorClient, type ComparatorAddresses } from '../../proxy/client.js';
import { NotifyWords } from '../../proxy/notify.js';
import { ColoComparator, type ColoComparatorOptions } from '../../proxy/colo-comparator.js';
import type { Logger } from '../util/logger.js';

export interface FrameComparator {
  /** Ready to compare (sockets connected and the notify handshake done, for an external one). */
  start(): Promise<void>;
  close(): void;
  pushPrimary(frame: Buffer): void;
  pushSecondary(frame: Buffer): void;
  /**
   * A checkpoint was taken: held primary frames leave, held secondary frames
   * are dropped. Resolves once the comparator has done so, so no frame sent
   * after it can be swept up in that flush.
   */
  checkpointDone(): void | Promise<void>;
  /** Primary frames it lets out, in order. */
  onRelease(fn: (frame: Buffer) => void): void;
  onCheckpoint(fn: (req: CheckpointRequest) => void): void;
}

/** How long a socket comparator may take to confirm a checkpoint flush. */
const CONFIRM_TIMEOUT_MS = 2000;

/** Tandem's comparator, in this process. */
export class InProcessComparator implements FrameComparator {
  private readonly comparator: ColoComparator;

  constructor(
    options: ColoComparatorOptions,
    private readonly logger?: Logger,
  ) {
    this.comparator = new ColoComparator(options);
  }

  start(): Promise<void> {
    this.comparator.on('malformed', (side, err) => this.logger?.warn({ side, code: err.code }, `comparator: malformed ${side} frame passed uncompared: ${err.message}`));
    this.comparator.start();
    return Promise.resolve();
  }

  close(): void {
    this.comparator.close();
  }

  pushPrimary(frame: Buffer): void {
    this.comparator.pushPrimary(frame);
  }

  pushSecondary(frame: Buffer): void {
    this.comparator.pushSecondary(frame);
  }

  checkpointDone(): void {
    this.comparator.checkpointDone();
  }

  onRelease(fn: (frame: Buffer) => void): void {
    this.comparator.on('release', (f) => fn(f.data));
  }

  onCheckpoint(fn: (req: CheckpointRequest) => void): void {
    this.comparator.on('checkpoint', fn);
  }
}

/**
 * A comparator over its sockets (QEMU colo-compare: `primary_in`,
 * `secondary_in`, `outdev`, `notify_dev`). It says only DO_CHECKPOINT, not
 * which connection or why, so requests name the comparator.
 */
export class SocketComparator implements FrameComparator {
  private readonly client: ComparatorClient;

  constructor(
    readonly addresses: ComparatorAddresses,
    private readonly logger?: Logger,
  ) {
    this.client = new ComparatorClient(addresses);
  }

  async start(): Promise<void> {
    this.client.on('error', (err) => this.logger?.error({ err }, `comparator at ${this.describe()}: ${err.message}`));
    await this.client.start();
    // COLO_USERSPACE_PROXY_INIT -> COLO_COMPARE_GET_XEN_INIT: it is there and speaks the protocol.
    await this.client.init();
    // It releases nothing to outdev before it has taken that socket in; wait until it does.
    await this.client.ready();
  }

  close(): void {
    this.client.stop();
  }

  pushPrimary(frame: Buffer): void {
    this.client.sendPrimary(frame);
  }

  pushSecondary(frame: Buffer): void {
    this.client.sendSecondary(frame);
  }

  async checkpointDone(): Promise<void> {
    this.client.sendNotify(NotifyWords.CHECKPOINT_DONE);
    // COLO_CHECKPOINT has no reply, and frames travel other sockets: a frame
    // of the resumed guest could be read before the flush and released
    // uncompared with the old epoch's. An init round trip on the same
    // socket tells us the comparator has handled everything sent before it.
    let timer: NodeJS.Timeout | undefined;
    const confirmed = await Promise.race([
      this.client.init().then(() => true),
      new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), CONFIRM_TIMEOUT_MS))),
    ]);
    clearTimeout(timer);
    if (!confirmed) this.logger?.error(`comparator at ${this.describe()} did not confirm COLO_CHECKPOINT within ${CONFIRM_TIMEOUT_MS} ms; is it still there?`);
  }

  onRelease(fn: (frame: Buffer) => void): void {
    this.client.on('frame', (f) => fn(f.data));
  }

  onCheckpoint(fn: (req: CheckpointRequest) => void): void {
    this.client.on('notify', (w) => {
      if (w === NotifyWords.DO_CHECKPOINT) fn({ reason: 'mismatch', flow: `comparator ${this.describe()}`, detail: 'DO_CHECKPOINT' });
    });
  }

  private describe(): string {
    const n = this.addresses.notify;
    return `${n.host}:${n.port}`;
  }
}
