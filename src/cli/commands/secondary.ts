/**
 * `tandem secondary --listen HOST:PORT [--config FILE]`: keeps the replica
 * of the guest and applies the primary's checkpoints.
 */
import type { Argv } from 'yargs';
import { DiskReplica } from '../../disk/replica.js';
import { SimDisk } from '../../disk/sim-disk.js';
import { SimDomain } from '../../domain/sim.js';
import { Promoter } from '../../failover/promoter.js';
import { HeartbeatChannel } from '../../heartbeat/channel.js';
import { ColoSecondary } from '../../colo/secondary.js';
import { SecondaryServer } from '../../secondary/server.js';
import { parseAddress } from '../../util/address.js';
import { createLogger } from '../../util/logger.js';
import { nextPort } from '../../config/config.js';
import { baseConfig, untilSignal, withCommonOptions, type CommonArgs } from '../config-args.js';
import { SecondarySource } from '../../monitor/source.js';
import { startMonitor } from '../../monitor/wire.js';

interface SecondaryArgs extends CommonArgs {
  mode: 'remus' | 'colo';
  listen: string | undefined;
  heartbeat: string | undefined;
}

export function secondaryCommand(yargs: Argv): Argv {
  return yargs.command<SecondaryArgs>(
    'secondary',
    'run the secondary: receive checkpoints and keep the replica',
    (y) =>
      withCommonOptions(
        y
          .option('mode', { choices: ['remus', 'colo'] as const, default: 'remus' as const, describe: "colo: run the guest here too between checkpoints (the primary's --mode must match)" })
          .option('listen', { type: 'string', describe: 'HOST:PORT to accept the primary on' })
          .option('heartbeat', { type: 'string', describe: 'HOST:PORT for heartbeats (default: the listen port + 1)' }),
      ),
    async (args) => {
      const cfg = baseConfig(args);
      if (args.listen !== undefined) cfg.secondary.listen = parseAddress(args.listen, '--listen', true);
      if (args.heartbeat !== undefined) cfg.secondary.heartbeat = parseAddress(args.heartbeat, '--heartbeat', true);
      const heartbeatAt = cfg.secondary.heartbeat ?? nextPort(cfg.secondary.listen);
      const logger = createLogger(cfg.logLevel, 'tandem-secondary');
      const replica = new SimDomain({ pages: cfg.domain.memoryMib * 256, vcpus: cfg.domain.vcpus });
      replica.pause(); // the replica never runs while it is a secondary
      const disk = new SimDisk({ capacityBytes: cfg.domain.diskMib * 2 ** 20, domain: replica });
      // COLO: the replica also runs the guest, fed the client frames the primary mirrors over the net link.
      const colo = args.mode === 'colo' ? new ColoSecondary({ replica, disk, net: cfg.colo.net ?? nextPort(nextPort(cfg.secondary.listen)), logger }) : undefined;
      const server = new SecondaryServer({
        replica,
        devices: [new DiskReplica([disk])],
        disks: [disk],
        host: cfg.secondary.listen.host,
        port: cfg.secondary.listen.port,
        logger,
        maxEpochBytes: cfg.secondary.maxEpochMib * 2 ** 20,
        colo: colo?.guest,
      });
      server.on('state', (state) => logger.info({ state }, `replica state: ${state}`));
      server.on('epoch', (e) => logger.debug({ ...e }, 'epoch applied'));
      const promoter = new Promoter({ secondary: server, replica, disk, service: cfg.secondary.service, logger });
      if (colo !== undefined) promoter.on('promoting', () => colo.takeOver());
      // Heartbeats on their own channel decide that the primary is dead (silence
      // for the timeout), so a large checkpoint in flight never looks like death.
      const heartbeat = new HeartbeatChannel({
        role: 'secondary',
        generation: 1,
        listen: heartbeatAt,
        intervalMs: cfg.heartbeat.intervalMs,
        timeoutMs: cfg.heartbeat.timeoutMs,
        epoch: () => server.lastEpoch,
        logger,
      });
      // Both signs are needed: heartbeats silent for the timeout and the
      // replication stream gone. Whichever comes second triggers the takeover.
      const tryPromote = (): void => {
        if (promoter.promotion !== undefined || heartbeat.peerState !== 'dead') return;
        if (server.primary !== undefined) {
          logger.warn('heartbeats lost but the replication stream is still open: waiting for it to end before failing over');
          return;
        }
        const generation = heartbeat.promote();
        promoter.promote(`primary silent for ${cfg.heartbeat.timeoutMs} ms; taking over as generation ${generation}`).catch(() => {
          // promote() logged why it cannot fail over; stay a secondary.
        });
      };
      heartbeat.on('peer', (e) => {
        logger.info({ peer: e.state, reason: e.reason }, `heartbeat: primary ${e.state} (${e.reason})`);
        tryPromote();
      });
      server.on('primary-gone', (g) => {
        logger.warn({ ...g }, `primary ${g.remote} gone; replica holds epoch ${g.lastEpoch}`);
        // The server lets go of the connection right after telling us.
        setImmediate(tryPromote);
      });
      // Checkpoints arriving are a sign of life as good as a heartbeat.
      server.on('epoch', () => heartbeat.noteActivity());
      const monitor = await startMonitor(args.monitor, cfg.monitor, logger, new SecondarySource({ server, promoter, heartbeat }));
      await heartbeat.start();
      const hbAddr = heartbeat.address();
      logger.info({ heartbeat: hbAddr ? `${hbAddr.address}:${hbAddr.port}` : undefined }, 'heartbeat channel listening');
      await server.start();
      if (colo !== undefined) {
        const n = await colo.start();
        logger.info({ net: `${n.address}:${n.port}` }, `COLO: net link listening on ${n.address}:${n.port}`);
      }
      const sig = await untilSignal();
      logger.info({ signal: sig }, 'stopping');
      await heartbeat.stop();
      await promoter.stop();
      await server.stop();
      await colo?.stop();
      await monitor?.stop();
    },
  );
}
