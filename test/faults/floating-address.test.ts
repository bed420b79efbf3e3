/**
 * The floating service address and the role-change hooks between real
 * hosts: network namespaces for the primary (p), the secondary (s) and a
 * client (c) on one bridge (test/helpers/netns.ts), real `tandem primary`
 * and `tandem secondary` processes in p and s (sim domain, mutual TLS),
 * both configured with the same floating address on their eth0 and a hook
 * that records its arguments and environment.
 *
 * The primary takes the address before its front binds it; the client
 * writes through it. SIGKILL of the primary: the secondary takes over,
 * takes the address, and announces it (unsolicited ARP for IPv4, an
 * unsolicited neighbour advertisement for IPv6), and the client's
 * neighbour table moves to the secondary's MAC without the client sending
 * anything to the address (so the announcement did it), after which the
 * client reads its write back through the same address. A killed process
 * leaves its address behind: the old primary, started again as a
 * secondary, removes it; the survivor, stopped, removes its own. The hooks
 * heard each change with the domain, generation, role and reason.
 *
 * Fenced: with the etcd arbiter (test/helpers/fault-cluster.ts), a
 * primary cut off from everything is taken over; it cannot know, and holds
 * the address where nobody reaches it. Back on the network it learns it was
 * superseded, removes the address before anything else, and stops (exit
 * status 3); its hook hears `fenced`, and the client stays with the
 * survivor.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { stringify } from 'yaml';
import { certsInit } from '../../src/transport/certs.js';
import { CLI } from '../helpers/cli.js';
import { FaultCluster, msg, spawnIn, waitFor, type NsProcess } from '../helpers/fault-cluster.js';
import { hookCalls, writeRecordingHook } from '../helpers/hook-recorder.js';
import { Topology } from '../helpers/netns.js';
import { startAgent, type Agent } from '../helpers/ns-agent.js';
import { until } from '../helpers/wait.js';

const PORTS = { replication: 7700, heartbeat: 7701, service: 6379 } as const;
const DOMAIN = 'vm-floating';
/** The namespaces' IPv6 subnet (added by the test; the topology's own addresses are IPv4). */
const V6 = 'fd6d:7a6e:1::';

const topologies: Topology[] = [];
const agents: Agent[] = [];
const clusters: FaultCluster[] = [];
after(() => {
  for (const a of agents) a.stop();
  for (const t of topologies) t.cleanup();
  for (const c of clusters) c.cleanup();
});

interface Family {
  name: string;
  /** The floating address, and the same with its prefix. */
  floating: (topo: Topology) => string;
  prefix: number;
  /** HOST:PORT of the service on the floating address. */
  service: (topo: Topology) => string;
  /** `ip` family flag. */
  flag: '-4' | '-6';
  announced: RegExp;
}

const FAMILIES: Family[] = [
  {
    name: 'IPv4 (unsolicited ARP)',
    floating: (topo) => topo.ip('p').replace(/\.\d+$/, '.200'),
    prefix: 24,
    service: (topo) => `${topo.ip('p').replace(/\.\d+$/, '.200')}:${PORTS.service}`,
    flag: '-4',
    announced: /announced \(3 unsolicited ARPs\)/,
  },
  {
    name: 'IPv6 (unsolicited neighbour advertisement)',
    floating: () => `${V6}200`,
    prefix: 64,
    service: () => `[${V6}200]:${PORTS.service}`,
    flag: '-6',
    announced: /announced \(3 unsolicited neighbour advertisements\)/,
  },
];

interface IpLink {
  address?: string;
}
interface IpAddr {
  addr_info?: { local?: string; prefixlen?: number }[];
}
interface IpNeigh {
  dst?: string;
  lladdr?: string;
  state?: string[];
}

const mac = (topo: Topology, node: string): string => (JSON.parse(topo.exec(node, ['ip', '-j', 'link', 'show', 'dev', 'eth0'])) as IpLink[])[0].address!;

const holds = (topo: Topology, node: string, address: string, prefix: number): boolean =>
  (JSON.parse(topo.exec(node, ['ip', '-j', 'addr', 'show', 'dev', 'eth0'])) as IpAddr[]).some((l) => (l.addr_info ?? []).some((a) => a.local === address && a.prefixlen === prefix));

