/**
 * Output commit for Remus: the network buffer checkpoint device ('netbuf').
 * No client may see guest output that the secondary cannot reproduce, so in
 * Remus mode every byte the guest sends towards a client is held until the
 * secondary has acked the checkpoint whose state produced it, then released
 * in order. Xen's libxl Remus releases at the local write of the checkpoint,
 * before the backup acks it; here release happens only in commit(), which
 * the engine calls after the ack.
 *
 * Epoch tags. Checkpoint N is the state staged at suspend N, so it includes
 * every command the guest ran before that suspend. Output is tagged with the
 * "open" epoch when it reaches the buffer:
 *
 *   - postsuspend(N) closes tag N: output arriving from then on is tagged N+1
 *     (the guest is paused until preresume(N), and what it produces after
 *     that belongs to checkpoint N+1);
 *   - commit(N) releases, in arrival order, everything tagged <= N.
 *
 * So output arriving between postsuspend(N) and commit(N) waits for
 * commit(N+1). Tagging at arrival is conservative: bytes reach the buffer
 * after the guest produced them, so the tag is never lower than the epoch of
 * the state that produced them (a reply of epoch N that is still in flight at
 * suspend N is tagged N+1 and only waits one epoch longer).
 *
 * Arming. Until a session's first suspend output is as unprotected as it
 * was before the session began: there is no checkpoint to wait for yet, and
 * a pre-copy may take minutes (a large guest over a slow link) or never end
 * (a standby that accepted the connection and hung). So setup() does not
 * arm; the first postsuspend(N) does (output before it has passed, as
 * unprotected output passes: only with the authority; output after it is
 * tagged N+1). Holding pre-copy output for epoch 1 instead would stop the
 * service of a primary that may serve alone for as long as the pre-copy
 * lasts. Output held when the session began (a 'hold' teardown, or no
 * authority) stays held and is re-tagged N at that first suspend. A
 * postsuspend whose number is not above the last closed tag means a new
 * stream restarted epoch numbering without a teardown: everything still held
 * was produced before this suspend, so it is re-tagged N and waits for the
 * new secondary's ack of N (safe; never released early).
 *
 * Teardown (protection ends, e.g. the engine lost the secondary) applies a
 * policy to what is held, settable at construction and at run time:
 *
 *   - 'release': release everything in order and pass output through until
 *     protection starts again. The service stays available, but clients now
 *     see output no replica holds; if the primary dies too, it is lost.
 *   - 'hold': keep holding, and hold new output too (behind the old, so
 *     per-connection order is kept), until the next protection session's
 *     first commit, to which all of it is re-tagged. Nothing unprotected ever
 *     escapes, but the service stalls: once the held-bytes bound is reached
 *     the guest's output is back-pressured and clients wait (or time out)
 *     until a secondary is back. The same applies before the first session
 *     and during every pre-copy: under 'hold', mode 'remus' output never
 *     passes straight through.
 *   - 'drop': discard what is held and cut the connections it belonged to
 *     (a byte stream with a hole would desynchronise the client's protocol;
 *     a reset tells it to retry), then pass through. No unprotected output of
 *     the lost epochs escapes, at the price of those clients' connections.
 *
 * Bounds. Held bytes are bounded (maxHeldBytes, default 64 MiB): at the
 * bound every connection's source is paused (the front stops reading from
 * the guest), never dropped and never grown further than the chunks already
 * in flight from reads (one socket read per connection); sources resume when
 * releases bring the total down to resumeHeldBytes (default half the bound),
 * so a pause/resume does not flap on every chunk.
 *
 * Waiting. The first chunk held for an epoch (per tag) is told to
 * `onWaiting(tag)`: output now waits for that epoch, which has not begun
 * (its postsuspend closes the tag). The engine's output policy starts that
 * epoch at once instead of at the next tick of the timer. Once per tag, not
 * per chunk: a busy guest writes thousands of chunks an epoch, and one
 * signal is all the trigger pipeline needs (further ones would coalesce).
 *
 * Mode 'none' (no output commit: COLO releases through its comparator, or
 * operator choice) passes output through; switching to it releases
 * everything held first, so order is kept.
 *
 * Authority (src/arbiter). Output a commit releases is held by a replica,
 * and may always go. Output that would pass straight through (unprotected,
 * or a 'release' teardown) is held by no replica: it goes only while the
 * `authority` says this node may serve (its arbiter lease is live). Without
 * it, such output is held as after a 'hold' teardown, behind anything held
 * before, until the authority returns (authorityRestored(): released in
 * order) or a protection session arms (its first commit covers it).
 */
