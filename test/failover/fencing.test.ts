/**
 * Failover and fencing with the real processes: the secondary takes over
 * when the primary's heartbeats stop, and an old primary that comes back
 * hears the newer generation and refuses to serve.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { after, test } from 'node:test';
import { tempDir } from '../helpers/cli.js';
import { spawnTandem } from '../helpers/proc.js';
import { tlsArgs } from '../helpers/tls.js';

const tmp = tempDir();
after(() => tmp.cleanup());

const portOf = (v: unknown): number => Number(String(v).split(':').at(-1));

test('the secondary takes over on heartbeat silence; the returning old primary is fenced', async () => {
  const config = tmp.path('t.yaml');
  writeFileSync(config, 'domain:\n  memory_mib: 4\nsecondary:\n  listen: 127.0.0.1:0\n  service: 127.0.0.1:0\n');
  const secondary = spawnTandem(['secondary', '--config', config, ...(await tlsArgs('secondary'))]);
  const listen = await secondary.waitLine((l) => /secondary listening/.test(String(l.msg)), 'the secondary');
  const hb = await secondary.waitLine((l) => l.heartbeat !== undefined, 'the heartbeat channel');
  const primaryArgs = ['primary', '--config', config, '--secondary', `127.0.0.1:${String(listen.port)}`, '--heartbeat', String(hb.heartbeat), '--service', '127.0.0.1:0', ...(await tlsArgs('primary'))];
  const primary = spawnTandem(primaryArgs);
  await primary.waitLine((l) => l.state === 'protected', 'protection');
  await secondary.waitLine((l) => l.to === 'alive' && /^heartbeat: primary alive/.test(String(l.msg)), 'the secondary to hear the primary');

  primary.child.kill('SIGKILL');
  const over = await secondary.waitLine((l) => /FAILED OVER/.test(String(l.msg)), 'the failover');
  // Taken over on the heartbeat detector's verdict of silence (how soon is bench/failover.ts's to measure).
  const dead = secondary.lines.findIndex((l) => l.to === 'dead' && /^heartbeat: primary dead/.test(String(l.msg)));
  assert.ok(dead >= 0 && dead < secondary.lines.indexOf(over), 'failed over without the primary declared dead');
  assert.match(String(secondary.lines[dead].reason), /nothing received for/);
  assert.match(String(over.msg), /taking over as generation 2/);
  assert.ok(portOf(over.service) > 0);

  // The old primary comes back with its old generation: it must refuse to serve.
  const old = spawnTandem(primaryArgs);
  const code = await old.closed;
  // Status 3, as for a primary fenced while it runs: restarting it as a primary cannot help (examples/systemd/).
  assert.equal(code, 3, old.text());
  assert.match(old.text(), /tandem: error: fenced: a node runs as primary with generation 2 \(this one: 1\); not serving the guest \[ERR_FENCED\]/);
  assert.ok(!old.lines.some((l) => /guest service on/.test(String(l.msg))), 'the fenced primary never opened its service');
});
