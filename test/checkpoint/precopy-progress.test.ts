/**
 * Pre-copy progress: the meter's arithmetic and pacing on a clock the test
 * moves, then a real engine pre-copying a sim guest to a real secondary
 * over loopback, reporting as it goes (in events and in the log) and
 * counting the pre-copy's bytes in what it says it sent.
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { filter, firstValueFrom } from 'rxjs';
import { DeviceSet } from '../../src/checkpoint/devices.js';
import { PrimaryEngine } from '../../src/checkpoint/engine.js';
import { PrecopyMeter, type PrecopyProgress } from '../../src/checkpoint/precopy-progress.js';
import type { EpochMetrics } from '../../src/checkpoint/session.js';
import { tcpTransport } from '../../src/transport/tcp.js';
import { capturingLogger } from '../monitor/helpers.js';
import { secondaryFor, silent, simBinding } from '../helpers/sim.js';
import { TEST_ENGINE_OPTIONS, busyGuest, testMode } from './helpers.js';

describe('PrecopyMeter', () => {
  test('reports at most once per interval, with rate and ETA from what it was told, and always at the end', () => {
    let t = 0;
    const reports: PrecopyProgress[] = [];
    const meter = new PrecopyMeter({ now: () => t, intervalMs: 1000, report: (p) => reports.push(p) });
    meter.start(100, 1000);
    t = 200;
    meter.wrote(100 + 10 * 4096);
    t = 500;
    meter.pages({ iteration: 1, sent: 10, total: 1000 });
    assert.equal(reports.length, 0, 'nothing within the first interval');

    t = 1000;
    meter.wrote(100 + 250 * 4096);
    meter.pages({ iteration: 1, sent: 250, total: 1000 });
    assert.equal(reports.length, 1, 'one report per interval, however much moved in it');
    assert.deepEqual(reports[0], {
      iteration: 1,
      // The write came first: the report has the bytes and the page count the saver had told before it.
      pagesSent: 10,
      pagesTotal: 1000,
      percent: 1,
      bytes: 250 * 4096,
      elapsedMs: 1000,
      bytesPerSecond: 250 * 4096,
      etaMs: (990 * 1000) / 10,
      done: false,
    });

    t = 1500;
    meter.wrote(100 + 300 * 4096);
    assert.equal(reports.length, 1);
    meter.roundDone(1, 300);
    t = 2000;
    meter.pages({ iteration: 2, sent: 100, total: 300 });
    assert.equal(reports.length, 2);
    const second = reports[1];
    assert.equal(second.iteration, 2);
    assert.equal(second.pagesSent, 100);
    assert.equal(second.pagesTotal, 300);
    assert.equal(second.bytes, 300 * 4096);
    assert.equal(second.bytesPerSecond, (50 * 4096 * 1000) / 1000, 'the rate since the previous report');
    assert.equal(second.etaMs, (200 * 500) / 100, "this round's page rate: 100 pages in its 500 ms");

    t = 2100;
    meter.finish(100 + 400 * 4096);
    assert.equal(reports.length, 3, 'the end is told whatever the interval');
    assert.equal(reports[2].done, true);
    assert.equal(reports[2].bytes, 400 * 4096);
    assert.equal(reports[2].elapsedMs, 2100);
    t = 5000;
    meter.wrote(100 + 500 * 4096);
    assert.equal(reports.length, 3, 'nothing after the end');
  });

  test('with no page counts from the saver, it tells bytes and leaves pages, percent and ETA unknown', () => {
    let t = 0;
    const reports: PrecopyProgress[] = [];
    const meter = new PrecopyMeter({ now: () => t, intervalMs: 0, report: (p) => reports.push(p) });
    meter.start(0, 512);
    t = 10;
    meter.wrote(8192);
    t = 20;
    meter.wrote(8192);
    assert.equal(reports.length, 1, 'a write that adds nothing is no news');
    assert.equal(reports[0].pagesSent, null);
    assert.equal(reports[0].pagesTotal, 512);
    assert.equal(reports[0].percent, null);
    assert.equal(reports[0].etaMs, null);
    assert.equal(reports[0].bytesPerSecond, 8192 * 100);
  });
});

describe('a real pre-copy reports its progress', () => {
  const cleanups: (() => Promise<void>)[] = [];
  after(async () => {
    for (const c of cleanups.reverse()) await c();
  });

  test('a sim guest of 16384 pages, sent 1024 at a time: progress per batch, in events and the log, and its bytes in the sent count', async () => {
    const PAGES = 16384;
    const BATCH = 1024;
    const binding = simBinding(PAGES, { liveBatchPages: BATCH });
    const guest = binding.primary(silent);
    const server = secondaryFor(binding.replica(silent));
    const { port } = await server.start();
    const { logger, lines } = capturingLogger();
    const engine = new PrimaryEngine(
      { domain: guest.domain, devices: new DeviceSet(), mode: testMode('remus', 10), transport: tcpTransport, logger },
      // 0: a report whenever something moved, so the count does not depend on the machine's speed.
      { ...TEST_ENGINE_OPTIONS, secondary: { host: '127.0.0.1', port }, progressIntervalMs: 0 },
    );
    const stopGuest = busyGuest(guest.sim, 5);
    cleanups.push(async () => {
      stopGuest();
      await engine.stop();
      await server.stop();
    });
    const reports: PrecopyProgress[] = [];
    let protectedAfter = -1;
    engine.precopy$.subscribe((p) => reports.push(p));
    engine.state$.subscribe((s) => {
      if (s.state === 'protected' && protectedAfter < 0) protectedAfter = reports.length;
    });
    const first = firstValueFrom(engine.metrics$.pipe(filter((m: EpochMetrics) => m.epoch === 1)));
    engine.start();
    const epoch1 = await first;
    await firstValueFrom(engine.state$.pipe(filter((s) => s.state === 'protected')));

    const live = reports.filter((r) => !r.done);
    const round1 = live.filter((r) => r.iteration === 1);
    assert.ok(round1.length >= PAGES / BATCH, `a report per batch of the first round at least: ${round1.length}`);
    let sent = 0;
    for (const r of round1) {
      assert.equal(r.pagesTotal, PAGES, 'the first round sends every page');
      assert.ok(r.pagesSent === null || r.pagesSent >= sent, 'pages sent never go back within a round');
      sent = r.pagesSent ?? sent;
    }
    assert.equal(sent, PAGES, 'the first round ends with every page sent');
    assert.ok(round1.some((r) => r.percent === 100));
    let bytes = 0;
    for (const r of reports) {
      assert.ok(r.bytes >= bytes, 'bytes never go back');
      bytes = r.bytes;
    }
    const done = reports.filter((r) => r.done);
    assert.equal(done.length, 1, 'one final report');
    assert.equal(reports.at(-1), done[0], 'and it is the last');
    assert.equal(protectedAfter, reports.length, 'every report came before protection');
    assert.ok(done[0].bytes >= PAGES * 4096, `the pre-copy sent every page: ${done[0].bytes} bytes`);

    // The log has a line per report (not the final one: "pre-copy done" says it), at info.
    const logged = lines.filter((l) => typeof l.msg === 'string' && l.msg.startsWith('pre-copy: round '));
    assert.equal(logged.length, live.length);
    assert.ok(logged.every((l) => l.level === 30));
    assert.match(String(logged.find((l) => l.pagesSent === PAGES)?.msg), new RegExp(`round 1, ${PAGES}/${PAGES} pages \\(100\\.0 %\\), [\\d.]+ MB sent, [\\d.]+ MB/s`));

    // What the engine says it sent covers the pre-copy and epoch 1, not epoch 1 alone.
    assert.ok(engine.bytesSent >= done[0].bytes + epoch1.bytes, `${engine.bytesSent} >= ${done[0].bytes} + ${epoch1.bytes}`);
  });
});
