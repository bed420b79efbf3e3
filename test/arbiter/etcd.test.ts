/**
 * The etcd gateway client: what it makes of answers that are not etcd's
 * (from a local HTTP server playing a broken or hostile endpoint), and how it
 * moves between endpoints, against a real etcd.
 */
import assert from 'node:assert/strict';
import { createServer, type Server, type ServerResponse } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { EtcdClient } from '../../src/arbiter/etcd.js';
import { ErrorCodes } from '../../src/errors.js';
import type { Address } from '../../src/util/address.js';
import { freePort, startEtcd, type EtcdCluster } from '../helpers/etcd.js';

let etcd: EtcdCluster;
before(async () => {
  etcd = await startEtcd(1);
});
after(() => etcd.stop());

/** An HTTP server answering every request with `answer`. */
async function fakeEndpoint(answer: (res: ServerResponse) => void): Promise<{ address: Address; server: Server }> {
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => answer(res));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { address: { host: '127.0.0.1', port: (server.address() as { port: number }).port }, server };
}

async function refusedWith(answer: (res: ServerResponse) => void, call: (c: EtcdClient) => Promise<unknown>, code: string, message: RegExp): Promise<void> {
  const { address, server } = await fakeEndpoint(answer);
  const client = new EtcdClient({ endpoints: [address], timeoutMs: 500, maxResponseBytes: 4096 });
  try {
    await assert.rejects(call(client), (err: Error & { code?: string }) => {
      assert.equal(err.code, code, err.message);
      assert.match(err.message, message);
      return true;
    });
  } finally {
    client.close();
    server.closeAllConnections();
    server.close();
  }
}

const json = (status: number, body: unknown) => (res: ServerResponse) => {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(typeof body === 'string' ? body : JSON.stringify(body));
};

