/**
 * `tandem secondary --listen HOST:PORT [--service HOST:PORT] [--tls DIR
 * --name NAME] [--config FILE]`: keeps the replica of the guest, applies the primary's
 * checkpoints, and takes over when the primary is gone. Parses flags,
 * builds the node (src/node/secondary.ts), runs it until a signal. With
 * `domains:` in the file, a node for each domain (../domains.ts).
 */
import type { Argv } from 'yargs';
import { createBinding } from '../../domain/bindings.js';
import { startSharedMonitor } from '../../monitor/wire.js';
import { SecondaryNode } from '../../node/secondary.js';
import { transportFor } from '../../transport/select.js';
import { EXIT_FENCED } from '../errors.js';
import type { TandemConfig } from '../../config/config.js';
import { domainConfigs, domainsProblem } from '../../config/domains.js';
import { ConfigError } from '../../errors.js';
import { SecondaryDomains } from '../../node/domains.js';
import { refusePerDomainFlags, runDomains } from '../domains.js';
import { applyTlsFlags, baseConfig, flagAddress, flagChoice, serviceLog, listenForStop, withCommonOptions, withTlsOptions, type CommonArgs, type TlsArgs } from '../config-args.js';
import { applyRoleChangeFlag, withRoleChangeOption, type RoleChangeArgs } from '../role-change-args.js';

interface SecondaryArgs extends CommonArgs, TlsArgs, RoleChangeArgs {
  mode: 'remus' | 'colo';
  listen: string | undefined;
  heartbeat: string | undefined;
  service: string | undefined;
}

/** The flags that name one domain's address, and the key each entry of domains: sets instead. */
const PER_DOMAIN_FLAGS = {
  listen: 'secondary.listen',
  heartbeat: 'secondary.heartbeat',
  service: 'secondary.service',
} as const;

/** `tandem secondary` over the configuration's domains: a node for each (src/node/domains.ts), each promoted on its own. */
async function secondaryDomains(args: SecondaryArgs, cfg: TandemConfig, mode: 'remus' | 'colo'): Promise<void> {
  const problem = domainsProblem(cfg, 'secondary');
  if (problem !== undefined) throw new ConfigError(`${args.config}: ${problem}`);
  const plans = domainConfigs(cfg);
  const { logger } = serviceLog(args, cfg.logLevel, 'tandem-secondary', false, cfg);
  const transport = transportFor(cfg, logger);
  // One monitor for every domain, listening before they start: each node attaches its source under its domain's name.
  const monitor = await startSharedMonitor(cfg.monitor, logger, 'secondary');
  try {
    await runDomains(new SecondaryDomains({ plans, mode, transport, logger, monitor }), logger);
  } finally {
    await monitor?.stop();
  }
}

export function secondaryCommand(yargs: Argv): Argv {
  return yargs.command<SecondaryArgs>(
    'secondary',
    'run the secondary: receive checkpoints and keep the replica',
    (y) =>
      withCommonOptions(
        withRoleChangeOption(withTlsOptions(y))
          .option('mode', { requiresArg: true, choices: ['remus', 'colo'] as const, default: 'remus' as const, describe: "colo: run the guest here too between checkpoints (the primary's --mode must match)" })
          .option('listen', { requiresArg: true, type: 'string', describe: 'HOST:PORT to accept the primary on' })
          .option('heartbeat', { requiresArg: true, type: 'string', describe: 'HOST:PORT for heartbeats (default: the listen port + 1)' })
          .option('service', { requiresArg: true, type: 'string', describe: "HOST:PORT where clients reach the guest's service once this node took over (config secondary.service)" }),
      ),
    async (args) => {
      const mode = flagChoice(args.mode, '--mode');
      const cfg = baseConfig(args, 'secondary');
      // Many domains: each sets these in its entry; the other flags stand for all of them.
      if (cfg.domains !== undefined) refusePerDomainFlags({ ...args }, PER_DOMAIN_FLAGS, args.config!);
      if (args.listen !== undefined) cfg.secondary.listen = flagAddress(args.listen, '--listen', true);
      if (args.heartbeat !== undefined) cfg.secondary.heartbeat = flagAddress(args.heartbeat, '--heartbeat', true);
      if (args.service !== undefined) cfg.secondary.service = flagAddress(args.service, '--service', true);
      applyTlsFlags(cfg, args);
      applyRoleChangeFlag(cfg, args);
      if (cfg.domains !== undefined) return secondaryDomains(args, cfg, mode);
      const { logger } = serviceLog(args, cfg.logLevel, 'tandem-secondary', false, cfg);
      const transport = transportFor(cfg, logger);
      const node = new SecondaryNode({ cfg, mode, binding: createBinding(cfg.domain), transport, logger });
      // Listening before the start: a SIGTERM while it runs stops the node in order once it has started.
      const stop = listenForStop(logger);
      await node.start();
      stop.started();
      // Having failed over, a node another took the domain from (the arbiter says so) stops serving at once.
      const why = await Promise.race([stop.signalled, node.whenSuperseded().then((h) => ({ superseded: h }))]);
      if (typeof why === 'string') {
        await node.stop(why);
        return;
      }
      logger.fatal({ node: why.superseded.node, generation: why.superseded.generation }, `superseded: node ${why.superseded.node} serves the guest at generation ${why.superseded.generation}; this node stops serving at once`);
      await node.stop('superseded');
      process.exitCode = EXIT_FENCED;
    },
  );
}
