/**
 * The Xen lab itself, on a real Xen 4.17 under QEMU: one boot (xen-lab run
 * 'bash test-xen/basics.sh'), then assertions on what dom0 reported. When
 * the lab cannot boot, every test here fails.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SharedLabRun } from './lab.js';

// xl's save file magic, 32 bytes (docs/xen.md).
const XL_MAGIC = Buffer.from('Xen saved domain, xl format\n \0 \r', 'latin1');

describe('the Xen lab, one host', { timeout: 30 * 60_000 }, () => {
  const lab = new SharedLabRun('bash test-xen/basics.sh', { timeoutS: 900 });
  const ctx = () => lab.context();

  it('boots dom0 with a toolstack: xl info answers with Xen 4.17', async () => {
    await lab.booted();
    assert.equal(lab.get('xl_info_rc'), '0', ctx());
    assert.equal(lab.get('xen_version'), '4.17', ctx());
  });

  it('xl create $LAB_GUEST_CFG starts the PVH guest and its redis-server answers over the vif', async (t) => {
    await lab.booted();
    assert.equal(lab.get('create_rc'), '0', ctx());
    assert.equal(lab.get('listed_after_create'), '0', ctx());
    assert.notEqual(lab.get('service_up_ms'), 'timeout', `the guest's service never answered\n${ctx()}`);
    assert.equal(lab.get('set_reply'), 'OK', ctx());
    assert.equal(lab.get('note_before'), 'written-before-save', ctx());
    assert.equal(lab.get('counter_before'), '3', ctx());
    assert.match(lab.get('run_id_before'), /^[0-9a-f]{40}$/, ctx());
    t.diagnostic(`xl create ${lab.num('create_ms')} ms, service up ${lab.num('service_up_ms')} ms after that`);
  });

  it('xl save writes an xl-format file and takes the guest down', async (t) => {
    await lab.booted();
    assert.equal(lab.get('save_rc'), '0', ctx());
    assert.equal(lab.get('save_magic_hex'), XL_MAGIC.toString('hex'), `not an xl save file\n${ctx()}`);
    // 128 MiB of guest memory: the file holds at least the pages in use.
    assert.ok(lab.num('save_bytes') > 1 << 20, `save file only ${lab.get('save_bytes')} bytes\n${ctx()}`);
    assert.notEqual(lab.get('listed_after_save'), '0', `the guest still runs after xl save\n${ctx()}`);
    t.diagnostic(`xl save ${lab.num('save_ms')} ms, ${(lab.num('save_bytes') / (1 << 20)).toFixed(1)} MiB`);
  });

  it('xl restore brings the guest back with its state: the same redis process, the counter goes on', async (t) => {
    const run = await lab.booted();
    assert.equal(lab.get('restore_rc'), '0', ctx());
    assert.notEqual(lab.get('service_back_ms'), 'timeout', `the restored guest's service never answered\n${ctx()}`);
    assert.equal(lab.get('note_after'), 'written-before-save', ctx());
    assert.equal(lab.get('counter_after'), '4', `the counter restarted\n${ctx()}`);
    assert.equal(lab.get('run_id_after'), lab.get('run_id_before'), `redis-server restarted\n${ctx()}`);
    assert.equal(lab.get('destroy_rc'), '0', ctx());
    t.diagnostic(`xl restore ${lab.num('restore_ms')} ms, service back ${lab.num('service_back_ms')} ms after that; whole lab run ${(run.ms / 1000).toFixed(1)} s`);
  });

  it('tandem save --xen writes an xl save file Xen reads back: verify-stream-v2 and tandem stream inspect accept it, xl restore continues the guest from its state', async (t) => {
    await lab.booted();
    assert.equal(lab.get('tsave_rc'), '0', `tandem save --xen failed\n${ctx()}`);
    assert.match(lab.get('tsave_out'), /wrote .*tandem\.save: \d+ bytes, xl save format, plain; domain \d+ destroyed/, ctx());
    assert.equal(lab.get('tsave_magic_hex'), XL_MAGIC.toString('hex'), `not an xl save file\n${ctx()}`);
    assert.notEqual(lab.get('listed_after_tsave'), '0', `the guest still runs after tandem save --xen\n${ctx()}`);
    assert.equal(lab.get('tverify_rc'), '0', `Xen's verifier refused the file\n${ctx()}`);
    assert.equal(lab.get('tinspect_rc'), '0', ctx());
    assert.equal(lab.get('trestore_rc'), '0', ctx());
    assert.notEqual(lab.get('tservice_back_ms'), 'timeout', `the guest restored from Tandem's file never answered\n${ctx()}`);
    assert.equal(lab.get('tnote_after'), 'written-before-tandem-save', ctx());
    assert.equal(lab.num('tcounter_after'), lab.num('tcounter_before') + 1, `the counter restarted\n${ctx()}`);
    assert.equal(lab.get('trun_id_after'), lab.get('run_id_before'), `redis-server restarted\n${ctx()}`);
    t.diagnostic(`tandem save --xen ${lab.num('tsave_ms')} ms (the CLI's own count: ${lab.get('tsave_out').replace(/.*; /, '')}), xl restore ${lab.num('trestore_ms')} ms`);
  });

  it('output commit on the guest\'s real vif: a reply the guest sends during an epoch leaves only once that epoch\'s checkpoint is acked; block and release are rtnetlink requests, not tc spawns', async (t) => {
    await lab.booted();
    assert.equal(lab.get('nb_rc'), '0', ctx());
    assert.equal(lab.get('nb_setup'), 'ok', ctx());
    assert.match(lab.get('nb_free'), /^PONG after \d+ ms$/, `output did not pass before the first checkpoint\n${ctx()}`);
    assert.equal(lab.get('nb_held_before_checkpoint'), 'yes', `the reply left during its epoch\n${ctx()}`);
    assert.equal(lab.get('nb_held_before_ack'), 'yes', `the reply left before its checkpoint was acked\n${ctx()}`);
    assert.match(lab.get('nb_after_ack'), /^PONG after \d+ ms$/, `the reply did not leave once acked\n${ctx()}`);
    assert.match(lab.get('nb_after_teardown'), /^PONG after \d+ ms$/, `output does not pass after teardown\n${ctx()}`);
    const netlink = lab.num('nb_netlink_op_ms');
    const spawned = lab.num('nb_tc_spawn_op_ms');
    t.diagnostic(`one block or release: ${netlink} ms through the co-process's netlink socket, ${spawned} ms as a tc spawn (median; TCG), ${(spawned / netlink).toFixed(1)}x; the held reply left ${lab.get('nb_after_ack')} the release`);
  });

  it('tandem save --xen --checkpoints 5: a Remus stream of the running guest through Xen\'s helper; after the primary is destroyed, xl migrate-receive -r -e fails over from it with the guest\'s state', async (t) => {
    await lab.booted();
    assert.equal(lab.get('rsave_rc'), '0', `tandem save --xen --checkpoints failed\n${ctx()}`);
    assert.match(lab.get('rsave_out'), /5 checkpoints \(pages [\d,]+\), ended after the last checkpoint: a failover point; domain \d+ runs on/, ctx());
    assert.equal(lab.get('listed_after_rsave'), '0', `the guest stopped running after the checkpoints\n${ctx()}`);
    assert.equal(lab.get('rping_after_rsave'), 'PONG', `the guest's service stopped answering after the checkpoints\n${ctx()}`);
    assert.equal(lab.get('rinspect_rc'), '0', ctx());
    assert.match(lab.get('rinspect_end'), /^ended after checkpoint 5/, ctx());
    assert.equal(lab.get('rdestroy_rc'), '0', ctx());
    assert.equal(lab.get('rreceive_rc'), '0', `xl migrate-receive -r -e did not fail over\n${ctx()}`);
    assert.notEqual(lab.get('rservice_back_ms'), 'timeout', `the guest built from the Remus stream never answered\n${ctx()}`);
    assert.equal(lab.get('rnote_after'), 'written-before-remus', ctx());
    assert.equal(lab.num('rcounter_after'), lab.num('rcounter_before') + 1, `the counter is not where the last checkpoint left it\n${ctx()}`);
    assert.equal(lab.get('rrun_id_after'), lab.get('run_id_before'), `redis-server restarted\n${ctx()}`);
    t.diagnostic(`5 checkpoints ${lab.num('rsave_ms')} ms (${lab.get('rsave_out').replace(/.*; /, '')}), failover by xl migrate-receive ${lab.num('rreceive_ms')} ms, service back ${lab.num('rservice_back_ms')} ms after`);
  });

  for (const [kind, what] of [
    ['torn', 'torn 100 bytes before its end'],
    ['bad', 'whose last CHECKPOINT_END is corrupted'],
  ] as const) {
    it(`tandem restore --xen of a Remus stream ${what}: only whole, valid checkpoints reach Xen, and the guest runs from checkpoint 4 with its state`, async (t) => {
      await lab.booted();
      assert.equal(lab.get(`${kind}_rc`), '0', `tandem restore --xen failed\n${ctx()}`);
      assert.match(lab.get(`${kind}_out`), /restored the domain from checkpoint 4 of .+; what came after it was not used: /, ctx());
      assert.notEqual(lab.get(`${kind}_service_ms`), 'timeout', `the restored guest never answered\n${ctx()}`);
      assert.equal(lab.get(`${kind}_note`), 'written-before-remus', ctx());
      assert.equal(lab.num(`${kind}_counter`), lab.num('rcounter_before') + 1, `the counter is not where the checkpoints left it\n${ctx()}`);
      t.diagnostic(`tandem restore --xen ${lab.num(`${kind}_ms`)} ms (Node's start in TCG included), service back ${lab.num(`${kind}_service_ms`)} ms after`);
    });
  }

  it('a PV guest ($LAB_GUEST_PV_CFG) survives a plain xl save / xl restore with its state', async (t) => {
    await lab.booted();
    assert.equal(lab.get('pv_create_rc'), '0', ctx());
    assert.notEqual(lab.get('pv_service_up_ms'), 'timeout', `the PV guest's service never answered\n${ctx()}`);
    assert.equal(lab.get('pv_counter_before'), '2', ctx());
    assert.equal(lab.get('pv_save_rc'), '0', ctx());
    assert.equal(lab.get('pv_save_magic_hex'), XL_MAGIC.toString('hex'), `not an xl save file\n${ctx()}`);
    assert.equal(lab.get('pv_restore_rc'), '0', ctx());
    assert.notEqual(lab.get('pv_service_back_ms'), 'timeout', `the restored PV guest's service never answered\n${ctx()}`);
    assert.equal(lab.get('pv_counter_after'), '3', `the PV guest's counter restarted\n${ctx()}`);
    assert.equal(lab.get('pv_destroy_rc'), '0', ctx());
    t.diagnostic(`PV: xl save ${lab.num('pv_save_ms')} ms, xl restore ${lab.num('pv_restore_ms')} ms`);
  });
});
