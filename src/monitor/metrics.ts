/**
 * Prometheus metrics, derived from the same events the WebSocket carries so
 * the two never disagree, and from what the source reads at scrape time
 * (SourceReadings). Own registry (not prom-client's global one): two
 * monitors in one process, as in tests, must not share counters.
 *
 * One meaning per name: what only one role measures is exported only by
 * that role (the primary's epoch time and the secondary's apply time are two
 * names), and tandem_state lists only the role's own states.
 *
 * A monitor showing several domains keeps one registry for the process
 * (scope 'process': the process's own series, build info, the monitor's
 * clients) and one per domain (scope 'domain': every series of a node,
 * labelled domain="NAME"), and merges their texts at scrape time
 * (mergeExposition): a domain detached takes its registry, so its series,
 * with it.
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { AdmissionStats } from './admission.js';
import { tandemVersion } from './build-info.js';
import { PRIMARY_STATES, SECONDARY_STATES, type BroadcastEvent, type MonitorState, type NodeRole, type PrecopyFields } from './events.js';
import { ProcessMetrics } from './process-metrics.js';
import type { SourceReadings } from './source.js';

/** What the service front reports of its clients (the front's FrontClientStats). */
export interface ServiceClientStats {
  connections: number;
  maxConnections: number;
  refused: number;
  evicted: number;
  timedOut: number;
}

/** Which series a registry holds: all of them (a monitor of one node, unlabelled), a node's, or the process's. */
export type MetricsScope = 'all' | 'domain' | 'process';

export interface MetricsOptions {
  node: NodeRole;
  /** Default 'all'. */
  scope?: MetricsScope;
  /** The domain label of every series (scope 'domain'). */
  domain?: string;
  /** Current state, read at scrape time (scopes 'all', 'domain'). */
  state?: () => MonitorState;
  /** Replication lag in ms at scrape time (null: no epoch yet; scopes 'all', 'domain'). */
  lagMs?: () => number | null;
  /** The monitor's WebSocket clients (scopes 'all', 'process'). */
  clients?: () => number;
  /** The monitor's own WebSocket slots (undefined before start). */
  admission?: () => AdmissionStats | undefined;
  /** The service front's clients, on a node that has one (undefined while it is not running). */
  serviceClients?: () => ServiceClientStats | undefined;
  /** The last epoch the replica holds (acked on the primary, applied on the secondary). */
  lastEpoch?: () => number;
  /** The pre-copy under way (primary), or null. */
  precopy?: () => PrecopyFields | null;
  /** Peer, generation, held output, time unprotected, stream bytes (see SourceReadings). */
  readings?: () => SourceReadings;
  /** Whether the peer's monitor (monitor.peer) answered its last read; absent: no peer monitor configured. */
  peerMonitorUp?: () => boolean;
}

/**
 * What a reading that is undefined does to a gauge: it is left out of the
 * scrape (reset() would not do: prom-client resets an unlabelled gauge to 0).
 */
function setOrReset(gauge: Gauge, value: number | undefined): void {
  if (value === undefined) gauge.remove({});
  else gauge.set(value);
}

/**
 * A counter whose total is kept elsewhere: at each scrape, `into` (the
 * counter, or one of its label sets) goes up by what the total grew by
 * since the last scrape (prom-client counters only go up by inc()).
 */
function mirror(read: () => number | undefined): (into: { inc(by: number): void }) => void {
  let last = 0;
  return (into) => {
    const now = read();
    if (now === undefined) return;
    // A total that went down belongs to a new owner (a front restarted): count it from zero.
    const delta = now >= last ? now - last : now;
    last = now;
    // Even by 0: a counter (and each of its label sets) is exported from the first scrape on.
    into.inc(delta);
  };
}

export class MonitorMetrics {
  readonly registry = new Registry();
  private readonly process: ProcessMetrics | undefined;
  private readonly pause: Histogram | undefined;
  private readonly epochTime: Histogram | undefined;
  private readonly applyTime: Histogram | undefined;
  /** Counted from the epochs' bytes (the secondary); undefined where the source counts the stream itself (the primary). */
  private readonly epochBytes: Counter | undefined;
  private readonly epochs: Counter | undefined;
  private readonly divergences: Counter | undefined;
  private readonly failovers: Counter | undefined;
  private readonly controls: Counter<'action' | 'ok'> | undefined;

