#!/usr/bin/env node
// Installs the Debian packages the test suite runs for real (Xen's stream
// verifier, ...). The list lives in package.json under tandem.debianTestPackages
// so there is one place to add a peer. As root it runs apt-get; otherwise it
// says what is missing and exits 0: the tests that need a missing peer then
// fail on their own with a clear message (they never skip).
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
const wanted = pkg.tandem?.debianTestPackages ?? [];

function installed(name) {
  const r = spawnSync('dpkg-query', ['-W', '-f=${Status}', name], { encoding: 'utf8' });
  return r.status === 0 && r.stdout.includes('install ok installed');
}

const missing = wanted.filter((name) => !installed(name));
if (missing.length === 0) {
  console.log(`test deps: all present (${wanted.join(', ')})`);
  process.exit(0);
}
if (typeof process.getuid === 'function' && process.getuid() !== 0) {
  console.warn(`test deps: missing ${missing.join(', ')}; run as root or install them: ` +
    `apt-get install -y --no-install-recommends ${missing.join(' ')}`);
  process.exit(0);
}
const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
console.log(`test deps: installing ${missing.join(', ')}`);
execFileSync('apt-get', ['update'], { stdio: 'inherit', env });
execFileSync('apt-get', ['install', '-y', '--no-install-recommends', ...missing], { stdio: 'inherit', env });
