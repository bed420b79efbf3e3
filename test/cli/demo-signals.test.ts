/**
 * `tandem demo` ends what it started, however it is ended: SIGTERM (a
 * service manager, a test harness), SIGINT and SIGHUP (a terminal) stop the
 * load, both nodes and etcd before the demo ends by that signal; a SIGKILL
 * leaves that to its lifeline, which ends them all. Real processes, a real
 * etcd (Debian's etcd-server) and redis-benchmark (redis-tools): the test
 * fails without them. Afterwards no process of the demo's tree is left and
 * every port they listened on can be bound again.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { CLI } from '../helpers/cli.js';
import { until } from '../helpers/wait.js';
import { commandLine, descendants, gone, listeningPorts, portFree } from './process-tree.js';

interface Running {
  pid: number;
  /** Each descendant's pid, command line and listening ports, once everything runs. */
  tree: { pid: number; command: string; ports: number[] }[];
  /** The demo's own listening ports (the service address). */
  ownPorts: number[];
  logs: string;
  stdout: () => string;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Starts the demo and waits until everything it starts runs: both nodes listen, and etcd and redis-benchmark when asked for. */
async function startDemo(extra: string[], expect: RegExp[]): Promise<Running> {
  const child = spawn(process.execPath, [CLI, 'demo', '--duration', '3600', '--memory-mib', '16', '--service', '127.0.0.1:0', ...extra], { stdio: ['ignore', 'pipe', 'pipe'] });
  after(() => child.kill('SIGKILL'));
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  let exited = false;
  void exit.then(() => (exited = true));
  const pid = child.pid!;
  await until(() => exited || /^protected: /m.test(out), 'the demo to say the primary is protected', 120_000, 50);
  assert.equal(exited, false, `the demo exited: ${out}${err}`);
  const logs = /\(logs: (.+)\)$/m.exec(out)?.[1];
  assert.ok(logs !== undefined, out);
  after(() => rmSync(logs, { recursive: true, force: true }));
  // Everything the demo starts, once it has started it (redis-benchmark comes a moment after the service line).
  const everything = (): boolean => {
    const commands = descendants(pid).map(commandLine);
    return expect.every((re) => commands.some((c) => re.test(c)));
  };
  await until(everything, `the demo's processes: ${expect.join(', ')}`, 60_000, 50);
  const tree = descendants(pid).map((p) => ({ pid: p, command: commandLine(p), ports: listeningPorts(p) }));
  return { pid, tree, ownPorts: listeningPorts(pid), logs, stdout: () => out, exit };
}

const NODES = [/main\.js secondary /, /main\.js primary /];
const ETCD = /^etcd /;
const BENCH = /^redis-benchmark /;
const GUARD = /lifeline-main\.js/;

/** The ports each kind of process must be found listening on: proof that the port check looks at the real sockets. */
function assertListening(r: Running, kinds: RegExp[]): number[] {
  for (const re of kinds) {
    const p = r.tree.find((t) => re.test(t.command));
    assert.ok(p !== undefined && p.ports.length > 0, `no listening port found for ${re}: ${JSON.stringify(r.tree)}`);
  }
  assert.ok(r.ownPorts.length > 0, 'the demo listens on the service address');
  return [...r.ownPorts, ...r.tree.flatMap((t) => t.ports)];
}

async function assertAllFree(ports: number[]): Promise<void> {
  for (const port of ports) assert.equal(await portFree(port), true, `port ${port} is still held`);
}

describe('tandem demo: a signal ends what it started', () => {
  test('SIGTERM stops redis-benchmark, both nodes and etcd before the demo ends by SIGTERM; their ports are free', { timeout: 240_000 }, async () => {
    const r = await startDemo(['--arbiter', 'etcd', '--load', 'benchmark'], [...NODES, ETCD, BENCH, GUARD]);
    const ports = assertListening(r, [...NODES, ETCD]);
    process.kill(r.pid, 'SIGTERM');
    const { code, signal } = await r.exit;
    assert.deepEqual({ code, signal }, { code: null, signal: 'SIGTERM' }, r.stdout());
    assert.match(r.stdout(), /^demo: stopped on SIGTERM: what it started is stopped$/m);
    // The demo waits for them: when it is gone they are (the lifeline's guard leaves by itself just after).
    const left = r.tree.filter((t) => !GUARD.test(t.command) && !gone(t.pid));
    assert.deepEqual(left, [], 'processes the demo started outlived it');
    await until(() => r.tree.every((t) => gone(t.pid)), 'the lifeline guard to exit');
    await assertAllFree(ports);
    // An orderly stop, not a kill: both nodes said why they stopped.
    for (const node of ['primary', 'secondary']) assert.match(readFileSync(join(r.logs, `${node}.log`), 'utf8'), /"signal":"SIGTERM"/, node);
  });

  for (const sig of ['SIGINT', 'SIGHUP'] as const) {
    test(`${sig} ends the demo the same way`, { timeout: 240_000 }, async () => {
      const r = await startDemo([], [...NODES, GUARD]);
      const ports = assertListening(r, NODES);
      process.kill(r.pid, sig);
      const { signal } = await r.exit;
      assert.equal(signal, sig, r.stdout());
      assert.deepEqual(
        r.tree.filter((t) => !GUARD.test(t.command) && !gone(t.pid)),
        [],
        'processes the demo started outlived it',
      );
      await until(() => r.tree.every((t) => gone(t.pid)), 'the lifeline guard to exit');
      await assertAllFree(ports);
    });
  }

  test('SIGKILL: the lifeline ends both nodes and etcd; their ports are free', { timeout: 240_000 }, async () => {
    const r = await startDemo(['--arbiter', 'etcd'], [...NODES, ETCD, GUARD]);
    const ports = assertListening(r, [...NODES, ETCD]);
    // A killed demo cannot remove its etcd's data directory (its lifeline ends processes, it removes no files).
    const etcdData = /--data-dir (\S+)\/m\d+ /.exec(r.tree.find((t) => ETCD.test(t.command))!.command)?.[1];
    assert.ok(etcdData !== undefined);
    after(() => rmSync(etcdData, { recursive: true, force: true }));
    process.kill(r.pid, 'SIGKILL');
    assert.equal((await r.exit).signal, 'SIGKILL');
    // Nothing in the demo ran after the kill: only the guard can have ended them.
    await until(() => r.tree.every((t) => gone(t.pid)), "the demo's processes to be ended by its lifeline", 60_000, 50);
    await assertAllFree(ports);
  });
});
