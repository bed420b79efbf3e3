/** The primary's monitor source in COLO mode: its mode, and the hybrid policy's switches as mode events. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createSaveCallbacks } from '../../src/checkpoint/callbacks.js';
import { DeviceSet } from '../../src/checkpoint/devices.js';
import { PrimaryEngine } from '../../src/checkpoint/engine.js';
import { precopyPolicy } from '../../src/checkpoint/precopy.js';
import { SimDomain } from '../../src/domain/sim/domain.js';
import { PrimarySource } from '../../src/monitor/source.js';
import { createLogger } from '../../src/util/logger.js';

test('a COLO primary reports mode colo, and each switch of the hybrid policy as a mode event with its reason', () => {
  const domain = new SimDomain({ pages: 16 });
  const engine = new PrimaryEngine(
    { domain, callbacks: createSaveCallbacks(domain, new DeviceSet(), precopyPolicy()), logger: createLogger('silent') },
    { secondaryHost: '127.0.0.1', secondaryPort: 1, intervalMs: null, minIntervalMs: 1, maxIntervalMs: 5000, ackTimeoutMs: 1000, connectTimeoutMs: 100, retryMs: 100, streamVersion: 3, precopyBatchPages: 16, colo: true },
  );
  const source = new PrimarySource({ engine, intervalMs: 25, colo: true });
  const events: unknown[] = [];
  source.events$.subscribe((e) => events.push(e));
  assert.equal(source.status().mode, 'colo');
  assert.equal(source.status().intervalMs, null);
  source.switchMode('remus', '25 divergences in 1000 ms (more than 20)');
  assert.equal(source.status().mode, 'remus');
  assert.equal(source.status().intervalMs, 25);
  source.switchMode('colo', 'divergences calmed');
  assert.deepEqual(events, [
    { type: 'mode', mode: 'remus', intervalMs: 25, reason: '25 divergences in 1000 ms (more than 20)' },
    { type: 'mode', mode: 'colo', intervalMs: null, reason: 'divergences calmed' },
  ]);
});
