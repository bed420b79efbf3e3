/**
 * Socket glue: the comparator standing where QEMU's colo-compare stands.
 * Four listening sockets, like colo-compare's `server=on` chardevs:
 *
 *   primary_in    frames from the primary guest's NIC (read)
 *   secondary_in  frames from the secondary guest's NIC (read)
 *   outdev        released primary frames (written)
 *   notify        the notify protocol with the controller (both ways)
 *
 * Each socket serves one peer at a time; a new connection replaces the old
 * one (a peer that reconnects is usually right that the old connection is
 * dead). A framing error on an input closes that connection with a logged,
 * typed error; the peer may reconnect and start afresh.
 *
 * Frames are read as views of the socket's chunks; the comparator copies
 * the ones it holds, and output that has to wait for outdev is copied too,
 * so no chunk stays alive for a frame or two.
 *
 * Backpressure: released frames are written to outdev once per input read,
 * in one write. While outdev is absent or its socket buffer is full beyond
 * the high-water mark, both inputs are paused, so memory stays bounded and
 * the guests' NICs feel the stall instead of the proxy dropping frames.
 */
import { EventEmitter } from 'node:events';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import type { Address } from '../src/util/address.js';
import type { Logger } from '../src/util/logger.js';
import { listen } from '../src/util/net.js';
import type { CheckpointRequest } from './compare.js';
import { ProxyError, ProxyErrorCodes as C } from './errors.js';
import { FrameDecoder, encodeFrameInto, headerBytes, ownFrame, type Frame } from './framing.js';
import { NotifyDecoder, NotifyWords, encodeNotify } from './notify.js';
import { ColoComparator, type ColoComparatorOptions } from './colo-comparator.js';

export type PortName = 'primary_in' | 'secondary_in' | 'outdev' | 'notify';
const PORTS: readonly PortName[] = ['primary_in', 'secondary_in', 'outdev', 'notify'];
/** The proxy's two messages, encoded once (they go out on the latency-critical path). */
const DO_CHECKPOINT = encodeNotify(NotifyWords.DO_CHECKPOINT, { direction: 'from-proxy' });
const INIT_REPLY = encodeNotify(NotifyWords.PROXY_INIT_REPLY, { direction: 'from-proxy' });

export interface ProxyServerOptions extends ColoComparatorOptions {
  primaryIn: Address;
  secondaryIn: Address;
  outdev: Address;
  notify: Address;
  /** Records carry the vnet header length field (colo-compare's vnet_hdr_support). */
  vnetHdr?: boolean;
  /** Output bytes queued (unwritten or in the socket buffer) beyond which inputs pause. Default 4 MiB. */
  outputHighWaterBytes?: number;
  logger?: Logger;
}

export interface ProxyServerEvents {
  connected: [{ port: PortName; remote: string }];
  disconnected: [{ port: PortName; remote: string }];
  /** A peer sent something the protocol does not allow; its connection was closed. */
  protocolError: [{ port: PortName; error: ProxyError }];
  /**
   * A checkpoint request, as sent (or, without a notify peer, not sent) as
   * DO_CHECKPOINT. `decisionMs`: for a request decided on an input read (a
   * mismatch, a full queue), the time from the start of handling the read
   * that brought the deciding frame to DO_CHECKPOINT handed to the notify
   * socket; absent for requests from the expired-frame scan.
   */
  checkpoint: [CheckpointRequest & { notified: boolean; decisionMs?: number }];
  /** Inputs paused (outdev absent or full) or resumed. */
  backpressure: [{ paused: boolean; queuedBytes: number }];
}

interface Port {
  server: Server;
  socket: Socket | undefined;
}

export class ProxyServer extends EventEmitter<ProxyServerEvents> {
  readonly comparator: ColoComparator;
  private readonly vnetHdr: boolean;
  private readonly highWater: number;
  private ports: Map<PortName, Port> | undefined;
  /** Released frames not yet handed to the outdev socket. */
  private pending: Frame[] = [];
  private pendingBytes = 0;
  private paused = false;
  private running = false;
  /** performance.now() when the input read being handled began; undefined outside one. */
  private readStartedAt: number | undefined = undefined;

