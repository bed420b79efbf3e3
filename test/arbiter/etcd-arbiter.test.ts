/**
 * The etcd arbiter against a real etcd: who may take a domain, when, and
 * that a node cut off from etcd stops releasing unreplicated output before
 * anybody else can take the domain over.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { EtcdArbiter } from '../../src/arbiter/etcd-arbiter.js';
import { EtcdClient } from '../../src/arbiter/etcd.js';
import { ErrorCodes } from '../../src/errors.js';
import type { Address } from '../../src/util/address.js';
import { CutProxy } from '../helpers/cut-proxy.js';
import { capturingLogger } from '../monitor/helpers.js';
import { startEtcd, type EtcdCluster } from '../helpers/etcd.js';
import { until } from '../helpers/wait.js';

/** The shortest lease the test etcd grants (its election timeout is 500 ms). */
const LEASE_MS = 1000;
const T = { timeout: 30_000 };

let etcd: EtcdCluster;
let domainSeq = 0;
const arbiters: EtcdArbiter[] = [];

before(async () => {
  etcd = await startEtcd(1);
});
after(async () => {
  await Promise.all(arbiters.map((a) => a.stop().catch(() => {})));
  await etcd.stop();
});

/** A fresh domain name per test, so tests share the etcd but nothing else. */
const freshDomain = (): string => `vm${++domainSeq}`;

function arbiter(node: string, domain: string, endpoints: Address[] = etcd.endpoints, timeoutMs = 300): EtcdArbiter {
  const a = new EtcdArbiter({ client: new EtcdClient({ endpoints, timeoutMs }), prefix: '/tandem-test', domain, node, leaseMs: LEASE_MS });
  arbiters.push(a);
  return a;
}

async function rejects(p: Promise<unknown>, code: string, message: RegExp): Promise<void> {
  await assert.rejects(p, (err: Error & { code?: string }) => {
    assert.equal(err.code, code, err.message);
    assert.match(err.message, message);
    return true;
  });
}

/** Runs `fn` with alpha's arbiter on a fresh domain, reaching etcd through a proxy the test can cut; the proxy is stopped after. */
async function viaCutProxy(fn: (proxy: CutProxy, domain: string, a: EtcdArbiter) => Promise<void>): Promise<void> {
  const domain = freshDomain();
  const proxy = new CutProxy(etcd.endpoints[0]);
  const via = await proxy.start();
  try {
    await fn(proxy, domain, arbiter('alpha', domain, [via]));
  } finally {
    await proxy.stop();
  }
}