import type { CheckpointDevice } from '../checkpoint/devices.js';
import type { Logger } from '../util/logger.js';
import { FrontError, FrontErrorCodes } from './errors.js';

export type OutputMode = 'remus' | 'none';
export type TeardownPolicy = 'release' | 'hold' | 'drop';

export const DEFAULT_MAX_HELD_BYTES = 64 * 1024 * 1024;

/** Where one connection's output goes, and how the buffer pushes back on its source. */
export interface OutputSink {
  /** Bytes released to the client, in order. */
  deliver(bytes: Buffer): void;
  /** Held bytes reached the bound: stop reading from the guest side. */
  pauseSource(): void;
  /** Held bytes fell back under the resume mark: read again. */
  resumeSource(): void;
  /** close() was called and everything before it has been released (or dropped): finish the connection. */
  finish(): void;
  /** Held output of this connection was dropped ('drop' policy): cut the connection. */
  abort(reason: Error): void;
}

/** One released chunk, for monitoring and checks. */
export interface ReleasedOutput {
  connection: number;
  /** Epoch tag it was held for; null when it passed straight through (unprotected). */
  tag: number | null;
  bytes: number;
  /** Time held, ms (0 when passed through). */
  heldMs: number;
}

export interface OutputBufferOptions {
  mode?: OutputMode;
  teardownPolicy?: TeardownPolicy;
  maxHeldBytes?: number;
  /** Sources resume when held bytes fall to this (default maxHeldBytes / 2). */
  resumeHeldBytes?: number;
  /** Monotonic clock in ms; injected for tests. */
  now?: () => number;
  logger?: Logger;
  /** Told of every chunk delivered, when it is delivered. */
  onRelease?: (released: ReleasedOutput) => void;
  /** Output began waiting for epoch `tag` (once per tag; see "Waiting" above). */
  onWaiting?: (tag: number) => void;
  /** May output no replica holds be released now? Asked at each such release (default: always). */
  authority?: { valid(): boolean };
}

export interface OutputBufferStats {
  mode: OutputMode;
  /** idle: passing through; protecting: holding per epoch; orphaned: holding after a 'hold' teardown. */
  phase: Phase;
  /** The tag output arriving now gets (0 when not protecting). */
  openEpoch: number;
  /** The last epoch committed (released). */
  committedEpoch: number;
  heldBytes: number;
  heldChunks: number;
  /** Age of the oldest held chunk, ms (0 when nothing is held). */
  oldestHeldMs: number;
  connections: number;
  /** Sources are paused at the held-bytes bound. */
  sourcesPaused: boolean;
  /** Output that would pass through is held: this node has no authority to serve it now. */
  awaitingAuthority: boolean;
  /** Times the bound paused the sources. */
  stalls: number;
  releasedBytes: number;
  droppedBytes: number;
}

type Phase = 'idle' | 'protecting' | 'orphaned';

/** Tag of output held after a 'hold' teardown: re-tagged when the next session arms. */
const ORPHAN_TAG = Number.POSITIVE_INFINITY;

interface Chunk {
  conn: OutputConnection;
  tag: number;
  bytes: Buffer;
  at: number;
}

/** One connection's output side: the front writes guest bytes here. */
export class OutputConnection {
  heldChunks = 0;
  heldBytes = 0;
  closing = false;
  finished = false;
  /** Told once nothing of this connection is held any more. */
  idleWaiters: (() => void)[] = [];

  constructor(
    readonly id: number,
    readonly sink: OutputSink,
    private readonly owner: OutputBuffer,
  ) {}

