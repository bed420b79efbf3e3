// Builds what a Xen lab host boots, from Debian packages, into a cache kept
// between runs (${XEN_LAB_CACHE:-~/.cache/tandem-xen-lab}):
//   debs/       the .debs `apt-get download` fetched (xen-hypervisor-4.17-amd64,
//               linux-image-6.1.0-N-amd64, busybox-static, redis-tools)
//   unpacked/   each .deb unpacked with `dpkg-deb -x` (never installed); the
//               kernel's modules get a modules.dep from busybox's depmod
//   images/     Xen as the ELF QEMU loads, and the dom0 and guest initramfs
//               images, named by a hash of everything they are built from
// Nothing here needs Xen on the host; the dom0 uses the host's installed
// xen-utils-4.17 at run time (dom0-stage2.sh).
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import {
  chmodSync, copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync,
  rmSync, statSync, symlinkSync, utimesSync, writeFileSync,
} from 'node:fs';
import { homedir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { gunzipSync } from 'node:zlib';

export const LIB_DIR = dirname(new URL(import.meta.url).pathname);

// Bumped when the layout of an image changes in a way its inputs' hashes miss.
const IMAGE_FORMAT = 1;

// Modules baked into the dom0 initramfs: just enough to mount the host's root
// over virtio 9p with an overlay. Everything else dom0 loads from the
// unpacked kernel on the host, through that share.
const DOM0_INITRD_MODULES = ['virtio_pci', '9pnet_virtio', '9p', 'overlay'];
// The guest needs its network frontend; its block frontend is built in.
const GUEST_INITRD_MODULES = ['xen-netfront'];

export function cacheDir() {
  return process.env.XEN_LAB_CACHE || join(homedir(), '.cache', 'tandem-xen-lab');
}

export class LabError extends Error {}

function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 << 20, ...opts });
  if (r.error) throw new LabError(`${cmd}: ${r.error.message}`);
  if (r.status !== 0) {
    throw new LabError(`${cmd} ${args.join(' ')} exited with ${r.status ?? r.signal}: ${(r.stderr || r.stdout || '').trim()}`);
  }
  return r.stdout;
}

