/**
 * A primary node and a secondary node with the etcd arbiter (a real etcd),
 * over the in-memory network, with a client ledger through a moving
 * service address: the secondary takes over a protected primary at once
 * (no lease to wait for), a primary that lost its standby moves to the
 * next generation before it serves alone, and a primary cut off from both
 * its standby and etcd releases nothing no replica holds.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { filter, firstValueFrom } from 'rxjs';
import { EtcdArbiter } from '../../src/arbiter/etcd-arbiter.js';
import { EtcdClient } from '../../src/arbiter/etcd.js';
import type { TandemConfig } from '../../src/config/config.js';
import { Ledger } from '../../src/demo/ledger.js';
import { ServiceIp } from '../../src/demo/service-ip.js';
import { createBinding } from '../../src/domain/bindings.js';
import { PrimaryNode } from '../../src/node/primary.js';
import { SecondaryNode } from '../../src/node/secondary.js';
import type { Address } from '../../src/util/address.js';
import { CutProxy } from '../helpers/cut-proxy.js';
import { startEtcd, type EtcdCluster } from '../helpers/etcd.js';
import { MemoryTransport } from '../helpers/memory-transport.js';
import { silent } from '../helpers/sim.js';
import { createLogger, type Logger, type LogLevel } from '../../src/util/logger.js';
import { until } from '../helpers/wait.js';
import { nodeConfig } from './helpers.js';

/** Long, so a takeover that waited for the primary's lease would show. */
const LEASE_MS = 6000;
const T = { timeout: 60_000 };

let etcd: EtcdCluster;
let domainSeq = 0;
const stops: (() => Promise<void>)[] = [];

before(async () => {
  etcd = await startEtcd(1);
});
after(async () => {
  for (const s of stops.reverse()) await s().catch(() => {});
  await etcd.stop();
});

const config = (): TandemConfig => nodeConfig();

function arbiter(node: string, domain: string, endpoints: Address[] = etcd.endpoints): EtcdArbiter {
  return new EtcdArbiter({ client: new EtcdClient({ endpoints, timeoutMs: 300 }), prefix: '/tandem-node-test', domain, node, leaseMs: LEASE_MS, logger: logger(node) });
}

interface Pair {
  domain: string;
  /** Why the secondary took over, once it did. */
  promotedReason?: string;
  primaryHost: MemoryTransport;
  /** alpha's way to etcd. */
  primaryEtcd: CutProxy;
  primary: PrimaryNode;
  secondary: SecondaryNode;
  serviceIp: ServiceIp;
  ledger: Ledger;
}

/** A protected pair, alpha serving and beta standing by, with a ledger writing through the service address. */
async function protectedPair(tune: (cfg: TandemConfig) => void = () => {}): Promise<Pair> {
  const domain = `vm${++domainSeq}`;
  const primaryEtcd = new CutProxy(etcd.endpoints[0]);
  const via = await primaryEtcd.start();
  stops.push(() => primaryEtcd.stop());
  const secondaryHost = new MemoryTransport();
  const primaryHost = secondaryHost.peer();
  const scfg = config();
  const secondary = new SecondaryNode({ cfg: scfg, mode: 'remus', binding: createBinding(scfg.domain), transport: secondaryHost, logger: logger('beta'), arbiter: arbiter('beta', domain) });
  await secondary.start();
  stops.push(() => secondary.stop('test'));
  const pcfg = config();
  tune(pcfg);
  const primary = new PrimaryNode({ cfg: pcfg, mode: 'remus', binding: createBinding(pcfg.domain), transport: primaryHost, logger: logger('alpha'), arbiter: arbiter('alpha', domain, [via]) });
  const service = await primary.start();
  stops.push(() => primary.stop({ kind: 'signal', signal: 'test' }));
  await firstValueFrom(primary.protection!.state$.pipe(filter((s) => s.state === 'protected')));
  const serviceIp = new ServiceIp({ host: '127.0.0.1', port: 0 });
  serviceIp.moveTo({ host: '127.0.0.1', port: service.port });
  const bound = await serviceIp.start();
  stops.push(() => serviceIp.stop());
  const ledger = new Ledger({ host: '127.0.0.1', port: bound.port }, 4);
  ledger.start();
  stops.push(() => Promise.resolve(ledger.stop()));
  const pair: Pair = { domain, primaryHost, primaryEtcd, primary, secondary, serviceIp, ledger };
  secondary.parts.promoter.on('promoted', (p) => (pair.promotedReason = p.reason));
  return pair;
}

