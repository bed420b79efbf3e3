/**
 * Found by the randomized schedules (random-schedules.test.ts: an isolated
 * primary whose write to etcd was delivered, by TCP's retransmission, after
 * it had given up on it): a change of the arbiter's record whose answer is
 * lost takes effect anyway, after the primary has started protecting again
 * at its old generation. Made deterministic here with the network: the
 * primary loses its secondary and moves to its next generation; etcd's
 * answer to that write is lost (its reads are answered: by size, over
 * etcd's HTTPS a write's answer is a packet of about 950 bytes and a
 * keepalive's about 900, a read of the record about 1370); then every
 * answer is lost while the secondary comes back; then etcd answers again.
 *
 * What a correct primary must end with: protected, and recorded protected at
 * the generation its secondary's replica holds, so that its death is taken
 * over at once. On f0dd910 (fixed on main since, in 032d954): the primary
 * protected its secondary at
 * generation 1 while the record went to generation 2 unprotected ("the
 * replica holds generation 1 but the domain moved to 2 (a change made while
 * etcd was unreachable took effect): the secondary can take over only after
 * the next protection session"), and that session never ended by itself:
 * the arbiter's record was never protected again, and a SIGKILL of the
 * primary found the secondary refused ("not the latest copy") though its
 * replica held every acknowledged write. Nobody served.
 */
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { assertLedger, FaultCluster, msg, waitFor, type Pair } from '../helpers/fault-cluster.js';

const clusters: FaultCluster[] = [];
after(() => {
  for (const c of clusters) c.cleanup();
});

/** The answers to a write (a txn of puts, or a keepalive) and not to a read of the record: IP lengths in between. */
const WRITE_ANSWER_LENGTH: [number, number] = [600, 1200];
const ATTEMPTS = 3;

/**
 * Drives the primary into the state: its write to generation 2 applied at
 * etcd, unanswered, and its secondary protected again before it learns
 * that. Returns false if the race to switch drops in time was lost (the
 * primary learned the outcome first): the caller tries again.
 */
async function loseTheAnswer(c: FaultCluster, pair: Pair): Promise<boolean> {
  const { topo } = c;
  const writes = topo.drop({ from: 'e0', to: 'p', ipLength: WRITE_ANSWER_LENGTH });
  // The secondary is cut off from etcd too: it must not take the domain meanwhile (that is another test).
  const cutSecondary = topo.many([topo.partition('p', 's'), topo.partition('s', 'e0')]);
  await pair.primary.waitLine(msg(/^arbiter: cannot change the domain's record \(unprotected\)/), "the primary's write to go unanswered", 10_000);
  // From now on no answer at all, before the primary's retry (200 ms) reads the outcome.
  const answers = topo.dropAnswers('e0', 'p');
  writes();
  const learned = (): boolean => pair.primary.lines.some(msg(/^arbiter: (reachable again|unprotected: the domain moved)/));
  if (learned()) {
    answers();
    cutSecondary();
    return false;
  }
  const record = await pair.arbiter();
  assert.deepEqual(record.last, { node: 'alpha', generation: 2, protected: false }, 'the unanswered write took effect at etcd');
  // The secondary comes back while etcd is silent: the primary protects it again.
  cutSecondary();
  const protections = (): number => pair.primary.lines.filter((l) => l.state === 'protected').length;
  await waitFor(pair, () => protections() >= 2, 'the primary to protect its secondary again', 10_000);
  const reached = !learned();
  answers();
  return reached;
}

test("etcd's answer to the primary's move to generation 2 is lost and its secondary comes back first: it ends recorded protected at its replica's generation, and its death is taken over with nothing lost", { timeout: 240_000 }, async () => {
  let pair: Pair | undefined;
  for (let attempt = 1; attempt <= ATTEMPTS && pair === undefined; attempt++) {
    const c = await FaultCluster.create();
    clusters.push(c);
    // A short ack timeout: the primary gives its secondary up within a second of the partition.
    const p = await c.startPair({ timings: { ackTimeoutMs: 1000, retryMs: 200 } });
    await p.waitAcks(100);
    if (await loseTheAnswer(c, p)) pair = p;
    else c.cleanup();
  }
  assert.ok(pair !== undefined, `in ${ATTEMPTS} attempts the primary always learned its write's outcome before the drops changed: the precondition was never reached`);
  // Everything reachable again: whatever the primary does now, it must end recorded protected, so that a takeover is possible.
  await waitFor(
    pair,
    async () => {
      const r = await pair.arbiter();
      return r.owner?.node === 'alpha' && r.owner.protected;
    },
    'the arbiter to record the primary protected again',
    10_000,
  );
  await pair.waitAcks(100);
  pair.primary.signal('SIGKILL');
  await waitFor(pair, () => pair.failedOver(), 'the secondary to take over the killed primary', 10_000);
  await pair.waitAcks(100);
  await assertLedger(pair, 's');
  assert.equal((await pair.arbiter()).last?.node, 'beta');
});
