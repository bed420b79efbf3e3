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
import { setTimeout as sleep } from 'node:timers/promises';
import { filter, firstValueFrom } from 'rxjs';

import { DeviceSet } from '../../src/checkpoint/devices.js';
import { OutputBuffer, type ReleasedOutput } from '../../src/front/output-buffer.js';
import { ServiceFront } from '../../src/front/service-front.js';
import { createLogger } from '../../src/util/logger.js';
import { testEngine } from '../checkpoint/helpers.js';
import { secondaryFor, simBinding } from '../helpers/sim.js';
import { request } from '../guest/helpers.js';
import { until } from '../helpers/wait.js';
import { connect } from './helpers.js';

const logger = createLogger('silent');
const PAGES = 2048;

test('every released reply was produced by an epoch the secondary had acked; none is released without the secondary', async () => {
  const binding = simBinding(PAGES, { liveBatchPages: 256 });
  const service = binding.primary(logger);
  const guestAddress = await service.serveTcp();
  const secondary = secondaryFor(binding.replica(logger));
  const { port } = await secondary.start();

  const releases: (ReleasedOutput & { secondaryEpoch: number })[] = [];
  // The release hook runs just before the bytes are handed to the client socket.
  // 'hold': when the standby is lost, the engine's teardown keeps what is held (and what comes after) held.
  const buffer = new OutputBuffer({ teardownPolicy: 'hold', onRelease: (r) => releases.push({ ...r, secondaryEpoch: secondary.lastEpoch }) });
  const devices = new DeviceSet([buffer]);
  const front = new ServiceFront({ buffer, guest: guestAddress, port: 0, logger });
  const { port: frontPort } = await front.start();
  const engine = testEngine({ domain: service.domain, devices, port, options: { ackTimeoutMs: 2000, connectTimeoutMs: 500 } });
  after(async () => {
    await engine.stop();
    await front.stop();
    await secondary.stop();
    await service.stop();
  });

  // Under 'hold' output never passes straight through: not before the session, not during its pre-copy.
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
    // Paces the bursts so they spread over the pre-copy and several epochs.
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

  // The secondary goes away: the engine is degraded and tears its devices down; under 'hold' nothing is released.
  await firstValueFrom(engine.state$.pipe(filter((s) => s.state === 'protected')));
  await secondary.stop();
  await firstValueFrom(engine.state$.pipe(filter((s) => s.state === 'degraded')));
  const before = releases.length;
  clients[0].socket.write(request('INCR', 'k0'));
  await until(() => buffer.stats().heldChunks === 1, 'the reply to be held');
  // Proves an absence: no release while unprotected.
  await sleep(150);
  assert.equal(clients[0].replies.bufferedBytes, 0, 'a reply escaped while unprotected');
  assert.equal(releases.length, before);
  // The operator changes the policy: give up protection and release (available, unprotected).
  buffer.setTeardownPolicy('release');
  buffer.teardown();
  assert.equal(await clients[0].replies.next(1000), N + 1);
  for (const { socket } of clients) socket.destroy();
});
