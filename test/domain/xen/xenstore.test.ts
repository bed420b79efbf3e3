/**
 * The xenstore client's own logic: request/reply matching by req_id, watch
 * delivery between replies, ERROR replies, transactions, timeouts, bounds,
 * and the connection ending.
 *
 * LABEL: these run against FakeXenstored below, a small in-test server that
 * speaks the wire protocol through the same codec (so this is a codec
 * round-trip test of the client's framing, matching and watch delivery). It
 * is NOT xenstored: its store, watch and transaction semantics are the
 * minimum these tests need. The real xenstored is exercised in the Xen lab.
 */
import assert from 'node:assert/strict';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { XenstoreError, XenstoreReplyError } from '../../../src/domain/xen/errors.js';
import { XsType, encodeMessage } from '../../../src/domain/xen/xenstore-wire.js';
import { XenstoreClient } from '../../../src/domain/xen/xenstore.js';
import { FakeXenstored } from './fake-xenstored.js';

async function setup(options: ConstructorParameters<typeof XenstoreClient>[1] = {}): Promise<{ xs: FakeXenstored; client: XenstoreClient }> {
  const xs = new FakeXenstored();
  await xs.start();
  const client = await XenstoreClient.connect(xs.path, options);
  after(async () => {
    client.close();
    await xs.stop();
  });
  return { xs, client };
}

const until = async (cond: () => boolean, what: string, ms = 2000): Promise<void> => {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
};

async function rejection(p: Promise<unknown>): Promise<XenstoreError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof XenstoreError, `expected XenstoreError, got ${String(err)}`);
    return err;
  }
  assert.fail('expected a rejection');
}

