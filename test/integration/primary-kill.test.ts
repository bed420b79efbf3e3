/**
 * A primary SIGKILLed at random points while it streams checkpoints leaves
 * the secondary on its last complete epoch: the replica's digest (RAM, vCPU,
 * device model and disk) equals the one the primary logged when it staged that epoch, and no later epoch
 * (torn by the kill) is half-applied. The primary is the real `tandem
 * primary` process; the secondary runs in the test.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { after, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { DiskReplica } from '../../src/disk/replica.js';
import type { PrimaryGone } from '../../src/secondary/server.js';
import { secondaryFor, silent, simBinding } from '../helpers/sim.js';
import { CLI, tempDir } from '../helpers/cli.js';
import { uniform } from '../../src/util/xorshift.js';
import { tlsArgs, tlsFor } from '../helpers/tls.js';

const TRIALS = 15;
const MIB = 8;
const DISK_MIB = 2;
const tmp = tempDir();
after(() => tmp.cleanup());

interface PrimaryLog {
  staged: Map<number, string>;
  acked: number;
  servicePort: number | undefined;
  protectedAt: number | undefined;
}

function runPrimary(secondaryPort: number, config: string, tls: string[]): { child: ChildProcess; log: PrimaryLog; ready: Promise<void> } {
  const child = spawn(process.execPath, [CLI, 'primary', '--config', config, '--secondary', `127.0.0.1:${secondaryPort}`, '--service', '127.0.0.1:0', '--interval', '5', '--verify-digest', '--log-level', 'debug', ...tls], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const log: PrimaryLog = { staged: new Map(), acked: 0, servicePort: undefined, protectedAt: undefined };
  let rest = '';
  let readyResolve: () => void = () => {};
  const ready = new Promise<void>((r) => (readyResolve = r));
  child.stderr.on('data', (d: Buffer) => {
    const lines = (rest + d.toString()).split('\n');
    rest = lines.pop()!;
    for (const line of lines) {
      const j = JSON.parse(line) as { msg: string; epoch?: number; digest?: string; service?: string; state?: string };
      if (j.msg === 'epoch staged') log.staged.set(j.epoch!, j.digest!);
      else if (j.msg === 'epoch') log.acked = Math.max(log.acked, j.epoch!);
      else if (j.service !== undefined) log.servicePort = Number(j.service.split(':').at(-1));
      else if (j.state === 'protected') {
        log.protectedAt = Date.now();
        readyResolve();
      }
    }
  });
  return { child, log, ready };
}

/** Pipelined SETs of 1-3 KiB values on random keys, for as long as the socket lives: many dirty pages per epoch. */
function loadGuest(port: number, seed: number): () => void {
  const rand = uniform(seed);
  const sock = connect({ port, host: '127.0.0.1' });
  sock.on('error', () => {});
  sock.on('data', () => {});
  let stopped = false;
  const pump = (): void => {
    while (!stopped) {
      const value = 'v'.repeat(1024 + Math.floor(rand() * 2048));
      const key = `k${Math.floor(rand() * 2000)}`;
      if (!sock.write(`*3\r\n$3\r\nSET\r\n$${key.length}\r\n${key}\r\n$${value.length}\r\n${value}\r\n`)) {
        sock.once('drain', pump);
        return;
      }
    }
  };
  sock.on('connect', pump);
  return () => {
    stopped = true;
    sock.destroy();
  };
}

test(`SIGKILL of the primary at ${TRIALS} random points leaves the secondary at its last complete epoch`, async () => {
  const config = tmp.path('primary.yaml');
  writeFileSync(config, `domain:\n  memory_mib: ${MIB}\n  disk_mib: ${DISK_MIB}\nprimary:\n  retry_ms: 100\n`);
  const rand = uniform(20261125);
  const [transport, tls] = [await tlsFor('secondary'), await tlsArgs('primary')];
  let torn = 0;
  for (let trial = 0; trial < TRIALS; trial++) {
    const replica = simBinding(MIB * 256, { diskBytes: DISK_MIB * 2 ** 20 }).replica(silent);
    const secondary = secondaryFor(replica, { devices: [new DiskReplica(replica.disks)], transport });
    const { port } = await secondary.start();
    const gone = new Promise<PrimaryGone>((resolve) => secondary.once('primary-gone', resolve));
    const { child, log, ready } = runPrimary(port, config, tls);
    // 'close', not 'exit': the log lines still in the pipe must be read before the checks.
    const exited = new Promise<void>((resolve) => child.once('close', () => resolve()));
    try {
      await ready;
      const stopLoad = loadGuest(log.servicePort!, trial + 1);
      // The kill point: a seeded random time into the load, not a wait for anything.
      await sleep(20 + Math.floor(rand() * 300));
      child.kill('SIGKILL');
      await exited;
      const g = await gone;
      stopLoad();
      const last = secondary.lastEpoch;
      assert.equal(g.lastEpoch, last);
      assert.ok(last >= 1, `trial ${trial}: the replica holds no checkpoint`);
      assert.ok(last >= log.acked, `trial ${trial}: the primary saw epoch ${log.acked} acked but the replica holds ${last}`);
      assert.ok(log.staged.has(last), `trial ${trial}: epoch ${last} was never staged by the primary`);
      assert.equal(secondary.digest(), log.staged.get(last), `trial ${trial}: replica at epoch ${last} differs from the primary's state at that suspend`);
      if (g.tornEpoch > last) torn++;
    } finally {
      child.kill('SIGKILL');
      await secondary.stop();
    }
  }
  // The kills must really have landed while epochs were on the wire, not only between them.
  assert.ok(torn >= 1, `no trial tore an epoch in flight (${torn} of ${TRIALS})`);
});
