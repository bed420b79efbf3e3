/**
 * A secondary whose acks are late proves that replies wait for the ack, not
 * for the local write: a relay between primary and secondary passes the
 * stream through at once and holds every back-channel byte for 150 ms. Each
 * reply must be released only after the ack of the epoch that produced it
 * has come out of the relay.
 */
import assert from 'node:assert/strict';
import { createServer, connect as tcpConnect, type AddressInfo, type Socket } from 'node:net';
import { after, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { filter, firstValueFrom } from 'rxjs';
import { DeviceSet } from '../../src/checkpoint/devices.js';
import { OutputBuffer, type ReleasedOutput } from '../../src/front/output-buffer.js';
import { ServiceFront } from '../../src/front/service-front.js';
import { BackChannelDecoder } from '../../src/transport/backchannel.js';
import { createLogger } from '../../src/util/logger.js';
import { request } from '../guest/helpers.js';
import { testEngine } from '../checkpoint/helpers.js';
import { secondaryFor, simBinding } from '../helpers/sim.js';
import { connect } from './helpers.js';

const logger = createLogger('silent');
const DELAY_MS = 150;

test(`with acks delayed ${DELAY_MS} ms, no reply leaves before the ack of its epoch`, async () => {
  const secondary = secondaryFor(simBinding(1024).replica(logger));
  const { port: secondaryPort } = await secondary.start();

  // The relay: forward direction immediate, back-channel delayed; it notes when each ack comes out.
  const ackOut = new Map<number, number>();
  const relaySockets: Socket[] = [];
  const relay = createServer((fromPrimary) => {
    const toSecondary = tcpConnect({ host: '127.0.0.1', port: secondaryPort, noDelay: true });
    relaySockets.push(fromPrimary, toSecondary);
    const decoder = new BackChannelDecoder();
    fromPrimary.pipe(toSecondary);
    toSecondary.on('data', (d: Buffer) => {
      setTimeout(() => {
        if (fromPrimary.destroyed) return;
        fromPrimary.write(d);
        for (const rec of decoder.push(d)) if (rec.type === 'ACK') ackOut.set(rec.epoch, performance.now());
      }, DELAY_MS);
    });
    const end = (): void => {
      fromPrimary.destroy();
      toSecondary.destroy();
    };
    fromPrimary.on('close', end);
    toSecondary.on('close', end);
    fromPrimary.on('error', end);
    toSecondary.on('error', end);
  });
  relay.listen(0, '127.0.0.1');
  await new Promise((r) => relay.once('listening', r));
  const relayPort = (relay.address() as AddressInfo).port;

  const primary = simBinding(1024, { liveBatchPages: 256 }).primary(logger);
  const guestAddress = await primary.serveTcp();
  const releases: (ReleasedOutput & { at: number })[] = [];
  const buffer = new OutputBuffer({ onRelease: (r) => releases.push({ ...r, at: performance.now() }) });
  const front = new ServiceFront({ buffer, guest: guestAddress, port: 0, logger });
  const { port: frontPort } = await front.start();
  const engine = testEngine({ domain: primary.domain, devices: new DeviceSet([buffer]), port: relayPort, intervalMs: 20, options: { ackTimeoutMs: 5000, connectTimeoutMs: 1000 } });
  after(async () => {
    await engine.stop();
    await front.stop();
    await primary.stop();
    for (const s of relaySockets) s.destroy();
    relay.close();
    await secondary.stop();
  });
  engine.start();
  // Output of the pre-copy passes as unprotected output does: the requests go in once epochs run.
  await firstValueFrom(engine.state$.pipe(filter((st) => st.state === 'protected')));

  const client = await connect(frontPort);
  const sentAt: number[] = [];
  for (let i = 0; i < 10; i++) {
    sentAt.push(performance.now());
    client.socket.write(request('INCR', 'n'));
    const reply = await client.replies.next(5000);
    assert.equal(reply, i + 1);
    const latency = performance.now() - sentAt[i];
    // The epoch's ack spends DELAY_MS in the relay before the reply may go out.
    assert.ok(latency >= DELAY_MS, `reply ${i + 1} arrived ${latency.toFixed(1)} ms after its request, before a delayed ack could`);
    // Paces the requests so that they fall in different epochs.
    await sleep(5);
  }
  const tagged = releases.filter((r) => r.tag !== null);
  assert.ok(tagged.length >= 10, `${tagged.length} releases of held output`);
  for (const r of tagged) {
    const acked = ackOut.get(r.tag!);
    assert.ok(acked !== undefined, `output of epoch ${r.tag} released but its ack never came out of the relay`);
    assert.ok(r.at >= acked, `output of epoch ${r.tag} released ${(acked - r.at).toFixed(2)} ms before its ack came out of the relay`);
  }
});
