/**
 * `tandem primary` and `tandem secondary` as processes: bad flags and bad
 * configuration end in one line; a secondary fed garbage logs a clear line
 * with the error code and keeps serving; a second primary is refused.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { after, describe, test } from 'node:test';
import { CLI, runTandem, tempDir } from '../helpers/cli.js';

const tmp = tempDir();
after(() => tmp.cleanup());

const oneLine = (stderr: string, pattern: RegExp): void => {
  const lines = stderr.trimEnd().split('\n');
  assert.equal(lines.length, 1, stderr);
  assert.match(lines[0], /^tandem: error: /);
  assert.match(lines[0], pattern);
};

describe('tandem primary / secondary: refusals', () => {
  test('bad flags and configuration are refused before anything starts', () => {
    const bad = tmp.path('bad.yaml');
    writeFileSync(bad, 'primary:\n  interval_ms: -5\n');
    // A bad flag is bad usage (exit status 2, ERR_CLI_USAGE); a bad or missing configuration, exit status 1.
    const cases: [string[], RegExp, number][] = [
      [['primary', '--service', '127.0.0.1:6399'], /no secondary: pass --secondary HOST:PORT/, 1],
      [['primary', '--secondary', 'nowhere', '--service', '127.0.0.1:6399'], /--secondary: expected HOST:PORT.*\[ERR_CLI_USAGE\]/, 2],
      [['primary', '--secondary', '127.0.0.1:7', '--service', '127.0.0.1:6399', '--interval', '0'], /--interval: expected an integer in 1\.\.60000, got 0 \[ERR_CLI_USAGE\]/, 2],
      [['primary', '--secondary', '127.0.0.1:7', '--config', bad], /bad\.yaml: primary\.interval_ms: expected an integer in 1\.\.60000, got -5 \[ERR_CONFIG_INVALID\]/, 1],
      [['secondary', '--listen', '127.0.0.1:99999'], /--listen: port 99999 is outside 0\.\.65535 \[ERR_CLI_USAGE\]/, 2],
      [['secondary', '--config', tmp.path('absent.yaml')], /absent\.yaml: cannot read the configuration/, 1],
    ];
    for (const [args, pattern, status] of cases) {
      const r = runTandem(args);
      assert.equal(r.status, status, `${args.join(' ')}: ${r.stderr}`);
      oneLine(r.stderr, pattern);
    }
  });
});

describe('tandem secondary: hostile input', () => {
  test('garbage gets a logged refusal with its code, and a real primary still syncs afterwards', async () => {
    const config = tmp.path('sec.yaml');
    writeFileSync(config, 'domain:\n  memory_mib: 4\nsecondary:\n  listen: 127.0.0.1:0\n');
    const child = spawn(process.execPath, [CLI, 'secondary', '--config', config], { stdio: ['ignore', 'ignore', 'pipe'] });
    after(() => child.kill('SIGKILL'));
    const lines: Record<string, unknown>[] = [];
    let rest = '';
    const waiters: { pred: (l: Record<string, unknown>) => boolean; resolve: (l: Record<string, unknown>) => void }[] = [];
    child.stderr.on('data', (d: Buffer) => {
      const parts = (rest + d.toString()).split('\n');
      rest = parts.pop()!;
      for (const p of parts) {
        const l = JSON.parse(p) as Record<string, unknown>;
        lines.push(l);
        for (const w of [...waiters]) if (w.pred(l)) w.resolve(l);
      }
    });
    const waitLine = (pred: (l: Record<string, unknown>) => boolean): Promise<Record<string, unknown>> => {
      const hit = lines.find(pred);
      return hit ? Promise.resolve(hit) : new Promise((resolve) => waiters.push({ pred, resolve }));
    };
    const listening = await waitLine((l) => typeof l.port === 'number');
    const port = listening.port as number;

    // Garbage where a libxl header belongs.
    // The refusal: a warning or error about the connection (not, say, the start's warning that no arbiter is set).
    const refused = waitLine((l) => (l.level === 50 || l.level === 40) && /127\.0\.0\.1/.test(String(l.msg)));
    const s = connect({ port, host: '127.0.0.1' });
    s.on('error', () => {});
    s.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    const line = await refused;
    assert.match(JSON.stringify(line), /ERR_STREAM_BAD_IDENT|ERR_STREAM_UNKNOWN_FORMAT/);
    assert.match(String(line.msg), /127\.0\.0\.1/);
    s.destroy();

    // A real primary syncs afterwards; the process survived.
    const primary = spawn(process.execPath, [CLI, 'primary', '--config', config, '--secondary', `127.0.0.1:${port}`, '--service', '127.0.0.1:0'], { stdio: 'ignore' });
    after(() => primary.kill('SIGKILL'));
    const synced = await waitLine((l) => l.state === 'protected');
    assert.equal(synced.state, 'protected');
    primary.kill('SIGTERM');
    await new Promise((r) => primary.once('close', r));
  });
});