describe('xenstore client (against an in-test fake server: codec round trip, not xenstored)', () => {
  test('writes and reads a node; a missing node is ERR_XENSTORE_NOENT carrying the errno name', async () => {
    const { xs, client } = await setup();
    await client.write('/local/domain/5/control/shutdown', 'suspend');
    assert.deepEqual(await client.read('/local/domain/5/control/shutdown'), Buffer.from('suspend'));
    assert.deepEqual(xs.store.get('/local/domain/5/control/shutdown'), Buffer.from('suspend'));
    const err = await rejection(client.read('/local/domain/5/nothing'));
    assert.ok(err instanceof XenstoreReplyError);
    assert.equal(err.code, 'ERR_XENSTORE_NOENT');
    assert.equal(err.errno, 'ENOENT');
    assert.match(err.message, /READ \/local\/domain\/5\/nothing: ENOENT/);
    // Other errno names keep their name under the generic code.
    xs.refuse.set('/local/domain/0/secret', 'EACCES');
    const other = await rejection(client.read('/local/domain/0/secret'));
    assert.ok(other instanceof XenstoreReplyError);
    assert.equal(other.code, 'ERR_XENSTORE_REPLY_ERROR');
    assert.equal(other.errno, 'EACCES');
    assert.equal(client.inFlight, 0);
  });

  test('replies answered out of order reach the request with their req_id; watch events between them reach the watch', async () => {
    const { xs, client } = await setup();
    for (const [p, v] of [
      ['/a', 'one'],
      ['/b', 'two'],
      ['/c', 'three'],
    ]) xs.store.set(p, Buffer.from(v));
    const events: string[] = [];
    await client.watch('/local/domain/5/control', (e) => events.push(e.path));
    await until(() => events.length === 1, 'the first fire');
    assert.deepEqual(events, ['/local/domain/5/control']);

    xs.hold = true;
    const reads = ['/a', '/b', '/c'].map((p) => client.read(p));
    await until(() => xs.held.length === 3, 'three held requests');
    const ids = xs.held.map((h) => h.msg.reqId);
    assert.equal(new Set(ids).size, 3, 'distinct req_ids');
    assert.ok(!ids.includes(0), 'req_id 0 is what a WATCH_EVENT carries; requests never use it');
    // Reverse order, a watch event before each reply, all in one write.
    const conn = xs.held[0].conn;
    const held = xs.held.splice(0).reverse();
    const bytes: Buffer[] = [];
    const token = xs.requests.find((r) => r.type === XsType.WATCH)!.payload.toString('latin1').split('\0')[1];
    for (const [i, h] of held.entries()) {
      bytes.push(encodeMessage(XsType.WATCH_EVENT, 0, 0, Buffer.from(`/local/domain/5/control/shutdown-${i}\0${token}\0`)));
      const path = h.msg.payload.toString('latin1').split('\0')[0];
      bytes.push(encodeMessage(XsType.READ, h.msg.reqId, 0, xs.store.get(path)!));
    }
    const all = Buffer.concat(bytes);
    // Split at an odd offset so messages also straddle chunks.
    conn.write(all.subarray(0, 37));
    conn.write(all.subarray(37));
    assert.deepEqual((await Promise.all(reads)).map(String), ['one', 'two', 'three']);
    assert.deepEqual(events.slice(1), ['/local/domain/5/control/shutdown-0', '/local/domain/5/control/shutdown-1', '/local/domain/5/control/shutdown-2']);
  });

  test('a watch gets its first fire and every change under it; after unwatch, nothing, even events already on their way', async () => {
    const { xs, client } = await setup();
    const seen: string[] = [];
    const w = await client.watch('/local/domain/7', (e) => seen.push(e.path));
    const other: string[] = [];
    await client.watch('@releaseDomain', (e) => other.push(e.path));
    await client.write('/local/domain/7/control/shutdown', 'suspend');
    await client.write('/local/domain/8/name', 'x');
    await until(() => seen.length === 2, 'the change');
    assert.deepEqual(seen, ['/local/domain/7', '/local/domain/7/control/shutdown']);
    assert.deepEqual(other, ['@releaseDomain']);
    await w.unwatch();
    // An event for the old token arriving after UNWATCH (xenstored may have queued it) is dropped.
    xs.send([...xs.conns][0], XsType.WATCH_EVENT, 0, 0, `/local/domain/7/x\0${w.token}\0`);
    await client.write('/local/domain/7/control/shutdown', '');
    assert.deepEqual(seen.length, 2);
    await w.unwatch(); // twice is harmless
  });

  test('a throwing watch handler is reported on watch-error and the client carries on', async () => {
    const { client } = await setup();
    const errors: unknown[] = [];
    client.on('watch-error', (err) => errors.push(err));
    await client.watch('/x', () => {
      throw new Error('handler bug');
    });
    await until(() => errors.length === 1, 'the watch-error');
    await client.write('/x', '1');
    assert.deepEqual(await client.read('/x'), Buffer.from('1'));
  });

  test('transactions: reads and writes carry the tx_id; a commit answered EAGAIN is ERR_XENSTORE_AGAIN, and transaction() starts over', async () => {
    const { xs, client } = await setup();
    const tx = await client.transactionStart();
    await client.write('/t/a', '1', { tx });
    assert.deepEqual(await client.read('/t/a', { tx }), Buffer.from('1'));
    assert.equal(xs.store.has('/t/a'), false, 'not visible before the commit');
    xs.conflicts = 1;
    const err = await rejection(client.transactionEnd(tx, true));
    assert.equal(err.code, 'ERR_XENSTORE_AGAIN');
    assert.equal((err as XenstoreReplyError).errno, 'EAGAIN');

    xs.conflicts = 2;
    let runs = 0;
    const result = await client.transaction(async (t) => {
      runs++;
      await client.write('/t/b', `run ${runs}`, { tx: t });
      return runs;
    });
    assert.equal(result, 3);
    assert.deepEqual(xs.store.get('/t/b'), Buffer.from('run 3'));

    xs.conflicts = 5;
    const gaveUp = await rejection(client.transaction(() => Promise.resolve(0), { attempts: 2 }));
    assert.equal(gaveUp.code, 'ERR_XENSTORE_AGAIN');
    xs.conflicts = 0;

    const before = xs.requests.length;
    await assert.rejects(
      client.transaction(async (t) => {
        await client.write('/t/c', 'x', { tx: t });
        throw new Error('body failed');
      }),
      /body failed/,
    );
    const end = xs.requests.slice(before).find((r) => r.type === XsType.TRANSACTION_END)!;
    assert.equal(end.payload.toString('latin1'), 'F\0', 'abandoned, not committed');
    assert.equal(xs.store.has('/t/c'), false);
  });

  test('a request times out (ERR_XENSTORE_TIMEOUT); its late reply is dropped, never matched to another request', async () => {
    const { xs, client } = await setup();
    xs.store.set('/slow', Buffer.from('late'));
    xs.store.set('/fast', Buffer.from('fast'));
    xs.hold = true;
    const err = await rejection(client.read('/slow', { timeoutMs: 30 }));
    assert.equal(err.code, 'ERR_XENSTORE_TIMEOUT');
    assert.equal(client.inFlight, 1, 'its req_id stays taken until the reply comes');
    const fast = client.read('/fast');
    await until(() => xs.held.length === 2, 'both held');
    xs.release((h) => h); // the late reply first
    assert.deepEqual(await fast, Buffer.from('fast'));
    assert.equal(client.inFlight, 0);

    // A TRANSACTION_START that timed out: when its id comes, the transaction is abandoned.
    const txErr = await rejection(client.transactionStart({ timeoutMs: 30 }));
    assert.equal(txErr.code, 'ERR_XENSTORE_TIMEOUT');
    xs.hold = false;
    xs.release();
    await until(() => xs.requests.some((r) => r.type === XsType.TRANSACTION_END), 'the abandoning TRANSACTION_END');
    const end = xs.requests.find((r) => r.type === XsType.TRANSACTION_END)!;
    assert.equal(end.payload.toString('latin1'), 'F\0');
    assert.equal(end.txId, 42);
  });

  test('bounded: more than maxPending requests in flight, or maxWatches watches, are refused (ERR_XENSTORE_QUEUE_FULL)', async () => {
    const { xs, client } = await setup({ maxPending: 2, maxWatches: 1 });
    xs.store.set('/a', Buffer.from('a'));
    xs.hold = true;
    const first = [client.read('/a'), client.read('/a')];
    const err = await rejection(client.read('/a'));
    assert.equal(err.code, 'ERR_XENSTORE_QUEUE_FULL');
    await until(() => xs.held.length === 2, 'two held');
    assert.equal(xs.requests.length, 2, 'the refused request was never sent');
    xs.hold = false;
    xs.release();
    await Promise.all(first);
    await client.watch('/w', () => undefined);
    assert.equal((await rejection(client.watch('/v', () => undefined))).code, 'ERR_XENSTORE_QUEUE_FULL');
  });

  test('bad requests are refused before anything is sent', async () => {
    const { xs, client } = await setup();
    assert.equal((await rejection(client.read('/a/../b'))).code, 'ERR_XENSTORE_BAD_REQUEST');
    assert.equal((await rejection(client.write('/a\0b', 'x'))).code, 'ERR_XENSTORE_BAD_REQUEST');
    assert.equal((await rejection(client.write('/a', Buffer.alloc(4096)))).code, 'ERR_XENSTORE_TOO_LARGE');
    assert.equal((await rejection(client.watch('relative', () => undefined))).code, 'ERR_XENSTORE_BAD_REQUEST');
    assert.equal((await rejection(client.resume(0x8000))).code, 'ERR_XENSTORE_BAD_REQUEST');
    assert.equal((await rejection(client.read('/a', { timeoutMs: 0 }))).code, 'ERR_XENSTORE_BAD_OPTIONS');
    assert.equal(xs.requests.length, 0);
    assert.equal(client.inFlight, 0);
    await client.resume(5);
    assert.equal(xs.requests[0].type, XsType.RESUME);
    assert.equal(xs.requests[0].payload.toString('latin1'), '5\0');
  });

  test('xenstored going away (a restart) fails every request in flight with ERR_XENSTORE_CLOSED and emits close once; later requests fail at once', async () => {
    const { xs, client } = await setup();
    const closes: XenstoreError[] = [];
    client.on('close', (e) => closes.push(e));
    const events: string[] = [];
    await client.watch('/w', (e) => events.push(e.path));
    xs.hold = true;
    const inFlight = [client.read('/a'), client.write('/b', 'x'), client.transactionStart()];
    await until(() => xs.held.length === 3, 'three held');
    for (const c of xs.conns) c.destroy();
    const errors = await Promise.all(inFlight.map((p) => rejection(p)));
    assert.deepEqual(
      errors.map((e) => e.code),
      ['ERR_XENSTORE_CLOSED', 'ERR_XENSTORE_CLOSED', 'ERR_XENSTORE_CLOSED'],
    );
    assert.match(errors[0].message, /READ \/a: connection to xenstored closed/);
    await until(() => closes.length === 1, 'close');
    assert.equal(closes[0].code, 'ERR_XENSTORE_CLOSED');
    assert.equal(client.closed, closes[0]);
    const later = await rejection(client.read('/a'));
    assert.equal(later.code, 'ERR_XENSTORE_CLOSED');
    assert.equal(later.cause, closes[0]);
    assert.equal(closes.length, 1);
  });

  for (const [name, bytes, causeCode] of [
    ['a header announcing 34816 bytes', encodeMessage(XsType.READ, 1, 0, Buffer.alloc(0)).fill(0x88, 13, 14), 'ERR_XENSTORE_TOO_LARGE'],
    ['an unknown type', encodeMessage(XsType.READ, 1, 0, Buffer.alloc(0)).fill(0x63, 0, 1), 'ERR_XENSTORE_BAD_MESSAGE'],
    ['a reply to a req_id never sent', encodeMessage(XsType.READ, 999, 0, Buffer.from('x')), 'ERR_XENSTORE_BAD_MESSAGE'],
    ['a malformed watch event', encodeMessage(XsType.WATCH_EVENT, 0, 0, Buffer.from('no-nul')), 'ERR_XENSTORE_BAD_MESSAGE'],
    ['a reply of the wrong type', encodeMessage(XsType.WRITE, 1, 0, Buffer.from('OK\0')), 'ERR_XENSTORE_BAD_MESSAGE'],
  ] as const) {
    test(`a protocol error from the daemon (${name}) drops the connection with a typed cause, never a crash`, async () => {
      const { xs, client } = await setup();
      const closes: XenstoreError[] = [];
      client.on('close', (e) => closes.push(e));
      xs.hold = true;
      const pending = client.read('/a');
      await until(() => xs.held.length === 1, 'held');
      assert.equal(xs.held[0].msg.reqId, 1);
      xs.held[0].conn.write(bytes);
      const err = await rejection(pending);
      assert.equal(err.code, 'ERR_XENSTORE_CLOSED');
      assert.ok(err.cause instanceof XenstoreError);
      assert.equal(err.cause.code, 'ERR_XENSTORE_CLOSED');
      assert.ok(err.cause.cause instanceof XenstoreError);
      assert.equal(err.cause.cause.code, causeCode);
      await until(() => closes.length === 1, 'close');
      await until(() => xs.conns.size === 0, 'the socket closed');
    });
  }

  test('connecting to a socket nobody listens on is ERR_XENSTORE_CONNECT_FAILED with the socket error as cause', async () => {
    const err = await rejection(XenstoreClient.connect(join(tmpdir(), `tandem-nobody-${process.pid}.sock`)));
    assert.equal(err.code, 'ERR_XENSTORE_CONNECT_FAILED');
    assert.equal((err.cause as NodeJS.ErrnoException).code, 'ENOENT');
  });
});
