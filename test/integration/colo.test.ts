/**
 * COLO end to end on one machine, every part real: the primary engine in
 * COLO mode, the secondary server running its copy of the guest between
 * checkpoints, the net link between them (mirror one way, the secondary
 * guest's output the other), the comparator, the COLO front, and
 * redis-benchmark / redis-cli as the clients. A deterministic workload
 * never diverges (only the maximum interval checkpoints); TIME and
 * RANDOMKEY answered differently by the secondary do, and the client still
 * gets the primary's answer; at every checkpoint the secondary's guest (RAM, vCPU,
 * device model and disk) resumes exactly where the primary was.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { test } from 'node:test';
import { filter, firstValueFrom } from 'rxjs';
import type { ComparatorAddresses } from '../../proxy/client.js';
import { ColoCompareProcess, QEMU_BINARY, qemuAvailable } from '../../proxy/qemu.js';
import { createSaveCallbacks } from '../../src/checkpoint/callbacks.js';
import { DeviceSet } from '../../src/checkpoint/devices.js';
import { PrimaryEngine } from '../../src/checkpoint/engine.js';
import { precopyPolicy } from '../../src/checkpoint/precopy.js';
import type { EpochMetrics } from '../../src/checkpoint/session.js';
import { NetLinkSecondary } from '../../src/colo/net-link.js';
import { ColoPrimaryService } from '../../src/colo/primary-service.js';
import { SecondaryGuest } from '../../src/colo/secondary-guest.js';
import { DiskReplica } from '../../src/disk/replica.js';
import { SimDisk } from '../../src/domain/sim/disk.js';
import { stateDigest } from '../../src/domain/sim/digest.js';
import { SimDomain } from '../../src/domain/sim/domain.js';
import { SecondaryServer } from '../../src/secondary/server.js';
import { createLogger } from '../../src/util/logger.js';
import { StreamDecoder } from '../../src/stream/decoder.js';
import { LibxcType, LibxlType, TandemType } from '../../src/stream/format.js';
import { recordCode } from '../../src/stream/records.js';
import { REDIS_BENCHMARK, REDIS_CLI, requireRedisTools, runTool } from '../guest/helpers.js';
import { tempDir } from '../helpers/cli.js';
import { TcpTap } from '../helpers/tap.js';
import { verifyCheckpointed } from '../helpers/xen.js';

const logger = createLogger(process.env.COLO_LOG === '1' ? 'debug' : 'silent');
const PAGES = 4096;
const DISK = 2 * 1024 * 1024;


/** Runs the checks; returns how to stop everything it started (before its comparator goes). */
async function coloRun(opts: { external?: ComparatorAddresses }, cleanups: (() => Promise<void>)[]): Promise<void> {
  requireRedisTools();
  // The secondary host.
  const replica = new SimDomain({ pages: PAGES });
  replica.pause();
  const replicaDisk = new SimDisk({ capacityBytes: DISK, domain: replica });
  let secondaryClockOffsetUs = 0;
  const netS = new NetLinkSecondary({ host: '127.0.0.1', port: 0, toGuest: (f) => sguest.deliver(f), logger });
  const resumedAt = new Map<number, string>();
  const sguest = new SecondaryGuest({
    replica,
    disk: replicaDisk,
    link: netS,
    clock: () => Date.now() * 1000 + secondaryClockOffsetUs,
    // The state the secondary's guest runs from: it must be the primary's at that checkpoint.
    onCheckpoint: (epoch) => resumedAt.set(epoch, stateDigest(replica, [replicaDisk])),
  });
  const server = new SecondaryServer({
    replica,
    devices: [new DiskReplica([replicaDisk])],
    disks: [replicaDisk],
    host: '127.0.0.1',
    port: 0,
    logger,
    colo: sguest,
  });
  const { port: netPort } = await netS.start();
  const { port: streamPort } = await server.start();
  // The replication connection goes through a tap: its bytes, both ways, go to Xen's verifier afterwards.
  const tap = new TcpTap({ host: '127.0.0.1', port: streamPort });
  const tapPort = await tap.start();

  // The primary host.
  const domain = new SimDomain({ pages: PAGES });
  const disk = new SimDisk({ capacityBytes: DISK, domain });
  const colo = new ColoPrimaryService({
    domain,
    disk,
    colo: { net: undefined, maxIntervalMs: 1000, compareTimeoutMs: 1000, expiredScanCycleMs: 100, maxQueueSize: 1024, comparator: undefined },
    net: { host: '127.0.0.1', port: netPort },
    service: { host: '127.0.0.1', port: 0 },
    maxClients: 100,
    logger,
    external: opts.external,
  });
  const devices = new DeviceSet();
  for (const d of colo.devices) devices.add(d);
  const staged = new Map<number, string>();
  const engine = new PrimaryEngine(
    { domain, devices, callbacks: createSaveCallbacks(domain, devices, precopyPolicy()), logger },
    {
      secondaryHost: '127.0.0.1',
      secondaryPort: tapPort,
      intervalMs: null,
      minIntervalMs: 1,
      maxIntervalMs: 1000,
      ackTimeoutMs: 5000,
      connectTimeoutMs: 2000,
      retryMs: 100,
      streamVersion: 3,
      precopyBatchPages: 512,
      colo: true,
      verifyDigest: () => stateDigest(domain, [disk]),
      onStaged: (epoch, digest) => staged.set(epoch, digest),
    },
  );
  const divergences: string[] = [];
  colo.divergence$.subscribe((t) => {
    divergences.push(t.detail ?? '');
    engine.divergence$.next(t);
  });
  const epochs: EpochMetrics[] = [];
  engine.metrics$.subscribe((m) => epochs.push(m));
  const { port } = await colo.start();
  cleanups.push(async () => {
    await engine.stop();
    await colo.stop();
    await netS.stop();
    await tap.stop();
    await server.stop();
  });
  engine.start();
  await firstValueFrom(engine.state$.pipe(filter((s) => s.state === 'protected')));

  // Deterministic: the replicas answer alike, nothing diverges.
  const bench = await runTool(REDIS_BENCHMARK, ['-p', String(port), '-t', 'set,get', '-n', '3000', '-c', '8', '-r', '100', '-q']);
  assert.equal(bench.code, 0, bench.out);
  assert.match(bench.out, /GET: [\d.]+ requests per second/);
  assert.equal(divergences.length, 0, `SET/GET made the replicas diverge: ${divergences.join('; ')}`);
  assert.ok(!epochs.some((m) => m.trigger === 'divergence'));

  // TIME differs on the secondary: a divergence checkpoint, and the primary's answer reaches the client.
  secondaryClockOffsetUs = 7_000_000;
  const diverged = firstValueFrom(engine.metrics$.pipe(filter((m) => m.trigger === 'divergence')));
  const before = Date.now();
  const time = await runTool(REDIS_CLI, ['-p', String(port), 'TIME']);
  const after = Date.now();
  assert.equal(time.code, 0, time.out);
  const secs = Number(time.out.split('\n')[0]);
  // The primary's clock read between these two instants; the secondary's (+7 s) could only if the request took 7 s.
  assert.ok(after - before < 7000 && secs >= Math.floor(before / 1000) && secs <= Math.floor(after / 1000), `TIME ${time.out} is not the primary's clock: asked at ${before} ms, answered by ${after} ms`);
  await diverged;
  assert.ok(divergences.some((d) => d.endsWith('mismatch')), divergences.join('\n'));

  // RANDOMKEY draws on each replica's own random source: the replies diverge,
  // and what the client gets is a key that exists (the primary's draw).
  const beforeRandom = divergences.length;
  for (let i = 0; i < 5; i++) {
    const r = await runTool(REDIS_CLI, ['-p', String(port), 'RANDOMKEY']);
    const key = r.out.trim();
    assert.match(key, /^key:\d{12}$/, `RANDOMKEY answered ${r.out}`);
    const exists = await runTool(REDIS_CLI, ['-p', String(port), 'EXISTS', key]);
    assert.equal(exists.out.trim(), '1', `RANDOMKEY gave ${key}, which does not exist`);
  }
  // Five draws among the benchmark's keys all alike on both replicas: odds far below 1e-6.
  assert.ok(divergences.length > beforeRandom, 'RANDOMKEY never diverged between the replicas');

  // The service carries on after the checkpoint, and the data is there.
  const get = await runTool(REDIS_CLI, ['-p', String(port), 'DBSIZE']);
  assert.match(get.out, /\d+/);
  assert.ok(Number(/\d+/.exec(get.out)![0]) > 0);

  const checked = epochs.filter((m) => resumedAt.has(m.epoch));
  assert.ok(checked.length >= 2, `only ${checked.length} epochs resumed the secondary`);
  const wrong = checked.filter((m) => resumedAt.get(m.epoch) !== staged.get(m.epoch)).map((m) => m.epoch);
  assert.deepEqual(wrong, [], "epochs whose secondary guest did not resume at the primary's state");
  assert.ok(sguest.resumes >= 2);

  // An orderly stop ends the COLO stream cleanly between checkpoints: no
  // "primary gone", and the secondary's guest stops with it.
  const gone: unknown[] = [];
  server.on('primary-gone', (g) => gone.push(g));
  const ended = new Promise((resolve) => server.once('stream-end', resolve));
  await engine.stop();
  await ended;
  assert.deepEqual(gone, []);
  assert.equal(replica.paused, true, "the secondary's guest stopped with the stream");
  checkWithXen(tap, epochs.length);

  // Protection again: a fresh pre-copy into the paused replica, then COLO checkpoints as before.
  const resumesBefore = sguest.resumes;
  engine.start();
  await firstValueFrom(engine.state$.pipe(filter((st) => st.state === 'protected')));
  const again = firstValueFrom(engine.metrics$.pipe(filter((m) => m.trigger === 'divergence')));
  const t2 = await runTool(REDIS_CLI, ['-p', String(port), 'TIME']);
  assert.equal(t2.code, 0, t2.out);
  const m2 = await again;
  await new Promise((r) => setTimeout(r, 100));
  assert.ok(sguest.resumes > resumesBefore, 'the secondary guest runs again in the new session');
  assert.equal(resumedAt.get(m2.epoch), staged.get(m2.epoch), `epoch ${m2.epoch} of the new session: the secondary resumed away from the primary's state`);
  assert.deepEqual(gone, []);
}

