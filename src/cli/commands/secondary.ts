/**
 * `tandem secondary --listen HOST:PORT [--config FILE]`: keeps the replica
 * of the guest and applies the primary's checkpoints.
 */
import type { Argv } from 'yargs';
import { SimDomain } from '../../domain/sim.js';
import { Promoter } from '../../failover/promoter.js';
import { SecondaryServer } from '../../secondary/server.js';
import { parseAddress } from '../../util/address.js';
import { createLogger } from '../../util/logger.js';
import { baseConfig, untilSignal, withCommonOptions, type CommonArgs } from '../config-args.js';

interface SecondaryArgs extends CommonArgs {
  listen: string | undefined;
}

export function secondaryCommand(yargs: Argv): Argv {
  return yargs.command<SecondaryArgs>(
    'secondary',
    'run the secondary: receive checkpoints and keep the replica',
    (y) => withCommonOptions(y.option('listen', { type: 'string', describe: 'HOST:PORT to accept the primary on' })),
    async (args) => {
      const cfg = baseConfig(args);
      if (args.listen !== undefined) cfg.secondary.listen = parseAddress(args.listen, '--listen', true);
      const logger = createLogger(cfg.logLevel, 'tandem-secondary');
      const replica = new SimDomain({ pages: cfg.domain.memoryMib * 256, vcpus: cfg.domain.vcpus });
      replica.pause(); // the replica never runs while it is a secondary
      const server = new SecondaryServer({
        replica,
        host: cfg.secondary.listen.host,
        port: cfg.secondary.listen.port,
        logger,
        maxEpochBytes: cfg.secondary.maxEpochMib * 2 ** 20,
      });
      server.on('state', (state) => logger.info({ state }, `replica state: ${state}`));
      server.on('epoch', (e) => logger.debug({ ...e }, 'epoch applied'));
      const promoter = new Promoter({ secondary: server, replica, service: cfg.secondary.service, logger });
      let failoverTimer: NodeJS.Timeout | undefined;
      server.on('primary-gone', (g) => {
        logger.warn({ ...g }, `primary ${g.remote} gone; replica holds epoch ${g.lastEpoch}`);
        // The primary's link dropped without a clean END. If it is not back
        // within the heartbeat timeout, it is dead: take over.
        clearTimeout(failoverTimer);
        failoverTimer = setTimeout(() => {
          if (server.primary !== undefined) return;
          promoter.promote(`primary ${g.remote} silent for ${cfg.heartbeat.timeoutMs} ms`).catch(() => {
            // promote() logged why it cannot fail over; stay a secondary.
          });
        }, cfg.heartbeat.timeoutMs);
      });
      await server.start();
      const sig = await untilSignal();
      logger.info({ signal: sig }, 'stopping');
      clearTimeout(failoverTimer);
      await promoter.stop();
      await server.stop();
    },
  );
}
