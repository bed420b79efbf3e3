/**
 * Many domains in one process (src/node/domains.ts): PrimaryDomains and
 * SecondaryDomains over the in-memory network, each domain a small sim
 * guest with its own service, stream and heartbeat channel. Each domain
 * keeps its own data; garbage on one domain's replication listener and the
 * loss of one domain's primary (its connections cut, as a partition of
 * that domain alone) leave the other protected and answering; the
 * secondary promotes that domain alone, with every acknowledged write, and
 * the old primary's domain, fenced once it hears of it, ends alone.
 */
import assert from 'node:assert/strict';
import type { Duplex } from 'node:stream';
import { after, describe, test } from 'node:test';
import { filter, firstValueFrom, timeout } from 'rxjs';
import { freePort } from '../../src/arbiter/local-etcd.js';
import type { TandemConfig } from '../../src/config/config.js';
import { domainsExitStatus } from '../../src/cli/domains.js';
import { domainConfigs } from '../../src/config/domains.js';
import { ErrorCodes } from '../../src/errors.js';
import { PrimaryDomains, SecondaryDomains } from '../../src/node/domains.js';
import type { PrimaryNode } from '../../src/node/primary.js';
import { TransportError, TransportErrorCodes } from '../../src/transport/errors.js';
import type { ConnectOptions, ListenOptions, OnConnection, Transport, TransportListener } from '../../src/transport/transport.js';
import { formatAddress, type Address } from '../../src/util/address.js';
import { ask } from '../guest/helpers.js';
import { tempDir } from '../helpers/cli.js';
import { hookCalls, writeRecordingHook } from '../helpers/hook-recorder.js';
import { MemoryTransport } from '../helpers/memory-transport.js';
import { silent } from '../helpers/sim.js';
import { SplitLedger } from '../helpers/split-ledger.js';
import { until } from '../helpers/wait.js';
import { nodeConfig } from './helpers.js';

const stops: (() => Promise<void>)[] = [];
const tmp = tempDir();
after(async () => {
  for (const s of stops.reverse()) await s();
  tmp.cleanup();
});

/** The primary host's view of the network, where the test can cut the connections to some addresses alone (one domain's secondary). */
class Partitionable implements Transport {
  private readonly open = new Map<string, Set<Duplex>>();
  private readonly blocked = new Set<string>();

  constructor(private readonly inner: MemoryTransport) {}

  async connect(to: Address, options: ConnectOptions): Promise<Duplex> {
    const key = formatAddress(to);
    if (this.blocked.has(key)) throw new TransportError(TransportErrorCodes.TRANSPORT_CONNECT_FAILED, `cannot connect to ${options.peer} at ${key}: network unreachable (test)`);
    const stream = await this.inner.connect(to, options);
    const set = this.open.get(key) ?? new Set();
    set.add(stream);
    this.open.set(key, set);
    stream.once('close', () => set.delete(stream));
    return stream;
  }

  listen(at: Address, onConnection: OnConnection, options: ListenOptions): Promise<TransportListener> {
    return this.inner.listen(at, onConnection, options);
  }

  /** Connections to these addresses are reset, and new ones fail, until heal(). */
  cut(addresses: Address[]): void {
    for (const a of addresses) {
      const key = formatAddress(a);
      this.blocked.add(key);
      for (const s of this.open.get(key) ?? []) s.destroy();
    }
  }

  heal(): void {
    this.blocked.clear();
  }
}

const NAMES = ['alpha', 'beta', 'gamma'];

/** A base configuration with `n` domains on the in-memory hosts, each with its own listener pair and services on loopback. */
async function domainsConfig(n: number): Promise<TandemConfig> {
  const base = nodeConfig();
  base.domain = { type: 'sim', memoryMib: 2, vcpus: 1, diskMib: 1 };
  // Four nodes share this process's event loop, and each pre-copy holds it a while: heartbeats get slack.
  base.heartbeat = { intervalMs: 30, timeoutMs: 600 };
  base.domains = [];
  for (let i = 0; i < n; i++) {
    const listen = { host: 'secondary', port: 7700 + 10 * i };
    const heartbeat = { host: 'secondary', port: 7701 + 10 * i };
    base.domains.push({
      name: NAMES[i],
      mode: undefined,
      domain: undefined,
      primary: { secondary: listen, heartbeat, service: { host: '127.0.0.1', port: await freePort() } },
      secondary: { listen, heartbeat, service: { host: '127.0.0.1', port: await freePort() } },
      colo: undefined,
    });
  }
  return base;
}

