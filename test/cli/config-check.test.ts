/**
 * `tandem config check FILE` reads a configuration as `tandem primary` and
 * `secondary` do, and the files it names (certificates, the monitor's
 * token), without starting anything: one summary line and exit status 0
 * when it is valid, the error and exit status 2 when not. And the nodes
 * themselves refuse a configuration that says it is the other node's.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, writeFileSync } from 'node:fs';
import { after, describe, test } from 'node:test';
import { CLI, REPO_ROOT, runTandem, tempDir } from '../helpers/cli.js';
import { testCerts, tlsArgs } from '../helpers/tls.js';

const tmp = tempDir();
after(() => tmp.cleanup());

function write(name: string, text: string): string {
  const f = tmp.path(name);
  writeFileSync(f, text);
  return f;
}

function check(args: string[]): { status: number | null; out: string; err: string } {
  const r = runTandem(['config', 'check', ...args]);
  return { status: r.status, out: r.stdout, err: r.stderr };
}

function invalid(args: string[], pattern: RegExp): void {
  const r = check(args);
  assert.equal(r.status, 2, `${args.join(' ')}: ${r.err}`);
  assert.equal(r.out, '');
  const lines = r.err.trimEnd().split('\n');
  assert.equal(lines.length, 1, r.err);
  assert.match(lines[0], /^tandem: error: /);
  assert.match(lines[0], pattern);
}

describe('tandem config check', () => {
  test('a valid file: one line saying what it configures, exit 0; its certificates are read and checked', async () => {
    const { dir } = await testCerts();
    const f = write('primary.yaml', `role: primary\ndomain:\n  memory_mib: 16\nprimary:\n  secondary: 127.0.0.1:7700\n  interval_ms: 40\nmonitor:\n  listen: 127.0.0.1:7790\ntls:\n  dir: ${dir}\n  name: primary\n  peer: secondary\n`);
    const r = check([f]);
    assert.equal(r.status, 0, r.err);
    assert.equal(r.out.split('\n').length, 2, 'one line');
    assert.match(r.out, new RegExp(`^${f.replaceAll('/', '\\/')}: valid; a primary's; sim domain \\(16 MiB RAM, 1 vCPU, 64 MiB disk\\); primary: protects to 127\\.0\\.0\\.1:7700 every 40 ms`));
    assert.match(r.out, /mutual TLS as "primary" accepting "secondary" \(CA [0-9A-F:]+\.\.\.\)/);
    assert.match(r.out, /monitor on 127\.0\.0\.1:7790 \(no control token\); arbiter none$/m);
    assert.doesNotMatch(r.out, /secondary: listens/, "a primary's summary leaves the secondary's section out");
    // The same file for the node it says it is for; the other is refused.
    assert.equal(check([f, '--role', 'primary']).status, 0);
    invalid([f, '--role', 'secondary'], /primary\.yaml is a primary's configuration \(role: primary\); `tandem secondary` needs a secondary's.*\[ERR_CONFIG_INVALID\]$/);

    const wrongName = write('wrong-name.yaml', `tls:\n  dir: ${dir}\n  name: primary\n  peer: primary\n`);
    invalid([wrongName], /tls\.peer: "primary" is this node's own name/);
    const noCerts = write('no-certs.yaml', `tls:\n  dir: ${tmp.path('nowhere')}\n  name: primary\n  peer: secondary\n`);
    invalid([noCerts], /cannot read .*nowhere\/ca\.crt: ENOENT.*\[ERR_CONFIG_INVALID\]$/);
  });

  test('the examples check out where their certificates are (and not where they are missing)', () => {
    const r = runTandem(['certs', 'init', tmp.path('ex/tls'), '--nodes', 'primary,secondary', '--days', '2']);
    assert.equal(r.status, 0, r.stderr);
    for (const name of ['primary', 'secondary']) {
      // The examples name `tls` relative to where tandem runs.
      copyFileSync(`${REPO_ROOT}examples/${name}.yaml`, tmp.path(`ex/${name}.yaml`));
      const ok = spawnSync(process.execPath, [CLI, 'config', 'check', `${name}.yaml`], { cwd: tmp.path('ex'), encoding: 'utf8' });
      assert.equal(ok.status, 0, ok.stderr);
      assert.match(ok.stdout, new RegExp(`^${name}\\.yaml: valid; a ${name}'s; `));
      // The CA's key sits next to the node's files in this directory: said, not refused.
      assert.match(ok.stderr, /^tandem: warning: .*holds the CA's key/m);
    }
    invalid([`${REPO_ROOT}examples/secondary.yaml`, '--role', 'primary'], /is a secondary's configuration \(role: secondary\)/);
  });

  test('an invalid file: the error, naming the key (or the line and column of a YAML error), exit 2', () => {
    invalid([write('yaml.yaml', 'primary:\n  interval_ms: 50\n  interval_ms: 60\n')], /yaml\.yaml: not valid YAML at line 3, column 3: Map keys must be unique/);
    invalid([write('tab.yaml', 'secondary:\n\tlisten: 127.0.0.1:7700\n')], /tab\.yaml: not valid YAML at line 2, column 1/);
    invalid([write('key.yaml', 'primary:\n  intervall_ms: 50\n')], /key\.yaml: primary\.intervall_ms: unknown key/);
    invalid([write('value.yaml', 'heartbeat:\n  interval_ms: 100\n  timeout_ms: 50\n')], /heartbeat\.timeout_ms \(50\) must exceed heartbeat\.interval_ms \(100\)/);
    invalid([write('role.yaml', 'role: both\n')], /role: expected one of "primary", "secondary", got "both"/);
    invalid([tmp.path('absent.yaml')], /absent\.yaml: cannot read the configuration: ENOENT/);
    const token = write('token.yaml', `monitor:\n  token_file: ${tmp.path('no-token')}\n`);
    invalid([token], /monitor\.token_file: cannot read .*no-token/);
  });

  test('a file without role: is for either node, and says so', () => {
    const f = write('shared.yaml', 'primary:\n  secondary: 127.0.0.1:7700\nsecondary:\n  listen: 127.0.0.1:7700\ntls:\n  insecure: true\n');
    for (const role of [[], ['--role', 'primary'], ['--role', 'secondary']]) assert.equal(check([f, ...role]).status, 0, role.join(' '));
    const r = check([f]);
    assert.match(r.out, /: valid; for either node \(no role:\); .*primary: protects to 127\.0\.0\.1:7700 .*secondary: listens on 127\.0\.0\.1:7700, .*plain TCP between the hosts/);
  });
});

describe('a node refuses the other node\'s configuration', () => {
  test('tandem secondary with a primary\'s file, and tandem primary with a secondary\'s: one line (no log: nothing started), exit 1', async () => {
    const primaryFile = write('only-primary.yaml', 'role: primary\nsecondary:\n  listen: 127.0.0.1:0\n');
    const secondaryFile = write('only-secondary.yaml', 'role: secondary\nprimary:\n  secondary: 127.0.0.1:1\n');
    for (const [command, file, pattern] of [
      ['secondary', primaryFile, /only-primary\.yaml is a primary's configuration \(role: primary\); `tandem secondary` needs a secondary's \(role: secondary, as in examples\/secondary\.yaml\) or one without role: \(for either node\) \[ERR_CONFIG_INVALID\]$/],
      ['primary', secondaryFile, /only-secondary\.yaml is a secondary's configuration \(role: secondary\); `tandem primary` needs a primary's/],
    ] as const) {
      const r = runTandem([command, '--config', file, ...(await tlsArgs(command))]);
      assert.equal(r.status, 1, r.stderr);
      const lines = r.stderr.trimEnd().split('\n');
      assert.equal(lines.length, 1, r.stderr);
      assert.match(lines[0], pattern);
    }
  });
});
