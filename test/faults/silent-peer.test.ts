/**
 * Issue 12, "A silent peer is never noticed", and what the issue asks in its
 * place: "Every connection between the hosts has keepalive and an idle
 * timeout; a silent peer is noticed within the heartbeat timeout, and a
 * healed network re-protects on its own", and "the service answering again
 * within the lease time plus 2 s after each fault that leaves a majority of
 * primary, secondary and arbiter connected". Real processes in their own
 * namespaces, real etcd, the client ledger; the shipped timings (heartbeat
 * 50/250 ms, lease 2 s, ack timeout 5 s).
 *
 * Old code (issue 12): after a full partition healed, the secondary still
 * held the dead replication connection as active (no keepalive, no idle
 * timeout) and refused every reconnect: the primary stayed unprotected for
 * ever. That part was fixed first (a reconnecting primary replaces the
 * stream); the first half of the third test checks it. On f0dd910 these
 * three tests still failed, each on one of (fixed on main since, in 8c25db4
 * and e54cc82):
 *
 * - the secondary never noticed that the primary's stream went silent (a
 *   primary whose host is cut off sends no FIN): it waited for the stream to
 *   end for as long as the partition lasted ("waiting for it to end before
 *   failing over"), so the arbiter's fast takeover never happened and nobody
 *   served;
 * - the primary noticed a silent secondary only at the ack timeout (5 s),
 *   not within the heartbeat timeout: its output was held 5.4 s;
 * - after a partition healed, the heartbeat connections stayed silent until
 *   TCP's next retransmission (about 4-5 s after an 8 s partition, 10 s
 *   after 20 s), and a replication reset in that window made the secondary
 *   judge the live, heard primary dead and try to take over.
 */
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { assertLedger, FaultCluster, PORTS, waitFor } from '../helpers/fault-cluster.js';

const clusters: FaultCluster[] = [];
after(() => {
  for (const c of clusters) c.cleanup();
});

async function cluster(): Promise<FaultCluster> {
  const c = await FaultCluster.create();
  clusters.push(c);
  return c;
}

test("the primary's host loses its link (no FIN reaches anyone): the secondary notices the silent stream and takes over within the lease + 2 s; back, the old primary stops; nothing acknowledged is lost", { timeout: 120_000 }, async () => {
  const c = await cluster();
  const pair = await c.startPair();
  await pair.waitAcks(200);
  const bound = pair.timings.leaseMs + 2000;
  // Recorded protected: the arbiter lets the secondary take over at once, no lease to wait for.
  const linkUp = c.topo.linkDown('p');
  await c.agent.mark();
  await sleep(bound + 1000);
  const st = await c.agent.ledgerStatus();
  // On f0dd910: "heartbeats lost but the replication stream is still open: waiting for it to end before failing over", for as long as the link was down.
  assert.ok(pair.failedOver(), `the secondary did not take over a primary cut off for ${bound + 1000} ms (acknowledgements: ${JSON.stringify(st.perNode)}, none for ${st.gapSinceMarkMs} ms)\n${pair.logs()}`);
  assert.ok(st.gapSinceMarkMs !== null && st.gapSinceMarkMs <= bound, `no acknowledgement for ${st.gapSinceMarkMs} ms after the link went down (bound ${bound} ms)\n${pair.logs()}`);
  linkUp();
  // Back on the network, the old primary learns from the arbiter that it was superseded, and stops without serving.
  await waitFor(pair, () => pair.primary.exited(), 'the old primary to stop once its link is back', 10_000);
  assert.equal(await pair.primary.exit, 3, pair.logs());
  await pair.waitAcks(100);
  await assertLedger(pair, 's');
});

