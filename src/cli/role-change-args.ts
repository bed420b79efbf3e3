/**
 * `--on-role-change PATH`, shared by `tandem primary` and `tandem
 * secondary`: the role-change hook (config `hooks.role_change`,
 * docs/failover.md). A bad path is bad usage (exit status 2); whether the
 * file is there and executable the node checks as it starts (exit status 1,
 * like a missing --config file).
 */
import type { Argv } from 'yargs';
import type { TandemConfig } from '../config/config.js';
import { hookPathProblem } from '../config/role-change.js';
import { UsageError } from './errors.js';

export interface RoleChangeArgs {
  'on-role-change': string | undefined;
}

export function withRoleChangeOption<T>(y: Argv<T>): Argv<T & RoleChangeArgs> {
  return y.option('on-role-change', { requiresArg: true, type: 'string', describe: 'executable run (no shell) at every change of role, with EVENT DOMAIN GENERATION ROLE REASON and TANDEM_* in its environment (config hooks.role_change)' });
}

export function applyRoleChangeFlag(cfg: TandemConfig, args: RoleChangeArgs): void {
  const value = args['on-role-change'] as string | string[] | undefined;
  if (value === undefined) return;
  if (Array.isArray(value)) throw new UsageError(`--on-role-change given ${value.length} times; give it once`);
  const problem = hookPathProblem(value);
  if (problem !== undefined) throw new UsageError(`--on-role-change: ${problem}`);
  cfg.hooks.roleChange = value;
}
