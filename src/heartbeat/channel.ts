/**
 * The heartbeat channel: a TCP connection of its own between primary and
 * secondary, separate from the replication link, so a large checkpoint
 * queued on the link never delays a heartbeat behind it (one socket's send
 * queue is FIFO; two sockets' are not ordered against each other). The side
 * with `listen` (the secondary, on its heartbeat port) accepts; the side with
 * `connect` (the primary) dials and redials with capped exponential backoff.
 * Both send a frame every interval and feed a FailureDetector with what they
 * receive; a dropped connection by itself declares nothing (the detector
 * decides, on silence), so a brief network blip followed by a reconnect
 * inside the timeout never looks like a dead peer.
 *
 * Generation rules (fencing):
 *
 * - Generations only ever come into existence by promotion. The first
 *   primary runs with generation 1 (or whatever the caller persisted).
 * - A secondary's generation follows the primary it protects: when it hears
 *   a primary with a higher generation than its own, it adopts it.
 * - A secondary that promotes itself after its primary was declared dead
 *   takes generation = max(own, highest generation it heard) + 1
 *   (promote()), i.e. the old primary's generation + 1.
 * - A side that runs as primary and hears a peer with a generation higher
 *   than its own (whatever role the peer claims: a higher number is proof
 *   that a newer primary exists) is fenced: 'fenced' is emitted once with
 *   both generations, and the caller (the old primary) must stop serving.
 * - A peer claiming primary with a generation lower than ours is stale:
 *   'stale' is emitted, its heartbeats do not count as life for the
 *   detector, and we keep sending ours so it hears our generation and
 *   fences itself.
 * - Two primaries with the same generation cannot be resolved here; the
 *   arbiter (design.md) prevents it by being consulted before promotion.
 *
 * The listening side keeps one connection: a new one replaces the old,
 * because a peer that reconnects is usually right that the old connection
 * is dead before our side has noticed.
 */
import { randomInt } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { Duplex } from 'node:stream';
import type { Transport, TransportListener } from '../transport/transport.js';
import type { Address } from '../util/address.js';
import type { Logger } from '../util/logger.js';
import { monotonicClock, type Clock } from './clock.js';
import { HeartbeatDecoder, FRAME_SIZE, encodeHeartbeat, type Heartbeat, type Intent, type Role } from './codec.js';
import { FailureDetector, resolveTiming, type PeerState, type ResolvedTiming } from './detector.js';
import { HeartbeatError, HeartbeatErrorCodes as C } from './errors.js';

export interface HeartbeatChannelOptions {
  transport: Transport;
  role: Role;
  /** This side's generation (a positive integer below 2^53). */
  generation: number;
  /** Accept the peer here (the secondary's heartbeat port; port 0 picks one, see address()). */
  listen?: Address;
  /** Dial the peer here (the primary). Exactly one of listen / connect. */
  connect?: Address;
  intervalMs?: number;
  timeoutMs?: number;
  suspectAfterMs?: number;
  /** First redial delay (default: the interval) and its cap (default: half the timeout). */
  backoff?: { initialMs?: number; maxMs?: number };
  /** This side's last committed (primary) or acked (secondary) epoch, sent in every frame. */
  epoch?: () => number;
  /**
   * The channel's time (default monotonic): the detector's clock, and the
   * timers of the beat and of the redial backoff, so that tests can run the
   * whole channel on virtual time.
   */
  clock?: Clock;
  logger?: Logger;
  /** Non-zero u32 naming this run; random by default. */
  incarnation?: number;
}

export interface PeerStateEvent {
  from: PeerState;
  state: PeerState;
  reason: string;
  /** Detector clock time, ms. */
  at: number;
  incarnation: number;
}

