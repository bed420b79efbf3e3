/**
 * `tandem certs init DIR --nodes NAME,NAME [--etcd HOST,...] [--days N]`: makes the CA and one
 * certificate and key per node for the channels between the hosts
 * (src/transport/certs.ts; layout and what goes where: docs/security.md).
 */
import type { Argv } from 'yargs';
import { DEFAULT_CERT_DAYS, MAX_CERT_DAYS, certsInit, etcdHostsProblem } from '../../transport/certs.js';
import { flagInt, flagNodeName, flagPath } from '../config-args.js';
import { UsageError } from '../errors.js';

interface CertsInitArgs {
  dir: string;
  nodes: string;
  days: number;
  etcd: string | undefined;
}

/** At most this many nodes in one `certs init`: a pair, or a few for spares. */
const MAX_NODES = 64;

function nodeList(text: string | string[]): string[] {
  if (Array.isArray(text)) throw new UsageError(`--nodes given ${text.length} times; give it once, comma-separated`);
  const names = String(text).split(',').map((n) => n.trim());
  if (names.length > MAX_NODES) throw new UsageError(`--nodes: at most ${MAX_NODES} names`);
  const nodes = names.map((n) => flagNodeName(n, '--nodes'));
  const twice = nodes.find((n, i) => nodes.indexOf(n) !== i);
  if (twice !== undefined) throw new UsageError(`--nodes: "${twice}" is named twice`);
  return nodes;
}

export function certsCommand(yargs: Argv): Argv {
  return yargs.command('certs', 'certificates for mutual TLS between the hosts', (y) =>
    y
      .command<CertsInitArgs>(
        'init <dir>',
        'make a CA and a certificate and key per node in DIR (the CA key stays there: copy only ca.crt, NAME.crt and NAME.key to node NAME)',
        (c) =>
          c
            .positional('dir', { type: 'string', demandOption: true, describe: 'directory to write (created 0700); existing files are never replaced' })
            .option('nodes', { requiresArg: true, type: 'string', demandOption: true, describe: 'the nodes\' names, comma-separated (e.g. the hosts\' names)' })
            .option('etcd', { requiresArg: true, type: 'string', describe: 'also a server certificate for the arbiter\'s etcd members at these addresses (IPs or DNS names, comma-separated): DIR/etcd.crt, DIR/etcd.key' })
            .option('days', { requiresArg: true, type: 'number', default: DEFAULT_CERT_DAYS, describe: `validity of every certificate, days (1..${MAX_CERT_DAYS})` }),
        async (args) => {
          const dir = flagPath(args.dir, 'DIR');
          const nodes = nodeList(args.nodes);
          const days = flagInt(args.days, '--days', 1, MAX_CERT_DAYS);
          if (Array.isArray(args.etcd)) throw new UsageError(`--etcd given ${args.etcd.length} times; give it once, comma-separated`);
          const etcd = args.etcd === undefined ? undefined : String(args.etcd).split(',').map((h) => h.trim());
          const problem = etcd === undefined ? undefined : etcdHostsProblem(etcd, nodes);
          if (problem !== undefined) throw new UsageError(`--etcd: ${problem}`);
          const made = await certsInit(dir, { nodes, days, etcd });
          process.stdout.write(`wrote ${made.files.join(' ')}\n`);
          process.stdout.write(`CA fingerprint (SHA-256): ${made.caFingerprint}\n`);
          process.stdout.write('copy ca.crt, NAME.crt and NAME.key (keep it 0600) to node NAME, and run it with --tls DIR --name NAME --peer OTHER (docs/security.md); ca.key signs certificates every node accepts: keep it off the nodes\n');
        },
      )
      .demandCommand(1, 'name a certs command: init'),
  );
}
