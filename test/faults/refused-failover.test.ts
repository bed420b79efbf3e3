/**
 * Issue 12, "A refused failover still takes the generation": a secondary
 * whose replica never got a complete checkpoint cannot fail over; when it
 * tries (the primary died), it must take nothing. Real processes in their
 * own namespaces, real etcd.
 *
 * Old code (issue 12): the refused promotion still took the next
 * generation, so every later primary of generation 1 was fenced at start.
 *
 * Now the promotion checks first and claims after: the arbiter's record
 * stays the primary's, the secondary's heartbeats never announce a new
 * generation, and the restarted primary serves, is protected, and can be
 * failed over from with nothing lost.
 */
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { FaultCluster, PORTS, assertLedger, lineTime, msg, waitFor } from '../helpers/fault-cluster.js';

let cluster: FaultCluster | undefined;
after(() => cluster?.cleanup());

test('the primary dies before its secondary held a checkpoint: the refused failover takes no generation; the restarted primary is not fenced, is protected, and a real failover then loses nothing', { timeout: 180_000 }, async () => {
  cluster = await FaultCluster.create();
  const { topo } = cluster;
  // The replication port is cut off from the start: heartbeats flow (the secondary knows its primary), no checkpoint ever arrives.
  const healReplication = topo.cutPort('p', 's', PORTS.replication);
  // No ledger yet: what this primary acknowledges unprotected has no replica anywhere, and dies with it by design.
  const pair = await cluster.startPair({ waitProtected: false, ledger: false });
  await pair.primary.waitLine(msg(/^guest service on/), 'the primary to serve');
  await pair.secondary.waitLine(msg(/^heartbeat: primary alive/), 'the secondary to hear its primary');
  await pair.primary.waitLine(msg(/^UNPROTECTED/), 'the primary to find its standby unreachable', 15_000);
  const before = await pair.arbiter();
  assert.deepEqual(before.last, { node: 'alpha', generation: 1, protected: false });

  pair.primary.signal('SIGKILL');
  const refusal = await pair.secondary.waitLine(msg(/^cannot fail over/), 'the secondary to try, and be refused', 10_000);
  assert.match(String(refusal.msg), /holds no complete checkpoint/);
  // Refused, it took nothing: no promotion on the heartbeat channel, no claim at the arbiter.
  await new Promise((r) => setTimeout(r, 1000));
  for (const re of [/^heartbeat: promoted/, /^arbiter: this node took the domain/, /^FAILED OVER/]) assert.equal(lineTime(pair.secondary, re), undefined, `${re}\n${pair.logs()}`);
  const record = await pair.arbiter();
  assert.deepEqual(record.last, { node: 'alpha', generation: 1, protected: false }, JSON.stringify(record));
  assert.ok(record.owner === null || record.owner.node === 'alpha', JSON.stringify(record));

  // The same primary again (a restart): it takes the domain at generation 2 and is not fenced by the secondary.
  healReplication();
  pair.startPrimary();
  await pair.waitProtected(2);
  assert.equal(pair.primary.lines.some(msg(/FENCED|fenced/)), false, pair.logs());
  await pair.startLedger();
  await pair.waitAcks(200);
  pair.primary.signal('SIGKILL');
  await waitFor(pair, () => pair.failedOver(), 'the secondary to take over the restarted primary', 10_000);
  await pair.waitAcks(100);
  await assertLedger(pair, 's');
  assert.equal((await pair.arbiter()).last?.generation, 3);
});
