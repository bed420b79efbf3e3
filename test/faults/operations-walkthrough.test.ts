/**
 * docs/operations.md, followed step by step on one machine: network
 * namespaces stand in for the hosts (test/helpers/netns.ts), on the
 * document's own subnet, so every address in it is the real one here:
 * `hosta` is host-a (10.0.0.1), `hostb` host-b (10.0.0.2), `etcd` the etcd
 * member (10.0.0.3), and `client` (10.0.0.4) the machine that is neither
 * host: the CA is made there and the clients write from there.
 *
 * What the test takes from the document rather than restating it: the
 * `tandem certs init` command, the commands that copy each host's files,
 * the etcd command line, and the configuration file (host-a's as shown,
 * host-b's the same "with the addresses and names swapped"). They are read
 * out of docs/operations.md and run with only paths changed (/etc/tandem
 * and the CA's directory under the run's temporary directory) and these
 * differences, each a stand-in for something a test machine has not got:
 *
 * - the real CLI (`node dist/src/cli/main.js`, the command the units'
 *   ExecStart runs) in a namespace instead of systemd: "systemctl start
 *   tandem-secondary" is `tandem secondary --config tandem.yaml` started in
 *   the host's namespace, "systemctl stop" its SIGTERM. The units themselves
 *   are checked by test/cli/systemd-units.test.ts;
 * - no `tandem` user: the `install` commands run without `-o`/`-g` (the
 *   modes stay as written);
 * - one etcd member (m3), not three: `--initial-cluster` keeps m3's entry
 *   and the nodes' `arbiter.endpoints` the one address. What the nodes ask
 *   of etcd is the same of one member as of three; the document's three are
 *   for etcd's own availability, which is etcd's business, not Tandem's;
 * - "the new package" of an upgrade is this same build.
 *
 * The operator's commands (`tandem status`, `switchover`, `failover`,
 * `etcdctl`) run in the namespace of the host whose monitor they ask, with
 * that host's token file, as the document's `$(cat
 * /etc/tandem/monitor-token)` has it. The upgrade's restart of host-b's
 * secondary is also where its configuration gets `primary.on_stop:
 * switchover` (read at start), so that both ways the document gives of
 * moving a guest off a node that took over are walked: stop and `tandem
 * failover` (host-a, `stand-down`), and stop alone (host-b, `switchover`).
 *
 * A client ledger (test/helpers/split-ledger.ts, run by the agent in
 * `client`) writes through both hosts' service addresses (10.0.0.1:6379 and
 * 10.0.0.2:6379, as a TCP load balancer in front of both would) during
 * each move of the guest: one ledger per move (the ledger orders nodes by
 * their first answer, so a guest that comes back to a host is a new
 * ledger), each judged at the move's end: nothing acknowledged lost, never
 * two nodes answering. At the end every ledger's counters are read again
 * from the last node serving.
 *
 * The steps are the document's sections, in order, one test each; a step
 * after a failed one fails at once (it needs the state the failed one
 * should have left). Everything the run started (namespaces, processes,
 * the temporary directory) goes in `after`, whatever failed.
 */
