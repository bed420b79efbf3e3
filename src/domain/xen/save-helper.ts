/**
 * Runs Xen's libxl-save-helper and speaks its callback protocol
 * (save-helper-wire.ts) the way libxl does, with the callbacks supplied by
 * the caller (the Xen binding, or a test). The helper does the memory (libxc's
 * save or restore); this driver is the thin I/O around it:
 *
 * - fds: the helper's stdin and stdout are the protocol channel, stderr is
 *   kept (its last lines go into errors), and fd 3 is the io_fd: while
 *   saving, the helper writes the libxc stream there and the driver drains
 *   it into `stream`; while restoring, the caller writes the stream into
 *   `input`. Node makes every one of these an AF_UNIX stream socketpair (its
 *   stdio 'pipe'), which libxc only write()s and read()s, as it would a pipe.
 * - Draining: between the suspend callback and postcopy the guest is
 *   stopped for as long as libxc takes to copy its dirty pages into the
 *   io_fd, so then that fd is read as fast as data comes, never paused for a
 *   slow consumer; `stream` buffers up to `maxBufferedBytes` (default
 *   256 MiB), and a consumer that falls further behind stops the save with
 *   SAVE_HELPER_STREAM_OVERFLOW rather than letting the buffer grow without
 *   bound. While the guest runs (the live pre-copy rounds), the fd is read
 *   only as the consumer takes the stream (its high-water mark): libxc waits
 *   for the network there, and memory stays small (a whole pre-copy buffered
 *   in a 512 MiB dom0 got the primary OOM-killed in the Xen lab).
 * - An explicit state machine: 'running' (waiting for the helper),
 *   'callback' (a handler is running; the helper is blocked on its reply, so
 *   any message now breaks the protocol), 'completed' (complete answered:
 *   only log and progress messages may follow, then the helper exits),
 *   'stopping' (stopped for good, the helper being terminated) and 'closed'.
 * - Stopping: a message the protocol does not allow (unknown type, bad body,
 *   a callback not enabled, anything while a reply is owed) stops the driver
 *   for good: the helper gets SIGTERM (libxc's next write then fails and it
 *   cleans up), its stdin is closed so a helper waiting for a reply exits,
 *   and the rest of its output is discarded. abort() and a stream overflow
 *   also send SIGTERM but keep speaking the protocol, as libxl does, so the
 *   callbacks of libxc's cleanup (switch_qemu_logdirty off) still get their
 *   answers. A helper that survives SIGTERM for `killTimeoutMs` gets SIGKILL.
 * - The result (`done`) is judged by complete's retval, not by error-level
 *   logs: a Remus save stopped by replying 0 to checkpoint logs "Save failed
 *   (0 = Success)" at error level and completes with 0. A helper that dies
 *   before complete gives SAVE_HELPER_EXITED naming its exit code or signal,
 *   the epoch and the last callback, and its last log lines.
 *
 * The driver never restores a guest's state: if a save fails while the guest
 * is suspended, the caller (whose suspend handler suspended it) resumes it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { Readable, type Duplex, type Writable } from 'node:stream';
import { SaveHelperError, SaveHelperErrorCodes as C, type SaveHelperErrorCode } from './errors.js';
import {
  CbFlags,
  DEFAULT_HELPER_PATH,
  MESSAGE_TYPES,
  Reply,
  SaveHelperDecoder,
  StreamType,
  XcFlags,
  encodeReply,
  logLevelName,
  restoreDomainArgs,
  saveDomainArgs,
  type HelperMessage,
  type HelperMode,
  type MessageCode,
} from './save-helper-wire.js';

/** What postcopy, checkpoint and wait_checkpoint answer while saving: take another checkpoint, or stop checkpointing. */
export type SaveDecision = 'continue' | 'stop';
/** What checkpoint answers while restoring: go on reading the stream, or fail over (resume from the last checkpoint). */
export type RestoreDecision = 'continue' | 'failover';

/**
 * The parent's side of a save. A handler that throws (or rejects) is
 * answered with the failure value libxc knows (suspend 0, the others -1),
 * and the save's result is SAVE_HELPER_CALLBACK_FAILED with the error as cause.
 */
