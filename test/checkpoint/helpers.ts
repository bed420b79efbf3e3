/** Shared pieces of the engine tests. */
import type { SimDomain } from '../../src/domain/sim.js';

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