/**
 * The first session's bytes, both ways, through Xen's own verifier classes:
 * the forward stream as a COLO stream (CHECKPOINT_STATE after each
 * CHECKPOINT_END, libxl END at the orderly stop; Tandem's disk records read
 * past as the optional records they are), and the back-channel's
 * CHECKPOINT_STATE and CHECKPOINT_DIRTY_PFN_LIST records.
 */
function checkWithXen(tap: TcpTap, epochs: number): void {
  const tmp = tempDir('tandem-colo-xen-');
  try {
    const forward = tmp.path('forward.stream');
    const bytes = Buffer.concat(tap.forward[0]);
    writeFileSync(forward, bytes);
    const f = verifyCheckpointed(forward, { colo: true, optional: [TandemType.TANDEM_DISK_WRITES] });
    assert.equal(f.status, 0, f.stderr);
    assert.equal(f.epochs, epochs, 'every checkpoint of the session');
    const seq = f.records!.map(([layer, type]) => `${layer}:${type}`);
    assert.equal(seq.at(-1), `libxl:${LibxlType.END}`);
    assert.equal(seq.filter((r) => r === `libxl:${LibxlType.CHECKPOINT_STATE}`).length, epochs - 1, 'each checkpoint after the first announced');
    assert.ok(seq.includes(`libxl:${TandemType.TANDEM_DISK_WRITES}`), 'the disk mirror wrote its records');
    // Xen's classes and Tandem's own decoder read the same records.
    const d = new StreamDecoder({ colo: true });
    const ours: string[] = [];
    for (const item of d.push(bytes)) if (item.kind === 'record') ours.push(`${item.record.layer}:${recordCode(item.record)}`);
    assert.deepEqual(ours, seq);

    const back = tmp.path('back.channel');
    writeFileSync(back, Buffer.concat(tap.backward[0]));
    const b = verifyCheckpointed(back, { backChannel: true, optional: [TandemType.TANDEM_ACK] });
    assert.equal(b.status, 0, b.stderr);
    const kinds = b.records!.map(([layer, type]) => `${layer}:${type}`);
    assert.equal(kinds.filter((k) => k === `libxl:${TandemType.TANDEM_ACK}`).length, epochs, 'one ack per checkpoint');
    assert.equal(kinds.filter((k) => k === `libxc:${LibxcType.CHECKPOINT_DIRTY_PFN_LIST}`).length, epochs - 1, "the secondary's dirty pages at each announced checkpoint");
    // SVM_SUSPENDED, SVM_READY, SVM_RESUMED per announced checkpoint; READY and RESUMED after the first too.
    assert.equal(kinds.filter((k) => k === `libxl:${LibxlType.CHECKPOINT_STATE}`).length, 3 * (epochs - 1) + 2);
  } finally {
    tmp.cleanup();
  }
}

async function withCleanup(fn: (cleanups: (() => Promise<void>)[]) => Promise<void>): Promise<void> {
  const cleanups: (() => Promise<void>)[] = [];
  try {
    await fn(cleanups);
  } finally {
    for (const c of cleanups.reverse()) await c();
  }
}

test('COLO: redis-benchmark through two running replicas and Tandem\'s comparator; divergence checkpoints only where the replicas differ', () => withCleanup((c) => coloRun({}, c)));

test('COLO with QEMU\'s colo-compare as the comparator, over its sockets and notify protocol', async () => {
  assert.ok(qemuAvailable(), `${QEMU_BINARY} is missing: apt-get install -y --no-install-recommends qemu-system-x86`);
  const qemu = await ColoCompareProcess.start({ compareTimeoutMs: 1000, expiredScanCycleMs: 100 });
  await withCleanup(async (c) => {
    c.push(() => qemu.stop());
    await coloRun({ external: qemu.addresses }, c);
  });
});