/** alpha stops existing for everyone: cut off from beta and from etcd (it still runs, as a hung host would). */
function crash(pair: Pair, how: 'reset' | 'silence' = 'reset'): void {
  pair.primaryEtcd.cut();
  if (how === 'reset') pair.primaryHost.cut();
  else pair.primaryHost.silence();
}

/** Silent, unless TANDEM_TEST_LOG names a level (the nodes' logs on stderr, to read a failure). */
const logger = (name: string): Logger => (process.env.TANDEM_TEST_LOG === undefined ? silent : createLogger(process.env.TANDEM_TEST_LOG as LogLevel, name));

const holder = (domain: string): Promise<unknown> => arbiter('observer', domain).holder();

/** After a takeover: clients go to the survivor; every acknowledged write must be there. */
async function verifyTakeover(pair: Pair, service: Address): Promise<void> {
  const { ledger, serviceIp } = pair;
  serviceIp.moveTo(service);
  ledger.failedOver();
  try {
    await until(() => ledger.survivorAnsweredAll, 'the survivor to answer every client', 10_000);
  } catch (err) {
    const l = ledger as unknown as { firstAfter: Map<string, number>; errors: number; phase: number };
    process.stderr.write(`DEBUG firstAfter ${JSON.stringify([...l.firstAfter])} errors ${l.errors} phase ${l.phase} service ${JSON.stringify(service)}\n`);
    throw err;
  }
  ledger.stop();
  const summary = await ledger.verify();
  if (summary.lostAckedWrites > 0 && process.env.TANDEM_TEST_LOG !== undefined) {
    const acked = (ledger as unknown as { maxAcked: Map<string, number>; maxBefore: Map<string, number>; firstAfter: Map<string, number> });
    process.stderr.write(`DEBUG maxAcked ${JSON.stringify([...acked.maxAcked])} maxBefore ${JSON.stringify([...acked.maxBefore])} firstAfter ${JSON.stringify([...acked.firstAfter])}\n`);
  }
  assert.ok(summary.ackedWrites > 0);
  assert.equal(summary.lostAckedWrites, 0, JSON.stringify(summary));
}