describe('EtcdClient', () => {
  test('puts, reads and compares-and-swaps through the real gateway', async () => {
    const c = new EtcdClient({ endpoints: etcd.endpoints, timeoutMs: 1000 });
    try {
      assert.equal(await c.get('/client-test/a'), undefined);
      const put = await c.txn([{ key: '/client-test/a', target: 'CREATE', createRevision: 0 }], [{ put: { key: '/client-test/a', value: Buffer.from([0, 1, 255]) } }], [{ range: { key: '/client-test/a' } }]);
      assert.equal(put.succeeded, true);
      const kv = await c.get('/client-test/a');
      assert.ok(kv !== undefined);
      assert.deepEqual([...kv.value], [0, 1, 255]);
      assert.equal(kv.key, '/client-test/a');
      assert.ok(kv.createRevision > 0 && kv.modRevision === kv.createRevision && kv.version === 1);
      // The same create-if-absent again fails, and the failure branch reads what is there.
      const again = await c.txn([{ key: '/client-test/a', target: 'CREATE', createRevision: 0 }], [{ put: { key: '/client-test/a', value: Buffer.from('x') } }], [{ range: { key: '/client-test/a' } }]);
      assert.equal(again.succeeded, false);
      assert.deepEqual(again.ranges[0]?.value, Buffer.from([0, 1, 255]));
      // Leases: IDs pass 2^53 and are kept as text; a revoked lease renews to 0.
      const lease = await c.grant(1);
      assert.match(lease.id, /^\d+$/);
      assert.ok(lease.ttlS >= 1);
      assert.ok((await c.keepAlive(lease.id)) >= 1);
      await c.revoke(lease.id);
      assert.equal(await c.keepAlive(lease.id), 0);
      await c.revoke(lease.id); // already gone: not an error
    } finally {
      c.close();
    }
  });

  test('an endpoint that is down hands the request to the next, which is used from then on', async () => {
    const dead = { host: '127.0.0.1', port: await freePort() };
    const c = new EtcdClient({ endpoints: [dead, etcd.endpoints[0]], timeoutMs: 1000 });
    try {
      assert.equal(await c.get('/client-test/none'), undefined);
      assert.equal(c.endpoint, `127.0.0.1:${etcd.endpoints[0].port}`);
    } finally {
      c.close();
    }
  });

  test('no endpoint answering is ERR_ARBITER_UNREACHABLE, naming each and why', async () => {
    const a = { host: '127.0.0.1', port: await freePort() };
    const silent = await fakeEndpoint(() => {}); // accepts, never answers
    const c = new EtcdClient({ endpoints: [a, silent.address], timeoutMs: 200 });
    try {
      await assert.rejects(c.get('/x'), (err: Error & { code?: string }) => {
        assert.equal(err.code, ErrorCodes.ARBITER_UNREACHABLE);
        assert.match(err.message, new RegExp(`127\\.0\\.0\\.1:${a.port}: connect ECONNREFUSED`));
        assert.match(err.message, new RegExp(`127\\.0\\.0\\.1:${silent.address.port}: no answer in 200 ms`));
        return true;
      });
    } finally {
      c.close();
      silent.server.closeAllConnections();
      silent.server.close();
    }
  });

  describe('answers that are not etcd\'s are refused, typed and named', () => {
    test('not JSON', () => refusedWith(json(200, '<html>'), (c) => c.get('/x'), ErrorCodes.ARBITER_BAD_RESPONSE, /bad answer from etcd: \/v3\/kv\/range: not JSON \(HTTP 200\)/));
    test('over the size bound, declared', () =>
      refusedWith((res) => {
        const body = JSON.stringify({ pad: 'x'.repeat(10_000) });
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length });
        res.end(body);
      }, (c) => c.get('/x'), ErrorCodes.ARBITER_BAD_RESPONSE, /bad answer from etcd: \d+ bytes \(the bound is 4096\)/));
    test('over the size bound, streamed without a length', () =>
      refusedWith(
        (res) => {
          res.writeHead(200, { 'content-type': 'application/json' });
          for (let i = 0; i < 10; i++) res.write('x'.repeat(1000));
          res.end();
        },
        (c) => c.get('/x'),
        ErrorCodes.ARBITER_BAD_RESPONSE,
        /bad answer from etcd: over 4096 bytes/,
      ));
    test('two keys for one', () => refusedWith(json(200, { kvs: [{ key: 'YQ==' }, { key: 'Yg==' }] }), (c) => c.get('/x'), ErrorCodes.ARBITER_BAD_RESPONSE, /2 keys for one/));
    test('a revision that is not an integer', () =>
      refusedWith(json(200, { kvs: [{ key: 'YQ==', mod_revision: '1e9' }] }), (c) => c.get('/x'), ErrorCodes.ARBITER_BAD_RESPONSE, /mod_revision: "1e9" is not an integer/));
    test('a revision past 2^53', () =>
      refusedWith(json(200, { kvs: [{ key: 'YQ==', create_revision: '9007199254740993' }] }), (c) => c.get('/x'), ErrorCodes.ARBITER_BAD_RESPONSE, /create_revision: 9007199254740993 is out of range/));
    test('a value that is not base64', () => refusedWith(json(200, { kvs: [{ key: 'YQ==', value: '***' }] }), (c) => c.get('/x'), ErrorCodes.ARBITER_BAD_RESPONSE, /value: not base64/));
    test('a lease ID past int64', () => refusedWith(json(200, { ID: '99999999999999999999', TTL: '2' }), (c) => c.grant(2), ErrorCodes.ARBITER_BAD_RESPONSE, /is not an int64/));
    test('a grant without a lease', () => refusedWith(json(200, { TTL: '2' }), (c) => c.grant(2), ErrorCodes.ARBITER_BAD_RESPONSE, /no lease/));
    test('a txn answering fewer operations than it ran', () =>
      refusedWith(json(200, { succeeded: true, responses: [] }), (c) => c.txn([], [{ range: { key: '/a' } }], []), ErrorCodes.ARBITER_BAD_RESPONSE, /0 responses to 1 operations/));
    test('an error status is ERR_ARBITER_REFUSED with etcd\'s message', () =>
      refusedWith(json(400, { error: 'bad', message: 'etcdserver: key is not provided', code: 3 }), (c) => c.get('/x'), ErrorCodes.ARBITER_REFUSED, /HTTP 400: etcdserver: key is not provided/));
  });

  test('bad options are refused', () => {
    assert.throws(() => new EtcdClient({ endpoints: [], timeoutMs: 100 }).validate(), /etcd endpoints: expected 1..16, got 0/);
    assert.throws(() => new EtcdClient({ endpoints: etcd.endpoints, timeoutMs: 0 }).validate(), /etcd request timeout: expected 1..60000 ms, got 0/);
  });
});