/** The client's neighbour entry for `address`: its MAC and state, or undefined. */
function neighbour(topo: Topology, family: Family, address: string): IpNeigh | undefined {
  return (JSON.parse(topo.exec('c', ['ip', family.flag, '-j', 'neigh', 'show', 'dev', 'eth0'])) as IpNeigh[]).find((n) => n.dst === address && n.lladdr !== undefined);
}

const logs = (...procs: NsProcess[]): string => procs.map((p) => p.tail(30)).join('\n');

for (const family of FAMILIES) {
  describe(`the floating service address, ${family.name}`, () => {
    test('moves from the primary to the secondary at a failover, announced to the client, and the hooks hear every change', { timeout: 180_000 }, async () => {
      const topo = Topology.create({ nodes: ['p', 's', 'c'] });
      topologies.push(topo);
      if (family.flag === '-6') {
        ['p', 's', 'c'].forEach((node, i) => topo.exec(node, ['ip', 'addr', 'add', `${V6}${i + 1}/64`, 'dev', 'eth0', 'nodad']));
      }
      const agent = startAgent(topo, 'c');
      agents.push(agent);
      const certs = join(topo.dir, 'tls');
      await certsInit(certs, { nodes: ['alpha', 'beta'], days: 2 });
      const floating = family.floating(topo);
      const service = family.service(topo);
      const s = topo.ip('s');
      const p = topo.ip('p');
      const config = (name: string, role: 'primary' | 'secondary', host: string): string => {
        const doc: Record<string, unknown> = {
          log_level: 'info',
          heartbeat: { interval_ms: 50, timeout_ms: 250 },
          domain: { type: 'sim', memory_mib: 8, disk_mib: 1 },
          arbiter: { domain: DOMAIN },
          tls: { dir: certs, name, peer: name === 'alpha' ? 'beta' : 'alpha' },
          floating_address: { address: `${floating}/${family.prefix}`, interface: 'eth0' },
        };
        if (role === 'primary') doc.primary = { secondary: `${s}:${PORTS.replication}`, heartbeat: `${s}:${PORTS.heartbeat}`, service, interval_ms: 50 };
        else doc.secondary = { listen: `${host}:${PORTS.replication}`, heartbeat: `${host}:${PORTS.heartbeat}` };
        const file = join(topo.dir, `${name}-${role}.yaml`);
        writeFileSync(file, stringify(doc));
        return file;
      };
      const hook = (name: string): { path: string; out: string } => {
        const out = join(topo.dir, `${name}-hook.jsonl`);
        return { path: writeRecordingHook(join(topo.dir, `${name}-hook`), out), out };
      };
      const hookP = hook('alpha');
      const hookS = hook('beta');
      const tandem = (node: 'p' | 's', label: string, args: string[]): NsProcess => spawnIn(topo, node, label, [process.execPath, CLI, ...args]);

      // The secondary serves, once it takes over, where the primary did: --service, on the floating address.
      const secondary = tandem('s', 'secondary', ['secondary', '--config', config('beta', 'secondary', s), '--service', service, '--on-role-change', hookS.path]);
      await secondary.waitLine(msg(/^secondary listening/), 'the secondary to listen');
      const primary = tandem('p', 'primary', ['primary', '--config', config('alpha', 'primary', p), '--on-role-change', hookP.path]);
      await primary.waitLine((l) => l.state === 'protected', 'protection').catch((err: unknown) => {
        throw new Error(`${(err as Error).message}\n${logs(primary, secondary)}`, { cause: err });
      });
      await primary.waitLine(msg(family.announced), 'the primary to announce the address');
      assert.equal(holds(topo, 'p', floating, family.prefix), true, 'the primary holds the floating address');
      assert.equal(holds(topo, 's', floating, family.prefix), false, 'the secondary does not');

      // The client writes through the floating address (acknowledged once the secondary holds it) and learns the primary's MAC.
      const [macP, macS] = [mac(topo, 'p'), mac(topo, 's')];
      assert.notEqual(macP, macS);
      const host = floating;
      assert.equal(await agent.command(host, PORTS.service, ['SET', 'moved', 'with-the-address']), 'OK');
      assert.equal(await agent.command(host, PORTS.service, ['INCR', 'writes']), 1);
      assert.equal(neighbour(topo, family, floating)?.lladdr, macP, "the client's neighbour entry: the primary's MAC");

      // SIGKILL: nothing of the primary's runs any more; the address stays on its host (a killed process removes nothing).
      primary.signal('SIGKILL');
      await primary.exit;
      await secondary.waitLine(msg(/^FAILED OVER/), 'the secondary to take over', 15_000);
      // Nothing goes from the client to the address meanwhile: only an announcement can move its entry.
      await until(() => neighbour(topo, family, floating)?.lladdr === macS, "the client's neighbour entry to move to the secondary's MAC", 10_000, 50).catch((err: unknown) => {
        throw new Error(`${(err as Error).message}: ${JSON.stringify(neighbour(topo, family, floating))} (primary ${macP}, secondary ${macS})\n${logs(secondary)}`, { cause: err });
      });
      assert.equal(holds(topo, 's', floating, family.prefix), true, 'the survivor holds the floating address');
      assert.equal(await agent.command(host, PORTS.service, ['GET', 'moved']), 'with-the-address', 'the survivor serves the acknowledged write at the same address');
      assert.equal(await agent.command(host, PORTS.service, ['INCR', 'writes']), 2);
      await secondary.waitLine(msg(family.announced), 'the survivor to finish its announcements');
      assert.equal(holds(topo, 'p', floating, family.prefix), true, "the killed primary's copy is still on its host");

      // The old primary comes back as a secondary: it does not serve, so the copy left on its host goes first.
      const rejoined = tandem('p', 'rejoined', ['secondary', '--config', config('alpha', 'secondary', p), '--on-role-change', hookP.path]);
      await rejoined.waitLine(msg(/^secondary listening/), 'the old primary to listen as a secondary');
      assert.equal(holds(topo, 'p', floating, family.prefix), false, 'the rejoined node removed the copy it had left');
      assert.ok(rejoined.lines.some(msg(/floating address .* removed \(this node starts as a secondary\)/)), logs(rejoined));
      assert.equal(await agent.command(host, PORTS.service, ['GET', 'writes']), '2', 'the survivor still serves');

      // The survivor stops: it removes the address, and its hook hears it before the process ends.
      secondary.signal('SIGTERM');
      assert.equal(await secondary.exit, 0, logs(secondary));
      assert.equal(holds(topo, 's', floating, family.prefix), false, 'the stopped survivor removed the floating address');
      rejoined.signal('SIGTERM');
      assert.equal(await rejoined.exit, 0, logs(rejoined));

      const events = (out: string): string[] => hookCalls(out).map((r) => r.argv!.slice(0, 4).join(' '));
      // The primary's hook: serving and protected, then nothing (killed); the same node, restarted: standby, stopped.
      assert.deepEqual(events(hookP.out), [`serving ${DOMAIN} 1 primary`, `protected ${DOMAIN} 1 primary`, `standby ${DOMAIN} 1 secondary`, `stopped ${DOMAIN} 1 stopped`]);
      assert.deepEqual(events(hookS.out), [`standby ${DOMAIN} 1 secondary`, `promoted ${DOMAIN} 2 primary`, `stopped ${DOMAIN} 2 stopped`]);
      const promoted = hookCalls(hookS.out)[1];
      assert.match(promoted.argv![4], /primary silent.*taking over as generation 2/);
      assert.deepEqual(
        { ...promoted.env, TANDEM_TIME: undefined, TANDEM_REASON: undefined },
        {
          TANDEM_EVENT: 'promoted',
          TANDEM_DOMAIN: DOMAIN,
          TANDEM_GENERATION: '2',
          TANDEM_ROLE: 'primary',
          TANDEM_SEQUENCE: '2',
          TANDEM_NODE: 'beta',
          TANDEM_SERVICE: service,
          TANDEM_FLOATING_ADDRESS: `${floating}/${family.prefix} dev eth0`,
          TANDEM_TIME: undefined,
          TANDEM_REASON: undefined,
        },
      );
      assert.equal(promoted.env!.TANDEM_REASON, promoted.argv![4]);
      const serving = hookCalls(hookP.out)[0];
      assert.equal(serving.env!.TANDEM_NODE, 'alpha');
      assert.equal(serving.env!.TANDEM_EVENT, 'serving');
    });
  });
}