  constructor(private readonly options: ProxyServerOptions) {
    super();
    this.comparator = new ColoComparator(options);
    this.vnetHdr = options.vnetHdr ?? false;
    this.highWater = options.outputHighWaterBytes ?? 4 * 2 ** 20;
  }

  /** Released bytes not yet handed to outdev, and whether the inputs are paused. */
  get output(): { pendingBytes: number; paused: boolean } {
    return { pendingBytes: this.pendingBytes, paused: this.paused };
  }

  /** Whether each socket has a peer now. */
  peers(): Record<PortName, boolean> {
    const out = {} as Record<PortName, boolean>;
    for (const name of PORTS) {
      const s = this.ports?.get(name)?.socket;
      out[name] = s !== undefined && !s.destroyed;
    }
    return out;
  }

  /** The bound addresses (after start()). */
  addresses(): Record<PortName, AddressInfo> {
    if (this.ports === undefined) throw new ProxyError(C.PROXY_BAD_OPTIONS, 'proxy server is not started');
    const out = {} as Record<PortName, AddressInfo>;
    for (const [name, p] of this.ports) out[name] = p.server.address() as AddressInfo;
    return out;
  }

  async start(): Promise<void> {
    if (this.running) return;
    const o = this.options;
    if (!Number.isInteger(this.highWater) || this.highWater < 1) throw new ProxyError(C.PROXY_BAD_OPTIONS, `output high-water mark ${this.highWater} is not a positive integer`);
    const addrs: Record<PortName, Address> = { primary_in: o.primaryIn, secondary_in: o.secondaryIn, outdev: o.outdev, notify: o.notify };
    this.comparator.on('release', (frame) => {
      this.pending.push(frame);
      this.pendingBytes += frame.data.length;
    });
    this.comparator.on('checkpoint', (req) => this.notifyCheckpoint(req));
    this.comparator.on('malformed', (side, error) => o.logger?.warn({ side, code: error.code }, `${side} frame passed uncompared: ${error.message}`));
    this.comparator.start();
    this.running = true;
    this.ports = new Map();
    try {
      for (const name of PORTS) {
        const server = createServer({ noDelay: true }, (socket) => this.accept(name, socket));
        const port: Port = { server, socket: undefined };
        this.ports.set(name, port);
        const a = addrs[name];
        try {
          await listen(server, a.port, a.host);
        } catch (err) {
          throw new ProxyError(C.PROXY_LISTEN_FAILED, `${name}: cannot listen on ${a.host}:${a.port}: ${(err as Error).message}`, { cause: err });
        }
        // After listen() succeeded, an error (EMFILE on accept...) is logged, not fatal.
        server.on('error', (err) => o.logger?.error({ port: name, err }, `${name}: ${err.message}`));
        o.logger?.info({ port: name, address: `${a.host}:${(server.address() as AddressInfo).port}` }, `${name} listening`);
      }
    } catch (err) {
      await this.stop();
      throw err;
    }
  }

  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    this.comparator.stop();
    this.comparator.removeAllListeners();
    const ports = this.ports;
    this.ports = undefined;
    if (ports === undefined) return;
    await Promise.all(
      [...ports.values()].map(
        (p) =>
          new Promise<void>((resolve) => {
            p.socket?.destroy();
            if (!p.server.listening) resolve();
            else p.server.close(() => resolve());
          }),
      ),
    );
  }

  private accept(name: PortName, socket: Socket): void {
    const port = this.ports?.get(name);
    if (port === undefined) {
      socket.destroy();
      return;
    }
    const remote = `${socket.remoteAddress}:${socket.remotePort}`;
    if (port.socket !== undefined) {
      this.options.logger?.warn({ port: name, remote }, `${name}: new peer ${remote} replaces the previous one`);
      port.socket.destroy();
    }
    port.socket = socket;
    socket.setNoDelay(true);
    socket.on('error', () => {}); // 'close' follows; the error itself is the peer's business
    socket.on('close', () => {
      if (port.socket === socket) port.socket = undefined;
      this.emit('disconnected', { port: name, remote });
      if (name === 'outdev') this.updatePause();
    });
    this.emit('connected', { port: name, remote });
    switch (name) {
      case 'primary_in':
      case 'secondary_in': {
        // Views of the socket's chunks: the comparator copies only the frames it keeps waiting.
        const decoder = new FrameDecoder({ vnetHdr: this.vnetHdr, views: true });
        const frames: Frame[] = [];
        const primary = name === 'primary_in';
        socket.on('data', (chunk: Buffer) => {
          this.readStartedAt = performance.now();
          try {
            decoder.push(chunk, frames);
          } catch (err) {
            this.protocolError(name, socket, err);
          } finally {
            for (const f of frames) {
              if (primary) this.comparator.pushPrimary(f);
              else this.comparator.pushSecondary(f);
            }
            frames.length = 0;
            this.flush();
            this.readStartedAt = undefined;
          }
        });
        if (this.paused) socket.pause();
        break;
      }
      case 'outdev':
        socket.on('drain', () => this.flush());
        // Whatever the peer sends on outdev is not ours to read; discard it.
        socket.on('data', () => {});
        this.flush();
        break;
      case 'notify': {
        const decoder = new NotifyDecoder({ direction: 'to-proxy', vnetHdr: this.vnetHdr });
        socket.on('data', (chunk: Buffer) => {
          let words;
          try {
            words = decoder.push(chunk);
          } catch (err) {
            this.protocolError(name, socket, err);
            return;
          }
          for (const w of words) {
            if (w === NotifyWords.PROXY_INIT) socket.write(INIT_REPLY);
            else if (w === NotifyWords.CHECKPOINT_DONE) this.comparator.checkpointDone();
          }
          this.flush();
        });
        break;
      }
    }
  }

  private protocolError(name: PortName, socket: Socket, err: unknown): void {
    const error = err instanceof ProxyError ? err : new ProxyError(C.PROXY_FRAME_BAD_LENGTH, String(err), { cause: err });
    this.options.logger?.error({ port: name, code: error.code, remote: `${socket.remoteAddress}:${socket.remotePort}` }, `${name}: ${error.message}; connection closed`);
    this.emit('protocolError', { port: name, error });
    socket.destroy();
  }

  private notifyCheckpoint(req: CheckpointRequest): void {
    const socket = this.ports?.get('notify')?.socket;
    const notified = socket !== undefined && !socket.destroyed;
    if (notified) socket.write(DO_CHECKPOINT);
    const decisionMs = this.readStartedAt === undefined ? undefined : performance.now() - this.readStartedAt;
    this.options.logger?.info({ reason: req.reason, flow: req.flow, notified }, `checkpoint requested (${req.reason}): ${req.flow}: ${req.detail}`);
    this.emit('checkpoint', { ...req, notified, decisionMs });
    // Releases decided before the request (same call) leave before the next read.
    this.flush();
  }

  /** Hands released frames to outdev in one write; pauses or resumes the inputs. */
  private flush(): void {
    const out = this.ports?.get('outdev')?.socket;
    if (this.pending.length > 0 && out !== undefined && !out.destroyed && out.writableLength < this.highWater) {
      const hdr = headerBytes(this.vnetHdr);
      const buf = Buffer.allocUnsafe(this.pendingBytes + this.pending.length * hdr);
      let at = 0;
      for (const f of this.pending) at = encodeFrameInto(buf, at, f.data, f.vnetHdrLen, this.vnetHdr);
      this.pending = [];
      this.pendingBytes = 0;
      out.write(buf);
    }
    // Released output that must wait for outdev: it keeps only its own bytes, not the chunks it came in.
    for (let i = 0; i < this.pending.length; i++) this.pending[i] = ownFrame(this.pending[i]);
    this.updatePause();
  }

  private updatePause(): void {
    const out = this.ports?.get('outdev')?.socket;
    const queued = this.pendingBytes + (out?.writableLength ?? 0);
    const stall = out === undefined || queued >= this.highWater;
    if (stall === this.paused) return;
    this.paused = stall;
    this.emit('backpressure', { paused: stall, queuedBytes: queued });
    for (const name of ['primary_in', 'secondary_in'] as const) {
      const s = this.ports?.get(name)?.socket;
      if (s === undefined) continue;
      if (stall) s.pause();
      else s.resume();
    }
  }
}
