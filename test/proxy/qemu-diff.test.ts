/**
 * Differential test against the real QEMU colo-compare (Debian
 * `qemu-system-x86`, run standalone with `-machine none`): identical frame
 * traces go to both comparators through their sockets, and each phase's
 * release and checkpoint decisions must match, except the deliberate
 * differences of docs/proxy.md, where each side's outcome is asserted.
 *
 * Never skipped: without QEMU the test fails and says how to install it
 * (scripts/ensure-test-deps.mjs does, from package.json).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { ColoCompareProcess, QEMU_BINARY, qemuAvailable } from '../../proxy/qemu.js';
import { ProxyServer } from '../../proxy/server.js';
import { ScenarioDriver } from './harness.js';
import { buildScenarios, check, type Scenario } from './scenarios.js';

// colo-compare's default timeout: a phase on a loaded machine never comes near it, a lonely frame does.
const TIMING = { compareTimeoutMs: 3000, expiredScanCycleMs: 100 };
const LOOPBACK = { host: '127.0.0.1', port: 0 };

interface Pair {
  tandem: ProxyServer;
  qemu: ColoCompareProcess;
  t: ScenarioDriver;
  q: ScenarioDriver;
}

async function startPair(vnetHdr: boolean, vnetHdrLen: number): Promise<Pair> {
  assert.ok(qemuAvailable(), MISSING);
  const tandem = new ProxyServer({ primaryIn: LOOPBACK, secondaryIn: LOOPBACK, outdev: LOOPBACK, notify: LOOPBACK, vnetHdr, ...TIMING });
  await tandem.start();
  const a = tandem.addresses();
  const addr = (x: { address: string; port: number }): { host: string; port: number } => ({ host: x.address, port: x.port });
  const t = new ScenarioDriver({ primaryIn: addr(a.primary_in), secondaryIn: addr(a.secondary_in), outdev: addr(a.outdev), notify: addr(a.notify) }, { vnetHdr, vnetHdrLen, name: 'tandem' });
  let qemu: ColoCompareProcess;
  try {
    qemu = await ColoCompareProcess.start({ ...TIMING, vnetHdr });
  } catch (err) {
    // Nothing left listening: the file must end (and fail) rather than hang.
    await tandem.stop();
    throw err;
  }
  const q = new ScenarioDriver(qemu.addresses, { vnetHdr, vnetHdrLen, name: 'qemu' });
  await Promise.all([t.start(), q.start()]);
  return { tandem, qemu, t, q };
}

async function stopPair(p: Pair | undefined): Promise<void> {
  if (p === undefined) return;
  p.t.stop();
  p.q.stop();
  await p.tandem.stop();
  await p.qemu.stop();
}

/** Runs one scenario on both and checks each against its expectations. */
async function runBoth(p: Pair, ts: Scenario, qs: Scenario): Promise<void> {
  const [tr, qr] = await Promise.all([p.t.run(ts.steps), p.q.run(qs.steps)]);
  const problems: string[] = [];
  ts.tandem.forEach((e, i) => problems.push(...check(tr[i], e, `tandem phase ${i + 1}`)));
  ts.tandem.forEach((e, i) => problems.push(...check(qr[i], qs.qemu?.[i] ?? e, `qemu phase ${i + 1}`)));
  assert.deepEqual(problems, [], `${ts.name}${ts.difference ? ` (documented difference: ${ts.difference})` : ''}`);
}

const MISSING = `${QEMU_BINARY} not found: apt-get install -y --no-install-recommends qemu-system-x86 (listed in package.json tandem.debianTestPackages)`;

// A failing test of its own, so a missing QEMU counts as a failure and not only as cancelled scenarios.
test('QEMU colo-compare is installed', () => {
  assert.ok(qemuAvailable(), MISSING);
});

for (const [title, vnetHdr, vnetHdrLen] of [
  ['plain records', false, 0],
  ['vnet headers (vnet_hdr_support=on, 12-byte headers)', true, 12],
] as const) {
  describe(`differential: Tandem proxy vs QEMU colo-compare, ${title}`, () => {
    let pair: Pair | undefined;
    let ts: Scenario[] = [];
    let qs: Scenario[] = [];
    before(async () => {
      pair = await startPair(vnetHdr, vnetHdrLen);
      const tandem = pair.tandem;
      const nothingHeld = (): void => assert.deepEqual(tandem.comparator.stats().held, { primary: 0, secondary: 0 }, 'Tandem holds nothing after the phase');
      ts = buildScenarios(pair.t, vnetHdrLen, { call: nothingHeld });
      qs = buildScenarios(pair.q, vnetHdrLen, 'await-request');
    });
    after(() => stopPair(pair));

    // Names are fixed; the traces are built once the drivers exist.
    const names = buildScenarios({ label: (f: Buffer) => f } as unknown as ScenarioDriver).map((s) => s.name);
    names.forEach((name, i) => {
      test(name, { timeout: 120_000 }, async () => {
        assert.ok(pair, 'comparators did not start');
        assert.equal(ts[i].name, name);
        await runBoth(pair, ts[i], qs[i]);
      });
    });
  });
}
