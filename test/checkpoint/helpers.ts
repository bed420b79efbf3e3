/** Shared pieces of the engine tests. */
import type { Observable } from 'rxjs';
import { DeviceSet } from '../../src/checkpoint/devices.js';
import { PrimaryEngine, type EngineOptions } from '../../src/checkpoint/engine.js';
import { ModeController } from '../../src/checkpoint/mode.js';
import type { ReplicationKind } from '../../src/checkpoint/strategies.js';
import type { Trigger } from '../../src/checkpoint/triggers.js';
import type { SimDomain } from '../../src/domain/sim/domain.js';
import type { ProtectedDomain } from '../../src/domain/types.js';
import { tcpTransport } from '../../src/transport/tcp.js';
import type { Transport } from '../../src/transport/transport.js';
import { xorshift32 } from '../../src/util/xorshift.js';
import type { Logger } from '../../src/util/logger.js';
import { silent } from '../helpers/sim.js';

/** A guest that keeps writing while it runs: `rate` writes of 64 bytes every millisecond, from `seed`. */
export function busyGuest(domain: SimDomain, rate: number, seed = 12345): () => void {
  const next = xorshift32(seed);
  const data = Buffer.alloc(64);
  const timer = setInterval(() => {
    domain.run(() => {
      for (let i = 0; i < rate; i++) {
        data.writeUInt32LE(next(), 0);
        domain.write(next() % (domain.ram.length - 64), data);
      }
      domain.setRegister(0, 'rip', BigInt(next()));
      domain.touchDeviceModel();
    });
  }, 1);
  return () => clearInterval(timer);
}

/** The tests' usual engine timings: generous ack timeout, quick retries. */
export const TEST_ENGINE_OPTIONS: Omit<EngineOptions, 'secondary'> = {
  minIntervalMs: 1,
  maxIntervalMs: 0,
  ackTimeoutMs: 10_000,
  connectTimeoutMs: 2000,
  retryMs: 100,
  streamVersion: 3,
  precopy: { targetDirtyPages: 50, maxIterations: 5, shrinkRatio: 1 },
};

/** A mode controller of `kind`: checkpoints every `intervalMs` (remus), or only when asked (null). */
export function testMode(kind: ReplicationKind, intervalMs: number | null): ModeController {
  const mode = intervalMs === null ? (kind === 'colo' ? 'colo' : 'manual') : 'remus';
  return new ModeController(kind, { mode, intervalMs: intervalMs ?? 50, reason: 'test' });
}

export interface TestEngine {
  domain: ProtectedDomain;
  /** The secondary's replication port on loopback. */
  port: number;
  devices?: DeviceSet;
  kind?: ReplicationKind;
  /** Remus interval; null: checkpoints only when asked (or, in COLO, on divergence). Default 10 ms. */
  intervalMs?: number | null;
  mode?: ModeController;
  transport?: Transport;
  divergence$?: Observable<Trigger>;
  options?: Partial<EngineOptions>;
  logger?: Logger;
}

/** A primary engine replicating to a secondary on loopback with the tests' usual timings. */
export function testEngine(t: TestEngine): PrimaryEngine {
  const kind = t.kind ?? 'remus';
  return new PrimaryEngine(
    {
      domain: t.domain,
      devices: t.devices ?? new DeviceSet(),
      mode: t.mode ?? testMode(kind, t.intervalMs === undefined ? 10 : t.intervalMs),
      transport: t.transport ?? tcpTransport,
      divergence$: t.divergence$,
      logger: t.logger ?? silent,
    },
    { ...TEST_ENGINE_OPTIONS, secondary: { host: '127.0.0.1', port: t.port }, ...t.options },
  );
}
