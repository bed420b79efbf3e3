/**
 * Xen's own migration-stream verifier (Debian xen-utils-4.17). Tests that use
 * it fail, never skip, when it is missing: `npm test` installs it as root.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const XEN_PYTHONPATH = '/usr/lib/xen-4.17/lib/python';
export const VERIFY_STREAM = '/usr/lib/xen-4.17/bin/verify-stream-v2';
export const PYTHON = '/usr/bin/python3';
const CHECKPOINTED_DRIVER = fileURLToPath(new URL('../../../test/fixtures/xen_verify_checkpointed.py', import.meta.url));

export function requireXenVerifier(): void {
  assert.ok(
    existsSync(VERIFY_STREAM) && existsSync(PYTHON),
    `Xen's stream verifier is missing (${VERIFY_STREAM}); install it: apt-get install -y --no-install-recommends xen-utils-4.17`,
  );
}

export interface VerifyResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** verify-stream-v2 on a plain stream file (`xl`: an xl save file). */
export function verifyStream(file: string, format: 'libxc' | 'libxl' | 'xl'): VerifyResult {
  requireXenVerifier();
  const r = spawnSync(PYTHON, [VERIFY_STREAM, '-v', '-f', format, '-i', file], {
    env: { ...process.env, PYTHONPATH: XEN_PYTHONPATH },
    encoding: 'utf8',
    timeout: 120_000,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

export interface CheckpointedResult extends VerifyResult {
  epochs?: number;
  records?: [string, number][];
  /** How the stream ended: its libxl END, or (with `remus`) right after a CHECKPOINT_END. */
  end?: 'END' | 'checkpoint';
}

/**
 * Xen's VerifyLibxl/VerifyLibxc classes driven across a checkpointed stream
 * (`colo`: with COLO's CHECKPOINT_STATE hand-offs), or across a COLO
 * back-channel; `optional` record types are read past, as the spec allows.
 * `xl`: the stream follows an xl header; `remus`: it may end right after a
 * CHECKPOINT_END, as Xen's Remus streams do.
 */
export function verifyCheckpointed(file: string, options: { colo?: boolean; backChannel?: boolean; optional?: number[]; xl?: boolean; remus?: boolean } = {}): CheckpointedResult {
  requireXenVerifier();
  const flags = [
    ...(options.colo ? ['--colo'] : []),
    ...(options.backChannel ? ['--back-channel'] : []),
    ...(options.xl ? ['--xl'] : []),
    ...(options.remus ? ['--remus'] : []),
    ...(options.optional?.length ? ['--optional', options.optional.map((t) => `0x${t.toString(16)}`).join(',')] : []),
  ];
  const r = spawnSync(PYTHON, [CHECKPOINTED_DRIVER, ...flags, file], {
    env: { ...process.env, PYTHONPATH: XEN_PYTHONPATH },
    encoding: 'utf8',
    timeout: 120_000,
    maxBuffer: 64 << 20,
  });
  const out: CheckpointedResult = { status: r.status, stdout: r.stdout, stderr: r.stderr };
  if (r.status === 0) Object.assign(out, JSON.parse(r.stdout) as { epochs: number; records: [string, number][]; end: 'END' | 'checkpoint' });
  return out;
}