  /** Guest bytes for the client; false when the sources are paused at the bound (the caller should already have been told). */
  write(bytes: Buffer): boolean {
    return this.owner.write(this, bytes);
  }

  /** Runs `fn` once nothing of this connection is held (at once if nothing is). */
  whenReleased(fn: () => void): void {
    if (this.heldChunks === 0) fn();
    else this.idleWaiters.push(fn);
  }

  /** No more output: finish once what is held has been released. */
  close(): void {
    this.owner.close(this);
  }
}

export class OutputBuffer implements CheckpointDevice {
  readonly name = 'netbuf';
  private readonly options: OutputBufferOptions;
  private modeValue: OutputMode;
  private policy: TeardownPolicy;
  private phase: Phase = 'idle';
  private openTag = 0;
  private committed = 0;
  /** Held chunks of all connections in arrival order; tags never decrease along it. */
  private queue: Chunk[] = [];
  private head = 0;
  private held = 0;
  private paused = false;
  private nextId = 1;
  private readonly connections = new Set<OutputConnection>();
  private readonly counters = { stalls: 0, releasedBytes: 0, droppedBytes: 0 };
  /** Pass-through output is held until the authority returns (everything held is ORPHAN_TAG). */
  private awaitingAuthority = false;
  /** The last tag told to onWaiting (0: none this session). */
  private signalledTag = 0;

  constructor(options: OutputBufferOptions = {}) {
    this.options = options;
    this.modeValue = options.mode ?? 'remus';
    this.policy = options.teardownPolicy ?? 'release';
  }

  private get maxHeld(): number {
    return this.options.maxHeldBytes ?? DEFAULT_MAX_HELD_BYTES;
  }

  private get resumeAt(): number {
    return this.options.resumeHeldBytes ?? Math.floor(this.maxHeld / 2);
  }

  private now(): number {
    return (this.options.now ?? (() => performance.now()))();
  }

  get mode(): OutputMode {
    return this.modeValue;
  }

  get teardownPolicy(): TeardownPolicy {
    return this.policy;
  }

  /** Validates the options; the front calls it from start(). */
  validate(): void {
    const max = this.maxHeld;
    if (!Number.isInteger(max) || max < 1) throw new FrontError(FrontErrorCodes.FRONT_BAD_OPTIONS, `maxHeldBytes must be a positive integer, got ${max}`);
    const resume = this.resumeAt;
    if (!Number.isInteger(resume) || resume < 0 || resume > max) throw new FrontError(FrontErrorCodes.FRONT_BAD_OPTIONS, `resumeHeldBytes must be an integer in 0..${max}, got ${resume}`);
  }

  /** Switches output commit on ('remus') or off ('none'; releases everything held first, in order). */
  setMode(mode: OutputMode): void {
    if (mode === this.modeValue) return;
    this.modeValue = mode;
    this.options.logger?.info({ mode }, `output commit mode: ${mode}`);
    if (mode === 'none') {
      this.releaseUnreplicated();
      // Orphaned output was waiting for a session that output commit no longer needs.
      if (this.phase === 'orphaned') this.phase = 'idle';
    }
  }

  /** The authority is back: what pass-through held for it goes, in order, and output passes again. */
  authorityRestored(): void {
    if (!this.awaitingAuthority || !this.passingThrough()) return;
    if (!this.authorized()) return;
    this.awaitingAuthority = false;
    this.options.logger?.info({ heldBytes: this.held }, 'authority to serve restored: held output released');
    this.releaseAll();
  }

  setTeardownPolicy(policy: TeardownPolicy): void {
    this.policy = policy;
  }

  /** A client connection's output side. */
  attach(sink: OutputSink): OutputConnection {
    const conn = new OutputConnection(this.nextId++, sink, this);
    this.connections.add(conn);
    // A connection opened at the bound must not add to it either.
    if (this.paused) sink.pauseSource();
    return conn;
  }

  // --- checkpoint device hooks -------------------------------------------

  setup(): void {
    // Nothing to hold yet: the session's first suspend arms (see "Arming" above).
  }

