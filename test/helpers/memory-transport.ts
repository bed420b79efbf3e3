/**
 * An in-memory Transport: connections are pairs of Duplex streams in this
 * process, so the channels between the hosts run in unit tests without
 * sockets, and a test can take a host off the network (cut: its
 * connections are reset; silence: its packets vanish, connections stay open
 * and carry nothing, as in a partition or a hung host) and put it back. Bytes arrive asynchronously (a later turn of the event loop, as
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
    readonly host: MemoryTransport,
  ) {
    super({ allowHalfOpen });
  }

  /** Packets between the two ends vanish (a partition): nothing arrives, nobody is told. */
  get silenced(): boolean {
    return this.host.silent || this.peer?.host.silent === true;
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, done: (err?: Error | null) => void): void {
    setImmediate(() => {
      const peer = this.peer;
      if (peer === undefined || peer.destroyed || this.silenced) {
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
      if (this.peer !== undefined && !this.peer.destroyed && !this.silenced) this.peer.push(null);
      done();
    });
  }

  override _destroy(err: Error | null, done: (err?: Error | null) => void): void {
    const peer = this.peer;
    // A reset sent into a partition never arrives.
    if (!this.silenced) setImmediate(() => peer?.destroy());
    done(err);
  }
}

interface Listening {
  onConnection: OnConnection;
  allowHalfOpen: boolean;
  owner: MemoryTransport;
}

/** The hosts' shared network: who listens where. */
class MemoryNetwork {
  readonly listeners = new Map<string, Listening>();
  nextPort = 40000;
  nextClientPort = 50000;
}

/**
 * One host's view of an in-memory network. Hosts made with peer() share the
 * network; cut() takes this host off it (its connections are reset, it can
 * neither dial nor be dialled) until heal().
 */
export class MemoryTransport implements Transport {
  /** Connections made so far (each an accepted pair). */
  connections = 0;
  private readonly open = new Set<Side>();
  private isCut = false;
  /** Its packets vanish: see silence(). */
  silent = false;

  constructor(private readonly net = new MemoryNetwork()) {}

  /** Another host on the same network. */
  peer(): MemoryTransport {
    return new MemoryTransport(this.net);
  }

  /** This host drops off the network: every connection it has is reset, new ones fail. */
  cut(): void {
    this.isCut = true;
    for (const side of this.open) side.destroy();
    this.open.clear();
  }

  /**
   * This host's packets vanish from now on, both ways: open connections stay
   * open and carry nothing, and new ones time out, as in a partition or a
   * hung host. heal() ends it.
   */
  silence(): void {
    this.silent = true;
  }

  heal(): void {
    this.isCut = false;
    this.silent = false;
  }

  connect(to: Address, options: ConnectOptions): Promise<Duplex> {
    const l = this.net.listeners.get(formatAddress(to));
    if (l !== undefined && (this.silent || l.owner.silent)) {
      return new Promise((_, reject) =>
        setTimeout(() => reject(new TransportError(C.TRANSPORT_CONNECT_TIMEOUT, `connecting to ${options.peer} at ${formatAddress(to)} timed out after ${options.timeoutMs} ms (in memory)`)), options.timeoutMs),
      );
    }
    if (l === undefined || this.isCut || l.owner.isCut) {
      const why = this.isCut || l?.owner.isCut === true ? 'network unreachable' : 'connection refused';
      return Promise.reject(new TransportError(C.TRANSPORT_CONNECT_FAILED, `cannot connect to ${options.peer} at ${formatAddress(to)}: ${why} (in memory)`));
    }
    const local = `127.0.0.1:${this.net.nextClientPort++}`;
    const client = new Side(false, formatAddress(to), this);
    const server = new Side(l.allowHalfOpen, local, l.owner);
    client.peer = server;
    server.peer = client;
    this.track(client);
    l.owner.track(server);
    this.connections++;
    return new Promise((resolve) =>
      setImmediate(() => {
        l.onConnection(server, local);
        resolve(client);
      }),
    );
  }

  listen(at: Address, onConnection: OnConnection, options: ListenOptions): Promise<TransportListener> {
    const address = { host: at.host, port: at.port === 0 ? this.net.nextPort++ : at.port };
    const key = formatAddress(address);
    if (this.net.listeners.has(key)) {
      return Promise.reject(new TransportError(C.TRANSPORT_LISTEN_FAILED, `cannot listen for ${options.purpose} on ${key}: address in use (in memory)`));
    }
    this.net.listeners.set(key, { onConnection, allowHalfOpen: options.allowHalfOpen ?? false, owner: this });
    return Promise.resolve({
      address,
      close: () => {
        this.net.listeners.delete(key);
        return Promise.resolve();
      },
    });
  }

  private track(side: Side): void {
    this.open.add(side);
    side.once('close', () => this.open.delete(side));
  }
}
