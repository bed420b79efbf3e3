/**
 * `tandem secondary --listen HOST:PORT [--service HOST:PORT] [--tls DIR
 * --name NAME] [--config FILE]`: keeps the replica of the guest, applies the primary's
 * checkpoints, and takes over when the primary is gone. Parses flags,
 * builds the node (src/node/secondary.ts), runs it until a signal.
 */
import type { Argv } from 'yargs';
import { createBinding } from '../../domain/bindings.js';
import { SecondaryNode } from '../../node/secondary.js';
import { transportFor } from '../../transport/select.js';
import { EXIT_FENCED } from '../errors.js';
import { applyTlsFlags, baseConfig, flagAddress, flagChoice, serviceLog, listenForStop, withCommonOptions, withTlsOptions, type CommonArgs, type TlsArgs } from '../config-args.js';
import { applyRoleChangeFlag, withRoleChangeOption, type RoleChangeArgs } from '../role-change-args.js';

interface SecondaryArgs extends CommonArgs, TlsArgs, RoleChangeArgs {
  mode: 'remus' | 'colo';
  listen: string | undefined;
  heartbeat: string | undefined;
  service: string | undefined;
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
      if (args.listen !== undefined) cfg.secondary.listen = flagAddress(args.listen, '--listen', true);
      if (args.heartbeat !== undefined) cfg.secondary.heartbeat = flagAddress(args.heartbeat, '--heartbeat', true);
      if (args.service !== undefined) cfg.secondary.service = flagAddress(args.service, '--service', true);
      applyTlsFlags(cfg, args);
      applyRoleChangeFlag(cfg, args);
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