export interface HeartbeatEvents {
  /** The peer's state changed (per peer incarnation). */
  peer: [PeerStateEvent];
  /** Every valid frame, with the detector-clock time it arrived. */
  heartbeat: [Heartbeat & { receivedAt: number }];
  /** The peer's generation, first seen or raised. */
  generation: [{ generation: number; role: Role }];
  /** The peer's epoch changed. */
  epoch: [{ epoch: number; role: Role }];
  /** We run as primary and a newer generation exists: stop serving. */
  fenced: [{ ownGeneration: number; peerGeneration: number }];
  /** A peer claims primary with an older generation than ours. */
  stale: [{ ownGeneration: number; peerGeneration: number }];
  connected: [{ remote: string }];
  disconnected: [{ remote: string; reason: string }];
  /** The peer sent a malformed frame; its connection was closed. */
  protocolError: [HeartbeatError];
  /** The peer is stopping in order, and says what this side should do about it (again if it changes its mind). */
  leaving: [{ intent: Exclude<Intent, 'running'>; epoch: number; role: Role }];
  /** The primary said it is stranded, or that it no longer is (detector-clock ms of the frame that said so). */
  stranded: [{ stranded: boolean; at: number }];
}

interface Connection {
  socket: Duplex;
  remote: string;
  decoder: HeartbeatDecoder;
  /** Set by the first valid frame on this connection. */
  peerIncarnation: number | undefined;
  closeReason: string | undefined;
  /** Detector-clock ms of the last bytes received (or of adoption). */
  lastDataAt: number;
}

/** Frames queued in the kernel-bound buffer beyond which we skip a beat: stale heartbeats help nobody. */
const MAX_QUEUED_FRAMES = 16;

export class HeartbeatChannel extends EventEmitter<HeartbeatEvents> {
  private running = false;
  private timing: ResolvedTiming | undefined;
  private server: TransportListener | undefined;
  private conn: Connection | undefined;
  private cancelBeat: (() => void) | undefined;
  private cancelRedial: (() => void) | undefined;
  private attempts = 0;
  private sequence = 0;
  private ownIncarnation = 0;
  private ownRole: Role;
  private ownGeneration: number;
  private detector: FailureDetector | undefined;
  private peerIncarnation: number | undefined;
  private peerGeneration = 0;
  private peerEpoch: number | undefined;
  private ownIntent: Intent = 'running';
  private peerIntentValue: Exclude<Intent, 'running'> | undefined;
  private ownStranded = false;
  /** Detector-clock ms since which the current peer incarnation says it is stranded (undefined: it does not). */
  private peerStrandedAt: number | undefined;
  private fencedBy: number | undefined;

  constructor(private readonly options: HeartbeatChannelOptions) {
    super();
    this.ownRole = options.role;
    this.ownGeneration = options.generation;
  }

  get role(): Role {
    return this.ownRole;
  }

  get generation(): number {
    return this.ownGeneration;
  }

  /** Highest generation heard from a peer (0 before any). */
  get highestPeerGeneration(): number {
    return this.peerGeneration;
  }

  /** What the current peer incarnation said it does on leaving (undefined: it runs). */
  get peerIntent(): Exclude<Intent, 'running'> | undefined {
    return this.peerIntentValue;
  }

  /**
   * This side is stopping in order: from now on every heartbeat says what
   * the peer should do (stand down: not take over; hand over: take over now),
   * starting with one sent at once.
   */
  leave(intent: Exclude<Intent, 'running'>): void {
    this.ownIntent = intent;
    this.beat();
  }

  /**
   * A primary says on every heartbeat whether it is stranded (see the
   * codec): it holds its output for want of a replica and of the arbiter's
   * authority. Sent at once when it changes.
   */
  setStranded(stranded: boolean): void {
    if (stranded === this.ownStranded) return;
    if (stranded && this.ownRole !== 'primary') throw new HeartbeatError(C.HEARTBEAT_BAD_OPTIONS, 'only a primary is stranded');
    this.ownStranded = stranded;
    this.beat();
  }

  /** For how long the current peer incarnation has said it is stranded, ms (undefined: it does not say so). */
  get peerStrandedMs(): number | undefined {
    return this.peerStrandedAt === undefined ? undefined : this.clock.now() - this.peerStrandedAt;
  }

  get peerState(): PeerState {
    return this.detector?.state ?? 'unknown';
  }

  get fenced(): boolean {
    return this.fencedBy !== undefined;
  }

  get incarnation(): number {
    return this.ownIncarnation;
  }

  /** Where the listening side listens (a requested port 0 resolved). */
  address(): Address | undefined {
    return this.server?.address;
  }

