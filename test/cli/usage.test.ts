/**
 * One exit status for bad usage in every command: a bad flag value (or
 * operand) is one line naming ERR_CLI_USAGE and exit status 2, before
 * anything starts; a bad or unreadable configuration file and a failure
 * while running are exit status 1.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { after, describe, test } from 'node:test';
import { runTandem, tempDir } from '../helpers/cli.js';

const tmp = tempDir();
after(() => tmp.cleanup());

const PROXY_ADDRS = ['--primary-in', '127.0.0.1:0', '--secondary-in', '127.0.0.1:0', '--outdev', '127.0.0.1:0', '--notify', '127.0.0.1:0'];

function refused(args: string[], status: number, pattern: RegExp): void {
  const r = runTandem(args);
  const what = `tandem ${args.join(' ')}`;
  assert.equal(r.status, status, `${what}: ${r.stderr}`);
  const lines = r.stderr.trimEnd().split('\n');
  assert.equal(lines.length, 1, `${what}: ${r.stderr}`);
  assert.match(lines[0], /^tandem: error: /, what);
  assert.match(lines[0], pattern, what);
  assert.equal(r.stdout, '', `${what} printed before refusing`);
}

describe('a bad flag is bad usage (exit status 2) in every command', () => {
  const cases: [string, string[], RegExp][] = [
    ['demo', ['demo', '--duration', '0'], /--duration: expected a number in 1\.\.3600, got 0/],
    ['demo', ['demo', '--kill-primary-after', '-1'], /--kill-primary-after: expected a number in 0\.\.3600, got -1/],
    ['demo', ['demo', '--memory-mib', '1.5'], /--memory-mib: expected an integer in 1\.\.4096, got 1\.5/],
    ['demo', ['demo', '--interval', '1', '--interval', '2'], /--interval given 2 times; give it once/],
    ['demo', ['demo', '--service', 'nowhere'], /--service: expected HOST:PORT/],
    ['demo', ['demo', '--monitor', '127.0.0.1:99999'], /--monitor: port 99999 is outside 0\.\.65535/],
    ['demo', ['demo', '--monitor', '127.0.0.1:0', '--mode', 'none'], /--monitor: the dashboards watch protection/],
    ['demo', ['demo', '--arbiter', 'zookeeper'], /Invalid values:.*arbiter.*Given: "zookeeper"/],
    ['demo', ['demo', '--arbiter', 'etcd', '--arbiter', 'none'], /--arbiter given 2 times; give it once/],
    ['demo', ['demo', '--mode', 'remus', '--mode', 'colo'], /--mode given 2 times; give it once/],
    ['demo', ['demo', '--arbiter', 'etcd', '--mode', 'none'], /--arbiter: it decides between a primary and its standby; use --mode remus or colo/],
    ['watch', ['watch', '127.0.0.1:1', '--count', '0'], /--count: expected an integer in 1\.\.\d+, got 0/],
    ['watch', ['watch', 'ftp://127.0.0.1:1/'], /expected an http:\/\/ or ws:\/\/ URL/],
    ['status', ['status', 'nowhere'], /monitor address: expected HOST:PORT/],
    ['status', ['status', 'http://'], /"http:\/\/" is not a URL/],
    ['proxy', ['proxy', ...PROXY_ADDRS, '--max-queue-size', '0'], /--max-queue-size: expected an integer in 1\.\.1048576, got 0/],
    ['proxy', ['proxy', ...PROXY_ADDRS.slice(2), '--primary-in', '127.0.0.1'], /--primary-in: expected HOST:PORT/],
    ['save', ['save', '--sim', '--out', tmp.path('never'), '--checkpoints', '1.5'], /--checkpoints: expected an integer in 0\.\.1000000, got 1\.5/],
    ['save', ['save', '--sim', '--out', tmp.path('never'), '--pages', '8', '--pages', '9'], /--pages given 2 times; give it once/],
    ['stream inspect', ['stream', 'inspect', '--bogus', '1', tmp.path('never')], /Unknown argument: bogus/],
    ['stream inspect', ['stream', 'inspect'], /Not enough non-option arguments/],
    ['bench', ['bench', 'everything'], /Invalid values:.*what/],
    ['bench', ['bench', 'engine', '--rounds', '3'], /Unknown argument: rounds/],
    ['primary', ['primary', '--generation', '0'], /--generation: expected an integer in 1\.\.\d+, got 0/],
    ['primary', ['primary', '--secondary', '127.0.0.1:7', '--secondary', '127.0.0.1:8'], /--secondary given 2 times; give it once/],
    ['primary', ['primary', '--mode', 'remus', '--mode', 'colo'], /--mode given 2 times; give it once/],
    ['secondary', ['secondary', '--mode', 'remus', '--mode', 'colo'], /--mode given 2 times; give it once/],
    ['secondary', ['secondary', '--heartbeat', 'nowhere'], /--heartbeat: expected HOST:PORT/],
    ['secondary', ['secondary', '--service', 'nowhere'], /--service: expected HOST:PORT/],
    ['secondary', ['secondary', '--service', '127.0.0.1:70000'], /--service: port 70000 is outside 0\.\.65535/],
    ['secondary', ['secondary', '--on-role-change', 'notify.sh'], /--on-role-change: expected an absolute path \(the hook is run without a shell or a PATH search\), got "notify\.sh"/],
    ['primary', ['primary', '--on-role-change', '/a', '--on-role-change', '/b'], /--on-role-change given 2 times; give it once/],
    ['demo', ['demo', '--name', 'primary'], /--name and --peer name certificates in a --tls DIR; without --tls the demo makes its own/],
    ['demo', ['demo', '--tls', tmp.path('never'), '--name', 'primary', '--peer', 'primary'], /--peer: "primary" is the primary's own name \(--name\)/],
    ['demo', ['demo', '--tls', tmp.path('never')], /--tls needs --name/],
    ['certs init', ['certs', 'init', tmp.path('never'), '--nodes', 'a,a'], /--nodes: "a" is named twice/],
    ['certs init', ['certs', 'init', tmp.path('never'), '--nodes', 'a,b', '--days', '0'], /--days: expected an integer in 1\.\.36500, got 0/],
  ];
  for (const [command, args, pattern] of cases) {
    const flags = args.slice(command.split(' ').length).map((a) => (a.startsWith(tmp.dir) ? 'FILE' : a));
    test(`${command}: ${flags.join(' ')}`, () => refused(args, 2, new RegExp(`${pattern.source}.*\\[ERR_CLI_USAGE\\]$`)));
  }
});

describe('a bad configuration file or a failed run is exit status 1', () => {
  test('an unreadable or invalid configuration file', () => {
    refused(['secondary', '--config', tmp.path('absent.yaml')], 1, /cannot read the configuration.*\[ERR_CONFIG_INVALID\]$/);
    const bad = tmp.path('bad.yaml');
    writeFileSync(bad, 'secondary:\n  listen: nowhere\n');
    refused(['secondary', '--config', bad], 1, /secondary\.listen: expected HOST:PORT.*\[ERR_CONFIG_INVALID\]$/);
  });

  test('a hook that is not an executable file, a floating address on an interface that is not here: refused as the node starts', () => {
    const local = tmp.path('local.yaml');
    writeFileSync(local, 'tls:\n  insecure: true\nsecondary:\n  listen: 127.0.0.1:0\n  heartbeat: 127.0.0.1:0\n');
    refused(['secondary', '--config', local, '--on-role-change', tmp.path('no-such-hook')], 1, /hooks\.role_change: \S*no-such-hook is not an executable file: ENOENT.*\[ERR_CONFIG_INVALID\]$/);
    const nowhere = tmp.path('nowhere.yaml');
    writeFileSync(nowhere, 'tls:\n  insecure: true\nsecondary:\n  listen: 127.0.0.1:0\n  heartbeat: 127.0.0.1:0\nfloating_address:\n  address: 192.0.2.10/24\n  interface: nosuchif0\n');
    refused(['secondary', '--config', nowhere], 1, /floating_address\.interface: no interface nosuchif0 here .*\[ERR_FLOATING_ADDRESS_FAILED\]$/);
  });

  test('a run that fails', () => {
    refused(['stream', 'inspect', tmp.path('absent.stream')], 1, /ENOENT/);
    refused(['status', '127.0.0.1:1'], 1, /cannot reach the monitor.*\[ERR_MONITOR_UNREACHABLE\]$/);
  });
});
