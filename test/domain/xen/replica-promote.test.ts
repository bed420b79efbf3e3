/**
 * XenReplicaGuest.promote() against a stand-in `xl` (a shell script: the
 * real one needs a Xen host, which the lab tests boot): it never fails over
 * beside a domain of the guest's name; one that goes within the failover's
 * bound (a primary's domain still in `xl destroy`) is waited for, and one
 * that stays refuses the failover without ending the restore's input.
 */
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { once } from 'node:events';
import { createServer, type AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { pino } from 'pino';
import { XenBinding } from '../../../src/domain/xen/binding.js';
import { tempDir } from '../../helpers/cli.js';

const tmp = tempDir('tandem-xl-');
after(() => tmp.cleanup());

/** `domid guest` answers while `present` exists; `migrate-receive` takes its input to `stream`, then marks that it ended. */
function fakeXl(dir: string): string {
  const file = `${dir}/xl`;
  writeFileSync(
    file,
    [
      '#!/bin/sh',
      `D=${dir}`,
      'case "$1" in',
      '  domid) [ "$2" = guest ] && [ -e "$D/present" ] && { echo 7; exit 0; }; echo "no domain $2" >&2; exit 1 ;;',
      '  destroy) exit 0 ;;',
      '  migrate-receive) cat > "$D/stream"; touch "$D/ended"; exit 0 ;;',
      'esac',
      'exit 2',
    ].join('\n'),
  );
  chmodSync(file, 0o755);
  return file;
}

describe('XenReplicaGuest.promote beside a domain of the same name', () => {
  // The promoted guest's service: accepting is all a promotion waits for.
  const service = createServer((s) => s.end());
  let port = 0;
  before(async () => {
    service.listen(0, '127.0.0.1');
    await once(service, 'listening');
    port = (service.address() as AddressInfo).port;
  });
  after(() => service.close());

  function setUp(name: string, failoverTimeoutMs: number) {
    const dir = tmp.path(name);
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir);
    writeFileSync(`${dir}/present`, '');
    const lines: { level: number; msg: string }[] = [];
    const logger = pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s) as { level: number; msg: string }) });
    const replica = new XenBinding({ xl: fakeXl(dir), service: { host: '127.0.0.1', port }, failoverTimeoutMs, suspendTimeoutMs: 1000 }).replica(logger);
    // Whatever the test's outcome, the stand-in receiver goes (a promoted replica's stop leaves it to its own end).
    after(() => replica.restore.close());
    return { dir, lines, replica };
  }

  test('one that goes within the bound (still being destroyed) is waited for, said once, then Xen fails over', async () => {
    const { dir, lines, replica } = setUp('goes', 10_000);
    await replica.restore.open({ json: '{"c_info":{"name":"guest"}}', name: 'guest' });
    const promoted = replica.promote({ service: { host: '127.0.0.1', port } });
    promoted.catch(() => undefined);
    // Several polls see it, and the restore's input stays open meanwhile.
    await new Promise((r) => setTimeout(r, 700));
    assert.equal(existsSync(`${dir}/ended`), false, "the restore's input was ended beside a domain of the guest's name");
    rmSync(`${dir}/present`);
    const p = await promoted;
    assert.equal(p.service.port, port);
    assert.equal(existsSync(`${dir}/ended`), true, 'Xen was never told to fail over');
    // The xl header Tandem wrote opens what Xen read.
    assert.equal(readFileSync(`${dir}/stream`).subarray(0, 8).toString('latin1'), 'Xen save');
    const waits = lines.filter((l) => /a domain named guest \(domid 7\) is still on this host: waiting/.test(l.msg));
    assert.equal(waits.length, 1, JSON.stringify(lines));
    await replica.stop();
  });

  test('one that stays refuses the failover at the bound, and Xen is not told to fail over', async () => {
    const { dir, replica } = setUp('stays', 1000);
    await replica.restore.open({ json: '{"c_info":{"name":"guest"}}', name: 'guest' });
    const t0 = performance.now();
    await assert.rejects(replica.promote({ service: { host: '127.0.0.1', port } }), (e: Error & { code?: string }) => {
      assert.equal(e.code, 'ERR_XEN_RESTORE_FAILED');
      assert.match(e.message, /a domain named guest \(domid 7\) is still on this host after 1000 ms: not failing over beside it/);
      return true;
    });
    assert.ok(performance.now() - t0 >= 1000, 'refused before the bound');
    assert.equal(existsSync(`${dir}/ended`), false, "the restore's input was ended");
    // Not promoted: stopping gives the restore up (its receiver killed), as for any replica.
    await replica.stop();
    assert.equal(existsSync(`${dir}/ended`), false);
  });
});