  async start(): Promise<void> {
    if (this.running) return;
    const o = this.options;
    const bad = (m: string): never => {
      throw new HeartbeatError(C.HEARTBEAT_BAD_OPTIONS, m);
    };
    this.timing = resolveTiming(o);
    if ((o.listen === undefined) === (o.connect === undefined)) bad('exactly one of listen and connect is required');
    if (!Number.isSafeInteger(o.generation) || o.generation < 1) bad(`generation ${o.generation} is not a positive integer below 2^53`);
    if (o.incarnation !== undefined && !(Number.isInteger(o.incarnation) && o.incarnation >= 1 && o.incarnation <= 0xffffffff)) bad(`incarnation ${o.incarnation} is not in 1..2^32-1`);
    this.ownIncarnation = o.incarnation ?? randomInt(1, 2 ** 32 - 1);
    this.running = true;
    if (o.listen !== undefined) await this.listen(o.listen);
    else this.dial();
    this.scheduleBeat();
  }

  private get clock(): Clock {
    return this.options.clock ?? monotonicClock;
  }

  /** The beat timer: re-armed each beat, as the clock's timers run once. */
  private scheduleBeat(): void {
    this.cancelBeat = this.clock.setTimer(this.timing!.intervalMs, () => {
      if (!this.running) return;
      this.dropIfSilent();
      this.beat();
      this.scheduleBeat();
    });
  }

  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    this.cancelBeat?.();
    this.cancelRedial?.();
    this.cancelBeat = this.cancelRedial = undefined;
    this.detector?.stop();
    this.conn?.socket.destroy();
    this.conn = undefined;
    const server = this.server;
    this.server = undefined;
    await server?.close();
  }

  /** Feeds the detector any other sign of the peer's life (replication traffic). Cheap: call it per chunk. */
  noteActivity(): void {
    this.detector?.noteActivity();
  }

  /**
   * A primary moved to its next generation (the arbiter's: it lost
   * protection, so the replica of the old one may no longer take over):
   * heartbeats carry it from now on. Generations only go up.
   */
  advance(to: number): void {
    if (this.ownRole !== 'primary') throw new HeartbeatError(C.HEARTBEAT_BAD_OPTIONS, 'only a primary advances its generation');
    if (!Number.isSafeInteger(to) || to <= this.ownGeneration) throw new HeartbeatError(C.HEARTBEAT_BAD_OPTIONS, `cannot advance from generation ${this.ownGeneration} to ${to}`);
    this.ownGeneration = to;
    this.beat();
  }

  /**
   * Makes this (secondary) side the primary with generation `to` (the
   * arbiter's), or max(own, highest heard) + 1 without one, and returns it.
   * Call it only after the primary was declared dead and the arbiter gave
   * the domain to this node.
   */
  promote(to?: number): number {
    const highest = Math.max(this.ownGeneration, this.peerGeneration);
    const next = to ?? highest + 1;
    // A generation must stay exact in the frame's field (below 2^53): one that cannot is refused, and nothing is taken.
    if (!Number.isSafeInteger(next)) {
      throw new HeartbeatError(C.HEARTBEAT_GENERATIONS_EXHAUSTED, `cannot take a generation above ${highest}: generations end at 2^53-1`);
    }
    // The arbiter's generation must still be news to everyone this channel heard, or it fences nobody.
    if (next <= highest) throw new HeartbeatError(C.HEARTBEAT_BAD_OPTIONS, `cannot promote to generation ${next}: generation ${highest} was already heard`);
    this.ownGeneration = next;
    this.ownRole = 'primary';
    this.setPeerStranded(false, this.clock.now());
    this.options.logger?.warn({ generation: this.ownGeneration }, `heartbeat: promoted to primary with generation ${this.ownGeneration}`);
    this.beat();
    return this.ownGeneration;
  }

  private async listen(at: Address): Promise<void> {
    try {
      this.server = await this.options.transport.listen(at, (socket, remote) => this.adopt(socket, remote), { purpose: 'heartbeats', listener: 'heartbeat' });
    } catch (err) {
      this.running = false;
      const message = err instanceof Error ? err.message : String(err);
      throw new HeartbeatError(C.HEARTBEAT_LISTEN_FAILED, message, { cause: err });
    }
  }

  private dial(): void {
    const at = this.options.connect!;
    // A dial into a black hole must give up in bounded time and retry.
    this.options.transport.connect(at, { timeoutMs: this.timing!.timeoutMs, peer: "the peer's heartbeat channel" }).then(
      (socket) => this.adopt(socket, `${at.host}:${at.port}`),
      // Routine while the peer is down: try again after the backoff.
      () => this.redial(),
    );
  }

  private redial(): void {
    if (!this.running || this.options.connect === undefined) return;
    const timing = this.timing!;
    const initial = this.options.backoff?.initialMs ?? timing.intervalMs;
    const max = this.options.backoff?.maxMs ?? Math.max(initial, timing.timeoutMs / 2);
    const delay = Math.min(max, initial * 2 ** Math.min(this.attempts, 30));
    this.attempts++;
    this.cancelRedial?.();
    this.cancelRedial = this.clock.setTimer(delay, () => {
      this.cancelRedial = undefined;
      this.dial();
    });
  }

  private adopt(socket: Duplex, remote: string): void {
    if (!this.running) {
      socket.destroy();
      return;
    }
    if (this.conn !== undefined) {
      this.conn.closeReason = `replaced by a new connection from ${remote}`;
      this.conn.socket.destroy();
    }
    const conn: Connection = { socket, remote, decoder: new HeartbeatDecoder(), peerIncarnation: undefined, closeReason: undefined, lastDataAt: this.clock.now() };
    this.conn = conn;
    socket.on('data', (chunk: Buffer) => this.onData(conn, chunk));
    socket.on('error', (err) => (conn.closeReason ??= err.message));
    socket.on('close', () => {
      if (this.conn === conn) this.conn = undefined;
      if (!this.running) return;
      this.emit('disconnected', { remote, reason: conn.closeReason ?? 'closed by the peer' });
      if (this.conn === undefined) this.redial();
    });
    this.emit('connected', { remote });
    this.beat();
  }

  /**
   * A connection that carried nothing for the timeout is dropped: after a
   * partition heals, TCP would otherwise keep it silent until its next
   * retransmission (seconds, growing with the partition's length), with
   * the peer heard nowhere. The dialling side connects again at once; the
   * listening side takes the new connection.
   */
  private dropIfSilent(): void {
    const conn = this.conn;
    if (conn === undefined) return;
    const silentMs = this.clock.now() - conn.lastDataAt;
    if (silentMs < this.timing!.timeoutMs) return;
    conn.closeReason = `silent for ${Math.round(silentMs)} ms`;
    conn.socket.destroy();
  }

  private beat(): void {
    const conn = this.conn;
    if (!this.running || conn === undefined || conn.socket.destroyed) return;
    if (conn.socket.writableLength > MAX_QUEUED_FRAMES * FRAME_SIZE) return;
    conn.socket.write(
      encodeHeartbeat({
        role: this.ownRole,
        incarnation: this.ownIncarnation,
        generation: this.ownGeneration,
        sequence: this.sequence++,
        epoch: this.options.epoch?.() ?? 0,
        sentAtUs: Math.round(performance.now() * 1000),
        intent: this.ownIntent,
        stranded: this.ownStranded,
      }),
    );
  }

  private onData(conn: Connection, chunk: Buffer): void {
    if (this.conn !== conn || !this.running) return;
    conn.lastDataAt = this.clock.now();
    // Bytes of this peer incarnation count as life even before a frame completes (slow link).
    if (conn.peerIncarnation !== undefined && conn.peerIncarnation === this.peerIncarnation) this.detector?.noteActivity();
    let frames: Heartbeat[];
    try {
      frames = conn.decoder.push(chunk);
    } catch (err) {
      const e = err instanceof HeartbeatError ? err : new HeartbeatError(C.HEARTBEAT_BAD_FIELD, String(err), { cause: err });
      this.options.logger?.error({ err: e, code: e.code, peer: conn.remote }, `heartbeat: malformed frame from ${conn.remote}, closing: ${e.message}`);
      conn.closeReason = `${e.code}: ${e.message}`;
      conn.socket.destroy();
      this.emit('protocolError', e);
      return;
    }
    for (const hb of frames) {
      if (this.conn !== conn || !this.running) return; // a listener stopped us or replaced the connection
      this.onFrame(conn, hb);
    }
  }

  private onFrame(conn: Connection, hb: Heartbeat): void {
    conn.peerIncarnation = hb.incarnation;
    this.attempts = 0; // a peer that speaks resets the backoff; one that only accepts does not
    if (hb.generation > this.peerGeneration) {
      this.peerGeneration = hb.generation;
      this.emit('generation', { generation: hb.generation, role: hb.role });
    }
    if (hb.generation > this.ownGeneration) {
      if (this.ownRole === 'primary') {
        if (this.fencedBy === undefined) {
          this.fencedBy = hb.generation;
          this.options.logger?.error({ ownGeneration: this.ownGeneration, peerGeneration: hb.generation }, `heartbeat: FENCED: peer runs generation ${hb.generation}, ours is ${this.ownGeneration}; stop serving`);
          this.emit('fenced', { ownGeneration: this.ownGeneration, peerGeneration: hb.generation });
        }
      } else if (hb.role === 'primary') {
        this.ownGeneration = hb.generation; // a secondary follows the primary it protects
      }
    } else if (hb.role === 'primary' && hb.generation < this.ownGeneration) {
      this.emit('stale', { ownGeneration: this.ownGeneration, peerGeneration: hb.generation });
      return; // a fenced primary's beats are not the life of our peer
    }
    if (hb.incarnation !== this.peerIncarnation) this.newIncarnation(hb.incarnation);
    const receivedAt = this.clock.now();
    this.detector?.heard(receivedAt);
    if (hb.epoch !== this.peerEpoch) {
      this.peerEpoch = hb.epoch;
      this.emit('epoch', { epoch: hb.epoch, role: hb.role });
    }
    if (hb.intent !== undefined && hb.intent !== 'running' && hb.intent !== this.peerIntentValue) {
      this.peerIntentValue = hb.intent;
      this.options.logger?.warn({ intent: hb.intent, epoch: hb.epoch }, `heartbeat: the ${hb.role} is stopping in order and ${hb.intent === 'hand-over' ? 'hands over: this node takes over' : 'stands this node down: no failover'}`);
      this.emit('leaving', { intent: hb.intent, epoch: hb.epoch, role: hb.role });
    }
    // Only the primary this side protects can be stranded: once promoted, nobody's word on it counts.
    this.setPeerStranded(hb.stranded === true && hb.role === 'primary' && this.ownRole === 'secondary', receivedAt);
    this.emit('heartbeat', { ...hb, receivedAt });
  }

  private setPeerStranded(stranded: boolean, at: number): void {
    if (stranded === (this.peerStrandedAt !== undefined)) return;
    this.peerStrandedAt = stranded ? at : undefined;
    this.emit('stranded', { stranded, at });
  }

  /** What the other end is, in log lines ("heartbeat: secondary suspect: ..."). */
  private get peerRole(): string {
    return this.options.role === 'primary' ? 'secondary' : 'primary';
  }

  /** A restarted peer lost whatever its previous run held: that run is dead, the new one starts unknown. */
  private newIncarnation(incarnation: number): void {
    const old = this.detector;
    const oldIncarnation = this.peerIncarnation;
    old?.stop();
    if (old !== undefined && oldIncarnation !== undefined && old.state !== 'dead') {
      const reason = `peer restarted (incarnation ${oldIncarnation} replaced by ${incarnation})`;
      this.options.logger?.warn({ from: old.state, to: 'dead', incarnation: oldIncarnation, reason }, `heartbeat: ${this.peerRole} dead: ${reason}`);
      this.emit('peer', { from: old.state, state: 'dead', reason, at: this.clock.now(), incarnation: oldIncarnation });
    }
    const timing = this.timing!;
    const detector = new FailureDetector({ ...timing, clock: this.clock });
    detector.onTransition((t) => {
      this.options.logger?.[t.to === 'dead' ? 'error' : t.to === 'suspect' ? 'warn' : 'info']({ from: t.from, to: t.to, incarnation, reason: t.reason }, `heartbeat: ${this.peerRole} ${t.to}: ${t.reason}`);
      this.emit('peer', { from: t.from, state: t.to, reason: t.reason, at: t.at, incarnation });
    });
    detector.start();
    this.detector = detector;
    this.peerIncarnation = incarnation;
    this.peerEpoch = undefined;
    this.peerIntentValue = undefined;
    // A new run has said nothing yet; the old run's word is void.
    this.setPeerStranded(false, this.clock.now());
  }
}
