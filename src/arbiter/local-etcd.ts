/**
 * A real etcd (Debian's etcd-server) on this machine, for `tandem demo
 * --arbiter etcd`, the benchmarks and the tests: one member or a cluster of
 * three on loopback, each in a temporary data directory, on free ports;
 * stopped and removed by stop() (and when this process exits first).
 * Timings are shortened so elections take about half a second and the
 * shortest lease etcd grants is one second.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Address } from '../util/address.js';

export const ETCD_BINARY = process.env.TANDEM_ETCD ?? 'etcd';

/** Polls `pred` until it holds; throws naming `what` after `timeoutMs`. */
async function until(pred: () => boolean | Promise<boolean>, what: string, timeoutMs: number, pollMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await pred())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, pollMs));
  }
}

export interface EtcdMember {
  name: string;
  client: Address;
  peer: Address;
  child: ChildProcess | undefined;
  log: string;
}

export interface EtcdCluster {
  members: EtcdMember[];
  endpoints: Address[];
  /** Stops one member (SIGKILL); start() brings it back with its data. */
  kill(i: number): Promise<void>;
  start(i: number): void;
  pause(i: number): void;
  resume(i: number): void;
  stop(): Promise<void>;
}

/** A free loopback port (released at once: a small race the tests accept). */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, resolve);
  });
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** Starts `size` members and waits until the cluster answers (a member alone, or a majority, has a leader). */
export async function startEtcd(size: 1 | 3 = 1): Promise<EtcdCluster> {
  const dir = mkdtempSync(join(tmpdir(), 'tandem-etcd-'));
  const members: EtcdMember[] = [];
  for (let i = 0; i < size; i++) {
    members.push({ name: `m${i}`, client: { host: '127.0.0.1', port: await freePort() }, peer: { host: '127.0.0.1', port: await freePort() }, child: undefined, log: '' });
  }
  const initialCluster = members.map((m) => `${m.name}=http://127.0.0.1:${m.peer.port}`).join(',');
  const launch = (i: number): void => {
    const m = members[i];
    const url = (a: Address): string => `http://${a.host}:${a.port}`;
    const child = spawn(
      ETCD_BINARY,
      [
        '--name', m.name,
        '--data-dir', join(dir, m.name),
        '--listen-client-urls', url(m.client),
        '--advertise-client-urls', url(m.client),
        '--listen-peer-urls', url(m.peer),
        '--initial-advertise-peer-urls', url(m.peer),
        '--initial-cluster', initialCluster,
        '--initial-cluster-state', 'new',
        '--initial-cluster-token', `tandem-${process.pid}`,
        '--heartbeat-interval', '50',
        '--election-timeout', '500',
        '--log-level', 'warn',
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    child.stderr.on('data', (d: Buffer) => {
      // Keep the tail only: a test that fails prints it.
      m.log = (m.log + d.toString()).slice(-8000);
    });
    child.on('error', (err) => {
      m.log += `\nspawn ${ETCD_BINARY} failed: ${err.message} (install Debian's etcd-server)`;
    });
    m.child = child;
  };
  for (let i = 0; i < size; i++) launch(i);
  let stopped = false;
  // The caller stops it (a test's `after`, the demo's finally); should this process exit first, its members go with it.
  const onExit = (): void => {
    for (const m of members) m.child?.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  };
  process.once('exit', onExit);
  const cluster: EtcdCluster = {
    members,
    endpoints: members.map((m) => m.client),
    async kill(i) {
      const child = members[i].child;
      members[i].child = undefined;
      if (child === undefined || child.exitCode !== null) return;
      const gone = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGKILL');
      await gone;
    },
    start(i) {
      if (members[i].child === undefined) launch(i);
    },
    pause(i) {
      members[i].child?.kill('SIGSTOP');
    },
    resume(i) {
      members[i].child?.kill('SIGCONT');
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      // One listener per cluster would pile up in a process that starts many (a benchmark).
      process.off('exit', onExit);
      for (let i = 0; i < members.length; i++) {
        members[i].child?.kill('SIGCONT');
        await cluster.kill(i);
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
  try {
    await until(async () => (await health(members[0].client)) || members.some((m) => (m.child !== undefined && m.child.exitCode !== null)), 'etcd to elect a leader', 20_000, 50);
  } catch (err) {
    await cluster.stop();
    throw new Error(`etcd did not start: ${members.map((m) => `${m.name}: ${m.log.trim().split('\n').slice(-3).join(' | ')}`).join('; ')}`, { cause: err });
  }
  const dead = members.find((m) => (m.child !== undefined && m.child.exitCode !== null));
  if (dead !== undefined) {
    await cluster.stop();
    throw new Error(`etcd member ${dead.name} exited: ${dead.log.trim().split('\n').slice(-5).join(' | ')}`);
  }
  return cluster;
}

/** Whether the member answers a linearizable read (it has a leader). */
async function health(at: Address): Promise<boolean> {
  try {
    const res = await fetch(`http://${at.host}:${at.port}/v3/kv/range`, { method: 'POST', body: JSON.stringify({ key: Buffer.from('health').toString('base64') }), signal: AbortSignal.timeout(1000) });
    return res.status === 200;
  } catch {
    return false;
  }
}
