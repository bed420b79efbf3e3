/**
 * The secondary's listening side: one connection from one primary at a
 * time; the forward direction is the checkpointed Xen stream, the reverse
 * direction carries back-channel acks. Decoding and applying live in
 * ReplicationSession / EpochReceiver; this file is the connection glue and
 * the policy around it (single primary, refusal, close, events).
 */
import { EventEmitter } from 'node:events';
import type { Duplex } from 'node:stream';
import type { ColoReplicaGuest, PageReplicaGuest, RestoreReplicaGuest } from '../domain/binding.js';
import { ErrorCodes, StreamError } from '../errors.js';
import { AckStatus, encodeBackRecord, type AckStatusCode } from '../transport/backchannel.js';
import type { Transport, TransportListener } from '../transport/transport.js';
import type { Address } from '../util/address.js';
import type { Logger } from '../util/logger.js';
import type { EpochCommit, ReplicaDevice, ReplicaState } from './receiver.js';
import { PageIntake, type IntakeAction, type ReplicaIntake, type StreamIntake } from './intake.js';
import { PreludeReader, type PreludeResult } from './prelude.js';
import { RestoreIntake } from './restore-intake.js';
import { ColoControl } from '../stream/format.js';

export const DEFAULT_MAX_EPOCH_BYTES = 256 * 1024 * 1024;
export const DEFAULT_MAX_RECORD_BYTES = 16 * 1024 * 1024;
export const DEFAULT_CLOSE_GRACE_MS = 2000;
export const DEFAULT_PRELUDE_TIMEOUT_MS = 2000;
/** Connections still to name their generation; more are refused at once. */
const MAX_PENDING = 4;
/** Acks the primary has not read yet; beyond this it is not reading its back-channel at all. */
const MAX_UNREAD_ACK_BYTES = 1024 * 1024;

export interface SecondaryServerOptions {
  /** What the stream restores into (page by page, or through the hypervisor's restore), and its digest. */
  replica: Pick<PageReplicaGuest, 'domain' | 'restore' | 'digest'> | Pick<RestoreReplicaGuest, 'domain' | 'restore' | 'digest'>;
  transport: Transport;
  /** Where to accept the primary; port 0 picks one, start() returns it. */
  listen: Address;
  logger: Logger;
  /** Most stream bytes one buffered epoch may hold (default 256 MiB). */
  maxEpochBytes?: number;
  /** Largest non-page record body accepted (default 16 MiB). */
  maxRecordBytes?: number;
  /** How long a refused stream's socket may stay half-closed while its ack drains (default 2 s). */
  closeGraceMs?: number;
  /** Replica devices beyond memory (e.g. the disks), restored with the epochs. */
  devices?: readonly ReplicaDevice[];
  /** COLO: the replica runs as the secondary's guest between checkpoints (docs/colo.md). */
  colo?: ColoReplicaHooks;
  /**
   * The newest primary generation this secondary knows of (its heartbeat
   * channel's). Given, every stream must open with TANDEM_PRIMARY: one from
   * an older generation is refused, and one of the current or a newer
   * generation replaces the stream in progress (the primary reconnecting
   * after a partition, whose old connection this side may not have noticed
   * is dead). Absent: streams are taken as they come, one at a time.
   */
  primaries?: { readonly generation: number };
  /** How long a new connection has to name its generation (default 2 s). */
  preludeTimeoutMs?: number;
}

/** What the server drives of COLO's running replica at each checkpoint. */
export type ColoReplicaHooks = Pick<ColoReplicaGuest, 'suspend' | 'pause' | 'resume'>;

export interface PrimaryGone {
  remote: string;
  /** The epoch the replica holds (0: none; it was syncing when the primary went). */
  lastEpoch: number;
  /** The epoch that was arriving and was discarded. */
  tornEpoch: number;
}

export interface StreamFailure {
  remote: string;
  epoch: number;
  status: AckStatusCode;
  reason: string;
  /** Stable error code, for a StreamError. */
  code: string | undefined;
}