  postsuspend(epoch: number): void {
    if (this.phase !== 'protecting') {
      // A session's first suspend: output held so far (orphaned, or awaiting the authority) predates it.
      this.arm(epoch);
    } else if (epoch < this.openTag) {
      // Numbering restarted (a new stream) without a teardown: all of it predates this suspend.
      this.options.logger?.warn({ epoch, open: this.openTag }, 'epoch numbering restarted without teardown: held output waits for the new epoch');
      this.retagHeld(epoch);
      this.committed = Math.min(this.committed, epoch - 1);
      this.signalledTag = 0;
    }
    this.openTag = epoch + 1;
  }

  preresume(): void {
    // Nothing: the tag was closed at postsuspend; what the guest produces after resuming is already N+1.
  }

  commit(epoch: number): void {
    if (this.phase !== 'protecting') return;
    if (epoch > this.committed) this.committed = epoch;
    this.releaseThrough(epoch);
  }

  teardown(): void {
    const policy = this.policy;
    const heldBytes = this.held;
    if (this.phase === 'idle' && heldBytes === 0) return;
    if (heldBytes > 0) this.options.logger?.warn({ policy, heldBytes, heldChunks: this.queue.length - this.head }, `protection ended with output held: ${policy}`);
    this.openTag = 0;
    this.committed = 0;
    if (policy === 'release') {
      this.phase = 'idle';
      this.releaseUnreplicated();
    } else if (policy === 'hold') {
      this.retagHeld(ORPHAN_TAG);
      this.phase = this.modeValue === 'remus' ? 'orphaned' : 'idle';
    } else {
      this.dropAll();
      this.phase = 'idle';
    }
  }

  // --- data path -----------------------------------------------------------

  /** @internal via OutputConnection.write */
  write(conn: OutputConnection, bytes: Buffer): boolean {
    if (conn.closing || bytes.length === 0) return !this.paused;
    if (this.passingThrough()) {
      if (!this.awaitingAuthority && this.authorized()) {
        // Pass-through never coexists with held output (mode, teardown and authority release or drop it first), so order holds.
        this.deliver(conn, bytes, null, 0);
        return true;
      }
      this.holdForAuthority();
    }
    const tag = this.phase === 'protecting' ? this.openTag : ORPHAN_TAG;
    this.queue.push({ conn, tag, bytes, at: this.now() });
    if (tag !== ORPHAN_TAG && tag !== this.signalledTag) {
      this.signalledTag = tag;
      this.options.onWaiting?.(tag);
    }
    conn.heldChunks++;
    conn.heldBytes += bytes.length;
    this.held += bytes.length;
    if (!this.paused && this.held >= this.maxHeld) {
      this.paused = true;
      this.counters.stalls++;
      this.options.logger?.warn({ heldBytes: this.held, max: this.maxHeld }, 'held output at its bound: reading from the guest paused until a commit');
      for (const c of this.connections) c.sink.pauseSource();
    }
    return !this.paused;
  }

  /** @internal via OutputConnection.close */
  close(conn: OutputConnection): void {
    if (conn.closing) return;
    conn.closing = true;
    this.finishIfDone(conn);
  }

  stats(): OutputBufferStats {
    const oldest = this.head < this.queue.length ? this.queue[this.head].at : undefined;
    return {
      mode: this.modeValue,
      phase: this.phase,
      openEpoch: this.phase === 'protecting' ? this.openTag : 0,
      committedEpoch: this.committed,
      heldBytes: this.held,
      heldChunks: this.queue.length - this.head,
      oldestHeldMs: oldest === undefined ? 0 : this.now() - oldest,
      connections: this.connections.size,
      sourcesPaused: this.paused,
      awaitingAuthority: this.awaitingAuthority,
      ...this.counters,
    };
  }

  private passingThrough(): boolean {
    // 'hold' holds unprotected output whenever there is some: before the first session and during a pre-copy too.
    return this.modeValue === 'none' || (this.phase === 'idle' && this.policy !== 'hold');
  }

  private authorized(): boolean {
    return this.options.authority?.valid() ?? true;
  }

