/**
 * Generations stay within what a heartbeat frame carries exactly (below
 * 2^53): a secondary that followed a primary at the last generation cannot
 * promote (nothing is taken), and the channel goes on beating, no crash.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { HeartbeatChannel } from '../../src/heartbeat/channel.js';
import { HeartbeatError } from '../../src/heartbeat/errors.js';
import { MemoryTransport } from '../helpers/memory-transport.js';
import { until } from '../helpers/wait.js';

test('at generation 2^53-1 a promotion is refused with GENERATIONS_EXHAUSTED, the generation unchanged, and heartbeats go on', async () => {
  const transport = new MemoryTransport();
  const timing = { intervalMs: 10, timeoutMs: 60 };
  const secondary = new HeartbeatChannel({ transport, role: 'secondary', generation: 1, listen: { host: 's', port: 1 }, ...timing });
  await secondary.start();
  const primary = new HeartbeatChannel({ transport: transport.peer(), role: 'primary', generation: Number.MAX_SAFE_INTEGER, connect: { host: 's', port: 1 }, ...timing });
  await primary.start();
  try {
    await until(() => secondary.generation === Number.MAX_SAFE_INTEGER, 'the secondary to follow its primary');
    assert.throws(() => secondary.promote(), (e: unknown) => e instanceof HeartbeatError && e.code === 'ERR_HEARTBEAT_GENERATIONS_EXHAUSTED');
    assert.equal(secondary.generation, Number.MAX_SAFE_INTEGER);
    assert.equal(secondary.role, 'secondary', 'nothing was taken');
    let beats = 0;
    primary.on('heartbeat', () => beats++);
    await until(() => beats >= 3, 'heartbeats from the secondary after the refusal');
    assert.equal(primary.fenced, false);
  } finally {
    await primary.stop();
    await secondary.stop();
  }
});
