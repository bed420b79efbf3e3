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

  constructor(
    private readonly fd: number,
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
  write(line: string): boolean {
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
      text = `${JSON.stringify({ level: 40, time: Date.now(), name: this.options.name, msg: `${this.unreported} log lines dropped: the log could not take them (${this.lastError ?? 'queue full'})` })}\n${text}`;
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
        this.pump();
        return;
      }
      const code = err.code ?? 'EIO';
      if (TRY_SAME_AGAIN.has(code)) {
        // Put back what was not written, ahead of newer lines.
        const rest = buf.subarray(at).toString();
        this.queue.unshift(rest);
        this.queued += rest.length;
        // The notice is in what was written, or in what goes back: either way it is not due again.
        this.unreported -= hadDropped;
      } else {
        this.failed(code, lines);
      }
      this.later();
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
