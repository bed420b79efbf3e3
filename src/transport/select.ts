/**
 * The one place a `tandem primary` or `tandem secondary` process chooses
 * how its channels to the other host dial and listen: mutual TLS from the
 * `tls:` configuration (or --tls DIR --name NAME), or plain TCP where
 * tls.insecure is set and every inter-host address is loopback. Neither is
 * a refusal to start that says how to set one up; nothing falls back to
 * plain TCP by itself. A primary that protects nothing (`--mode none`) has
 * no channel to another host, so it is asked for no certificates.
 */
import type { TandemConfig } from '../config/config.js';
import { ConfigError } from '../errors.js';
import { formatAddress } from '../util/address.js';
import type { Logger } from '../util/logger.js';
import { TransportError, TransportErrorCodes as C } from './errors.js';
import { tcpTransport } from './tcp.js';
import { loadTlsCredentials } from './tls-files.js';
import { insecureExposure } from './tls-config.js';
import { tlsTransport } from './tls.js';
import type { Transport } from './transport.js';

export const NO_TLS_MESSAGE =
  'the channels between the hosts need mutual TLS: make certificates once with `tandem certs init DIR --nodes NAME,NAME` and run each node with --tls DIR --name NAME ' +
  '(or set tls.dir and tls.name in its configuration); on one machine, tls.insecure: true runs them over plain TCP on loopback';

export interface TransportNeeds {
  /** The node talks to no other host (an unprotected primary): no transport is made, and any use of it fails. */
  peerless?: boolean;
}

export function transportFor(cfg: TandemConfig, logger: Logger, needs: TransportNeeds = {}): Transport {
  if (needs.peerless === true) return NO_PEER;
  const t = cfg.tls;
  const exposed = insecureExposure(cfg);
  if (exposed !== undefined) throw new ConfigError(exposed);
  if (t.insecure) return insecureTransport(logger);
  if (t.dir === undefined && t.cert === undefined) throw new ConfigError(NO_TLS_MESSAGE);
  const credentials = loadTlsCredentials(t, (message) => logger.warn(message));
  logger.info(
    { node: credentials.name, peer: credentials.peer, ca: credentials.caFingerprint },
    `channels between the hosts: mutual TLS 1.3 as "${credentials.name}", accepting only "${credentials.peer}"`,
  );
  return tlsTransport({ ...credentials, handshakeTimeoutMs: t.handshakeTimeoutMs, logger });
}

/**
 * Plain TCP, said loudly when the first channel opens (not before: a node
 * refused at start ends in its one line of error, nothing else).
 */
function insecureTransport(logger: Logger): Transport {
  let said = false;
  const say = (): void => {
    if (said) return;
    said = true;
    logger.warn('tls.insecure: the channels between the hosts are plain TCP, unauthenticated and unencrypted (loopback only)');
  };
  return {
    connect(to, options) {
      say();
      return tcpTransport.connect(to, options);
    },
    listen(at, onConnection, options) {
      say();
      return tcpTransport.listen(at, onConnection, options);
    },
  };
}

const PEERLESS = 'this node runs unprotected (mode none): it has no channel to another host';

/** The transport of a node with no peer: nothing dials or listens through it. */
const NO_PEER: Transport = {
  connect: (to) => Promise.reject(new TransportError(C.TRANSPORT_CONNECT_FAILED, `cannot connect to ${formatAddress(to)}: ${PEERLESS}`)),
  listen: (at) => Promise.reject(new TransportError(C.TRANSPORT_LISTEN_FAILED, `cannot listen on ${formatAddress(at)}: ${PEERLESS}`)),
};
