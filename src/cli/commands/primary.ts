/**
 * `tandem primary --secondary HOST:PORT --service HOST:PORT [--interval MS] [--policy output|timer]
 * [--tls DIR --name NAME] [--config FILE]`: runs the guest (its service on the service address) and
 * protects it by checkpointing to the secondary. Parses flags, builds the
 * node (src/node/primary.ts), runs it until a signal or fencing. With
 * `domains:` in the file, a node for each domain (../domains.ts).
 */
import type { Argv } from 'yargs';
import { EPOCH_POLICIES, type EpochPolicy } from '../../checkpoint/triggers.js';
import { createBinding } from '../../domain/bindings.js';
import { startSharedMonitor } from '../../monitor/wire.js';
import { PrimaryNode, type PrimaryMode, type StopReason } from '../../node/primary.js';
import { transportFor } from '../../transport/select.js';
import { ConfigError, ErrorCodes, TandemError, type ErrorCode } from '../../errors.js';
import { EXIT_FENCED, exitWith } from '../errors.js';
import { applyTlsFlags, baseConfig, flagAddress, flagChoice, flagInt, serviceLog, listenForStop, withCommonOptions, withTlsOptions, type CommonArgs, type TlsArgs } from '../config-args.js';
import { MAX_COMPRESSION_CACHE_MIB, type TandemConfig } from '../../config/config.js';
import { domainConfigs, domainsProblem } from '../../config/domains.js';
import { PrimaryDomains } from '../../node/domains.js';
import { refusePerDomainFlags, runDomains } from '../domains.js';
import { applyRoleChangeFlag, withRoleChangeOption, type RoleChangeArgs } from '../role-change-args.js';

interface PrimaryArgs extends CommonArgs, TlsArgs, RoleChangeArgs {
  mode: PrimaryMode;
  secondary: string | undefined;
  heartbeat: string | undefined;
  generation: number | undefined;
  service: string | undefined;
  interval: number | undefined;
  policy: EpochPolicy | undefined;
  'verify-digest': boolean | undefined;
  'colo-net': string | undefined;
  compression: 'none' | 'xbzrle' | undefined;
  'compression-cache-mib': number | undefined;
}

/** The exit status of a primary that stopped because it was fenced (a newer primary serves the guest); see ../errors.ts. */
export { EXIT_FENCED };

/** Refusals at start that mean another node serves the guest, or did last. */
const ANOTHER_SERVES = new Set<ErrorCode>([ErrorCodes.FENCED, ErrorCodes.ARBITER_STALE, ErrorCodes.ARBITER_HELD]);

/** The flags that name one domain's address or setting, and the key each entry of domains: sets instead. */
const PER_DOMAIN_FLAGS = {
  secondary: 'primary.secondary',
  service: 'primary.service',
  heartbeat: 'primary.heartbeat',
  interval: 'primary.interval_ms',
  policy: 'primary.policy',
  generation: 'primary.generation',
  'colo-net': 'colo.net',
} as const;

/** `tandem primary` over the configuration's domains: a node for each (src/node/domains.ts), until they have all ended or a signal. */
async function primaryDomains(args: PrimaryArgs, cfg: TandemConfig, mode: PrimaryMode): Promise<void> {
  const problem = domainsProblem(cfg, 'primary');
  if (problem !== undefined) throw new ConfigError(`${args.config}: ${problem}`);
  const plans = domainConfigs(cfg);
  const { logger } = serviceLog(args, cfg.logLevel, 'tandem-primary', cfg.primary.verifyDigest, cfg);
  const transport = transportFor(cfg, logger, { peerless: plans.every((d) => (d.mode ?? mode) === 'none') });
  // One monitor for every domain, listening before they start: each node attaches its source under its domain's name.
  const monitor = await startSharedMonitor(cfg.monitor, logger, 'primary');
  try {
    await runDomains(new PrimaryDomains({ plans, mode, transport, logger, monitor }), logger);
  } finally {
    await monitor?.stop();
  }
}

