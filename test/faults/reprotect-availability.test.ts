/**
 * Found by the randomized schedules on main 032d954 (random-schedules.test.ts,
 * TANDEM_FAULT_SCHEDULE=2059832522: a paused secondary, then its answers to
 * the primary lost): a primary serving alone (its secondary gone, the domain
 * moved to its next generation, its lease live) stops answering clients as
 * soon as it starts protecting itself again, and answers again only when the
 * new session's pre-copy is done and acked. Its output waits for a replica
 * that holds nothing yet; it had the authority to release it. So the
 * service is down for the whole pre-copy: for as long as a secondary that
 * accepts the connection and then hangs stays hung (nothing bounds a
 * pre-copy), and for as long as a large guest takes to cross a slow link.
 * Issue 12 asks for the service back within the lease + 2 s whenever a
 * majority (here the primary and etcd) is connected.
 *
 * Found on main 032d954: 7.6 s (and counting) without a reply with a hung
 * secondary; the whole pre-copy (5 s and more) of a 32 MiB guest at
 * 10-20 Mbit/s. Fixed: a session's first suspend arms the output buffer,
 * not its setup, so pre-copy output passes as unprotected output does (with
 * the authority only); and the primary ends a session whose standby is
 * silent on both channels even when its heartbeats were never heard.
 */
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { assertLedger, FaultCluster, msg, type Pair } from '../helpers/fault-cluster.js';

const clusters: FaultCluster[] = [];
after(() => {
  for (const c of clusters) c.cleanup();
});

/** A protected pair whose secondary then dies: the primary serves alone at generation 2. */
async function alone(memoryMib: number): Promise<{ c: FaultCluster; pair: Pair }> {
  const c = await FaultCluster.create();
  clusters.push(c);
  const pair = await c.startPair({ memoryMib });
  await pair.waitAcks(100);
  pair.secondary.signal('SIGKILL');
  await pair.primary.waitLine(msg(/^arbiter: unprotected: the domain moved to generation 2/), 'the primary to serve alone at generation 2');
  await pair.waitAcks(100);
  return { c, pair };
}

test('a primary serving alone keeps answering while a new secondary that accepted its connection hangs (SIGSTOP): within the lease + 2 s', { timeout: 120_000 }, async () => {
  const { c, pair } = await alone(8);
  const bound = pair.timings.leaseMs + 2000;
  const s = pair.startSecondary();
  await s.waitLine(msg(/^secondary listening/), 'the new secondary to listen');
  // Its kernel still accepts the primary's connections; the process answers nothing.
  s.signal('SIGSTOP');
  await c.agent.mark();
  await pair.primary.waitLine(msg(/^protection: precopy/), 'the primary to start protecting itself again', 10_000);
  await sleep(bound + 3000);
  const st = await c.agent.ledgerStatus();
  s.signal('SIGCONT');
  assert.ok(st.gapSinceMarkMs !== null && st.gapSinceMarkMs <= bound, `no acknowledgement for ${st.gapSinceMarkMs} ms while the primary, serving alone with a live lease, tried to protect itself with a hung secondary (bound ${bound} ms)\n${pair.logs()}`);
  await pair.waitProtected(2);
  await assertLedger(pair, 'p');
});

test('a primary serving alone keeps answering during the pre-copy of a new secondary over a slow link (32 MiB at 10 Mbit/s): within the lease + 2 s', { timeout: 120_000 }, async () => {
  const { c, pair } = await alone(32);
  const bound = pair.timings.leaseMs + 2000;
  // Several seconds of pre-copy (about 5 s at 20 Mbit/s on this machine: the stream of a mostly empty guest is smaller than its RAM).
  const slow = c.topo.impair('s', { rateKbit: 10_000 });
  pair.startSecondary();
  await c.agent.mark();
  await pair.primary.waitLine(msg(/^protection: precopy/), 'the pre-copy to start', 10_000);
  await sleep(bound + 3000);
  const st = await c.agent.ledgerStatus();
  const done = pair.primary.lines.some(msg(/^pre-copy done/));
  slow();
  assert.ok(st.gapSinceMarkMs !== null && st.gapSinceMarkMs <= bound, `no acknowledgement for ${st.gapSinceMarkMs} ms during a pre-copy (done by then: ${done}) of a primary serving alone with a live lease (bound ${bound} ms)\n${pair.logs()}`);
  await pair.waitProtected(2, 60_000);
  await assertLedger(pair, 'p');
});