interface Pair {
  cfg: TandemConfig;
  primaries: PrimaryDomains;
  secondaries: SecondaryDomains;
  net: Partitionable;
  node(name: string): PrimaryNode;
  servicePort(name: string, role: 'primary' | 'secondary'): number;
}

async function startPair(n: number, change: (cfg: TandemConfig) => void = () => {}): Promise<Pair> {
  const cfg = await domainsConfig(n);
  change(cfg);
  const plans = domainConfigs(cfg);
  const secondaryHost = new MemoryTransport();
  const net = new Partitionable(secondaryHost.peer());
  const secondaries = new SecondaryDomains({ plans, mode: 'remus', transport: secondaryHost, logger: silent });
  await secondaries.start();
  stops.push(() => secondaries.stop('test'));
  const primaries = new PrimaryDomains({ plans, mode: 'remus', transport: net, logger: silent });
  await primaries.start();
  stops.push(() => primaries.stop('test'));
  const node = (name: string): PrimaryNode => primaries.nodes.get(name)!;
  for (const name of NAMES.slice(0, n)) {
    await firstValueFrom(node(name).protection!.state$.pipe(filter((s) => s.state === 'protected'), timeout(30_000)));
  }
  const plan = (name: string) => plans.find((p) => p.name === name)!;
  return { cfg, primaries, secondaries, net, node, servicePort: (name, role) => plan(name).cfg[role].service.port };
}

const text = (r: unknown): unknown => (Buffer.isBuffer(r) ? r.toString() : r);

/** Resolves once domain `name`'s primary has had `more` more epochs acked. */
async function moreAcked(pair: Pair, name: string, more: number): Promise<void> {
  const engine = pair.node(name).protection!;
  let seen = 0;
  await firstValueFrom(engine.metrics$.pipe(filter(() => ++seen >= more), timeout(10_000)));
}