export interface SecondaryEvents {
  epoch: [EpochCommit];
  state: [ReplicaState];
  /** The connection closed without a clean END and without the secondary having refused the stream. */
  'primary-gone': [PrimaryGone];
  'stream-end': [{ remote: string; lastEpoch: number }];
  'stream-failed': [StreamFailure];
  'connection-refused': [{ remote: string }];
}

interface Link {
  socket: Duplex;
  remote: string;
  session: StreamIntake;
  /** The stream is over on our side (END or refusal): later bytes are drained and dropped. */
  finished: boolean;
  /** The primary closed or reset the connection before a clean END, and before we refused the stream. */
  peerGone: boolean;
  /** Dropped for a newer stream (replaced, or its primary superseded): not a lost primary. */
  replaced: boolean;
  /** The generation its TANDEM_PRIMARY named (undefined without a gate). */
  generation: number | undefined;
  /** The epoch that was arriving when the stream stopped. */
  tornEpoch: number;
  grace: NodeJS.Timeout | undefined;
  /**
   * The replica taking an epoch whose CHECKPOINT_END has arrived (its device
   * model loading, its hypervisor reading it). The epoch is whole, so a
   * connection lost meanwhile does not tear it: the close waits for the
   * work, which commits the epoch or refuses it.
   */
  loading: Promise<void> | undefined;
  closed: Promise<void>;
  resolveClosed: () => void;
  /** Monotonic ms of the last bytes from the primary on this connection. */
  lastDataAt: number;
}

export class SecondaryServer extends EventEmitter<SecondaryEvents> {
  private server: TransportListener | undefined;
  private intake: ReplicaIntake | undefined;
  /** The primary whose stream is in progress. */
  private link: Link | undefined;
  /** Every open socket, including ones still draining after their stream ended or was refused. */
  private readonly sockets = new Set<Link>();
  private stopping = false;
  private reportedState: ReplicaState = 'idle';
  /** Connections still to name their generation. */
  private readonly pending = new Set<Duplex>();
  /** The generation of the primary whose checkpoint the replica holds. */
  private held: number | undefined;

  constructor(private readonly options: SecondaryServerOptions) {
    super();
  }

  get state(): ReplicaState {
    return this.intake?.state ?? 'idle';
  }

  /** The epoch the replica holds; 0 when it holds no complete checkpoint. */
  get lastEpoch(): number {
    return this.intake?.lastEpoch ?? 0;
  }

  /** The generation of the primary whose checkpoint the replica holds (undefined: unknown, or none held). */
  get replicaGeneration(): number | undefined {
    return this.lastEpoch > 0 ? this.held : undefined;
  }

  /** Remote address of the active primary, if one is connected. */
  get primary(): string | undefined {
    return this.link?.remote;
  }

  /**
   * How long the active primary's connection has carried nothing, ms
   * (undefined: none open). A partition or a hung primary leaves a TCP
   * connection open but silent; the failover rule counts a silent one as gone.
   */
  get streamSilentMs(): number | undefined {
    return this.link === undefined ? undefined : performance.now() - this.link.lastDataAt;
  }

  /** Open primary connections, counting refused ones still draining their last ack. */
  get openConnections(): number {
    return this.sockets.size;
  }

  /** The replica's digest: equal to the primary's at the checkpoint the replica holds (undefined: the replica has none). */
  digest(): string | undefined {
    return this.options.replica.digest?.();
  }

  async start(): Promise<Address> {
    if (this.server !== undefined) throw new Error('secondary server already started');
    // Kept across stop()/start(): it knows which epoch the replica holds.
    const { replica } = this.options;
    const maxEpochBytes = this.options.maxEpochBytes ?? DEFAULT_MAX_EPOCH_BYTES;
    this.intake ??= replica.restore !== undefined ? new RestoreIntake(replica.restore, { maxEpochBytes }) : new PageIntake(replica.domain, { maxEpochBytes, devices: this.options.devices });
    // Half-open: a primary that half-closes a truncated stream still gets its STREAM_ERROR ack.
    this.server = await this.options.transport.listen(this.options.listen, (socket, remote) => this.onConnection(socket, remote), { purpose: 'the primary', listener: 'replication', allowHalfOpen: true });
    const address = this.server.address;
    this.options.logger.info({ address: address.host, port: address.port }, `secondary listening on ${address.host}:${address.port}`);
    return address;
  }

