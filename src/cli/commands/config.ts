/**
 * `tandem config check FILE [--role primary|secondary]`: validates a
 * configuration file without starting anything: the file's keys (the same
 * reading as `tandem primary --config`), its role against --role, and the
 * files it names that a node reads as it starts (its TLS certificates and
 * key, the monitor's token file). A valid file gets one summary line and
 * exit status 0; an invalid one its error and exit status 2, so that a
 * deployment script can refuse it before anything runs.
 */
import type { Argv } from 'yargs';
import { loadConfig, requireRole, NODE_ROLES, type NodeRole, type TandemConfig } from '../../config/config.js';
import { ConfigError } from '../../errors.js';
import { resolveToken } from '../../monitor/wire.js';
import { loadTlsCredentials } from '../../transport/tls-files.js';
import { formatAddress, type Address } from '../../util/address.js';
import { flagChoice, flagPath } from '../config-args.js';
import { EXIT_USAGE, exitWith } from '../errors.js';

interface CheckArgs {
  file: string;
  role: NodeRole | undefined;
}

const at = (a: Address | undefined): string => (a === undefined ? '(not set)' : formatAddress(a));

function domainText(c: TandemConfig): string {
  const d = c.domain;
  return d.type === 'sim' ? `sim domain (${d.memoryMib} MiB RAM, ${d.vcpus} vCPU, ${d.diskMib} MiB disk)` : `xen domain ${d.name ?? '(its name on the primary)'} serving ${formatAddress(d.service)}`;
}

/** The TLS part of the summary; the certificates are read and checked when the file says whose they are. */
function tlsText(c: TandemConfig, warn: (m: string) => void): string {
  const t = c.tls;
  if (t.insecure) return 'plain TCP between the hosts (tls.insecure, loopback only)';
  if (t.dir === undefined && t.cert === undefined) return 'TLS from the flags (--tls DIR --name NAME)';
  if (t.name === undefined) return `TLS certificates in ${t.dir ?? t.cert} (the node's name from --name)`;
  const cred = loadTlsCredentials(t, warn);
  return `mutual TLS as "${cred.name}" accepting "${cred.peer}" (CA ${cred.caFingerprint.slice(0, 23)}...)`;
}

function summary(file: string, c: TandemConfig, role: NodeRole | undefined, warn: (m: string) => void): string {
  const p = c.primary;
  const s = c.secondary;
  const parts = [`${file}: valid`, role === undefined ? 'for either node (no role:)' : `a ${role}'s`, domainText(c)];
  if (role !== 'secondary') {
    parts.push(`primary: protects to ${at(p.secondary)} every ${p.intervalMs} ms, serves ${formatAddress(p.service)}, generation ${p.generation}`);
  }
  if (role !== 'primary') parts.push(`secondary: listens on ${formatAddress(s.listen)}, serves ${formatAddress(s.service)} after a failover`);
  parts.push(`heartbeat every ${c.heartbeat.intervalMs} ms, timeout ${c.heartbeat.timeoutMs} ms`);
  parts.push(tlsText(c, warn));
  // Read as the node would (the environment's token is not the file's business).
  const token = resolveToken(c.monitor, {});
  parts.push(c.monitor.listen === undefined ? 'no monitor' : `monitor on ${formatAddress(c.monitor.listen)} (${token === undefined ? 'no control token' : 'control token set'})`);
  parts.push(`arbiter ${c.arbiter.kind === 'none' ? 'none' : `etcd at ${(c.arbiter.endpoints ?? []).map(formatAddress).join(',')}`}`);
  return parts.join('; ');
}

export function configCommand(yargs: Argv): Argv {
  return yargs.command('config', 'work with configuration files', (y) =>
    y
      .command<CheckArgs>(
        'check <file>',
        'validate a configuration file without starting anything: a summary line and exit status 0, or the error and exit status 2',
        (c) =>
          c
            .positional('file', { type: 'string', demandOption: true, describe: 'the YAML configuration file' })
            .option('role', { requiresArg: true, choices: NODE_ROLES, describe: 'the node it must be fit for (a file saying the other role is refused)' }),
        (args) => {
          const file = flagPath(args.file, 'FILE');
          const role = args.role === undefined ? undefined : flagChoice(args.role, '--role');
          const warnings: string[] = [];
          let line: string;
          try {
            const cfg = loadConfig(file);
            if (role !== undefined) requireRole(cfg, file, role);
            line = summary(file, cfg, role ?? cfg.role, (m) => warnings.push(m));
            if (cfg.domains !== undefined) line += `; ${cfg.domains.length} domains, each with its own addresses (domains:): ${cfg.domains.map((d) => d.name).join(', ')}`;
          } catch (err) {
            // An invalid file is this command's "no", given as bad input is: exit status 2.
            if (err instanceof ConfigError) exitWith(err, EXIT_USAGE);
            throw err;
          }
          process.stdout.write(`${line}\n`);
          for (const w of warnings) process.stderr.write(`tandem: warning: ${w}\n`);
        },
      )
      .demandCommand(1, 'name a config command: check'),
  );
}