export function primaryCommand(yargs: Argv): Argv {
  return yargs.command<PrimaryArgs>(
    'primary',
    'run the primary: the guest and its protection',
    (y) =>
      withCommonOptions(
        withRoleChangeOption(withTlsOptions(y))
          .option('mode', { requiresArg: true, choices: ['remus', 'colo', 'none'] as const, default: 'remus' as const, describe: 'remus: checkpoint every interval; colo: compare the replicas\' output, checkpoint when they differ; none: unprotected (a baseline)' })
          .option('secondary', { requiresArg: true, type: 'string', describe: 'HOST:PORT of `tandem secondary`' })
          .option('heartbeat', { requiresArg: true, type: 'string', describe: "HOST:PORT of the secondary's heartbeat channel (default: its port + 1)" })
          .option('generation', { requiresArg: true, type: 'number', describe: 'this primary\'s generation (fencing); a promoted secondary runs with a higher one' })
          .option('service', { requiresArg: true, type: 'string', describe: "HOST:PORT where clients reach the guest's service" })
          .option('interval', { requiresArg: true, type: 'number', describe: 'Remus checkpoint interval, ms (1..60000)' })
          .option('policy', { requiresArg: true, choices: EPOCH_POLICIES, describe: 'Remus: when epochs start. output: as soon as a reply is held and the last epoch is acked (the timer while none is); timer: every interval' })
          .option('colo-net', { requiresArg: true, type: 'string', describe: "COLO: HOST:PORT of the secondary's net link (default: its port + 2)" })
          .option('compression', { requiresArg: true, choices: ['none', 'xbzrle'] as const, describe: 'Remus: send checkpoint pages as deltas where the secondary offers to decode them (primary.compression)' })
          .option('compression-cache-mib', { requiresArg: true, type: 'number', describe: `cache of page contents the deltas are made against, MiB (1..${MAX_COMPRESSION_CACHE_MIB})` })
          .option('verify-digest', { type: 'boolean', describe: 'digest the guest state at every suspend and log it (costs pause time)' }),
      ),
    async (args) => {
      const mode = flagChoice(args.mode, '--mode');
      const cfg = baseConfig(args, 'primary');
      // Many domains: each sets these in its entry; the other flags stand for all of them.
      if (cfg.domains !== undefined) refusePerDomainFlags({ ...args }, PER_DOMAIN_FLAGS, args.config!);
      const p = cfg.primary;
      if (args.secondary !== undefined) p.secondary = flagAddress(args.secondary, '--secondary');
      if (args.service !== undefined) p.service = flagAddress(args.service, '--service', true);
      if (args.interval !== undefined) p.intervalMs = flagInt(args.interval, '--interval', 1, 60_000);
      if (args.policy !== undefined) p.policy = flagChoice(args.policy, '--policy');
      if (args['verify-digest'] !== undefined) p.verifyDigest = args['verify-digest'];
      if (args.compression !== undefined) p.compression = flagChoice(args.compression, '--compression');
      if (args['compression-cache-mib'] !== undefined) p.compressionCacheMib = flagInt(args['compression-cache-mib'], '--compression-cache-mib', 1, MAX_COMPRESSION_CACHE_MIB);
      if (args['colo-net'] !== undefined) cfg.colo.net = flagAddress(args['colo-net'], '--colo-net');
      if (args.heartbeat !== undefined) p.heartbeat = flagAddress(args.heartbeat, '--heartbeat');
      if (args.generation !== undefined) p.generation = flagInt(args.generation, '--generation', 1, Number.MAX_SAFE_INTEGER);
      applyTlsFlags(cfg, args);
      applyRoleChangeFlag(cfg, args);
      if (cfg.domains !== undefined) return primaryDomains(args, cfg, mode);

      // Verification lines (staged digests) must survive a kill: write them synchronously.
      const { logger } = serviceLog(args, cfg.logLevel, 'tandem-primary', p.verifyDigest, cfg);
      const transport = transportFor(cfg, logger, { peerless: mode === 'none' });
      const node = new PrimaryNode({ cfg, mode, binding: createBinding(cfg.domain), transport, logger });
      // Listening before the start: a SIGTERM while it runs stops the node in order once it has started, rather than killing it half-made.
      const stop = listenForStop(logger);
      try {
        await node.start();
      } catch (err) {
        if (err instanceof TandemError && ANOTHER_SERVES.has(err.code as ErrorCode)) exitWith(err, EXIT_FENCED);
        throw err;
      }
      stop.started();
      const why = await Promise.race([
        stop.signalled.then((signal): StopReason => ({ kind: 'signal', signal })),
        node.whenFenced().then((f): StopReason => ({ kind: 'fenced', ...f })),
        node.whenSwitchoverAsked().then((): StopReason => ({ kind: 'switchover' })),
      ]);
      await node.stop(why);
      if (why.kind === 'fenced') process.exitCode = EXIT_FENCED;
    },
  );
}
