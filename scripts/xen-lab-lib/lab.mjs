// Boots one or two Xen lab hosts under QEMU (TCG: KVM cannot run Xen on
// these machines), runs a command in host 1's dom0 and tears everything down.
//
// Each host gets a directory of its own in a run directory on the host,
// shared read-write into its dom0 as /lab-io (9p tag labio): the
// orchestrator writes lab.env, command, guest configurations and a bin/
// there; dom0 appends its progress to /lab-io/state ("stage1", "modules",
// "toolstack", "network", "ready", "running", "exit N", or "fail WHY") and
// writes the command's output to /lab-io/stdout and /lab-io/stderr, which the
// orchestrator tails as they grow. The host's root is shared read-only (9p
// tag hostroot) and dom0 chroots into a tmpfs overlay of it, so the project
// checkout, node and xen-utils-4.17 are the host's own.
import { spawn, spawnSync } from 'node:child_process';
import {
  closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, readSync, rmSync,
  statSync, symlinkSync, writeFileSync,
} from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { buildLab, LabError, LIB_DIR } from './build.mjs';

export const PROJECT_DIR = resolve(LIB_DIR, '..', '..');

// The lab network (one bridge, xenbr0, per dom0; with two hosts both bridges
// are one segment). Private to the lab: nothing outside QEMU sees it.
export const LAB_NET = {
  dom0Ip: (index) => `10.77.0.${index}`,
  guestIp: '10.77.0.10',
  pvGuestIp: '10.77.0.11',
  guestPort: 6379,
  peerPort: 7077,
};

// Exit statuses of the lab itself (the command's own status otherwise).
export const EXIT_LAB_FAILED = 125;
export const EXIT_TIMEOUT = 124;

const POLL_MS = 200;
// After the command, dom0 reboots (Xen resets the machine, QEMU's
// -no-reboot turns that into an exit); past this QEMU is killed.
const SHUTDOWN_GRACE_MS = 30_000;
const FAILED_SHUTDOWN_GRACE_MS = 10_000;

// QEMU's command line for one host, per the verified recipe in
// shared/xen.md: TCG with SVM and NPT so Xen has HAP (PVH guests need it),
// tb-size=256 to keep QEMU's memory near 2.3 GiB, one vCPU.
export function qemuArgs({ images, hostDir, console, link }) {
  const xenArgs = 'console=com1 com1=115200,8n1 dom0_mem=768M,max:768M noreboot';
  // QEMU's multiboot module list is comma-separated: no commas in the dom0 line.
  const dom0Args = 'console=hvc0 rdinit=/init loglevel=4';
  const args = [
    '-accel', 'tcg,tb-size=256',
    '-cpu', 'qemu64,+ssse3,+sse4.1,+sse4.2,+popcnt,+svm,+npt',
    '-m', '2048', '-smp', '1',
    '-nodefaults', '-display', 'none', '-no-reboot',
    '-serial', `file:${console}`,
    '-kernel', images.xen,
    '-append', xenArgs,
    '-initrd', `${images.kernel.vmlinuz} ${dom0Args},${images.dom0Initrd}`,
    '-virtfs', 'local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap',
    '-virtfs', `local,path=${hostDir},mount_tag=labio,security_model=none,multidevs=remap`,
  ];
  if (link) {
    // The link between two hosts: a QEMU socket netdev over loopback TCP,
    // host 1 listening, host 2 connecting; dom0 bridges the NIC into xenbr0.
    const end = link.listen ? `listen=127.0.0.1:${link.port}` : `connect=127.0.0.1:${link.port}`;
    args.push('-netdev', `socket,id=lablink,${end}`,
      '-device', `virtio-net-pci,netdev=lablink,mac=52:54:00:77:00:0${link.index}`);
  }
  return args;
}

