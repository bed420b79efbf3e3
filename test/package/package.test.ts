/**
 * The package as installed: `npm pack` ships everything the built CLI loads
 * at run time (its modules, the workers and scripts it starts by URL, the
 * dashboard's files), and the dashboard is found relative to the code, not
 * to the working directory or to src/.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { posix } from 'node:path';
import { after, test } from 'node:test';
import { REPO_ROOT, tempDir } from '../helpers/cli.js';
import { monitorUrl, spawnTandem } from '../helpers/proc.js';
import { tlsArgs } from '../helpers/tls.js';

const tmp = tempDir();
after(() => tmp.cleanup());

/** What `npm pack` would put in the tarball, as paths inside the package (scripts off: the test must not rebuild dist). */
function packedFiles(): Set<string> {
  const r = spawnSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: REPO_ROOT, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const [info] = JSON.parse(r.stdout) as [{ files: { path: string }[] }];
  return new Set(info.files.map((f) => f.path));
}

/** Relative specifiers a built module loads: imports, dynamic imports, and `new URL(..., import.meta.url)`. */
function relativeLoads(source: string): string[] {
  const out: string[] = [];
  for (const m of source.matchAll(/(?:\bfrom\s+|\bimport\s*\(\s*|\bimport\s+|new URL\(\s*)'(\.{1,2}\/[^']*)'/g)) out.push(m[1]);
  return out;
}

test('npm pack ships the CLI, every module and file it loads, and the dashboard', () => {
  const files = packedFiles();
  const pkg = JSON.parse(readFileSync(`${REPO_ROOT}package.json`, 'utf8')) as { bin: Record<string, string> };
  assert.ok(files.has(pkg.bin.tandem), `the bin ${pkg.bin.tandem} is not packed`);
  for (const name of readdirSync(`${REPO_ROOT}src/monitor/static`)) assert.ok(files.has(`dist/src/monitor/static/${name}`), `dashboard file ${name} is not packed`);
  let checked = 0;
  for (const file of files) {
    if (!file.endsWith('.js')) continue;
    for (const spec of relativeLoads(readFileSync(REPO_ROOT + file, 'utf8'))) {
      const target = posix.join(posix.dirname(file), spec);
      const found = spec.endsWith('/') ? [...files].some((f) => f.startsWith(target)) : files.has(target);
      assert.ok(found, `${file} loads ${spec}, which is not packed`);
      checked++;
    }
  }
  assert.ok(checked > 100, `only ${checked} relative loads found: the scan is broken`);
  assert.ok(![...files].some((f) => f.startsWith('dist/test/') || f.startsWith('src/')), 'tests or TypeScript sources packed');
});

test('the dashboard is served when the CLI runs from another working directory', async () => {
  const config = tmp.path('secondary.yaml');
  writeFileSync(config, 'domain:\n  memory_mib: 4\nsecondary:\n  listen: 127.0.0.1:0\n  service: 127.0.0.1:0\n');
  const secondary = spawnTandem(['secondary', '--config', config, '--monitor', '127.0.0.1:0', ...(await tlsArgs('secondary'))], { cwd: tmp.dir });
  try {
    const url = String((await secondary.waitLine(monitorUrl, 'the monitor')).monitor);
    for (const [path, pattern] of [
      ['', /<script src="\/dashboard\.js"/],
      ['dashboard.js', /WebSocket/],
      ['vendor/uPlot.iife.min.js', /uPlot/],
    ] as const) {
      const res = await fetch(url + path);
      assert.equal(res.status, 200, path);
      assert.match(await res.text(), pattern, path);
    }
  } finally {
    secondary.child.kill('SIGTERM');
    await secondary.closed;
  }
});
