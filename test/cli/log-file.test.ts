/**
 * `--log-file`, `--log-format` and SIGHUP on the real services: `tandem
 * secondary`, `tandem primary` and `tandem proxy` append their log to the
 * file; moved away (logrotate without copytruncate) and sent SIGHUP, each
 * writes on at the path and lives on, and stops in order on SIGTERM
 * afterwards. Without a file, SIGHUP no longer ends a service. The pretty
 * format is one line an event; bad flags are refused before anything
 * starts; the monitor's control token never reaches the log.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { after, describe, test } from 'node:test';
import { CLI, runTandem, tempDir } from '../helpers/cli.js';
import { spawnTandem } from '../helpers/proc.js';
import { tlsArgs } from '../helpers/tls.js';
import { until } from '../helpers/wait.js';

const tmp = tempDir('tandem-log-cli-');
after(() => tmp.cleanup());

const lines = (path: string): string[] => (existsSync(path) ? readFileSync(path, 'utf8').split('\n').filter((l) => l !== '') : []);
const msgs = (path: string): string[] => lines(path).map((l) => String((JSON.parse(l) as { msg: unknown }).msg));

interface Service {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  exit: Promise<number | null>;
}

function start(args: string[], env: NodeJS.ProcessEnv = process.env): Service {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env });
  after(() => child.kill('SIGKILL'));
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, stdout: () => out, stderr: () => err, exit };
}

function config(name: string, yaml: string): string {
  const path = tmp.path(`${name}.yaml`);
  writeFileSync(path, yaml);
  return path;
}

function services(): { name: string; args: (log: string) => Promise<string[]>; ready: RegExp; stopLine: RegExp | undefined }[] {
  return [
    {
      name: 'secondary',
      args: async (log) => ['secondary', '--config', config('secondary', 'domain:\n  memory_mib: 4\nsecondary:\n  listen: 127.0.0.1:0\n  heartbeat: 127.0.0.1:0\n'), '--log-file', log, ...(await tlsArgs('secondary'))],
      ready: /secondary listening/,
      stopLine: /^stopping$/,
    },
    {
      name: 'primary',
      // Unprotected: a primary with nothing to protect to, which still runs the guest's service.
      args: (log) => Promise.resolve(['primary', '--mode', 'none', '--config', config('primary', 'domain:\n  memory_mib: 4\n'), '--service', '127.0.0.1:0', '--log-file', log]),
      ready: /^guest service on /,
      stopLine: /^stopping$/,
    },
    {
      name: 'proxy',
      args: (log) => Promise.resolve(['proxy', '--primary-in', '127.0.0.1:0', '--secondary-in', '127.0.0.1:0', '--outdev', '127.0.0.1:0', '--notify', '127.0.0.1:0', '--metrics', '127.0.0.1:0', '--log-file', log]),
      ready: /^metrics listening/,
      stopLine: undefined,
    },
  ];
}

describe('--log-file and SIGHUP', () => {
  for (const name of ['secondary', 'primary', 'proxy']) {
    test(`tandem ${name}: the file moved away and SIGHUP, new lines go to a new file at the path; the process lives on`, { timeout: 120_000 }, async () => {
      const s = services().find((x) => x.name === name)!;
      const log = tmp.path(`${name}.log`);
      const svc = start(await s.args(log));
      await until(() => msgs(log).some((m) => s.ready.test(m)), `${name} to log that it runs`, 60_000, 20);
      renameSync(log, `${log}.1`);
      svc.child.kill('SIGHUP');
      await until(() => msgs(log).includes(`log: reopened ${log}`), 'the reopen, in a new file at the path', 30_000, 20);
      assert.equal(svc.child.exitCode, null, 'SIGHUP ended the process');
      assert.ok(msgs(`${log}.1`).some((m) => s.ready.test(m)), 'what came before stays in the moved file');
      assert.equal(msgs(`${log}.1`).includes(`log: reopened ${log}`), false, 'the moved file got a line after the reopen');
      // Still working after the hangup: it stops in order, and says so at the path.
      svc.child.kill('SIGTERM');
      assert.equal(await svc.exit, 0, svc.stderr());
      if (s.stopLine !== undefined) assert.ok(msgs(log).some((m) => s.stopLine!.test(m)), msgs(log).join('\n'));
      assert.equal(svc.stderr(), '', 'the log went to the file, not to stderr');
    });
  }

  test('without --log-file, SIGHUP says there is nothing to reopen, and the service lives on', { timeout: 120_000 }, async () => {
    const s = services()[0];
    const secondary = spawnTandem((await s.args('unused')).filter((a, i, all) => a !== '--log-file' && all[i - 1] !== '--log-file'));
    await secondary.waitLine((l) => s.ready.test(String(l.msg)), 'the secondary');
    secondary.child.kill('SIGHUP');
    await secondary.waitLine((l) => l.msg === 'log: writing to stderr, no file to reopen', 'the answer to SIGHUP');
    assert.equal(secondary.child.exitCode, null);
    secondary.child.kill('SIGTERM');
    assert.equal(await secondary.closed, 0);
  });

  test('--log-format pretty: every line is time, level, name, message and fields', { timeout: 120_000 }, async () => {
    const log = tmp.path('pretty.log');
    const args = await services()[0].args(log);
    const svc = start([...args, '--log-format', 'pretty']);
    await until(() => lines(log).some((l) => l.includes('secondary listening')), 'the listening line', 60_000, 20);
    svc.child.kill('SIGTERM');
    assert.equal(await svc.exit, 0);
    const all = lines(log);
    for (const l of all) assert.match(l, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (TRACE|DEBUG|INFO |WARN |ERROR|FATAL) tandem-secondary: \S/);
    assert.match(all.find((l) => l.includes('secondary listening'))!, / INFO {2}tandem-secondary: secondary listening .*\bport=\d+\b/);
    assert.ok(all.some((l) => / INFO {2}tandem-secondary: stopping signal=SIGTERM$/.test(l)), all.join('\n'));
  });

  test('log_format and log_file in the configuration file; the flags win over them', { timeout: 120_000 }, async () => {
    const fromFile = tmp.path('from-config.log');
    const flagged = tmp.path('from-flag.log');
    const yaml = `domain:\n  memory_mib: 4\nlog_format: pretty\nlog_file: ${fromFile}\n`;
    // The file's settings alone: a pretty log at its path, nothing on stderr.
    const a = start(['primary', '--mode', 'none', '--config', config('log-keys', yaml), '--service', '127.0.0.1:0']);
    await until(() => lines(fromFile).some((l) => l.includes('guest service on')), 'the pretty line in log_file', 60_000, 20);
    a.child.kill('SIGTERM');
    assert.equal(await a.exit, 0, a.stderr());
    assert.equal(a.stderr(), '');
    for (const l of lines(fromFile)) assert.match(l, /^\d{4}-\d\d-\d\dT[\d:.]+Z (TRACE|DEBUG|INFO |WARN |ERROR|FATAL) tandem-primary: \S/);
    // The flags over the same file: JSON at the flag's path, the file's path untouched.
    const before = lines(fromFile).length;
    const b = start(['primary', '--mode', 'none', '--config', config('log-keys', yaml), '--service', '127.0.0.1:0', '--log-format', 'json', '--log-file', flagged]);
    await until(() => msgs(flagged).some((m) => /^guest service on /.test(m)), 'the JSON line in --log-file', 60_000, 20);
    b.child.kill('SIGTERM');
    assert.equal(await b.exit, 0, b.stderr());
    assert.equal(lines(fromFile).length, before, 'the flag moved the log, yet the file\'s path got lines');
    // A bad key is a configuration error naming it, before anything starts.
    const bad = runTandem(['primary', '--mode', 'none', '--config', config('bad-log', 'log_format: xml\n')]);
    assert.equal(bad.status, 1, bad.stderr);
    assert.match(bad.stderr, /bad-log\.yaml: log_format: expected one of "json", "pretty"/);
  });

  test('bad log flags are refused before anything starts', () => {
    const dir = tmp.path('absent-dir');
    const cases: [string[], RegExp, number][] = [
      [['secondary', '--log-format', 'xml'], /Invalid values:.*log-format.*"xml"/s, 2],
      [['secondary', '--log-format', 'json', '--log-format', 'pretty', '--listen', '127.0.0.1:0'], /--log-format given 2 times; give it once \[ERR_CLI_USAGE\]/, 2],
      [['proxy', '--primary-in', '127.0.0.1:0', '--secondary-in', '127.0.0.1:0', '--outdev', '127.0.0.1:0', '--notify', '127.0.0.1:0', '--log-file', ''], /--log-file: expected a path of 1\.\.4096 characters \[ERR_CLI_USAGE\]/, 2],
      [['primary', '--mode', 'none', '--service', '127.0.0.1:0', '--log-file', `${dir}/p.log`], /--log-file: cannot open .*absent-dir\/p\.log for appending: ENOENT \[ERR_CONFIG_INVALID\]$/, 1],
      [['proxy', '--primary-in', '127.0.0.1:0', '--secondary-in', '127.0.0.1:0', '--outdev', '127.0.0.1:0', '--notify', '127.0.0.1:0', '--log-file', `${dir}/x.log`], /--log-file: cannot open .*absent-dir\/x\.log for appending: ENOENT \[ERR_CONFIG_INVALID\]$/, 1],
    ];
    for (const [args, pattern, status] of cases) {
      const r = runTandem(args);
      assert.equal(r.status, status, `${args.join(' ')}: ${r.stderr}`);
      const out = r.stderr.trimEnd().split('\n');
      assert.equal(out.length, 1, r.stderr);
      assert.match(out[0], /^tandem: error: /);
      assert.match(out[0], pattern);
      assert.equal(existsSync(dir), false);
    }
  });

  test("the monitor's control token never reaches the log, whether right or wrong", { timeout: 120_000 }, async () => {
    const token = 'right-token-0123456789abcdefXYZ';
    const wrong = 'wrong-token-0123456789abcdefQRS';
    const log = tmp.path('token.log');
    const args = await services()[0].args(log);
    const svc = start([...args, '--monitor', '127.0.0.1:0'], { ...process.env, TANDEM_MONITOR_TOKEN: token });
    await until(() => msgs(log).some((m) => /^monitor listening/.test(m)), 'the monitor', 60_000, 20);
    const url = String((lines(log).map((l) => JSON.parse(l) as { monitor?: string }).find((l) => l.monitor !== undefined)!).monitor);
    const post = (body: object, bearer?: string): Promise<Response> =>
      fetch(`${url}api/control`, { method: 'POST', headers: { 'content-type': 'application/json', ...(bearer === undefined ? {} : { authorization: `Bearer ${bearer}` }) }, body: JSON.stringify(body) });
    // The right token in the header and in the body, the wrong one in both: each is logged as a refusal or an action.
    for (const [body, bearer] of [
      [{ action: 'set-interval', intervalMs: 10 }, token],
      [{ action: 'checkpoint', token }, undefined],
      [{ action: 'checkpoint' }, wrong],
      [{ action: 'set-interval', intervalMs: 10, token: wrong }, undefined],
    ] as [object, string | undefined][]) {
      await (await post(body, bearer)).text();
    }
    await until(() => msgs(log).filter((m) => /^control/.test(m)).length === 4, 'the four control lines', 30_000, 20);
    svc.child.kill('SIGTERM');
    assert.equal(await svc.exit, 0);
    const text = readFileSync(log, 'utf8');
    for (const secret of [token, wrong]) assert.equal(text.includes(secret), false, `a token in the log:\n${text}`);
  });
});