describe('PrimaryNode and SecondaryNode with the etcd arbiter', () => {
  test('the primary hangs: the secondary takes over the protected primary at once (no lease to wait for); the old primary is superseded when it is back; nothing acknowledged is lost', T, async () => {
    const pair = await protectedPair();
    // Recorded in the background once the first checkpoint was acked.
    await until(async () => JSON.stringify(await holder(pair.domain)) === JSON.stringify({ node: 'alpha', generation: 1, protected: true }), 'alpha recorded protected at generation 1');
    await until(() => pair.secondary.parts.server.lastEpoch > 20, 'some epochs under load');
    const crashedAt = performance.now();
    crash(pair);
    const { promoter, heartbeat } = pair.secondary.parts;
    await until(() => promoter.promotion !== undefined, 'the takeover', 10_000);
    const tookMs = performance.now() - crashedAt;
    assert.ok(tookMs < LEASE_MS / 2, `the takeover took ${tookMs.toFixed(0)} ms: it did not wait for alpha's ${LEASE_MS} ms lease`);
    assert.equal(promoter.promotion!.generation, 2);
    assert.equal(heartbeat.generation, 2);
    assert.deepEqual(await holder(pair.domain), { node: 'beta', generation: 2, protected: false });
    // alpha lost its standby but cannot move to generation 2 without etcd: what it holds stays held.
    await until(() => pair.primary.protection!.state === 'degraded', 'alpha to lose its standby', 10_000);
    const fenced = pair.primary.whenFenced();
    pair.primaryEtcd.heal();
    assert.equal((await fenced).peerGeneration, 2);
    await pair.primary.stop({ kind: 'fenced', ...(await fenced) });
    await verifyTakeover(pair, { host: '127.0.0.1', port: promoter.promotion!.service.port });
  });

  test('the hosts lose each other but not etcd: the primary, which sees its link reset first, moves to generation 2 and serves alone; the secondary is refused; healed, it protects generation 2', T, async () => {
    const pair = await protectedPair();
    await until(() => pair.secondary.parts.server.lastEpoch > 20, 'some epochs under load');
    const { promoter, server } = pair.secondary.parts;
    const refusals: string[] = [];
    promoter.on('refused', (e) => refusals.push(e.error.message));
    pair.primaryHost.cut();
    await until(async () => JSON.stringify(await holder(pair.domain)) === JSON.stringify({ node: 'alpha', generation: 2, protected: false }), 'alpha to move to generation 2', 10_000);
    // beta hears nothing for its timeout and tries; its replica is of generation 1, so it may not.
    await until(() => refusals.length > 0, 'beta to try to take over', 10_000);
    assert.match(refusals[0], /the domain is at generation 2 \(node alpha\), but this replica holds checkpoints of generation 1/);
    assert.equal(promoter.promotion, undefined, 'beta does not serve');
    const served = (await pair.ledger.verify()).ackedWrites;
    await until(async () => (await pair.ledger.verify()).ackedWrites > served + 50, 'replies from alpha, alone', 10_000);
    pair.primaryHost.heal();
    await until(async () => JSON.stringify(await holder(pair.domain)) === JSON.stringify({ node: 'alpha', generation: 2, protected: true }), 'alpha protected again, at generation 2', 20_000);
    assert.equal(server.replicaGeneration, 2);
    assert.equal(promoter.promotion, undefined);
    pair.ledger.stop();
    const summary = await pair.ledger.verify();
    assert.equal(summary.lostAckedWrites, 0, JSON.stringify(summary));
  });

  test('the secondary goes away: the primary moves to generation 2 before it serves alone, serves, and is protected again at 2 by a new secondary that can take over from it', T, async () => {
    const pair = await protectedPair();
    const { ledger } = pair;
    await pair.secondary.stop('test');
    await until(async () => JSON.stringify(await holder(pair.domain)) === JSON.stringify({ node: 'alpha', generation: 2, protected: false }), 'alpha to move to generation 2', 10_000);
    // Serving alone: replies keep coming.
    const before = (await ledger.verify()).ackedWrites;
    await until(async () => (await ledger.verify()).ackedWrites > before + 50, 'replies from the unprotected primary', 10_000);

    // A new secondary at the same address: protection at generation 2, which its replica may take over from.
    const scfg = config();
    const secondaryHost = pair.primaryHost.peer();
    const second = new SecondaryNode({ cfg: scfg, mode: 'remus', binding: createBinding(scfg.domain), transport: secondaryHost, logger: logger('gamma'), arbiter: arbiter('gamma', pair.domain) });
    await second.start();
    stops.push(() => second.stop('test'));
    await until(async () => JSON.stringify(await holder(pair.domain)) === JSON.stringify({ node: 'alpha', generation: 2, protected: true }), 'alpha protected at generation 2', 20_000);
    assert.equal(second.parts.server.replicaGeneration, 2);
    crash(pair);
    await until(() => second.parts.promoter.promotion !== undefined, 'gamma to take over', 10_000);
    assert.equal(second.parts.promoter.promotion!.generation, 3);
    // Back in touch with etcd, alpha learns it lost and stops: its clients reconnect, to gamma.
    const fenced = pair.primary.whenFenced();
    pair.primaryEtcd.heal();
    assert.equal((await fenced).peerGeneration, 3);
    await pair.primary.stop({ kind: 'fenced', ...(await fenced) });
    await verifyTakeover(pair, { host: '127.0.0.1', port: second.parts.promoter.promotion!.service.port });
  });

  test('the primary hangs silently (its packets vanish, connections stay open): the secondary notices within the timeout and takes over; nothing acknowledged is lost', T, async () => {
    const pair = await protectedPair();
    await until(() => pair.secondary.parts.server.lastEpoch > 20, 'some epochs under load');
    crash(pair, 'silence');
    const { promoter } = pair.secondary.parts;
    await until(() => promoter.promotion !== undefined, 'the takeover', 10_000);
    assert.equal(promoter.promotion!.generation, 2);
    // alpha notices too (heartbeats and acks silent) and ends its session; it cannot move on without etcd.
    await until(() => pair.primary.protection!.state === 'degraded', 'alpha to give up the silent link', 10_000);
    const fenced = pair.primary.whenFenced();
    pair.primaryEtcd.heal();
    assert.equal((await fenced).peerGeneration, 2);
    await pair.primary.stop({ kind: 'fenced', ...(await fenced) });
    await verifyTakeover(pair, { host: '127.0.0.1', port: promoter.promotion!.service.port });
  });

  test('a silent partition between the hosts, both reaching etcd: exactly one serves; healed, nothing acknowledged is lost and the loser serves nothing', T, async () => {
    const pair = await protectedPair();
    await until(() => pair.secondary.parts.server.lastEpoch > 20, 'some epochs under load');
    pair.primaryHost.silence();
    const { promoter, server } = pair.secondary.parts;
    const refusals: string[] = [];
    promoter.on('refused', (e) => refusals.push(e.error.message));
    // Both notice the silence within the timeout and race for the domain's record.
    await until(async () => {
      const h = (await holder(pair.domain)) as { generation: number } | undefined;
      return h !== undefined && h.generation === 2;
    }, 'the domain to move to generation 2', 10_000);
    const won = (await holder(pair.domain)) as { node: string; generation: number; protected: boolean };
    if (won.node === 'alpha') {
      // alpha serves alone; beta's claim was refused: its replica is of generation 1.
      await until(() => refusals.length > 0, 'beta to be refused', 10_000);
      assert.equal(promoter.promotion, undefined);
      pair.primaryHost.heal();
      // alpha's new stream (generation 2) replaces the dead connection beta still held.
      await until(async () => JSON.stringify(await holder(pair.domain)) === JSON.stringify({ node: 'alpha', generation: 2, protected: true }), 'alpha protected again', 20_000);
      assert.equal(server.replicaGeneration, 2);
      pair.ledger.stop();
      assert.equal((await pair.ledger.verify()).lostAckedWrites, 0);
    } else {
      assert.deepEqual(won, { node: 'beta', generation: 2, protected: false });
      await until(() => promoter.promotion !== undefined, 'beta to serve', 10_000);
      const fenced = await pair.primary.whenFenced();
      await pair.primary.stop({ kind: 'fenced', ...fenced });
      await verifyTakeover(pair, { host: '127.0.0.1', port: promoter.promotion!.service.port });
    }
  });

  test('SIGTERM with on_stop stand-down: the secondary keeps its replica and never takes over, however long the primary stays away', T, async () => {
    const pair = await protectedPair();
    await until(() => pair.secondary.parts.server.lastEpoch > 10, 'some epochs under load');
    await pair.primary.stop({ kind: 'signal', signal: 'SIGTERM' });
    const { promoter, server, heartbeat } = pair.secondary.parts;
    await until(() => heartbeat.peerState === 'dead', 'the primary to go silent');
    await new Promise((r) => setTimeout(r, 600));
    assert.equal(promoter.promotion, undefined, 'no failover by silence after an orderly stop');
    assert.equal(heartbeat.peerIntent, 'stand-down');
    assert.ok(server.lastEpoch > 10, 'the replica is kept');
    // The domain went back to the arbiter, its last run recorded protected: an operator may still fail over to this replica.
    assert.equal(await holder(pair.domain), undefined);
    const p = await promoter.promote('operator request');
    assert.equal(p.generation, 2);
    await verifyTakeover(pair, { host: '127.0.0.1', port: p.service.port });
  });

  test('SIGTERM with on_stop switchover: a last checkpoint, then the secondary takes over at once; nothing acknowledged is lost', T, async () => {
    const pair = await protectedPair((cfg) => (cfg.primary.onStop = 'switchover'));
    await until(() => pair.secondary.parts.server.lastEpoch > 10, 'some epochs under load');
    const { promoter, heartbeat } = pair.secondary.parts;
    const stoppedAt = performance.now();
    await pair.primary.stop({ kind: 'signal', signal: 'SIGTERM' });
    await until(() => promoter.promotion !== undefined, 'the takeover', 10_000);
    assert.equal(heartbeat.peerIntent, 'hand-over');
    assert.match(pair.promotedReason ?? '', /planned switchover/);
    assert.equal(promoter.promotion!.generation, 2);
    assert.ok(performance.now() - stoppedAt < LEASE_MS, 'no lease was waited for');
    await verifyTakeover(pair, { host: '127.0.0.1', port: promoter.promotion!.service.port });
  });
});