test("the secondary's host goes silent (cut off from the primary and etcd): the primary notices within the heartbeat timeout and serves alone within the lease + 2 s (shipped timings); healed, it protects again", { timeout: 120_000 }, async () => {
  const c = await cluster();
  const pair = await c.startPair();
  await pair.waitAcks(200);
  const bound = pair.timings.leaseMs + 2000;
  // Cut off from etcd too, the secondary cannot claim the domain: serving again is the primary's doing alone. (With both
  // reaching etcd it is a race at the arbiter, which random-schedules.test.ts covers with either winner.)
  const heal = c.topo.isolate('s');
  await c.agent.mark();
  await sleep(bound + 2000);
  const st = await c.agent.ledgerStatus();
  const record = await pair.arbiter();
  heal();
  // On f0dd910: the primary's output was held until "no ack for epoch N within 5000 ms" (the ack timeout), though its heartbeat detector said "peer dead" after 250 ms.
  assert.ok(st.gapSinceMarkMs !== null && st.gapSinceMarkMs <= bound, `no acknowledgement for ${st.gapSinceMarkMs} ms after the partition (bound ${bound} ms; the arbiter: ${JSON.stringify(record)})\n${pair.logs()}`);
  assert.deepEqual(record.owner, { node: 'alpha', generation: 2, protected: false }, pair.logs());
  assert.equal(pair.failedOver(), false, pair.logs());
  await pair.waitProtected(2);
  await assertLedger(pair, 'p');
});

test('a full partition of 8 s between the hosts heals: the pair is protected again on its own, both nodes hear each other within 2 s, and a replication link reset 2 s after healing is no failover', { timeout: 120_000 }, async () => {
  const c = await cluster();
  const pair = await c.startPair();
  await pair.waitAcks(200);
  // The secondary loses etcd as well for the partition, so that the primary is the one still serving when it heals
  // (a takeover would make "healed, protected again" a different story: failback).
  const heal = c.topo.partition('p', 's');
  const healEtcd = c.topo.partition('s', 'e0');
  await sleep(8000);
  // Taken before healing: what is heard within a few ms of it (the nft swap itself takes some) still counts.
  const healedAt = Date.now();
  heal();
  healEtcd();
  // Re-protected on its own: within the primary's retry, a connect and a pre-copy (the old code never did).
  await pair.waitProtected(2, pair.timings.retryMs + 4000);
  await sleep(Math.max(0, healedAt + 2000 - Date.now()));
  const heardAt = (proc: typeof pair.primary, re: RegExp): number | undefined => {
    const l = proc.lines.find((x) => Number(x.time) >= healedAt && re.test(String(x.msg)));
    return l === undefined ? undefined : Number(l.time) - healedAt;
  };
  const problems: string[] = [];
  // On f0dd910: a heartbeat connection silent through the partition resumed only at TCP's next retransmission,
  // about 4-5 s after an 8 s partition (about 10 s after 20 s): nothing noticed the silence and redialled.
  const secondaryHeard = heardAt(pair.secondary, /^heartbeat: primary alive/);
  const primaryHeard = heardAt(pair.primary, /^heartbeat: secondary alive/);
  if (secondaryHeard === undefined || secondaryHeard > 2000) problems.push(`the secondary heard the primary's heartbeats again ${secondaryHeard ?? 'not yet'} ms after healing (2 s allowed)`);
  if (primaryHeard === undefined || primaryHeard > 2000) problems.push(`the primary heard the secondary's heartbeats again ${primaryHeard ?? 'not yet'} ms after healing (2 s allowed)`);
  const resetAt = Date.now();
  c.topo.resetTcp('p', { peer: 's', port: PORTS.replication });
  await sleep(pair.timings.leaseMs + 2000);
  // A lost link is not a dead primary: the secondary must not even try (a try refused at the arbiter only means the primary won the race).
  for (const re of [/^FAILED OVER/, /^cannot fail over/]) {
    const l = pair.secondary.lines.find((x) => Number(x.time) >= resetAt && re.test(String(x.msg)));
    if (l !== undefined) problems.push(`${Number(l.time) - resetAt} ms after a link reset ${resetAt - healedAt} ms after healing, the secondary judged the live primary dead: ${String(l.msg).slice(0, 160)}`);
  }
  assert.deepEqual(problems, [], pair.logs(40));
  assert.equal(pair.primary.exited(), false, pair.logs());
  await pair.waitProtected(3);
  await assertLedger(pair, 'p');
});
