/**
 * The two-host Xen lab (xen-lab run --hosts 2 'bash test-xen/two-hosts.sh'):
 * two real Xen 4.17 hosts under QEMU joined by a socket netdev on loopback.
 * Host 2 answers lab-peer and the PVH guest migrates live to it over the
 * link, keeping its state and its address; then Tandem protects it across
 * the hosts (primary on host 2, secondary on host 1, mutual TLS) and host 1
 * takes it over when host 2's primary dies. When the lab cannot boot, every
 * test here fails.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SharedLabRun } from './lab.js';

describe('the Xen lab, two hosts', { timeout: 30 * 60_000 }, () => {
  const lab = new SharedLabRun('bash test-xen/two-hosts.sh', { hosts: 2, timeoutS: 1200 });
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

  it('Tandem across the hosts: host 2 protects the guest to host 1 over mutual TLS; when host 2\'s primary and domain die, host 1 promotes it, the client reaches it at its address, and no acknowledged write is lost', async (t) => {
    await lab.booted();
    assert.equal(lab.get('certs_rc'), '0', ctx());
    assert.equal(lab.get('certs_copied'), '0', ctx());
    assert.ok(lab.num('tandem_protected') >= 1, `host 2's primary never protected the guest\n${ctx()}`);
    assert.ok(lab.num('tandem_checkpoints') >= 30, `only ${lab.get('tandem_checkpoints')} checkpoints\n${ctx()}`);
    assert.equal(lab.get('remote_kill_rc'), '0', ctx());
    assert.match(lab.get('tandem_promoted'), /FAILED OVER .*the guest runs here from epoch \d+/, `host 1 did not fail over\n${ctx()}`);
    assert.notEqual(lab.get('tandem_failover_service_ms'), 'timeout', `the guest never answered from host 1\n${ctx()}`);
    assert.equal(lab.get('tandem_listed_on_host1'), '0', `the guest does not run on host 1\n${ctx()}`);
    assert.notEqual(lab.get('tandem_listed_on_host2'), '0', `the guest still runs on host 2\n${ctx()}`);
    assert.equal(lab.get('tandem_run_id_after'), lab.get('run_id_before'), `redis-server restarted\n${ctx()}`);
    assert.equal(lab.get('ledger_survivor_answered_all'), 'true', ctx());
    assert.ok(lab.num('ledger_acked_writes') > 0, ctx());
    assert.equal(lab.num('ledger_lost_acked_writes'), 0, `acknowledged writes lost\n${ctx()}`);
    assert.equal(lab.get('oom_kills'), '0', `a dom0 kernel killed for memory: ${lab.get('oom_lines')}\n${ctx()}`);
    t.diagnostic(`protected after ${lab.num('tandem_protected_ms')} ms; ${lab.get('tandem_checkpoints')} checkpoints; failover ${lab.num('tandem_failover_ms')} ms (heartbeat timeout 3000 ms included); ${lab.get('ledger_acked_writes')} writes acknowledged, 0 lost`);
  });
});
