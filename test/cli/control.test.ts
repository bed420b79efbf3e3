/**
 * Every control action of the monitor from the command line, against a
 * real primary and secondary: `tandem set-mode`, `checkpoint`,
 * `set-interval`, `stop`, `start` on the primary, `failover` on the
 * secondary (the live primary is then fenced), each with the token from
 * --token-file; what the nodes report afterwards is read back with `tandem
 * status`, whose exit status says whether the node is healthy. A `tandem
 * watch` on the primary ends with an error when the fenced primary's
 * monitor goes away.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { connect } from 'node:net';
import { writeFileSync } from 'node:fs';
import { after, describe, test } from 'node:test';
import { validateEvent, type SnapshotEvent } from '../../src/monitor/events.js';
import { CLI, runTandem, tempDir, type RunResult } from '../helpers/cli.js';
import { monitoredPair } from '../helpers/proc.js';
import { until } from '../helpers/wait.js';

const tmp = tempDir();
after(() => tmp.cleanup());
const TOKEN = 'control-test-token-0123456789';
// The commands must find the token where they are told to, not in the test runner's environment.
const ENV = { ...process.env, TANDEM_MONITOR_TOKEN: '' };

function snapshot(url: string): { status: number | null; s: SnapshotEvent; raw: string } {
  const r = runTandem(['status', url, '--json'], { env: ENV });
  assert.ok(r.status === 0 || r.status === 4, r.stderr);
  return { status: r.status, s: validateEvent(JSON.parse(r.stdout)) as SnapshotEvent, raw: r.stdout };
}

describe('control from the command line', () => {
  test('each action of the primary and the secondary, then the fenced primary\'s watcher fails', async () => {
    const serverToken = tmp.path('server-token');
    writeFileSync(serverToken, `${TOKEN}\n`, { mode: 0o600 });
    const tokenFile = tmp.path('client-token');
    writeFileSync(tokenFile, `${TOKEN}\n`, { mode: 0o600 });
    const config = tmp.path('pair.yaml');
    writeFileSync(config, `domain:\n  memory_mib: 4\nprimary:\n  interval_ms: 30\nsecondary:\n  listen: 127.0.0.1:0\n  service: 127.0.0.1:0\nmonitor:\n  token_file: ${serverToken}\n`);
    const { secondary, primary, primaryMonitor: pri, secondaryMonitor: sec } = await monitoredPair(config);
    const priHost = new URL(pri).host;
    const ctl = (...args: string[]): RunResult => runTandem([...args, '--token-file', tokenFile], { env: ENV });
    const done = (r: RunResult, pattern: RegExp): void => {
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stderr, '');
      assert.match(r.stdout.trimEnd(), pattern);
      assert.equal(r.stdout.split('\n').length, 2, 'one line');
    };

    // Healthy both: the primary protects, the secondary stands by.
    await until(() => snapshot(sec).s.state === 'standby', 'the secondary to stand by', 30_000, 100);
    const human = runTandem(['status', pri], { env: ENV });
    assert.equal(human.status, 0, human.stderr);
    assert.match(human.stdout, /^health: +healthy: the guest is protected$/m);
    assert.match(human.stdout, /^mode: +remus, every 30 ms$/m);
    assert.match(human.stdout, /^lag: +(-|\d+(\.\d+)? ms)$/m);
    assert.match(human.stdout, /^last: +epoch \d+ \(\w+\), pause \d+(\.\d+)? ms, \d+ dirty pages, \d+(\.\d)? (B|KiB|MiB), total \d+(\.\d+)? ms$/m);
    assert.equal(runTandem(['status', sec], { env: ENV }).status, 0);
    // `clients` counts the guest's service clients (not the monitor's).
    const service = await primary.waitLine((l) => typeof l.service === 'string' && /guest service on/.test(String(l.msg)), 'the service');
    assert.equal(snapshot(pri).s.clients, 0);
    const client = connect(Number(String(service.service).split(':').pop()), '127.0.0.1');
    await new Promise<void>((r) => client.once('connect', r));
    await until(() => snapshot(pri).s.clients === 1, 'the client counted', 10_000, 50);
    assert.match(runTandem(['status', pri], { env: ENV }).stdout, /^clients: +1 connected to the guest's service$/m);
    client.destroy();
    await until(() => snapshot(pri).s.clients === 0, 'the client gone', 10_000, 50);
    // No float noise in --json: milliseconds to 0.01, microseconds whole.
    const { raw } = snapshot(pri);
    assert.doesNotMatch(raw, /\d\.\d{3,}/, raw.slice(0, 400));
    assert.doesNotMatch(raw, /"pauseUs":\d+\.\d/);

    // Manual mode: no timer, so the next epoch is the operator's.
    done(ctl('set-mode', 'manual', pri), new RegExp(`^primary at ${priHost}: checkpoint mode set to manual$`));
    await until(() => snapshot(pri).s.mode === 'manual', 'manual mode', 10_000, 50);
    const before = snapshot(pri).s.lastEpoch;
    done(ctl('checkpoint', pri), /^primary at [^:]+:\d+: checkpoint requested/);
    await until(() => snapshot(pri).s.lastEpoch > before, 'the checkpoint asked for', 10_000, 50);
    const after1 = snapshot(pri).s;
    assert.equal(after1.lastEpoch, before + 1, 'one epoch: the one asked for');
    assert.equal(after1.recent.at(-1)?.trigger, 'operator');

    // Back to Remus, at another interval.
    done(ctl('set-mode', 'remus', pri), /checkpoint mode set to remus$/);
    done(ctl('set-interval', '45', pri), /^primary at [^:]+:\d+: checkpoint interval set to 45 ms$/);
    await until(() => snapshot(pri).s.intervalMs === 45, 'the new interval', 10_000, 50);
    assert.equal(snapshot(pri).s.mode, 'remus');

    // Stop protection: the primary is not healthy (exit 4) until it is started again.
    done(ctl('stop', pri), /protection stopped: the guest runs unprotected until `tandem start`$/);
    await until(() => snapshot(pri).status === 4, 'status to say unhealthy', 10_000, 50);
    const stopped = runTandem(['status', pri], { env: ENV });
    assert.equal(stopped.status, 4);
    assert.match(stopped.stdout, /^health: +NOT HEALTHY: the guest is not protected \((stopped|stopping)\)$/m);
    done(ctl('start', pri), /protection starting: a fresh pre-copy to the secondary/);
    await until(() => snapshot(pri).status === 0, 'protection again', 60_000, 100);
    assert.equal(snapshot(pri).s.state, 'protected');

    // Refusals: an action this node does not offer, a wrong token: exit 1, one line, the monitor's code.
    const unsupported = ctl('failover', pri);
    assert.equal(unsupported.status, 1);
    assert.match(unsupported.stderr, /^tandem: error: failover: failover is not offered by this node \(offered: .*\) \[ERR_MONITOR_UNSUPPORTED\]\n$/);
    const wrong = runTandem(['checkpoint', pri], { env: { ...process.env, TANDEM_MONITOR_TOKEN: 'not-the-token-0123456789' } });
    assert.equal(wrong.status, 1);
    assert.match(wrong.stderr, /checkpoint: control refused: wrong token \[ERR_MONITOR_UNAUTHORIZED\]\n$/);
    const badInterval = ctl('set-interval', '60001', pri);
    assert.equal(badInterval.status, 2, 'refused before it is sent');

    // A watcher of the primary, then a failover of the live primary: it is fenced and its monitor goes away.
    const watch = spawn(process.execPath, [CLI, 'watch', pri, '--lines'], { stdio: ['ignore', 'pipe', 'pipe'], env: ENV });
    after(() => watch.kill('SIGKILL'));
    let watchOut = '';
    let watchErr = '';
    watch.stdout.on('data', (d: Buffer) => (watchOut += d.toString()));
    watch.stderr.on('data', (d: Buffer) => (watchErr += d.toString()));
    const watchClosed = new Promise<number | null>((resolve) => watch.once('close', resolve));
    await until(() => / primary snapshot: /.test(watchOut), "the watcher's snapshot", 10_000, 20);

    const failover = ctl('failover', sec);
    done(failover, /^secondary at [^:]+:\d+: failed over: the guest runs here from epoch \d+, serving 127\.0\.0\.1:\d+ \(took \d+(\.\d+)? ms\)$/);
    assert.equal(await primary.closed, 3, 'the live primary is fenced (EXIT_FENCED)');
    assert.equal(await watchClosed, 1, `watch: ${watchErr}`);
    assert.match(watchErr, new RegExp(`^tandem: error: the monitor at ws://${priHost.replace(/\./g, '\\.')}/ws went away after \\d+ events.*\\[ERR_MONITOR_UNREACHABLE\\]\\n$`));
    const over = runTandem(['status', sec], { env: ENV });
    // It serves, with no standby (its primary was fenced and is gone): a check command must say so.
    assert.equal(over.status, 4, over.stdout);
    assert.match(over.stdout, /^state: +failed-over .*; unprotected/m);
    assert.match(over.stdout, /^health: +NOT HEALTHY: failed over: serving the guest, unprotected$/m);
    secondary.child.kill('SIGTERM');
    await secondary.closed;
  });
});
