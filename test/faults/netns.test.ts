/**
 * The fault tests' network (test/helpers/netns.ts), checked on its own: each
 * fault does what it says to real TCP between namespaces and nothing more,
 * healing undoes it, and everything the topology made is gone after
 * cleanup(), after an exit that skipped it, and after a SIGKILL of the
 * process that made it (the watchdog). The fault tests' verdicts rest on
 * these.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Topology } from '../helpers/netns.js';
import { until } from '../helpers/wait.js';

const NETNS_MODULE = fileURLToPath(new URL('../helpers/netns.js', import.meta.url));

/** An echo server on ports 9000 and 9001 of its namespace. */
const SERVER = `
const net = require('node:net');
for (const port of [9000, 9001]) net.createServer((s) => { s.on('data', (d) => s.write(d)); s.on('error', () => {}); }).listen(port, process.argv[1], () => console.log('listening ' + port));
`;

/** One connect-send-echo to HOST PORT: prints ok, timeout, or the error's code. */
const PROBE = `
const net = require('node:net');
const s = net.connect({ host: process.argv[1], port: Number(process.argv[2]) });
const t = setTimeout(() => { console.log('timeout'); process.exit(0); }, 600);
s.on('connect', () => s.write('x'));
s.on('data', () => { clearTimeout(t); console.log('ok'); process.exit(0); });
s.on('error', (e) => { clearTimeout(t); console.log(e.code); process.exit(0); });
`;

/** A connection held open, reporting how it ends. */
const HOLDER = `
const net = require('node:net');
const s = net.connect({ host: process.argv[1], port: Number(process.argv[2]) });
s.on('connect', () => console.log('connected'));
s.on('error', (e) => console.log('error ' + e.code));
s.on('close', () => { console.log('closed'); process.exit(0); });
`;

describe('the fault network', () => {
  const topo = Topology.create({ nodes: ['a', 'b', 'c'] });
  after(() => topo.cleanup());
  const probe = (from: string, to: string, port = 9000): string => topo.exec(from, [process.execPath, '-e', PROBE, topo.ip(to), String(port)]).trim();

  test('partitions, one-way and per-port drops, link down, isolation and rate limits affect what they name, and heal', async () => {
    const server = topo.spawn('b', [process.execPath, '-e', SERVER, topo.ip('b')]);
    const lines = createInterface({ input: server.stdout! });
    let listening = 0;
    lines.on('line', (l) => (listening += l.startsWith('listening') ? 1 : 0));
    await until(() => listening === 2, 'the echo server', 10_000);
    assert.equal(probe('a', 'b'), 'ok');
    assert.equal(probe('c', 'b'), 'ok');

    // A partition is silence between two nodes only: no refusal, no EPERM, and the third node still gets through.
    let heal = topo.partition('a', 'b');
    assert.equal(probe('a', 'b'), 'timeout');
    assert.equal(probe('b', 'a', 9999), 'timeout');
    assert.equal(probe('c', 'b'), 'ok');
    heal();
    assert.equal(probe('a', 'b'), 'ok');

    // One way, one port: a's segments to b:9000 are lost; b:9001 is untouched.
    heal = topo.dropOneWay('a', 'b', { dport: 9000 });
    assert.equal(probe('a', 'b', 9000), 'timeout');
    assert.equal(probe('a', 'b', 9001), 'ok');
    heal();
    // Both ways of one port.
    heal = topo.cutPort('a', 'b', 9001);
    assert.equal(probe('a', 'b', 9001), 'timeout');
    assert.equal(probe('a', 'b', 9000), 'ok');
    heal();

    heal = topo.linkDown('b');
    assert.notEqual(probe('a', 'b'), 'ok');
    assert.notEqual(probe('c', 'b'), 'ok');
    heal();
    assert.equal(probe('a', 'b'), 'ok');

    heal = topo.isolate('b');
    assert.equal(probe('a', 'b'), 'timeout');
    assert.equal(probe('c', 'b'), 'timeout');
    assert.equal(probe('a', 'c', 9999), 'ECONNREFUSED', 'a and c still reach each other (nothing listens on c:9999)');
    heal();

    // healAll() undoes everything at once, whatever was left in force.
    topo.partition('a', 'b');
    topo.linkDown('c');
    topo.impair('b', { rateKbit: 1000 });
    assert.match(topo.exec('b', ['tc', 'qdisc', 'show', 'dev', 'eth0']), /htb/);
    topo.healAll();
    assert.doesNotMatch(topo.exec('b', ['tc', 'qdisc', 'show', 'dev', 'eth0']), /htb/);
    assert.equal(probe('a', 'b'), 'ok');
    assert.equal(probe('c', 'b'), 'ok');
    assert.equal(topo.describeRules(), '(none)');
  });

  test("resetTcp aborts the node's established connections and the peer gets a RST", async () => {
    const holder = topo.spawn('a', [process.execPath, '-e', HOLDER, topo.ip('b'), '9000']);
    const seen: string[] = [];
    createInterface({ input: holder.stdout! }).on('line', (l) => seen.push(l));
    await until(() => seen.includes('connected'), 'the connection', 10_000);
    assert.equal(topo.resetTcp('a', { peer: 'b', port: 9001 }), 0, 'another port: nothing to abort');
    assert.equal(topo.resetTcp('a', { peer: 'b', port: 9000 }), 1);
    await until(() => seen.includes('closed'), 'the connection to end', 5000);
    assert.ok(seen.some((l) => /^error ECONN(ABORTED|RESET)$/.test(l)), seen.join(', '));
  });
});

