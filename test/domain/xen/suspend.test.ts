/**
 * Suspending a guest through xenstore, as libxl does.
 *
 * LABEL: against FakeXenstored (a stand-in, NOT xenstored) and a scripted
 * domain-info source (NOT the hypervisor): what is tested is the order of
 * requests, the acknowledgement and shutdown checks, and every way a
 * suspend fails. The real guest and xenstored are in the Xen lab.
 */
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { suspendDomain } from '../../../src/domain/xen/suspend.js';
import type { DomainInfo } from '../../../src/domain/xen/xc.js';
import { XsType } from '../../../src/domain/xen/xenstore-wire.js';
import { XenstoreClient } from '../../../src/domain/xen/xenstore.js';
import { FakeXenstored } from './fake-xenstored.js';
import { until } from '../../helpers/wait.js';

const NODE = '/local/domain/5/control/shutdown';
const running: DomainInfo = { dying: false, crashed: false, shutdown: false, paused: false, blocked: false, running: true, shutdownReason: 0 };

async function rig(): Promise<{ xs: FakeXenstored; client: XenstoreClient }> {
  const xs = new FakeXenstored();
  await xs.start();
  const client = await XenstoreClient.connect(xs.path);
  after(async () => {
    client.close();
    await xs.stop();
  });
  return { xs, client };
}

const failsWith = (code: string, message: RegExp) => (err: Error & { code?: string }): boolean => {
  assert.equal(err.code, code, err.message);
  assert.match(err.message, message);
  return true;
};

test('a guest that acknowledges and suspends: both watches first, then the request; resolves once the hypervisor says shut down for suspend', async () => {
  const { xs, client } = await rig();
  let info = running;
  xs.onWrite = (path, value) => {
    if (path !== NODE || value.toString() !== 'suspend') return;
    // The guest's kernel: clears the node, then suspends a little later.
    setTimeout(() => {
      xs.store.set(NODE, Buffer.alloc(0));
      xs.fire(NODE);
      setTimeout(() => {
        info = { ...running, running: false, shutdown: true, shutdownReason: 2 };
        xs.fire('@releaseDomain');
      }, 30);
    }, 20);
  };
  const t0 = performance.now();
  await suspendDomain(client, { info: () => Promise.resolve(info) }, 5, { pollMs: 1000 });
  // Confirmed on @releaseDomain events: the 1 s floor would be far slower than the guest's 50 ms.
  assert.ok(performance.now() - t0 < 900, `took ${performance.now() - t0} ms`);
  const kinds = (): string[] => xs.requests.map((m) => `${m.type === XsType.WATCH ? 'WATCH' : m.type === XsType.WRITE ? 'WRITE' : m.type === XsType.UNWATCH ? 'UNWATCH' : m.type === XsType.READ ? 'READ' : m.type} ${m.payload.toString('latin1').split('\0')[0]}`);
  assert.deepEqual(kinds().slice(0, 2).sort(), [`WATCH ${NODE}`, 'WATCH @releaseDomain'].sort(), 'both watches before the request');
  assert.equal(kinds().indexOf(`WRITE ${NODE}`), 2);
  // Let go without waiting for their answers (part of the guest's pause otherwise): they follow.
  await until(() => kinds().includes(`UNWATCH ${NODE}`) && kinds().includes('UNWATCH @releaseDomain'), 'both watches to be removed', 2000);
});

test('a guest that never acknowledges: ERR_XEN_SUSPEND_FAILED, and the request is taken back', async () => {
  const { xs, client } = await rig();
  await assert.rejects(suspendDomain(client, { info: () => Promise.resolve(running) }, 5, { ackTimeoutMs: 150, pollMs: 20 }), failsWith('ERR_XEN_SUSPEND_FAILED', /did not acknowledge the suspend request within 150 ms/));
  assert.equal(xs.store.get(NODE)?.toString(), '', 'withdrawn');
  assert.ok(xs.requests.some((m) => m.type === XsType.TRANSACTION_START), 'in a transaction');
});

test('a guest that acknowledges but never suspends, or shuts down for another reason, or goes away', async () => {
  const ack = (xs: FakeXenstored): void => {
    xs.onWrite = (path, value) => {
      if (path === NODE && value.toString() === 'suspend') {
        xs.store.delete(NODE);
        xs.fire(NODE);
      }
    };
  };
  const a = await rig();
  ack(a.xs);
  await assert.rejects(suspendDomain(a.client, { info: () => Promise.resolve(running) }, 5, { suspendTimeoutMs: 150, pollMs: 20 }), failsWith('ERR_XEN_SUSPEND_FAILED', /acknowledged the suspend request but did not suspend within 150 ms/));
  const b = await rig();
  ack(b.xs);
  const poweroff = { ...running, running: false, shutdown: true, shutdownReason: 0 };
  await assert.rejects(suspendDomain(b.client, { info: () => Promise.resolve(poweroff) }, 5, { pollMs: 20 }), failsWith('ERR_XEN_SUSPEND_FAILED', /shut down for reason 0, not for suspend \(2\)/));
  const c = await rig();
  ack(c.xs);
  await assert.rejects(suspendDomain(c.client, { info: () => Promise.resolve(undefined) }, 5, { pollMs: 20 }), failsWith('ERR_XEN_NO_DOMAIN', /went away while suspending/));
});

test('xenstored going away mid-suspend is its typed error, not a hang', async () => {
  const { xs, client } = await rig();
  xs.onWrite = () => void xs.stop();
  await assert.rejects(suspendDomain(client, { info: () => Promise.resolve(running) }, 5, { ackTimeoutMs: 5000, pollMs: 20 }), failsWith('ERR_XENSTORE_CLOSED', /connection to xenstored closed/));
});
