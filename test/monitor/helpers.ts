/**
 * Test rigs for the monitor: a real primary engine checkpointing a sim guest
 * to a real secondary over loopback, with a real MonitorServer on top, and a
 * WebSocket client that checks every message against the schema and waits
 * on events (never on time).
 */
import { Writable } from 'node:stream';
import { pino, type Logger } from 'pino';
import WebSocket from 'ws';
import { Subject } from 'rxjs';
import { DeviceSet, type CheckpointDevice } from '../../src/checkpoint/devices.js';
import type { EngineOptions, PrimaryEngine } from '../../src/checkpoint/engine.js';
import type { ModeController } from '../../src/checkpoint/mode.js';
import type { Trigger } from '../../src/checkpoint/triggers.js';
import { DiskMirror } from '../../src/disk/mirror.js';
import { DiskReplica } from '../../src/disk/replica.js';
import type { SimPrimaryGuest, SimReplicaGuest } from '../../src/domain/sim/binding.js';
import type { SimDomain } from '../../src/domain/sim/domain.js';
import { Promoter } from '../../src/failover/promoter.js';
import { installGuest } from '../../src/guest/machine.js';
import { MonitorServer, type MonitorServerOptions } from '../../src/monitor/http.js';
import { validateEvent, type MonitorEvent } from '../../src/monitor/events.js';
import { PrimarySource, SecondarySource, type MonitorSource, type SourceReadings, type SourceStatus } from '../../src/monitor/source.js';
import type { ControlTarget } from '../../src/monitor/control.js';
import type { EventBody, MonitorState, NodeRole } from '../../src/monitor/events.js';
import type { SecondaryServer } from '../../src/secondary/server.js';
import { testEngine, testMode } from '../checkpoint/helpers.js';
import { secondaryFor, simBinding } from '../helpers/sim.js';

export const TOKEN = 'test-token-0123456789abcdef';

/** A pino logger whose JSON lines land in `lines` (the same redaction as createLogger). */
export function capturingLogger(): { logger: Logger; lines: Record<string, unknown>[]; text: () => string } {
  const lines: Record<string, unknown>[] = [];
  let raw = '';
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      raw += chunk.toString();
      for (const l of chunk.toString().split('\n')) if (l.trim() !== '') lines.push(JSON.parse(l) as Record<string, unknown>);
      done();
    },
  });
  const logger = pino({ level: 'debug', redact: { paths: ['token', '*.token', 'authorization', '*.authorization'], censor: '[redacted]' } }, sink);
  return { logger, lines, text: () => raw };
}

export const silent = pino({ level: 'silent' });

export interface PrimaryRig {
  guest: SimPrimaryGuest;
  domain: SimDomain;
  replica: SimReplicaGuest;
  server: SecondaryServer;
  engine: PrimaryEngine;
  mode: ModeController;
  /** Checkpoint requests as a comparator would make them: the engine and the source both see them. */
  divergence: Subject<Trigger>;
  source: PrimarySource;
  monitor: MonitorServer;
  /** The secondary's own monitor (source: SecondaryServer + Promoter). */
  secondaryMonitor: MonitorServer;
  promoter: Promoter;
  url: string;
  wsUrl: string;
  stop: () => Promise<void>;
}

/**
 * Engine + secondary + both monitors in this process. The guest writes a
 * little every few ms so epochs carry dirty pages.
 */
export async function primaryRig(
  opts: {
    intervalMs?: number | null;
    colo?: boolean;
    logger?: Logger;
    monitor?: Partial<MonitorServerOptions>;
    token?: string | undefined;
    /** The engine's own options (e.g. its generation, its progress interval). */
    engine?: Partial<EngineOptions>;
    /** false: the caller starts the engine (to watch it from the start). */
    startEngine?: boolean;
    /** More checkpoint devices, after the disk mirror. */
    devices?: CheckpointDevice[];
  } = {},
): Promise<PrimaryRig> {
  const logger = opts.logger ?? silent;
  const binding = simBinding(1024, { liveBatchPages: 256 });
  const guest = binding.primary(silent);
  const domain = guest.sim;
  const replica = binding.replica(silent);
  const sim = replica.sim;
  // COLO: the replica's guest "runs" between checkpoints (it is unpaused; nothing drives it).
  const colo =
    opts.colo === true
      ? {
          suspend: (): Uint32Array => {
            sim.pause();
            return new Uint32Array(0);
          },
          pause: () => sim.pause(),
          resume: () => sim.unpause(),
        }
      : undefined;
  const server = secondaryFor(replica, { devices: [new DiskReplica(replica.disks)], colo });
  const { port } = await server.start();
  const intervalMs = opts.intervalMs === undefined ? 20 : opts.intervalMs;
  const mode = testMode(opts.colo === true ? 'colo' : 'remus', intervalMs);
  const divergence = new Subject<Trigger>();
  const engine = testEngine({
    kind: mode.kind,
    domain: guest.domain,
    devices: new DeviceSet([new DiskMirror({ disk: guest.disk }), ...(opts.devices ?? [])]),
    port,
    mode,
    divergence$: divergence,
    options: { ackTimeoutMs: 30_000, connectTimeoutMs: 5000, retryMs: 50, ...opts.engine },
  });
  const token = 'token' in opts ? opts.token : TOKEN;
  const generation = opts.engine?.generation;
  const source = new PrimarySource({ engine, mode, divergences$: divergence, generation: typeof generation === 'number' ? () => generation : undefined });
  const monitor = new MonitorServer({ host: '127.0.0.1', port: 0, source, logger, auth: { token, allowRemoteRead: false }, ...opts.monitor });
  await monitor.start();
  const promoter = new Promoter({ secondary: server, replica, service: { host: '127.0.0.1', port: 0 }, logger: silent });
  const secondaryMonitor = new MonitorServer({ host: '127.0.0.1', port: 0, source: new SecondarySource({ server, promoter }), logger: silent, auth: { token, allowRemoteRead: false } });
  await secondaryMonitor.start();
  // The guest's own software writes keys (in RAM, logged to its disk), so a promoted replica can serve them.
  const { store } = installGuest(domain, guest.disk);
  let n = 0;
  const writer = setInterval(() => {
    domain.run(() => {
      for (let i = 0; i < 8; i++) store.set(Buffer.from(`k${n++ % 500}`), Buffer.from(`v${n}`), 0, Date.now());
    });
  }, 2);
  if (opts.startEngine !== false) engine.start();
  const url = monitor.url;
  return {
    guest,
    domain,
    replica,
    server,
    engine,
    mode,
    divergence,
    source,
    monitor,
    secondaryMonitor,
    promoter,
    url,
    wsUrl: `${url.replace(/^http/, 'ws')}ws`,
    stop: async () => {
      clearInterval(writer);
      await engine.stop();
      await monitor.stop();
      await secondaryMonitor.stop();
      await promoter.stop();
      await server.stop();
    },
  };
}

