/**
 * What this build is, for tandem_build_info: the package's version, read
 * once from the package.json the build ships with (dist/src/monitor/ is three
 * levels below it, wherever the package is installed).
 */
import { readFileSync } from 'node:fs';

const PACKAGE_JSON = new URL('../../../package.json', import.meta.url);

let version: string | undefined;

/** The package's version; "unknown" if its package.json cannot be read (never a reason to fail a scrape). */
export function tandemVersion(): string {
  if (version === undefined) {
    try {
      const pkg = JSON.parse(readFileSync(PACKAGE_JSON, 'utf8')) as { version?: unknown };
      version = typeof pkg.version === 'string' ? pkg.version : 'unknown';
    } catch {
      version = 'unknown';
    }
  }
  return version;
}
