/**
 * The output policy end to end: the real PrimaryEngine checkpoints a sim
 * guest to the real SecondaryServer over loopback with the netbuf device,
 * one client per engine sending one request at a time. Both engines run at
 * the same time with a Remus interval far longer than the test: under the
 * timer policy a reply waits for that timer, under the output policy the
 * epoch starts as soon as the reply is held. What is asserted is order and
 * counts (the output policy's client gets all its replies while the timer
 * policy's first reply is still held), never a duration.
 */
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { Subject, filter, firstValueFrom } from 'rxjs';

import { DeviceSet } from '../../src/checkpoint/devices.js';
import { PrimaryEngine } from '../../src/checkpoint/engine.js';
import type { EpochMetrics } from '../../src/checkpoint/session.js';
import { ModeController } from '../../src/checkpoint/mode.js';
import type { EpochPolicy } from '../../src/checkpoint/triggers.js';
import { OutputBuffer, type ReleasedOutput } from '../../src/front/output-buffer.js';
import { ServiceFront } from '../../src/front/service-front.js';
import { createLogger } from '../../src/util/logger.js';
import { TEST_ENGINE_OPTIONS } from '../checkpoint/helpers.js';
import { tcpTransport } from '../../src/transport/tcp.js';
import { secondaryFor, simBinding } from '../helpers/sim.js';
import { request } from '../guest/helpers.js';
import { until } from '../helpers/wait.js';
import { connect } from './helpers.js';

const logger = createLogger('silent');
const PAGES = 2048;
/** Far longer than the test: a reply that waits for the timer is not released while it runs. */
const INTERVAL_MS = 600_000;
const ROUND_TRIPS = 25;

interface Protected {
  engine: PrimaryEngine;
  buffer: OutputBuffer;
  frontPort: number;
  releases: (ReleasedOutput & { secondaryEpoch: number })[];
  epochs: EpochMetrics[];
  stop: () => Promise<void>;
}

/** A protected sim guest behind the front, under `policy`, its epochs and releases recorded. */
async function protectedGuest(policy: EpochPolicy): Promise<Protected> {
  const binding = simBinding(PAGES, { liveBatchPages: 256 });
  const guest = binding.primary(logger);
  const guestAddress = await guest.serveTcp();
  const secondary = secondaryFor(binding.replica(logger));
  const { port } = await secondary.start();
  const waiting$ = new Subject<number>();
  const releases: Protected['releases'] = [];
  const buffer = new OutputBuffer({ onWaiting: (tag) => waiting$.next(tag), onRelease: (r) => releases.push({ ...r, secondaryEpoch: secondary.lastEpoch }) });
  const front = new ServiceFront({ buffer, guest: guestAddress, port: 0, logger });
  const { port: frontPort } = await front.start();
  const mode = new ModeController('remus', { mode: 'remus', intervalMs: INTERVAL_MS, reason: 'test', policy });
  const engine = new PrimaryEngine(
    { domain: guest.domain, devices: new DeviceSet([buffer]), mode, transport: tcpTransport, outputWaiting$: waiting$, logger },
    { ...TEST_ENGINE_OPTIONS, secondary: { host: '127.0.0.1', port }, minIntervalMs: 1 },
  );
  const epochs: EpochMetrics[] = [];
  engine.metrics$.subscribe((m) => epochs.push(m));
  engine.start();
  await firstValueFrom(engine.state$.pipe(filter((s) => s.state === 'protected')));
  return {
    engine,
    buffer,
    frontPort,
    releases,
    epochs,
    stop: async () => {
      await engine.stop();
      await front.stop();
      await secondary.stop();
      await guest.stop();
    },
  };
}

test('under the output policy replies come back while, under the timer policy with the same long interval, the first is still held', async () => {
  const [output, timer] = await Promise.all([protectedGuest('output'), protectedGuest('timer')]);
  after(async () => {
    await output.stop();
    await timer.stop();
  });
  const [fast, slow] = await Promise.all([connect(output.frontPort), connect(timer.frontPort)]);
  after(() => {
    fast.socket.destroy();
    slow.socket.destroy();
  });

  // The timer policy's client asks first, and once.
  slow.socket.write(request('INCR', 'n'));
  await until(() => timer.buffer.stats().heldChunks === 1, 'the timer policy to hold its reply');
  // One request at a time: each reply must be released (an epoch acked) before the next request goes.
  for (let i = 1; i <= ROUND_TRIPS; i++) {
    fast.socket.write(request('INCR', 'n'));
    assert.equal(await fast.replies.next(10_000), i);
  }

  assert.equal(slow.replies.bufferedBytes, 0, "the timer policy's reply left before its timer");
  assert.equal(timer.buffer.stats().heldChunks, 1);
  assert.deepEqual(timer.epochs.map((m) => m.trigger), ['precopy'], 'the timer policy took an epoch before its interval');

  // Every reply waited for its own epoch, started because output was held, and left only once the secondary held it.
  const outputEpochs = output.epochs.filter((m) => m.trigger === 'output');
  assert.ok(outputEpochs.length >= ROUND_TRIPS, `${outputEpochs.length} output epochs for ${ROUND_TRIPS} round trips`);
  assert.equal(output.epochs.filter((m) => m.trigger === 'timer').length, 0);
  assert.equal(output.releases.length, ROUND_TRIPS);
  assert.deepEqual(
    output.releases.filter((r) => r.tag === null || r.tag > r.secondaryEpoch),
    [],
    'a reply was released before the secondary held its epoch',
  );

  // An idle guest takes no epochs under the output policy: nothing is held, so nothing is due before the timer.
  const settled = output.epochs.length;
  await until(() => output.buffer.stats().heldChunks === 0, 'the last reply to be released');
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(output.epochs.length, settled, 'epochs while idle');

  // An operator's checkpoint releases what the timer policy holds: it was held for an epoch, not lost.
  timer.engine.requestCheckpoint('test');
  assert.equal(await slow.replies.next(10_000), 1);
});
