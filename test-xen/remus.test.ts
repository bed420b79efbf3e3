/**
 * Tandem protecting a real Xen guest, on one lab host (test-xen/remus.sh):
 * `tandem primary` and `tandem secondary` in one dom0, as `xl remus ...
 * localhost` runs, with a client ledger on the guest's redis-server over its
 * vif. When the lab cannot boot, every test here fails.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SharedLabRun } from './lab.js';

describe('Tandem protects a Xen guest on one host', { timeout: 30 * 60_000 }, () => {
  const lab = new SharedLabRun('bash test-xen/remus.sh', { timeoutS: 1200 });
  const ctx = () => lab.context();

  it('tandem primary protects the running guest: the secondary holds its first checkpoint, then at least 100 more under a client\'s load', async (t) => {
    await lab.booted();
    assert.equal(lab.get('create_rc'), '0', ctx());
    assert.notEqual(lab.get('service_up_ms'), 'timeout', ctx());
    assert.ok(lab.num('protected') >= 1, `protection never started\n${ctx()}`);
    assert.ok(lab.num('checkpoints') >= 100, `only ${lab.get('checkpoints')} checkpoints\n${ctx()}`);
    assert.equal(lab.get('primary_alive'), 'yes', `the primary died under load\n${ctx()}`);
    assert.match(lab.get('plug_before_kill'), /plug/, `no plug qdisc held the guest's output\n${ctx()}`);
    const perS = lab.num('checkpoints') / (lab.num('load_ms') / 1000);
    t.diagnostic(`protected after ${lab.num('protected_ms')} ms; ${lab.get('checkpoints')} checkpoints in ${lab.num('load_ms')} ms (${perS.toFixed(2)}/s at interval 200 ms), guest paused ${((lab.num('paused_ms_total') / lab.num('load_ms')) * 100).toFixed(0)} % of that time; per epoch (median) pause ${lab.get('epoch_pause_median_ms')} ms, suspend-to-ack ${lab.get('epoch_total_median_ms')} ms, ${lab.get('epoch_pages_median')} pages`);
  });

  it('SIGKILL of tandem primary and xl destroy of its domain: the secondary fails over, and the guest answers with its state, from the same redis process', async (t) => {
    await lab.booted();
    assert.equal(lab.get('destroy_rc'), '0', ctx());
    assert.match(lab.get('promoted'), /FAILED OVER .*the guest runs here from epoch \d+/, `the secondary did not fail over\n${ctx()}`);
    assert.notEqual(lab.get('failover_service_ms'), 'timeout', `the promoted guest never answered\n${ctx()}`);
    assert.equal(lab.get('note_after'), 'written-before-protection', ctx());
    assert.equal(lab.get('run_id_after'), lab.get('run_id_before'), `redis-server restarted: the guest did not go on from a checkpoint\n${ctx()}`);
    assert.equal(lab.get('ping_after_secondary_exit'), 'PONG', `the promoted guest did not outlive tandem secondary\n${ctx()}`);
    t.diagnostic(`failover (SIGKILL + xl destroy to the guest's service answering): ${lab.num('failover_ms')} ms (heartbeat timeout 3000 ms included); ${lab.get('promoted')}`);
  });

  it('the client ledger: no acknowledged write lost across the failover', async (t) => {
    await lab.booted();
    assert.equal(lab.get('ledger_survivor_answered_all'), 'true', `the survivor did not answer every client\n${ctx()}`);
    assert.ok(lab.num('ledger_acked_writes') > 0, `no write was acknowledged\n${ctx()}`);
    assert.equal(lab.num('ledger_lost_acked_writes'), 0, `acknowledged writes lost\n${ctx()}`);
    t.diagnostic(`${lab.get('ledger_acked_writes')} writes acknowledged, 0 lost; longest gap without a reply ${lab.get('ledger_longest_gap_ms')} ms`);
  });
});
