/**
 * One exit status for bad usage in every command: a bad flag value (or
 * operand) is one line naming ERR_CLI_USAGE and exit status 2, before
 * anything starts; a bad or unreadable configuration file and a failure
 * while running are exit status 1.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { after, describe, test } from 'node:test';
import { REPO_ROOT, runTandem, tempDir } from '../helpers/cli.js';

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
    ['primary', ['primary', '--policy', 'eager'], /Invalid values:.*policy.*Given: "eager".*Choices: "output", "timer"/],
    ['primary', ['primary', '--policy', 'output', '--policy', 'timer'], /--policy given 2 times; give it once/],
    ['primary', ['primary', '--policy'], /Not enough arguments following: policy/],
    ['secondary', ['secondary', '--mode', 'remus', '--mode', 'colo'], /--mode given 2 times; give it once/],
    ['secondary', ['secondary', '--monitor-peer', 'https://10.0.0.1:7790/'], /--monitor-peer: expected an http:\/\/ URL \(a monitor serves plain HTTP\), got https:\/\//],
    ['primary', ['primary', '--monitor-peer', 'http://10.0.0.2:7791/api/status'], /--monitor-peer: expected the monitor's root, http:\/\/HOST:PORT\//],
    ['primary', ['primary', '--monitor-peer', `http://${'a'.repeat(400)}:1/`], /--monitor-peer: expected at most 300 characters/],
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
    ['demo', ['demo', '--duration', '20', '--kill-primary-after', '30'], /--kill-primary-after 30 is beyond the run's end \(--duration 20\)/],
    ['demo', ['demo', '--kill-primary-after', '5', '--mode', 'none'], /--kill-primary-after: with --mode none there is no standby/],
    ['save', ['save', '--sim', '--out', tmp.path('a'), '--out', tmp.path('b')], /--out given 2 times; give it once/],
    ['save', ['save', '--sim', '--out', tmp.path('never'), '--format', 'libxc', '--format', 'libxl'], /--format given 2 times; give it once/],
    ['restore', ['restore', '--xen', '--in', tmp.path('a'), '--in', tmp.path('b')], /--in given 2 times; give it once/],
    ['stream inspect', ['stream', 'inspect', ''], /FILE: expected a path of 1\.\.4096 characters/],
    ['primary', ['primary', '--config', ''], /--config: expected a path of 1\.\.4096 characters/],
    ['secondary', ['secondary', '--config', tmp.path('a'), '--config', tmp.path('b')], /--config given 2 times; give it once/],
    ['secondary', ['secondary', '--log-level', 'debug', '--log-level', 'info'], /--log-level given 2 times; give it once/],
    ['proxy', ['proxy', ...PROXY_ADDRS, '--log-level', 'debug', '--log-level', 'info'], /--log-level given 2 times; give it once/],
    // A flag with no value is refused, not read as its default.
    ['save', ['save', '--sim', '--out', tmp.path('never'), '--checkpoints'], /Not enough arguments following: checkpoints/],
    ['primary', ['primary', '--mode'], /Not enough arguments following: mode/],
    ['watch', ['watch', '--count'], /Not enough arguments following: count/],
    ['demo', ['demo', '--interval'], /Not enough arguments following: interval/],
    ['config check', ['config', 'check'], /Not enough non-option arguments/],
    ['config check', ['config', 'check', tmp.path('never'), '--role', 'tertiary'], /Invalid values:.*role.*Given: "tertiary"/],
    ['set-interval', ['set-interval', '0'], /MS: expected an integer in 1\.\.60000, got 0/],
    ['set-interval', ['set-interval', 'soon'], /MS: expected an integer in 1\.\.60000, got NaN/],
    ['set-mode', ['set-mode', 'sometimes'], /Invalid values:.*mode.*Given: "sometimes"/],
    ['checkpoint', ['checkpoint', '127.0.0.1:1', '--token-file'], /Not enough arguments following: token-file/],
    ['failover', ['failover', 'ftp://127.0.0.1:1/'], /expected an http:\/\/ or ws:\/\/ URL/],
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

describe('the command line itself', () => {
  const version = (JSON.parse(readFileSync(`${REPO_ROOT}package.json`, 'utf8')) as { version: string }).version;

  test('no command prints the usage on stderr and exits 2', () => {
    const r = runTandem([]);
    assert.equal(r.status, 2, r.stderr);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /^tandem <command>\n/);
    assert.match(r.stderr, /^ {2}tandem config +work with configuration files$/m);
    assert.match(r.stderr, /^ {2}tandem set-interval <ms> \[url\]/m);
    assert.match(r.stderr.trimEnd().split('\n').at(-1)!, /^tandem: error: name a command \[ERR_CLI_USAGE\]$/);
  });

  test('-h and --help print the usage on stdout, -v and --version the version in package.json; each exits 0', () => {
    for (const flag of ['-h', '--help']) {
      const r = runTandem([flag]);
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout, /^tandem <command>\n/, flag);
      assert.match(r.stdout.replace(/\s+/g, ' '), /Exit status: 0 done; 1 failed; 2 bad usage; 3 .*fenced; 4 `tandem status`: the node is not healthy/, flag);
    }
    const sub = runTandem(['checkpoint', '-h']);
    assert.equal(sub.status, 0, sub.stderr);
    assert.match(sub.stdout, /--token-file/);
    for (const flag of ['-v', '--version']) {
      const r = runTandem([flag]);
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stdout, `${version}\n`, flag);
    }
  });

  test('an unknown command, subcommand or operand is named, with where to look; exit 2', () => {
    refused(['frobnicate'], 2, /^tandem: error: unknown command "frobnicate"; `tandem --help` lists the commands \[ERR_CLI_USAGE\]$/);
    refused(['frobnicate', '--bogus'], 2, /unknown command "frobnicate"/);
    refused(['certs', 'renew'], 2, /unknown command "renew" of `tandem certs`; `tandem certs --help` lists them \[ERR_CLI_USAGE\]$/);
    refused(['config', 'lint'], 2, /unknown command "lint" of `tandem config`/);
    refused(['status', '127.0.0.1:1', 'extra'], 2, /status: unexpected operand "extra"; `tandem status --help` shows the usage \[ERR_CLI_USAGE\]$/);
    refused(['stream', 'inspect', 'a', 'b'], 2, /stream inspect: unexpected operand "b"/);
  });
});

describe('the control token', () => {
  const TOKEN = 'usage-test-token-0123456789';
  const noToken = { ...process.env, TANDEM_MONITOR_TOKEN: '' };

  function refusedWith(args: string[], env: NodeJS.ProcessEnv, status: number, pattern: RegExp): void {
    const r = runTandem(args, { env });
    assert.equal(r.status, status, `${args.join(' ')}: ${r.stderr}`);
    assert.equal(r.stderr.trimEnd().split('\n').length, 1, r.stderr);
    assert.match(r.stderr.trimEnd(), pattern);
    assert.equal(r.stdout, '');
  }

  test('a --domain the monitor could not take is bad usage, for control and status alike', () => {
    refusedWith(['checkpoint', '127.0.0.1:1', '--domain', 'a b'], noToken, 2, /^tandem: error: --domain: expected a name of letters, digits.*\[ERR_CLI_USAGE\]$/);
    refusedWith(['status', '127.0.0.1:1', '--domain', 'x'.repeat(64)], noToken, 2, /^tandem: error: --domain: at most 63 characters, got 64 \[ERR_CLI_USAGE\]$/);
  });

  test('a control command without a token is bad usage, refused before anything is sent', () => {
    for (const args of [['checkpoint'], ['failover', '127.0.0.1:1'], ['switchover'], ['stop'], ['start'], ['set-interval', '20'], ['set-mode', 'manual']]) {
      refusedWith(args, noToken, 2, /control needs the monitor's token: set TANDEM_MONITOR_TOKEN or give --token-file FILE.*\[ERR_CLI_USAGE\]$/);
    }
  });

  test('a token file that is missing, readable by others, too large or holds no usable token is refused (exit 1), never quoted', () => {
    refusedWith(['checkpoint', '127.0.0.1:1', '--token-file', tmp.path('absent')], noToken, 1, /--token-file: cannot read .*absent: ENOENT.*\[ERR_CLI_TOKEN\]$/);
    const open = tmp.path('open-token');
    writeFileSync(open, `${TOKEN}\n`, { mode: 0o644 });
    refusedWith(['checkpoint', '127.0.0.1:1', '--token-file', open], noToken, 1, /^tandem: error: --token-file: .* holds a secret that every user of this host can read \(mode 644\); chmod 600 .*\[ERR_CLI_TOKEN\]$/);
    const group = tmp.path('group-token');
    writeFileSync(group, `${TOKEN}\n`, { mode: 0o640 });
    refusedWith(['stop', '127.0.0.1:1', '--token-file', group], noToken, 1, /\(mode 640\)/);
    const big = tmp.path('big-token');
    writeFileSync(big, 'x'.repeat(5000), { mode: 0o600 });
    refusedWith(['stop', '127.0.0.1:1', '--token-file', big], noToken, 1, /is 5000 bytes; a token file is at most 4096/);
    const short = tmp.path('short-token');
    writeFileSync(short, 'tiny\n', { mode: 0o600 });
    refusedWith(['stop', '127.0.0.1:1', '--token-file', short], noToken, 1, /the token must be 16\.\.512 characters, it has 4 \[ERR_CLI_TOKEN\]$/);
    refusedWith(['stop', '127.0.0.1:1'], { ...process.env, TANDEM_MONITOR_TOKEN: `${TOKEN}\u0007x` }, 1, /TANDEM_MONITOR_TOKEN: the token may hold only printable ASCII characters/);
    refusedWith(['stop', '127.0.0.1:1', '--token-file', tmp.dir], noToken, 1, /is not a regular file/);
    for (const f of [open, group, big]) assert.ok(!runTandem(['stop', '127.0.0.1:1', '--token-file', f], { env: noToken }).stderr.includes(TOKEN));
  });

  test('a good token file is used (then the monitor is what fails: exit 1)', () => {
    const good = tmp.path('good-token');
    writeFileSync(good, `${TOKEN}\n`, { mode: 0o600 });
    refusedWith(['checkpoint', '127.0.0.1:1', '--token-file', good], noToken, 1, /cannot reach the monitor at http:\/\/127\.0\.0\.1:1\/api\/control.*\[ERR_MONITOR_UNREACHABLE\]$/);
  });
});
