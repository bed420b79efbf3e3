/**
 * Output commit end to end: the real PrimaryEngine checkpoints the sim guest
 * to the real SecondaryServer over loopback, with the netbuf device in its
 * DeviceSet, while clients pipeline requests through the ServiceFront. Every
 * reply a client receives must have been produced by an epoch the secondary
 * had already applied when the reply was released; and with the secondary
 * gone, nothing is released at all.
 */
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { filter, firstValueFrom } from 'rxjs';

import { createSaveCallbacks } from '../../src/checkpoint/callbacks.js';
import { DeviceSet } from '../../src/checkpoint/devices.js';
import { PrimaryEngine } from '../../src/checkpoint/engine.js';
import { precopyPolicy } from '../../src/checkpoint/precopy.js';
import { SimDomain } from '../../src/domain/sim/domain.js';
import { OutputBuffer, type ReleasedOutput } from '../../src/front/output-buffer.js';
import { ServiceFront } from '../../src/front/service-front.js';
import { KvStore } from '../../src/guest/kv-store.js';
import { KvServer } from '../../src/guest/server.js';
import { SecondaryServer } from '../../src/secondary/server.js';
import { createLogger } from '../../src/util/logger.js';
import { request } from '../guest/helpers.js';
import { connect, sleep, waitFor } from './helpers.js';

const logger = createLogger('silent');
const PAGES = 2048;

test('every released reply was produced by an epoch the secondary had acked; none is released without the secondary', async () => {
  const domain = new SimDomain({ pages: PAGES });
  const store = KvStore.format(domain, { bytes: domain.usableRamBytes });
  const service = new KvServer({ domain, store, host: '127.0.0.1', port: 0, logger });
  const { port: guestPort } = await service.start();
  const replica = new SimDomain({ pages: PAGES });
  replica.pause();
  const secondary = new SecondaryServer({ replica, host: '127.0.0.1', port: 0, logger });
  const { port } = await secondary.start();

  const releases: (ReleasedOutput & { secondaryEpoch: number })[] = [];
  // The release hook runs just before the bytes are handed to the client socket.
  const buffer = new OutputBuffer({ onRelease: (r) => releases.push({ ...r, secondaryEpoch: secondary.lastEpoch }) });
  const devices = new DeviceSet();
  devices.add(buffer);
  const front = new ServiceFront({ buffer, guest: { host: '127.0.0.1', port: guestPort }, port: 0, logger });
  const { port: frontPort } = await front.start();
  const engine = new PrimaryEngine(
    { domain, callbacks: createSaveCallbacks(domain, devices, precopyPolicy()), logger },
    {
      secondaryHost: '127.0.0.1',
      secondaryPort: port,
      intervalMs: 10,
      minIntervalMs: 1,
      maxIntervalMs: 0,
      ackTimeoutMs: 2000,
      connectTimeoutMs: 500,
      retryMs: 100,
      streamVersion: 3,
      precopyBatchPages: 256,
    },
  );
  after(async () => {
    await engine.stop();
    await front.stop();
    await secondary.stop();
    await service.stop();
  });

  // The engine does not call setup() yet: arm as it would, so even pre-copy output waits for epoch 1.
  await devices.run('setup');
  const CONNS = 4;
  const N = 400;
  const clients = await Promise.all(Array.from({ length: CONNS }, () => connect(frontPort)));
  engine.start();
  // Requests go in from the start (during the pre-copy too) and keep coming while epochs run.
  for (let burst = 0; burst < 20; burst++) {
    clients.forEach(({ socket }, i) => {
      const reqs: Buffer[] = [];
      for (let j = 0; j < N / 20; j++) reqs.push(request('INCR', `k${i}`));
      socket.write(Buffer.concat(reqs));
    });
    await sleep(10);
  }
  for (const [i, { replies }] of clients.entries()) {
    for (let j = 1; j <= N; j++) assert.equal(await replies.next(5000), j, `connection ${i}, reply ${j}`);
  }
  assert.ok(releases.length > 0);
  const early = releases.filter((r) => r.tag === null || r.tag > r.secondaryEpoch);
  assert.deepEqual(early, [], 'a reply was released before the secondary held its epoch');
  const tags = new Set(releases.map((r) => r.tag));
  assert.ok(tags.size >= 3, `replies spread over ${tags.size} epochs`);

  // The secondary goes away: the engine is degraded, no commit comes, so nothing is released.
  await firstValueFrom(engine.state$.pipe(filter((s) => s.state === 'protected')));
  await secondary.stop();
  await firstValueFrom(engine.state$.pipe(filter((s) => s.state === 'degraded')));
  const before = releases.length;
  clients[0].socket.write(request('INCR', 'k0'));
  await waitFor(() => buffer.stats().heldChunks === 1, 'the reply to be held');
  await sleep(150);
  assert.equal(clients[0].replies.bufferedBytes, 0, 'a reply escaped while unprotected');
  assert.equal(releases.length, before);
  // Operator policy: give up protection and release (available, unprotected).
  buffer.teardown();
  assert.equal(await clients[0].replies.next(1000), N + 1);
  for (const { socket } of clients) socket.destroy();
});
