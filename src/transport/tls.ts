/**
 * Mutual TLS, the transport between two hosts on any network: TLS 1.3
 * only, both ends present a certificate, and each accepts the other only if
 * that certificate chains to the configured CA and names the configured
 * peer (identity.ts). No channel sees a byte of a connection before both
 * checks passed: the listener hands a connection on only after its own
 * check, and the dialer's connect() resolves only once the listener said it
 * accepted the dialer (one byte, ACCEPTED, below), because in TLS 1.3 the
 * dialer finishes its handshake before the listener has looked at the
 * dialer's certificate, so without it a refused dialer would only see its
 * connection die later, with nothing to say why.
 *
 * A handshake is bounded by the listener's handshake timeout and by the
 * dialer's connect timeout; plain TCP, TLS 1.2 and silent peers are dropped
 * within them. Refusals are TransportErrors (TRANSPORT_TLS_REFUSED,
 * TRANSPORT_PEER_MISMATCH) naming the peer's address and what was wrong;
 * the listener logs them (its refusals reach nobody else), as does the
 * dialer (a heartbeat channel redials quietly). Keys never reach a message.
 * Both ends of a connection write a TLS record at a time (tls-writes.ts).
 */
import type { X509Certificate } from 'node:crypto';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { connect as tlsConnect, createSecureContext, createServer, type SecureContext, type TLSSocket } from 'node:tls';
import { formatAddress, type Address } from '../util/address.js';
import type { Logger } from '../util/logger.js';
import { TransportError, TransportErrorCodes as C, type TransportErrorCode } from './errors.js';
import { certificateNodeNames, describeNames } from './identity.js';
import { KEEPALIVE_DELAY_MS } from './tcp.js';
import { listenOn } from './listen.js';
import { writeInRecords } from './tls-writes.js';
import type { ConnectOptions, ListenOptions, OnConnection, Transport, TransportListener } from './transport.js';

export interface TlsCredentials {
  /** PEM: the CA both nodes' certificates chain to. */
  ca: Buffer;
  /** PEM: this node's certificate (carrying `tandem:NAME`). */
  cert: Buffer;
  /** PEM: this node's private key. Never logged, never in a message. */
  key: Buffer;
  /** This node's name, as its certificate carries it. */
  name: string;
  /** The only node this one talks to: a peer whose certificate names another node is refused. */
  peer: string;
}

export interface TlsTransportOptions extends TlsCredentials {
  /** A connection that has not finished its handshake this long after it was accepted is dropped. */
  handshakeTimeoutMs: number;
  /** Where refusals are logged (at most one line a while for the same refusal). */
  logger?: Logger;
}

/** Sent by the listener once it accepted the dialer; connect() resolves on it. */
export const ACCEPTED = 0x01;
const TLS13 = 'TLSv1.3';
/**
 * Connections one listener lets handshake at once. A new one beyond it
 * closes the one that has handshaken longest: an unauthenticated flood
 * costs bounded memory and descriptors, and the real peer, whose handshake
 * takes a round trip or two, is only pushed out by this many newer
 * connections arriving within that time.
 */
export const MAX_HANDSHAKES = 64;
/** The same refusal (code, host, reason) is logged once in this long, then with a count. */
const REFUSAL_QUIET_MS = 10_000;
const MAX_REFUSAL_KEYS = 256;

interface Refusal {
  code: TransportErrorCode;
  /** What was wrong, without the address: the same for every connection of one misconfigured peer. */
  reason: string;
}

/** The chain was checked by OpenSSL; the name is checked here. Undefined when the peer is who it should be. */
function peerRefusal(socket: TLSSocket, peer: string): Refusal | undefined {
  if (socket.getProtocol() !== TLS13) return { code: C.TRANSPORT_TLS_REFUSED, reason: `it negotiated ${String(socket.getProtocol())}, not ${TLS13}` };
  const cert: X509Certificate | undefined = socket.getPeerX509Certificate();
  if (cert === undefined) return { code: C.TRANSPORT_TLS_REFUSED, reason: 'it presented no certificate' };
  if (!socket.authorized) {
    const code = String(socket.authorizationError);
    return { code: C.TRANSPORT_TLS_REFUSED, reason: chainProblem(code, cert) ?? `its certificate was refused (${code})` };
  }
  const names = certificateNodeNames(cert);
  if (!names.includes(peer)) {
    return { code: C.TRANSPORT_PEER_MISMATCH, reason: `its certificate (issued by this CA) names ${describeNames(names)}, not the configured peer "${peer}"` };
  }
  return undefined;
}

