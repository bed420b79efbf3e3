/**
 * The COLO net link: resume markers keep the secondary's frames in step
 * with the commits, frames sent in one turn leave in one write, and a peer
 * that stops reading holds the sender back instead of filling its memory.
 *
 * The protocol tests run over the in-memory transport: they wait for the
 * frames to arrive (framesReceived) and need no sockets. The backpressure
 * tests run over both transports: in memory, where the stall is exact, and
 * over real loopback TCP, because what they guard is that the link's
 * congestion signals (bytes queued past CONGESTED_BYTES, 'drain') and its
 * pause() hold with the kernel's socket buffers and TCP's flow control in
 * between, which the memory transport only models (one 16 KiB stream buffer
 * a side).
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import type { Duplex } from 'node:stream';
import { describe, test } from 'node:test';
import { setImmediate as tick, setTimeout as sleep } from 'node:timers/promises';

import { FrameDecoder, encodeFrame } from '../../proxy/framing.js';
import { MemoryTransport } from '../helpers/memory-transport.js';
import { until } from '../helpers/wait.js';
import { tcpTransport } from '../../src/transport/tcp.js';
import type { Transport } from '../../src/transport/transport.js';
import { CONGESTED_BYTES, NetLinkPrimary, NetLinkSecondary, markerEpoch, markerFrame } from '../../src/colo/net-link.js';

const LOOPBACK = { host: '127.0.0.1', port: 0 };

const frame = (tag: string, bytes = 64): Buffer => {
  const f = Buffer.alloc(Math.max(bytes, 14 + tag.length), 0x20);
  f.writeUInt16BE(0x0800, 12);
  f.write(tag, 14, 'latin1');
  return f;
};
const tagOf = (f: Buffer): string => f.toString('latin1', 14).trimEnd();

interface Pair {
  primary: NetLinkPrimary;
  secondary: NetLinkSecondary;
  compared: string[];
  toGuest: string[];
  stop: () => Promise<void>;
}

async function pair(): Promise<Pair> {
  const transport = new MemoryTransport();
  const compared: string[] = [];
  const toGuest: string[] = [];
  const secondary = new NetLinkSecondary({ transport, listen: LOOPBACK, toGuest: (f) => toGuest.push(tagOf(f)) });
  const { port } = await secondary.start();
  const primary = new NetLinkPrimary({ transport, secondary: { host: '127.0.0.1', port }, toComparator: (f) => compared.push(tagOf(f)) });
  await primary.start();
  await until(() => secondary.connected, 'the secondary to accept');
  return {
    primary,
    secondary,
    compared,
    toGuest,
    stop: async () => {
      primary.stop();
      await secondary.stop();
    },
  };
}

describe('marker frames', () => {
  test('name the epoch they were sent for, up to 2^53', () => {
    for (const e of [0, 1, 0xffffffff, 2 ** 32 + 7, Number.MAX_SAFE_INTEGER]) assert.equal(markerEpoch(markerFrame(e)), e);
  });

  test('no other frame is taken for one', () => {
    const m = markerFrame(3);
    assert.equal(markerEpoch(frame('hello')), undefined);
    assert.equal(markerEpoch(m.subarray(0, m.length - 1)), undefined, 'shorter');
    assert.equal(markerEpoch(Buffer.concat([m, Buffer.alloc(1)])), undefined, 'longer');
    const otherType = Buffer.from(m);
    otherType.writeUInt16BE(0x0800, 12);
    assert.equal(markerEpoch(otherType), undefined, 'IPv4 ethertype');
    const otherTag = Buffer.from(m);
    otherTag[14] ^= 1;
    assert.equal(markerEpoch(otherTag), undefined, 'another tag');
  });
});

describe('NetLinkPrimary and NetLinkSecondary', () => {
  test('frames of one turn leave in one write, in order, and flush() sends at once', async () => {
    const p = await pair();
    try {
      for (let i = 0; i < 50; i++) p.primary.send(frame(`req ${i}`));
      assert.equal(p.primary.bytesWritten, 0, 'nothing written during the turn that sent');
      await tick();
      await until(() => p.toGuest.length === 50, '50 frames at the secondary');
      assert.deepEqual(p.toGuest, Array.from({ length: 50 }, (_, i) => `req ${i}`));
      const before = p.primary.bytesWritten;
      p.primary.send(frame('now'));
      p.primary.flush();
      assert.equal(p.primary.bytesWritten, before + 4 + 64, 'flush wrote the batch before returning');
      await until(() => p.toGuest.at(-1) === 'now', 'the flushed frame');
    } finally {
      await p.stop();
    }
  });

  test('the secondary guest output is compared only while it runs from the committed checkpoint', async () => {
    const p = await pair();
    try {
      const s = p.secondary;
      p.primary.reset();
      const arrived = (n: number, what: string): Promise<void> => until(() => p.primary.framesReceived === n, what);
      // A new stream: what the secondary sends before its first resume (a run from an earlier stream) is dropped.
      s.send(frame('old'));
      await arrived(1, 'the old frame at the primary');
      assert.deepEqual(p.compared, []);
      assert.equal(p.primary.dropped, 1);
      // The guest resumed from checkpoint 1 before the primary committed it: held.
      s.resumed(1);
      s.send(frame('b1'));
      await arrived(3, 'the marker and b1');
      assert.deepEqual(p.compared, [], 'b1 held until checkpoint 1 is committed');
      assert.equal(p.primary.heldFrames, 1);
      p.primary.committed(1);
      assert.deepEqual(p.compared, ['b1']);
      assert.equal(p.primary.heldFrames, 0);
      s.send(frame('b1+'));
      await arrived(4, 'b1+');
      assert.deepEqual(p.compared, ['b1', 'b1+'], 'b1+ compared as it arrived');
      // Committed 2 while the secondary still runs from 1: what it sent meanwhile is history.
      p.primary.committed(2);
      s.send(frame('c1'));
      await arrived(5, 'c1');
      assert.deepEqual(p.compared, ['b1', 'b1+']);
      assert.equal(p.primary.dropped, 2);
      s.resumed(2);
      s.send(frame('d2'));
      await arrived(7, 'the marker and d2');
      assert.deepEqual(p.compared, ['b1', 'b1+', 'd2']);
      assert.equal(p.primary.dropped, 2);
    } finally {
      await p.stop();
    }
  });

  test('a newer resume drops frames held from the run it supersedes', async () => {
    const p = await pair();
    try {
      p.secondary.resumed(1);
      p.secondary.send(frame('e1'));
      p.secondary.resumed(2);
      p.secondary.send(frame('f2'));
      await until(() => p.primary.framesReceived === 4, 'two markers and two frames');
      assert.equal(p.primary.heldFrames, 1, 'f2 held, e1 gone');
      p.primary.committed(2);
      assert.deepEqual(p.compared, ['f2']);
      assert.equal(p.primary.dropped, 1);
      // A new stream: what was held for the old one is forgotten, and the count starts again at 0.
      p.secondary.resumed(3);
      p.secondary.send(frame('h3'));
      await until(() => p.primary.framesReceived === 6, 'the marker and h3');
      assert.equal(p.primary.heldFrames, 1, 'h3 held for checkpoint 3');
      p.primary.reset();
      assert.equal(p.primary.heldFrames, 0);
      p.primary.committed(3);
      assert.deepEqual(p.compared, ['f2'], 'h3 was held for a stream that is gone');
    } finally {
      await p.stop();
    }
  });

  test('malformed framing from the peer drops the link, and a second primary is refused', async () => {
    const transport = new MemoryTransport();
    const toGuest: Buffer[] = [];
    const s = new NetLinkSecondary({ transport, listen: LOOPBACK, toGuest: (f) => toGuest.push(f) });
    const at = await s.start();
    try {
      const dial = (): Promise<Duplex> => transport.connect(at, { timeoutMs: 1000, peer: 'the secondary' });
      const first = await dial();
      await until(() => s.connected, 'attached');
      const second = await dial();
      await once(second, 'close');
      assert.ok(s.connected, 'the first primary keeps the link');
      const closed = once(s, 'close');
      // A length far beyond colo-compare's 69,632-byte record bound.
      first.write(Buffer.concat([encodeFrame(frame('ok')), Buffer.from([0x7f, 0xff, 0xff, 0xff])]));
      await closed;
      assert.equal(toGuest.length, 1, 'the good frame before the bad length was delivered');
      assert.equal(s.connected, false);
      first.destroy();
    } finally {
      await s.stop();
    }
  });

  const transports: [string, () => Transport][] = [
    ['in memory', () => new MemoryTransport()],
    ['over loopback TCP', () => tcpTransport],
  ];
  for (const [over, makeTransport] of transports) {
    test(`a secondary that stops reading congests the primary, which hears when it drains (${over})`, async () => {
      const transport = makeTransport();
      // A raw peer in the secondary's place that reads nothing until told to.
      let peer: Duplex | undefined;
      const server = await transport.listen(
        LOOPBACK,
        (sock) => {
          peer = sock;
          sock.pause();
        },
        { purpose: 'a raw secondary' },
      );
      const link = new NetLinkPrimary({ transport, secondary: server.address, toComparator: () => {} });
      await link.start();
      try {
        await until(() => peer !== undefined, 'accepted');
        const events: string[] = [];
        link.on('congested', () => events.push('congested'));
        link.on('drain', () => events.push('drain'));
        const big = 60_000;
        let sent = 0;
        while (!link.congested && sent < 4000) {
          link.send(frame(`big ${sent}`, big));
          sent++;
          if (sent % 16 === 0) await tick();
        }
        await tick();
        assert.ok(link.congested, `congested after ${sent} frames of ${big} bytes`);
        assert.deepEqual(events, ['congested']);
        // Congestion is reported once the queue passes the bound, not long after.
        assert.ok(sent * big < CONGESTED_BYTES + 64 * 1024 * 1024, `${sent} frames before congestion`);
        const decoder = new FrameDecoder();
        const got: string[] = [];
        peer!.on('data', (d: Buffer) => {
          for (const f of decoder.push(d)) got.push(tagOf(f.data));
        });
        peer!.resume();
        await until(() => events.length === 2, 'drain');
        assert.deepEqual(events, ['congested', 'drain']);
        assert.equal(link.congested, false);
        await until(() => got.length === sent, 'every frame');
        assert.deepEqual(got.slice(0, 3), ['big 0', 'big 1', 'big 2']);
        assert.equal(got.at(-1), `big ${sent - 1}`);
      } finally {
        link.stop();
        peer?.destroy();
        await server.close();
      }
    });

    test(`a secondary whose output is not taken stops taking frames, and goes on when it is (${over})`, async () => {
      const transport = makeTransport();
      // The guest answers its first frames with large ones; the raw primary reads none of them for a while.
      let delivered = 0;
      const link: NetLinkSecondary = new NetLinkSecondary({
        transport,
        listen: LOOPBACK,
        toGuest: () => {
          delivered++;
          link.send(frame(`out ${delivered}`, delivered <= 1000 ? 60_000 : 100));
        },
      });
      const at = await link.start();
      // The link pauses its socket in its own 'congested' listener, registered first: this one sees what it took by then.
      let atCongestion: number | undefined;
      link.on('congested', () => (atCongestion ??= delivered));
      const primary = await transport.connect(at, { timeoutMs: 2000, peer: 'the secondary' });
      primary.pause();
      try {
        // More than one poll round can read (below): the bound checked is then not met by reading everything.
        const total = 60_000;
        const req = encodeFrame(frame('req', 100));
        let written = 0;
        const pump = async (): Promise<void> => {
          while (written < total) {
            if (!primary.write(req)) await once(primary, 'drain');
            written++;
          }
        };
        const pumping = pump();
        await until(() => atCongestion !== undefined, 'congestion');
        assert.equal(link.framesReceived, atCongestion, 'every frame taken went to the guest');
        // Congestion is judged when the turn's frames leave (setImmediate, after the poll phase), so the reader stops
        // within the poll round that passed the 1,000th frame: libuv reads a ready socket up to 32 times (64 KiB each)
        // per round. On an idle machine it is the one chunk being read; on a loaded one the kernel may hold all of it.
        assert.ok(atCongestion! < 1000 + (32 * 65536) / 104, `${atCongestion} of ${total} taken before it stopped`);
        // This sleep proves an absence, which no event can: frames keep coming (the pump is
        // still writing, or the kernel holds what it wrote), and none is taken while the output waits.
        await sleep(200);
        assert.ok(link.congested, 'still congested: the raw primary reads nothing');
        assert.equal(delivered, atCongestion, 'no frame taken while the output waits');
        const decoder = new FrameDecoder();
        let back = 0;
        primary.on('data', (d: Buffer) => (back += decoder.push(d).length));
        primary.resume();
        await pumping;
        await until(() => back === total, 'every request answered', 20_000);
        assert.equal(delivered, total);
      } finally {
        primary.destroy();
        await link.stop();
      }
    });
  }
});