interface Waiter {
  pred: (e: MonitorEvent) => boolean;
  resolve: (e: MonitorEvent) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

/** A WebSocket client that validates everything it receives against the schema. */
export class TestClient {
  readonly events: MonitorEvent[] = [];
  /** Set when a message did not match the schema; every wait then fails with it. */
  invalid: Error | undefined;
  readonly closed: Promise<{ code: number }>;
  private waiters: Waiter[] = [];
  private nextId = 0;

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data: WebSocket.RawData) => {
      let event: MonitorEvent;
      try {
        event = validateEvent(JSON.parse((data as Buffer).toString('utf8')));
      } catch (err) {
        this.invalid = err as Error;
        for (const w of this.waiters.splice(0)) {
          clearTimeout(w.timer);
          w.reject(err as Error);
        }
        return;
      }
      this.events.push(event);
      this.waiters = this.waiters.filter((w) => {
        if (!w.pred(event)) return true;
        clearTimeout(w.timer);
        w.resolve(event);
        return false;
      });
    });
    this.closed = new Promise((resolve) => ws.once('close', (code) => resolve({ code })));
  }

  static connect(url: string, options: WebSocket.ClientOptions = {}, protocols: string[] = []): Promise<TestClient> {
    const ws = new WebSocket(url, protocols, options);
    const client = new TestClient(ws);
    return new Promise((resolve, reject) => {
      ws.once('open', () => resolve(client));
      ws.once('error', reject);
      ws.once('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
    });
  }

  /** The first event (already received or still to come) that matches. */
  waitFor<T extends MonitorEvent = MonitorEvent>(pred: (e: MonitorEvent) => boolean, what: string, timeoutMs = 60_000): Promise<T> {
    if (this.invalid) return Promise.reject(this.invalid);
    const seen = this.events.find(pred);
    if (seen) return Promise.resolve(seen as T);
    return this.next<T>(pred, what, timeoutMs);
  }

  /** The next matching event from now on. */
  next<T extends MonitorEvent = MonitorEvent>(pred: (e: MonitorEvent) => boolean, what: string, timeoutMs = 60_000): Promise<T> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), timeoutMs);
      this.waiters.push({ pred, resolve: (e) => resolve(e as T), reject, timer });
    });
  }

  /** Sends a request with a fresh id and waits for its reply or error. */
  request(message: Record<string, unknown>): Promise<MonitorEvent> {
    const id = `r${++this.nextId}`;
    const answer = this.next((e) => (e.type === 'reply' || e.type === 'error') && e.id === id, `the answer to ${id}`);
    this.ws.send(JSON.stringify({ ...message, id }));
    return answer;
  }

  close(): Promise<{ code: number }> {
    this.ws.close();
    return this.closed;
  }
}

/** A node as the monitor sees it: a state to report, events to publish, and the control calls it got. */
export class FakeSource implements MonitorSource {
  readonly events$ = new Subject<EventBody>();
  readonly calls: string[] = [];
  readonly control: ControlTarget;
  started = 0;
  stopped = 0;
  state: MonitorState;

  constructor(
    readonly role: NodeRole = 'primary',
    state: MonitorState = 'protected',
  ) {
    this.state = state;
    this.control = { checkpoint: () => void this.calls.push('checkpoint'), setInterval: (ms) => void this.calls.push(`interval ${ms}`) };
  }

  status(): SourceStatus {
    return {
      state: this.state,
      reason: `fake ${this.state}`,
      mode: 'remus',
      intervalMs: 50,
      lastEpoch: 7,
      lagMs: 12,
      recent: [],
      arbiter: { kind: 'none', holder: null, generation: null, protected: false, authority: true },
      precopy: null,
      generation: 3,
      heartbeat: null,
      heldBytes: null,
      lastFailover: null,
      guestProtected: this.state === 'protected',
    };
  }

  readings(): SourceReadings {
    return { peerUp: true, generation: 3, heldOutputBytes: undefined, unprotectedMs: 0, streamBytes: 100 };
  }

  start(): void {
    this.started++;
  }

  stop(): void {
    this.stopped++;
  }

  /** A state change, as an engine would tell it. */
  become(state: MonitorState): void {
    const previous = this.state;
    this.state = state;
    this.events$.next({ type: 'state', state, previous, reason: `now ${state}` });
  }
}