export interface SaveHandlers {
  /** Suspend the guest; resolve once it is suspended (libxc then checks its shutdown reason itself). */
  suspend(): Promise<void>;
  /** Enable (at the start) or disable (at the end, and in libxc's cleanup) the device model's dirty logging; libxc asks for PVH too. */
  switchQemuLogdirty(domid: number, enable: boolean): Promise<void>;
  /** Remus: the epoch's pages are copied; resume the guest. */
  postcopy?(): Promise<SaveDecision>;
  /** Remus: the epoch is in the stream; finish it (CHECKPOINT_END, output commit), wait the interval, decide. */
  checkpoint?(): Promise<SaveDecision>;
}

/** The parent's side of a restore. */
export interface RestoreHandlers {
  /** The stream's static data is in; `missing` has XGR_SDD_MISSING_CPUID (1) / _MSR (2) for old streams. Default: accept. */
  staticDataDone?(missing: number): Promise<void>;
  /** Remus: a checkpoint is in. Required for a checkpointed restore. */
  checkpoint?(): Promise<RestoreDecision>;
}

export interface HelperLogEntry {
  level: number;
  levelName: string;
  /** -1 when there is none. */
  errno: number;
  context: string;
  text: string;
}

interface CommonOptions {
  /** Default: Debian's /usr/lib/xen-4.17/bin/libxl-save-helper. */
  helperPath?: string;
  /** Run this instead of helperPath, with the helper's arguments after `args` (a test's stand-in). */
  command?: { file: string; args?: string[] };
  /** Log messages (and stderr lines) kept for errors (default 20). */
  logLines?: number;
  onLog?: (entry: HelperLogEntry) => void;
  onProgress?: (p: { context: string; doingWhat: string; done: bigint; total: bigint }) => void;
  /** SIGKILL a helper still alive this long after SIGTERM (default 30 s: libxc's cleanup may have pages in flight). */
  killTimeoutMs?: number;
}

export interface SaveHelperOptions extends CommonOptions {
  domid: number;
  /** 'remus' checkpoints until a handler answers 'stop'. COLO needs a back channel this driver does not have yet. */
  streamType: 'plain' | 'remus';
  /** XCFLAGS_LIVE: pre-copy while the guest runs (default true; Remus needs it for its first epoch). */
  live?: boolean;
  /** XCFLAGS_DEBUG. */
  debug?: boolean;
  handlers: SaveHandlers;
  /** The most the drained stream may buffer for a consumer that lags (default 256 MiB). */
  maxBufferedBytes?: number;
}

export interface RestoreHelperOptions extends CommonOptions {
  domid: number;
  streamType: 'plain' | 'remus';
  storeEvtchn: number;
  storeDomid: number;
  consoleEvtchn: number;
  consoleDomid: number;
  handlers?: RestoreHandlers;
}

export type DriverState = 'running' | 'callback' | 'completed' | 'stopping' | 'closed';

export interface HelperOutcome {
  retval: number;
  errno: number;
  /** checkpoint callbacks answered. */
  checkpoints: number;
  /** The restore's results (restore only). */
  restoreResults?: { storeGfn: bigint; consoleGfn: bigint };
  lastLogs: string[];
}

export const DEFAULT_MAX_BUFFERED_BYTES = 256 * 2 ** 20;
const DEFAULT_LOG_LINES = 20;
const DEFAULT_KILL_TIMEOUT_MS = 30_000;
/** After the helper exits, how long its stdio may stay open (a descendant holding them) before the driver stops waiting. */
const CLOSE_GRACE_MS = 5_000;
const STDERR_TAIL_BYTES = 4096;

interface ModeSpec {
  mode: HelperMode;
  args: string[];
  cbFlags: number;
  /** The handler of each enabled callback, as (message) → reply value, and the failure value for when it throws. */
  callbacks: Map<MessageCode, { run: (msg: HelperMessage) => Promise<number>; failValue: number }>;
  maxBufferedBytes: number;
}

const badOption = (detail: string): never => {
  throw new SaveHelperError(C.SAVE_HELPER_BAD_OPTIONS, detail);
};

const decisionReply = (d: SaveDecision): number => {
  if (d === 'continue') return Reply.CONTINUE;
  if (d === 'stop') return Reply.STOP;
  return badOption(`a handler answered ${JSON.stringify(d)}, not 'continue' or 'stop'`);
};

