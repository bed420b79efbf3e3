/**
 * An in-memory Transport: connections are pairs of Duplex streams in this
 * process, so the channels between the hosts run in unit tests without
 * sockets. Bytes arrive asynchronously (a later turn of the event loop, as
 * from a socket), in order; a reader that stops reading holds the writer
 * back (backpressure); end() half-closes; destroy() reaches the peer as a
 * close, as a reset would.
 */
import { Duplex } from 'node:stream';
import { TransportError, TransportErrorCodes as C } from '../../src/transport/errors.js';
import type { ConnectOptions, ListenOptions, OnConnection, Transport, TransportListener } from '../../src/transport/transport.js';
import { formatAddress, type Address } from '../../src/util/address.js';

class Side extends Duplex {
  peer: Side | undefined;
  /** The write waiting for this side's reader to take more. */
  private resumeWriter: (() => void) | undefined;

  constructor(
    allowHalfOpen: boolean,
    readonly remote: string,
  ) {
    super({ allowHalfOpen });
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, done: (err?: Error | null) => void): void {
    setImmediate(() => {
      const peer = this.peer;
      if (peer === undefined || peer.destroyed) {
        done();
        return;
      }
      if (peer.push(chunk)) done();
      else peer.resumeWriter = done;
    });
  }

  override _read(): void {
    const resume = this.resumeWriter;
    this.resumeWriter = undefined;
    resume?.();
  }

  override _final(done: (err?: Error | null) => void): void {
    setImmediate(() => {
      if (this.peer !== undefined && !this.peer.destroyed) this.peer.push(null);
      done();
    });
  }

  override _destroy(err: Error | null, done: (err?: Error | null) => void): void {
    const peer = this.peer;
    setImmediate(() => peer?.destroy());
    done(err);
  }
}

interface Listening {
  onConnection: OnConnection;
  allowHalfOpen: boolean;
}

export class MemoryTransport implements Transport {
  private readonly listeners = new Map<string, Listening>();
  private nextPort = 40000;
  private nextClientPort = 50000;
  /** Connections made so far (each an accepted pair). */
  connections = 0;

  connect(to: Address, options: ConnectOptions): Promise<Duplex> {
    const l = this.listeners.get(formatAddress(to));
    if (l === undefined) {
      return Promise.reject(new TransportError(C.TRANSPORT_CONNECT_FAILED, `cannot connect to ${options.peer} at ${formatAddress(to)}: connection refused (in memory)`));
    }
    const local = `127.0.0.1:${this.nextClientPort++}`;
    const client = new Side(false, formatAddress(to));
    const server = new Side(l.allowHalfOpen, local);
    client.peer = server;
    server.peer = client;
    this.connections++;
    return new Promise((resolve) =>
      setImmediate(() => {
        l.onConnection(server, local);
        resolve(client);
      }),
    );
  }

  listen(at: Address, onConnection: OnConnection, options: ListenOptions): Promise<TransportListener> {
    const address = { host: at.host, port: at.port === 0 ? this.nextPort++ : at.port };
    const key = formatAddress(address);
    if (this.listeners.has(key)) {
      return Promise.reject(new TransportError(C.TRANSPORT_LISTEN_FAILED, `cannot listen for ${options.purpose} on ${key}: address in use (in memory)`));
    }
    this.listeners.set(key, { onConnection, allowHalfOpen: options.allowHalfOpen ?? false });
    return Promise.resolve({
      address,
      close: () => {
        this.listeners.delete(key);
        return Promise.resolve();
      },
    });
  }
}
