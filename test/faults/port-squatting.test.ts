/**
 * Issue 12, "Replication port squatting": connections to the secondary's
 * replication port that never name a primary's generation (idle, or one
 * byte a second), from a host on the same network (the client's
 * namespace), while the real primary has to reconnect after a link reset.
 * Real processes in their own namespaces, real etcd, the client ledger.
 *
 * Old code (issue 12): one idle connection (or one byte a second) kept the
 * real primary out indefinitely: the primary stayed unprotected.
 *
 * Now a connection that has not named its generation holds a pending slot
 * for 2 s at most (the secondary's prelude timeout), and never the stream.
 */
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { assertLedger, FaultCluster, PORTS, waitFor } from '../helpers/fault-cluster.js';

let cluster: FaultCluster | undefined;
after(() => cluster?.cleanup());

/** The secondary's prelude timeout (src/secondary/server.ts, DEFAULT_PRELUDE_TIMEOUT_MS). */
const PRELUDE_TIMEOUT_MS = 2000;

test('squatters on the replication port (a persistent idle one and a one-byte-a-second one, then a burst of six idle ones) do not keep the primary out after link resets; each squatter is dropped within the prelude timeout; a failover afterwards loses nothing', { timeout: 180_000 }, async () => {
  cluster = await FaultCluster.create();
  const { topo, agent } = cluster;
  const pair = await cluster.startPair();
  const s = { host: topo.ip('s'), port: PORTS.replication };
  // The primary is back within: the prelude timeout (squatters holding every pending slot), its retry, a connect and a pre-copy.
  const bound = PRELUDE_TIMEOUT_MS + pair.timings.retryMs + 3000;

  // A persistent squatter: reconnects each time it is dropped.
  await agent.squat({ ...s, idle: 1, drip: 1, reconnect: true });
  await sleep(500);
  let generation = 1;
  for (let round = 1; round <= 2; round++) {
    const aborted = topo.resetTcp('p', { peer: 's', port: PORTS.replication });
    assert.equal(aborted, 1, `round ${round}: expected to abort the one replication connection`);
    const resetAt = performance.now();
    generation++;
    await pair.waitProtected(generation, bound + 5000);
    const tookMs = performance.now() - resetAt;
    assert.ok(tookMs <= bound, `round ${round}: protected again ${Math.round(tookMs)} ms after the reset (bound ${bound} ms)\n${pair.logs()}`);
    await sleep(PRELUDE_TIMEOUT_MS + 500);
  }
  const persistent = await agent.stopSquatting();
  assert.ok(persistent !== null && persistent.closedByServer >= 2, `the secondary never dropped a squatter: ${JSON.stringify(persistent)}`);
  assert.ok(persistent.longestHeldMs <= PRELUDE_TIMEOUT_MS + 500, `a squatter kept its connection ${persistent.longestHeldMs} ms (prelude timeout ${PRELUDE_TIMEOUT_MS} ms)`);

  // A burst: more idle connections than the secondary keeps pending slots, just before the reset.
  await agent.squat({ ...s, idle: 6, drip: 0, reconnect: false });
  await sleep(100);
  topo.resetTcp('p', { peer: 's', port: PORTS.replication });
  const resetAt = performance.now();
  generation++;
  await pair.waitProtected(generation, bound + 5000);
  const tookMs = performance.now() - resetAt;
  assert.ok(tookMs <= bound, `burst: protected again ${Math.round(tookMs)} ms after the reset (bound ${bound} ms)\n${pair.logs()}`);
  await sleep(PRELUDE_TIMEOUT_MS + 500);
  const burst = await agent.stopSquatting();
  assert.ok(burst !== null && burst.longestHeldMs <= PRELUDE_TIMEOUT_MS + 500, `a squatter of the burst kept its connection ${burst?.longestHeldMs} ms`);

  // The replica the squatters tried to take is whole and current: a failover now loses nothing.
  await pair.waitAcks(100);
  pair.primary.signal('SIGKILL');
  await waitFor(pair, () => pair.failedOver(), 'the secondary to take over the killed primary', 10_000);
  await pair.waitAcks(100);
  await assertLedger(pair, 's');
});