/** Starts `libxl-save-helper --save-domain` on a domain. The save runs at once; follow it through `done`. */
export function startSave(options: SaveHelperOptions): SaveHelperDriver {
  const h = options.handlers;
  if (typeof h?.suspend !== 'function' || typeof h.switchQemuLogdirty !== 'function') badOption('a save needs suspend and switchQemuLogdirty handlers');
  const remus = options.streamType === 'remus';
  if (!remus && options.streamType !== 'plain') badOption(`stream type ${String(options.streamType)} is not 'plain' or 'remus' (COLO needs a back channel, not supported yet)`);
  if (remus && (typeof h.postcopy !== 'function' || typeof h.checkpoint !== 'function')) badOption('a Remus save needs postcopy and checkpoint handlers');
  const callbacks: ModeSpec['callbacks'] = new Map();
  callbacks.set(3, {
    run: async () => {
      await h.suspend();
      return Reply.SUSPEND_DONE;
    },
    failValue: Reply.SUSPEND_FAILED,
  });
  callbacks.set(7, {
    run: async (m) => {
      const msg = m as Extract<HelperMessage, { type: 'switch_qemu_logdirty' }>;
      await h.switchQemuLogdirty(msg.domid, msg.enable !== 0);
      return Reply.OK;
    },
    failValue: Reply.FAILED,
  });
  if (remus) {
    callbacks.set(4, { run: async () => decisionReply(await h.postcopy!()), failValue: Reply.FAILED });
    callbacks.set(5, { run: async () => decisionReply(await h.checkpoint!()), failValue: Reply.FAILED });
  }
  const cbFlags = remus ? CbFlags.REMUS_SAVE : CbFlags.PLAIN_SAVE;
  const maxBufferedBytes = options.maxBufferedBytes ?? DEFAULT_MAX_BUFFERED_BYTES;
  if (!Number.isSafeInteger(maxBufferedBytes) || maxBufferedBytes < 1) badOption(`maxBufferedBytes ${maxBufferedBytes} is not a positive integer`);
  const args = saveDomainArgs({
    ioFd: 3,
    recvFd: -1,
    domid: options.domid,
    xcFlags: (options.live ?? true ? XcFlags.LIVE : 0) | (options.debug ? XcFlags.DEBUG : 0),
    cbFlags,
    streamType: remus ? StreamType.REMUS : StreamType.PLAIN,
  });
  return new SaveHelperDriver({ mode: 'save', args, cbFlags, callbacks, maxBufferedBytes }, options);
}

/** Starts `libxl-save-helper --restore-domain` into an existing (paused, empty) domain; write the stream into `input`. */
export function startRestore(options: RestoreHelperOptions): SaveHelperDriver {
  const h = options.handlers ?? {};
  const remus = options.streamType === 'remus';
  if (!remus && options.streamType !== 'plain') badOption(`stream type ${String(options.streamType)} is not 'plain' or 'remus' (COLO needs a back channel, not supported yet)`);
  if (remus && typeof h.checkpoint !== 'function') badOption('a Remus restore needs a checkpoint handler');
  const callbacks: ModeSpec['callbacks'] = new Map();
  callbacks.set(8, {
    run: async (m) => {
      await h.staticDataDone?.((m as Extract<HelperMessage, { type: 'static_data_done' }>).missing);
      return Reply.OK;
    },
    failValue: Reply.FAILED,
  });
  if (remus) {
    callbacks.set(5, {
      run: async () => {
        const d = await h.checkpoint!();
        if (d === 'continue') return Reply.RESTORE_CHECKPOINT_SUCCESS;
        if (d === 'failover') return Reply.RESTORE_CHECKPOINT_FAILOVER;
        return badOption(`the checkpoint handler answered ${JSON.stringify(d)}, not 'continue' or 'failover'`);
      },
      failValue: Reply.RESTORE_CHECKPOINT_ERROR,
    });
  }
  const cbFlags = remus ? CbFlags.REMUS_RESTORE : CbFlags.RESTORE;
  const args = restoreDomainArgs({
    ioFd: 3,
    sendBackFd: -1,
    domid: options.domid,
    storeEvtchn: options.storeEvtchn,
    storeDomid: options.storeDomid,
    consoleEvtchn: options.consoleEvtchn,
    consoleDomid: options.consoleDomid,
    cbFlags,
    streamType: remus ? StreamType.REMUS : StreamType.PLAIN,
  });
  return new SaveHelperDriver({ mode: 'restore', args, cbFlags, callbacks, maxBufferedBytes: 0 }, options);
}