const NOT_THIS_CA = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_SIGNATURE_FAILURE',
]);

/** OpenSSL's verdict on a chain, as an operator would want it said; undefined for a code that is not about the chain. */
function chainProblem(code: string, cert?: X509Certificate): string | undefined {
  const subject = cert === undefined ? '' : ` (${cert.subject.replace(/\n/g, ', ')})`;
  if (NOT_THIS_CA.has(code)) return `its certificate${subject} is not issued by this node's CA (${code})`;
  if (code === 'CERT_HAS_EXPIRED') return `its certificate${subject} has expired (${code})`;
  if (code === 'CERT_NOT_YET_VALID') return `its certificate${subject} is not valid yet: are the hosts' clocks apart? (${code})`;
  return undefined;
}

/** An error from OpenSSL: `reason` is its short text ("sslv3 alert handshake failure"), `message` the long one with source lines. */
type TlsError = NodeJS.ErrnoException & { reason?: string };

/** Why a handshake failed, from the error Node reports for it. */
function handshakeProblem(err: TlsError, handshakeTimeoutMs: number): string {
  switch (err.code) {
    case 'ERR_TLS_HANDSHAKE_TIMEOUT':
      return `no TLS handshake within ${handshakeTimeoutMs} ms`;
    case 'ERR_SSL_HTTP_REQUEST':
    case 'ERR_SSL_WRONG_VERSION_NUMBER':
    case 'ERR_SSL_PACKET_LENGTH_TOO_LONG':
      return `it does not speak TLS (plain TCP?) (${err.code})`;
    case 'ERR_SSL_UNSUPPORTED_PROTOCOL':
    case 'ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION':
      return `it offered no TLS version Tandem accepts (${TLS13} only) (${err.code})`;
    case 'ECONNRESET':
      return 'it closed the connection during the handshake';
    case undefined:
      return err.message;
    default:
      return chainProblem(err.code) ?? `${err.reason ?? err.message} (${err.code})`;
  }
}

/**
 * Logs refusals, each (code, channel, host, reason) at most once per
 * REFUSAL_QUIET_MS, then with how many were not logged. The channel is part
 * of the key: one misconfigured peer is refused on every channel it tries,
 * and each listener's refusal is worth its own line.
 */
class RefusalLog {
  private readonly seen = new Map<string, { at: number; quiet: number }>();

  constructor(private readonly logger: Logger | undefined) {}

  note(err: TransportError, channel: string, host: string, reason: string, fields: Record<string, unknown>): void {
    if (this.logger === undefined) return;
    const key = `${err.code}\u0000${channel}\u0000${host}\u0000${reason}`;
    const now = performance.now();
    const last = this.seen.get(key);
    if (last !== undefined && now - last.at < REFUSAL_QUIET_MS) {
      last.quiet++;
      return;
    }
    if (this.seen.size >= MAX_REFUSAL_KEYS) this.forgetOld(now);
    const quiet = last?.quiet ?? 0;
    this.seen.set(key, { at: now, quiet: 0 });
    const more = quiet > 0 ? ` (and ${quiet} more like it in the last ${Math.round((now - last!.at) / 1000)} s)` : '';
    this.logger.warn({ code: err.code, ...fields }, `${err.message}${more}`);
  }

  private forgetOld(now: number): void {
    for (const [key, v] of this.seen) if (now - v.at >= REFUSAL_QUIET_MS) this.seen.delete(key);
    // Still full: a flood of distinct refusals; forget the oldest rather than grow.
    if (this.seen.size >= MAX_REFUSAL_KEYS) this.seen.delete(this.seen.keys().next().value!);
  }
}

const remoteOf = (s: Socket): string => `${s.remoteAddress ?? 'an unknown address'}:${s.remotePort ?? '?'}`;
/** One live TCP connection to a listener: the same on the raw socket and on the TLS socket that wraps it. */
const connectionKey = (s: Socket): string => `${s.remoteAddress}|${s.remotePort}|${s.localAddress}|${s.localPort}`;

