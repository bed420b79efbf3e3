/**
 * Prometheus metrics, derived from the same events the WebSocket carries so
 * the two never disagree. Own registry (not prom-client's global one): two
 * monitors in one process, as in tests, must not share counters.
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { AdmissionStats } from './admission.js';
import { MONITOR_STATES, type BroadcastEvent, type MonitorState, type NodeRole } from './events.js';

/** What the service front reports of its clients (the front's FrontClientStats). */
export interface ServiceClientStats {
  connections: number;
  maxConnections: number;
  refused: number;
  evicted: number;
  timedOut: number;
}

export interface MetricsOptions {
  node: NodeRole;
  /** Current state, read at scrape time. */
  state: () => MonitorState;
  /** Replication lag in ms at scrape time (null: no epoch yet). */
  lagMs: () => number | null;
  clients: () => number;
  /** The monitor's own WebSocket slots (undefined before start). */
  admission?: () => AdmissionStats | undefined;
  /** The service front's clients, on a node that has one (undefined while it is not running). */
  serviceClients?: () => ServiceClientStats | undefined;
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
  private readonly pause: Histogram;
  private readonly epochTime: Histogram;
  private readonly bytes: Counter;
  private readonly epochs: Counter;
  private readonly divergences: Counter;
  private readonly failovers: Counter;
  private readonly controls: Counter<'action' | 'ok'>;

  constructor(options: MetricsOptions) {
    const registers = [this.registry];
    this.registry.setDefaultLabels({ node: options.node });
    // Pauses are tens of µs to tens of ms; epochs up to seconds on a big dirty set.
    this.pause = new Histogram({ name: 'tandem_pause_seconds', help: 'Guest pause per epoch (suspend to resume)', buckets: [50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3], registers });
    this.epochTime = new Histogram({ name: 'tandem_epoch_seconds', help: 'Epoch time, suspend to ack (primary) or apply time (secondary)', buckets: [1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 500e-3, 1, 2.5, 5], registers });
    this.bytes = new Counter({ name: 'tandem_replicated_bytes_total', help: 'Checkpoint stream bytes', registers });
    this.epochs = new Counter({ name: 'tandem_epochs_total', help: 'Epochs acked (primary) or applied (secondary)', registers });
    this.divergences = new Counter({ name: 'tandem_divergences_total', help: 'Output divergences reported by the comparator', registers });
    this.failovers = new Counter({ name: 'tandem_failovers_total', help: 'Failovers completed on this node', registers });
    this.controls = new Counter({ name: 'tandem_control_actions_total', help: 'Control actions tried, by action and outcome', labelNames: ['action', 'ok'], registers });
    new Gauge({
      name: 'tandem_state',
      help: 'Protection state: 1 for the current state, 0 for the others',
      labelNames: ['state'],
      registers,
      collect() {
        const now = options.state();
        for (const s of MONITOR_STATES) this.set({ state: s }, s === now ? 1 : 0);
      },
    });
    new Gauge({
      name: 'tandem_replication_lag_seconds',
      help: 'Time since the last acked (primary) or applied (secondary) epoch; absent before the first',
      registers,
      collect() {
        const lag = options.lagMs();
        if (lag === null) this.reset();
        else this.set(lag / 1000);
      },
    });
    new Gauge({ name: 'tandem_monitor_clients', help: 'Connected monitor WebSocket clients', registers, collect() { this.set(options.clients()); } });
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
  }

  observe(event: BroadcastEvent): void {
    switch (event.type) {
      case 'epoch':
        this.epochs.inc();
        this.bytes.inc(event.bytes);
        if (event.pauseUs !== null) this.pause.observe(event.pauseUs / 1e6);
        if (event.totalMs !== null) this.epochTime.observe(event.totalMs / 1000);
        else if (event.applyMs !== null) this.epochTime.observe(event.applyMs / 1000);
        return;
      case 'divergence':
        this.divergences.inc();
        return;
      case 'state':
        if (event.state === 'failed-over') this.failovers.inc();
        return;
      case 'control':
        this.controls.inc({ action: event.action, ok: String(event.ok) });
        return;
      default:
        return;
    }
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
