/**
 * Secondary loss with the real processes: the secondary is SIGKILLed while
 * clients use the guest through the primary's front; the primary says it is
 * unprotected, keeps serving (held output is released, the default policy),
 * and re-protects with a fresh pre-copy when a secondary comes back on the
 * same address.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { after, test } from 'node:test';
import { CLI, tempDir } from '../helpers/cli.js';
import { ReplyReader, request } from '../guest/helpers.js';
import { connect } from 'node:net';
import { until } from '../helpers/wait.js';
import { tlsArgs } from '../helpers/tls.js';

const tmp = tempDir();
after(() => tmp.cleanup());

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

function spawnTandem(args: string[]): { child: ChildProcess; log: () => string } {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  after(() => child.kill('SIGKILL'));
  let text = '';
  child.stderr.on('data', (d: Buffer) => (text += d.toString()));
  return { child, log: () => text };
}

/** Long waits: real processes starting, protecting and failing over. */
const WAIT_MS = 20_000;

const count = (text: string, re: RegExp): number => (text.match(re) ?? []).length;

test('the primary keeps serving when its secondary dies and re-protects when one returns', async () => {
  const listen = await freePort();
  const hb = await freePort();
  const config = tmp.path('loss.yaml');
  writeFileSync(config, `domain:\n  memory_mib: 4\nprimary:\n  retry_ms: 100\nsecondary:\n  listen: 127.0.0.1:${listen}\n  heartbeat: 127.0.0.1:${hb}\n  service: 127.0.0.1:0\n`);
  const secondaryArgs = ['secondary', '--config', config, ...(await tlsArgs('secondary'))];
  let secondary = spawnTandem(secondaryArgs);
  await until(() => /secondary listening/.test(secondary.log()), 'the secondary', WAIT_MS);
  const primary = spawnTandem(['primary', '--config', config, '--secondary', `127.0.0.1:${listen}`, '--heartbeat', `127.0.0.1:${hb}`, '--service', '127.0.0.1:0', ...(await tlsArgs('primary'))]);
  await until(() => /"state":"protected"/.test(primary.log()), 'protection', WAIT_MS);
  const servicePort = Number(/guest service on 127\.0\.0\.1:(\d+)/.exec(primary.log())![1]);

  const sock = connect({ port: servicePort, host: '127.0.0.1' });
  const replies = new ReplyReader(sock);
  await new Promise((r) => sock.once('connect', r));
  let n = 0;
  const incr = async (): Promise<void> => {
    sock.write(request('INCR', 'c'));
    assert.equal(await replies.next(5000), ++n);
  };
  for (let i = 0; i < 5; i++) await incr();

  secondary.child.kill('SIGKILL');
  await until(() => /UNPROTECTED/.test(primary.log()) && /"state":"degraded"/.test(primary.log()), 'the primary to say it is unprotected', WAIT_MS);
  // Unprotected but available: replies keep coming.
  for (let i = 0; i < 5; i++) await incr();

  secondary = spawnTandem(secondaryArgs);
  const protectedBefore = count(primary.log(), /"state":"protected"/g);
  await until(() => count(primary.log(), /"state":"protected"/g) > protectedBefore, 're-protection', WAIT_MS);
  // The first pre-copy is "precopy", the one after protection was lost "re-protecting" (the monitor's word, in the log too).
  assert.ok(count(primary.log(), /"state":"precopy"/g) >= 1 && count(primary.log(), /"state":"re-protecting"/g) >= 1, 'a fresh pre-copy re-protected the guest');
  for (let i = 0; i < 5; i++) await incr();
  await until(() => /replica protected/.test(secondary.log()), 'the new secondary to hold a checkpoint', WAIT_MS);
  sock.destroy();
});