function shellQuote(value) {
  return `'${String(value).replace(/'/g, `'\\''`)}'`;
}

export function guestConfig({ images, name, type, ip, mac }) {
  return [
    `# The Xen lab's ${type.toUpperCase()} guest, written by scripts/xen-lab: the lab's Debian kernel`,
    '# with a busybox initramfs running redis-server (state in RAM) on its vif.',
    `name = "${name}"`,
    `type = "${type}"`,
    // 64 MiB is too small for this kernel plus the initramfs.
    'memory = 128',
    'vcpus = 1',
    `kernel = "${images.kernel.vmlinuz}"`,
    `ramdisk = "${images.guestInitrd}"`,
    `extra = "console=hvc0 rdinit=/init loglevel=4 lab.ip=${ip}/24 lab.port=${LAB_NET.guestPort}"`,
    `vif = [ 'bridge=xenbr0,mac=${mac}' ]`,
    'on_poweroff = "destroy"',
    'on_reboot = "destroy"',
    'on_crash = "destroy"',
    '',
  ].join('\n');
}

// Fills one host's lab-io directory.
function prepareHost({ runDir, index, hosts, images, command, node }) {
  const dir = join(runDir, `host${index}`);
  const bin = join(dir, 'bin');
  mkdirSync(bin, { recursive: true });
  mkdirSync(join(dir, 'out'));
  const guestCfg = '/lab-io/guest.cfg';
  const pvGuestCfg = '/lab-io/guest-pv.cfg';
  writeFileSync(join(dir, 'guest.cfg'), guestConfig({
    images, name: 'lab-guest', type: 'pvh', ip: LAB_NET.guestIp, mac: '00:16:3e:4c:00:0a',
  }));
  // Debian's hypervisor has no shadow paging, so a PV guest cannot track
  // dirty pages (no migrate, no Remus); plain xl save/restore works.
  writeFileSync(join(dir, 'guest-pv.cfg'), guestConfig({
    images, name: 'lab-guest-pv', type: 'pv', ip: LAB_NET.pvGuestIp, mac: '00:16:3e:4c:00:0b',
  }));
  const env = {
    LAB_HOSTS: hosts,
    LAB_HOST_INDEX: index,
    LAB_ROLE: index === 1 ? 'run' : 'peer',
    LAB_PROJECT: PROJECT_DIR,
    LAB_STAGE2: join(LIB_DIR, 'dom0-stage2.sh'),
    LAB_PEER_SCRIPT: join(LIB_DIR, 'peer.mjs'),
    LAB_NODE: node,
    LAB_KVER: images.kernel.version,
    LAB_MODULES: images.kernel.modules,
    // virtio-net for the link between the hosts.
    LAB_EXTRA_MODULES: hosts > 1 ? 'virtio_net' : '',
    LAB_DOM0_IP: LAB_NET.dom0Ip(index),
    LAB_GUEST_CFG: guestCfg,
    LAB_GUEST_NAME: 'lab-guest',
    LAB_GUEST_IP: LAB_NET.guestIp,
    LAB_GUEST_PORT: LAB_NET.guestPort,
    LAB_GUEST_PV_CFG: pvGuestCfg,
    LAB_GUEST_PV_NAME: 'lab-guest-pv',
    LAB_GUEST_PV_IP: LAB_NET.pvGuestIp,
    // dom0's tmpfs for save files (dom0-stage2.sh says why not the share).
    LAB_SCRATCH: '/scratch',
    // Shared with the host: what is written here is in the run directory
    // that --keep (or a failure) keeps.
    LAB_OUT: '/lab-io/out',
    LAB_PEER_PORT: LAB_NET.peerPort,
    ...(hosts > 1 ? { LAB_PEER_IP: LAB_NET.dom0Ip(index === 1 ? 2 : 1) } : {}),
  };
  writeFileSync(join(dir, 'lab.env'),
    Object.entries(env).map(([k, v]) => `export ${k}=${shellQuote(v)}\n`).join(''));
  writeFileSync(join(dir, 'command'), command ?? '');
  writeFileSync(join(dir, 'state'), '');
  writeFileSync(join(bin, 'tandem'),
    `#!/bin/sh\nexec ${shellQuote(node)} ${shellQuote(join(PROJECT_DIR, 'dist', 'src', 'cli', 'main.js'))} "$@"\n`,
    { mode: 0o755 });
  writeFileSync(join(bin, 'lab-peer'), hosts > 1
    ? `#!/bin/sh\n# Runs "$*" on the other lab host's dom0 (cwd: the project) and exits with its status.\n` +
      `exec ${shellQuote(node)} ${shellQuote(env.LAB_PEER_SCRIPT)} run "$LAB_PEER_IP" "$LAB_PEER_PORT" "$*"\n`
    : '#!/bin/sh\necho "lab-peer: this lab has one host (use scripts/xen-lab run --hosts 2)" >&2\nexit 2\n',
  { mode: 0o755 });
  // busybox answers to the name it is called by.
  symlinkSync(images.busybox, join(bin, 'modprobe'));
  return dir;
}

