/**
 * COLO epochs against the real secondary over loopback TCP: the secondary's
 * copy of the guest runs between checkpoints and writes pages of its own;
 * at each checkpoint it is suspended on the primary's announcement, its
 * dirty pages travel back, and the primary sends those too, so when the
 * secondary resumes, its guest is exactly the primary's at the checkpoint.
 */
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { createSaveCallbacks } from '../../src/checkpoint/callbacks.js';
import { DeviceSet } from '../../src/checkpoint/devices.js';
import { PrimaryEngine } from '../../src/checkpoint/engine.js';
import { precopyPolicy } from '../../src/checkpoint/precopy.js';
import type { EpochMetrics } from '../../src/checkpoint/session.js';
import { stateDigest } from '../../src/domain/sim/digest.js';
import { SimDomain } from '../../src/domain/sim/domain.js';
import { SecondaryServer } from '../../src/secondary/server.js';
import { createLogger } from '../../src/util/logger.js';
import { busyGuest } from './helpers.js';

const logger = createLogger('silent');
const PAGES = 1024;
const EPOCHS = 60;

test(`${EPOCHS} COLO epochs: the secondary's own writes are undone, its guest resumes exactly at each checkpoint`, async () => {
  const primary = new SimDomain({ pages: PAGES });
  const replica = new SimDomain({ pages: PAGES });
  replica.pause();
  const resumedAt = new Map<number, string>();
  const secondaryDirty: number[] = [];
  const server = new SecondaryServer({
    replica,
    host: '127.0.0.1',
    port: 0,
    logger,
    colo: {
      suspend: () => {
        replica.pause();
        const pfns = replica.readAndClearDirty();
        secondaryDirty.push(pfns.length);
        return pfns;
      },
      pause: () => replica.pause(),
      resume: (epoch) => {
        // The state the secondary's guest runs from: it must be the primary's at that checkpoint.
        resumedAt.set(epoch, stateDigest(replica));
        replica.enableLogDirty();
        replica.unpause();
      },
    },
  });
  const { port } = await server.start();
  const staged = new Map<number, string>();
  const engine = new PrimaryEngine(
    { domain: primary, callbacks: createSaveCallbacks(primary, new DeviceSet(), precopyPolicy()), logger },
    {
      secondaryHost: '127.0.0.1',
      secondaryPort: port,
      intervalMs: 5,
      minIntervalMs: 1,
      maxIntervalMs: 0,
      ackTimeoutMs: 5000,
      connectTimeoutMs: 1000,
      retryMs: 50,
      streamVersion: 3,
      precopyBatchPages: 256,
      colo: true,
      verifyDigest: () => stateDigest(primary),
      onStaged: (epoch, digest) => staged.set(epoch, digest),
    },
  );
  const stopP = busyGuest(primary, 10, 1);
  const stopS = busyGuest(replica, 10, 99);
  after(async () => {
    stopP();
    stopS();
    await engine.stop();
    await server.stop();
  });
  const metrics: EpochMetrics[] = [];
  const done = new Promise<void>((resolve, reject) => {
    engine.metrics$.subscribe((m) => {
      metrics.push(m);
      if (metrics.length === EPOCHS) resolve();
    });
    engine.state$.subscribe((s) => {
      if (s.state === 'degraded') reject(new Error(`protection degraded: ${s.reason}`));
    });
  });
  engine.start();
  await done;
  assert.deepEqual(metrics.map((m) => m.epoch), Array.from({ length: EPOCHS }, (_, i) => i + 1));
  const mismatched = metrics.filter((m) => resumedAt.get(m.epoch) !== staged.get(m.epoch)).map((m) => m.epoch);
  assert.deepEqual(mismatched, [], "epochs after which the secondary's guest did not resume at the primary's state");
  const busy = secondaryDirty.filter((n) => n > 0).length;
  assert.ok(busy > EPOCHS / 2, `the secondary's guest dirtied pages in only ${busy} of ${secondaryDirty.length} epochs: it did not really run`);
  assert.equal(secondaryDirty.length, EPOCHS - 1, 'every checkpoint after the first was announced and answered');
});