import assert from 'node:assert/strict';
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { copyFileSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { CLI, REPO_ROOT } from '../helpers/cli.js';
import { ETCD_BINARY } from '../helpers/etcd.js';
import { ledgerProblems, msg, spawnIn, type NsProcess } from '../helpers/fault-cluster.js';
import { Topology, type NodeName } from '../helpers/netns.js';
import { startAgent, type Agent } from '../helpers/ns-agent.js';
import type { LedgerVerdict } from '../helpers/split-ledger.js';
import { until } from '../helpers/wait.js';

const DOC_PATH = `${REPO_ROOT}docs/operations.md`;
const DOC = readFileSync(DOC_PATH, 'utf8');

// ---------------------------------------------------------------- reading the document

/** The body of the first fenced block of `lang` after `marker` in the document. */
function docBlock(marker: string, lang: string): string {
  const at = DOC.indexOf(marker);
  assert.ok(at >= 0, `docs/operations.md no longer says "${marker}": this test follows it, update both`);
  const fence = `\`\`\`${lang}\n`;
  const open = DOC.indexOf(fence, at);
  assert.ok(open >= 0, `docs/operations.md: no \`\`\`${lang} block after "${marker}"`);
  const start = open + fence.length;
  return DOC.slice(start, DOC.indexOf('```', start));
}

/** The first line of a block that starts with `prefix` (comments after `#` removed). */
function docLine(block: string, prefix: string): string {
  const line = block.split('\n').find((l) => l.trimStart().startsWith(prefix));
  assert.ok(line !== undefined, `docs/operations.md: no line starting "${prefix}" in\n${block}`);
  return line.replace(/\s+#.*$/, '').trim();
}

/** `text` with every `from` replaced, insisting that it was there (a changed document must fail here, not run something else). */
function replaced(text: string, from: string | RegExp, to: string): string {
  const found = typeof from === 'string' ? text.includes(from) : from.test(text);
  assert.ok(found, `docs/operations.md: expected ${String(from)} in\n${text}`);
  return typeof from === 'string' ? text.replaceAll(from, to) : text.replace(new RegExp(from.source, from.flags.includes('g') ? from.flags : `${from.flags}g`), to);
}

/** host-a's text as host-b's: "the same with the addresses and names swapped". */
function swapHosts(text: string): string {
  return text
    .replaceAll('10.0.0.1', '\0A')
    .replaceAll('10.0.0.2', '10.0.0.1')
    .replaceAll('\0A', '10.0.0.2')
    .replaceAll('host-a', '\0H')
    .replaceAll('host-b', 'host-a')
    .replaceAll('\0H', 'host-b');
}

// ---------------------------------------------------------------- the hosts

interface Host {
  /** Its name in the document (and its node's name: certificate, arbiter). */
  name: 'host-a' | 'host-b';
  ns: NodeName;
  ip: string;
  /** What the document calls /etc/tandem on this host. */
  etc: string;
  config: string;
  token: string;
  /** Every `tandem` process this host ran, in order. */
  procs: NsProcess[];
}

let topo: Topology | undefined;
let agent: Agent | undefined;
after(() => {
  agent?.stop();
  topo?.cleanup();
});

const net = (): Topology => {
  assert.ok(topo !== undefined, 'the network is not up');
  return topo;
};

const hosts = {} as Record<'a' | 'b', Host>;
let caDir = '';
let caFingerprint = '';
let etcdProc: NsProcess | undefined;
/** Each move's ledger: its key prefix and what it saw acknowledged. */
const ledgers: { prefix: string; verdict: LedgerVerdict }[] = [];
const LEDGER_KEYS = 8;
const SERVICE_PORT = 6379;
const MONITOR_PORT = 7790;

interface Run {
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** A short command in a host's namespace, as an operator runs it there; never blocks the test's event loop (the nodes' logs keep flowing). */
function runIn(ns: NodeName, argv: string[], options: { env?: Record<string, string>; cwd?: string; timeoutMs?: number } = {}): Promise<Run> {
  const child = net().spawn(ns, argv, { env: { ...process.env, ...options.env }, cwd: options.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 60_000);
  return new Promise((resolve) =>
    child.once('close', (status, signal) => {
      clearTimeout(timer);
      resolve({ status, signal, stdout, stderr });
    }),
  );
}

const shown = (r: Run): string => `status ${r.status ?? r.signal}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`;

/** `tandem ARGS` on `host`, with TANDEM_MONITOR_TOKEN=$(cat /etc/tandem/monitor-token) as the document's commands set it. */
function tandemOn(host: Host, args: string[]): Promise<Run> {
  return runIn(host.ns, [process.execPath, CLI, ...args], { env: { TANDEM_MONITOR_TOKEN: readFileSync(host.token, 'utf8').trim() } });
}

const monitorUrl = (host: Host): string => `http://${host.ip}:${MONITOR_PORT}/`;

/** "systemctl start tandem-ROLE" on `host`: the unit's ExecStart, in the host's namespace. */
function startUnit(host: Host, role: 'primary' | 'secondary'): NsProcess {
  const p = spawnIn(net(), host.ns, `${host.name} ${role}#${host.procs.length + 1}`, [process.execPath, CLI, role, '--config', host.config]);
  host.procs.push(p);
  return p;
}

const current = (host: Host): NsProcess => {
  const p = host.procs.at(-1);
  assert.ok(p !== undefined, `${host.name} runs nothing`);
  return p;
};

function logs(): string {
  return [...hosts.a.procs, ...hosts.b.procs].map((p) => p.tail(20)).join('\n');
}

/** `tandem status` on the host, until `pred` holds of its result. */
async function waitStatus(host: Host, pred: (r: Run) => boolean, what: string, timeoutMs = 60_000): Promise<Run> {
  let last: Run | undefined;
  try {
    await until(
      async () => {
        last = await tandemOn(host, ['status', monitorUrl(host)]);
        return pred(last);
      },
      `tandem status on ${host.name} to show ${what}`,
      timeoutMs,
      250,
    );
  } catch (err) {
    throw new Error(`${(err as Error).message}\nlast: ${last === undefined ? '-' : shown(last)}\n${logs()}`, { cause: err });
  }
  return last!;
}

const stateLine = (r: Run): string => /^state:\s+(.*)$/m.exec(r.stdout)?.[1] ?? '';

/** The etcdctl of the document, from `host` with its own certificate: every key under the guest's prefix and its value. */
async function etcdKeys(host: Host): Promise<Record<string, { node: string; generation: number; protected: boolean }>> {
  const tls = join(host.etc, 'tls');
  const r = await runIn(host.ns, ['etcdctl', '--endpoints', 'https://10.0.0.3:2379', '--cacert', join(tls, 'ca.crt'), '--cert', join(tls, `${host.name}.crt`), '--key', join(tls, `${host.name}.key`), 'get', '--prefix', '/tandem/guest/']);
  assert.equal(r.status, 0, `etcdctl get (is Debian's etcd-client installed?): ${shown(r)}`);
  const lines = r.stdout.split('\n').filter((l) => l !== '');
  const out: Record<string, { node: string; generation: number; protected: boolean }> = {};
  for (let i = 0; i + 1 < lines.length; i += 2) out[lines[i]] = JSON.parse(lines[i + 1]) as { node: string; generation: number; protected: boolean };
  return out;
}

async function waitOwner(host: Host, generation: number, protectedToo: boolean): Promise<void> {
  let seen: unknown;
  await until(
    async () => {
      const keys = await etcdKeys(host);
      seen = keys;
      const owner = keys['/tandem/guest/owner'];
      return owner !== undefined && owner.node === host.name && owner.generation === generation && (!protectedToo || owner.protected);
    },
    `etcd to record ${host.name} as the owner at generation ${generation}${protectedToo ? ', protected' : ''}`,
    60_000,
    250,
  ).catch((err: unknown) => {
    throw new Error(`${(err as Error).message}: ${JSON.stringify(seen)}\n${logs()}`, { cause: err });
  });
}

/** A scrape of the host's /metrics (with its token, as allow_remote_read is off): one metric's value. */
async function metric(host: Host, name: string): Promise<number | undefined> {
  const script = `fetch(process.argv[1], { headers: { authorization: 'Bearer ' + process.env.TANDEM_MONITOR_TOKEN } }).then(async (r) => { if (!r.ok) process.exit(1); process.stdout.write(await r.text()); })`;
  const r = await runIn(host.ns, [process.execPath, '-e', script, `${monitorUrl(host)}metrics`], { env: { TANDEM_MONITOR_TOKEN: readFileSync(host.token, 'utf8').trim() } });
  assert.equal(r.status, 0, `scraping ${host.name}'s metrics: ${shown(r)}`);
  const line = r.stdout.split('\n').find((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`));
  return line === undefined ? undefined : Number(line.split(' ').at(-1));
}

// ---------------------------------------------------------------- the ledger, one per move

async function startLedger(prefix: string): Promise<void> {
  await agent!.startLedger({
    targets: [
      { node: 'host-a', host: hosts.a.ip, port: SERVICE_PORT },
      { node: 'host-b', host: hosts.b.ip, port: SERVICE_PORT },
    ],
    keys: LEDGER_KEYS,
    prefix,
    requestTimeoutMs: 1000,
    slackMs: 1000,
    hopMs: 500,
    thinkMs: 10,
  });
  await waitAcks(20);
}

async function waitAcks(more: number): Promise<void> {
  const base = (await agent!.ledgerStatus()).acked;
  await until(async () => (await agent!.ledgerStatus()).acked >= base + more, `${more} more acknowledged writes`, 60_000, 100).catch(async (err: unknown) => {
    throw new Error(`${(err as Error).message}: ${JSON.stringify(await agent!.ledgerStatus())}\n${logs()}`, { cause: err });
  });
}

/** The move's ledger judged: nothing acknowledged lost, one node serving (`survivor`), and both `from` and `survivor` acknowledged writes in it. */
async function endLedger(prefix: string, from: Host, survivor: Host): Promise<void> {
  await waitAcks(20);
  const v = await agent!.verifyLedger();
  const problems = ledgerProblems(v);
  if (v.answered.length !== 1 || v.answered[0] !== survivor.name) problems.push(`expected only ${survivor.name} to answer the final read, answered: ${v.answered.join(', ') || 'nobody'}`);
  for (const h of new Set([from.name, survivor.name])) if ((v.perNode[h] ?? 0) === 0) problems.push(`${h} acknowledged nothing in this move`);
  if (problems.length > 0) throw new Error(`ledger ${prefix}: ${problems.join('; ')}\n${JSON.stringify({ ...v, values: undefined, maxAcked: undefined })}\n${logs()}`);
  ledgers.push({ prefix, verdict: v });
}

// ---------------------------------------------------------------- the walk-through

let failed: string | undefined;

/** One step of the document: fails at once if an earlier one did. */
function step(name: string, body: () => Promise<void> | void, timeoutMs = 180_000): void {
  test(name, { timeout: timeoutMs }, async () => {
    if (failed !== undefined) throw new Error(`not run: the step "${failed}" failed, and this one needs what it should have left`);
    try {
      await body();
    } catch (err) {
      failed = name;
      throw err;
    }
  });
}

describe('docs/operations.md, walked through on two hosts (network namespaces)', () => {
  step('the network: host-a, host-b, etcd and a client on the document\'s 10.0.0.0/24', () => {
    topo = Topology.create({ nodes: ['hosta', 'hostb', 'etcd', 'client'], subnet: '10.0.0' });
    assert.deepEqual([topo.ip('hosta'), topo.ip('hostb'), topo.ip('etcd')], ['10.0.0.1', '10.0.0.2', '10.0.0.3']);
    agent = startAgent(topo, 'client');
    for (const [key, name, ns] of [['a', 'host-a', 'hosta'], ['b', 'host-b', 'hostb']] as const) {
      const etc = join(topo.dir, name, 'etc', 'tandem');
      hosts[key] = { name, ns, ip: topo.ip(ns), etc, config: join(etc, 'tandem.yaml'), token: join(etc, 'monitor-token'), procs: [] };
    }
  });

  step('Certificates: `tandem certs init` on a third machine; each host gets only its own files, its key 0600', async () => {
    const section = DOC.slice(DOC.indexOf('## Certificates'));
    const init = docLine(docBlock('## Certificates', 'sh'), 'tandem certs init');
    caDir = join(net().dir, 'root', 'tandem-ca');
    mkdirSync(join(net().dir, 'root'));
    const args = replaced(init, '/root/tandem-ca', caDir).split(/\s+/).slice(1);
    assert.deepEqual(args.slice(3), ['--nodes', 'host-a,host-b', '--etcd', '10.0.0.3,10.0.0.4,10.0.0.5']);
    const r = await runIn('client', [process.execPath, CLI, ...args]);
    assert.equal(r.status, 0, shown(r));
    caFingerprint = /CA fingerprint \(SHA-256\): ([0-9A-F:]+)/.exec(r.stdout)?.[1] ?? '';
    assert.match(caFingerprint, /^([0-9A-F]{2}:){31}[0-9A-F]{2}$/, r.stdout);
    // What the document says it makes.
    for (const f of ['ca.crt', 'ca.key', 'host-a.crt', 'host-a.key', 'host-b.crt', 'host-b.key', 'etcd.crt', 'etcd.key']) assert.ok(readdirSync(caDir).includes(f), `certs init made no ${f}: ${readdirSync(caDir).join(' ')}`);

    // "on host-a (host-b the same with its own name)": the three install lines, run in the CA's directory.
    const copy = section.slice(section.indexOf('# on host-a'));
    const installs = copy.slice(0, copy.indexOf('```')).split('\n').filter((l) => l.startsWith('install '));
    assert.equal(installs.length, 3, `expected three install commands after "# on host-a":\n${copy}`);
    for (const host of [hosts.a, hosts.b]) {
      mkdirSync(host.etc, { recursive: true });
      for (const line of installs) {
        // No `tandem` user on a test machine: owner and group flags go, the modes stay.
        const cmd = replaced(host.name === 'host-b' ? swapHosts(line) : line, '/etc/tandem', host.etc).replace(/ -o \S+ -g \S+/, '');
        const done = spawnSync('sh', ['-c', cmd], { cwd: caDir, encoding: 'utf8' });
        assert.equal(done.status, 0, `${cmd}: ${done.stderr}`);
      }
      const tls = join(host.etc, 'tls');
      assert.deepEqual(readdirSync(tls).sort(), ['ca.crt', `${host.name}.crt`, `${host.name}.key`], `${host.name} must get only its own files (never ca.key)`);
      assert.equal(statSync(join(tls, `${host.name}.key`)).mode & 0o777, 0o600);
      assert.equal(statSync(tls).mode & 0o777, 0o750);
    }
  });

  step('The arbiter: etcd from the document\'s command line, TLS both ways; `etcdctl endpoint health` is good', async () => {
    const etcdctl = spawnSync('etcdctl', ['version'], { encoding: 'utf8' });
    assert.equal(etcdctl.status, 0, `the document checks etcd with etcdctl: install Debian's etcd-client (${etcdctl.error?.message ?? etcdctl.stderr})`);
    const cmd = docBlock('Run three members', 'sh').replace(/\\\n\s*/g, ' ').trim();
    const argv = cmd.split(/\s+/);
    assert.equal(argv[0], 'etcd');
    // The etcd machine gets the CA's certificate and the members' certificate and key.
    const etcdDir = join(net().dir, 'etcd-m3');
    mkdirSync(etcdDir);
    for (const f of ['ca.crt', 'etcd.crt', 'etcd.key']) copyFileSync(join(caDir, f), join(etcdDir, f));
    const flag = (name: string): number => {
      const i = argv.indexOf(name);
      assert.ok(i > 0, `the document's etcd command has no ${name}`);
      return i + 1;
    };
    for (const f of ['--client-cert-auth', '--peer-client-cert-auth']) assert.ok(argv.includes(f), `TLS both ways: the document's etcd command lacks ${f}`);
    argv[0] = ETCD_BINARY;
    argv[flag('--data-dir')] = join(etcdDir, 'data');
    for (const f of ['--cert-file', '--key-file', '--trusted-ca-file', '--peer-cert-file', '--peer-key-file', '--peer-trusted-ca-file']) argv[flag(f)] = join(etcdDir, argv[flag(f)]);
    // One member on a test machine: the cluster is m3 alone.
    const cluster = argv[flag('--initial-cluster')].split(',').filter((m) => m.startsWith(`${argv[flag('--name')]}=`));
    assert.equal(cluster.length, 1, cmd);
    argv[flag('--initial-cluster')] = cluster[0];
    assert.equal(argv[flag('--listen-client-urls')], 'https://10.0.0.3:2379');
    etcdProc = spawnIn(net(), 'etcd', 'etcd m3', argv);

    let last: Run | undefined;
    await until(
      async () => {
        if (etcdProc!.exited()) throw new Error(`etcd exited (Debian's etcd-server installed?):\n${etcdProc!.tail()}`);
        const tls = join(hosts.a.etc, 'tls');
        last = await runIn('hosta', ['etcdctl', '--endpoints', 'https://10.0.0.3:2379', '--cacert', join(tls, 'ca.crt'), '--cert', join(tls, 'host-a.crt'), '--key', join(tls, 'host-a.key'), 'endpoint', 'health']);
        return last.status === 0;
      },
      'etcdctl endpoint health',
      60_000,
      250,
    ).catch((err: unknown) => {
      throw new Error(`${(err as Error).message}: ${last === undefined ? '' : shown(last)}\n${etcdProc!.tail()}`, { cause: err });
    });
    assert.match(`${last!.stdout}${last!.stderr}`, /https:\/\/10\.0\.0\.3:2379 is healthy/);
    // Without a client certificate of the pair's CA, etcd refuses (TLS both ways).
    const anon = await runIn('hosta', ['etcdctl', '--endpoints', 'https://10.0.0.3:2379', '--cacert', join(hosts.a.etc, 'tls', 'ca.crt'), '--dial-timeout', '2s', '--command-timeout', '3s', 'endpoint', 'health']);
    assert.notEqual(anon.status, 0, `etcd answered a client without a certificate: ${shown(anon)}`);
  });

  step('Configuration: the document\'s tandem.yaml on each host, the monitor\'s token file; `tandem config check` passes both', async () => {
    const template = docBlock('On `host-a`:', 'yaml');
    for (const host of [hosts.a, hosts.b]) {
      // host-b's: "the same with the addresses and names swapped".
      let text = host === hosts.a ? template : swapHosts(template);
      text = replaced(text, '/etc/tandem/tls', join(host.etc, 'tls'));
      text = replaced(text, '/etc/tandem/monitor-token', host.token);
      // One etcd member here (see the header).
      text = replaced(text, '[10.0.0.3:2379, 10.0.0.4:2379, 10.0.0.5:2379]', '[10.0.0.3:2379]');
      writeFileSync(host.config, text);
    }
    // "head -c 24 /dev/urandom | base64", mode 0600.
    const recipe = /`(head -c 24 \/dev\/urandom \| base64)`/.exec(DOC)?.[1];
    assert.ok(recipe !== undefined, "the document's recipe for the token");
    for (const host of [hosts.a, hosts.b]) {
      const wrote: SpawnSyncReturns<string> = spawnSync('sh', ['-c', `umask 077; ${recipe} > '${host.token}'`], { encoding: 'utf8' });
      assert.equal(wrote.status, 0, wrote.stderr);
      assert.equal(statSync(host.token).mode & 0o777, 0o600);
    }
    assert.notEqual(readFileSync(hosts.a.token, 'utf8'), readFileSync(hosts.b.token, 'utf8'));
    for (const host of [hosts.a, hosts.b]) {
      const other = host === hosts.a ? hosts.b : hosts.a;
      const r = await tandemOn(host, ['config', 'check', host.config]);
      assert.equal(r.status, 0, shown(r));
      assert.equal(r.stderr, '', 'no warning');
      for (const said of [
        `primary: protects to ${other.ip}:7700`,
        `serves ${host.ip}:6379`,
        `secondary: listens on ${host.ip}:7700, serves ${host.ip}:6379 after a failover`,
        `mutual TLS as "${host.name}" accepting "${other.name}"`,
        `monitor on ${host.ip}:${MONITOR_PORT} (control token set)`,
        'arbiter etcd at 10.0.0.3:2379',
      ]) {
        assert.ok(r.stdout.includes(said), `config check on ${host.name} should say "${said}": ${r.stdout}`);
      }
    }
  });

  step('Start order: the secondary on host-b, then the primary on host-a; `tandem status` says protected', async () => {
    const secondary = startUnit(hosts.b, 'secondary');
    await secondary.waitLine(msg(/^secondary listening on 10\.0\.0\.2:7700$/), 'host-b: secondary listening');
    const hb = await secondary.waitLine(msg(/^heartbeat channel listening$/), 'host-b: its heartbeat channel');
    assert.equal(hb.heartbeat, '10.0.0.2:7701');
    // "A node logs its CA's fingerprint at start; tandem certs init printed the same one."
    assert.equal((await secondary.waitLine((l) => typeof l.ca === 'string', "host-b: its CA's fingerprint")).ca, caFingerprint);

    const primary = startUnit(hosts.a, 'primary');
    assert.equal((await primary.waitLine((l) => typeof l.ca === 'string', "host-a: its CA's fingerprint")).ca, caFingerprint);
    await primary.waitLine(msg(/^guest service on 10\.0\.0\.1:6379$/), 'host-a: serving the guest', 60_000);
    await primary.waitLine((l) => l.state === 'protected', 'host-a: protected', 120_000);
    // "It takes the domain from etcd (generation 1 the first time)"; etcdctl shows both keys.
    await waitOwner(hosts.a, 1, true);
    const keys = await etcdKeys(hosts.a);
    assert.deepEqual(Object.keys(keys).sort(), ['/tandem/guest/generation', '/tandem/guest/owner']);
    assert.equal(keys['/tandem/guest/generation'].node, 'host-a');

    const r = await waitStatus(hosts.a, (s) => s.status === 0, 'exit status 0');
    assert.match(stateLine(r), /^protected \(/, r.stdout);
    // Epochs are numbered within a session. Usually session 1; a pre-copy cut short (a 250 ms heartbeat
    // timeout on a loaded machine) is retried as session 2: whichever it is, state and epoch agree on it.
    const session = /^epoch:\s+\d+ \(session (\d+)\)$/m.exec(r.stdout);
    assert.ok(session !== null, r.stdout);
    assert.match(stateLine(r), new RegExp(`^protected \\(session ${session[1]}: `), r.stdout);
    assert.match(r.stdout, /^lag:\s+[\d.]+ ms$/m, 'the replication lag');
    assert.match(r.stdout, /^controls:.*\bswitchover\b/m);
    // Without the token, a monitor off loopback does not even answer a read.
    const anon = await runIn('hosta', [process.execPath, CLI, 'status', monitorUrl(hosts.a)]);
    assert.notEqual(anon.status, 0, shown(anon));
    assert.doesNotMatch(anon.stdout, /protected/);
  });

  step('Switchover (planned): `tandem switchover` on host-a; host-b serves, the old primary exits 0; host-a\'s secondary makes it protected again', async () => {
    await startLedger('move1');
    const primary = current(hosts.a);
    const promoted = current(hosts.b);
    const r = await tandemOn(hosts.a, ['switchover', monitorUrl(hosts.a)]);
    assert.equal(r.status, 0, shown(r));
    assert.match(r.stdout, /switchover/);
    // "The old primary exits with status 0."
    assert.equal(await primary.exit, 0, primary.tail());
    await primary.waitLine(msg(/switchover: a last checkpoint, then the secondary takes over/), 'host-a: stopping in order (switchover)');
    // "the secondary takes over at once, at the next generation, and serves on its secondary.service"
    const over = await promoted.waitLine(msg(/^FAILED OVER/), 'host-b: takes over', 60_000);
    assert.match(String(over.msg), /^FAILED OVER \(planned switchover: the primary stopped in order and handed over; taking over as generation 2\)/);
    assert.equal(over.service, '10.0.0.2:6379');
    await waitOwner(hosts.b, 2, false);
    assert.equal(await metric(hosts.b, 'tandem_failovers_total'), 1, 'a switchover counts as a failover (TandemFailover fires)');
    await waitAcks(20);

    // "On the old host, systemctl start tandem-secondary makes it the new primary's standby."
    const standby = startUnit(hosts.a, 'secondary');
    await standby.waitLine(msg(/^secondary listening on 10\.0\.0\.1:7700$/), 'host-a: secondary listening');
    const s = await waitStatus(hosts.b, (x) => /protected again/.test(stateLine(x)), 'protected again', 120_000);
    assert.equal(s.status, 0, shown(s));
    assert.match(stateLine(s), /^failed-over \(the guest runs here from epoch \d+, serving 10\.0\.0\.2:6379; protected again/);
    // Serving and protected again, it holds output for its epochs as any primary does: a size, not "none".
    assert.match(s.stdout, /^ {2}held output +\d+(\.\d)? (B|KiB|MiB)\b/m, shown(s));
    await waitOwner(hosts.b, 2, true);
    // A promoted node's monitor is still its secondary's: no switchover offered.
    assert.match(s.stdout, /^controls:\s+failover$/m);
    await endLedger('move1', hosts.a, hosts.b);
  });

  step('Failover and failback: kill -9 host-b\'s node; host-a takes over; a primary on host-b is refused (3); a secondary there makes it protected again', async () => {
    await startLedger('move2');
    const dying = current(hosts.b);
    const survivor = current(hosts.a);
    dying.signal('SIGKILL');
    assert.equal(await dying.exit, 'SIGKILL');
    // "Its log says FAILED OVER at error level."
    const over = await survivor.waitLine(msg(/^FAILED OVER/), 'host-a: FAILED OVER', 60_000);
    assert.equal(over.level, 50);
    assert.equal(over.service, '10.0.0.1:6379');
    await waitOwner(hosts.a, 3, false);
    assert.equal(await metric(hosts.a, 'tandem_failovers_total'), 1);
    // "The survivor runs the guest unprotected."
    const unprotected = await waitStatus(hosts.a, (x) => /unprotected/.test(stateLine(x)), 'unprotected');
    assert.match(stateLine(unprotected), /^failed-over \(the guest runs here from epoch \d+, serving 10\.0\.0\.1:6379; unprotected \(/);
    // "It exits with status 4 until then": serving, but with no standby, it fails the check.
    assert.equal(unprotected.status, 4, `a node that took over and serves unprotected fails tandem status as a check: ${shown(unprotected)}`);
    await waitAcks(20);

    // "A restarted tandem-primary there would be refused (... exit status 3)": the survivor holds the domain under a live lease.
    const refused = await tandemOn(hosts.b, ['primary', '--config', hosts.b.config]);
    assert.equal(refused.status, 3, shown(refused));
    assert.match(refused.stderr, /^tandem: error: the domain is held by node host-a at generation 3 \(its lease is live\): this node does not serve it \[ERR_ARBITER_HELD\]$/m);
    assert.equal(await etcdKeys(hosts.a).then((k) => k['/tandem/guest/owner']?.node), 'host-a', 'the refused primary took nothing');

    // Failback: "systemctl start tandem-secondary" on the host that went.
    const back = startUnit(hosts.b, 'secondary');
    await back.waitLine(msg(/^secondary listening on 10\.0\.0\.2:7700$/), 'host-b: secondary listening');
    const s = await waitStatus(hosts.a, (x) => /protected again/.test(stateLine(x)), 'protected again', 120_000);
    assert.equal(s.status, 0, shown(s));
    await waitOwner(hosts.a, 3, true);
    await endLedger('move2', hosts.b, hosts.a);
  });

  step('Upgrading, one node at a time: host-b\'s secondary restarted, the guest moved to host-b, host-a its standby', async () => {
    await startLedger('move3');
    // 1. On host-b: stop tandem-secondary, (install), start it; wait for protected.
    const old = current(hosts.b);
    old.signal('SIGTERM');
    assert.equal(await old.exit, 0, old.tail());
    const exposed = await waitStatus(hosts.a, (x) => /unprotected/.test(stateLine(x)), 'unprotected while host-b is stopped');
    // Serving with no standby: the check command says so (exit 4) until it is protected again.
    assert.equal(exposed.status, 4, shown(exposed));
    await waitAcks(20);
    // A node reads its configuration as it starts: the restart is when host-b can be told to hand the guest
    // over when it is stopped while it serves (primary.on_stop: switchover; the last step stops it so).
    writeFileSync(hosts.b.config, replaced(readFileSync(hosts.b.config, 'utf8'), /on_stop: stand-down\b/, 'on_stop: switchover'));
    const checked = await tandemOn(hosts.b, ['config', 'check', hosts.b.config]);
    assert.equal(checked.status, 0, shown(checked));
    const upgraded = startUnit(hosts.b, 'secondary');
    await upgraded.waitLine(msg(/^secondary listening on 10\.0\.0\.2:7700$/), 'host-b: secondary listening');
    await waitStatus(hosts.a, (x) => /protected again/.test(stateLine(x)), 'protected again', 120_000);

    // 2. Switch over to host-b. host-a serves as the secondary that took over: its monitor offers no switchover.
    const refused = await tandemOn(hosts.a, ['switchover', monitorUrl(hosts.a)]);
    assert.equal(refused.status, 1, shown(refused));
    assert.match(refused.stderr, /switchover is not offered by this node \(offered: failover\)/);
    await waitAcks(20);
    // What the document says instead: stop it (on_stop: stand-down, as configured: host-b keeps its replica and waits) ...
    const serving = current(hosts.a);
    serving.signal('SIGTERM');
    assert.equal(await serving.exit, 0, serving.tail());
    await serving.waitLine(msg(/standing the secondary down/), 'host-a: stands host-b down');
    await upgraded.waitLine(msg(/stands this node down: no failover/), 'host-b: stood down');
    assert.equal(upgraded.lines.some(msg(/^FAILED OVER/)), false, 'host-b must not take over by itself after a stand-down');
    // ... then `tandem failover` on host-b's monitor resumes the guest there from that replica, at the next generation.
    const last = (await etcdKeys(hosts.b))['/tandem/guest/generation'];
    assert.equal(last?.node, 'host-a', JSON.stringify(last));
    const f = await tandemOn(hosts.b, ['failover', monitorUrl(hosts.b)]);
    assert.equal(f.status, 0, shown(f));
    assert.match(f.stdout, /failed over: the guest runs here from epoch \d+, serving 10\.0\.0\.2:6379/);
    await upgraded.waitLine(msg(/^FAILED OVER \(operator request from the monitor; taking over as generation \d+\)/), 'host-b: FAILED OVER (operator request)');
    await waitOwner(hosts.b, last.generation + 1, false);

    // 3. On host-a: start tandem-secondary; host-b protects the guest to it.
    const standby = startUnit(hosts.a, 'secondary');
    await standby.waitLine(msg(/^secondary listening on 10\.0\.0\.1:7700$/), 'host-a: secondary listening');
    const s = await waitStatus(hosts.b, (x) => /protected again/.test(stateLine(x)), 'protected again', 120_000);
    assert.equal(s.status, 0, shown(s));
    await waitOwner(hosts.b, last.generation + 1, true);
    await endLedger('move3', hosts.a, hosts.b);
  });

  step('Stopping: host-b, serving with on_stop: switchover, hands the guest to host-a; every acknowledged write is there; SIGTERM stops the last node with status 0; a primary on host-b is then refused by the record (3)', async () => {
    await startLedger('move4');
    const stopping = current(hosts.b);
    const taking = current(hosts.a);
    stopping.signal('SIGTERM');
    assert.equal(await stopping.exit, 0, stopping.tail());
    await stopping.waitLine(msg(/switchover: a last checkpoint, then the secondary takes over/), 'host-b: stopping in order (switchover)');
    const over = await taking.waitLine(msg(/^FAILED OVER \(planned switchover/), 'host-a: takes over', 60_000);
    assert.equal(over.service, '10.0.0.1:6379');
    await endLedger('move4', hosts.b, hosts.a);

    for (const { prefix, verdict } of ledgers) {
      const keys = Array.from({ length: LEDGER_KEYS }, (_, i) => `${prefix}:${i}`);
      const reply = await agent!.command(hosts.a.ip, SERVICE_PORT, ['MGET', ...keys]);
      assert.ok(Array.isArray(reply), JSON.stringify(reply));
      keys.forEach((k, i) => {
        const have = Number(reply[i] ?? 0);
        const acked = verdict.maxAcked[k] ?? 0;
        assert.ok(acked > 0 && have >= acked, `${k}: ${acked} acknowledged, the guest holds ${have}`);
      });
    }
    // Nobody to hand over to: a plain stop in order.
    taking.signal('SIGTERM');
    assert.equal(await taking.exit, 0, taking.tail());
    // Nobody holds the domain now; it ran last on host-a: a primary on host-b is refused by that record.
    const keys = await etcdKeys(hosts.b);
    assert.equal(keys['/tandem/guest/owner'], undefined, JSON.stringify(keys));
    const refused = await tandemOn(hosts.b, ['primary', '--config', hosts.b.config]);
    assert.equal(refused.status, 3, shown(refused));
    assert.match(refused.stderr, /^tandem: error: the domain last ran on node host-a at generation \d+: this node's copy of the guest is older; start it as the secondary of host-a \[ERR_ARBITER_STALE\]$/m);
  });
});