function tmpName(path) {
  return `${path}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
}

// Writes a file or directory under a temporary name and renames it into place,
// so an interrupted build never leaves a half-made entry that looks complete.
function atomically(path, make) {
  const tmp = tmpName(path);
  try {
    make(tmp);
    try {
      renameSync(tmp, path);
    } catch (err) {
      // A concurrent build made the same entry from the same inputs.
      if (!existsSync(path)) throw err;
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  return path;
}

function isRoot() {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

// The kernel package apt offers now (what linux-image-amd64 depends on), or,
// without usable apt lists, the newest one already in the cache.
export function kernelPackage(cache) {
  if (process.env.XEN_LAB_KERNEL_PKG) return process.env.XEN_LAB_KERNEL_PKG;
  const ask = () => {
    const r = spawnSync('apt-cache', ['depends', 'linux-image-amd64'], { encoding: 'utf8' });
    return /Depends:\s*(linux-image-[0-9][^\s]*-amd64)\s*$/m.exec(r.stdout ?? '')?.[1];
  };
  let pkg = ask();
  if (!pkg && isRoot() && cachedDebs(cache).length === 0) {
    // A fresh machine may have no package lists yet.
    spawnSync('apt-get', ['update'], { stdio: 'ignore' });
    pkg = ask();
  }
  if (pkg) return pkg;
  const cached = cachedDebs(cache).filter((f) => /^linux-image-[0-9].*-amd64_/.test(f)).sort();
  if (cached.length > 0) return cached[cached.length - 1].split('_')[0];
  throw new LabError('cannot tell which linux-image-*-amd64 to use: apt-cache knows no linux-image-amd64 ' +
    '(run apt-get update) and none is cached; or set XEN_LAB_KERNEL_PKG');
}

function cachedDebs(cache) {
  const dir = join(cache, 'debs');
  return existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.deb')) : [];
}

// A package's .deb, from the cache or `apt-get download`. A cached .deb is
// used as it is: the lab pins what it first downloaded until the cache is
// cleared (the kernel is re-resolved, so a new kernel brings a new download).
export function ensureDeb(cache, pkg, log) {
  const dir = join(cache, 'debs');
  mkdirSync(dir, { recursive: true });
  const have = cachedDebs(cache).filter((f) => f.startsWith(`${pkg}_`)).sort();
  if (have.length > 0) return join(dir, have[have.length - 1]);
  log(`downloading ${pkg}`);
  const tmp = tmpName(join(dir, 'download'));
  mkdirSync(tmp);
  try {
    // Sandbox user root: apt's _apt user cannot write into root's cache.
    const args = ['-o', 'APT::Sandbox::User=root', 'download', pkg];
    let r = spawnSync('apt-get', args, { cwd: tmp, encoding: 'utf8' });
    if (r.status !== 0 && isRoot()) {
      // Fresh machines often have no package lists yet.
      log('apt-get download failed; running apt-get update once');
      run('apt-get', ['update'], { stdio: ['ignore', 'ignore', 'pipe'] });
      r = spawnSync('apt-get', args, { cwd: tmp, encoding: 'utf8' });
    }
    if (r.status !== 0) throw new LabError(`apt-get download ${pkg} failed: ${(r.stderr || '').trim()}`);
    const got = readdirSync(tmp).filter((f) => f.endsWith('.deb'));
    if (got.length !== 1) throw new LabError(`apt-get download ${pkg} left ${got.length} .deb files`);
    renameSync(join(tmp, got[0]), join(dir, got[0]));
    return join(dir, got[0]);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

// A .deb unpacked with dpkg-deb -x under unpacked/, named after the .deb.
function unpack(cache, deb, after) {
  const target = join(cache, 'unpacked', basename(deb, '.deb'));
  if (existsSync(target)) return target;
  mkdirSync(dirname(target), { recursive: true });
  return atomically(target, (tmp) => {
    run('dpkg-deb', ['-x', deb, tmp]);
    after?.(tmp);
  });
}

function sha256(...parts) {
  const h = createHash('sha256');
  for (const p of parts) h.update(typeof p === 'string' || Buffer.isBuffer(p) ? p : JSON.stringify(p)).update('\0');
  return h.digest('hex');
}

// Module files for the given names with their dependencies first, in an
// order insmod can load them, from a modules.dep (busybox depmod's format:
// "path: dep dep ..."). Names compare with - and _ alike, as modprobe's do.
export function moduleLoadOrder(modulesDep, names) {
  const deps = new Map();
  const byName = new Map();
  for (const line of modulesDep.split('\n')) {
    const colon = line.indexOf(':');
    if (colon < 0) continue;
    const path = line.slice(0, colon).trim();
    deps.set(path, line.slice(colon + 1).trim().split(/\s+/).filter(Boolean));
    byName.set(basename(path).replace(/\.ko(\.[a-z]+)?$/, '').replace(/-/g, '_'), path);
  }
  const order = [];
  const visit = (path, seen) => {
    if (order.includes(path)) return;
    if (seen.has(path)) throw new LabError(`module dependency cycle at ${path}`);
    seen.add(path);
    for (const d of deps.get(path) ?? []) visit(d, seen);
    order.push(path);
  };
  for (const name of names) {
    const path = byName.get(name.replace(/-/g, '_'));
    if (!path) throw new LabError(`kernel module ${name} not in modules.dep`);
    visit(path, new Set());
  }
  return order;
}

// The shared libraries a dynamic binary loads, as `ldd` lists them on the host.
export function sharedLibraries(binary) {
  const out = run('ldd', [binary]);
  const libs = [];
  for (const line of out.split('\n')) {
    if (/not found/.test(line)) throw new LabError(`${binary}: ${line.trim()} (install the library on the host)`);
    const m = /(?:=>\s*)?(\/\S+)\s+\(0x/.exec(line);
    if (m) libs.push(m[1]);
  }
  return libs;
}

// A newc cpio archive of a directory (uncompressed: the kernel unpacks it
// as is, and gzip would cost seconds under TCG), made with busybox's find
// and cpio so the host needs no cpio package.
function makeCpio(busybox, stage, out) {
  const r = spawnSync('sh', ['-c', 'cd "$1" && "$2" find . | "$2" cpio -o -H newc > "$3"', 'sh', stage, busybox, out],
    { encoding: 'utf8' });
  if (r.status !== 0) throw new LabError(`cpio of ${stage} failed: ${r.stderr.trim()}`);
}

function stageBusybox(stage, busybox) {
  mkdirSync(join(stage, 'bin'), { recursive: true });
  copyFileSync(busybox, join(stage, 'bin', 'busybox'));
  chmodSync(join(stage, 'bin', 'busybox'), 0o755);
  // One relative link per applet, as `busybox --install -s` would make them.
  for (const applet of run(busybox, ['--list']).split('\n').filter(Boolean)) {
    if (applet !== 'busybox') symlinkSync('busybox', join(stage, 'bin', applet));
  }
  for (const d of ['proc', 'sys', 'dev', 'tmp', 'etc']) mkdirSync(join(stage, d), { recursive: true });
}

function stageModules(stage, kernel, names) {
  const modDir = kernel.modules;
  const order = moduleLoadOrder(readFileSync(join(modDir, 'modules.dep'), 'utf8'), names);
  mkdirSync(join(stage, 'modules'), { recursive: true });
  // Numbered so that the init's "for m in /modules/*.ko" loads dependencies first.
  order.forEach((rel, i) => {
    copyFileSync(join(modDir, rel), join(stage, 'modules', `${String(i).padStart(2, '0')}-${basename(rel)}`));
  });
  return order;
}

function initramfs(cache, kind, key, fill, busybox) {
  const dir = join(cache, 'images');
  mkdirSync(dir, { recursive: true });
  const out = join(dir, `${kind}-${key.slice(0, 16)}.cpio`);
  if (existsSync(out)) return out;
  const stage = tmpName(join(dir, `${kind}-stage`));
  try {
    mkdirSync(stage);
    fill(stage);
    atomically(out, (tmp) => makeCpio(busybox, stage, tmp));
  } finally {
    rmSync(stage, { recursive: true, force: true });
  }
  return out;
}

// Entries of the cache unused for this long are removed. Not sooner: other
// checkouts of the project (other inputs, other images) may share the cache.
const PRUNE_AFTER_MS = 7 * 24 * 3600 * 1000;

// Marks what this build uses as used now, and removes what no build used
// for PRUNE_AFTER_MS (an old kernel is 70 MB of .deb and 400 MB unpacked).
function prune(cache, used, log) {
  const now = new Date();
  for (const p of used) utimesSync(p, now, now);
  const keep = new Set(used);
  for (const sub of ['debs', 'unpacked', 'images']) {
    const dir = join(cache, sub);
    if (!existsSync(dir)) continue;
    for (const name of readdirSync(dir)) {
      const p = join(dir, name);
      if (keep.has(p)) continue;
      let age;
      try {
        age = now.getTime() - statSync(p).mtimeMs;
      } catch {
        continue;
      }
      if (age > PRUNE_AFTER_MS) {
        log(`removing ${p} (unused for ${Math.round(age / 86_400_000)} days)`);
        rmSync(p, { recursive: true, force: true });
      }
    }
  }
}

// Everything a lab host and its guest boot. Downloads and builds what the
// cache lacks; returns paths (all on the host, visible in dom0 at the same
// paths through its share of the host's root).
export function buildLab({ log = () => {} } = {}) {
  const cache = cacheDir();
  mkdirSync(cache, { recursive: true });
  if (/[,\s]/.test(cache)) throw new LabError(`cache path ${cache} has a comma or a space, which QEMU's -initrd cannot take`);

  const kernelPkg = kernelPackage(cache);
  const debs = {
    xen: ensureDeb(cache, 'xen-hypervisor-4.17-amd64', log),
    kernel: ensureDeb(cache, kernelPkg, log),
    busybox: ensureDeb(cache, 'busybox-static', log),
    redis: ensureDeb(cache, 'redis-tools', log),
  };

  const busyboxRoot = unpack(cache, debs.busybox);
  const busybox = join(busyboxRoot, 'bin', 'busybox');
  const kernelRoot = unpack(cache, debs.kernel, (tmp) => {
    const versions = readdirSync(join(tmp, 'lib', 'modules'));
    if (versions.length !== 1) throw new LabError(`${debs.kernel} has ${versions.length} module trees`);
    log(`depmod ${versions[0]}`);
    run(busybox, ['depmod', '-b', tmp, versions[0]]);
  });
  const kver = readdirSync(join(kernelRoot, 'lib', 'modules'))[0];
  const kernel = {
    version: kver,
    vmlinuz: join(kernelRoot, 'boot', `vmlinuz-${kver}`),
    modules: join(kernelRoot, 'lib', 'modules', kver),
  };

  const xenRoot = unpack(cache, debs.xen);
  const xenGz = readdirSync(join(xenRoot, 'boot')).find((f) => /^xen-4\.17.*\.gz$/.test(f));
  if (!xenGz) throw new LabError(`no boot/xen-4.17*.gz in ${debs.xen}`);
  // QEMU's multiboot loader takes Xen's ELF image, not the gzipped one.
  const xen = join(cache, 'images', `${basename(debs.xen, '.deb')}.elf`);
  if (!existsSync(xen)) {
    mkdirSync(dirname(xen), { recursive: true });
    atomically(xen, (tmp) => writeFileSync(tmp, gunzipSync(readFileSync(join(xenRoot, 'boot', xenGz)))));
  }

  const dom0Init = readFileSync(join(LIB_DIR, 'dom0-init.sh'));
  const dom0Key = sha256(IMAGE_FORMAT, basename(debs.kernel), basename(debs.busybox), DOM0_INITRD_MODULES, dom0Init);
  const dom0Initrd = initramfs(cache, 'dom0', dom0Key, (stage) => {
    stageBusybox(stage, busybox);
    stageModules(stage, kernel, DOM0_INITRD_MODULES);
    writeFileSync(join(stage, 'init'), dom0Init, { mode: 0o755 });
  }, busybox);

  // redis-server is redis-check-rdb under another name (Debian's
  // redis-server package only links it); its libraries come from the host
  // (redis-tools is one of the test packages, so they are installed).
  const redisRoot = unpack(cache, debs.redis);
  const redisBin = join(redisRoot, 'usr', 'bin', 'redis-check-rdb');
  const libs = sharedLibraries(redisBin);
  const guestInit = readFileSync(join(LIB_DIR, 'guest-init.sh'));
  const guestKey = sha256(IMAGE_FORMAT, basename(debs.kernel), basename(debs.busybox), basename(debs.redis),
    GUEST_INITRD_MODULES, guestInit, libs.map((l) => [l, sha256(readFileSync(l))]));
  const guestInitrd = initramfs(cache, 'guest', guestKey, (stage) => {
    stageBusybox(stage, busybox);
    stageModules(stage, kernel, GUEST_INITRD_MODULES);
    copyFileSync(redisBin, join(stage, 'bin', 'redis-server'));
    chmodSync(join(stage, 'bin', 'redis-server'), 0o755);
    for (const lib of libs) {
      // Copied (symlinks followed) to the path the loader looks for.
      mkdirSync(join(stage, dirname(lib)), { recursive: true });
      copyFileSync(lib, join(stage, lib));
    }
    writeFileSync(join(stage, 'init'), guestInit, { mode: 0o755 });
  }, busybox);

  for (const p of [xen, kernel.vmlinuz, dom0Initrd, guestInitrd]) {
    if (statSync(p).size === 0) throw new LabError(`${p} is empty`);
  }
  prune(cache, [...Object.values(debs), busyboxRoot, kernelRoot, xenRoot, redisRoot, xen, dom0Initrd, guestInitrd], log);
  return { cache, debs, busybox, kernel, xen, dom0Initrd, guestInitrd };
}
