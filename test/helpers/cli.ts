/** Runs the built `tandem` CLI as a child process, as an operator would. */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
export const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));

export interface RunResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

export function runTandem(args: string[], options: { input?: Buffer; env?: NodeJS.ProcessEnv } = {}): RunResult {
  const r = spawnSync(process.execPath, [CLI, ...args], { input: options.input, env: options.env, encoding: 'buffer', maxBuffer: 256 << 20, timeout: 120_000 });
  return { status: r.status, stdout: r.stdout.toString('utf8'), stderr: r.stderr.toString('utf8') };
}

/**
 * Runs `tandem args` and asserts it exits with `status` having said exactly
 * one line, `tandem: error: ...` matching `pattern`; returns that line.
 */
export function expectOneErrorLine(args: string[], status: number, pattern: RegExp): string {
  const r = runTandem(args);
  assert.equal(r.status, status, `${args.join(' ')}: ${r.stderr}`);
  const lines = r.stderr.trimEnd().split('\n');
  assert.equal(lines.length, 1, r.stderr);
  assert.match(lines[0], /^tandem: error: /);
  assert.match(lines[0], pattern);
  return lines[0];
}

/** A fresh temporary directory, removed by the returned cleanup. */
export function tempDir(prefix = 'tandem-test-'): { dir: string; path: (name: string) => string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, path: (name) => join(dir, name), cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** `tandem save --sim --out DIR/NAME ARGS...`, asserting it succeeded; returns the file. */
export function saveSim(dir: { path: (name: string) => string }, name: string, args: string[]): string {
  const file = dir.path(name);
  const r = runTandem(['save', '--sim', '--out', file, ...args]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, new RegExp(`^wrote ${file}: \\d+ bytes`));
  return file;
}
