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
import { defaultConfig, type TandemConfig } from '../../src/config/config.js';
import type { EpochMetrics } from '../../src/checkpoint/session.js';
import type { Trigger } from '../../src/checkpoint/triggers.js';
import { createBinding } from '../../src/domain/bindings.js';
import type { SimReplicaGuest } from '../../src/domain/sim/binding.js';
import { PrimaryNode } from '../../src/node/primary.js';
import { SecondaryNode } from '../../src/node/secondary.js';
import { StreamDecoder } from '../../src/stream/decoder.js';
import { LibxcType, LibxlType, TandemType } from '../../src/stream/format.js';
import { recordCode } from '../../src/stream/records.js';
import { tcpTransport } from '../../src/transport/tcp.js';
import { createLogger } from '../../src/util/logger.js';
import { REDIS_BENCHMARK, REDIS_CLI, requireRedisTools, runTool } from '../guest/helpers.js';
import { tempDir } from '../helpers/cli.js';
import { TcpTap } from '../helpers/tap.js';
import { verifyCheckpointed } from '../helpers/xen.js';

const logger = createLogger(process.env.COLO_LOG === '1' ? 'debug' : 'silent');

/** Both hosts' configuration: a 16 MiB guest with a 2 MiB disk, checkpoints at least every second, digests on, a patient heartbeat. */
function config(): TandemConfig {
  const cfg = defaultConfig();
  cfg.domain = { type: 'sim', memoryMib: 16, vcpus: 1, diskMib: 2 };
  cfg.secondary.listen = { host: '127.0.0.1', port: 0 };
  cfg.secondary.service = { host: '127.0.0.1', port: 0 };
  cfg.colo = { ...cfg.colo, net: { host: '127.0.0.1', port: 0 }, maxIntervalMs: 1000, compareTimeoutMs: 3000, expiredScanCycleMs: 100 };
  cfg.primary.service = { host: '127.0.0.1', port: 0 };
  cfg.primary.verifyDigest = true;
  // Both hosts share this process's event loop, and other suites load the machine: a stall of the loop
  // past the default 250 ms would fail the secondary over mid-test. This test is about COLO, not failure detection.
  cfg.heartbeat = { ...cfg.heartbeat, timeoutMs: 3000 };
  return cfg;
}

