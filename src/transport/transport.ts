/**
 * The transport between the two hosts: how every channel between them (the
 * replication link, the heartbeat channel, the COLO net link) dials and
 * listens. It is chosen in one place (./select.ts: mutual TLS, ./tls.ts, or
 * on loopback only plain TCP, ./tcp.ts) and injected where those channels
 * are built, and tests run the channels over an in-memory transport.
 *
 * A connection is a Duplex stream of bytes; what flows on it is each
 * channel's own business.
 */
import type { Duplex } from 'node:stream';
import type { Address } from '../util/address.js';

export interface ConnectOptions {
  /** Give up (TRANSPORT_CONNECT_TIMEOUT) after this long. */
  timeoutMs: number;
  /** Who is dialed, for error messages ("the secondary"). */
  peer: string;
}

export interface ListenOptions {
  /** Who connects, for error messages ("heartbeats"). */
  purpose: string;
  /** What listens, naming it when it cannot ("replication": "replication listener 127.0.0.1:7700: address in use"). */
  listener?: string;
  /** Keep our side writable after the peer ends its side (to answer a truncated stream). */
  allowHalfOpen?: boolean;
}

/** An accepted connection and who it came from (HOST:PORT), for logs. */
export type OnConnection = (stream: Duplex, remote: string) => void;

export interface TransportListener {
  /** Where it listens (a requested port 0 resolved). */
  readonly address: Address;
  /** Stops accepting; connections already accepted stay open. */
  close(): Promise<void>;
}

export interface Transport {
  /** Dials `to`; rejects with a TransportError naming the peer and the address. */
  connect(to: Address, options: ConnectOptions): Promise<Duplex>;
  /** Listens at `at`; rejects with a TransportError when it cannot. */
  listen(at: Address, onConnection: OnConnection, options: ListenOptions): Promise<TransportListener>;
}