  constructor(options: MetricsOptions) {
    const scope = options.scope ?? 'all';
    this.registry.setDefaultLabels(options.domain === undefined ? { node: options.node } : { node: options.node, domain: options.domain });
    if (scope !== 'domain') {
      const registers = [this.registry];
      this.process = new ProcessMetrics(this.registry);
      new Gauge({ name: 'tandem_build_info', help: 'This build: 1, labelled with its version and the Node.js it runs on', labelNames: ['version', 'nodejs'], registers }).set({ version: tandemVersion(), nodejs: process.versions.node }, 1);
    }
    if (scope !== 'process') {
      const nodeSeries = this.nodeSeries(options);
      this.pause = nodeSeries.pause;
      this.epochTime = nodeSeries.epochTime;
      this.applyTime = nodeSeries.applyTime;
      this.epochBytes = nodeSeries.epochBytes;
      this.epochs = nodeSeries.epochs;
      this.divergences = nodeSeries.divergences;
      this.failovers = nodeSeries.failovers;
      this.controls = nodeSeries.controls;
    }
    if (scope !== 'domain') this.monitorSeries(options);
  }

  /** A node's own series. */
  private nodeSeries(options: MetricsOptions): {
    pause?: Histogram;
    epochTime?: Histogram;
    applyTime?: Histogram;
    epochBytes?: Counter;
    epochs: Counter;
    divergences: Counter;
    failovers: Counter;
    controls: Counter<'action' | 'ok'>;
  } {
    const registers = [this.registry];
    const primary = options.node === 'primary';
    const out: Partial<ReturnType<MonitorMetrics['nodeSeries']>> = {};
    // Epochs up to seconds on a big dirty set.
    const epochBuckets = [1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 500e-3, 1, 2.5, 5];
    if (primary) {
      // Pauses are tens of µs to tens of ms.
      out.pause = new Histogram({ name: 'tandem_pause_seconds', help: 'Guest pause per epoch (suspend to resume)', buckets: [50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3], registers });
      out.epochTime = new Histogram({ name: 'tandem_epoch_seconds', help: 'Epoch time on the primary, from its suspend to the secondary\'s ack', buckets: epochBuckets, registers });
    } else {
      out.applyTime = new Histogram({ name: 'tandem_apply_seconds', help: 'Time the secondary took to apply a checkpoint to its replica', buckets: epochBuckets, registers });
    }
    const readings = options.readings;
    if (primary) {
      // The engine counts every byte it writes, the live pre-copy's included (epoch events carry only their own).
      const sent = mirror(() => readings?.().streamBytes);
      new Counter({ name: 'tandem_replicated_bytes_total', help: 'Checkpoint stream bytes: sent (primary, pre-copies included) or applied (secondary)', registers, collect() { sent(this); } });
    } else {
      out.epochBytes = new Counter({ name: 'tandem_replicated_bytes_total', help: 'Checkpoint stream bytes: sent (primary, pre-copies included) or applied (secondary)', registers });
    }
    out.epochs = new Counter({ name: 'tandem_epochs_total', help: 'Checkpoints the replica holds: acked (primary) or applied (secondary)', registers });
    out.divergences = new Counter({ name: 'tandem_divergences_total', help: 'Output divergences reported by the comparator', registers });
    out.failovers = new Counter({ name: 'tandem_failovers_total', help: 'Failovers completed on this node', registers });
    out.controls = new Counter({ name: 'tandem_control_actions_total', help: 'Control actions tried, by action and outcome', labelNames: ['action', 'ok'], registers });
    const states: readonly MonitorState[] = primary ? PRIMARY_STATES : SECONDARY_STATES;
    new Gauge({
      name: 'tandem_state',
      help: "Protection state: 1 for the current state, 0 for the role's others",
      labelNames: ['state'],
      registers,
      collect() {
        const now = options.state!();
        for (const s of states) this.set({ state: s }, s === now ? 1 : 0);
      },
    });
    const lastEpoch = options.lastEpoch;
    if (lastEpoch !== undefined) new Gauge({ name: 'tandem_last_epoch', help: 'The last checkpoint the replica holds: acked (primary) or applied (secondary); 0 before the first', registers, collect() { this.set(lastEpoch()); } });
    if (readings !== undefined) {
      new Gauge({ name: 'tandem_peer_up', help: 'The peer is connected: the secondary (primary), a streaming primary (secondary; after a failover, its own standby)', registers, collect() { this.set(readings().peerUp ? 1 : 0); } });
      new Gauge({ name: 'tandem_generation', help: 'The generation this primary streams as, or of the primary whose checkpoint the replica holds; absent when none', registers, collect() { setOrReset(this, readings().generation); } });
      new Gauge({
        name: 'tandem_unprotected_seconds',
        help: 'How long the guest this node runs has been without a standby; 0 while protected; absent where no guest runs (a secondary standing by)',
        registers,
        collect() {
          const ms = readings().unprotectedMs;
          setOrReset(this, ms === undefined ? undefined : ms / 1000);
        },
      });
      // A secondary holds output too once it serves the guest with a standby of its own.
      new Gauge({ name: 'tandem_held_output_bytes', help: 'Guest output held until an epoch covering it is acked, bytes; absent where Tandem holds none', registers, collect() { setOrReset(this, readings().heldOutputBytes); } });
    }
    const peerMonitorUp = options.peerMonitorUp;
    if (peerMonitorUp !== undefined) {
      // Not tandem_peer_up: that one is the replication peer; this is whether the pair view is current.
      new Gauge({ name: 'tandem_peer_monitor_up', help: "The other node's monitor (monitor.peer) answered its last read: 1, else 0; absent when none is configured", registers, collect() { this.set(peerMonitorUp() ? 1 : 0); } });
    }
    const precopy = options.precopy;
    if (primary && precopy !== undefined) {
      const field = (read: (p: PrecopyFields) => number | null) => (g: Gauge): void => {
        const p = precopy();
        setOrReset(g, p === null ? undefined : (read(p) ?? undefined));
      };
      const iteration = field((p) => p.iteration);
      const sent = field((p) => p.pagesSent);
      const remaining = field((p) => (p.pagesSent === null || p.pagesTotal === null ? null : Math.max(0, p.pagesTotal - p.pagesSent)));
      const bytes = field((p) => p.bytes);
      const rate = field((p) => p.bytesPerSecond);
      new Gauge({ name: 'tandem_precopy_iteration', help: 'The live pre-copy round under way (1 sends every page); absent outside a pre-copy', registers, collect() { iteration(this); } });
      new Gauge({ name: 'tandem_precopy_pages_sent', help: 'Pages of the pre-copy round under way sent so far', registers, collect() { sent(this); } });
      new Gauge({ name: 'tandem_precopy_pages_remaining', help: 'Pages of the pre-copy round under way still to send', registers, collect() { remaining(this); } });
      new Gauge({ name: 'tandem_precopy_bytes', help: 'Stream bytes sent since the pre-copy under way began', registers, collect() { bytes(this); } });
      new Gauge({ name: 'tandem_precopy_bytes_per_second', help: 'Pre-copy stream rate at its last report, bytes per second', registers, collect() { rate(this); } });
    }
    new Gauge({
      name: 'tandem_replication_lag_seconds',
      help: 'Time since the last acked (primary) or applied (secondary) epoch; absent before the first',
      registers,
      collect() {
        const lag = options.lagMs!();
        setOrReset(this, lag === null ? undefined : lag / 1000);
      },
    });
    const service = options.serviceClients;
    if (service !== undefined) {
      const refused = mirror(() => service()?.refused);
      const evicted = mirror(() => service()?.evicted);
      const timedOut = mirror(() => service()?.timedOut);
      new Gauge({ name: 'tandem_service_clients', help: "Clients connected to the guest's service through the front", registers, collect() { this.set(service()?.connections ?? 0); } });
      new Gauge({ name: 'tandem_service_clients_max', help: "The front's max_clients", registers, collect() { this.set(service()?.maxConnections ?? 0); } });
      new Counter({ name: 'tandem_service_clients_refused_total', help: 'Clients refused at max_clients, none idle long enough to give up its slot', registers, collect() { refused(this); } });
      new Counter({ name: 'tandem_service_clients_evicted_total', help: 'Idle clients closed to admit a new one at max_clients', registers, collect() { evicted(this); } });
      new Counter({ name: 'tandem_service_clients_timed_out_total', help: 'Clients closed by the idle timeout', registers, collect() { timedOut(this); } });
    }
    return out as ReturnType<MonitorMetrics['nodeSeries']>;
  }

