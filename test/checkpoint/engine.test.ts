/**
 * The primary engine against the real secondary over loopback TCP: every
 * acked epoch leaves the replica exactly where the primary was at that
 * epoch's suspend; losing the secondary degrades protection and a secondary
 * that comes back is re-protected with a fresh pre-copy.
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { filter, firstValueFrom } from 'rxjs';
import type { PrimaryEngine, ProtectionState } from '../../src/checkpoint/engine.js';
import type { EpochMetrics } from '../../src/checkpoint/session.js';
import type { SimDomain } from '../../src/domain/sim/domain.js';
import type { SimReplicaGuest } from '../../src/domain/sim/binding.js';
import { SecondaryServer } from '../../src/secondary/server.js';
import { FakeBinding } from '../helpers/fake-binding.js';
import { MemoryTransport } from '../helpers/memory-transport.js';
import { secondaryFor, silent, simBinding } from '../helpers/sim.js';
import { until } from '../helpers/wait.js';
import { busyGuest, testEngine } from './helpers.js';

const PAGES = 2048;

interface Rig {
  primary: SimDomain;
  replica: SimReplicaGuest;
  server: SecondaryServer;
  engine: PrimaryEngine;
  port: number;
  stopGuest: () => void;
}

async function rig(opts: { rate: number; maxEpochBytes?: number; intervalMs?: number | null }): Promise<Rig> {
  const binding = simBinding(PAGES, { liveBatchPages: 256 });
  const guest = binding.primary(silent);
  const replica = binding.replica(silent);
  const server = secondaryFor(replica, { maxEpochBytes: opts.maxEpochBytes });
  const { port } = await server.start();
  const engine = testEngine({
    domain: guest.domain,
    port,
    intervalMs: opts.intervalMs === undefined ? 5 : opts.intervalMs,
    options: { ackTimeoutMs: 5000, connectTimeoutMs: 1000, retryMs: 50, digest: () => guest.digest() },
  });
  const stopGuest = busyGuest(guest.sim, opts.rate);
  return { primary: guest.sim, replica, server, engine, port, stopGuest };
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
    const r = await rig({ rate: 1, intervalMs: null });
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
    await until(() => r.primary.registers(0).rip !== before, 'the unprotected guest to run on');
    const again = waitState(r.engine, 'protected');
    const server2 = secondaryFor(r.replica, { listen: { host: '127.0.0.1', port: r.port } });
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

describe('PrimaryEngine on a fake binding over the in-memory network', () => {
  test('protects; the secondary dropping off the network degrades it, the guest keeps running; back, a fresh pre-copy protects again', async () => {
    const binding = new FakeBinding(16);
    const primary = binding.primary();
    const replica = binding.replica();
    const primaryHost = new MemoryTransport();
    const secondaryHost = primaryHost.peer();
    const server = new SecondaryServer({ replica, transport: secondaryHost, listen: { host: 'secondary', port: 7700 }, logger: silent });
    await server.start();
    const engine = testEngine({ domain: primary, port: 7700, transport: primaryHost, options: { secondary: { host: 'secondary', port: 7700 }, retryMs: 20, digest: () => primary.digest() } });
    const states: string[] = [];
    engine.state$.subscribe((s) => states.push(s.state));
    engine.start();
    try {
      await waitState(engine, 'protected');
      primary.run(1, 'a');
      const m = await firstValueFrom(engine.metrics$.pipe(filter((x) => x.epoch > 1)));
      assert.equal(server.digest(), m.digest, 'the replica holds the epoch the engine reported');
      secondaryHost.cut();
      await waitState(engine, 'degraded');
      assert.equal(primary.suspended, false, 'the guest runs, unprotected');
      primary.run(2, 'b');
      secondaryHost.heal();
      await waitState(engine, 'protected');
      const again = await firstValueFrom(engine.metrics$.pipe(filter((x) => x.trigger === 'timer')));
      assert.equal(server.digest(), again.digest, 'the fresh pre-copy left the replica at the primary');
      assert.deepEqual(
        states.filter((s, i) => s !== states[i - 1]).slice(0, 7),
        ['stopped', 'connecting', 'precopy', 'protected', 'degraded', 'connecting', 'precopy'],
      );
    } finally {
      await engine.stop();
      await server.stop();
    }
  });
});
