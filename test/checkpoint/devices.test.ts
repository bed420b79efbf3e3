import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type CheckpointDevice, DeviceSet } from '../../src/checkpoint/devices.js';

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
  const set = new DeviceSet();
  set.add(device('nic'));
  set.add(device('disk'));
  set.add({ name: 'quiet' });
  await set.run('setup');
  await set.run('postsuspend', 4);
  await set.run('preresume', 4);
  await set.run('commit', 4);
  await set.run('teardown');
  assert.deepEqual(log, ['nic.setup', 'disk.setup', 'nic.postsuspend(4)', 'disk.postsuspend(4)', 'nic.commit(4)', 'disk.commit(4)', 'disk.teardown', 'nic.teardown']);

  const broken = new DeviceSet();
  broken.add({ name: 'netbuf', commit: () => Promise.reject(new Error('queue gone')) });
  await assert.rejects(broken.run('commit', 9), (err: Error) => /netbuf: commit failed/.test(err.message) && (err.cause as Error).message === 'queue gone');
});
