// scripts/xen-lab: the command line of the Xen lab (docs/xen.md).
import { buildLab, LabError } from './build.mjs';
import { EXIT_LAB_FAILED, runLab } from './lab.mjs';

const USAGE = `usage:
  scripts/xen-lab build
      download (apt-get download) and build what the lab boots, into the cache
      (\${XEN_LAB_CACHE:-~/.cache/tandem-xen-lab}); run does this itself
  scripts/xen-lab run [--hosts 1|2] [--timeout SECONDS] [--boot-timeout SECONDS]
                      [--verbose] [--keep] COMMAND
      boot Xen lab host(s) under QEMU, run COMMAND with bash in host 1's dom0
      (cwd: the project; tandem and lab-peer on PATH; LAB_GUEST_CFG,
      LAB_GUEST_IP, LAB_GUEST_PORT, LAB_SCRATCH, LAB_PEER_IP ... set), print
      its output and exit with its status; 125 when the lab itself failed,
      124 when COMMAND outran --timeout (default 1800)`;

function parse(argv) {
  const opts = { hosts: 1, timeoutS: 1800, bootTimeoutS: 300, verbose: false, keep: false };
  // The first word that is not an option starts COMMAND; its words are
  // joined with spaces (quote the command to keep its own quoting).
  const rest = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const num = (name) => {
      const v = Number(argv[++i]);
      if (!Number.isInteger(v) || v <= 0) throw new LabError(`${name} needs a positive integer`);
      return v;
    };
    if (rest.length > 0) rest.push(a);
    else if (a === '--hosts') opts.hosts = num('--hosts');
    else if (a === '--timeout') opts.timeoutS = num('--timeout');
    else if (a === '--boot-timeout') opts.bootTimeoutS = num('--boot-timeout');
    else if (a === '--verbose') opts.verbose = true;
    else if (a === '--keep') opts.keep = true;
    else if (a === '--') {
      rest.push(...argv.slice(i + 1));
      break;
    }
    else if (a.startsWith('--')) throw new LabError(`unknown option ${a}`);
    else rest.push(a);
  }
  if (opts.hosts !== 1 && opts.hosts !== 2) throw new LabError('--hosts is 1 or 2');
  opts.command = rest.join(' ');
  return opts;
}

async function main(argv) {
  const [verb, ...args] = argv;
  if (verb === 'build') {
    const images = buildLab({ log: (m) => process.stderr.write(`xen-lab: ${m}\n`) });
    console.log(JSON.stringify(images, null, 2));
    return 0;
  }
  if (verb === 'run') {
    const opts = parse(args);
    if (!opts.command) throw new LabError('run needs a COMMAND');
    return runLab(opts);
  }
  process.stderr.write(`${USAGE}\n`);
  return verb === undefined || verb === 'help' || verb === '--help' ? 0 : 2;
}

main(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
}, (err) => {
  process.stderr.write(`xen-lab: ${err instanceof LabError ? err.message : err.stack}\n`);
  process.exitCode = EXIT_LAB_FAILED;
});
