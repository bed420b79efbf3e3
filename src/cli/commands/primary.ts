/**
 * `tandem primary --secondary HOST:PORT --service HOST:PORT [--interval MS]
 * [--config FILE]`: runs the simulated guest (its RESP key-value service on
 * the service address) and protects it by checkpointing to the secondary.
 */
import type { Argv } from 'yargs';
import { createSaveCallbacks } from '../../checkpoint/callbacks.js';
import { DeviceSet } from '../../checkpoint/devices.js';
import { PrimaryEngine } from '../../checkpoint/engine.js';
import { precopyPolicy } from '../../checkpoint/precopy.js';
import { stateDigest } from '../../domain/digest.js';
import { SimDomain } from '../../domain/sim.js';
import { ConfigError, ErrorCodes, TandemError } from '../../errors.js';
import { DiskMirror } from '../../disk/mirror.js';
import { SimDisk } from '../../disk/sim-disk.js';
import { installGuest } from '../../guest/machine.js';
import { KvServer } from '../../guest/server.js';
import { HeartbeatChannel } from '../../heartbeat/channel.js';
import { nextPort } from '../../config/config.js';
import { OutputBuffer } from '../../front/output-buffer.js';
import { ServiceFront } from '../../front/service-front.js';
import type { AddressInfo } from 'node:net';
import type { Observable } from 'rxjs';
import type { CheckpointDevice } from '../../checkpoint/devices.js';
import type { ModeSwitch } from '../../checkpoint/hybrid.js';
import type { Trigger } from '../../checkpoint/triggers.js';
import { ColoPrimaryService } from '../../colo/primary-service.js';
import type { TandemConfig } from '../../config/config.js';
import { parseAddress, type Address } from '../../util/address.js';
import type { Logger } from '../../util/logger.js';
import { createLogger } from '../../util/logger.js';
import { baseConfig, untilSignal, withCommonOptions, type CommonArgs } from '../config-args.js';
import { PrimarySource } from '../../monitor/source.js';
import { startMonitor } from '../../monitor/wire.js';

interface PrimaryArgs extends CommonArgs {
  mode: 'remus' | 'colo' | 'none';
  secondary: string | undefined;
  heartbeat: string | undefined;
  generation: number | undefined;
  service: string | undefined;
  interval: number | undefined;
  'verify-digest': boolean | undefined;
  'colo-net': string | undefined;
}

