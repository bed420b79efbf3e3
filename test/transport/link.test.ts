/** The primary's link over an in-memory transport: COLO handshake records taken in order by type, bounded; acks and refusals. */
import assert from 'node:assert/strict';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, test } from 'node:test';
import { CheckpointError, EpochRefusedError } from '../../src/checkpoint/errors.js';
import { AckStatus, encodeBackRecord, type BackChannelRecord } from '../../src/transport/backchannel.js';
import { TransportError } from '../../src/transport/errors.js';
import { ReplicationLink } from '../../src/transport/link.js';
import { tcpTransport } from '../../src/transport/tcp.js';
import { MemoryTransport } from '../helpers/memory-transport.js';

/** A secondary stand-in that answers every connection by writing `records`. */
async function secondary(records: BackChannelRecord[]): Promise<{ transport: MemoryTransport; port: number; streams: Duplex[] }> {
  const transport = new MemoryTransport();
  const streams: Duplex[] = [];
  const listener = await transport.listen(
    { host: '127.0.0.1', port: 0 },
    (s) => {
      streams.push(s);
      s.on('data', () => {});
      s.write(Buffer.concat(records.map(encodeBackRecord)));
    },
    { purpose: 'test' },
  );
  return { transport, port: listener.address.port, streams };
}

const linkTo = (transport: MemoryTransport, port: number, ackTimeoutMs = 2000): ReplicationLink =>
  new ReplicationLink({ transport, secondary: { host: '127.0.0.1', port }, connectTimeoutMs: 2000, ackTimeoutMs });

/** A real TCP peer that never answers: it reads what it is sent, or (hung) reads nothing. */
async function mutePeer(reads: boolean): Promise<{ port: number; close: () => void }> {
  const sockets: Socket[] = [];
  const server = createServer((s) => {
    sockets.push(s);
    s.on('error', () => {});
    if (reads) s.resume();
    else s.pause();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    close: () => {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}

describe('ReplicationLink', () => {
  test('before the first ack (a pre-copy) a secondary that takes the stream is not silent; one that stops taking it falls silent', async () => {
    const chunk = Buffer.alloc(256 * 1024);
    for (const reads of [true, false]) {
      const peer = await mutePeer(reads);
      const link = new ReplicationLink({ transport: tcpTransport, secondary: { host: '127.0.0.1', port: peer.port }, connectTimeoutMs: 2000, ackTimeoutMs: 2000 });
      await link.start();
      // A pre-copy's pace: a batch every 20 ms for 1.5 s, never waiting for the peer (a hung one would block write()).
      let silentAtEnd = 0;
      for (let i = 0; i < 75; i++) {
        void link.write([chunk]).catch(() => {});
        await sleep(20);
        silentAtEnd = link.silentMs;
      }
      if (reads) assert.ok(silentAtEnd < 200, `a secondary taking every byte counted as silent for ${silentAtEnd.toFixed(0)} ms`);
      // 19 MiB offered: more than loopback's socket buffers hold, so the writes stopped leaving a while ago.
      else assert.ok(silentAtEnd >= 300, `a secondary that reads nothing counted as silent for only ${silentAtEnd.toFixed(0)} ms`);
      link.destroy();
      peer.close();
    }
  });

  test('handshake records are taken by type in arrival order; the others stay queued', async () => {
    const { transport, port } = await secondary([
      { type: 'CHECKPOINT_STATE', controlId: 1 },
      { type: 'CHECKPOINT_DIRTY_PFN_LIST', pfns: Uint32Array.from([7, 3]) },
      { type: 'CHECKPOINT_STATE', controlId: 2 },
    ]);
    const link = linkTo(transport, port);
    await link.start();
    const list = await link.nextRecord('CHECKPOINT_DIRTY_PFN_LIST', 2000);
    assert.deepEqual([...list.pfns], [7, 3]);
    assert.equal((await link.nextRecord('CHECKPOINT_STATE', 2000)).controlId, 1);
    assert.equal((await link.nextRecord('CHECKPOINT_STATE', 2000)).controlId, 2);
    await assert.rejects(link.nextRecord('CHECKPOINT_STATE', 50), (e: unknown) => e instanceof CheckpointError && e.code === 'ERR_ACK_TIMEOUT' && /no CHECKPOINT_STATE from the secondary within 50 ms/.test(e.message));
    link.destroy();
  });

  test('a secondary flooding the back-channel with handshakes nobody asked for loses its link', async () => {
    const { transport, port } = await secondary(Array.from({ length: 65 }, () => ({ type: 'CHECKPOINT_STATE', controlId: 3 }) as const));
    const link = linkTo(transport, port);
    const closed = new Promise<Error>((resolve) => (link.onClose = resolve));
    await link.start();
    const err = await closed;
    assert.match(err.message, /more than 64 handshake records/);
    await assert.rejects(link.nextRecord('CHECKPOINT_DIRTY_PFN_LIST', 1000), (e: unknown) => e instanceof TransportError && e.code === 'ERR_LINK_FAILED');
  });

  test('held(): an APPLIED ack holds the epoch; a refusal is an EpochRefusedError with its status; silence is an ACK_TIMEOUT', async () => {
    const { transport, port, streams } = await secondary([]);
    const link = linkTo(transport, port, 100);
    await link.start();
    const ack = (rec: BackChannelRecord): boolean => streams[0].write(encodeBackRecord(rec));
    const first = link.held(1);
    ack({ type: 'ACK', epoch: 1, status: AckStatus.APPLIED, reason: '' });
    await first;
    const second = link.held(2);
    ack({ type: 'ACK', epoch: 2, status: AckStatus.OVER_BUFFER_LIMIT, reason: 'epoch 2 needs more than the buffer' });
    await assert.rejects(second, (e: unknown) => e instanceof EpochRefusedError && e.code === 'ERR_EPOCH_REFUSED' && e.epoch === 2 && e.status === AckStatus.OVER_BUFFER_LIMIT && /refused epoch 2: epoch 2 needs more/.test(e.message));
    await assert.rejects(link.held(3), (e: unknown) => e instanceof CheckpointError && e.code === 'ERR_ACK_TIMEOUT');
    link.destroy();
  });

  test('a secondary that is not there: the connect failure names it, with a stable code', async () => {
    const link = linkTo(new MemoryTransport(), 7700);
    await assert.rejects(link.start(), (e: unknown) => e instanceof TransportError && e.code === 'ERR_TRANSPORT_CONNECT_FAILED' && /the secondary at 127.0.0.1:7700/.test(e.message));
  });

  test('the secondary closing the link fails what waits on it, once, as LINK_FAILED', async () => {
    const { transport, port, streams } = await secondary([]);
    const link = linkTo(transport, port, 5000);
    const closes: Error[] = [];
    link.onClose = (e) => closes.push(e);
    await link.start();
    const waiting = link.held(1);
    streams[0].destroy();
    await assert.rejects(waiting, (e: unknown) => e instanceof TransportError && e.code === 'ERR_LINK_FAILED' && /closed by the secondary/.test(e.message));
    await assert.rejects(link.write([Buffer.from('x')]), (e: unknown) => e instanceof TransportError && e.code === 'ERR_LINK_FAILED');
    assert.equal(closes.length, 1);
  });
});
