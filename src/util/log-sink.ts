/**
 * Where log lines go: a file descriptor (stderr), written so that logging
 * never stops the node. A full disk, a closed stderr or a reader that does
 * not read must not cost a heartbeat or an output release:
 *
 * - one write at a time, off the event loop (fs.write runs on libuv's
 *   thread pool; a blocking pipe can hold one pool thread, never the loop);
 * - lines queue up to a bound, and beyond it are dropped and counted;
 * - a write that fails with ENOSPC or EIO drops its batch and tries again
 *   later with new lines; EAGAIN waits a little and tries the same bytes;
 *   EPIPE or EBADF (nobody will ever read) stops writing for good;
 * - once writing works again, one line says how many were dropped and why.
 *
 * `sync` writes each line before returning while that works (verification
 * lines must survive a kill); a write refused with EAGAIN joins the queue
 * instead. It is for verification runs: on a blocking descriptor whose
 * reader stalls, a synchronous write waits for it.
 *
 * `format` rewrites each line (pino's JSON) before it is queued, the drop
 * notice too: the human-readable format (pretty-log.ts). switchTo() moves
 * the sink to another descriptor (a log file reopened after rotation)
 * between writes, never under one in flight.
 */
import { write, writeSync } from 'node:fs';

export interface LogSinkOptions {
  /** Bytes of lines waiting to be written before new ones are dropped (default 1 MiB). */
  maxQueuedBytes?: number;
  sync?: boolean;
  /** How long to wait before trying again after EAGAIN or a dropped batch (default 100 ms). */
  retryMs?: number;
  /** The logger's name, for the drop notice. */
  name?: string;
  /** Rewrites a JSON line (ending in a newline) into what is written; must not throw. */
  format?: (line: string) => string;
}

const DEFAULT_MAX_QUEUED = 1024 * 1024;
const FOR_GOOD = new Set(['EPIPE', 'EBADF', 'EINVAL']);
const TRY_SAME_AGAIN = new Set(['EAGAIN', 'EWOULDBLOCK', 'EINTR']);

export class LogSink {
  private queue: string[] = [];
  private queued = 0;
  private writing = false;
  private retryTimer: NodeJS.Timeout | undefined;
  private droppedLines = 0;
  /** Dropped lines no notice has reported yet. */
  private unreported = 0;
  private lastError: string | undefined;
  private closedFor: string | undefined;
  /** A descriptor to move to once the write in flight is done, and what to do with the one left. */
  private next: { fd: number; release: (old: number) => void } | undefined;

  constructor(
    private fd: number,
    private readonly options: LogSinkOptions = {},
  ) {}

  /** Lines dropped so far, in all (queue full, or the descriptor refused them). */
  get dropped(): number {
    return this.droppedLines;
  }

  /** Why writing stopped for good, if it did. */
  get closed(): string | undefined {
    return this.closedFor;
  }

  /** pino's destination interface: takes one line, never blocks, never throws. */
  write(json: string): boolean {
    const line = this.options.format === undefined ? json : this.options.format(json);
    if (this.closedFor !== undefined) {
      this.drop(1);
      return true;
    }
    if (this.options.sync === true && !this.writing && this.queue.length === 0 && this.unreported === 0 && this.writeNow(line)) return true;
    if (this.queued + line.length > (this.options.maxQueuedBytes ?? DEFAULT_MAX_QUEUED)) {
      this.drop(1);
      return true;
    }
    this.queue.push(line);
    this.queued += line.length;
    this.pump();
    return true;
  }

  /**
   * Writes to `fd` from now on: at once when no write is in flight, else as
   * soon as it is done. `release` gets the descriptor left behind, when
   * nothing will write to it any more (the caller closes it). A descriptor
   * that had stopped working for good is forgotten with it.
   */
  switchTo(fd: number, release: (old: number) => void): void {
    // A switch asked for while another waits: the waiting descriptor is never used.
    if (this.next !== undefined) this.next.release(this.next.fd);
    this.next = { fd, release };
    if (!this.writing) this.applySwitch();
  }

  private applySwitch(): void {
    const next = this.next;
    if (next === undefined) return;
    this.next = undefined;
    const old = this.fd;
    this.fd = next.fd;
    this.closedFor = undefined;
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    next.release(old);
    this.pump();
  }

  /** Writes what is queued now, as far as the descriptor takes it without blocking for long (at exit). */
  flushSync(): void {
    clearTimeout(this.retryTimer);
    if (this.closedFor !== undefined || this.writing) return;
    const text = this.take();
    if (text.length > 0) this.writeNow(text);
  }

  /** A synchronous write; false when it could not be done (the line should wait or is dropped). */
  private writeNow(text: string): boolean {
    try {
      const buf = Buffer.from(text);
      let at = 0;
      while (at < buf.length) at += writeSync(this.fd, buf, at);
      return true;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? 'EIO';
      if (TRY_SAME_AGAIN.has(code)) return false;
      this.failed(code, 1);
      return true;
    }
  }

  private take(): string {
    let text = this.queue.join('');
    this.queue = [];
    this.queued = 0;
    if (this.unreported > 0 && this.closedFor === undefined) {
      const notice = `${JSON.stringify({ level: 40, time: Date.now(), name: this.options.name, msg: `${this.unreported} log lines dropped: the log could not take them (${this.lastError ?? 'queue full'})` })}\n`;
      text = (this.options.format === undefined ? notice : this.options.format(notice)) + text;
    }
    return text;
  }

  private pump(): void {
    if (this.writing || this.retryTimer !== undefined || this.queue.length === 0 || this.closedFor !== undefined) return;
    const lines = this.queue.length;
    const hadDropped = this.unreported;
    const buf = Buffer.from(this.take());
    this.writing = true;
    this.writeFrom(buf, 0, lines, hadDropped);
  }

  private writeFrom(buf: Buffer, at: number, lines: number, hadDropped: number): void {
    write(this.fd, buf, at, buf.length - at, null, (err, written) => {
      if (err === null && at + written < buf.length) {
        this.writeFrom(buf, at + written, lines, hadDropped);
        return;
      }
      this.writing = false;
      if (err === null) {
        // The notice went out with this batch: the count of what to report starts again.
        this.unreported -= hadDropped;
        this.lastError = undefined;
      } else if (TRY_SAME_AGAIN.has(err.code ?? 'EIO')) {
        // Put back what was not written, ahead of newer lines.
        const rest = buf.subarray(at).toString();
        this.queue.unshift(rest);
        this.queued += rest.length;
        // The notice is in what was written, or in what goes back: either way it is not due again.
        this.unreported -= hadDropped;
      } else {
        this.failed(err.code ?? 'EIO', lines);
      }
      // A switch asked for during the write: the rest goes to the new descriptor, at once.
      if (this.next !== undefined) this.applySwitch();
      else if (err === null) this.pump();
      else this.later();
    });
  }

  private drop(lines: number): void {
    this.droppedLines += lines;
    this.unreported += lines;
  }

  private failed(code: string, lines: number): void {
    this.drop(lines);
    this.lastError = code;
    if (FOR_GOOD.has(code)) {
      this.closedFor = code;
      this.queue = [];
      this.queued = 0;
    }
  }

  private later(): void {
    if (this.closedFor !== undefined) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.pump();
    }, this.options.retryMs ?? 100);
    // Logging must not keep a finished process alive.
    this.retryTimer.unref();
  }
}
