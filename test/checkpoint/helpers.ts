/** Shared pieces of the engine tests. */
import { createSaveCallbacks } from '../../src/checkpoint/callbacks.js';
import type { DeviceSet } from '../../src/checkpoint/devices.js';
import { PrimaryEngine, type EngineOptions } from '../../src/checkpoint/engine.js';
import { precopyPolicy } from '../../src/checkpoint/precopy.js';
import type { SimDomain } from '../../src/domain/sim.js';
import { createLogger } from '../../src/util/logger.js';

/** A guest that keeps writing while it runs: `rate` writes of 64 bytes every millisecond, from `seed`. */
export function busyGuest(domain: SimDomain, rate: number, seed = 12345): () => void {
  let x = seed;
  const next = (): number => (x = (x * 1103515245 + 12345) >>> 0);
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

/**
 * A primary engine for `domain` and its checkpoint devices, replicating to
 * a secondary on loopback `port` with the tests' usual timings (10 ms epochs,
 * generous ack timeout); `options` override them.
 */
export function loopbackEngine(domain: SimDomain, devices: DeviceSet, port: number, options: Partial<EngineOptions> = {}): PrimaryEngine {
  return new PrimaryEngine(
    { domain, devices, callbacks: createSaveCallbacks(domain, devices, precopyPolicy()), logger: createLogger('silent') },
    {
      secondaryHost: '127.0.0.1',
      secondaryPort: port,
      intervalMs: 10,
      minIntervalMs: 1,
      maxIntervalMs: 0,
      ackTimeoutMs: 10_000,
      connectTimeoutMs: 2000,
      retryMs: 100,
      streamVersion: 3,
      precopyBatchPages: 256,
      ...options,
    },
  );
}