// Appends whatever a file gained since the last call to a stream.
class Tail {
  constructor(path, out) {
    this.path = path;
    this.out = out;
    this.offset = 0;
  }

  pump() {
    if (!existsSync(this.path)) return;
    const fd = openSync(this.path, 'r');
    try {
      const buf = Buffer.alloc(1 << 16);
      for (;;) {
        const n = readSync(fd, buf, 0, buf.length, this.offset);
        if (n <= 0) break;
        this.offset += n;
        this.out.write(Buffer.from(buf.subarray(0, n)));
      }
    } finally {
      closeSync(fd);
    }
  }
}

function lastLines(path, n) {
  if (!existsSync(path)) return '(none)';
  const lines = readFileSync(path, 'utf8').split('\n');
  return lines.slice(-n).join('\n');
}

function tcpListening(port) {
  // /proc/net/tcp: local address as hex IP:port, state 0A = LISTEN. A probe
  // connection would be taken by QEMU as its one peer, so look instead.
  const hex = port.toString(16).toUpperCase().padStart(4, '0');
  const table = readFileSync('/proc/net/tcp', 'utf8');
  return table.split('\n').some((l) => {
    const f = l.trim().split(/\s+/);
    return f[1]?.endsWith(`:${hex}`) && f[3] === '0A';
  });
}

