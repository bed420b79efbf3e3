/**
 * Binding a listener, shared by the plain and the TLS transport: a failed
 * bind is a TRANSPORT_LISTEN_FAILED naming what listens and where; once
 * bound, the listener's address and a close that runs `beforeClose` first.
 */
import type { AddressInfo, Server } from 'node:net';
import { formatAddress, type Address } from '../util/address.js';
import { TransportError, TransportErrorCodes as C } from './errors.js';
import type { TransportListener } from './transport.js';

export function listenOn(server: Server, at: Address, purpose: string, beforeClose: () => void = () => {}): Promise<TransportListener> {
  return new Promise((resolve, reject) => {
    server.once('error', (err: Error) => reject(new TransportError(C.TRANSPORT_LISTEN_FAILED, `cannot listen for ${purpose} on ${formatAddress(at)}: ${err.message}`, { cause: err })));
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