  /** Stops listening and drops the active primary; an epoch in flight is discarded. */
  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    this.stopping = true;
    try {
      const listening = server === undefined ? Promise.resolve() : server.close();
      for (const socket of this.pending) socket.destroy();
      this.pending.clear();
      const open = [...this.sockets];
      for (const link of open) link.socket.destroy();
      await Promise.all(open.map((link) => link.closed));
      await listening;
    } finally {
      this.stopping = false;
    }
  }

  /**
   * A primary generation newer than the active stream's is known now (heard
   * on the heartbeat channel): that stream's primary is superseded, and its
   * stream is dropped before it can have another epoch acked.
   */
  supersede(): void {
    const link = this.link;
    const known = this.options.primaries?.generation;
    if (link === undefined || known === undefined || link.generation === undefined || link.generation >= known) return;
    this.options.logger.warn({ remote: link.remote, generation: link.generation, known }, `the stream from ${link.remote} is of generation ${link.generation}, superseded by generation ${known}: dropped`);
    this.drop(link);
  }

  private onConnection(socket: Duplex, remote: string): void {
    const log = this.options.logger;
    const refuse = (why: string): void => {
      log.warn({ remote, active: this.link?.remote }, `refused a primary connection from ${remote}: ${why}`);
      socket.destroy();
      this.notify('connection-refused', { remote });
    };
    if (this.stopping || this.intake === undefined) return refuse('the secondary is stopping');
    if (this.options.primaries === undefined) {
      if (this.link !== undefined) return refuse(`the primary at ${this.link.remote} is active`);
      this.activate(socket, remote, [], undefined);
      return;
    }
    if (this.pending.size >= MAX_PENDING) return refuse(`${MAX_PENDING} connections are already naming their generation`);
    this.pending.add(socket);
    const reader = new PreludeReader();
    const timeoutMs = this.options.preludeTimeoutMs ?? DEFAULT_PRELUDE_TIMEOUT_MS;
    const timer = setTimeout(() => finish(() => refuse(`it did not name its generation within ${timeoutMs} ms`)), timeoutMs);
    const finish = (then: () => void): void => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('close', onClose);
      this.pending.delete(socket);
      then();
    };
    const onClose = (): void => finish(() => {});
    const onData = (chunk: Buffer): void => {
      let result: PreludeResult;
      try {
        result = reader.push(chunk);
      } catch (err) {
        finish(() => {
          log.warn({ remote, err }, `refused a primary connection from ${remote}: ${err instanceof Error ? err.message : String(err)}`);
          socket.destroy();
          this.notify('connection-refused', { remote });
        });
        return;
      }
      if (result.done) finish(() => this.admit(socket, remote, result.generation, result.chunks));
    };
    socket.on('data', onData);
    socket.on('close', onClose);
    socket.on('error', () => {});
  }

  /** A connection named its generation: refused if superseded, else it becomes the stream (replacing the active one). */
  private admit(socket: Duplex, remote: string, generation: number, chunks: Buffer[]): void {
    const log = this.options.logger;
    const known = Math.max(this.options.primaries?.generation ?? 0, this.link?.generation ?? 0);
    if (generation < known || this.stopping) {
      const reason = this.stopping ? 'the secondary is stopping' : `generation ${generation} is superseded: this secondary knows generation ${known}`;
      log.warn({ remote, generation, known, code: ErrorCodes.STREAM_STALE_PRIMARY }, `refused the stream from ${remote}: ${reason} [${ErrorCodes.STREAM_STALE_PRIMARY}]`);
      // Told why, so a superseded primary logs it; then closed.
      socket.write(encodeBackRecord({ type: 'ACK', epoch: 1, status: AckStatus.STREAM_ERROR, reason }));
      socket.end();
      setTimeout(() => socket.destroy(), this.options.closeGraceMs ?? DEFAULT_CLOSE_GRACE_MS).unref();
      this.notify('connection-refused', { remote });
      return;
    }
    const old = this.link;
    if (old === undefined) {
      this.activate(socket, remote, chunks, generation);
      return;
    }
    // The same primary reconnecting (its old connection is dead, whether or not this side noticed) or a newer one.
    log.warn({ remote, generation, replaced: old.remote }, `primary connected from ${remote} (generation ${generation}): replacing the stream from ${old.remote}`);
    socket.pause();
    this.drop(old);
    void old.closed.then(() => {
      if (socket.destroyed || this.stopping || this.link !== undefined) {
        socket.destroy();
        return;
      }
      this.activate(socket, remote, chunks, generation);
      socket.resume();
    });
  }

  /** Ends a stream for a newer one: the epoch in flight is discarded, and nobody is told the primary is gone. */
  private drop(link: Link): void {
    link.replaced = true;
    if (this.link === link) this.link = undefined;
    link.socket.destroy();
  }

  private activate(socket: Duplex, remote: string, chunks: Buffer[], generation: number | undefined): void {
    const log = this.options.logger;
    const colo = this.options.colo !== undefined;
    // What this stream's primary may send beyond Xen's stream. Not in COLO: the replica runs between checkpoints, so its pages are no delta's base.
    const features = colo ? 0 : this.intake!.features;
    const session = this.intake!.open({
      maxRecordBytes: this.options.maxRecordBytes ?? DEFAULT_MAX_RECORD_BYTES,
      colo,
      features,
    });
    let resolveClosed!: () => void;
    const closed = new Promise<void>((resolve) => (resolveClosed = resolve));
    const link: Link = { socket, remote, session, finished: false, peerGone: false, replaced: false, generation, tornEpoch: 0, grace: undefined, loading: undefined, closed, resolveClosed, lastDataAt: performance.now() };
    this.link = link;
    this.sockets.add(link);
    // COLO: a guest still running from an earlier stream's checkpoint must stop before this stream's pre-copy writes its RAM.
    this.options.colo?.pause();
    session.start();
    // The offer goes first on the back-channel, ahead of any ack: a primary holding epoch 1 has seen it.
    if (features !== 0) this.sendAck(link, encodeBackRecord({ type: 'FEATURES', features }));
    log.info({ remote, lastEpoch: this.lastEpoch }, `primary connected from ${remote}; replica syncing: not consistent with this stream until its first checkpoint`);
    this.syncState();

    // Each chunk is applied before the next is read, so a primary that sends
    // faster than epochs apply is slowed by TCP flow control.
    // After the stream ended or was refused the session drops what still arrives, so the
    // socket keeps draining (no reset that could destroy the ack in flight).
    socket.on('data', (chunk: Buffer) => {
      link.lastDataAt = performance.now();
      session.push(chunk, (a) => this.perform(link, a));
      this.syncState();
    });
    socket.on('end', () => {
      if (!link.finished) {
        link.peerGone = true;
        session.end((a) => this.perform(link, a)); // answers and half-closes
      }
      this.syncState();
    });
    socket.on('error', (err) => log.warn({ remote, err: err.message }, `connection from ${remote}: ${err.message}`));
    socket.on('close', () => this.onClose(link));
    // What the prelude read: the session decodes the stream from its first byte.
    for (const chunk of chunks) {
      session.push(chunk, (a) => this.perform(link, a));
      this.syncState();
    }
  }

  /** COLO, at a checkpoint's announcement: stop the guest, tell the primary which pages it touched. */
  private coloSuspend(link: Link, epoch: number): void {
    const pfns = this.options.colo!.suspend();
    this.options.logger.debug({ epoch, secondaryDirty: pfns.length }, `secondary guest suspended for epoch ${epoch}`);
    this.sendAck(link, Buffer.concat([
      encodeBackRecord({ type: 'CHECKPOINT_STATE', controlId: ColoControl.SVM_SUSPENDED }),
      encodeBackRecord({ type: 'CHECKPOINT_DIRTY_PFN_LIST', pfns }),
    ]));
  }

  /** COLO, once a checkpoint is applied: ready, run the guest from it, resumed. */
  private coloResume(link: Link, epoch: number): void {
    this.sendAck(link, encodeBackRecord({ type: 'CHECKPOINT_STATE', controlId: ColoControl.SVM_READY }));
    this.options.colo!.resume(epoch);
    this.sendAck(link, encodeBackRecord({ type: 'CHECKPOINT_STATE', controlId: ColoControl.SVM_RESUMED }));
  }

  private perform(link: Link, a: IntakeAction): void {
    const log = this.options.logger;
    const { remote } = link;
    switch (a.type) {
      case 'committed': {
        const c = a.commit;
        if (c.epoch === 1) {
          this.held = link.generation;
          log.info({ remote, ...c }, `replica protected: consistent at epoch 1 of the stream from ${remote}`);
        }
        else log.debug({ remote, ...c }, `epoch ${c.epoch} applied`);
        this.notify('epoch', c);
        return;
      }
      case 'wait':
        this.wait(link, a.work);
        return;
      case 'ack':
        this.sendAck(link, encodeBackRecord(a.ack));
        if (this.options.colo !== undefined && a.ack.status === AckStatus.APPLIED) this.coloResume(link, a.ack.epoch);
        return;
      case 'colo-new':
        this.coloSuspend(link, a.epoch);
        return;
      case 'invalidated':
        log.warn({ remote, previousEpoch: a.previousEpoch, reason: a.reason }, `epoch ${a.previousEpoch} of the previous stream is gone: ${a.reason} (stream from ${remote})`);
        return;
      case 'discarded':
        log.warn({ remote, epoch: a.epoch, bytes: a.bytes }, `stream from ${remote} ended without committing epoch ${a.epoch}; discarded ${a.bytes} bytes`);
        return;
      case 'close':
        link.finished = true;
        // A refused primary reconnects at once, possibly before this socket has closed: it must not count as active.
        if (this.link === link) this.link = undefined;
        if (a.outcome !== 'end') link.tornEpoch = a.epoch;
        if (a.outcome === 'end') {
          if (a.atCheckpoint === true) log.info({ remote, lastEpoch: this.lastEpoch }, `stream from ${remote} ended right after epoch ${this.lastEpoch}, its failover point (whether its primary stopped or died is for the heartbeats to tell)`);
          else log.info({ remote, lastEpoch: this.lastEpoch }, `stream from ${remote} ended cleanly at epoch ${this.lastEpoch}`);
          // COLO: protection stopped in order; nothing compares this guest's output any more, so it stops too
          // (a promotion later goes on from where it stopped, as from any COLO run).
          this.options.colo?.pause();
          this.closeGracefully(link);
          this.notify('stream-end', { remote, lastEpoch: this.lastEpoch });
          return;
        }
        if (a.outcome === 'over-buffer-limit') {
          log.warn({ remote, epoch: a.epoch, lastEpoch: this.lastEpoch }, `stream from ${remote} refused: ${a.reason}; epoch discarded, replica at epoch ${this.lastEpoch}`);
          this.fail(link, { remote, epoch: a.epoch, status: AckStatus.OVER_BUFFER_LIMIT, reason: a.reason, code: undefined });
          return;
        }
        this.logStreamError(link, a.epoch, a.error);
        this.fail(link, {
          remote,
          epoch: a.epoch,
          status: AckStatus.STREAM_ERROR,
          reason: a.error.message,
          code: a.error instanceof StreamError ? a.error.code : undefined,
        });
        return;
    }
  }

  private logStreamError(link: Link, epoch: number, error: Error): void {
    const { remote } = link;
    const lastEpoch = this.lastEpoch;
    const cause = error.cause instanceof Error ? error.cause.message : undefined;
    if (error instanceof StreamError) {
      this.options.logger.error(
        { remote, epoch, lastEpoch, code: error.code, offset: error.offset, record: error.record, cause },
        `stream from ${remote} refused in epoch ${epoch}: ${error.message} [${error.code}]; replica at epoch ${lastEpoch}`,
      );
    } else {
      this.options.logger.error({ remote, epoch, lastEpoch, err: error }, `stream from ${remote} failed in epoch ${epoch}: ${error.message}; replica at epoch ${lastEpoch}`);
    }
  }

  /** Stops reading the primary while the replica does the stream's asynchronous work (a device model's load, a hypervisor's read), then goes on. */
  private wait(link: Link, work: () => Promise<void>): void {
    const act = (a: IntakeAction): void => this.perform(link, a);
    link.socket.pause();
    const resume = (): void => {
      // A finished stream still drains (its later bytes are dropped), so the peer sees its ack and closes.
      if (!link.session.blocked) link.socket.resume();
      this.syncState();
    };
    link.loading = Promise.resolve()
      .then(work)
      .then(
        () => {
          link.loading = undefined;
          link.session.settled({ ok: true }, act);
          resume();
        },
        (error: unknown) => {
          link.loading = undefined;
          link.session.settled({ ok: false, error }, act);
          resume();
        },
      );
  }

  private fail(link: Link, failure: StreamFailure): void {
    this.notify('stream-failed', failure);
    this.closeGracefully(link);
  }

  /** Half-closes so queued acks drain, and destroys the socket if the peer never closes its side. */
  private closeGracefully(link: Link): void {
    link.socket.end();
    link.grace ??= setTimeout(() => link.socket.destroy(), this.options.closeGraceMs ?? DEFAULT_CLOSE_GRACE_MS);
  }

  /** Acks are queued even when the socket is busy: each is tiny and there is at most one per epoch. */
  private sendAck(link: Link, ack: Buffer): void {
    const { socket } = link;
    if (socket.destroyed || !socket.writable) return;
    if (socket.writableLength > MAX_UNREAD_ACK_BYTES) {
      link.finished = true;
      if (this.link === link) this.link = undefined;
      link.tornEpoch = link.session.abort();
      this.options.logger.error({ remote: link.remote, lastEpoch: this.lastEpoch }, `primary ${link.remote} is not reading its acks; dropping the connection`);
      socket.destroy();
      return;
    }
    socket.write(ack);
  }

  private onClose(link: Link): void {
    if (link.loading !== undefined) {
      // Its acks go nowhere now, but the epoch being loaded is whole and commits (or is refused) first.
      // The peer went first, whatever the load's outcome.
      if (!link.finished && !this.stopping && !link.replaced) link.peerGone = true;
      void link.loading.then(() => this.onClose(link));
      return;
    }
    clearTimeout(link.grace);
    const { remote } = link;
    if (!link.finished) {
      // Reset or destroyed mid-stream: no chance to ack.
      link.finished = true;
      link.tornEpoch = link.session.abort();
      if (link.replaced) {
        this.options.logger.info({ remote, tornEpoch: link.tornEpoch }, `the stream from ${remote} ended for a newer one: epoch ${link.tornEpoch} discarded, replica at epoch ${this.lastEpoch}`);
      } else if (this.stopping) {
        this.options.logger.info({ remote, tornEpoch: link.tornEpoch }, `secondary stopping: dropped the stream from ${remote}, epoch ${link.tornEpoch} discarded`);
      } else {
        link.peerGone = true;
      }
    }
    if (link.peerGone && !this.stopping && !link.replaced) {
      // Whether the primary died or only the link broke is the failure detector's call, not ours.
      const gone: PrimaryGone = { remote, lastEpoch: this.lastEpoch, tornEpoch: link.tornEpoch };
      this.options.logger.warn({ ...gone }, `primary ${remote} gone without a clean END; epoch ${gone.tornEpoch} discarded, replica at epoch ${gone.lastEpoch}`);
      this.notify('primary-gone', gone);
    }
    if (this.link === link) this.link = undefined;
    this.sockets.delete(link);
    this.syncState();
    link.resolveClosed();
  }

  private syncState(): void {
    const state = this.state;
    if (state === this.reportedState) return;
    this.reportedState = state;
    this.notify('state', state);
  }

  /** Observers must not be able to break replication: a throwing listener is logged, not propagated. */
  private notify<K extends keyof SecondaryEvents>(event: K, ...args: SecondaryEvents[K]): void {
    try {
      (this.emit as (e: K, ...a: SecondaryEvents[K]) => boolean)(event, ...args);
    } catch (err) {
      this.options.logger.error({ err, event }, `a '${String(event)}' listener threw`);
    }
  }
}
