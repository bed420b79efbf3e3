/**
 * Binding a listener, shared by the plain and the TLS transport: a failed
 * bind is a TRANSPORT_LISTEN_FAILED naming what listens and where, and why
 * in words ("replication listener 127.0.0.1:7700: address in use"); once
 * bound, the listener's address and a close that runs `beforeClose` first.
 */
import type { AddressInfo, Server } from 'node:net';
import { formatAddress, type Address } from '../util/address.js';
import { TransportError, TransportErrorCodes as C } from './errors.js';
import type { ListenOptions, TransportListener } from './transport.js';

/** Why a bind failed, in words an operator acts on (the system's error stays the cause). */
export function listenFailure(err: NodeJS.ErrnoException): string {
  switch (err.code) {
    case 'EADDRINUSE':
      return 'address in use (another process listens there)';
    case 'EADDRNOTAVAIL':
      return 'address not available (no interface of this host has it)';
    case 'EACCES':
      return 'permission denied (a port below 1024 needs privileges)';
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
    case 'EAI_FAIL':
      return `the host name does not resolve (${err.code})`;
    default:
      return err.message;
  }
}

export function listenOn(server: Server, at: Address, options: Pick<ListenOptions, 'purpose' | 'listener'>, beforeClose: () => void = () => {}): Promise<TransportListener> {
  const what = options.listener === undefined ? `listener for ${options.purpose}` : `${options.listener} listener`;
  return new Promise((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) => reject(new TransportError(C.TRANSPORT_LISTEN_FAILED, `${what} ${formatAddress(at)}: ${listenFailure(err)}`, { cause: err })));
    server.listen(at.port, at.host, () => {
      server.removeAllListeners('error');
      // After a successful listen, errors belong to accepted sockets, which report their own.
      server.on('error', () => {});
      const bound = server.address() as AddressInfo;
      resolve({
        address: { host: bound.address, port: bound.port },
        close: () =>
          new Promise<void>((done) => {
            beforeClose();
            server.close(() => done());
          }),
      });
    });
  });
}