  /** The monitor's own series: its WebSocket clients and slots. */
  private monitorSeries(options: MetricsOptions): void {
    const registers = [this.registry];
    const clients = options.clients ?? (() => 0);
    new Gauge({ name: 'tandem_monitor_clients', help: 'Connected monitor WebSocket clients', registers, collect() { this.set(clients()); } });
    const admission = options.admission ?? (() => undefined);
    new Gauge({ name: 'tandem_monitor_operator_clients', help: 'Connected monitor WebSocket clients that presented the control token', registers, collect() { this.set(admission()?.operators ?? 0); } });
    const evictedViewers = mirror(() => admission()?.evictedViewers);
    new Counter({ name: 'tandem_monitor_viewers_evicted_total', help: 'Monitor viewers closed to give their slot to an operator', registers, collect() { evictedViewers(this); } });
    const refusedViewers = mirror(() => admission()?.refusedViewers);
    const refusedOperators = mirror(() => admission()?.refusedOperators);
    new Counter({
      name: 'tandem_monitor_clients_refused_total',
      help: 'Monitor WebSocket clients refused for want of a slot, by role',
      labelNames: ['role'],
      registers,
      collect() {
        refusedViewers(this.labels({ role: 'viewer' }));
        refusedOperators(this.labels({ role: 'operator' }));
      },
    });
  }

