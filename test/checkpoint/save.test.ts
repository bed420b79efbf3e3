/**
 * A saved stream carries the guest: replaying it onto empty RAM gives back
 * the RAM, registers and device-model state the domain had when each
 * checkpoint was taken.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, test } from 'node:test';
import { runBeforeEachSuspend, saveDomain } from '../../src/checkpoint/save.js';
import { SimDomain } from '../../src/domain/sim/domain.js';
import { SimWorkload } from '../../src/domain/sim/workload.js';
import { silent, simBinding } from '../helpers/sim.js';
import { StreamDecoder } from '../../src/stream/decoder.js';
import type { LibxcOutput, SaveCallbacks, SaveParameters } from '../../src/domain/types.js';
import { PAGE_SIZE } from '../../src/stream/format.js';

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

interface Snapshot {
  ram: string;
  context: string;
  dm: string;
}

describe('saveDomain', () => {
  for (const framing of ['libxl', 'libxc'] as const) {
    test(`${framing}: each checkpoint in the stream reproduces the domain at that checkpoint`, async () => {
      const pages = 300;
      const primary = simBinding(pages).primary(silent);
      const domain = primary.sim;
      const guest = new SimWorkload(domain, 1234);
      guest.boot();
      const chunks: Buffer[] = [];
      const atCheckpoint: Snapshot[] = [];
      // Snapshot the domain as each checkpoint is written (the guest is paused then).
      const sink = (c: readonly Buffer[]): void => {
        for (const b of c) chunks.push(Buffer.from(b)); // copy: page views change when the guest runs
      };
      const summary = await saveDomain(runBeforeEachSuspend(primary.domain, () => guest.run(40)), { framing, version: 3, checkpoints: 6 }, sink);
      assert.equal(summary.epochs.length, 6);
      // Re-run the identical guest to learn the expected state at each checkpoint.
      const twin = new SimDomain({ pages, now: () => 42n });
      const twinGuest = new SimWorkload(twin, 1234);
      twinGuest.boot();
      for (let i = 0; i < 6; i++) {
        twinGuest.run(40);
        atCheckpoint.push({ ram: sha(twin.ram), context: sha(twin.hvmContext()), dm: sha(twin.deviceModelState()) });
      }

      const replica = Buffer.alloc(pages * PAGE_SIZE);
      let context = Buffer.alloc(0);
      let dm: Buffer | undefined;
      const seen: Snapshot[] = [];
      const decoder = new StreamDecoder();
      for (const item of decoder.push(Buffer.concat(chunks))) {
        if (item.kind !== 'record') continue;
        const r = item.record;
        if (r.type === 'PAGE_DATA') r.pfns.forEach((pfn, i) => r.pages[i].copy(replica, pfn * PAGE_SIZE));
        if (r.type === 'HVM_CONTEXT') context = Buffer.from(r.data);
        if (r.type === 'EMULATOR_CONTEXT') dm = Buffer.from(r.data);
        const epochDone = framing === 'libxl' ? r.type === 'CHECKPOINT_END' : r.type === 'CHECKPOINT';
        if (epochDone) seen.push({ ram: sha(replica), context: sha(context), dm: dm ? sha(dm) : '' });
      }
      decoder.end();
      assert.equal(seen.length, 6);
      for (let i = 0; i < 6; i++) {
        assert.equal(seen[i].ram, atCheckpoint[i].ram, `RAM at checkpoint ${i + 1}`);
        assert.equal(seen[i].context, atCheckpoint[i].context, `vCPU context at checkpoint ${i + 1}`);
        if (framing === 'libxl') assert.equal(seen[i].dm, atCheckpoint[i].dm, `device model at checkpoint ${i + 1}`);
      }
      // Later epochs send only what the guest dirtied.
      for (const e of summary.epochs.slice(1)) assert.ok(e.pages > 0 && e.pages <= 80, `epoch ${e.epoch} sent ${e.pages} pages`);
      assert.equal(domain.paused, false, 'the guest runs again after the save');
    });
  }

  for (const failAt of [1, 2, 3, 4, 5, 6]) {
    test(`the guest runs again when the sink fails at its write ${failAt}`, async () => {
      const primary = simBinding(8).primary(silent);
      const domain = primary.sim;
      let calls = 0;
      await assert.rejects(
        saveDomain(runBeforeEachSuspend(primary.domain, () => domain.write(0, Buffer.alloc(1, 1))), { framing: 'libxl', version: 3, checkpoints: 2 }, () => {
          if (++calls === failAt) throw new Error('disk full');
        }),
        /disk full/,
      );
      assert.equal(domain.paused, false);
    });
  }

  test('a plain save leaves the guest running, even when the sink fails', async () => {
    const primary = simBinding(8).primary(silent);
    await saveDomain(primary.domain, { framing: 'libxl', version: 3, checkpoints: 0 }, () => {});
    assert.equal(primary.sim.paused, false);
    await assert.rejects(
      saveDomain(primary.domain, { framing: 'libxl', version: 3, checkpoints: 0 }, (c) => {
        if (c.some((b) => b.length === 8 * 4096 || b.length === 4096)) throw new Error('disk full');
      }),
      /disk full/,
    );
    assert.equal(primary.sim.paused, false);
  });

  test('leaveSuspended: a plain save that succeeded leaves the guest suspended for the caller (who destroys it, as xl save does); a failed one resumes it', async () => {
    const primary = simBinding(8).primary(silent);
    await saveDomain(primary.domain, { framing: 'libxl', version: 3, checkpoints: 0, leaveSuspended: true }, () => {});
    assert.equal(primary.sim.paused, true);
    await primary.domain.resume();
    await assert.rejects(
      saveDomain(primary.domain, { framing: 'libxl', version: 3, checkpoints: 0, leaveSuspended: true }, (c) => {
        if (c.some((b) => b.length === 8 * 4096 || b.length === 4096)) throw new Error('disk full');
      }),
      /disk full/,
    );
    assert.equal(primary.sim.paused, false);
  });

  test('a saver that writes nothing once told to stop (Xen\'s libxc): the stream ends right after its last CHECKPOINT_END, with no END, and reads as ended at that checkpoint', async () => {
    const primary = simBinding(64).primary(silent);
    const inner = primary.domain;
    // The sim's saver, with whatever it writes after the stop (its END) dropped, as Xen's helper writes none.
    const xenLike = {
      info: inner.info,
      suspend: () => inner.suspend(),
      resume: () => inner.resume(),
      saveDeviceModel: () => inner.saveDeviceModel(),
      saver: {
        save: (out: LibxcOutput, params: SaveParameters, cb: SaveCallbacks) => {
          let stopped = false;
          return inner.saver.save(
            { write: (c) => (stopped ? undefined : out.write(c)), flush: () => out.flush(), flushed: () => out.flushed() },
            params,
            { ...cb, checkpoint: async (stats) => !(stopped = !(await cb.checkpoint(stats))) },
          );
        },
      },
    };
    const chunks: Buffer[] = [];
    const summary = await saveDomain(xenLike, { framing: 'libxl', version: 3, checkpoints: 3 }, (c) => c.forEach((b) => chunks.push(Buffer.from(b))));
    assert.equal(summary.end, 'checkpoint');
    const types: string[] = [];
    const decoder = new StreamDecoder({ endAtCheckpoint: true });
    for (const item of decoder.push(Buffer.concat(chunks))) if (item.kind === 'record') types.push(item.record.type);
    decoder.end();
    assert.equal(types.filter((t) => t === 'CHECKPOINT_END').length, 3);
    assert.equal(types.at(-1), 'CHECKPOINT_END', 'nothing after the last checkpoint');
    assert.ok(!types.includes('END'));
    // The same session over the sim's own saver ends with END.
    const own = await saveDomain(inner, { framing: 'libxl', version: 3, checkpoints: 3 }, () => {});
    assert.equal(own.end, 'END');
  });
});