/** A process that builds a topology, starts `sleep` in it, prints what it made, then does `then`. */
function maker(then: 'wait' | 'exit'): { child: ReturnType<typeof spawn>; made: Promise<{ id: string; dir: string; pid: number }> } {
  const script = `
import { Topology } from ${JSON.stringify(NETNS_MODULE)};
const topo = Topology.create({ nodes: ['x', 'y'] });
const sleeper = topo.spawn('x', ['sleep', '600'], { stdio: 'ignore' });
console.log(JSON.stringify({ id: topo.id, dir: topo.dir, pid: sleeper.pid }));
${then === 'exit' ? 'process.exit(1);' : 'setInterval(() => {}, 1000);'}
`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  after(() => child.kill('SIGKILL'));
  const made = new Promise<{ id: string; dir: string; pid: number }>((resolve, reject) => {
    createInterface({ input: child.stdout }).once('line', (l) => resolve(JSON.parse(l) as { id: string; dir: string; pid: number }));
    child.once('exit', (code) => setTimeout(() => reject(new Error(`the maker exited (${code}) before saying what it made`)), 100));
  });
  return { child, made };
}

const namespacesOf = (id: string): string[] =>
  spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' })
    .stdout.split('\n')
    .map((l) => l.split(' ')[0])
    .filter((n) => n.startsWith(`${id}-`));

const running = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe('the fault network is always removed', () => {
  for (const how of ['exit', 'SIGKILL'] as const) {
    test(`when the process that made it ends by ${how === 'exit' ? 'process.exit() without cleaning up' : 'SIGKILL'}: namespaces, processes in them and the temporary directory are gone`, async () => {
      const { child, made } = maker(how === 'exit' ? 'exit' : 'wait');
      const { id, dir, pid } = await made;
      assert.equal(namespacesOf(id).length, 3, 'x, y and the bridge exist while it runs');
      if (how === 'SIGKILL') child.kill('SIGKILL');
      // The 'exit' handler removes it before the process is gone; after a SIGKILL, the watchdog within a second or so.
      await until(() => namespacesOf(id).length === 0 && !running(pid) && !existsSync(dir), `everything of ${id} to be removed`, 10_000, 50);
    });
  }
});