  observe(event: BroadcastEvent): void {
    switch (event.type) {
      case 'epoch':
        this.epochs?.inc();
        this.epochBytes?.inc(event.bytes);
        if (event.pauseUs !== null) this.pause?.observe(event.pauseUs / 1e6);
        if (event.totalMs !== null) this.epochTime?.observe(event.totalMs / 1000);
        if (event.applyMs !== null) this.applyTime?.observe(event.applyMs / 1000);
        return;
      case 'divergence':
        this.divergences?.inc();
        return;
      case 'state':
        // Once per takeover: a node that took over says 'failed-over' again at each change of its protection (lost, re-protecting, protected again).
        if (event.state === 'failed-over' && event.previous !== 'failed-over') this.failovers?.inc();
        return;
      case 'control':
        this.controls?.inc({ action: event.action, ok: String(event.ok) });
        return;
      default:
        return;
    }
  }

  /** Starts sampling what is measured between scrapes (the event loop's delay). */
  start(): void {
    this.process?.start();
  }

  stop(): void {
    this.process?.stop();
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}

/**
 * Merges the texts of several registries into one exposition: the
 * Prometheus text format wants each family once (one HELP, one TYPE, then
 * all its samples), and each domain's registry has the same families.
 * prom-client writes each family as its HELP and TYPE lines, then its
 * samples, then a blank line.
 */
export function mergeExposition(texts: readonly string[]): string {
  const families = new Map<string, { head: string[]; samples: string[] }>();
  for (const text of texts) {
    let current: { head: string[]; samples: string[] } | undefined;
    for (const line of text.split('\n')) {
      if (line === '') continue;
      const help = /^# HELP (\S+) /.exec(line);
      if (help !== null) {
        const name = help[1];
        current = families.get(name);
        if (current === undefined) families.set(name, (current = { head: [line], samples: [] }));
        else current = { head: [], samples: current.samples };
        continue;
      }
      if (current === undefined) continue;
      if (line.startsWith('# ')) {
        if (current.head.length > 0 && current.head.length < 2) current.head.push(line);
        continue;
      }
      current.samples.push(line);
    }
  }
  let out = '';
  for (const { head, samples } of families.values()) out += `${[...head, ...samples].join('\n')}\n\n`;
  return out;
}
