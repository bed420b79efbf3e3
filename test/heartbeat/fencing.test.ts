/** Fencing at a primary's start, over the in-memory transport: a newer generation next door keeps it from serving at all. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { TandemError } from '../../src/errors.js';
import { HeartbeatChannel } from '../../src/heartbeat/channel.js';
import { startUnlessFenced, whenFenced } from '../../src/heartbeat/fencing.js';
import { MemoryTransport } from '../helpers/memory-transport.js';

const TIMING = { intervalMs: 20, timeoutMs: 100 };

async function secondaryAt(transport: MemoryTransport, generation: number, role: 'primary' | 'secondary' = 'secondary'): Promise<HeartbeatChannel> {
  const s = new HeartbeatChannel({ transport, role, generation, listen: { host: 'secondary', port: 7701 }, ...TIMING });
  await s.start();
  return s;
}

const primaryTo = (transport: MemoryTransport, generation: number): HeartbeatChannel =>
  new HeartbeatChannel({ transport, role: 'primary', generation, connect: { host: 'secondary', port: 7701 }, ...TIMING });

describe('startUnlessFenced', () => {
  test('a peer running a newer generation as primary (this node was failed over) refuses the start with FENCED', async () => {
    const transport = new MemoryTransport();
    const promoted = await secondaryAt(transport, 2, 'primary');
    const old = primaryTo(transport, 1);
    await assert.rejects(startUnlessFenced(old, 1000), (e: unknown) => e instanceof TandemError && e.code === 'ERR_FENCED' && /generation 2 \(this one: 1\)/.test(e.message));
    assert.equal(old.fenced, true);
    await promoted.stop();
  });

  test('its own secondary (following its generation) lets it start; a later promotion elsewhere fences it then', async () => {
    const transport = new MemoryTransport();
    const secondary = await secondaryAt(transport, 1);
    const primary = primaryTo(transport, 1);
    await startUnlessFenced(primary, 1000);
    assert.equal(primary.fenced, false);
    const fenced = whenFenced(primary);
    // The secondary takes over (as its failover rule would) and its heartbeats now carry generation 2.
    secondary.promote();
    assert.deepEqual(await fenced, { ownGeneration: 1, peerGeneration: 2 });
    await Promise.all([primary.stop(), secondary.stop()]);
  });

  test('with no peer at all it starts after the timeout: an absent peer cannot fence anyone', async () => {
    const primary = primaryTo(new MemoryTransport(), 1);
    const t0 = performance.now();
    await startUnlessFenced(primary, 60);
    assert.ok(performance.now() - t0 >= 55, 'it waited for a peer');
    assert.equal(primary.fenced, false);
    await primary.stop();
  });
});
