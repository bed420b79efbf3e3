/**
 * examples/systemd/: the units pass `systemd-analyze verify` (Debian's
 * systemd package; without it this test fails, it never skips), start the
 * binary docs/operations.md installs, and keep a fenced or superseded node
 * (exit status EXIT_FENCED) and bad usage from being restarted.
 *
 * verify checks that ExecStart's binary exists and is executable. The
 * units name where docs/operations.md installs Tandem (/usr/local/bin/tandem),
 * which a test machine need not have: the test verifies copies whose
 * ExecStart runs this checkout's CLI with this node instead, the rest of
 * each unit unchanged.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { after, describe, test } from 'node:test';
import { EXIT_FENCED } from '../../src/cli/commands/primary.js';
import { CLI, REPO_ROOT, tempDir } from '../helpers/cli.js';

const INSTALLED = '/usr/local/bin/tandem';
const UNITS = ['tandem-primary.service', 'tandem-secondary.service'] as const;
const tmp = tempDir('tandem-units-');
after(() => tmp.cleanup());

const unitText = (name: string): string => readFileSync(`${REPO_ROOT}examples/systemd/${name}`, 'utf8');

/** Every value of `key` in the unit (comments and continuation-free lines, as the units are written). */
function values(text: string, key: string): string[] {
  return text
    .split('\n')
    .filter((l) => l.startsWith(`${key}=`))
    .map((l) => l.slice(key.length + 1));
}

/**
 * `systemd-analyze verify` on copies of the units (the same file names, in a
 * directory of their own), with `dropIn` as each one's drop-in when given:
 * the directory is put first on the unit path, where verify reads drop-ins.
 */
function verify(units: { name: string; text: string }[], dir: string, dropIn?: string): { status: number | null; output: string } {
  const paths = units.map((u) => {
    const path = `${dir}/${u.name}`;
    writeFileSync(path, u.text);
    if (dropIn !== undefined) {
      mkdirSync(`${path}.d`, { recursive: true });
      writeFileSync(`${path}.d/xen.conf`, dropIn);
    }
    return path;
  });
  // The trailing colon keeps the default unit path after it.
  const r = spawnSync('systemd-analyze', ['verify', '--man=no', ...paths], { encoding: 'utf8', env: { ...process.env, SYSTEMD_UNIT_PATH: `${dir}:` } });
  assert.equal(r.error, undefined, `systemd-analyze could not run (${String(r.error)}): install Debian's systemd package`);
  return { status: r.status, output: `${r.stdout}${r.stderr}` };
}

/** The unit with ExecStart's installed binary replaced by this checkout's CLI. */
const local = (text: string): string => text.replaceAll(`ExecStart=${INSTALLED} `, `ExecStart=${process.execPath} ${CLI} `);

describe('examples/systemd', () => {
  test('systemd-analyze verify finds nothing to say about either unit', () => {
    const dir = tmp.path('ok');
    mkdirSync(dir);
    const r = verify(
      UNITS.map((name) => ({ name, text: local(unitText(name)) })),
      dir,
    );
    assert.equal(r.status, 0, r.output);
    for (const name of UNITS) assert.equal(r.output.includes(name), false, r.output);
  });

  test("the Xen drop-in (xen.conf) passes verify on both units, and is read", () => {
    const dropIn = readFileSync(`${REPO_ROOT}examples/systemd/xen.conf`, 'utf8');
    const units = UNITS.map((name) => ({ name, text: local(unitText(name)) }));
    const dir = tmp.path('xen');
    mkdirSync(dir);
    const r = verify(units, dir, dropIn);
    assert.equal(r.status, 0, r.output);
    assert.equal(/tandem-|xen\.conf/.test(r.output), false, r.output);
    const misspelt = tmp.path('xen-bad');
    mkdirSync(misspelt);
    assert.match(verify(units, misspelt, `${dropIn}Userr=root\n`).output, /xen\.conf:\d+: Unknown key 'Userr'/);
  });

  test('verify does read the copies: a misspelt key and a missing binary are reported', () => {
    const dir = tmp.path('bad');
    mkdirSync(dir);
    const misspelt = verify([{ name: 'tandem-primary.service', text: local(unitText('tandem-primary.service')).replace('\nRestart=on-failure\n', '\nRestartt=on-failure\n') }], dir);
    assert.match(misspelt.output, /tandem-primary\.service:\d+: Unknown key 'Restartt'/);
    const absent = verify([{ name: 'tandem-secondary.service', text: unitText('tandem-secondary.service').replaceAll(INSTALLED, tmp.path('no-such-tandem')) }], dir);
    assert.notEqual(absent.status, 0);
    assert.match(absent.output, /no-such-tandem is not executable/);
  });

  test('ExecStart is the binary docs/operations.md installs, running the command the unit is named for', () => {
    const ops = readFileSync(`${REPO_ROOT}docs/operations.md`, 'utf8');
    assert.ok(ops.includes(INSTALLED), `docs/operations.md does not install ${INSTALLED}`);
    for (const name of UNITS) {
      const role = /^tandem-(primary|secondary)\.service$/.exec(name)![1];
      const exec = values(unitText(name), 'ExecStart');
      assert.equal(exec.length, 1, name);
      assert.ok(exec[0].startsWith(`${INSTALLED} ${role} --config /etc/tandem/tandem.yaml`), exec[0]);
      // The configuration the units read is the one the guide writes.
      assert.ok(ops.includes('/etc/tandem/tandem.yaml'), 'docs/operations.md does not write /etc/tandem/tandem.yaml');
    }
  });

  test('a fenced or superseded node and bad usage are never restarted; a failure is; the two units exclude each other', () => {
    for (const name of UNITS) {
      const text = unitText(name);
      assert.deepEqual(values(text, 'Restart'), ['on-failure'], name);
      const prevented = values(text, 'RestartPreventExitStatus').flatMap((v) => v.split(/\s+/));
      assert.ok(prevented.includes(String(EXIT_FENCED)), `${name}: exit status ${EXIT_FENCED} (fenced) would be restarted`);
      assert.ok(prevented.includes('2'), `${name}: bad usage would be restarted`);
      assert.ok(!prevented.includes('1'), `${name}: a failure would not be restarted`);
      const other = name === 'tandem-primary.service' ? 'tandem-secondary.service' : 'tandem-primary.service';
      assert.deepEqual(values(text, 'Conflicts'), [other], name);
      // SIGTERM to tandem alone, which stops in order; not to its helpers at the same moment.
      assert.deepEqual(values(text, 'KillMode'), ['mixed'], name);
    }
  });
});
