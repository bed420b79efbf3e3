/**
 * The comparator as the primary's checkpoint device, with Tandem's own
 * comparator and a net link over the in-memory transport: which frames
 * reach the clients, and that frames no replica vouches for leave only with
 * the authority (the arbiter's lease).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ComparatorDevice } from '../../src/colo/comparator-device.js';
import { InProcessComparator } from '../../src/colo/comparators.js';
import { NetLinkPrimary, NetLinkSecondary } from '../../src/colo/net-link.js';
import { Tcp, encodeSegment, ipv4 } from '../../src/net/wire.js';
import { MemoryTransport } from '../helpers/memory-transport.js';
import { until } from '../helpers/wait.js';

const client = { mac: Buffer.from('525400abcdef', 'hex'), ip: ipv4('10.0.0.2'), port: 40000 };
const guest = { mac: Buffer.from('525400123456', 'hex'), ip: ipv4('10.0.0.1'), port: 6379 };
const reply = (seq: number, text: string): Buffer => encodeSegment({ src: guest, dst: client, seq, ack: 1, flags: Tcp.ACK | Tcp.PSH, window: 65535, payload: Buffer.from(text) });
const textOf = (f: Buffer): string => f.subarray(54).toString();

async function rig(valid: () => boolean) {
  const transport = new MemoryTransport();
  const secondary = new NetLinkSecondary({ transport, listen: { host: '127.0.0.1', port: 0 }, toGuest: () => {} });
  const { port } = await secondary.start();
  const link = new NetLinkPrimary({ transport, secondary: { host: '127.0.0.1', port }, toComparator: () => {} });
  const comparator = new InProcessComparator({ compareTimeoutMs: 60_000, expiredScanCycleMs: 60_000, maxQueueSize: 1024 });
  const released: string[] = [];
  const dropped: string[] = [];
  const device = new ComparatorDevice({ comparator, link, release: (f) => released.push(textOf(f)), authority: { valid }, onDropped: (f) => dropped.push(textOf(f)) });
  comparator.onRelease((f) => device.deliver(f));
  await comparator.start();
  return {
    device,
    released,
    dropped,
    stop: async () => {
      comparator.close();
      link.stop();
      await secondary.stop();
    },
  };
}

describe('ComparatorDevice', () => {
  test('unprotected, frames pass through only while the authority is valid', async () => {
    let valid = true;
    const r = await rig(() => valid);
    try {
      r.device.transmit(reply(1, 'a'));
      valid = false;
      r.device.transmit(reply(2, 'b'));
      valid = true;
      r.device.transmit(reply(3, 'c'));
      assert.deepEqual(r.released, ['a', 'c']);
      assert.deepEqual(r.dropped, ['b']);
    } finally {
      await r.stop();
    }
  });

  test('while comparing, frames wait for the checkpoint whatever the authority; at teardown without it the held ones are dropped', async () => {
    let valid = false;
    const r = await rig(() => valid);
    try {
      await r.device.setup();
      r.device.transmit(reply(1, 'e1'));
      assert.deepEqual(r.released, [], 'held for comparison');
      // The secondary holds the checkpoint: the held frame is vouched for.
      await r.device.commit(1);
      await until(() => r.released.length === 1, 'the commit to release e1');
      assert.deepEqual(r.released, ['e1']);
      r.device.transmit(reply(3, 'e2'));
      // The standby is lost and this node has no lease: nothing vouches for e2.
      await r.device.teardown();
      r.device.transmit(reply(5, 'after'));
      assert.deepEqual(r.released, ['e1']);
      assert.deepEqual(r.dropped, ['e2', 'after']);
      valid = true;
      r.device.transmit(reply(5, 'again'));
      assert.deepEqual(r.released, ['e1', 'again']);
    } finally {
      await r.stop();
    }
  });
});
