/**
 * Promotion of the secondary: refused without a complete checkpoint; after
 * the real primary process is SIGKILLed, the guest resumes from the last
 * complete epoch and serves every key that epoch held, over TCP.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { after, describe, test } from 'node:test';
import { pino } from 'pino';
import { DiskReplica } from '../../src/disk/replica.js';
import { TandemError } from '../../src/errors.js';
import { Promoter } from '../../src/failover/promoter.js';
import { KvStore } from '../../src/guest/kv-store.js';
import { createLogger } from '../../src/util/logger.js';
import { CLI, tempDir } from '../helpers/cli.js';
import { protectedServicePort } from '../helpers/primary-log.js';
import { until } from '../helpers/wait.js';
import { secondaryFor, simBinding } from '../helpers/sim.js';
import { ask } from '../guest/helpers.js';
import { FakeReplica } from '../helpers/fake-binding.js';
import { tlsArgs, tlsFor } from '../helpers/tls.js';

const logger = createLogger('silent');
const tmp = tempDir();
after(() => tmp.cleanup());

describe('Promoter', () => {
  test('refuses to fail over without a complete checkpoint, and then takes no generation', async () => {
    const replica = simBinding(64).replica(logger);
    const secondary = secondaryFor(replica);
    await secondary.start();
    let claims = 0;
    const promoter = new Promoter({ secondary, replica, service: { host: '127.0.0.1', port: 0 }, logger, claim: () => ++claims });
    await assert.rejects(promoter.promote('test'), (e: unknown) => e instanceof TandemError && e.code === 'ERR_NOTHING_TO_FAIL_OVER');
    assert.equal(claims, 0, 'a failover that cannot happen takes nothing');
    assert.equal(replica.sim.paused, true, 'the replica stays paused');
    await secondary.stop();
  });

  test('after a SIGKILL of the primary the guest serves what its last complete epoch held', async () => {
    const MIB = 8;
    const config = tmp.path('p.yaml');
    writeFileSync(config, `domain:\n  memory_mib: ${MIB}\n`);
    // The CLI's default disk: the replica must match the primary's.
    const replica = simBinding(MIB * 256, { diskBytes: 64 * 2 ** 20 }).replica(logger);
    const secondary = secondaryFor(replica, { devices: [new DiskReplica(replica.disks)], transport: await tlsFor('secondary') });
    const { port } = await secondary.start();
    const child = spawn(process.execPath, [CLI, 'primary', '--config', config, '--secondary', `127.0.0.1:${port}`, '--service', '127.0.0.1:0', '--interval', '5', '--log-level', 'info', ...(await tlsArgs('primary'))], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    after(() => child.kill('SIGKILL'));
    let log = '';
    child.stderr.on('data', (d: Buffer) => (log += d.toString()));
    const servicePort = await protectedServicePort(() => log, 'the primary');
    const writes = Array.from({ length: 200 }, (_, i) => ['SET', `key:${i}`, `value-${i}`]);
    await ask(servicePort, writes);
    // Let a few epochs carry the writes, then kill.
    const target = secondary.lastEpoch + 5;
    await until(() => secondary.lastEpoch >= target, `epoch ${target} at the secondary`);
    const closed = new Promise((r) => child.once('close', r));
    child.kill('SIGKILL');
    await closed;
    // The secondary has read all there was: what it holds now is final.
    await until(() => secondary.primary === undefined, 'the secondary to see the primary gone');
    const held = KvStore.attach(replica.sim).keyCount;
    assert.equal(held, 200, 'the epochs after the writes carried all 200 keys');

    const promoter = new Promoter({ secondary, replica, service: { host: '127.0.0.1', port: 0 }, logger });
    const p = await promoter.promote('primary killed');
    after(() => promoter.stop());
    assert.ok(p.epoch >= target);
    assert.equal(replica.sim.paused, false);
    const replies = await ask(p.service.port, [['DBSIZE'], ['GET', 'key:0'], ['GET', 'key:199'], ['INCR', 'after-failover']]);
    assert.deepEqual(replies.map((r) => (Buffer.isBuffer(r) ? r.toString() : r)), [200, 'value-0', 'value-199', 1]);
    assert.equal(await promoter.promote('again'), p, 'promotion happens once');
  });

  test('on a fake binding: stops the server, asks the binding to resume and serve, once however many ask; events in order', async () => {
    const replica = new FakeReplica(4);
    const calls: string[] = [];
    const holder = {
      lastEpoch: 7,
      state: 'protected',
      stop: () => {
        calls.push('server stopped');
        return Promise.resolve();
      },
    };
    const promoter = new Promoter({
      secondary: holder,
      replica,
      service: { host: '127.0.0.1', port: 6390 },
      verifyPersistence: true,
      logger,
      claim: () => {
        calls.push('claimed generation 5');
        return 5;
      },
    });
    promoter.on('promoting', (e) => calls.push(`promoting from ${e.epoch}: ${e.reason}`));
    promoter.on('promoted', (p) => calls.push(`promoted, serving ${p.service.port}`));
    assert.equal(promoter.engaged, false);
    const both = Promise.all([promoter.promote('detector'), promoter.promote('operator')]);
    assert.equal(promoter.engaged, true, 'engaged as soon as one is under way');
    const [a, b] = await both;
    assert.equal(a, b, 'the two requests got the one promotion');
    assert.equal(a.epoch, 7);
    assert.equal(a.generation, 5);
    assert.deepEqual(replica.promoted, { service: { host: '127.0.0.1', port: 6390 }, verifyPersistence: true });
    assert.deepEqual(calls, ['claimed generation 5', 'promoting from 7: detector; taking over as generation 5', 'server stopped', 'promoted, serving 6390']);
  });

  test('a claim that cannot be made (no generation left) refuses the failover: the replica is not touched', async () => {
    const replica = new FakeReplica(4);
    let stopped = false;
    const holder = {
      lastEpoch: 3,
      state: 'protected',
      stop: (): Promise<void> => {
        stopped = true;
        return Promise.resolve();
      },
    };
    const promoter = new Promoter({
      secondary: holder,
      replica,
      service: { host: '127.0.0.1', port: 6391 },
      logger,
      claim: () => {
        throw new Error('generations end at 2^53-1');
      },
    });
    await assert.rejects(promoter.promote('detector'), (e: unknown) => e instanceof TandemError && e.code === 'ERR_NOTHING_TO_FAIL_OVER' && /generations end/.test(e.message));
    assert.equal(stopped, false, 'the secondary keeps taking checkpoints');
    assert.equal(replica.promoted, undefined);
    assert.equal(promoter.engaged, false, 'a later failover may still happen');
  });

  test('a takeover that fails after the claim is said fatally (ERR_FAILOVER_FAILED, the step and the cause), and one that takes long says where it waits', async () => {
    const lines: { level: number; msg: string; step?: string; err?: { code?: string } }[] = [];
    const seen = pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s) as (typeof lines)[number]) });
    const holder = { lastEpoch: 4, state: 'protected', stop: () => Promise.resolve() };
    const refused: string[] = [];
    const promoter = new Promoter({
      secondary: holder,
      replica: new FakeReplica(4),
      service: { host: '127.0.0.1', port: 6392 },
      logger: seen,
      claim: () => 3,
      progressEveryMs: 20,
      serve: async () => {
        await new Promise((r) => setTimeout(r, 150));
        throw new Error("Xen's restore failed the failover (exit 1)");
      },
    });
    promoter.on('refused', (e) => refused.push(e.error.message));
    await assert.rejects(promoter.promote('detector'), (e: unknown) => e instanceof TandemError && e.code === 'ERR_FAILOVER_FAILED' && /exit 1/.test(e.message) && e.cause instanceof Error);
    const waiting = lines.filter((l) => /failover still under way/.test(l.msg));
    assert.ok(waiting.length >= 1, 'a long takeover said nothing while it waited');
    assert.match(waiting[0].msg, /resuming the guest from epoch 4/);
    const fatal = lines.filter((l) => l.level === 60);
    assert.equal(fatal.length, 1, JSON.stringify(lines));
    assert.match(fatal[0].msg, /FAILOVER FAILED .*taking over as generation 3.*exit 1.*served nowhere/);
    assert.equal(fatal[0].err?.code, 'ERR_FAILOVER_FAILED');
    assert.equal(refused.length, 1);
    // Once failed, nothing more is said about it.
    const count = lines.length;
    await new Promise((r) => setTimeout(r, 60));
    assert.equal(lines.length, count, 'the progress timer outlived the takeover');
  });
});
