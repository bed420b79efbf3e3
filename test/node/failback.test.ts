/**
 * Failback with nodes assembled as the CLI assembles them, over the
 * in-memory network, with clients writing through a moving service address:
 * A serves, A dies, B serves; A comes back as B's secondary and B protects
 * the guest to it; B dies, A serves, with every acknowledged write, twice.
 * Both nodes run the same symmetric configuration (each names the other as
 * its primary.secondary).
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { filter, firstValueFrom } from 'rxjs';
import type { TandemConfig } from '../../src/config/config.js';
import { Ledger } from '../../src/demo/ledger.js';
import { ServiceIp } from '../../src/demo/service-ip.js';
import { createBinding } from '../../src/domain/bindings.js';
import { PrimaryNode } from '../../src/node/primary.js';
import { SecondaryNode } from '../../src/node/secondary.js';
import type { Address } from '../../src/util/address.js';
import { createLogger, type Logger, type LogLevel } from '../../src/util/logger.js';
import { MemoryTransport } from '../helpers/memory-transport.js';
import { silent } from '../helpers/sim.js';
import { until } from '../helpers/wait.js';
import { nodeConfig } from './helpers.js';

const stops: (() => Promise<void>)[] = [];
after(async () => {
  for (const s of stops.reverse()) await s().catch(() => {});
});

const logger = (name: string): Logger => (process.env.TANDEM_TEST_LOG === undefined ? silent : createLogger(process.env.TANDEM_TEST_LOG as LogLevel, name));

/** Node `me`'s configuration; `peer` is the other host. */
const config = (me: string, peer: string): TandemConfig => nodeConfig(me, peer);

function secondary(name: string, cfg: TandemConfig, host: MemoryTransport): SecondaryNode {
  const node = new SecondaryNode({ cfg, mode: 'remus', binding: createBinding(cfg.domain), transport: host, logger: logger(name) });
  stops.push(() => node.stop('test'));
  return node;
}

/** A ledger of writers through the service address, once it leads to `service`. */
function ledgerVia(serviceIp: ServiceIp, port: number, service: Address): Ledger {
  serviceIp.moveTo({ host: '127.0.0.1', port });
  const ledger = new Ledger(service, 4);
  ledger.start();
  stops.push(() => Promise.resolve(ledger.stop()));
  return ledger;
}

/** After a takeover: clients go to `port`; the old phase's acknowledged writes must all be there. */
async function followTakeover(ledger: Ledger, serviceIp: ServiceIp, port: number): Promise<void> {
  serviceIp.moveTo({ host: '127.0.0.1', port });
  ledger.failedOver();
  try {
    await until(() => ledger.survivorAnsweredAll, 'the survivor to answer every client', 10_000);
  } catch (err) {
    const l = ledger as unknown as { firstAfter: Map<string, number>; errors: number };
    process.stderr.write(`DEBUG answered ${JSON.stringify([...l.firstAfter])} errors ${l.errors}\n`);
    throw err;
  }
  ledger.stop();
  const summary = await ledger.verify();
  if (summary.lostAckedWrites > 0 && process.env.TANDEM_TEST_LOG !== undefined) {
    const l = ledger as unknown as { maxBefore: Map<string, number>; firstAfter: Map<string, number> };
    process.stderr.write(`DEBUG maxBefore ${JSON.stringify([...l.maxBefore])} firstAfter ${JSON.stringify([...l.firstAfter])}\n`);
  }
  assert.ok(summary.ackedWrites > 0);
  assert.equal(summary.lostAckedWrites, 0, JSON.stringify(summary));
}

describe('failback', () => {
  test('A serves, A dies, B serves; A rejoins as B\'s secondary and B protects the guest to it; B dies, A serves: nothing acknowledged lost', { timeout: 60_000 }, async () => {
    const hostB = new MemoryTransport();
    const hostA = hostB.peer();
    const cfgA = config('a', 'b');
    const cfgB = config('b', 'a');

    const b = secondary('B', cfgB, hostB);
    await b.start();
    const a = new PrimaryNode({ cfg: cfgA, mode: 'remus', binding: createBinding(cfgA.domain), transport: hostA, logger: logger('A') });
    const aService = await a.start();
    stops.push(() => a.stop({ kind: 'signal', signal: 'test' }));
    await firstValueFrom(a.protection!.state$.pipe(filter((s) => s.state === 'protected')));
    const serviceIp = new ServiceIp({ host: '127.0.0.1', port: 0 });
    stops.push(() => serviceIp.stop());
    const service = { host: '127.0.0.1', port: (await serviceIp.start()).port };
    const first = ledgerVia(serviceIp, aService.port, service);
    await until(() => b.parts.server.lastEpoch > 20, 'epochs under load');

    // A dies: off the network, and its front gone with it (as a killed process's would be; without an
    // arbiter a live A cut off from B would go on serving alone: docs/failover.md).
    hostA.cut();
    await a.stop({ kind: 'fenced', ownGeneration: 1, peerGeneration: 2 });
    await until(() => b.parts.promoter.promotion !== undefined, 'B to take over', 10_000);
    const bServes = b.parts.promoter.promotion!;
    assert.equal(bServes.generation, 2);
    await followTakeover(first, serviceIp, bServes.service.port);

    // A comes back as a secondary (a new process on the same host) with its own, unchanged configuration.
    const hostA2 = hostB.peer();
    const a2 = secondary('A2', cfgA, hostA2);
    await a2.start();
    const second = ledgerVia(serviceIp, bServes.service.port, service);
    await until(() => a2.parts.server.replicaGeneration === 2 && a2.parts.server.lastEpoch > 20, 'B to protect the guest to A', 20_000);
    assert.equal(a2.parts.heartbeat.generation, 2, "A follows B's generation");

    // B dies; A takes over from B's checkpoints.
    hostB.cut();
    await b.stop('superseded');
    await until(() => a2.parts.promoter.promotion !== undefined, 'A to take over again', 10_000);
    assert.equal(a2.parts.promoter.promotion!.generation, 3);
    await followTakeover(second, serviceIp, a2.parts.promoter.promotion!.service.port);
  });
});
