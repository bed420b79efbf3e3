/**
 * Run in a Xen lab dom0 (by bench/xen/remus.sh): watches one domain through
 * Xen's own domain info every ~10 ms and counts the samples in which the
 * guest was stopped for a checkpoint (shut down for suspend, or paused) and
 * the suspends it saw begin. The same external measure for Xen's `xl remus`
 * and for Tandem. Until SIGTERM; then prints "LAB <prefix>_* value" lines.
 * The domain may vanish (a failover): sampling stops there.
 * Usage: node dist/bench/xen/sampler.js PREFIX DOMID
 */
import { XcOps } from '../../src/domain/xen/xc.js';

const [prefix, domidArg] = process.argv.slice(2);
const domid = Number(domidArg);
const say = (k: string, v: string | number): void => void process.stdout.write(`LAB ${prefix}_${k} ${v}\n`);

const xc = await XcOps.start();
// The co-process takes seconds to start under TCG: the window starts now.
process.stderr.write('sampling\n');
let samples = 0;
let stopped = 0;
let suspends = 0;
let wasStopped = false;
let running = true;
const started = performance.now();
let ended = started;

process.on('SIGTERM', () => (running = false));
while (running) {
  const info = await xc.info(domid).catch(() => undefined);
  if (info === undefined) break;
  const isStopped = info.shutdown || info.paused;
  samples++;
  if (isStopped) stopped++;
  if (isStopped && !wasStopped) suspends++;
  wasStopped = isStopped;
  ended = performance.now();
  await new Promise((r) => setTimeout(r, 10));
}
await xc.stop();
const seconds = (ended - started) / 1000;
say('samples', samples);
say('stopped_fraction', (samples === 0 ? 0 : stopped / samples).toFixed(3));
say('suspends', suspends);
say('seconds', seconds.toFixed(1));
say('suspends_per_s', (seconds === 0 ? 0 : suspends / seconds).toFixed(2));