export class SaveHelperDriver {
  /** Save: the libxc stream as the helper writes it. Ends only if the save succeeds; destroyed (no 'end') otherwise. */
  readonly stream: Readable | undefined;
  /** Restore: where the libxc stream goes; end() it at the end of the stream (a Remus failover point). */
  readonly input: Writable | undefined;
  /** Settles once the helper has exited and its output is read: the outcome, or a SaveHelperError. */
  readonly done: Promise<HelperOutcome>;
  /** The helper's argv (after the program). */
  readonly argv: readonly string[];

  private readonly spec: ModeSpec;
  private readonly child: ChildProcess;
  private readonly decoder = new SaveHelperDecoder();
  private readonly logs: string[] = [];
  private readonly logLines: number;
  private readonly killTimeoutMs: number;
  private readonly onLog: CommonOptions['onLog'];
  private readonly onProgress: CommonOptions['onProgress'];
  private current: DriverState = 'running';
  /** The callback being handled (the helper is blocked on its reply), with its failure value for abort(). */
  private owed: { id: number; name: string; failValue: number } | undefined;
  private callbackIds = 0;
  /** After a protocol error: the helper's output is out of step and dropped. */
  private discardOutput = false;
  private completion: { retval: number; errno: number } | undefined;
  private restoreResults: HelperOutcome['restoreResults'];
  /** Save: the helper's io fd, paused while the guest runs and the consumer lags. */
  private ioOut: Duplex | undefined;
  /** Save: from the suspend callback to postcopy the guest is stopped and its pages are read without waiting. */
  private guestStopped = false;
  private stopError: SaveHelperError | undefined;
  private callbackError: SaveHelperError | undefined;
  private suspends = 0;
  private checkpointCount = 0;
  private lastCallback = 'none yet';
  private drained = 0;
  private stderrTail = '';
  private killTimer: NodeJS.Timeout | undefined;
  private settled = false;
  private resolveDone!: (o: HelperOutcome) => void;
  private rejectDone!: (e: SaveHelperError) => void;

  constructor(spec: ModeSpec, options: CommonOptions) {
    this.spec = spec;
    this.argv = spec.args;
    this.logLines = options.logLines ?? DEFAULT_LOG_LINES;
    this.killTimeoutMs = options.killTimeoutMs ?? DEFAULT_KILL_TIMEOUT_MS;
    if (!Number.isInteger(this.logLines) || this.logLines < 0) badOption(`logLines ${this.logLines} is not a non-negative integer`);
    if (!Number.isInteger(this.killTimeoutMs) || this.killTimeoutMs < 1) badOption(`killTimeoutMs ${this.killTimeoutMs} is not a positive integer`);
    this.onLog = options.onLog;
    this.onProgress = options.onProgress;
    this.done = new Promise<HelperOutcome>((resolve, reject) => {
      this.resolveDone = resolve;
      this.rejectDone = reject;
    });
    // A caller that never looks at `done` must not turn a failed save into an unhandled rejection (a crash).
    this.done.catch(() => undefined);

    const file = options.command?.file ?? options.helperPath ?? DEFAULT_HELPER_PATH;
    const argv = [...(options.command?.args ?? []), ...spec.args];
    this.child = spawn(file, argv, { stdio: ['pipe', 'pipe', 'pipe', 'pipe'] });
    const [stdin, stdout, stderr, io] = this.child.stdio as unknown as [Writable, Readable, Readable, Duplex];
    // Errors on these (EPIPE after the helper died, ECONNRESET) are part of its
    // exit, reported through `done`; without a listener each would be a crash.
    for (const s of [stdin, stdout, stderr, io]) s.on('error', () => undefined);
    stdout.on('data', (chunk: Buffer) => this.onOutput(chunk));
    stderr.on('data', (chunk: Buffer) => this.onStderr(chunk));

    if (spec.mode === 'save') {
      // A high-water mark only tells a consumer using write-style flow control
      // when to slow down; the bound that matters is maxBufferedBytes.
      this.stream = new Readable({ read: () => this.ioOut?.resume(), highWaterMark: 4 * 2 ** 20 });
      this.ioOut = io;
      io.on('data', (chunk: Buffer) => this.onStream(chunk));
      this.input = undefined;
    } else {
      this.stream = undefined;
      this.input = io;
      // The helper never writes on fd 3 while restoring; read so an EOF is seen.
      io.resume();
    }

    this.child.once('error', (err) => {
      if (this.child.pid === undefined) {
        this.finish(new SaveHelperError(C.SAVE_HELPER_SPAWN_FAILED, `cannot start ${file}: ${err.message}`, { cause: err }));
      }
    });
    let exitTimer: NodeJS.Timeout | undefined;
    this.child.once('exit', (code, signal) => {
      if (this.killTimer) clearTimeout(this.killTimer);
      // 'close' follows once stdout and the io fd are read to their end.
      exitTimer = setTimeout(() => this.onExit(code, signal), CLOSE_GRACE_MS);
    });
    this.child.once('close', (code: number | null, signal: NodeJS.Signals | null) => {
      if (exitTimer) clearTimeout(exitTimer);
      if (this.child.pid !== undefined) this.onExit(code, signal);
    });
  }

