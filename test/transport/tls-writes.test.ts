/**
 * Record-sized writes into TLS: how batches are cut, and that what a
 * corked batch of strings, small and large Buffers says reaches the peer
 * whole and in order over a real mutual-TLS connection, with every write's
 * callback called once, in order.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import type { Duplex } from 'node:stream';
import { describe, test } from 'node:test';
import { TLS_RECORD_BYTES, split } from '../../src/transport/tls-writes.js';
import { tlsFor } from '../helpers/tls.js';

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

describe('record-sized TLS writes', () => {
  test('a batch is cut into pieces of at most one record, in order, large chunks as views', () => {
    const big = randomBytes(3 * TLS_RECORD_BYTES + 100);
    const small = Array.from({ length: 40 }, (_, i) => Buffer.alloc(1000, i));
    const chunks = [Buffer.from('head'), ...small, big, Buffer.from('tail')];
    const pieces = split(chunks);
    assert.ok(pieces.every((p) => p.length > 0 && p.length <= TLS_RECORD_BYTES));
    assert.deepEqual(Buffer.concat(pieces), Buffer.concat(chunks));
    // All but the last piece are full: no record is sent half empty in the middle of a batch.
    assert.ok(pieces.slice(0, -1).every((p) => p.length === TLS_RECORD_BYTES));
    // A piece wholly inside one large chunk is that chunk's memory, not a copy.
    const inside = pieces.find((p) => p.buffer === big.buffer && p.length === TLS_RECORD_BYTES);
    assert.ok(inside !== undefined, 'a full record cut out of the large chunk without copying');
    assert.deepEqual(split([]), []);
    assert.deepEqual(split([Buffer.alloc(0)]), []);
  });

  test('a corked batch of strings and buffers reaches the peer whole; callbacks once each, in order', async () => {
    const server = await tlsFor('secondary');
    const received: Buffer[] = [];
    let accepted: Duplex | undefined;
    let onEnd!: () => void;
    const ended = new Promise<void>((resolve) => (onEnd = resolve));
    const listener = await server.listen(
      { host: '127.0.0.1', port: 0 },
      (s) => {
        accepted = s;
        s.on('data', (d: Buffer) => received.push(d));
        s.on('end', onEnd);
      },
      { purpose: 'the test', allowHalfOpen: true },
    );
    const stream = await (await tlsFor('primary')).connect({ host: '127.0.0.1', port: listener.address.port }, { timeoutMs: 5000, peer: 'the test' });
    stream.on('data', () => {});

    const parts: (Buffer | string)[] = ['über ', randomBytes(5), randomBytes(5 * TLS_RECORD_BYTES + 7), 'mid', ...Array.from({ length: 300 }, () => randomBytes(4096)), randomBytes(2 * 2 ** 20)];
    const calls: number[] = [];
    stream.cork();
    parts.forEach((p, i) => stream.write(p, () => calls.push(i)));
    stream.uncork();
    // One more, on its own: a single large write is cut as well.
    const last = randomBytes(TLS_RECORD_BYTES * 4 + 1);
    await new Promise<void>((resolve) => stream.write(last, () => resolve()));
    stream.end();
    await ended;
    const expected = Buffer.concat([...parts.map((p) => (typeof p === 'string' ? Buffer.from(p) : p)), last]);
    assert.equal(sha(Buffer.concat(received)), sha(expected));
    assert.deepEqual(calls, parts.map((_, i) => i), 'each callback once, in order, before the next write completed');
    stream.destroy();
    accepted?.destroy();
    await listener.close();
  });
});
