/**
 * Issue 4's client ledger: many clients INCR counters through the front of
 * the real `tandem primary` process; the primary is SIGKILLed at random
 * points; the secondary (its real code, in this process) promotes itself and
 * serves; every increment any client saw acknowledged is still there, and
 * the promoted guest's append-only file (its disk came over with the same
 * epochs) replays to exactly its dataset in RAM.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { after, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Ledger } from '../../src/demo/ledger.js';
import { ServiceIp } from '../../src/demo/service-ip.js';
import { DiskReplica } from '../../src/disk/replica.js';
import { Promoter } from '../../src/failover/promoter.js';
import { createLogger } from '../../src/util/logger.js';
import { secondaryFor, simBinding } from '../helpers/sim.js';
import { CLI, tempDir } from '../helpers/cli.js';
import { ledgerOnProtected } from '../helpers/primary-log.js';
import { until } from '../helpers/wait.js';
import { uniform } from '../../src/util/xorshift.js';
import { tlsArgs, tlsFor } from '../helpers/tls.js';

const TRIALS = 50;
const MIB = 4;
const DISK_MIB = 1;
const tmp = tempDir();
after(() => tmp.cleanup());

test(`client ledger: ${TRIALS} SIGKILLs of the primary at random points lose no acknowledged write`, { timeout: 300_000 }, async () => {
  const config = tmp.path('ledger.yaml');
  writeFileSync(config, `domain:\n  memory_mib: ${MIB}\n  disk_mib: ${DISK_MIB}\nprimary:\n  interval_ms: 5\n`);
  const rand = uniform(4242);
  // The pair talks mutual TLS, as any deployment's does.
  const [transport, tls] = [await tlsFor('secondary'), await tlsArgs('primary')];
  let totalAcked = 0;
  let lost = 0;
  let withLoad = 0;
  let withFile = 0;
  for (let trial = 0; trial < TRIALS; trial++) {
    const logger = createLogger('silent');
    const replica = simBinding(MIB * 256, { diskBytes: DISK_MIB * 2 ** 20 }).replica(logger);
    const secondary = secondaryFor(replica, { devices: [new DiskReplica(replica.disks)], transport });
    const { port } = await secondary.start();
    const child = spawn(process.execPath, [CLI, 'primary', '--config', config, '--secondary', `127.0.0.1:${port}`, '--service', '127.0.0.1:0', ...tls], { stdio: ['ignore', 'ignore', 'pipe'] });
    let log = '';
    child.stderr.on('data', (d: Buffer) => (log += d.toString()));
    const closed = new Promise((r) => child.once('close', r));
    const serviceIp = new ServiceIp({ host: '127.0.0.1', port: 0 });
    const promoter = new Promoter({ secondary, replica, verifyPersistence: true, service: { host: '127.0.0.1', port: 0 }, logger });
    let ledger: Ledger | undefined;
    try {
      ledger = await ledgerOnProtected(serviceIp, () => log, `trial ${trial}`);
      // The kill point: a seeded random time into the load, counted from its first acknowledged write (on a
      // loaded machine the first epochs can take longer than the whole window, and a trial would prove nothing).
      await until(() => ledger!.writesAcked > 0, `trial ${trial}: a first acknowledged write`, 30_000, 5);
      await sleep(30 + Math.floor(rand() * 400));
      child.kill('SIGKILL');
      await closed;
      // The secondary's own failure handling (here: the stream's end) and promotion.
      await until(() => secondary.primary === undefined, `trial ${trial}: the secondary to see the primary gone`);
      const p = await promoter.promote(`trial ${trial}`);
      // The disk came over with the same epochs as RAM: its append-only file replays to the dataset.
      assert.ok(p.persistence?.consistent, `trial ${trial}: replica disk and RAM disagree at epoch ${p.epoch}: ${p.persistence?.detail}`);
      if (p.persistence.keys > 0) withFile++;
      serviceIp.moveTo({ host: '127.0.0.1', port: p.service.port });
      ledger.failedOver();
      // Let the survivor answer every client at least once.
      await until(() => ledger!.survivorAnsweredAll, `trial ${trial}: the survivor to answer every client`, 20_000);
      ledger.stop();
      const result = await ledger.verify();
      totalAcked += result.ackedWrites;
      if (result.ackedWrites > 0) withLoad++;
      lost += result.lostAckedWrites;
      assert.equal(result.lostAckedWrites, 0, `trial ${trial}: ${result.lostAckedWrites} acknowledged increments lost (epoch ${p.epoch})`);
    } finally {
      ledger?.stop();
      child.kill('SIGKILL');
      await serviceIp.stop();
      await promoter.stop();
      await secondary.stop();
    }
  }
  assert.equal(lost, 0);
  assert.ok(withFile >= TRIALS * 0.9, `only ${withFile} of ${TRIALS} promoted replicas held keys in their append-only file`);
  assert.ok(withLoad >= TRIALS * 0.9, `only ${withLoad} of ${TRIALS} trials had acknowledged writes before the kill`);
  assert.ok(totalAcked > TRIALS * 20, `${totalAcked} acknowledged writes in all: too little load to prove anything`);
});
