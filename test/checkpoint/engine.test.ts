/**
 * The primary engine against the real secondary over loopback TCP: every
 * acked epoch leaves the replica exactly where the primary was at that
 * epoch's suspend; losing the secondary degrades protection and a secondary
 * that comes back is re-protected with a fresh pre-copy.
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { filter, firstValueFrom } from 'rxjs';
import { createSaveCallbacks } from '../../src/checkpoint/callbacks.js';
import { DeviceSet } from '../../src/checkpoint/devices.js';
import { PrimaryEngine, type EngineOptions, type ProtectionState } from '../../src/checkpoint/engine.js';
import { precopyPolicy } from '../../src/checkpoint/precopy.js';
import type { EpochMetrics } from '../../src/checkpoint/session.js';
import { stateDigest } from '../../src/domain/digest.js';
import { SimDomain } from '../../src/domain/sim.js';
import { SecondaryServer } from '../../src/secondary/server.js';
import { createLogger } from '../../src/util/logger.js';
import { busyGuest } from './helpers.js';

const logger = createLogger('silent');
const PAGES = 2048;

interface Rig {
  primary: SimDomain;
  replica: SimDomain;
  server: SecondaryServer;
  engine: PrimaryEngine;
  port: number;
  stopGuest: () => void;
}

async function rig(opts: { rate: number; maxEpochBytes?: number; engine?: Partial<EngineOptions> }): Promise<Rig> {
  const primary = new SimDomain({ pages: PAGES });
  const replica = new SimDomain({ pages: PAGES });
  replica.pause();
  const server = new SecondaryServer({ replica, host: '127.0.0.1', port: 0, logger, maxEpochBytes: opts.maxEpochBytes });
  const { port } = await server.start();
  const devices = new DeviceSet();
  const engine = new PrimaryEngine(
    { domain: primary, callbacks: createSaveCallbacks(primary, devices, precopyPolicy()), logger },
    {
      secondaryHost: '127.0.0.1',
      secondaryPort: port,
      intervalMs: 5,
      minIntervalMs: 1,
      maxIntervalMs: 0,
      ackTimeoutMs: 5000,
      connectTimeoutMs: 1000,
      retryMs: 50,
      streamVersion: 3,
      precopyBatchPages: 256,
      verifyDigest: () => stateDigest(primary),
      ...opts.engine,
    },
  );
  const stopGuest = busyGuest(primary, opts.rate);
  return { primary, replica, server, engine, port, stopGuest };
}

const waitState = (engine: PrimaryEngine, state: ProtectionState): Promise<unknown> => firstValueFrom(engine.state$.pipe(filter((s) => s.state === state)));

describe('PrimaryEngine with a real secondary', () => {
  const cleanups: (() => Promise<void>)[] = [];
  after(async () => {
    for (const c of cleanups) await c();
  });

  test('every acked epoch leaves the replica equal to the primary at that suspend', async () => {
    const r = await rig({ rate: 20 });
    cleanups.push(async () => {
      r.stopGuest();
      await r.engine.stop();
      await r.server.stop();
    });
    const seen: EpochMetrics[] = [];
    const mismatches: number[] = [];
    const done = new Promise<void>((resolve) => {
      r.engine.metrics$.subscribe((m) => {
        // At emission the ack is in and the next epoch has not started: the replica is at epoch m.epoch.
        if (r.server.digest() !== m.digest) mismatches.push(m.epoch);
        assert.equal(r.server.lastEpoch, m.epoch);
        seen.push(m);
        if (seen.length === 150) resolve();
      });
    });
    r.engine.start();
    await done;
    r.stopGuest();
    await r.engine.stop();
    assert.deepEqual(mismatches, []);
    // (stop() lets the epoch in flight finish, so one more may arrive after the 150th.)
    assert.deepEqual(seen.slice(0, 150).map((m) => m.epoch), Array.from({ length: 150 }, (_, i) => i + 1));
    assert.equal(seen[0].trigger, 'precopy');
    assert.ok(seen.slice(1).every((m) => m.trigger === 'timer'));
    assert.ok(seen.slice(1).some((m) => m.dirtyPages > 0), 'the guest dirtied pages between epochs');
    assert.ok(seen.every((m) => m.pauseUs >= 0 && m.bytes > 0));
    assert.equal(r.primary.paused, false, 'the guest runs after stop()');
  });

  test('an operator request starts an epoch even without a timer', async () => {
    const r = await rig({ rate: 1, engine: { intervalMs: null } });
    cleanups.push(async () => {
      r.stopGuest();
      await r.engine.stop();
      await r.server.stop();
    });
    r.engine.start();
    await waitState(r.engine, 'protected');
    const next = firstValueFrom(r.engine.metrics$);
    r.engine.requestCheckpoint('test');
    const m = await next;
    assert.equal(m.trigger, 'operator');
    assert.equal(m.epoch, 2);
    assert.equal(r.server.digest(), m.digest);
  });

  test('losing the secondary degrades protection; its return brings a fresh pre-copy', async () => {
    const r = await rig({ rate: 5 });
    cleanups.push(async () => {
      r.stopGuest();
      await r.engine.stop();
      await r.server.stop();
    });
    r.engine.start();
    await waitState(r.engine, 'protected');
    const degraded = waitState(r.engine, 'degraded');
    await r.server.stop();
    await degraded;
    assert.equal(r.engine.state, 'degraded');
    // The guest keeps running unprotected.
    const before = r.primary.registers(0).rip;
    await new Promise((res) => setTimeout(res, 30));
    assert.notEqual(r.primary.registers(0).rip, before);
    const again = waitState(r.engine, 'protected');
    const server2 = new SecondaryServer({ replica: r.replica, host: '127.0.0.1', port: r.port, logger });
    await server2.start();
    cleanups.push(() => server2.stop());
    await again;
    const m = await firstValueFrom(r.engine.metrics$.pipe(filter((x) => x.trigger === 'timer')));
    assert.equal(server2.digest(), m.digest, 'the re-synced replica matches');
  });

  test('an epoch over the secondary buffer limit is refused and the primary starts over', async () => {
    // ~200 pages dirtied per ms: epochs of a few hundred KiB; a 64 KiB limit refuses them.
    const r = await rig({ rate: 200, maxEpochBytes: 64 * 1024 });
    cleanups.push(async () => {
      r.stopGuest();
      await r.engine.stop();
      await r.server.stop();
    });
    const states: string[] = [];
    r.engine.state$.subscribe((s) => states.push(s.state));
    r.engine.start();
    await waitState(r.engine, 'degraded');
    assert.match(r.engine.state$.value.reason, /refused epoch \d+/);
    // It comes back by itself with a fresh pre-copy (which is applied directly, not buffered).
    await waitState(r.engine, 'precopy');
    assert.ok(states.filter((s) => s === 'precopy').length >= 2);
  });
});