describe('the floating service address, fenced', () => {
  test('a primary cut off and taken over removes the address as soon as it learns it was superseded, and its hook hears it', { timeout: 180_000 }, async () => {
    const cluster = await FaultCluster.create();
    clusters.push(cluster);
    const { topo, agent } = cluster;
    const floating = topo.ip('p').replace(/\.\d+$/, '.200');
    const family = FAMILIES[0];
    const outs = { primary: join(topo.dir, 'alpha-hook.jsonl'), secondary: join(topo.dir, 'beta-hook.jsonl') };
    const pair = await cluster.startPair({
      ledger: false,
      amend: (role, doc) => {
        doc.floating_address = { address: `${floating}/24`, interface: 'eth0' };
        doc.hooks = { role_change: writeRecordingHook(join(topo.dir, `${role}-hook`), outs[role]) };
        // Both serve on the floating address.
        const section = (doc[role] ?? {}) as Record<string, unknown>;
        doc[role] = { ...section, service: `${floating}:${PORTS.service}` };
      },
    });
    const [macP, macS] = [mac(topo, 'p'), mac(topo, 's')];
    assert.equal(await agent.command(floating, PORTS.service, ['SET', 'fenced', 'not-lost']), 'OK');
    assert.equal(neighbour(topo, family, floating)?.lladdr, macP, `the client reached the floating address at ${neighbour(topo, family, floating)?.lladdr}, not at the primary's ${macP} (the secondary's is ${macS})\n${pair.logs()}`);

    // Cut off from the secondary, etcd and the client: the secondary takes the domain and the address.
    const heal = topo.isolate('p');
    await waitFor(pair, () => pair.failedOver(), 'the secondary to take over the cut-off primary', 15_000);
    await waitFor(pair, () => neighbour(topo, family, floating)?.lladdr === macS, "the client's neighbour entry to move to the survivor", 10_000);
    assert.equal(await agent.command(floating, PORTS.service, ['GET', 'fenced']), 'not-lost');
    // The cut-off primary cannot know yet: it still has the address, where nobody reaches it.
    assert.equal(pair.primary.exited(), false, pair.logs());
    assert.equal(holds(topo, 'p', floating, 24), true);

    heal();
    await waitFor(pair, () => pair.primary.exited(), 'the superseded primary to stop', 15_000);
    assert.equal(await pair.primary.exit, 3, pair.logs());
    assert.equal(holds(topo, 'p', floating, 24), false, 'the fenced primary removed the floating address');
    assert.equal(holds(topo, 's', floating, 24), true, 'the survivor holds it');
    const lines = pair.primary.lines.map((l) => String(l.msg));
    const removed = lines.findIndex((m) => /^floating address .* removed \(fenced\)/.test(m));
    const fenced = lines.findIndex((m) => /^fenced by generation/.test(m));
    assert.ok(fenced >= 0 && removed > fenced, `the removal follows the fencing verdict\n${pair.logs()}`);
    // The client was never pointed back at the fenced node, and the survivor serves on.
    assert.equal(neighbour(topo, family, floating)?.lladdr, macS);
    assert.equal(await agent.command(floating, PORTS.service, ['GET', 'fenced']), 'not-lost');

    const events = (out: string): string[] => hookCalls(out).map((r) => `${r.argv![0]} ${r.argv![2]} ${r.argv![3]}`);
    // Cut off, it lost its standby (unprotected: said unless the verdict came first) and could not move the record: generation 1 to the end.
    assert.match(events(outs.primary).join(', '), /^serving 1 primary, protected 1 primary(, unprotected 1 primary, protected 1 primary)*(, unprotected 1 primary)?, fenced 1 fenced$/);
    const fencedRun = hookCalls(outs.primary).at(-1)!;
    assert.match(fencedRun.argv![4], /^fenced: /);
    assert.equal(fencedRun.env!.TANDEM_ROLE, 'fenced');
    assert.deepEqual(events(outs.secondary), ['standby 1 secondary', 'promoted 2 primary']);
    await pair.kill();
  });
});
