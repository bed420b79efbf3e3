/**
 * The two-host Xen lab (xen-lab run --hosts 2 'bash test-xen/two-hosts.sh'):
 * two real Xen 4.17 hosts under QEMU joined by a socket netdev on loopback.
 * Host 2 answers lab-peer and the PVH guest migrates live to it over the
 * link, keeping its state and its address. When the lab cannot boot, every
 * test here fails.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SharedLabRun } from './lab.js';

describe('the Xen lab, two hosts', { timeout: 30 * 60_000 }, () => {
  const lab = new SharedLabRun('bash test-xen/two-hosts.sh', { hosts: 2, timeoutS: 900 });
  const ctx = () => lab.context();

  it('host 2 is a second Xen 4.17 host that runs commands for host 1 (lab-peer)', async () => {
    await lab.booted();
    assert.equal(lab.get('peer_ip'), '10.77.0.2', ctx());
    assert.equal(lab.get('peer_hostname'), 'lab-host2', ctx());
    assert.equal(lab.get('peer_exit'), '7', `lab-peer did not relay the exit status\n${ctx()}`);
    assert.equal(lab.get('peer_xen_version'), '4.17', ctx());
  });

  it('the guest migrates live from host 1 to host 2 and goes on from its state at the same address', async (t) => {
    const run = await lab.booted();
    assert.equal(lab.get('create_rc'), '0', ctx());
    assert.notEqual(lab.get('service_up_ms'), 'timeout', `the guest's service never answered\n${ctx()}`);
    assert.equal(lab.get('counter_before'), '3', ctx());
    assert.equal(lab.get('migrate_rc'), '0', ctx());
    assert.notEqual(lab.get('listed_on_host1'), '0', `the guest still runs on host 1\n${ctx()}`);
    assert.equal(lab.get('listed_on_host2'), '0', `the guest does not run on host 2\n${ctx()}`);
    assert.notEqual(lab.get('service_after_ms'), 'timeout', `the migrated guest's service never answered\n${ctx()}`);
    assert.equal(lab.get('counter_after'), '4', `the counter restarted\n${ctx()}`);
    assert.equal(lab.get('run_id_after'), lab.get('run_id_before'), `redis-server restarted\n${ctx()}`);
    assert.equal(lab.get('destroy_rc'), '0', ctx());
    t.diagnostic(`xl migrate to host 2 ${lab.num('migrate_ms')} ms; whole lab run ${(run.ms / 1000).toFixed(1)} s`);
  });
});