export function tlsTransport(options: TlsTransportOptions): Transport {
  const { name, peer, handshakeTimeoutMs } = options;
  let context: SecureContext;
  try {
    context = createSecureContext({ ca: options.ca, cert: options.cert, key: options.key, minVersion: TLS13, maxVersion: TLS13 });
  } catch (err) {
    // OpenSSL's words only (a key that does not match, a bad PEM); never the material.
    throw new TransportError(C.TRANSPORT_TLS_REFUSED, `TLS credentials of node "${name}" are unusable: ${(err as Error).message}`, { cause: err });
  }
  const refusals = new RefusalLog(options.logger);

  return {
    connect(to: Address, o: ConnectOptions): Promise<Duplex> {
      const where = `${o.peer} at ${formatAddress(to)}`;
      return new Promise((resolve, reject) => {
        let stage: 'tcp' | 'handshake' | 'acceptance' = 'tcp';
        const socket = tlsConnect({
          host: to.host,
          port: to.port,
          secureContext: context,
          minVersion: TLS13,
          maxVersion: TLS13,
          rejectUnauthorized: true,
          // The host is an address, not a name a certificate carries; the node name is checked on 'secureConnect'.
          checkServerIdentity: () => undefined,
        });
        socket.setNoDelay(true);
        // As over plain TCP: the kernel ends a connection whose peer vanished even when nothing is sent.
        socket.setKeepAlive(true, KEEPALIVE_DELAY_MS);
        const refuse = (code: TransportErrorCode, reason: string, cause?: unknown): void => {
          const err = new TransportError(code, `${where} refused: ${reason}`, cause === undefined ? undefined : { cause });
          finish(err);
          refusals.note(err, o.peer, to.host, reason, { peer: formatAddress(to), expected: peer });
        };
        const onConnect = (): void => {
          stage = 'handshake';
        };
        const onSecure = (): void => {
          const refusal = peerRefusal(socket, peer);
          if (refusal !== undefined) return refuse(refusal.code, refusal.reason);
          stage = 'acceptance';
          socket.on('readable', onReadable);
          onReadable();
        };
        const onReadable = (): void => {
          const first = socket.read(1) as Buffer | null;
          if (first === null) return;
          if (first[0] !== ACCEPTED) return refuse(C.TRANSPORT_TLS_REFUSED, `it answered 0x${first[0].toString(16)} where a Tandem listener says it accepted this node: not a Tandem channel`);
          finish();
        };
        const onError = (err: TlsError): void => {
          if (stage === 'tcp') return finish(new TransportError(C.TRANSPORT_CONNECT_FAILED, `cannot connect to ${where}: ${err.message}`, { cause: err }));
          if (stage === 'acceptance' || err.code === 'ECONNRESET') return refuse(C.TRANSPORT_TLS_REFUSED, notAccepted, err);
          refuse(C.TRANSPORT_TLS_REFUSED, handshakeProblem(err, handshakeTimeoutMs), err);
        };
        const notAccepted = `it closed the connection instead of accepting node "${name}": its log says why (another CA, or a peer name other than "${name}")`;
        const onClose = (): void => {
          if (stage === 'tcp') finish(new TransportError(C.TRANSPORT_CONNECT_FAILED, `cannot connect to ${where}: closed while connecting`));
          else refuse(C.TRANSPORT_TLS_REFUSED, stage === 'handshake' ? 'it closed the connection during the handshake' : notAccepted);
        };
        const timer = setTimeout(() => {
          const during = stage === 'tcp' ? '' : stage === 'handshake' ? ' (in the TLS handshake)' : ` (waiting for it to accept node "${name}")`;
          finish(new TransportError(C.TRANSPORT_CONNECT_TIMEOUT, `connecting to ${where} timed out after ${o.timeoutMs} ms${during}`));
        }, o.timeoutMs);
        let settled = false;
        function finish(err?: TransportError): void {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          socket.off('connect', onConnect);
          socket.off('secureConnect', onSecure);
          socket.off('readable', onReadable);
          socket.off('error', onError);
          socket.off('close', onClose);
          if (err === undefined) {
            writeInRecords(socket);
            return resolve(socket);
          }
          socket.destroy();
          reject(err);
        }
        socket.once('connect', onConnect);
        socket.once('secureConnect', onSecure);
        socket.on('error', onError);
        socket.once('close', onClose);
      });
    },

    listen(at: Address, onConnection: OnConnection, o: ListenOptions): Promise<TransportListener> {
      const server = createServer({
        // A server makes its context from these (it ignores a `secureContext` option).
        ca: options.ca,
        cert: options.cert,
        key: options.key,
        minVersion: TLS13,
        maxVersion: TLS13,
        requestCert: true,
        // Checked on 'secureConnection' instead, so that a refused certificate is logged with why, not dropped silently.
        rejectUnauthorized: false,
        handshakeTimeout: handshakeTimeoutMs,
        // Not while handshaking: a half-open TLS server socket takes a dialer's
        // FIN mid-handshake (how Node's client drops a listener it refuses)
        // for a half-close and sits out the handshake timeout, with nothing
        // logged but a timeout. Half-open is set on accepted connections below.
        allowHalfOpen: false,
      });
      let closed = false;
      /**
       * Connections still in their handshake: dropped on close() (they were
       * never accepted), and the ones a peer closes mid-handshake are logged
       * from here, since by the time Node reports those, the TLS socket no
       * longer knows its peer's address.
       */
      const handshaking = new Map<string, Socket>();
      const refused = (socket: Socket, remote: string, code: TransportErrorCode, reason: string, cause?: unknown): void => {
        const err = new TransportError(code, `refused a connection for ${o.purpose} from ${remote}: ${reason}`, cause === undefined ? undefined : { cause });
        refusals.note(err, o.purpose, remote.slice(0, remote.lastIndexOf(':')), reason, { remote, expected: peer });
        socket.destroy();
      };
      server.on('connection', (raw: Socket) => {
        raw.setNoDelay(true);
        raw.setKeepAlive(true, KEEPALIVE_DELAY_MS);
        const key = connectionKey(raw);
        const remote = remoteOf(raw);
        if (handshaking.size >= MAX_HANDSHAKES) {
          // The Map keeps insertion order: its first entry has handshaken longest.
          const [oldKey, oldest] = handshaking.entries().next().value!;
          handshaking.delete(oldKey);
          refused(oldest, remoteOf(oldest), C.TRANSPORT_TLS_REFUSED, `no TLS handshake before ${MAX_HANDSHAKES} newer connections arrived`);
        }
        handshaking.set(key, raw);
        raw.once('close', () => {
          if (handshaking.get(key) !== raw) return;
          handshaking.delete(key);
          if (!closed) refused(raw, remote, C.TRANSPORT_TLS_REFUSED, 'it closed the connection during the handshake (as a peer does that refuses this node\'s certificate)');
        });
      });
      server.on('tlsClientError', (err: TlsError, socket: TLSSocket) => {
        // Gone already: the raw socket's 'close' above says so, with the address.
        if (socket.remoteAddress === undefined) return socket.destroy();
        handshaking.delete(connectionKey(socket));
        // Node reports a handshake timeout here but leaves the connection open: close it.
        refused(socket, remoteOf(socket), C.TRANSPORT_TLS_REFUSED, handshakeProblem(err, handshakeTimeoutMs), err);
      });
      server.on('secureConnection', (socket: TLSSocket) => {
        handshaking.delete(connectionKey(socket));
        if (closed) {
          socket.destroy();
          return;
        }
        const remote = remoteOf(socket);
        const refusal = peerRefusal(socket, peer);
        if (refusal !== undefined) return refused(socket, remote, refusal.code, refusal.reason);
        socket.setNoDelay(true);
        // Read when the peer's end arrives, so setting it now is enough.
        if (o.allowHalfOpen === true) socket.allowHalfOpen = true;
        socket.write(Buffer.of(ACCEPTED));
        writeInRecords(socket);
        onConnection(socket, remote);
      });
      return listenOn(server, at, o, () => {
        closed = true;
        for (const raw of handshaking.values()) raw.destroy();
        handshaking.clear();
      });
    },
  };
}