  private holdForAuthority(): void {
    if (this.awaitingAuthority) return;
    this.awaitingAuthority = true;
    this.retagHeld(ORPHAN_TAG);
    this.options.logger?.error({ heldBytes: this.held }, 'no authority to serve (arbiter lease not live): output no replica holds is held');
  }

  /** Releases everything held, as pass-through would, if this node may; holds it for the authority otherwise. */
  private releaseUnreplicated(): void {
    if (this.authorized()) this.releaseAll();
    else if (this.held > 0) this.holdForAuthority();
  }

  private arm(epoch: number): void {
    // A session's first commit covers whatever waited for the authority: the secondary holds it then.
    this.awaitingAuthority = false;
    this.phase = 'protecting';
    // A new session numbers its epochs from its own start: a tag told in the last one says nothing now.
    this.signalledTag = 0;
    this.openTag = epoch;
    this.committed = epoch - 1;
    // Anything still held (after a 'hold' teardown) was produced before this session's first suspend.
    this.retagHeld(epoch);
  }

  private retagHeld(tag: number): void {
    for (let i = this.head; i < this.queue.length; i++) this.queue[i].tag = tag;
  }

  private releaseThrough(epoch: number): void {
    const t = this.now();
    const q = this.queue;
    while (this.head < q.length && q[this.head].tag <= epoch) {
      const c = q[this.head];
      // Unreferenced at once: released buffers must not stay reachable until compaction.
      q[this.head++] = undefined as unknown as Chunk;
      this.unhold(c);
      this.deliver(c.conn, c.bytes, c.tag, t - c.at);
      this.settled(c.conn);
    }
    this.compact();
    this.maybeResume();
  }

  private releaseAll(): void {
    this.releaseThrough(ORPHAN_TAG);
  }

  private dropAll(): void {
    const victims = new Set<OutputConnection>();
    for (let i = this.head; i < this.queue.length; i++) {
      const c = this.queue[i];
      this.unhold(c);
      this.counters.droppedBytes += c.bytes.length;
      victims.add(c.conn);
    }
    this.queue = [];
    this.head = 0;
    for (const conn of victims) {
      // Cut, not finished: waiters for a clean release will not be told.
      conn.idleWaiters = [];
      conn.finished = true;
      this.connections.delete(conn);
      conn.sink.abort(new FrontError(FrontErrorCodes.FRONT_OUTPUT_DROPPED, `held output of connection ${conn.id} dropped at teardown (policy 'drop')`));
    }
    this.maybeResume();
  }

  private unhold(c: Chunk): void {
    c.conn.heldChunks--;
    c.conn.heldBytes -= c.bytes.length;
    this.held -= c.bytes.length;
  }

  private deliver(conn: OutputConnection, bytes: Buffer, tag: number | null, heldMs: number): void {
    this.counters.releasedBytes += bytes.length;
    // Hook first: a check recording "who had acked what" sees the moment before the client can.
    this.options.onRelease?.({ connection: conn.id, tag, bytes: bytes.length, heldMs });
    if (!conn.finished) conn.sink.deliver(bytes);
  }

  /** After a release: wake whoever waits for this connection's held output to be gone. */
  private settled(conn: OutputConnection): void {
    if (conn.heldChunks === 0 && conn.idleWaiters.length > 0) {
      const waiters = conn.idleWaiters;
      conn.idleWaiters = [];
      for (const fn of waiters) fn();
    }
    this.finishIfDone(conn);
  }

  private finishIfDone(conn: OutputConnection): void {
    if (!conn.closing || conn.finished || conn.heldChunks > 0) return;
    conn.finished = true;
    this.connections.delete(conn);
    conn.sink.finish();
  }

  private maybeResume(): void {
    if (!this.paused || this.held > this.resumeAt) return;
    this.paused = false;
    for (const c of this.connections) c.sink.resumeSource();
  }

  /** Drops released slots once they are most of the array: amortised O(1) per chunk. */
  private compact(): void {
    if (this.head === this.queue.length) {
      this.queue = [];
      this.head = 0;
    } else if (this.head > 1024 && this.head * 2 > this.queue.length) {
      this.queue = this.queue.slice(this.head);
      this.head = 0;
    }
  }
}
