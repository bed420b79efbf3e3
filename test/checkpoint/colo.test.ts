/**
 * COLO epochs against the real secondary over loopback TCP: the secondary's
 * copy of the guest runs between checkpoints and writes pages of its own;
 * at each checkpoint it is suspended on the primary's announcement, its
 * dirty pages travel back, and the primary sends those too, so when the
 * secondary resumes, its guest is exactly the primary's at the checkpoint.
 */
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import type { EpochMetrics } from '../../src/checkpoint/session.js';
import { secondaryFor, silent, simBinding } from '../helpers/sim.js';
import { busyGuest, testEngine } from './helpers.js';

const PAGES = 1024;
const EPOCHS = 60;

test(`${EPOCHS} COLO epochs: the secondary's own writes are undone, its guest resumes exactly at each checkpoint`, async () => {
  const binding = simBinding(PAGES, { liveBatchPages: 256 });
  const guest = binding.primary(silent);
  const replicaGuest = binding.replica(silent);
  const primary = guest.sim;
  const replica = replicaGuest.sim;
  const resumedAt = new Map<number, string>();
  const secondaryDirty: number[] = [];
  const server = secondaryFor(replicaGuest, {
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
        resumedAt.set(epoch, replicaGuest.digest());
        replica.enableLogDirty();
        replica.unpause();
      },
    },
  });
  const { port } = await server.start();
  const staged = new Map<number, string>();
  const engine = testEngine({
    domain: guest.domain,
    port,
    kind: 'colo',
    intervalMs: 5,
    options: { ackTimeoutMs: 5000, connectTimeoutMs: 1000, retryMs: 50, digest: () => guest.digest(), onStaged: (epoch, digest) => staged.set(epoch, digest) },
  });
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
