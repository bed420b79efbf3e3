/**
 * Drives a standalone comparator (Tandem's ProxyServer or QEMU's
 * colo-compare) through its four sockets with a scripted scenario and
 * records, phase by phase, which frames it released and whether it asked
 * for a checkpoint.
 *
 * Sockets are independent streams, so "everything sent so far has been
 * processed" needs proof. A phase ends with a barrier: a UDP probe sent on
 * the secondary input, then its identical twin on the primary input, on a
 * flow of its own. The twin comes out of outdev only after both were read,
 * and so after everything sent before them on either input. A notify round
 * trip (PROXY_INIT -> its reply) then proves that every DO_CHECKPOINT sent
 * before it has arrived: both comparators answer on the same notify stream.
 * The same round trip follows every COLO_CHECKPOINT, so no frame sent after
 * it can overtake it.
 */
import { ComparatorClient, READY_PROBE, type ComparatorAddresses } from '../../proxy/client.js';
import { arp, udp } from '../../proxy/craft.js';
import type { Frame } from '../../proxy/framing.js';
import { NotifyWords, type NotifyWord } from '../../proxy/notify.js';

export type Step =
  | { p: Buffer[] }
  | { s: Buffer[] }
  /** Wait until every primary frame sent so far has been read (an ARP frame released uncompared). */
  | 'sync-primary'
  /** Send COLO_CHECKPOINT and wait until the comparator has handled it. */
  | 'checkpoint'
  /** Wait (event-driven) for a DO_CHECKPOINT the phase has not seen yet: a timeout. */
  | 'await-request'
  /** End the phase: full barrier, then record. */
  | 'end'
  /** Run a check of the caller's (e.g. on the comparator's own state). */
  | { call: () => void | Promise<void> };

export interface PhaseResult {
  /** Labels of the frames released in this phase, in outdev order. */
  released: string[];
  /** DO_CHECKPOINT messages received in this phase. */
  requests: number;
}

/** Upper bound for any single wait; only reached when a comparator is broken. */
const WAIT_CAP_MS = 60_000;

function waitFor<T>(what: string, start: (done: (v: T) => void) => () => void): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let cleanup = (): void => {};
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`gave up after ${WAIT_CAP_MS} ms waiting for ${what}`));
    }, WAIT_CAP_MS);
    cleanup = start((v) => {
      clearTimeout(timer);
      cleanup();
      resolve(v);
    });
  });
}

export class ScenarioDriver {
  readonly client: ComparatorClient;
  private readonly labels = new Map<string, string>();
  private released: string[] = [];
  private requests = 0;
  private barrier = 0;
  private readonly vnetHdrLen: number;

  private readonly name: string;

  constructor(addresses: ComparatorAddresses, options: { vnetHdr?: boolean; vnetHdrLen?: number; name?: string } = {}) {
    this.name = options.name ?? 'comparator';
    this.client = new ComparatorClient(addresses, options.vnetHdr ?? false);
    this.vnetHdrLen = options.vnetHdrLen ?? 0;
  }

  /** Names a frame for the results (its bytes as released, vnet header included). */
  label(frame: Buffer, name: string): Buffer {
    this.labels.set(frame.toString('hex'), name);
    return frame;
  }

  async start(): Promise<void> {
    await this.client.start();
    this.client.on('frame', (f: Frame) => this.onFrame(f));
    this.client.on('notify', (w: NotifyWord) => {
      if (w === NotifyWords.DO_CHECKPOINT) this.requests++;
    });
    await this.client.init();
    await this.client.ready();
  }

  stop(): void {
    this.client.stop();
  }

  private onFrame(f: Frame): void {
    const name = this.labels.get(f.data.toString('hex'));
    if (f.data.equals(READY_PROBE) || name?.startsWith('#')) return; // barriers and probes
    this.released.push(name ?? `?${f.data.toString('hex')}`);
  }

  /** Runs the steps; returns one result per 'end'. */
  async run(steps: Step[]): Promise<PhaseResult[]> {
    const results: PhaseResult[] = [];
    for (const step of steps) {
      if (step === 'sync-primary') await this.syncPrimary();
      else if (step === 'checkpoint') {
        // The notify socket is read independently of the inputs: a frame sent
        // next could be read before COLO_CHECKPOINT and be flushed with the
        // held ones. The INIT round trip behind it proves it was handled.
        this.client.sendNotify(NotifyWords.CHECKPOINT_DONE);
        await this.client.init();
      }
      else if (step === 'await-request') await this.awaitRequest();
      else if (step === 'end') {
        await this.fullBarrier();
        results.push({ released: this.released, requests: this.requests });
        this.released = [];
        this.requests = 0;
      } else if ('call' in step) await step.call();
      else if ('p' in step) this.client.sendPrimary(step.p, this.vnetHdrLen);
      else this.client.sendSecondary(step.s, this.vnetHdrLen);
    }
    return results;
  }

  private vnet(frame: Buffer): Buffer {
    return this.vnetHdrLen === 0 ? frame : Buffer.concat([Buffer.alloc(this.vnetHdrLen), frame]);
  }

  private async syncPrimary(): Promise<void> {
    const n = ++this.barrier;
    const frame = this.label(this.vnet(arp(`198.18.${n >> 8}.${n & 255}`)), `#arp${n}`);
    const seen = waitFor<void>(`${this.name}: primary barrier ${n}`, (done) => {
      const on = (f: Frame): void => void (f.data.equals(frame) && done());
      this.client.on('frame', on);
      return () => this.client.off('frame', on);
    });
    this.client.sendPrimary(frame, this.vnetHdrLen);
    await seen;
  }

  private async fullBarrier(): Promise<void> {
    const n = ++this.barrier;
    const probe = udp({ src: '198.19.0.1', dst: '198.19.0.2', sport: 1 + (n % 60000), dport: 9, payload: Buffer.from(`barrier ${n}`) });
    const released = this.label(this.vnet(probe), `#probe${n}`);
    const seen = waitFor<void>(`${this.name}: barrier ${n} (released so far: ${JSON.stringify(this.released)})`, (done) => {
      const on = (f: Frame): void => void (f.data.equals(released) && done());
      this.client.on('frame', on);
      return () => this.client.off('frame', on);
    });
    this.client.sendSecondary(this.vnet(probe), this.vnetHdrLen);
    this.client.sendPrimary(this.vnet(probe), this.vnetHdrLen);
    await seen;
    await this.client.init();
  }

  private async awaitRequest(): Promise<void> {
    if (this.requests > 0) return;
    await waitFor<void>(`${this.name}: a DO_CHECKPOINT`, (done) => {
      const on = (w: NotifyWord): void => void (w === NotifyWords.DO_CHECKPOINT && done());
      this.client.on('notify', on);
      return () => this.client.off('notify', on);
    });
  }
}
