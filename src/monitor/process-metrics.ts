/**
 * The process's own metrics under the names Prometheus's client libraries
 * use (process_*, nodejs_*), so the usual dashboards and alerts read them:
 * CPU, memory, file descriptors, the heap and the event loop's delay. Read
 * from process.* at scrape time; the event loop's delay is sampled between
 * scrapes (perf_hooks), which is why this has a start() and a stop().
 */
import { readdirSync } from 'node:fs';
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import { Counter, Gauge, type Registry } from 'prom-client';

/** The event loop is sampled this often, ms (Node's default). */
const LOOP_RESOLUTION_MS = 10;

/** A counter whose total the kernel keeps: set to it at each scrape. */
function total(into: Counter, value: number): void {
  into.reset();
  into.inc(value);
}

export class ProcessMetrics {
  private delay: IntervalHistogram | undefined;
  /** The last window's delay, kept when a scrape comes before any new sample. */
  private lag = { mean: 0, max: 0, p99: 0 };

  constructor(registry: Registry) {
    const registers = [registry];
    const cpu = (): NodeJS.CpuUsage => process.cpuUsage();
    new Counter({ name: 'process_cpu_user_seconds_total', help: 'User CPU time spent, seconds', registers, collect() { total(this, cpu().user / 1e6); } });
    new Counter({ name: 'process_cpu_system_seconds_total', help: 'System CPU time spent, seconds', registers, collect() { total(this, cpu().system / 1e6); } });
    new Counter({
      name: 'process_cpu_seconds_total',
      help: 'User and system CPU time spent, seconds',
      registers,
      collect() {
        const c = cpu();
        total(this, (c.user + c.system) / 1e6);
      },
    });
    new Gauge({ name: 'process_resident_memory_bytes', help: 'Resident memory size, bytes', registers, collect() { this.set(process.memoryUsage.rss()); } });
    // performance.timeOrigin is when this process began, in ms since the Unix epoch.
    const startedAt = performance.timeOrigin / 1000;
    new Gauge({ name: 'process_start_time_seconds', help: 'Start time of the process since the Unix epoch, seconds', registers, collect() { this.set(startedAt); } });
    new Gauge({
      name: 'process_open_fds',
      help: 'Open file descriptors',
      registers,
      collect() {
        try {
          // Minus the descriptor readdir itself holds open while it reads.
          this.set(readdirSync('/proc/self/fd').length - 1);
        } catch {
          this.remove({}); // not Linux, or /proc is not mounted: absent rather than wrong
        }
      },
    });
    new Gauge({ name: 'nodejs_heap_size_total_bytes', help: 'V8 heap size, bytes', registers, collect() { this.set(process.memoryUsage().heapTotal); } });
    new Gauge({ name: 'nodejs_heap_size_used_bytes', help: 'V8 heap used, bytes', registers, collect() { this.set(process.memoryUsage().heapUsed); } });
    new Gauge({ name: 'nodejs_external_memory_bytes', help: 'Memory of C++ objects bound to JavaScript objects (buffers included), bytes', registers, collect() { this.set(process.memoryUsage().external); } });
    const lag = (): { mean: number; max: number; p99: number } => this.window();
    new Gauge({ name: 'nodejs_eventloop_lag_seconds', help: 'Mean event loop delay since the previous scrape, seconds', registers, collect() { this.set(lag().mean); } });
    new Gauge({ name: 'nodejs_eventloop_lag_max_seconds', help: 'Longest event loop delay since the previous scrape, seconds', registers, collect() { this.set(lag().max); } });
    new Gauge({ name: 'nodejs_eventloop_lag_p99_seconds', help: '99th percentile of the event loop delay since the previous scrape, seconds', registers, collect() { this.set(lag().p99); } });
  }

  start(): void {
    if (this.delay !== undefined) return;
    this.delay = monitorEventLoopDelay({ resolution: LOOP_RESOLUTION_MS });
    this.delay.enable();
  }

  stop(): void {
    this.delay?.disable();
    this.delay = undefined;
  }

  /**
   * The delay since the last scrape's window closed. The three gauges of one
   * scrape read it in turn: the first reading closes the window, the others
   * get the same numbers until a new sample arrives.
   */
  private window(): { mean: number; max: number; p99: number } {
    const h = this.delay;
    if (h !== undefined && h.count > 0) {
      // The histogram holds each sampling interval as it was (the 10 ms included): the lag is what exceeds it.
      const beyond = (ns: number): number => Math.max(0, ns / 1e9 - LOOP_RESOLUTION_MS / 1000);
      this.lag = { mean: beyond(h.mean), max: beyond(h.max), p99: beyond(h.percentile(99)) };
      h.reset();
    }
    return this.lag;
  }
}
