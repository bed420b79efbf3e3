/**
 * The Xen lab itself, on a real Xen 4.17 under QEMU: one boot (xen-lab run
 * 'bash test-xen/basics.sh'), then assertions on what dom0 reported. When
 * the lab cannot boot every test here fails (the before hook throws); none
 * is skipped.
 */
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { labValues, runInLab, type LabResult } from './lab.js';

// xl's save file magic (tools/xl/xl_saverestore.c's header), 32 bytes.
const XL_MAGIC = Buffer.from('Xen saved domain, xl format\n \0 \r', 'latin1');

describe('the Xen lab', { timeout: 30 * 60_000 }, () => {
  let lab: LabResult;
  let v: Map<string, string>;
  // What a failed assertion prints: everything the run said.
  const context = () => `exit ${lab.status}${lab.signal ? ` (${lab.signal})` : ''}\n--- stdout:\n${lab.stdout}\n--- stderr (tail):\n${lab.stderr.slice(-6000)}`;
  const get = (key: string) => {
    const value = v.get(key);
    assert.ok(value !== undefined, `dom0 never reported ${key}\n${context()}`);
    return value;
  };
  const num = (key: string) => {
    const n = Number(get(key));
    assert.ok(Number.isFinite(n), `${key} is not a number: ${v.get(key)}\n${context()}`);
    return n;
  };

  before(async () => {
    lab = await runInLab('bash test-xen/basics.sh', { timeoutS: 900 });
    v = labValues(lab.stdout);
    assert.equal(lab.status, 0, `the lab run failed\n${context()}`);
  });

  it('boots dom0 with a toolstack: xl info answers with Xen 4.17', () => {
    assert.equal(get('xl_info_rc'), '0', context());
    assert.equal(get('xen_version'), '4.17', context());
  });

  it('xl create $LAB_GUEST_CFG starts the PVH guest and its redis-server answers over the vif', (t) => {
    assert.equal(get('create_rc'), '0', context());
    assert.equal(get('listed_after_create'), '0', context());
    assert.notEqual(get('service_up_ms'), 'timeout', `the guest's service never answered\n${context()}`);
    assert.equal(get('set_reply'), 'OK', context());
    assert.equal(get('note_before'), 'written-before-save', context());
    assert.equal(get('counter_before'), '3', context());
    assert.match(get('run_id_before'), /^[0-9a-f]{40}$/, context());
    t.diagnostic(`xl create ${num('create_ms')} ms, service up ${num('service_up_ms')} ms after that`);
  });

  it('xl save writes an xl-format file and takes the guest down', (t) => {
    assert.equal(get('save_rc'), '0', context());
    assert.equal(get('save_magic_hex'), XL_MAGIC.toString('hex'), `not an xl save file\n${context()}`);
    // 128 MiB of guest memory: the file holds at least the pages in use.
    assert.ok(num('save_bytes') > 1 << 20, `save file only ${v.get('save_bytes')} bytes\n${context()}`);
    assert.notEqual(get('listed_after_save'), '0', `the guest still runs after xl save\n${context()}`);
    t.diagnostic(`xl save ${num('save_ms')} ms, ${(num('save_bytes') / (1 << 20)).toFixed(1)} MiB`);
  });

  it('xl restore brings the guest back with its state: the same redis process, the counter goes on', (t) => {
    assert.equal(get('restore_rc'), '0', context());
    assert.notEqual(get('service_back_ms'), 'timeout', `the restored guest's service never answered\n${context()}`);
    assert.equal(get('note_after'), 'written-before-save', context());
    assert.equal(get('counter_after'), '4', `the counter restarted\n${context()}`);
    assert.equal(get('run_id_after'), get('run_id_before'), `redis-server restarted\n${context()}`);
    assert.equal(get('destroy_rc'), '0', context());
    t.diagnostic(`xl restore ${num('restore_ms')} ms, service back ${num('service_back_ms')} ms after that; whole lab run ${(lab.ms / 1000).toFixed(1)} s`);
  });
});
