/**
 * What `tandem status` makes of a snapshot: whether the node is healthy
 * (its exit status), every number with its unit, and JSON without float
 * noise. The same against real processes: test/cli/control.test.ts.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { epochText, health, statusText } from '../../src/cli/commands/status.js';
import { jsonLine, tidyNumbers } from '../../src/cli/json-out.js';
import { MONITOR_STATES, validateEvent, type MonitorState, type NodeRole, type SnapshotEvent } from '../../src/monitor/events.js';

const PRIMARY_STATES: MonitorState[] = ['stopped', 'connecting', 'precopy', 're-protecting', 'protected', 'degraded', 'stopping'];

function snap(node: NodeRole, state: MonitorState): SnapshotEvent {
  return {
    v: 1,
    type: 'snapshot',
    ts: 1_700_000_000_123.457,
    node,
    seq: 3,
    state,
    reason: 'r',
    mode: node === 'primary' ? 'remus' : null,
    intervalMs: node === 'primary' ? 50 : null,
    lastEpoch: 7,
    lagMs: 12.3456789,
    actions: [],
    recent: [{ epoch: 7, trigger: 'timer', pauseUs: 812.3333, dirtyPages: 12, bytes: 51_200, sendMs: 0.123456, ackMs: 1.98765, totalMs: 2.5555555, applyMs: null, ts: 1_700_000_000_100.25 }],
    clients: 2,
    arbiter: { kind: 'none', holder: null, generation: null, protected: false, authority: true },
    precopy: null,
    generation: 1,
    heartbeat: 'alive',
    heldBytes: node === 'primary' ? 3072 : null,
    peer: null,
    history: [],
    lastFailover: null,
  };
}

describe('tandem status', () => {
  test('healthy: a protected primary; a secondary standing by or serving after a failover; nothing else', () => {
    for (const state of MONITOR_STATES) {
      const node: NodeRole = PRIMARY_STATES.includes(state) ? 'primary' : 'secondary';
      const h = health(snap(node, state));
      assert.equal(h.healthy, ['protected', 'standby', 'failed-over'].includes(state), `${node} ${state}`);
      assert.match(statusText(snap(node, state)), new RegExp(`^health: +${h.healthy ? 'healthy' : 'NOT HEALTHY'}: `, 'm'));
    }
  });

  test('the human view gives every number its unit', () => {
    const text = statusText(snap('primary', 'protected'));
    assert.match(text, /^mode: +remus, every 50 ms$/m);
    assert.match(text, /^lag: +12 ms$/m);
    assert.match(text, /^clients: +2 connected to the guest's service$/m);
    assert.equal(epochText(snap('primary', 'protected').recent[0]), 'epoch 7 (timer), pause 0.81 ms, 12 dirty pages, 50.0 KiB, total 2.56 ms');
  });

  test('JSON is rounded by unit: ms to 0.01, µs and timestamps whole; integers untouched; still a valid event', () => {
    const tidy = tidyNumbers(snap('primary', 'protected'));
    assert.equal(tidy.lagMs, 12.35);
    assert.equal(tidy.ts, 1_700_000_000_123);
    assert.deepEqual(tidy.recent[0], { epoch: 7, trigger: 'timer', pauseUs: 812, dirtyPages: 12, bytes: 51_200, sendMs: 0.12, ackMs: 1.99, totalMs: 2.56, applyMs: null, ts: 1_700_000_000_100 });
    assert.deepEqual(tidyNumbers({ ratio: 0.333333333, n: 5 }), { ratio: 0.3333, n: 5 });
    const line = jsonLine(snap('primary', 'protected'));
    assert.doesNotMatch(line, /\d\.\d{3,}/);
    validateEvent(JSON.parse(line));
  });
});