export function primaryCommand(yargs: Argv): Argv {
  return yargs.command<PrimaryArgs>(
    'primary',
    'run the primary: the guest and its protection',
    (y) =>
      withCommonOptions(
        y
          .option('mode', { choices: ['remus', 'colo', 'none'] as const, default: 'remus' as const, describe: 'remus: checkpoint every interval; colo: compare the replicas\' output, checkpoint when they differ; none: unprotected (a baseline)' })
          .option('secondary', { type: 'string', describe: 'HOST:PORT of `tandem secondary`' })
          .option('heartbeat', { type: 'string', describe: "HOST:PORT of the secondary's heartbeat channel (default: its port + 1)" })
          .option('generation', { type: 'number', describe: 'this primary\'s generation (fencing); a promoted secondary runs with a higher one' })
          .option('service', { type: 'string', describe: "HOST:PORT where clients reach the guest's RESP port" })
          .option('interval', { type: 'number', describe: 'Remus checkpoint interval, ms (1..60000)' })
          .option('colo-net', { type: 'string', describe: "COLO: HOST:PORT of the secondary's net link (default: its port + 2)" })
          .option('verify-digest', { type: 'boolean', describe: 'digest the guest state at every suspend and log it (costs pause time)' }),
      ),
    async (args) => {
      const cfg = baseConfig(args);
      const p = cfg.primary;
      if (args.secondary !== undefined) p.secondary = parseAddress(args.secondary, '--secondary');
      if (args.service !== undefined) p.service = parseAddress(args.service, '--service', true);
      if (args.interval !== undefined) {
        if (!Number.isInteger(args.interval) || args.interval < 1 || args.interval > 60_000) throw new ConfigError(`--interval: expected an integer in 1..60000, got ${args.interval}`);
        p.intervalMs = args.interval;
      }
      if (args['verify-digest'] !== undefined) p.verifyDigest = args['verify-digest'];
      if (args['colo-net'] !== undefined) cfg.colo.net = parseAddress(args['colo-net'], '--colo-net');
      if (args.heartbeat !== undefined) p.heartbeat = parseAddress(args.heartbeat, '--heartbeat');
      if (args.generation !== undefined) {
        if (!Number.isSafeInteger(args.generation) || args.generation < 1) throw new ConfigError(`--generation: expected a positive integer, got ${args.generation}`);
        p.generation = args.generation;
      }
      if (args.mode !== 'none' && p.secondary === undefined) throw new ConfigError('no secondary: pass --secondary HOST:PORT or set primary.secondary in the configuration');
      if (p.minIntervalMs > p.intervalMs) p.minIntervalMs = p.intervalMs;

      // Verification lines (staged digests) must survive a kill: write them synchronously.
      const logger = createLogger(cfg.logLevel, 'tandem-primary', p.verifyDigest);
      const domain = new SimDomain({ pages: cfg.domain.memoryMib * 256, vcpus: cfg.domain.vcpus });
      const disk = new SimDisk({ capacityBytes: cfg.domain.diskMib * 2 ** 20, domain });
      const protect = args.mode !== 'none' && p.secondary !== undefined;
      let acked = 0;
      const heartbeat = protect
        ? new HeartbeatChannel({
            role: 'primary',
            generation: p.generation,
            connect: p.heartbeat ?? nextPort(p.secondary!),
            intervalMs: cfg.heartbeat.intervalMs,
            timeoutMs: cfg.heartbeat.timeoutMs,
            epoch: () => acked,
            logger,
          })
        : undefined;
      if (heartbeat) {
        // Fencing: hear the peer before serving anyone. A peer that runs as a
        // newer generation means this node was failed over: it must not serve.
        const fenced = new Promise<{ ownGeneration: number; peerGeneration: number }>((resolve) => heartbeat.once('fenced', resolve));
        const heard = new Promise<void>((resolve) => heartbeat.once('heartbeat', () => resolve()));
        await heartbeat.start();
        await Promise.race([heard, new Promise((r) => setTimeout(r, cfg.heartbeat.timeoutMs))]);
        // Let a frame that fences us be processed first.
        await new Promise((r) => setImmediate(r));
        const early = await Promise.race([fenced, Promise.resolve(undefined)]);
        if (early !== undefined) {
          await heartbeat.stop();
          throw new TandemError(ErrorCodes.FENCED, `fenced: a node runs as primary with generation ${early.peerGeneration} (this one: ${early.ownGeneration}); not serving the guest`);
        }
      }
      const colo = args.mode === 'colo' && p.secondary !== undefined;
      const service = colo
        ? await coloService(domain, disk, cfg, p.secondary!, logger)
        : await remusService(domain, disk, protect ? 'remus' : 'none', cfg, logger);
      logger.info({ service: `${service.bound.address}:${service.bound.port}` }, `guest RESP service on ${service.bound.address}:${service.bound.port}`);

      if (!protect || p.secondary === undefined) {
        logger.warn('mode none: the guest runs UNPROTECTED (no checkpoints, no standby); output is not held');
        const sig = await untilSignal();
        logger.info({ signal: sig }, 'stopping');
        await service.stop();
        return;
      }
      const devices = new DeviceSet();
      for (const d of service.devices) devices.add(d);
      const engine = new PrimaryEngine(
        { domain, devices, callbacks: createSaveCallbacks(domain, devices, precopyPolicy({ ...p.precopy, shrinkRatio: 1 })), logger },
        {
          secondaryHost: p.secondary.host,
          secondaryPort: p.secondary.port,
          // COLO checkpoints when the replicas diverge, and at least every max interval.
          intervalMs: colo ? null : p.intervalMs,
          minIntervalMs: p.minIntervalMs,
          maxIntervalMs: colo ? cfg.colo.maxIntervalMs : p.maxIntervalMs,
          colo,
          ackTimeoutMs: p.ackTimeoutMs,
          connectTimeoutMs: p.connectTimeoutMs,
          retryMs: p.retryMs,
          streamVersion: p.streamVersion,
          precopyBatchPages: 1024,
          verifyDigest: p.verifyDigest ? () => stateDigest(domain, [disk]) : undefined,
          // Logged before the epoch is sent, so a check can match whatever the secondary ends up holding.
          onStaged: (epoch, digest) => logger.debug({ epoch, digest }, 'epoch staged'),
        },
      );
      service.divergence$?.subscribe((t) => engine.divergence$.next(t));
      const source = new PrimarySource({ engine, intervalMs: p.intervalMs, colo });
      service.modeSwitches$?.subscribe((m) => {
        source.switchMode(m.mode, m.reason);
        // Remus within COLO: a checkpoint every interval; mismatched output waits for the next one.
        engine.setInterval(m.mode === 'remus' ? p.intervalMs : null);
        logger.warn({ mode: m.mode, reason: m.reason }, `replication mode: ${m.mode} (${m.reason})`);
      });
      engine.state$.subscribe(({ state, reason }) => logger[state === 'degraded' ? 'warn' : 'info']({ state, reason }, `protection: ${state}`));
      engine.metrics$.subscribe((m) => logger.debug(m, 'epoch'));
      engine.metrics$.subscribe((m) => (acked = m.epoch));
      const fencedLater = new Promise<string>((resolve) =>
        heartbeat!.once('fenced', (f) => resolve(`fenced by generation ${f.peerGeneration} (this one: ${f.ownGeneration})`)),
      );
      const monitor = await startMonitor(args.monitor, cfg.monitor, logger, source);
      engine.start();
      const why = await Promise.race([untilSignal(), fencedLater]);
      if (why.startsWith('fenced')) logger.fatal(`${why}: another node serves the guest now; this node stops serving at once`);
      else logger.info({ signal: why }, 'stopping');
      // A fenced node must not let held output out: close the front before the engine's teardown.
      if (why.startsWith('fenced')) await service.stopFront();
      await engine.stop();
      await monitor?.stop();
      await service.stop();
      await heartbeat!.stop();
      if (why.startsWith('fenced')) process.exitCode = 3;
    },
  );
}

