/**
 * A node whose stderr cannot take its log (a full disk, a closed stderr)
 * goes on working: the secondary keeps heartbeating and applying the
 * primary's checkpoints, and a SIGTERM still stops it in order. (With the
 * old logger it spun on the failed writes and never answered again.)
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { closeSync, openSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { after, test } from 'node:test';
import { CLI, tempDir } from '../helpers/cli.js';
import { spawnTandem } from '../helpers/proc.js';
import { tlsArgs } from '../helpers/tls.js';

const tmp = tempDir();
after(() => tmp.cleanup());

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address() as AddressInfo;
  await new Promise((r) => s.close(r));
  return port;
}

for (const [what, target] of [
  ['a full disk (/dev/full)', 'full'],
  ['a closed stderr', 'closed'],
] as const) {
  test(`a secondary whose stderr is ${what} protects the primary and stops on SIGTERM`, async () => {
    const [listen, heartbeat] = [await freePort(), await freePort()];
    const config = tmp.path(`${target}.yaml`);
    // Heartbeats every 100 ms, suspect after 200 ms of silence: a secondary wedged on its log is caught at once, while
    // the scheduling of a machine loaded by other suites (both nodes run mutual TLS here) is not taken for one.
    writeFileSync(config, `domain:\n  memory_mib: 8\n  disk_mib: 1\nheartbeat:\n  interval_ms: 100\n  timeout_ms: 1000\nsecondary:\n  listen: 127.0.0.1:${listen}\n  heartbeat: 127.0.0.1:${heartbeat}\n`);
    const full = target === 'full' ? openSync('/dev/full', 'w') : undefined;
    // Debug level: a line per epoch, so the log really is written all along.
    const secondary = spawn(process.execPath, [CLI, 'secondary', '--config', config, '--log-level', 'debug', ...(await tlsArgs('secondary'))], { stdio: ['ignore', 'ignore', full ?? 'ignore'] });
    if (full !== undefined) closeSync(full);
    after(() => secondary.kill('SIGKILL'));
    const exited = new Promise<number | null>((resolve) => secondary.once('exit', (code) => resolve(code)));
    const primary = spawnTandem(['primary', '--config', config, '--secondary', `127.0.0.1:${listen}`, '--heartbeat', `127.0.0.1:${heartbeat}`, '--service', '127.0.0.1:0', '--interval', '10', '--log-level', 'debug', ...(await tlsArgs('primary'))]);
    await primary.waitLine((l) => l.msg === 'protection: protected', 'protection');
    // Epochs keep being acked by the secondary after that.
    const protectedAt = primary.lines.filter((l) => l.msg === 'epoch').length;
    await primary.waitLine((l) => l.msg === 'epoch' && typeof l.epoch === 'number' && l.epoch >= protectedAt + 20, '20 more acked epochs');
    // Suspect (200 ms of silence) can be a loaded machine's scheduling; dead (a whole second) is a secondary wedged on its log.
    assert.equal(primary.lines.filter((l) => /heartbeat: secondary dead/.test(String(l.msg))).length, 0, 'the primary lost the secondary\'s heartbeats');
    secondary.kill('SIGTERM');
    assert.equal(await exited, 0, 'an orderly stop');
    primary.child.kill('SIGTERM');
    await primary.closed;
  });
}
