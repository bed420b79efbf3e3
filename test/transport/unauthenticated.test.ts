/**
 * Nothing from an unauthenticated peer changes any state, on each channel
 * between the hosts as the nodes assemble it over mutual TLS: the
 * replication stream (no byte reaches the replica, no slot is taken), the
 * heartbeat channel (no generation adopted, no peer heard) and the COLO net
 * link (no frame reaches the guest). Each attacker speaks the channel's own
 * protocol correctly and sends it as early as it can: a plain-TCP peer on
 * connecting, a TLS peer the moment its own side of the handshake is done
 * (in TLS 1.3 that is before the listener has judged its certificate). The
 * attackers: plain TCP, a certificate of the same CA for another node, and
 * a certificate of another CA carrying the right name. Each case ends with
 * the authenticated primary sending the very same bytes, which do take
 * effect: the checks can see what they look for.
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { encodeFrame } from '../../proxy/framing.js';
import { NetLinkSecondary } from '../../src/colo/net-link.js';
import { HeartbeatChannel } from '../../src/heartbeat/channel.js';
import { encodeHeartbeat } from '../../src/heartbeat/codec.js';
import type { Transport } from '../../src/transport/transport.js';
import { captureLog, recordStream, simReplica } from '../secondary/fixtures.js';
import { secondaryFor } from '../helpers/sim.js';
import { ATTACKERS, attack, tlsFor } from '../helpers/tls.js';
import { until } from '../helpers/wait.js';

const LOOPBACK = '127.0.0.1';
const PAGES = 64;

const stopAfter: (() => Promise<unknown>)[] = [];
after(async () => {
  for (const stop of stopAfter) await stop().catch(() => {});
});

describe('an unauthenticated peer changes nothing', () => {
  test('replication stream: not a byte reaches the replica, no slot is kept; the authenticated primary then syncs', async () => {
    const stream = recordStream({ pages: PAGES, epochs: 3, seed: 0x7a5, generation: 1 });
    // The replica's memory and vCPU/device state: what the stream writes (it carries no disk).
    const { withoutDisk: replica } = simReplica(PAGES);
    const log = captureLog();
    const transport: Transport = await tlsFor('secondary', 'primary', { logger: log.logger });
    const server = secondaryFor(replica, { transport, logger: log.logger, primaries: { generation: 1 } });
    const { port } = await server.start();
    stopAfter.push(() => server.stop());
    const before = replica.digest();
    let connections = 0;
    server.on('state', () => connections++);

    for (const who of ATTACKERS) {
      const { sent, closedByListener } = await attack(port, who, stream.bytes);
      assert.ok(sent >= 1, `${who}: the stream went out`);
      assert.ok(closedByListener, `${who}: the listener closed the connection`);
      assert.equal(replica.digest(), before, `${who}: the replica is untouched`);
      assert.equal(server.lastEpoch, 0, who);
      assert.equal(server.state, 'idle', who);
      assert.equal(server.primary, undefined, `${who}: no connection became the stream`);
      assert.equal(server.openConnections, 0, `${who}: no slot kept`);
    }
    assert.equal(connections, 0, 'no state change at all');
    assert.deepEqual(log.find(/primary connected|replica/), []);
    const refused = log.lines().filter((l) => l.code === 'ERR_TRANSPORT_TLS_REFUSED' || l.code === 'ERR_TRANSPORT_PEER_MISMATCH');
    assert.deepEqual(refused.map((l) => l.code).sort(), ['ERR_TRANSPORT_PEER_MISMATCH', 'ERR_TRANSPORT_TLS_REFUSED', 'ERR_TRANSPORT_TLS_REFUSED']);

    // The same bytes from the primary: the replica takes all three epochs.
    const primary = await (await tlsFor('primary')).connect({ host: LOOPBACK, port }, { timeoutMs: 5000, peer: 'the secondary' });
    primary.on('data', () => {});
    primary.on('error', () => {});
    primary.end(stream.bytes);
    await until(() => server.lastEpoch === 3, 'the authenticated stream applied');
    assert.equal(replica.digest(), stream.digests[2]);
    primary.destroy();
  });

  test('heartbeat channel: no generation adopted, nothing heard; the authenticated primary is heard', async () => {
    const log = captureLog();
    const heartbeat = new HeartbeatChannel({ transport: await tlsFor('secondary', 'primary', { logger: log.logger }), role: 'secondary', generation: 1, listen: { host: LOOPBACK, port: 0 }, intervalMs: 50, timeoutMs: 250 });
    const events: string[] = [];
    for (const e of ['generation', 'connected', 'heartbeat', 'epoch', 'fenced', 'stale', 'protocolError'] as const) heartbeat.on(e, () => events.push(e));
    await heartbeat.start();
    stopAfter.push(() => heartbeat.stop());
    const { port } = heartbeat.address()!;
    // A newer primary's beat: adopted, it would fence the real primary (generation 1) and supersede its stream.
    const forged = encodeHeartbeat({ role: 'primary', incarnation: 0xbad, generation: 1000, sequence: 0, epoch: 99, sentAtUs: 1 });

    for (const who of ATTACKERS) {
      const { sent, closedByListener } = await attack(port, who, forged);
      assert.ok(sent >= 1 && closedByListener, who);
      assert.equal(heartbeat.generation, 1, `${who}: no generation adopted`);
      assert.equal(heartbeat.highestPeerGeneration, 0, `${who}: no peer generation heard`);
    }
    assert.deepEqual(events, [], 'the channel heard nothing');

    // The same beat from the primary's certificate is adopted: the check above can fail.
    const real = await (await tlsFor('primary')).connect({ host: LOOPBACK, port }, { timeoutMs: 5000, peer: 'the heartbeat channel' });
    real.on('data', () => {});
    real.on('error', () => {});
    real.write(forged);
    await until(() => heartbeat.generation === 1000, 'the authenticated beat adopted');
    real.destroy();
  });

  test('COLO net link: no frame reaches the guest; the authenticated primary\'s does', async () => {
    const delivered: Buffer[] = [];
    const link = new NetLinkSecondary({ transport: await tlsFor('secondary'), listen: { host: LOOPBACK, port: 0 }, toGuest: (f) => delivered.push(f) });
    const { port } = await link.start();
    stopAfter.push(() => link.stop());
    // A client's packet for the secondary's guest, in colo-compare's framing.
    const frame = Buffer.alloc(60, 0x42);
    const bytes = encodeFrame(frame);

    for (const who of ATTACKERS) {
      const { sent, closedByListener } = await attack(port, who, bytes);
      assert.ok(sent >= 1 && closedByListener, who);
      assert.equal(delivered.length, 0, `${who}: nothing reached the guest`);
    }

    const real = await (await tlsFor('primary')).connect({ host: LOOPBACK, port }, { timeoutMs: 5000, peer: 'the net link' });
    real.on('data', () => {});
    real.on('error', () => {});
    real.write(bytes);
    await until(() => delivered.length === 1, 'the authenticated frame delivered');
    assert.deepEqual(delivered[0], frame);
    real.destroy();
  });
});
