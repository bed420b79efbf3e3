/**
 * The other end of a standalone comparator's four sockets (Tandem's
 * `tandem proxy` or QEMU's colo-compare): feeds primary and secondary
 * frames, reads released frames from outdev, and speaks the notify
 * protocol as the controller. The tests and the benchmark drive both
 * comparators through it, so both see the same bytes the same way.
 */
import { EventEmitter } from 'node:events';
import { connect, type Socket } from 'node:net';
import type { Address } from '../src/util/address.js';
import { FrameDecoder, encodeFrame, type Frame } from './framing.js';
import { NotifyDecoder, NotifyWords, encodeNotify, type NotifyWord } from './notify.js';
import { arp } from './craft.js';

export interface ComparatorAddresses {
  primaryIn: Address;
  secondaryIn: Address;
  outdev: Address;
  notify: Address;
}

export interface ComparatorClientEvents {
  /** A frame released on outdev. */
  frame: [Frame];
  /** A notify message from the comparator. */
  notify: [NotifyWord];
  /** A socket failed or the comparator sent bytes that do not decode. */
  error: [Error];
}

/** The frame ready() sends; late copies of it may still arrive after ready() resolved. */
export const READY_PROBE = arp('192.0.2.254');

function open(a: Address): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: a.host, port: a.port, noDelay: true });
    s.once('connect', () => {
      s.off('error', reject);
      resolve(s);
    });
    s.once('error', reject);
  });
}

export class ComparatorClient extends EventEmitter<ComparatorClientEvents> {
  private sockets: { pri: Socket; sec: Socket; out: Socket; nfy: Socket } | undefined;

  constructor(
    readonly addresses: ComparatorAddresses,
    private readonly vnetHdr = false,
  ) {
    super();
  }

  async start(): Promise<void> {
    const a = this.addresses;
    const [pri, sec, out, nfy] = await Promise.all([open(a.primaryIn), open(a.secondaryIn), open(a.outdev), open(a.notify)]);
    this.sockets = { pri, sec, out, nfy };
    const frames = new FrameDecoder({ vnetHdr: this.vnetHdr });
    const words = new NotifyDecoder({ direction: 'from-proxy' });
    // Reported to whoever listens; a peer closing on us is not worth crashing the process over.
    const fail = (err: unknown): void => {
      if (this.listenerCount('error') > 0) this.emit('error', err instanceof Error ? err : new Error(String(err)));
    };
    out.on('data', (chunk: Buffer) => {
      let got: Frame[];
      try {
        got = frames.push(chunk);
      } catch (err) {
        fail(err);
        return;
      }
      for (const f of got) this.emit('frame', f);
    });
    nfy.on('data', (chunk: Buffer) => {
      let got: NotifyWord[];
      try {
        got = words.push(chunk);
      } catch (err) {
        fail(err);
        return;
      }
      for (const w of got) this.emit('notify', w);
    });
    for (const s of [pri, sec, out, nfy]) s.on('error', fail);
  }

  stop(): void {
    if (this.sockets === undefined) return;
    for (const s of Object.values(this.sockets)) s.destroy();
    this.sockets = undefined;
  }

  private get s(): NonNullable<ComparatorClient['sockets']> {
    if (this.sockets === undefined) throw new Error('comparator client is not started');
    return this.sockets;
  }

  /** Sends frames (Ethernet, with a vnet header of `vnetHdrLen` bytes in front when vnet support is on). */
  sendPrimary(frames: Buffer | Buffer[], vnetHdrLen = 0): boolean {
    return this.s.pri.write(this.encode(frames, vnetHdrLen));
  }

  sendSecondary(frames: Buffer | Buffer[], vnetHdrLen = 0): boolean {
    return this.s.sec.write(this.encode(frames, vnetHdrLen));
  }

  /** Raw bytes on an input (for protocol-error tests). */
  sendRaw(port: 'primary' | 'secondary' | 'notify', bytes: Buffer): void {
    (port === 'primary' ? this.s.pri : port === 'secondary' ? this.s.sec : this.s.nfy).write(bytes);
  }

  /** A socket of the client, to wait for its close. */
  socket(port: 'primary' | 'secondary' | 'outdev' | 'notify'): Socket {
    const s = this.s;
    return port === 'primary' ? s.pri : port === 'secondary' ? s.sec : port === 'outdev' ? s.out : s.nfy;
  }

  sendNotify(word: NotifyWord): void {
    this.s.nfy.write(encodeNotify(word, { direction: 'to-proxy', vnetHdr: this.vnetHdr }));
  }

  /** Sends COLO_USERSPACE_PROXY_INIT and resolves at the reply. */
  init(): Promise<void> {
    const replied = this.nextNotify(NotifyWords.PROXY_INIT_REPLY);
    this.sendNotify(NotifyWords.PROXY_INIT);
    return replied;
  }

  /** Resolves at the comparator's next notify message `word` (listen before sending what causes it). */
  nextNotify(word: NotifyWord): Promise<void> {
    return new Promise((resolve) => {
      const on = (w: NotifyWord): void => {
        if (w !== word) return;
        this.off('notify', on);
        resolve();
      };
      this.on('notify', on);
    });
  }

  /** Resolves when a frame with exactly the bytes of `frame` is released on outdev (listen before sending it). */
  released(frame: Buffer): Promise<void> {
    return new Promise((resolve) => {
      const on = (f: Frame): void => {
        if (!f.data.equals(frame)) return;
        this.off('frame', on);
        resolve();
      };
      this.on('frame', on);
    });
  }

  /**
   * Resolves once the comparator forwards primary frames to outdev: sends an
   * ARP frame (released uncompared by both comparators) every `everyMs`
   * until one comes back. A comparator accepts its sockets asynchronously,
   * and colo-compare drops what it releases before its outdev peer is in.
   */
  ready(everyMs = 100): Promise<void> {
    const back = this.released(READY_PROBE);
    const timer = setInterval(() => this.sendPrimary(READY_PROBE), everyMs);
    this.sendPrimary(READY_PROBE);
    return back.finally(() => clearInterval(timer));
  }

  private encode(frames: Buffer | Buffer[], vnetHdrLen: number): Buffer {
    const list = Array.isArray(frames) ? frames : [frames];
    return Buffer.concat(list.map((f) => encodeFrame(f, vnetHdrLen, this.vnetHdr)));
  }
}
