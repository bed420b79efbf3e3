/**
 * A planned switchover from the command line, with real processes:
 * `tandem switchover URL` against the primary's monitor (token from the
 * environment) hands the guest to the secondary, which serves at once; the
 * primary exits 0. Without the token nothing happens.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { after, describe, test } from 'node:test';
import { ask } from '../guest/helpers.js';
import { runTandem, tempDir } from '../helpers/cli.js';
import { monitoredPair } from '../helpers/proc.js';

const tmp = tempDir();
after(() => tmp.cleanup());
const TOKEN = 'switchover-test-token-0123456789';

describe('tandem switchover', () => {
  test('hands the guest over: a last checkpoint, the secondary serves what was acknowledged, the primary exits 0; without the token it is refused and nothing changes', async () => {
    const tokenFile = tmp.path('token');
    writeFileSync(tokenFile, `${TOKEN}\n`, { mode: 0o600 });
    const config = tmp.path('pair.yaml');
    writeFileSync(config, `domain:\n  memory_mib: 4\nprimary:\n  interval_ms: 20\nsecondary:\n  listen: 127.0.0.1:0\n  service: 127.0.0.1:0\nmonitor:\n  token_file: ${tokenFile}\n`);
    const { secondary, primary, primaryMonitor } = await monitoredPair(config);
    const service = Number(String((await primary.waitLine((l) => typeof l.service === 'string' && /guest service on/.test(String(l.msg)), 'the service')).service).split(':').pop());
    assert.deepEqual(await ask(service, [['SET', 'k', 'v1'], ['INCR', 'n'], ['INCR', 'n']]), ['OK', 1, 2]);

    const refused = runTandem(['switchover', primaryMonitor], { env: { ...process.env, TANDEM_MONITOR_TOKEN: 'not-the-token-0123456789' } });
    assert.equal(refused.status, 1, refused.stderr);
    assert.match(refused.stderr, /switchover: control refused: wrong token \[ERR_MONITOR_UNAUTHORIZED\]/);
    assert.deepEqual(await ask(service, [['INCR', 'n']]), [3], 'the primary still serves');

    const done = runTandem(['switchover', primaryMonitor], { env: { ...process.env, TANDEM_MONITOR_TOKEN: TOKEN } });
    assert.equal(done.status, 0, done.stderr);
    assert.match(done.stdout, /switchover started/);
    const promoted = await secondary.waitLine((l) => /FAILED OVER \(planned switchover/.test(String(l.msg)), 'the takeover');
    assert.equal(await primary.closed, 0, 'the primary stopped in order');
    assert.ok(primary.lines.some((l) => /stopping in order \(an operator's switchover\): switchover/.test(String(l.msg))));
    const port = Number(String(promoted.service).split(':').pop());
    assert.deepEqual(await ask(port, [['GET', 'k'], ['INCR', 'n']]).then((r) => r.map((x) => (Buffer.isBuffer(x) ? x.toString() : x))), ['v1', 4]);
    secondary.child.kill('SIGTERM');
    await secondary.closed;
  });
});
