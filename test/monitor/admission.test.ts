/** Who gets a WebSocket slot on the monitor: the policy alone, with plain objects for clients. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { MonitorAdmission, admissionLimits, defaultOperatorSlots } from '../../src/monitor/admission.js';

describe('monitor admission', () => {
  test('defaults: 256 slots, 16 kept for operators; a small monitor keeps none', () => {
    assert.deepEqual(admissionLimits({}), { maxClients: 256, operatorSlots: 16 });
    assert.deepEqual(admissionLimits({ maxClients: 2 }), { maxClients: 2, operatorSlots: 0 });
    assert.deepEqual(admissionLimits({ maxClients: 64 }), { maxClients: 64, operatorSlots: 4 });
    assert.equal(defaultOperatorSlots(10_000), 16);
    for (const bad of [{ maxClients: 0 }, { maxClients: 70_000 }, { maxClients: 2.5 }, { operatorSlots: -1 }, { maxClients: 4, operatorSlots: 5 }, { operatorSlots: Number.NaN }]) {
      assert.throws(
        () => admissionLimits(bad),
        (e: Error & { code?: string }) => e.name === 'MonitorError' && e.code === 'ERR_MONITOR_BAD_OPTIONS',
        JSON.stringify(bad),
      );
    }
  });

  test('viewers are capped below the operators\' reserve; operators take any free slot', () => {
    const a = new MonitorAdmission<string>({ maxClients: 4, operatorSlots: 2 });
    for (const v of ['v1', 'v2']) {
      assert.deepEqual(a.decide('viewer'), { admit: true, evict: undefined });
      a.add(v, 'viewer', 0);
    }
    assert.deepEqual(a.decide('viewer'), { admit: false, why: 'viewers-full' }, 'two slots are free, but they are the operators\'');
    for (const o of ['o1', 'o2']) {
      assert.deepEqual(a.decide('operator'), { admit: true, evict: undefined });
      a.add(o, 'operator', 0);
    }
    assert.equal(a.size, 4);
    assert.equal(a.roleOf('o1'), 'operator');
    assert.equal(a.roleOf('v1'), 'viewer');
    assert.deepEqual(a.stats(), { operators: 2, viewers: 2, refusedViewers: 1, refusedOperators: 0, evictedViewers: 0 });
  });

  test('a full monitor makes room for an operator by closing the viewer idle longest; all-operator slots refuse', () => {
    const a = new MonitorAdmission<string>({ maxClients: 3, operatorSlots: 0 });
    a.add('v1', 'viewer', 0);
    a.add('v2', 'viewer', 10);
    a.add('v3', 'viewer', 20);
    assert.deepEqual(a.decide('viewer'), { admit: false, why: 'viewers-full' });
    // v1 sent something: v2 is now the one idle longest.
    a.touch('v1', 30);
    assert.equal(a.idleMs('v2', 100), 90);
    const d = a.decide('operator');
    assert.deepEqual(d, { admit: true, evict: 'v2' });
    a.remove('v2', true);
    a.add('o1', 'operator', 100);
    assert.deepEqual(a.decide('operator'), { admit: true, evict: 'v3' });
    a.remove('v3', true);
    a.add('o2', 'operator', 100);
    assert.deepEqual(a.decide('operator'), { admit: true, evict: 'v1' });
    a.remove('v1', true);
    a.add('o3', 'operator', 100);
    assert.deepEqual(a.decide('operator'), { admit: false, why: 'full' }, 'every slot an operator\'s');
    assert.deepEqual(a.decide('viewer'), { admit: false, why: 'full' }, 'no viewer holds a slot, yet none is free');
    // A client that leaves on its own is not counted as evicted.
    a.remove('o3');
    a.remove('nobody', true);
    assert.deepEqual(a.stats(), { operators: 2, viewers: 0, refusedViewers: 2, refusedOperators: 1, evictedViewers: 3 });
  });
});
