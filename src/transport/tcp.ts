/**
 * Plain TCP: unauthenticated, so a node runs it only with tls.insecure on
 * loopback (./select.ts), and benchmarks measure TLS against it. Every
 * channel between the hosts is latency-bound (acks, heartbeats, mirrored
 * packets), so Nagle is off on both ends. TCP keepalive is on (first probe
 * after a second idle), so the kernel ends a connection whose peer vanished
 * even where nothing is sent; the channels' own silence checks (heartbeat
 * timeout, the failover rule, SilentStandbyWatch) notice it much sooner.
 */
import { connect, createServer } from 'node:net';
import type { Duplex } from 'node:stream';
import { formatAddress, type Address } from '../util/address.js';
import { TransportError, TransportErrorCodes as C } from './errors.js';
import { listenOn } from './listen.js';
import type { ConnectOptions, ListenOptions, OnConnection, Transport, TransportListener } from './transport.js';

export const KEEPALIVE_DELAY_MS = 1000;

export const tcpTransport: Transport = {
  connect(to: Address, options: ConnectOptions): Promise<Duplex> {
    const where = `${options.peer} at ${formatAddress(to)}`;
    return new Promise((resolve, reject) => {
      const socket = connect({ host: to.host, port: to.port, noDelay: true, keepAlive: true, keepAliveInitialDelay: KEEPALIVE_DELAY_MS });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new TransportError(C.TRANSPORT_CONNECT_TIMEOUT, `connecting to ${where} timed out after ${options.timeoutMs} ms`));
      }, options.timeoutMs);
      const onError = (err: Error): void => {
        clearTimeout(timer);
        reject(new TransportError(C.TRANSPORT_CONNECT_FAILED, `cannot connect to ${where}: ${err.message}`, { cause: err }));
      };
      socket.once('error', onError);
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.off('error', onError);
        resolve(socket);
      });
    });
  },

  listen(at: Address, onConnection: OnConnection, options: ListenOptions): Promise<TransportListener> {
    const server = createServer({ allowHalfOpen: options.allowHalfOpen ?? false, noDelay: true, keepAlive: true, keepAliveInitialDelay: KEEPALIVE_DELAY_MS }, (socket) => {
      onConnection(socket, `${socket.remoteAddress}:${socket.remotePort}`);
    });
    return listenOn(server, at, options);
  },
};