/** Runs the checks; `cleanups` stops everything it started (before its comparator goes). */
async function coloRun(opts: { external?: ComparatorAddresses }, cleanups: (() => Promise<void>)[]): Promise<void> {
  requireRedisTools();
  // The secondary host, as `tandem secondary --mode colo` builds it; its guest's clock can be skewed.
  let secondaryClockOffsetUs = 0;
  const scfg = config();
  const secondary = new SecondaryNode({
    cfg: scfg,
    mode: 'colo',
    binding: createBinding(scfg.domain, { guestClock: () => Date.now() * 1000 + secondaryClockOffsetUs }),
    transport: tcpTransport,
    logger,
  });
  const at = await secondary.start();
  const { server } = secondary.parts;
  const replica = secondary.parts.replica as SimReplicaGuest;
  // The state the secondary's guest runs from (the server's epoch event comes before it resumes): it must be the primary's at that checkpoint.
  const resumedAt = new Map<number, string>();
  let resumes = 0;
  server.on('epoch', (c) => {
    resumedAt.set(c.epoch, replica.digest());
    resumes++;
  });
  // The replication connection goes through a tap: its bytes, both ways, go to Xen's verifier afterwards.
  const tap = new TcpTap(at.replication);
  const tapPort = await tap.start();

  // The primary host, as `tandem primary --mode colo` builds it.
  const pcfg = config();
  pcfg.primary.secondary = { host: '127.0.0.1', port: tapPort };
  pcfg.primary.heartbeat = at.heartbeat;
  pcfg.colo.net = at.net;
  pcfg.colo.comparator = opts.external;
  const primary = new PrimaryNode({ cfg: pcfg, mode: 'colo', binding: createBinding(pcfg.domain), transport: tcpTransport, logger });
  const { port } = await primary.start();
  const engine = primary.protection!;
  const divergences: Trigger[] = [];
  primary.checkpointRequests$!.subscribe((t) => divergences.push(t));
  const epochs: EpochMetrics[] = [];
  engine.metrics$.subscribe((m) => epochs.push(m));
  cleanups.push(async () => {
    await primary.stop({ kind: 'signal', signal: 'SIGTERM' });
    await tap.stop();
    await secondary.stop('SIGTERM');
  });
  await firstValueFrom(engine.state$.pipe(filter((s) => s.state === 'protected')));

  // Deterministic: the replicas answer alike, nothing diverges.
  const bench = await runTool(REDIS_BENCHMARK, ['-p', String(port), '-t', 'set,get', '-n', '3000', '-c', '8', '-r', '100', '-q']);
  assert.equal(bench.code, 0, bench.out);
  assert.match(bench.out, /GET: [\d.]+ requests per second/);
  assert.equal(divergences.length, 0, `SET/GET made the replicas diverge: ${JSON.stringify(divergences)}`);
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
  assert.ok(divergences.some((d) => d.request?.reason === 'mismatch'), JSON.stringify(divergences));

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
  const wrong = checked.filter((m) => resumedAt.get(m.epoch) !== m.digest).map((m) => m.epoch);
  assert.deepEqual(wrong, [], "epochs whose secondary guest did not resume at the primary's state");

  // An orderly stop ends the COLO stream cleanly between checkpoints: no
  // "primary gone", and the secondary's guest stops with it.
  const gone: unknown[] = [];
  server.on('primary-gone', (g) => gone.push(g));
  const ended = new Promise((resolve) => server.once('stream-end', resolve));
  await engine.stop();
  await ended;
  assert.deepEqual(gone, []);
  assert.equal(replica.sim.paused, true, "the secondary's guest stopped with the stream");
  checkWithXen(tap, epochs.length);

  // Protection again: a fresh pre-copy into the paused replica, then COLO checkpoints as before.
  const resumesBefore = resumes;
  engine.start();
  await firstValueFrom(engine.state$.pipe(filter((st) => st.state === 'protected')));
  const again = firstValueFrom(engine.metrics$.pipe(filter((m) => m.trigger === 'divergence')));
  const t2 = await runTool(REDIS_CLI, ['-p', String(port), 'TIME']);
  assert.equal(t2.code, 0, t2.out);
  const m2 = await again;
  assert.ok(resumes > resumesBefore, 'the secondary guest runs again in the new session');
  assert.equal(resumedAt.get(m2.epoch), m2.digest, `epoch ${m2.epoch} of the new session: the secondary resumed away from the primary's state`);
  assert.deepEqual(gone, []);
}

/**
 * The first session's bytes, both ways, through Xen's own verifier classes:
 * the forward stream as a COLO stream (CHECKPOINT_STATE after each
 * CHECKPOINT_END, libxl END at the orderly stop; Tandem's TANDEM_PRIMARY and disk records read
 * past as the optional records they are), and the back-channel's
 * CHECKPOINT_STATE and CHECKPOINT_DIRTY_PFN_LIST records.
 */
function checkWithXen(tap: TcpTap, epochs: number): void {
  const tmp = tempDir('tandem-colo-xen-');
  try {
    const forward = tmp.path('forward.stream');
    const bytes = Buffer.concat(tap.forward[0]);
    writeFileSync(forward, bytes);
    const f = verifyCheckpointed(forward, { colo: true, optional: [TandemType.TANDEM_PRIMARY, TandemType.TANDEM_DISK_WRITES] });
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
  const qemu = await ColoCompareProcess.start({ compareTimeoutMs: 3000, expiredScanCycleMs: 100 });
  await withCleanup(async (c) => {
    c.push(() => qemu.stop());
    await coloRun({ external: qemu.addresses }, c);
  });
});
