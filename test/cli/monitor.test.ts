/**
 * The monitor from the command line, with real processes: `--monitor` on
 * the primary and the secondary, `tandem status` and `tandem watch` against
 * them, a failover seen on the secondary's stream, the configuration's
 * refusals, and `tandem demo --monitor`.
 */
import assert from 'node:assert/strict';
import { rmSync, writeFileSync } from 'node:fs';
import { after, describe, test } from 'node:test';
import { validateEvent, type MonitorEvent, type SnapshotEvent } from '../../src/monitor/events.js';
import { runTandem, tempDir } from '../helpers/cli.js';
import { monitoredPair, spawnTandem } from '../helpers/proc.js';

const tmp = tempDir();
after(() => tmp.cleanup());
const TOKEN = 'cli-test-token-0123456789';

describe('tandem status / watch against real processes', () => {
  test('status and watch read the primary; the secondary streams its failover', async () => {
    const tokenFile = tmp.path('token');
    writeFileSync(tokenFile, `${TOKEN}\n`, { mode: 0o600 });
    const config = tmp.path('mon.yaml');
    writeFileSync(config, `domain:\n  memory_mib: 4\nprimary:\n  interval_ms: 30\nsecondary:\n  listen: 127.0.0.1:0\n  service: 127.0.0.1:0\nmonitor:\n  token_file: ${tokenFile}\n`);
    const { secondary, primary, secondaryMonitor: secUrl, primaryMonitor: priUrl } = await monitoredPair(config);

    const json = runTandem(['status', priUrl, '--json']);
    assert.equal(json.status, 0, json.stderr);
    const snap = validateEvent(JSON.parse(json.stdout)) as SnapshotEvent;
    assert.equal(snap.type, 'snapshot');
    assert.equal(snap.node, 'primary');
    assert.equal(snap.intervalMs, 30);

    const human = runTandem(['status', priUrl.replace(/^http:\/\//, '').replace(/\/$/, '')]);
    assert.equal(human.status, 0, human.stderr);
    assert.match(human.stdout, /^node: +primary$/m);
    assert.match(human.stdout, /^state: +(protected|re-protecting|precopy) /m);
    assert.match(human.stdout, /^controls: +checkpoint, set-interval, set-mode, switchover, stop-protection, start-protection$/m);

    const watched = runTandem(['watch', priUrl.replace(/^http/, 'ws') + 'ws', '--json', '--count', '4']);
    assert.equal(watched.status, 0, watched.stderr);
    const events = watched.stdout.trim().split('\n').map((l) => validateEvent(JSON.parse(l)));
    assert.equal(events.length, 4);
    assert.equal(events[0].type, 'snapshot');
    assert.ok(events.slice(1).every((e) => e.type === 'epoch'));

    const lines = runTandem(['watch', priUrl, '--count', '3']);
    assert.equal(lines.status, 0, lines.stderr);
    assert.match(lines.stdout, /^\S+ primary snapshot: /);
    assert.equal((lines.stdout.match(/ primary epoch \d+ \(timer\) pause /g) ?? []).length, 2);

    // Watch the secondary while the primary is killed.
    const watch = spawnTandem(['watch', secUrl, '--json'], { stream: 'stdout' });
    await watch.waitLine((l) => l.type === 'snapshot', "the secondary's snapshot");
    await watch.waitLine((l) => l.type === 'epoch', 'an applied epoch');
    primary.child.kill('SIGKILL');
    const failing = await watch.waitLine((l) => l.type === 'state' && l.state === 'failing-over', 'failing over');
    const failed = await watch.waitLine((l) => l.type === 'state' && l.state === 'failed-over', 'failed over');
    for (const e of [failing, failed]) validateEvent(e);
    assert.match(String(failed.reason), /the guest runs here from epoch \d+/);
    const after = JSON.parse(runTandem(['status', secUrl, '--json']).stdout) as MonitorEvent;
    assert.equal(after.type === 'snapshot' && after.state, 'failed-over');
    const metrics = await fetch(new URL('/metrics', secUrl)).then((r) => r.text());
    assert.match(metrics, /^tandem_failovers_total\{node="secondary",domain="guest"\} 1$/m);
    watch.child.kill('SIGTERM');
    secondary.child.kill('SIGTERM');
  });

  test('an unreachable monitor is one line and exit 1; a bad URL or --count is bad usage, exit 2', () => {
    for (const [args, pattern, status] of [
      [['status', '127.0.0.1:1'], /cannot reach the monitor at http:\/\/127\.0\.0\.1:1\/api\/status.*\[ERR_MONITOR_UNREACHABLE\]/, 1],
      [['watch', 'http://127.0.0.1:1/'], /cannot reach the monitor at ws:\/\/127\.0\.0\.1:1\/ws.*\[ERR_MONITOR_UNREACHABLE\]/, 1],
      [['status', 'ftp://127.0.0.1:5/'], /expected an http:\/\/ or ws:\/\/ URL \[ERR_CLI_USAGE\]/, 2],
      [['watch', '127.0.0.1:5', '--count', '0'], /--count: expected an integer in 1\.\.\d+, got 0 \[ERR_CLI_USAGE\]/, 2],
    ] as [string[], RegExp, number][]) {
      const r = runTandem(args);
      assert.equal(r.status, status, `${args.join(' ')}: ${r.stderr}`);
      assert.equal(r.stderr.trimEnd().split('\n').length, 1, r.stderr);
      assert.match(r.stderr, pattern);
    }
  });

  test('the monitor configuration is checked before anything starts', () => {
    const ONE_MACHINE = 'tls:\n  insecure: true\n';
    const write = (name: string, text: string): string => {
      const p = tmp.path(name);
      writeFileSync(p, text);
      return p;
    };
    const cases: [string[], RegExp][] = [
      [['secondary', '--config', write('short.yaml', 'monitor:\n  token: abc\n')], /monitor\.token: expected a string of 16\.\.512 characters \[ERR_CONFIG_INVALID\]/],
      [['secondary', '--config', write('both.yaml', `monitor:\n  token: ${TOKEN}\n  token_file: /x\n`)], /set token or token_file, not both/],
      [['secondary', '--config', write('key.yaml', 'monitor:\n  port: 5\n')], /monitor\.port: unknown key/],
      // These get as far as the node: its channels are plain TCP on loopback, which is all they need.
      [['secondary', '--config', write('nofile.yaml', `${ONE_MACHINE}monitor:\n  token_file: ${tmp.path('absent')}\n  listen: 127.0.0.1:0\n`)], /monitor\.token_file: cannot read/],
      [['secondary', '--config', write('open.yaml', `${ONE_MACHINE}secondary:\n  listen: 127.0.0.1:0\n`), '--monitor', '0.0.0.0:0'], /refusing to listen on 0\.0\.0\.0 \(not loopback\) without a control token.*\[ERR_MONITOR_BAD_OPTIONS\]/],

      [['secondary', '--config', write('closed.yaml', `${ONE_MACHINE}monitor:\n  loopback_read: false\n  listen: 127.0.0.1:0\n`)], /loopback_read is false but no token is configured/],
    ];
    for (const [args, pattern] of cases) {
      const r = runTandem(args);
      assert.equal(r.status, 1, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, pattern);
      assert.ok(!r.stderr.includes(TOKEN), 'a token is never echoed');
    }
  });

  test('a bad --monitor flag is bad usage: exit status 2, one line', () => {
    const r = runTandem(['secondary', '--monitor', 'nowhere']);
    assert.equal(r.status, 2, r.stderr);
    assert.equal(r.stderr.trimEnd().split('\n').length, 1, r.stderr);
    assert.match(r.stderr, /--monitor: expected HOST:PORT.*\[ERR_CLI_USAGE\]/);
  });

  test('tandem demo --monitor prints both dashboards and a control token', () => {
    const r = runTandem(['demo', '--monitor', '127.0.0.1:0', '--duration', '1', '--memory-mib', '4', '--service', '127.0.0.1:0']);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^dashboard control token \(this run only\): \S{20,}$/m);
    assert.match(r.stdout, /^dashboard: http:\/\/127\.0\.0\.1:\d+\/ \(primary\)$/m);
    assert.match(r.stdout, /^dashboard: http:\/\/127\.0\.0\.1:\d+\/ \(secondary: it survives a failover\)$/m);
    // The demo keeps its logs for a person to read; a test leaves nothing behind.
    const logs = /\(logs: (\/\S+)\)/.exec(r.stdout);
    assert.ok(logs !== null, `no logs directory named in ${r.stdout}`);
    rmSync(logs[1], { recursive: true, force: true });
    const none = runTandem(['demo', '--monitor', '127.0.0.1:0', '--mode', 'none', '--duration', '1']);
    assert.equal(none.status, 2, none.stderr);
    assert.match(none.stderr, /--monitor: the dashboards watch protection.*\[ERR_CLI_USAGE\]/);
  });
});