describe('EtcdArbiter', () => {
  test('a first primary takes generation 1; another node is refused while it holds the domain', T, async () => {
    const domain = freshDomain();
    const a = arbiter('alpha', domain);
    assert.equal(a.valid(), false, 'no authority before the domain is taken');
    assert.equal(await a.acquire(), 1);
    assert.equal(a.valid(), true);
    assert.deepEqual(await a.holder(), { node: 'alpha', generation: 1, protected: false });
    const b = arbiter('beta', domain);
    await rejects(b.acquire(), ErrorCodes.ARBITER_HELD, /held by node alpha at generation 1/);
    await rejects(b.claim(1), ErrorCodes.ARBITER_HELD, /node alpha serves the domain unprotected at generation 1 and renews its lease/);
    // Renewals keep it: well past the lease, alpha still holds it.
    await new Promise((r) => setTimeout(r, 2.5 * LEASE_MS));
    assert.equal(a.valid(), true);
    assert.deepEqual(await b.holder(), { node: 'alpha', generation: 1, protected: false });
    assert.equal(b.valid(), false);
  });

  test('once the holder stops renewing, the secondary takes the next generation; the old holder is superseded and stale', T, async () => {
    const domain = freshDomain();
    const a = arbiter('alpha', domain);
    assert.equal(await a.acquire(), 1);
    // alpha's process dies (no release): its lease runs out by itself.
    await a.stop();
    const b = arbiter('beta', domain);
    await until(async () => {
      try {
        return (await b.claim(1)) === 2;
      } catch (err) {
        if ((err as { code?: string }).code !== ErrorCodes.ARBITER_HELD) throw err;
        return false;
      }
    }, 'the lease to run out', 5 * LEASE_MS, 100);
    assert.deepEqual(await b.holder(), { node: 'beta', generation: 2, protected: false });
    // alpha restarts while beta serves: refused.
    await rejects(arbiter('alpha', domain).acquire(), ErrorCodes.ARBITER_HELD, /held by node beta at generation 2/);
    // And after beta stopped too: beta ran last, so alpha's copy is old.
    await b.stop({ release: true });
    await rejects(arbiter('alpha', domain).acquire(), ErrorCodes.ARBITER_STALE, /last ran on node beta at generation 2: this node's copy of the guest is older/);
    assert.equal(await arbiter('gamma', domain).holder(), undefined, 'a refusal takes nothing');
  });

  test('a claim from a generation that is not the last one takes nothing', T, async () => {
    const domain = freshDomain();
    const a = arbiter('alpha', domain);
    await a.acquire();
    await a.stop({ release: true });
    const b = arbiter('beta', domain);
    await rejects(b.claim(7), ErrorCodes.ARBITER_STALE, /the domain is at generation 1 \(node alpha\), but this replica holds checkpoints of generation 7/);
    assert.equal(await b.holder(), undefined);
    assert.equal(b.valid(), false);
  });

  test('an orderly stop releases the domain at once; the same node restarting takes the next generation', T, async () => {
    const domain = freshDomain();
    const a = arbiter('alpha', domain);
    await a.acquire();
    await a.stop({ release: true });
    assert.equal(a.valid(), false);
    assert.equal(await arbiter('beta', domain).holder(), undefined, 'released, not left to run out');
    assert.equal(await arbiter('alpha', domain).acquire(), 2);
  });

  test('a node restarting while its previous run still holds the domain waits for that lease, then takes it', T, async () => {
    const domain = freshDomain();
    const first = arbiter('alpha', domain);
    await first.acquire();
    await first.stop();
    const started = performance.now();
    assert.equal(await arbiter('alpha', domain).acquire(), 2);
    assert.ok(performance.now() - started >= 200, 'it waited for the old lease');
  });

  test('two secondaries claiming at once: exactly one takes the domain', T, async () => {
    const domain = freshDomain();
    const a = arbiter('alpha', domain);
    await a.acquire();
    await a.stop({ release: true });
    const claims = await Promise.allSettled(['beta', 'gamma', 'delta'].map((n) => arbiter(n, domain).claim(1)));
    const won = claims.filter((c) => c.status === 'fulfilled');
    assert.equal(won.length, 1, JSON.stringify(claims.map((c) => c.status)));
    assert.equal((won[0]).value, 2);
    // The losers read the record again after their swap failed: the domain has moved past their replica.
    for (const c of claims) if (c.status === 'rejected') assert.equal((c.reason as { code: string }).code, ErrorCodes.ARBITER_STALE);
  });

  test('etcd silent when a node starts: the read is asked again for up to a lease period; an answer in time starts it, none fails it with etcd\'s error', T, async () => {
    await viaCutProxy(async (proxy, domain, a) => {
      const log = capturingLogger();
      const logged = new EtcdArbiter({ client: new EtcdClient({ endpoints: [proxy.address], timeoutMs: 300 }), prefix: '/tandem-test', domain, node: 'alpha', leaseMs: LEASE_MS, logger: log.logger });
      arbiters.push(logged);
      proxy.cut();
      const acquired = logged.acquire();
      await new Promise((r) => setTimeout(r, 450));
      proxy.heal();
      assert.equal(await acquired, 1, 'the node started once etcd answered');
      const warned = log.lines.filter((l) => /^arbiter: etcd does not answer .*asking again for up to 1 s/.test(String(l.msg)));
      assert.equal(warned.length, 1, log.text());
      await logged.stop();
      // Never answered: the start fails after about a lease period, naming etcd, and nothing was taken.
      proxy.cut();
      const t0 = performance.now();
      await rejects(a.acquire(), ErrorCodes.ARBITER_UNREACHABLE, /etcd unreachable/);
      const took = performance.now() - t0;
      assert.ok(took >= LEASE_MS - 50 && took < 4 * LEASE_MS, `gave up after ${took.toFixed(0)} ms`);
      proxy.heal();
      assert.equal(a.valid(), false);
    });
  });

  test('a holder cut off from etcd loses its authority before the lease ends, so before anybody can take over', T, async () => {
    await viaCutProxy(async (proxy, domain, a) => {
      await a.acquire();
      const lapsed: number[] = [];
      a.on('authority', (e) => {
        if (!e.valid) lapsed.push(performance.now());
      });
      proxy.cut();
      const cutAt = performance.now();
      const b = arbiter('beta', domain);
      let tookAt = 0;
      await until(async () => {
        try {
          await b.claim(1);
          tookAt = performance.now();
          return true;
        } catch (err) {
          if ((err as { code?: string }).code !== ErrorCodes.ARBITER_HELD) throw err;
          // Asked at each poll: while beta cannot take over, alpha may still be valid, never after.
          return false;
        }
      }, 'beta to take over', 6 * LEASE_MS, 20);
      assert.equal(lapsed.length, 1, 'alpha was told its authority lapsed');
      assert.ok(lapsed[0] < tookAt, `alpha lapsed at +${(lapsed[0] - cutAt).toFixed(0)} ms, beta took over at +${(tookAt - cutAt).toFixed(0)} ms`);
      assert.equal(a.valid(), false);
      // The partition heals: alpha learns it was superseded, and stays without authority.
      const superseded = new Promise((resolve) => a.once('superseded', resolve));
      proxy.heal();
      assert.deepEqual(await superseded, { node: 'beta', generation: 2, protected: false });
      assert.equal(a.valid(), false);
    });
  });

  test('a holder whose lease ended while nobody took over takes the domain back at its generation', T, async () => {
    await viaCutProxy(async (proxy, domain, a) => {
      assert.equal(await a.acquire(), 1);
      const changes: boolean[] = [];
      a.on('authority', (e) => changes.push(e.valid));
      proxy.cut();
      // Long enough for etcd to end the lease.
      await new Promise((r) => setTimeout(r, 2.5 * LEASE_MS));
      assert.equal(a.valid(), false);
      assert.equal(await arbiter('beta', domain).holder(), undefined, 'etcd ended the lease');
      proxy.heal();
      await until(() => a.valid(), 'alpha to take the domain back', 5 * LEASE_MS);
      assert.deepEqual(changes, [false, true]);
      assert.deepEqual(await arbiter('beta', domain).holder(), { node: 'alpha', generation: 1, protected: false });
    });
  });

  test('a protected holder is taken over at once, without waiting for its lease; it learns it was superseded', T, async () => {
    const domain = freshDomain();
    const a = arbiter('alpha', domain);
    await a.acquire();
    a.protect(1);
    assert.equal(a.valid(), false, 'protected: output no replica holds may not leave');
    await a.settled();
    assert.deepEqual(await a.holder(), { node: 'alpha', generation: 1, protected: true });
    const superseded = new Promise((resolve) => a.once('superseded', resolve));
    const b = arbiter('beta', domain);
    const started = performance.now();
    assert.equal(await b.claim(1), 2);
    const took = performance.now() - started;
    assert.ok(took < LEASE_MS / 2, `the claim took ${took.toFixed(0)} ms: it did not wait for alpha's lease`);
    assert.equal(b.valid(), true);
    // alpha renews its lease (which still runs) and finds the owner key on beta's.
    assert.deepEqual(await superseded, { node: 'beta', generation: 2, protected: false });
    assert.equal(a.valid(), false);
    a.unprotect();
    await a.settled();
    assert.equal(a.valid(), false, 'a superseded node never regains authority');
    assert.deepEqual(await b.holder(), { node: 'beta', generation: 2, protected: false });
  });

  test('losing protection moves the domain to the next generation before any output may leave; the old replica is stale then', T, async () => {
    const domain = freshDomain();
    const a = arbiter('alpha', domain);
    await a.acquire();
    a.protect(1);
    await a.settled();
    const generations: number[] = [];
    a.on('generation', (g) => generations.push(g));
    a.unprotect();
    assert.equal(a.valid(), false, 'not before etcd confirmed the move');
    await a.settled();
    assert.equal(a.valid(), true);
    assert.equal(a.generation, 2);
    assert.deepEqual(generations, [2]);
    assert.deepEqual(await a.holder(), { node: 'alpha', generation: 2, protected: false });
    await rejects(arbiter('beta', domain).claim(1), ErrorCodes.ARBITER_STALE, /the domain is at generation 2 \(node alpha\), but this replica holds checkpoints of generation 1/);
    // Unprotected already: losing protection again changes nothing.
    a.unprotect();
    await a.settled();
    assert.equal(a.generation, 2);
    // Protected by a stream of generation 2: its replica may take over.
    a.protect(2);
    await a.settled();
    assert.equal(await arbiter('beta', domain).claim(2), 3);
  });

  test('protection lost while recording it is still under way: no authority until the domain moved past the generation its replica holds', T, async () => {
    for (let i = 0; i < 10; i++) {
      const domain = freshDomain();
      const a = arbiter('alpha', domain);
      await a.acquire();
      const seen: boolean[] = [];
      a.on('authority', (e) => seen.push(e.valid));
      a.protect(1);
      // A session that ended at once: its "protected" is in flight when the teardown asks for "unprotected".
      a.unprotect();
      assert.equal(a.valid(), false, 'not while either change may land');
      await a.settled();
      await until(() => a.valid(), 'alpha to serve alone', 2 * LEASE_MS);
      // Whatever order etcd saw them in, output may leave only at a generation no replica holds.
      assert.deepEqual(await a.holder(), { node: 'alpha', generation: 2, protected: false }, `round ${i}`);
      await rejects(arbiter('beta', domain).claim(1), ErrorCodes.ARBITER_STALE, /at generation 2/);
      await a.stop({ release: true });
    }
  });

  test('the primary losing protection and the secondary claiming race: exactly one wins, every time', { timeout: 60_000 }, async () => {
    for (let i = 0; i < 20; i++) {
      const domain = freshDomain();
      const a = arbiter('alpha', domain);
      await a.acquire();
      a.protect(1);
      await a.settled();
      const superseded = new Promise<boolean>((resolve) => a.once('superseded', () => resolve(true)));
      const b = arbiter('beta', domain);
      a.unprotect();
      const [claim] = await Promise.allSettled([b.claim(1), a.settled()]);
      if (claim.status === 'fulfilled') {
        assert.equal(claim.value, 2);
        assert.equal(await Promise.race([superseded, new Promise((r) => setTimeout(() => r(false), 3 * LEASE_MS))]), true, 'alpha learns it lost');
        assert.equal(a.valid(), false, `round ${i}: alpha must not serve alone once beta took over`);
        assert.deepEqual(await b.holder(), { node: 'beta', generation: 2, protected: false });
      } else {
        assert.equal((claim.reason as { code: string }).code, ErrorCodes.ARBITER_STALE, `round ${i}: ${String(claim.reason)}`);
        await until(() => a.valid(), 'alpha to serve at generation 2', 2 * LEASE_MS);
        assert.equal(a.generation, 2);
        assert.equal(b.valid(), false);
      }
      await Promise.all([a.stop({ release: true }), b.stop({ release: true })]);
    }
  });

  test('a protected primary cut off from etcd that loses protection holds output; the secondary takes over at once', T, async () => {
    await viaCutProxy(async (proxy, domain, a) => {
      await a.acquire();
      a.protect(1);
      await a.settled();
      const valid: boolean[] = [];
      a.on('authority', (e) => valid.push(e.valid));
      proxy.cut();
      a.unprotect();
      await a.settled();
      assert.equal(a.valid(), false, 'the move to the next generation could not be confirmed');
      assert.equal(await arbiter('beta', domain).claim(1), 2);
      const superseded = new Promise((resolve) => a.once('superseded', resolve));
      proxy.heal();
      assert.deepEqual(await superseded, { node: 'beta', generation: 2, protected: false });
      assert.equal(a.valid(), false);
      assert.ok(!valid.includes(true), 'alpha never had authority after the cut');
    });
  });

  test('a session begun once a move to the next generation failed drops that move: it cannot land later under the new stream', T, async () => {
    await viaCutProxy(async (proxy, domain, a) => {
      await a.acquire();
      a.protect(1);
      await a.settled();
      proxy.cut();
      a.unprotect();
      // The device's setup: one attempt, which fails; the session then streams at the record's generation.
      await a.settled();
      assert.equal(a.beginSession(), 1);
      proxy.heal();
      // Past the arbiter's retry of a failed change (200 ms), several times over.
      await new Promise((r) => setTimeout(r, 1000));
      assert.equal(a.generation, 1, 'the dropped move was not retried');
      assert.deepEqual(await arbiter('beta', domain).holder(), { node: 'alpha', generation: 1, protected: true });
      // The new stream's first checkpoint: protected at its generation, which its replica may take over from.
      a.protect(1);
      await a.settled();
      assert.equal(await arbiter('beta', domain).claim(1), 2);
    });
  });

  test('a record that is not the arbiter\'s is refused, naming the key', T, async () => {
    const domain = freshDomain();
    const client = new EtcdClient({ endpoints: etcd.endpoints, timeoutMs: 1000 });
    try {
      await client.txn([], [{ put: { key: `/tandem-test/${domain}/generation`, value: Buffer.from('{"node":"x y","generation":1,"protected":false}') } }], []);
      await rejects(arbiter('alpha', domain).acquire(), ErrorCodes.ARBITER_BAD_RESPONSE, new RegExp(`etcd key /tandem-test/${domain}/generation holds no valid node name`));
      await client.txn([], [{ put: { key: `/tandem-test/${domain}/generation`, value: Buffer.from(JSON.stringify({ node: 'x', generation: 2 ** 53, protected: false })) } }], []);
      await rejects(arbiter('alpha', domain).claim(1), ErrorCodes.ARBITER_BAD_RESPONSE, /holds no valid generation/);
    } finally {
      client.close();
    }
  });

  test('bad options are refused before anything is asked of etcd', () => {
    const make = (o: { prefix?: string; domain?: string; node?: string; leaseMs?: number }): EtcdArbiter =>
      new EtcdArbiter({ client: new EtcdClient({ endpoints: etcd.endpoints, timeoutMs: 100 }), prefix: o.prefix ?? '/t', domain: o.domain ?? 'vm', node: o.node ?? 'a', leaseMs: o.leaseMs ?? 2000 });
    assert.throws(() => make({ prefix: 'tandem' }).validate(), /key prefix: expected \/NAME/);
    assert.throws(() => make({ domain: '../x' }).validate(), /domain name/);
    assert.throws(() => make({ node: '' }).validate(), /node name/);
    assert.throws(() => make({ leaseMs: 10 }).validate(), /lease: expected 1000..600000 ms, got 10/);
  });
});
