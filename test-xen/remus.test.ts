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
    // The monitor, unchanged for a Xen domain: the primary's status and its epoch counter.
    assert.equal(lab.get('monitor_role'), 'primary', ctx());
    assert.equal(lab.get('monitor_state'), 'protected', ctx());
    assert.ok(lab.num('monitor_last_epoch') >= 100, ctx());
    assert.ok(lab.num('monitor_epochs') >= 100, `the monitor counted ${lab.get('monitor_epochs')} epochs\n${ctx()}`);
    const perS = lab.num('checkpoints') / (lab.num('load_ms') / 1000);
    t.diagnostic(`protected after ${lab.num('protected_ms')} ms; ${lab.get('checkpoints')} checkpoints in ${lab.num('load_ms')} ms (${perS.toFixed(2)}/s at interval 200 ms), guest paused ${((lab.num('paused_ms_total') / lab.num('load_ms')) * 100).toFixed(0)} % of that time; per epoch (median) pause ${lab.get('epoch_pause_median_ms')} ms (xenstore suspend ${lab.get('xen_suspend_median_ms')} ms, fast resume ${lab.get('xen_resume_median_ms')} ms), suspend-to-ack ${lab.get('epoch_total_median_ms')} ms, ${lab.get('epoch_pages_median')} pages`);
  });

  it('SIGKILL of tandem primary and xl destroy of its domain: the secondary fails over, and the guest answers with its state, from the same redis process', async (t) => {
    await lab.booted();
    assert.equal(lab.get('destroy_rc'), '0', ctx());
    // Taking over while the dead primary's domain was still here, it waited for it to go: one copy at a time.
    assert.equal(lab.get('waited_for_name'), '1', `the secondary never said it waited for the primary's domain to go\n${ctx()}`);
    assert.match(lab.get('listed_while_waiting'), /^Domain-0 lab-guest lab-guest--incoming $/, `while it waited, the replica ran or the primary's domain was gone\n${ctx()}`);
    assert.match(lab.get('promoted'), /FAILED OVER .*the guest runs here from epoch \d+/, `the secondary did not fail over\n${ctx()}`);
    assert.notEqual(lab.get('failover_service_ms'), 'timeout', `the promoted guest never answered\n${ctx()}`);
    assert.equal(lab.get('note_after'), 'written-before-protection', ctx());
    assert.equal(lab.get('run_id_after'), lab.get('run_id_before'), `redis-server restarted: the guest did not go on from a checkpoint\n${ctx()}`);
    assert.equal(lab.get('ping_after_secondary_exit'), 'PONG', `the promoted guest did not outlive tandem secondary\n${ctx()}`);
    t.diagnostic(`failover (SIGKILL, the secondary's takeover waiting for the dead primary's domain, xl destroy, to the guest's service answering): ${lab.num('failover_ms')} ms (heartbeat timeout 3000 ms included); ${lab.get('promoted')}`);
  });

  it('the client ledger: no acknowledged write lost across the failover', async (t) => {
    await lab.booted();
    assert.equal(lab.get('ledger_survivor_answered_all'), 'true', `the survivor did not answer every client\n${ctx()}`);
    assert.ok(lab.num('ledger_acked_writes') > 0, `no write was acknowledged\n${ctx()}`);
    assert.equal(lab.num('ledger_lost_acked_writes'), 0, `acknowledged writes lost\n${ctx()}`);
    t.diagnostic(`${lab.get('ledger_acked_writes')} writes acknowledged, 0 lost; longest gap without a reply ${lab.get('ledger_longest_gap_ms')} ms`);
  });

  it('output commit on the real vif with the secondary\'s acks held back 1500 ms by a relay: no reply reaches the client before its epoch is acked', async (t) => {
    await lab.booted();
    assert.equal(lab.num('oc_unprotected_answered'), 5, ctx());
    const delay = lab.num('oc_delay_ms');
    // The control: unprotected, the same PING is answered well inside the delay.
    assert.ok(lab.num('oc_unprotected_median_ms') < delay, `unprotected PINGs took ${lab.get('oc_unprotected_median_ms')} ms\n${ctx()}`);
    assert.ok(lab.num('oc_protected') >= 1, `the second protection never started\n${ctx()}`);
    assert.equal(lab.num('oc_delayed_answered'), 8, ctx());
    assert.ok(lab.num('oc_delayed_min_ms') >= delay, `a reply came ${lab.get('oc_delayed_min_ms')} ms after its request, before the ack held ${delay} ms could have come\n${ctx()}`);
    t.diagnostic(`PING unprotected: median ${lab.get('oc_unprotected_median_ms')} ms; protected with acks held ${delay} ms: min ${lab.get('oc_delayed_min_ms')}, median ${lab.get('oc_delayed_median_ms')}, max ${lab.get('oc_delayed_max_ms')} ms`);
  });

  it('Xen\'s save helper killed mid-protection: a typed error, the guest runs on unprotected and answers, protection is taken up again; tandem primary does not crash', async (t) => {
    await lab.booted();
    assert.equal(lab.get('helper_killed'), '0', `no save helper was running\n${ctx()}`);
    assert.match(lab.get('helper_degraded'), /protection: degraded/, `the primary did not say it lost protection\n${ctx()}`);
    // The UNPROTECTED line carries the codes of the error and its causes (no stack at error level).
    assert.match(lab.get('helper_error'), /"codes":\["ERR_[A-Z_]+"/, `no typed error was logged\n${ctx()}`);
    assert.equal(lab.get('helper_ping'), 'PONG', `the guest did not answer after the helper died\n${ctx()}`);
    assert.equal(lab.get('helper_primary_alive'), 'yes', `tandem primary died\n${ctx()}`);
    assert.ok(lab.num('helper_reprotected') >= 2, `protection was not taken up again\n${ctx()}`);
    assert.equal(lab.get('phase3_primary_exit'), '0', `tandem primary exited ${lab.get('phase3_primary_exit')} on SIGTERM; what it logged last: ${lab.get('phase3_stop_log')}\n${ctx()}`);
    assert.equal(lab.get('ping_after_stop'), 'PONG', `standing the secondary down stopped the guest\n${ctx()}`);
    assert.doesNotMatch(lab.get('listed_final'), /--incoming/, `the stopped secondary left its restore's domain\n${ctx()}`);
    t.diagnostic(`${lab.get('helper_degraded')}; ${lab.get('helper_error')}; the guest answered ${lab.get('helper_ping_ms')} ms after the kill`);
  });

  it('no process in dom0 was killed for want of memory (the primary reads a live pre-copy only as fast as it sends it)', async () => {
    await lab.booted();
    assert.equal(lab.get('oom_kills'), '0', `dom0's kernel killed for memory: ${lab.get('oom_lines')}\n${ctx()}`);
  });

  it('a guest that never acknowledges a suspend request (paused under Tandem): a typed error after suspend_timeout_ms, loudly unprotected; unpaused, it answers and is protected again', async (t) => {
    await lab.booted();
    assert.equal(lab.get('noack_paused'), '0', ctx());
    assert.match(lab.get('noack_error'), /did not acknowledge the suspend request within 5000 ms/, `no suspend timeout was reported\n${ctx()}`);
    assert.match(lab.get('noack_codes'), /"ERR_XEN_SUSPEND_FAILED"/, `the error's codes do not name the suspend\n${ctx()}`);
    // Measured from the pause: the next checkpoint's request, then the 5000 ms bound (TCG's slowness on top).
    assert.ok(lab.num('noack_error_ms') < 30_000, `the timeout took ${lab.get('noack_error_ms')} ms to be reported\n${ctx()}`);
    assert.equal(lab.get('noack_ping'), 'PONG', `the guest did not answer once unpaused\n${ctx()}`);
    assert.equal(lab.get('noack_primary_alive'), 'yes', `tandem primary died\n${ctx()}`);
    assert.ok(lab.num('noack_reprotected') >= 3, `protection was not taken up again\n${ctx()}`);
    t.diagnostic(`the suspend timeout was reported ${lab.get('noack_error_ms')} ms after the pause: ${lab.get('noack_error')}`);
  });
});
