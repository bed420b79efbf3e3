/**
 * `tandem proxy --primary-in HOST:PORT --secondary-in HOST:PORT --outdev
 * HOST:PORT --notify HOST:PORT [--compare-timeout MS] [--expired-scan-cycle
 * MS] [--max-queue-size N] [--vnet-hdr] [--metrics HOST:PORT]`: the COLO
 * packet comparator, standing where QEMU's colo-compare stands. Every
 * address is a listening socket (port 0 picks a free one); once all listen,
 * one line on stdout names them: `listening primary_in=H:P secondary_in=H:P
 * outdev=H:P notify=H:P [metrics=H:P]`. The metrics socket serves only
 * Prometheus text at GET /metrics (read-only: nothing there controls the
 * comparator).
 */
import type { Argv } from 'yargs';
import { ProxyMetrics, ProxyMetricsServer } from '../../../proxy/metrics.js';
import { ProxyServer, type PortName } from '../../../proxy/server.js';
import { LOG_LEVELS, type LogLevel } from '../../util/logger.js';
import { flagAddress, flagChoice, flagInt, serviceLog, untilSignal, withLogOptions, type LogArgs } from '../config-args.js';

interface ProxyArgs extends LogArgs {
  'primary-in': string;
  'secondary-in': string;
  outdev: string;
  notify: string;
  'compare-timeout': number;
  'expired-scan-cycle': number;
  'max-queue-size': number;
  'vnet-hdr': boolean;
  metrics?: string;
  'log-level': LogLevel | LogLevel[];
}

export function proxyCommand(yargs: Argv): Argv {
  return yargs.command<ProxyArgs>(
    'proxy',
    'run the COLO packet comparator (interoperable with QEMU colo-compare)',
    (y) =>
      withLogOptions(y)
        .option('primary-in', { requiresArg: true, type: 'string', demandOption: true, describe: "HOST:PORT to accept the primary guest's frames on" })
        .option('secondary-in', { requiresArg: true, type: 'string', demandOption: true, describe: "HOST:PORT to accept the secondary guest's frames on" })
        .option('outdev', { requiresArg: true, type: 'string', demandOption: true, describe: 'HOST:PORT to accept the reader of released frames on' })
        .option('notify', { requiresArg: true, type: 'string', demandOption: true, describe: 'HOST:PORT to accept the COLO controller on (notify protocol)' })
        .option('compare-timeout', { requiresArg: true, type: 'number', default: 3000, describe: 'ms a frame may wait for its twin before a checkpoint is requested (1..2147483647)' })
        .option('expired-scan-cycle', { requiresArg: true, type: 'number', default: 1000, describe: 'ms between scans for frames past the compare timeout (1..2147483647)' })
        .option('max-queue-size', { requiresArg: true, type: 'number', default: 1024, describe: 'frames held per connection and guest (1..1048576)' })
        .option('vnet-hdr', { type: 'boolean', default: false, describe: 'records carry a virtio-net header length field (vnet_hdr_support=on)' })
        .option('metrics', { requiresArg: true, type: 'string', describe: 'HOST:PORT to serve Prometheus metrics on (GET /metrics)' })
        .option('log-level', { requiresArg: true, choices: LOG_LEVELS, default: 'info', describe: 'log level' }),
    async (args) => {
      const { logger } = serviceLog(args, flagChoice(args['log-level'], '--log-level'), 'tandem-proxy');
      // Every address is a listening socket: port 0 picks a free one.
      const metricsAt = args.metrics === undefined ? undefined : flagAddress(args.metrics, '--metrics', true);
      const server = new ProxyServer({
        primaryIn: flagAddress(args['primary-in'], '--primary-in', true),
        secondaryIn: flagAddress(args['secondary-in'], '--secondary-in', true),
        outdev: flagAddress(args.outdev, '--outdev', true),
        notify: flagAddress(args.notify, '--notify', true),
        compareTimeoutMs: flagInt(args['compare-timeout'], '--compare-timeout', 1, 2 ** 31 - 1),
        expiredScanCycleMs: flagInt(args['expired-scan-cycle'], '--expired-scan-cycle', 1, 2 ** 31 - 1),
        maxQueueSize: flagInt(args['max-queue-size'], '--max-queue-size', 1, 2 ** 20),
        vnetHdr: args['vnet-hdr'],
        logger,
      });
      let metricsServer: ProxyMetricsServer | undefined;
      if (metricsAt !== undefined) {
        const metrics = new ProxyMetrics(server);
        metrics.start();
        metricsServer = new ProxyMetricsServer(metrics, metricsAt, logger);
      }
      await server.start();
      const a = server.addresses();
      const names: PortName[] = ['primary_in', 'secondary_in', 'outdev', 'notify'];
      const listening = names.map((n) => `${n}=${a[n].address}:${a[n].port}`);
      if (metricsServer !== undefined) {
        try {
          const m = await metricsServer.start();
          logger.info({ port: 'metrics', address: `${m.address}:${m.port}` }, 'metrics listening');
          listening.push(`metrics=${m.address}:${m.port}`);
        } catch (err) {
          await server.stop();
          throw err;
        }
      }
      process.stdout.write(`listening ${listening.join(' ')}\n`);
      await untilSignal();
      await metricsServer?.stop();
      await server.stop();
    },
  );
}