/** How the guest is served and what the engine's devices are, per mode. */
interface Service {
  bound: AddressInfo;
  devices: CheckpointDevice[];
  divergence$?: Observable<Trigger>;
  modeSwitches$?: Observable<ModeSwitch>;
  /** Closes the client-facing side at once (fenced: no held output may leave). */
  stopFront(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * Remus (or none): the guest's RESP server on an internal port, the service
 * front on the service address holding output until its epoch is acked.
 */
async function remusService(domain: SimDomain, disk: SimDisk, mode: 'remus' | 'none', cfg: TandemConfig, logger: Logger): Promise<Service> {
  const p = cfg.primary;
  const { store, aof } = installGuest(domain, disk);
  const guest = new KvServer({ domain, store, persistence: aof, host: '127.0.0.1', port: 0, logger });
  const guestAddr = await guest.start();
  const output = new OutputBuffer({ mode, teardownPolicy: p.onUnprotected, maxHeldBytes: p.maxHeldMib * 2 ** 20, logger });
  const front = new ServiceFront({ buffer: output, guest: { host: '127.0.0.1', port: guestAddr.port }, host: p.service.host, port: p.service.port, maxConnections: p.maxClients, logger });
  const bound = await front.start();
  return {
    bound,
    devices: [output, new DiskMirror({ disk })],
    stopFront: () => front.stop(),
    stop: async () => {
      await front.stop();
      await guest.stop();
    },
  };
}

/** COLO: the guest behind its virtual NIC, the comparator, the net link, the COLO front (docs/colo.md). */
async function coloService(domain: SimDomain, disk: SimDisk, cfg: TandemConfig, secondary: Address, logger: Logger): Promise<Service> {
  const net = cfg.colo.net ?? { host: secondary.host, port: Math.min(65535, secondary.port + 2) };
  const colo = new ColoPrimaryService({ domain, disk, colo: cfg.colo, net, service: cfg.primary.service, maxClients: cfg.primary.maxClients, logger, external: cfg.colo.comparator });
  const bound = await colo.start();
  return { bound, devices: colo.devices, divergence$: colo.divergence$, modeSwitches$: colo.modeSwitches$, stopFront: () => colo.stop(), stop: () => colo.stop() };
}
