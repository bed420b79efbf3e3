import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type CheckpointDevice, DeviceSet } from '../../src/checkpoint/devices.js';
import type { CheckpointError } from '../../src/checkpoint/errors.js';

test('devices run each hook in order (teardown in reverse) and a failure names the device', async () => {
  const log: string[] = [];
  const device = (name: string): CheckpointDevice => ({
    name,
    setup: () => void log.push(`${name}.setup`),
    postsuspend: (e) => void log.push(`${name}.postsuspend(${e})`),
    commit: async (e) => {
      await Promise.resolve();
      log.push(`${name}.commit(${e})`);
    },
    teardown: () => void log.push(`${name}.teardown`),
  });
  const set = new DeviceSet([device('nic'), device('disk'), { name: 'quiet' }]);
  await set.run('setup');
  await set.run('postsuspend', 4);
  await set.run('preresume', 4);
  await set.run('commit', 4);
  await set.run('teardown');
  assert.deepEqual(log, ['nic.setup', 'disk.setup', 'nic.postsuspend(4)', 'disk.postsuspend(4)', 'nic.commit(4)', 'disk.commit(4)', 'disk.teardown', 'nic.teardown']);

  const broken = new DeviceSet([{ name: 'netbuf', commit: () => Promise.reject(new Error('queue gone')) }]);
  await assert.rejects(broken.run('commit', 9), (err: CheckpointError) => err.code === 'ERR_CHECKPOINT_DEVICE_FAILED' && /netbuf: commit failed: queue gone/.test(err.message) && (err.cause as Error).message === 'queue gone');
});

test('live syncs run device by device, batch by batch, lazily; a failing one names the device', () => {
  const made: string[] = [];
  const batches = (name: string, n: number): CheckpointDevice => ({
    name,
    *liveSync() {
      for (let i = 0; i < n; i++) {
        made.push(`${name}#${i}`);
        yield [{ layer: 'libxl', type: 'OPTIONAL', code: 0x80000000 + i, data: Buffer.from(name) }];
      }
    },
  });
  const set = new DeviceSet([batches('disk0', 2), { name: 'nic' }, batches('disk1', 1)]);
  const it = set.liveSync()[Symbol.iterator]();
  const first = it.next();
  // Only the batch asked for is made: the session sends it before asking for the next.
  assert.deepEqual(made, ['disk0#0']);
  assert.ok(first.done !== true && first.value[0].type === 'OPTIONAL' && first.value[0].data.toString() === 'disk0');
  const rest = [...{ [Symbol.iterator]: () => it }].map((b) => (b[0].type === 'OPTIONAL' ? b[0].data.toString() : ''));
  assert.deepEqual(rest, ['disk0', 'disk1']);
  assert.deepEqual(made, ['disk0#0', 'disk0#1', 'disk1#0']);

  const broken = new DeviceSet([
    {
      name: 'disk2',
      *liveSync() {
        yield [];
        throw new Error('read error');
      },
    },
  ]);
  assert.throws(() => [...broken.liveSync()], (err: CheckpointError) => err.code === 'ERR_CHECKPOINT_DEVICE_FAILED' && /disk2: liveSync failed/.test(err.message) && (err.cause as Error).message === 'read error');
});
