/**
 * A primary node and a secondary node, assembled as `tandem primary` and
 * `tandem secondary` assemble them (src/node/), in one process over the
 * in-memory network: protection, a primary that drops off the network and
 * the secondary's takeover by the failover rule, and the old primary fenced
 * when it comes back. Clients reach the guest over real loopback TCP.
 */
import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { createServer } from 'node:net';
import { after, describe, test } from 'node:test';
import { filter, firstValueFrom } from 'rxjs';
import type { TandemConfig } from '../../src/config/config.js';
import { createBinding } from '../../src/domain/bindings.js';
import { TandemError } from '../../src/errors.js';
import { PrimaryNode } from '../../src/node/primary.js';
import { SecondaryNode } from '../../src/node/secondary.js';
import { ask } from '../guest/helpers.js';
import { MemoryTransport } from '../helpers/memory-transport.js';
import { silent } from '../helpers/sim.js';
import { until } from '../helpers/wait.js';
import { nodeConfig } from './helpers.js';

const config = (): TandemConfig => nodeConfig();

const stops: (() => Promise<void>)[] = [];
after(async () => {
  for (const s of stops.reverse()) await s();
});

/** A Remus secondary node listening on `host`, stopped after the tests. */
async function startedSecondary(host: MemoryTransport): Promise<SecondaryNode> {
  const cfg = config();
  const secondary = new SecondaryNode({ cfg, mode: 'remus', binding: createBinding(cfg.domain), transport: host, logger: silent });
  await secondary.start();
  stops.push(() => secondary.stop('test'));
  return secondary;
}

/** A Remus primary node reaching its secondary over `transport`. */
const primaryNode = (transport: MemoryTransport, cfg: TandemConfig = config()): PrimaryNode =>
  new PrimaryNode({ cfg, mode: 'remus', binding: createBinding(cfg.domain), transport, logger: silent });

describe('PrimaryNode and SecondaryNode over the in-memory network', () => {
  test('protected, the primary drops off the network: the secondary takes over with what was acknowledged, and the old primary is fenced when it is back', async () => {
    const secondaryHost = new MemoryTransport();
    const primaryHost = secondaryHost.peer();
    const secondary = await startedSecondary(secondaryHost);
    const primary = primaryNode(primaryHost);
    const service = await primary.start();
    stops.push(() => primary.stop({ kind: 'signal', signal: 'test' }));
    const engine = primary.protection!;
    await firstValueFrom(engine.state$.pipe(filter((s) => s.state === 'protected')));

    // Acknowledged to the client only once an epoch holding it is acked by the secondary.
    const replies = await ask(service.port, [['SET', 'greeting', 'hello'], ['INCR', 'n'], ['INCR', 'n']]);
    assert.deepEqual(replies.map((r) => (Buffer.isBuffer(r) ? r.toString() : r)), ['OK', 1, 2]);
    const { server, promoter, heartbeat } = secondary.parts;
    const held = server.lastEpoch;
    assert.ok(held >= 1);

    primaryHost.cut();
    await until(() => promoter.promotion !== undefined, 'the takeover', 5000);
    const promotion = promoter.promotion!;
    assert.ok(promotion.epoch >= held, `promoted from epoch ${promotion.epoch}`);
    assert.equal(heartbeat.generation, 2, 'the survivor runs as the next generation');
    const after = await ask(promotion.service.port, [['GET', 'greeting'], ['GET', 'n']]);
    assert.deepEqual(after.map((r) => (Buffer.isBuffer(r) ? r.toString() : r)), ['hello', '2']);

    // The old primary is still running; back on the network it hears generation 2 and must stop serving.
    const fenced = primary.whenFenced();
    primaryHost.heal();
    assert.deepEqual(await fenced, { ownGeneration: 1, peerGeneration: 2 });
    await primary.stop({ kind: 'fenced', ownGeneration: 1, peerGeneration: 2 });
    await assert.rejects(ask(service.port, [['PING']]), 'the fenced primary no longer accepts clients');
  });

  test('a primary whose start fails after its secondary heard it stands the secondary down: the replica of an earlier run is not promoted by the silence', async () => {
    const secondaryHost = new MemoryTransport();
    const secondary = await startedSecondary(secondaryHost);
    // An earlier run protected the domain and stood down: the secondary holds its replica.
    const first = primaryNode(secondaryHost.peer());
    await first.start();
    await firstValueFrom(first.protection!.state$.pipe(filter((s) => s.state === 'protected')));
    await first.stop({ kind: 'signal', signal: 'SIGTERM' });
    const { server, promoter, heartbeat } = secondary.parts;
    const held = server.lastEpoch;
    assert.ok(held >= 1);
    // The next run hears the secondary, then cannot bind its service address.
    const busy = createServer();
    await new Promise<void>((r) => busy.listen(0, '127.0.0.1', r));
    stops.push(() => new Promise<void>((r) => busy.close(() => r())));
    const pcfg = config();
    pcfg.primary.service = { host: '127.0.0.1', port: (busy.address() as AddressInfo).port };
    const second = primaryNode(secondaryHost.peer(), pcfg);
    await assert.rejects(second.start(), /EADDRINUSE|address already in use/);
    // What it started goes, as the runners do after a failed start.
    stops.push(() => second.stop({ kind: 'signal', signal: 'test' }));
    // The failed run's own word, not the earlier run's (a new incarnation voids it).
    await until(() => heartbeat.peerIntent === 'stand-down', 'the failed run to stand the secondary down', 5000);
    await until(() => heartbeat.peerState === 'dead', 'the failed run to go silent', 5000);
    await new Promise((r) => setTimeout(r, 600));
    assert.equal(promoter.promotion, undefined, 'no takeover by the replica of the earlier run');
    assert.equal(server.lastEpoch, held, 'the replica is kept as it was');
  });

  test('a primary whose peer already runs a newer generation refuses to start: nothing is served', async () => {
    const secondaryHost = new MemoryTransport();
    const secondary = await startedSecondary(secondaryHost);
    // As after a failover: the secondary took generation 2.
    secondary.parts.heartbeat.promote();
    const primary = primaryNode(secondaryHost.peer());
    await assert.rejects(primary.start(), (e: unknown) => e instanceof TandemError && e.code === 'ERR_FENCED');
    assert.equal(primary.protection, undefined, 'no protection was started');
  });
});