  get state(): DriverState {
    return this.current;
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /** Bytes of stream read from the io fd so far (save). */
  get bytesDrained(): number {
    return this.drained;
  }

  /** checkpoint callbacks answered so far. */
  get checkpoints(): number {
    return this.checkpointCount;
  }

  /**
   * Stops the helper (SIGTERM: libxc's next write fails and it cleans up).
   * The protocol goes on until the helper exits, so its cleanup callbacks are
   * answered: by the handlers, except that a callback being handled now is
   * answered at once with its failure value. `done` then rejects with
   * SAVE_HELPER_ABORTED.
   */
  abort(reason = 'aborted by the caller'): void {
    this.halt(new SaveHelperError(C.SAVE_HELPER_ABORTED, reason), { keepProtocol: true });
  }

  private onOutput(chunk: Buffer): void {
    if (this.discardOutput || this.current === 'closed') return;
    const messages: HelperMessage[] = [];
    let error: unknown;
    try {
      this.decoder.push(chunk, messages);
    } catch (err) {
      error = err;
    }
    // The messages before a bad one are the helper's last words (its logs): handled first.
    for (const msg of messages) {
      this.onMessage(msg);
      if (this.discardOutput) return;
    }
    if (error !== undefined) this.protocolFailure(error);
  }

  /** The state machine: one switch over the message types, checked against the state and the mode. */
  private onMessage(msg: HelperMessage): void {
    const code = codeOf(msg);
    const info = MESSAGE_TYPES[code];
    const at = msg.offset === undefined ? '' : ` at offset ${msg.offset}`;
    const unexpected = (why: string): void => this.protocolFailure(new SaveHelperError(C.SAVE_HELPER_UNEXPECTED_MESSAGE, `${info.name}${at}: ${why}`, { offset: msg.offset }));
    if (this.current === 'callback') return unexpected(`arrived while the helper should be blocked waiting for our reply to ${this.owed?.name ?? 'a callback'}`);
    if (!(info.modes as readonly HelperMode[]).includes(this.spec.mode)) return unexpected(`is not sent while ${this.spec.mode === 'save' ? 'saving' : 'restoring'}`);
    if (info.gated && (this.spec.cbFlags & (1 << code)) === 0) return unexpected(`callback not enabled (cbflags 0x${this.spec.cbFlags.toString(16)})`);
    if (this.completion !== undefined && msg.type !== 'log' && msg.type !== 'progress') return unexpected('arrived after complete');
    switch (msg.type) {
      case 'log': {
        const entry: HelperLogEntry = { level: msg.level, levelName: logLevelName(msg.level), errno: msg.errno, context: msg.context, text: msg.text };
        this.keepLog(`${entry.levelName} ${msg.context}: ${msg.text}${msg.errno > 0 ? ` (errno ${msg.errno})` : ''}`);
        this.safely(() => this.onLog?.(entry));
        return;
      }
      case 'progress':
        this.safely(() => this.onProgress?.({ context: msg.context, doingWhat: msg.doingWhat, done: msg.done, total: msg.total }));
        return;
      case 'restore_results':
        // Once, at the end, for plain and Remus restores (COLO, not driven here, sends it at every checkpoint too).
        if (this.restoreResults !== undefined) return unexpected('sent twice');
        this.restoreResults = { storeGfn: msg.storeGfn, consoleGfn: msg.consoleGfn };
        return;
      case 'complete':
        if (this.spec.mode === 'restore' && this.restoreResults === undefined) return unexpected('came before restore_results');
        this.completion = { retval: msg.retval, errno: msg.errno };
        if (this.current === 'running') this.current = 'completed';
        this.lastCallback = 'complete';
        this.reply(Reply.OK);
        return;
      case 'suspend':
      case 'postcopy':
      case 'checkpoint':
      case 'wait_checkpoint':
      case 'switch_qemu_logdirty':
      case 'static_data_done': {
        const cb = this.spec.callbacks.get(code);
        if (cb === undefined) return unexpected('no handler');
        if (msg.type === 'suspend') {
          this.suspends++;
          this.guestStopped = true;
          this.ioOut?.resume();
        }
        if (msg.type === 'postcopy') this.guestStopped = false;
        this.lastCallback = msg.type === 'switch_qemu_logdirty' ? `switch_qemu_logdirty(${msg.enable})` : msg.type;
        void this.runCallback(msg.type, () => cb.run(msg), cb.failValue, msg.type === 'checkpoint');
        return;
      }
    }
  }

  private async runCallback(name: string, run: () => Promise<number>, failValue: number, isCheckpoint: boolean): Promise<void> {
    const id = ++this.callbackIds;
    this.current = 'callback';
    this.owed = { id, name, failValue };
    let value: number;
    try {
      value = await run();
    } catch (err) {
      this.callbackError ??= new SaveHelperError(C.SAVE_HELPER_CALLBACK_FAILED, `the ${name} handler failed (epoch ${this.suspends}): ${err instanceof Error ? err.message : String(err)}`, { cause: err });
      value = failValue;
    }
    // Answered already (by abort()), or the driver stopped for good meanwhile.
    if (this.owed?.id !== id) return;
    this.owed = undefined;
    this.current = this.stopError === undefined ? 'running' : 'stopping';
    if (isCheckpoint) this.checkpointCount++;
    this.reply(value);
  }

  private reply(value: number): void {
    const stdin = this.child.stdin;
    if (stdin && !stdin.destroyed && stdin.writable) stdin.write(encodeReply(value));
  }

  private onStream(chunk: Buffer): void {
    this.drained += chunk.length;
    const stream = this.stream!;
    if (stream.destroyed) return; // stopping: what the helper still writes is discarded
    stream.push(chunk);
    if (!this.guestStopped && stream.readableLength >= stream.readableHighWaterMark) this.ioOut?.pause();
    if (stream.readableLength > this.spec.maxBufferedBytes) {
      this.halt(
        new SaveHelperError(C.SAVE_HELPER_STREAM_OVERFLOW, `the stream's consumer fell ${stream.readableLength} bytes behind (maxBufferedBytes ${this.spec.maxBufferedBytes}); stopped the save`),
        { keepProtocol: true },
      );
    }
  }

  private onStderr(chunk: Buffer): void {
    this.stderrTail = (this.stderrTail + chunk.toString('utf8')).slice(-STDERR_TAIL_BYTES);
  }

  private keepLog(line: string): void {
    if (this.logLines === 0) return;
    this.logs.push(line);
    if (this.logs.length > this.logLines) this.logs.shift();
  }

  /** The last log lines, then the last lines of stderr (perror and assert messages go there). */
  private lastLogs(): string[] {
    const stderr = this.stderrTail
      .split('\n')
      .filter((l) => l.trim() !== '')
      .slice(-Math.min(this.logLines, 5))
      .map((l) => `stderr: ${l}`);
    return [...this.logs, ...stderr];
  }

  private protocolFailure(err: unknown): void {
    const e = err instanceof SaveHelperError ? err : new SaveHelperError(C.SAVE_HELPER_BAD_MESSAGE, String(err), { cause: err });
    this.halt(e, { keepProtocol: false });
  }

  /**
   * Stops for good (the first reason wins): SIGTERM, escalating to SIGKILL.
   * `keepProtocol` false: the output is out of step, so stdin is closed (a
   * helper waiting for a reply exits) and the rest of stdout is dropped.
   */
  private halt(error: SaveHelperError, how: { keepProtocol: boolean }): void {
    if (this.settled) return;
    if (this.stopError === undefined) this.stopError = error;
    if (this.owed !== undefined) {
      // The helper is blocked on this reply: answer it now, with the failure
      // value, and before the signal. Its SIGTERM handler has no SA_RESTART,
      // so a read interrupted with nothing to return fails, and the helper
      // exits 254 at once, skipping libxc's cleanup.
      const owed = this.owed;
      this.owed = undefined;
      if (how.keepProtocol) this.reply(owed.failValue);
    }
    this.current = 'stopping';
    if (!how.keepProtocol) {
      this.discardOutput = true;
      this.child.stdin?.end();
    }
    this.stream?.destroy();
    if (this.child.exitCode === null && this.child.signalCode === null && this.child.pid !== undefined) {
      this.child.kill('SIGTERM');
      this.killTimer ??= setTimeout(() => this.child.kill('SIGKILL'), this.killTimeoutMs);
    }
  }

  private onExit(code: number | null, signal: NodeJS.Signals | null): void {
    if (this.killTimer) clearTimeout(this.killTimer);
    const how = signal !== null ? `was killed by ${signal}` : `exited with code ${code}`;
    const cut = this.decoder.idle || this.discardOutput ? '' : '; its output ended inside a message';
    const where = `epoch ${this.suspends}, ${this.checkpointCount} checkpoints, last callback ${this.lastCallback}${cut}`;
    const ctx = { exitCode: code, signal, lastLogs: this.lastLogs() };
    const c = this.completion;
    if (this.stopError !== undefined) return this.finish(withExit(this.stopError, how, ctx));
    if (c === undefined) {
      return this.finish(new SaveHelperError(C.SAVE_HELPER_EXITED, `libxl-save-helper ${how} before completing (${where})`, { ...ctx, cause: this.callbackError }));
    }
    const result = { ...ctx, retval: c.retval, errno: c.errno };
    if (code !== 0) return this.finish(new SaveHelperError(C.SAVE_HELPER_EXITED, `libxl-save-helper ${how} after completing with ${c.retval}`, { ...result, cause: this.callbackError }));
    if (this.callbackError !== undefined) return this.finish(new SaveHelperError(C.SAVE_HELPER_CALLBACK_FAILED, `${this.callbackError.message}; the helper completed with ${c.retval}`, { ...result, cause: this.callbackError.cause }));
    if (c.retval !== 0) return this.finish(new SaveHelperError(C.SAVE_HELPER_FAILED, `libxc's ${this.spec.mode} failed: complete retval ${c.retval}, errno ${c.errno} (${where})`, result));
    this.finish({ retval: c.retval, errno: c.errno, checkpoints: this.checkpointCount, restoreResults: this.restoreResults, lastLogs: ctx.lastLogs });
  }

  private finish(outcome: HelperOutcome | SaveHelperError): void {
    if (this.settled) return;
    this.settled = true;
    this.current = 'closed';
    if (this.killTimer) clearTimeout(this.killTimer);
    if (outcome instanceof SaveHelperError) {
      this.stream?.destroy();
      if (!this.input?.destroyed) this.input?.destroy();
      this.rejectDone(outcome);
    } else {
      this.stream?.push(null);
      this.resolveDone(outcome);
    }
  }

  /** A throwing onLog/onProgress is the caller's bug; it must not break the protocol. */
  private safely(fn: () => void): void {
    try {
      fn();
    } catch {
      // Ignored on purpose: logging is best effort.
    }
  }
}

function codeOf(msg: HelperMessage): MessageCode {
  for (const [code, info] of Object.entries(MESSAGE_TYPES)) if (info.name === msg.type) return Number(code) as MessageCode;
  /* c8 ignore next */
  throw new SaveHelperError(C.SAVE_HELPER_UNKNOWN_TYPE, `no message type ${String(msg.type)}`);
}

/** The stop reason, with how the helper ended and its last logs added. */
function withExit(err: SaveHelperError, how: string, ctx: { exitCode: number | null; signal: NodeJS.Signals | null; lastLogs: string[] }): SaveHelperError {
  const code: SaveHelperErrorCode = err.code;
  return new SaveHelperError(code, `${err.detail} (the helper then ${how})`, { ...ctx, offset: err.offset, cause: err.cause, retval: err.retval, errno: err.errno });
}