describe('PrimaryDomains and SecondaryDomains: many domains over one process each', () => {
  test('three domains reach protected, each serving its own keys on its own service; hooks are told the domain', async () => {
    const hookOut = tmp.path('hook.jsonl');
    const hook = writeRecordingHook(tmp.path('hook'), hookOut);
    const pair = await startPair(3, (cfg) => (cfg.hooks.roleChange = hook));
    assert.deepEqual([...pair.primaries.runningDomains].sort(), ['alpha', 'beta', 'gamma']);
    assert.deepEqual([...pair.secondaries.runningDomains].sort(), ['alpha', 'beta', 'gamma']);
    const [alpha, beta, gamma] = NAMES.map((n) => pair.servicePort(n, 'primary'));
    assert.deepEqual((await ask(alpha, [['SET', 'k', 'from-alpha'], ['INCR', 'n']])).map(text), ['OK', 1]);
    // A write to alpha is not in beta or gamma: each domain is its own guest.
    assert.deepEqual((await ask(beta, [['GET', 'k'], ['SET', 'k', 'from-beta']])).map(text), [null, 'OK']);
    assert.deepEqual((await ask(gamma, [['GET', 'k'], ['GET', 'n']])).map(text), [null, null]);
    assert.deepEqual((await ask(alpha, [['GET', 'k']])).map(text), ['from-alpha']);
    // Each domain has its own stream: every secondary node holds epochs of its own primary.
    for (const name of NAMES) {
      const server = pair.secondaries.nodes.get(name)!.parts.server;
      assert.ok(server.lastEpoch >= 1, `${name}'s replica holds epoch ${server.lastEpoch}`);
    }
    await pair.primaries.stop('test');
    await pair.secondaries.stop('test');
    assert.deepEqual([...pair.primaries.endings.values()], ['stopped', 'stopped', 'stopped']);
    // One hook for the process; each run names its domain (argument and TANDEM_DOMAIN), and each domain had its own.
    const calls = hookCalls(hookOut);
    for (const c of calls) assert.equal(c.argv![1], c.env!.TANDEM_DOMAIN);
    const domainsOf = (event: string): string[] => [...new Set(calls.filter((c) => c.argv![0] === event).map((c) => c.env!.TANDEM_DOMAIN))].sort();
    assert.deepEqual(domainsOf('standby'), NAMES);
    assert.deepEqual(domainsOf('protected'), NAMES);
  });

  test("garbage on one domain's replication listener leaves both domains protected and answering", async () => {
    const pair = await startPair(2);
    const alphaListen = pair.cfg.domains![0].secondary!.listen!;
    // A forged connection, through the same network the primary uses, sends what is no Xen stream.
    const forged = await pair.net.connect(alphaListen, { timeoutMs: 1000, peer: 'the secondary' });
    const closed = new Promise<void>((resolve) => forged.once('close', () => resolve()));
    forged.on('error', () => {});
    forged.write(Buffer.from('GET / HTTP/1.1\r\n\r\n' + 'x'.repeat(4096)));
    await closed;
    // Both keep getting epochs acked, and their clients answered.
    await Promise.all([moreAcked(pair, 'alpha', 5), moreAcked(pair, 'beta', 5)]);
    for (const name of ['alpha', 'beta']) {
      assert.equal(pair.node(name).protection!.state, 'protected', `${name} is still protected`);
      assert.deepEqual((await ask(pair.servicePort(name, 'primary'), [['SET', 'after', name], ['GET', 'after']])).map(text), ['OK', name]);
      assert.equal(pair.secondaries.nodes.get(name)!.parts.promoter.promotion, undefined, `${name} was not promoted`);
    }
    await pair.primaries.stop('test');
    await pair.secondaries.stop('test');
  });

  test("one domain's primary cut off: the secondary promotes that domain alone with every acknowledged write; the other stays protected; the old one ends fenced alone", async () => {
    // Alpha's primary holds its output once unprotected (its own key), as a dead one gives none: its clients move to the promoted secondary.
    const pair = await startPair(2, (cfg) => (cfg.domains![0].primary!.onUnprotected = 'hold'));
    const entry = pair.cfg.domains![0];
    const ledger = new SplitLedger({
      targets: [
        { node: 'primary', host: '127.0.0.1', port: pair.servicePort('alpha', 'primary') },
        { node: 'secondary', host: '127.0.0.1', port: pair.servicePort('alpha', 'secondary') },
      ],
      keys: 4,
      prefix: 'alpha',
      requestTimeoutMs: 1000,
      slackMs: 200,
      hopMs: 0,
      thinkMs: 2,
    });
    ledger.start();
    await until(() => ledger.status().acked >= 40, 'acknowledged writes on alpha', 10_000);
    const betaEpochBefore = pair.secondaries.nodes.get('beta')!.parts.server.lastEpoch;

    // Alpha's primary loses its secondary's listener and heartbeat channel: as if that domain's primary died.
    pair.net.cut([entry.secondary!.listen!, entry.secondary!.heartbeat!]);
    const alphaSecondary = pair.secondaries.nodes.get('alpha')!;
    await until(() => alphaSecondary.parts.promoter.promotion !== undefined, "alpha's takeover", 10_000);
    await until(() => ledger.status().perNode.secondary >= 20, 'writes acknowledged by the promoted alpha', 10_000);
    const verdict = await ledger.verify(2000);
    ledger.stop();
    assert.deepEqual(verdict.anomalies, []);
    assert.equal(verdict.lostAckedWrites, 0, `acknowledged writes lost: ${JSON.stringify(verdict)}`);
    assert.deepEqual(verdict.answered, ['secondary']);

    // Beta: not promoted, still protected by its own primary, epochs still acked, its client answered.
    const betaSecondary = pair.secondaries.nodes.get('beta')!;
    assert.equal(betaSecondary.parts.promoter.promotion, undefined, 'beta was not promoted');
    await moreAcked(pair, 'beta', 5);
    assert.ok(betaSecondary.parts.server.lastEpoch > betaEpochBefore, 'beta\'s replica kept taking epochs');
    assert.equal(pair.node('beta').protection!.state, 'protected');
    assert.deepEqual((await ask(pair.servicePort('beta', 'primary'), [['SET', 'b', '1'], ['GET', 'b']])).map(text), ['OK', '1']);

    // Alpha's old primary hears generation 2 once the partition heals: fenced, it alone stops.
    pair.net.heal();
    await until(() => pair.primaries.endings.get('alpha') === 'fenced', "alpha's old primary fenced", 10_000);
    assert.deepEqual(pair.primaries.runningDomains, ['beta']);
    await assert.rejects(ask(pair.servicePort('alpha', 'primary'), [['PING']]), 'the fenced domain no longer accepts clients');
    assert.deepEqual((await ask(pair.servicePort('beta', 'primary'), [['GET', 'b']])).map(text), ['1']);
    await pair.primaries.stop('test');
    await pair.secondaries.stop('test');
    assert.equal(pair.primaries.endings.get('beta'), 'stopped');
  });

  test('every domain fenced, each alone: the runner ends once the last one has, and the process would exit 3', async () => {
    const pair = await startPair(2);
    let allEnded = false;
    void pair.primaries.whenAllEnded().then(() => (allEnded = true));
    for (const [i, name] of ['alpha', 'beta'].entries()) {
      const entry = pair.cfg.domains![i];
      pair.net.cut([entry.secondary!.listen!, entry.secondary!.heartbeat!]);
      await until(() => pair.secondaries.nodes.get(name)!.parts.promoter.promotion !== undefined, `${name}'s takeover`, 30_000);
      pair.net.heal();
      await until(() => pair.primaries.endings.get(name) === 'fenced', `${name}'s old primary fenced`, 30_000);
      // The runner ends only with its last domain.
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(allEnded, i === 1, `after ${name}: the runner ${allEnded ? 'ended' : 'runs'}`);
    }
    await pair.primaries.whenAllEnded();
    assert.deepEqual(pair.primaries.runningDomains, []);
    assert.equal(domainsExitStatus(pair.primaries.endings.values()), 3);
    // The secondary serves both, each promoted from its own replica, and runs on.
    assert.deepEqual([...pair.secondaries.runningDomains].sort(), ['alpha', 'beta']);
    for (const name of ['alpha', 'beta']) {
      assert.deepEqual((await ask(pair.servicePort(name, 'secondary'), [['SET', 'x', name], ['GET', 'x']])).map(text), ['OK', name]);
    }
    await pair.secondaries.stop('test');
  });

  test('a domain that cannot start is left out and the others run; none starting is an error', async () => {
    const cfg = await domainsConfig(2);
    const plans = domainConfigs(cfg);
    const host = new MemoryTransport();
    // Beta's replication address is taken: its secondary cannot listen there.
    const squatter = await host.listen(plans[1].cfg.secondary.listen, () => {}, { purpose: 'a squatter' });
    const secondaries = new SecondaryDomains({ plans, mode: 'remus', transport: host, logger: silent });
    await secondaries.start();
    stops.push(() => secondaries.stop('test'));
    assert.deepEqual(secondaries.runningDomains, ['alpha']);
    assert.equal(secondaries.endings.get('beta'), 'failed');
    // What beta started before it failed is gone: its heartbeat address is free again.
    const hb = await host.listen(plans[1].cfg.secondary.heartbeat!, () => {}, { purpose: 'a check' });
    await hb.close();
    await secondaries.stop('test');

    const alone = new SecondaryDomains({ plans: [plans[1]], mode: 'remus', transport: host, logger: silent });
    await assert.rejects(alone.start(), (e: unknown) => e instanceof Error && 'code' in e && e.code === ErrorCodes.DOMAINS_NONE_STARTED && /no domain started \(beta\)/.test(e.message));
    await squatter.close();
  });
});