async function freePort() {
  return new Promise((res, rej) => {
    const s = net.createServer();
    s.on('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
  });
}

const RUN_DIR_PREFIX = 'tandem-xen-lab-';
// A failed run keeps its directory for a look; a day later it goes.
const KEEP_FAILED_RUN_MS = 24 * 3600 * 1000;

function removeOldRunDirs(log) {
  for (const name of readdirSync(tmpdir())) {
    if (!name.startsWith(RUN_DIR_PREFIX)) continue;
    const p = join(tmpdir(), name);
    try {
      if (Date.now() - statSync(p).mtimeMs > KEEP_FAILED_RUN_MS) {
        rmSync(p, { recursive: true, force: true });
        log(`removed old run directory ${p}`);
      }
    } catch {
      // Gone meanwhile, or another user's: not ours to worry about.
    }
  }
}

function requireTool(path, hint) {
  const r = spawnSync('sh', ['-c', 'command -v "$1"', 'sh', path]);
  if (r.status !== 0) throw new LabError(`${path} not found: ${hint}`);
}

class Host {
  constructor(index, dir) {
    this.index = index;
    this.dir = dir;
    this.console = join(dir, 'console.log');
    this.proc = null;
    this.exited = null;
    this.killed = false;
  }

  start(args, verbose) {
    // setpriv --pdeathsig: QEMU dies with the orchestrator even if that is
    // SIGKILLed, so no lab host outlives the run.
    this.proc = spawn('setpriv', ['--pdeathsig', 'KILL', '--', 'qemu-system-x86_64', ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.qemuOutput = '';
    const keep = (d) => {
      this.qemuOutput = (this.qemuOutput + d.toString()).slice(-4000);
      if (verbose) process.stderr.write(`[qemu ${this.index}] ${d}`);
    };
    this.proc.stdout.on('data', keep);
    this.proc.stderr.on('data', keep);
    this.exitPromise = new Promise((res) => {
      this.proc.on('exit', (code, signal) => {
        this.exited = { code, signal };
        res(this.exited);
      });
      this.proc.on('error', (err) => {
        this.exited = { code: null, signal: null, error: err.message };
        res(this.exited);
      });
    });
  }

  // The state lines dom0 wrote so far.
  states() {
    const path = join(this.dir, 'state');
    return existsSync(path) ? readFileSync(path, 'utf8').split('\n').filter(Boolean) : [];
  }

  failure() {
    return this.states().find((s) => s.startsWith('fail '))?.slice(5) ?? null;
  }

  has(state) {
    return this.states().includes(state);
  }

  exitStatus() {
    const line = this.states().find((s) => s.startsWith('exit '));
    return line ? Number(line.slice(5)) : null;
  }

  diagnostics() {
    return [
      `--- host ${this.index}: dom0 state: ${this.states().join(', ') || '(nothing)'}`,
      `--- host ${this.index}: QEMU ${this.exited ? `exited (${JSON.stringify(this.exited)})` : 'running'}` +
        (this.qemuOutput ? `; it said:\n${this.qemuOutput.trim()}` : ''),
      `--- host ${this.index}: last lines of the console (${this.console}):`,
      lastLines(this.console, 40),
      `--- host ${this.index}: last lines of dom0's stage 2 log:`,
      lastLines(join(this.dir, 'dom0.log'), 20),
    ].join('\n');
  }

  async stop(graceMs) {
    if (!this.proc || this.exited) return;
    // Unref'd: a pending grace timer must not keep the orchestrator alive.
    const t = sleep(graceMs, undefined, { ref: false }).then(() => 'timeout');
    if ((await Promise.race([this.exitPromise, t])) !== 'timeout') return;
    this.killed = true;
    this.proc.kill('SIGTERM');
    const t2 = sleep(5000, undefined, { ref: false }).then(() => 'timeout');
    if ((await Promise.race([this.exitPromise, t2])) !== 'timeout') return;
    this.proc.kill('SIGKILL');
    await this.exitPromise;
  }
}

// Waits until check() returns a value other than undefined, or throws after
// timeoutMs saying what it waited for (`what`: a string, or a function called
// then, to tell the state at the timeout). check() may throw to fail at once.
async function until(timeoutMs, what, check) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = check();
    if (v !== undefined) return v;
    if (Date.now() > deadline) {
      const said = typeof what === 'function' ? what() : what;
      throw new LabError(`timed out after ${Math.round(timeoutMs / 1000)} s waiting for ${said}`);
    }
    await sleep(POLL_MS);
  }
}

/**
 * Boots the lab, runs `command` in host 1's dom0, returns its exit status
 * (EXIT_LAB_FAILED when the lab itself failed, EXIT_TIMEOUT when the command
 * outran timeoutS). Writes the command's output to `stdout`/`stderr` as it
 * comes and the lab's own messages to `log`.
 */
export async function runLab({
  command, hosts = 1, timeoutS = 1800, bootTimeoutS = 300, verbose = false, keep = false,
  stdout = process.stdout, stderr = process.stderr, log = (m) => process.stderr.write(`xen-lab: ${m}\n`),
}) {
  const t0 = Date.now();
  const secs = (from) => ((Date.now() - from) / 1000).toFixed(1);
  requireTool('qemu-system-x86_64', 'install qemu-system-x86');
  requireTool('setpriv', 'install util-linux');
  requireTool('/usr/lib/xen-4.17/bin/xl', 'install xen-utils-4.17 (dom0 runs the host\'s Xen tools)');
  if (!existsSync(join(PROJECT_DIR, 'dist', 'src', 'cli', 'main.js'))) {
    log('warning: dist/src/cli/main.js is missing, so `tandem` will not run in dom0 (npm run build)');
  }
  const images = buildLab({ log });
  log(`images ready in ${secs(t0)} s (cache ${images.cache})`);

  removeOldRunDirs(log);
  const runDir = mkdtempSync(join(tmpdir(), RUN_DIR_PREFIX));
  if (/[,\s]/.test(runDir)) throw new LabError(`run directory ${runDir} has a comma or a space`);
  const all = [];
  let interrupted = null;
  const onSignal = (sig) => {
    interrupted = sig;
  };
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(sig, onSignal);
  const killAll = () => {
    for (const h of all) if (h.proc && !h.exited) h.proc.kill('SIGKILL');
  };
  process.on('exit', killAll);

  let status = EXIT_LAB_FAILED;
  let failed = null;
  try {
    const node = process.execPath;
    const port = hosts > 1 ? await freePort() : 0;
    for (let i = 1; i <= hosts; i++) {
      const dir = prepareHost({ runDir, index: i, hosts, images, command: i === 1 ? command : '', node });
      all.push(new Host(i, dir));
    }
    const bootStart = Date.now();
    const checkInterrupt = () => {
      if (interrupted) throw new LabError(`interrupted by ${interrupted}`);
    };
    const checkHealth = () => {
      checkInterrupt();
      for (const h of all) {
        const f = h.failure();
        if (f) throw new LabError(`host ${h.index}'s dom0 failed: ${f}`);
        if (h.exited && h.exitStatus() === null) throw new LabError(`host ${h.index}'s QEMU exited before its dom0 finished`);
      }
    };
    for (const h of all) {
      const link = hosts > 1 ? { listen: h.index === 1, port, index: h.index } : null;
      h.start(qemuArgs({ images, hostDir: h.dir, console: h.console, link }), verbose);
      if (link?.listen) {
        await until(30_000, 'QEMU of host 1 to listen on its link port', () => {
          checkHealth();
          return tcpListening(port) ? true : undefined;
        });
      }
    }
    const consoles = verbose ? all.map((h) => new Tail(h.console, stderr)) : [];

    const progress = () => all.map((h) => `host ${h.index}: ${h.states().join(', ') || 'no progress'}`).join('; ');
    await until(bootTimeoutS * 1000, () => `"dom0 ready" (${progress()})`, () => {
      for (const c of consoles) c.pump();
      checkHealth();
      return all.every((h) => h.has('ready')) ? true : undefined;
    });
    log(`dom0 ready after ${secs(bootStart)} s boot (${hosts} host${hosts > 1 ? 's' : ''})`);

    const host1 = all[0];
    writeFileSync(join(host1.dir, 'go'), '');
    const runStart = Date.now();
    const out = new Tail(join(host1.dir, 'stdout'), stdout);
    const err = new Tail(join(host1.dir, 'stderr'), stderr);
    try {
      status = await until(timeoutS * 1000, `the command to finish (--timeout ${timeoutS})`, () => {
        out.pump();
        err.pump();
        for (const c of consoles) c.pump();
        checkHealth();
        return host1.exitStatus() ?? undefined;
      });
    } catch (e) {
      if (/^timed out/.test(e.message)) status = EXIT_TIMEOUT;
      throw e;
    } finally {
      out.pump();
      err.pump();
    }
    log(`command exited with ${status} after ${secs(runStart)} s`);
  } catch (e) {
    if (!(e instanceof LabError)) throw e;
    failed = e;
    if (status !== EXIT_TIMEOUT) status = EXIT_LAB_FAILED;
    log(`FAILED: ${e.message}`);
    for (const h of all) log(h.diagnostics());
  } finally {
    for (const h of all) if (h.index > 1) writeFileSync(join(h.dir, 'stop'), '');
    // A dom0 that failed powers off by itself too; one that hangs is killed
    // sooner; an interrupted run kills at once.
    const grace = interrupted ? 0 : failed ? FAILED_SHUTDOWN_GRACE_MS : SHUTDOWN_GRACE_MS;
    await Promise.all(all.map((h) => h.stop(grace)));
    const killed = all.filter((h) => h.killed);
    if (killed.length > 0 && !interrupted) log(`QEMU of host ${killed.map((h) => h.index).join(', ')} did not power off and was killed`);
    process.off('exit', killAll);
    for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.off(sig, onSignal);
    if (keep || failed) {
      log(`run directory kept: ${runDir}`);
    } else {
      rmSync(runDir, { recursive: true, force: true });
    }
    log(`done in ${secs(t0)} s`);
  }
  if (interrupted) return interrupted === 'SIGINT' ? 130 : 143;
  return status;
}
