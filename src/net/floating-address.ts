/**
 * The floating service address (`floating_address:`, docs/failover.md): an
 * IP address that moves with the guest. The node that serves adds it to
 * its interface and announces it, so that the hosts and routers of the
 * segment send the service's traffic to this node's MAC at once rather
 * than when their neighbour entries for the old one expire; a node that
 * stops serving removes it.
 *
 * Everything goes through the host's own tools, run without a shell
 * (execFile): iproute2's `ip` adds and removes the address; IPv4 is
 * announced with unsolicited ARP requests by iputils' `arping -U` (Debian
 * package iputils-arping), IPv6 with unsolicited neighbour advertisements
 * (override flag set) by `na6` (Debian package ipv6toolkit). IPv6
 * addresses are added with `nodad`: duplicate address detection would keep
 * the address tentative (unusable: the service cannot bind it) for a
 * second, and would fail it for good if the old node's host still held it
 * (a killed process leaves the address behind). The kernel's own
 * `ndisc_notify` sends its unsolicited advertisement only once DAD
 * completes, never for a `nodad` address, so it cannot stand in for na6.
 *
 * Operations are serialized: a take and a release never interleave, and a
 * release first stops the announcements still going, so nothing announces
 * an address this node no longer has.
 */
import { execFile } from 'node:child_process';
import { access, constants } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { readPrefixedAddress, type FloatingAddressConfig, type PrefixedAddress } from '../config/role-change.js';
import { ErrorCodes, TandemError } from '../errors.js';
import type { Logger } from '../util/logger.js';

/** One run of a tool: its stdout, or a rejection whose message names it (exit status, stderr). */
export type ToolRunner = (file: string, args: readonly string[], options: { timeoutMs: number; signal?: AbortSignal }) => Promise<string>;

export class FloatingAddressError extends TandemError<typeof ErrorCodes.FLOATING_ADDRESS_FAILED> {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCodes.FLOATING_ADDRESS_FAILED, message, options);
  }

  override get name(): string {
    return 'FloatingAddressError';
  }
}

export interface FloatingAddressOptions {
  config: FloatingAddressConfig;
  logger: Logger;
  /** How tools are run (default: execFile, no shell). */
  run?: ToolRunner;
}

/** Between two announcements: arping's own interval (it takes whole seconds only). */
const ANNOUNCE_INTERVAL_MS = 1000;

/** `ip` of one change or one read: a loaded host still answers in well under this. */
const IP_TIMEOUT_MS = 10_000;
/** The most of a tool's output kept. */
const MAX_TOOL_OUTPUT = 1 << 20;
/** Where Debian puts the tools, searched after PATH (a service's PATH may lack the sbin directories). */
const SYSTEM_DIRS = ['/usr/sbin', '/sbin', '/usr/bin', '/bin'];

/**
 * execFile, no shell. An abort kills the tool and settles only once it has
 * exited (execFile's own `signal` settles at once, with the tool perhaps
 * still sending): a release must know its announcer is gone.
 */
export const runTool: ToolRunner = (file, args, options) =>
  new Promise((resolve, reject) => {
    const abort = (): void => void child.kill('SIGKILL');
    const child = execFile(file, args, { timeout: options.timeoutMs, maxBuffer: MAX_TOOL_OUTPUT, encoding: 'utf8', killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
      options.signal?.removeEventListener('abort', abort);
      if (err === null) return resolve(stdout);
      const e = err as Error & { killed?: boolean; code?: unknown };
      const said = stderr.trim().split('\n').slice(-2).join(' | ');
      const why = options.signal?.aborted === true ? 'stopped' : e.killed === true ? `killed after ${options.timeoutMs} ms` : typeof e.code === 'number' ? `exit status ${e.code}` : e.message;
      reject(new Error(`${file} ${args.join(' ')}: ${why}${said === '' ? '' : `: ${said}`}`, { cause: err }));
    });
    if (options.signal?.aborted === true) abort();
    else options.signal?.addEventListener('abort', abort, { once: true });
  });

/** The first executable `name` in PATH or the system's tool directories, or undefined. */
export async function locateTool(name: string, path = process.env.PATH ?? ''): Promise<string | undefined> {
  const dirs = [...path.split(':').filter((d) => d.startsWith('/')), ...SYSTEM_DIRS];
  for (const dir of new Set(dirs)) {
    const file = join(dir, name);
    try {
      await access(file, constants.X_OK);
      return file;
    } catch {
      // not here
    }
  }
  return undefined;
}

interface IpAddrInfo {
  local?: string;
  prefixlen?: number;
}

export class FloatingAddress {
  private ip = 'ip';
  private announcer = '';
  private held = false;
  private queue: Promise<unknown> = Promise.resolve();
  private announcing: AbortController | undefined;
  private announced: Promise<void> = Promise.resolve();

  constructor(private readonly options: FloatingAddressOptions) {}

  /** `10.0.0.100/24 on eth0`, for logs and hooks. */
  get description(): string {
    const c = this.options.config;
    return `${c.address} on ${c.interface}`;
  }

  /** The configured address, taken apart (the schema let only a valid one through). */
  private get address(): PrefixedAddress {
    const read = readPrefixedAddress(this.options.config.address);
    if (typeof read === 'string') throw new FloatingAddressError(`floating_address.address: ${read}`);
    return read;
  }

  /** Whether this node added the address and has not removed it since. */
  get holding(): boolean {
    return this.held;
  }

  /**
   * Finds the tools and checks that the interface exists, so that a typo or
   * a missing package stops the node at start, not at its failover.
   */
  async start(): Promise<void> {
    const c = this.options.config;
    const family = this.address.family;
    const [ip, announcer] = await Promise.all([locateTool('ip'), locateTool(family === 4 ? 'arping' : 'na6')]);
    if (ip === undefined) throw new FloatingAddressError('floating_address: `ip` not found (Debian package iproute2)');
    if (announcer === undefined) {
      throw new FloatingAddressError(
        family === 4 ? 'floating_address: `arping` not found (Debian package iputils-arping): an IPv4 address is announced with it' : 'floating_address: `na6` not found (Debian package ipv6toolkit): an IPv6 address is announced with it',
      );
    }
    this.ip = ip;
    this.announcer = announcer;
    try {
      await this.run(this.ip, ['-j', 'link', 'show', 'dev', c.interface], IP_TIMEOUT_MS);
    } catch (err) {
      throw new FloatingAddressError(`floating_address.interface: no interface ${c.interface} here (${(err as Error).message})`, { cause: err });
    }
  }

  /** Adds the address (unless it is there) and announces it in the background. Throws if it cannot be added. */
  take(reason: string): Promise<void> {
    return this.serialized(async () => {
      const c = this.options.config;
      const { logger } = this.options;
      if (!(await this.present())) {
        const args = ['addr', 'add', c.address, 'dev', c.interface];
        if (this.address.family === 6) args.push('nodad');
        try {
          await this.run(this.ip, args, IP_TIMEOUT_MS);
        } catch (err) {
          throw new FloatingAddressError(`cannot take the floating address ${this.description}: ${(err as Error).message}`, { cause: err });
        }
      }
      this.held = true;
      logger.warn({ floatingAddress: this.description, reason }, `floating address ${this.description} taken (${reason})`);
      // One announcer at a time: a take while announcing starts the round again.
      await this.quiet();
      this.announce();
    });
  }

  /** Stops the announcements, then removes the address if it is there. Throws if it cannot be removed. */
  release(reason: string): Promise<void> {
    return this.serialized(async () => {
      await this.quiet();
      const c = this.options.config;
      if (!(await this.present())) {
        if (this.held) this.options.logger.warn({ floatingAddress: this.description, reason }, `floating address ${this.description} was already gone (${reason})`);
        this.held = false;
        return;
      }
      try {
        await this.run(this.ip, ['addr', 'del', c.address, 'dev', c.interface], IP_TIMEOUT_MS);
      } catch (err) {
        throw new FloatingAddressError(`cannot remove the floating address ${this.description}: ${(err as Error).message}`, { cause: err });
      }
      this.held = false;
      this.options.logger.warn({ floatingAddress: this.description, reason }, `floating address ${this.description} removed (${reason})`);
    });
  }

  /** Stops announcing; the address stays as it is (the node decides whether to release it first). */
  async stop(): Promise<void> {
    await this.quiet();
  }

  private serialized<T>(op: () => Promise<T>): Promise<T> {
    const next = this.queue.then(op, op);
    this.queue = next.catch(() => {});
    return next;
  }

  private run(file: string, args: readonly string[], timeoutMs: number, signal?: AbortSignal): Promise<string> {
    return (this.options.run ?? runTool)(file, args, { timeoutMs, signal });
  }

  /** Whether the interface has the address, with its prefix, now. */
  private async present(): Promise<boolean> {
    const c = this.options.config;
    let text: string;
    try {
      text = await this.run(this.ip, ['-j', 'addr', 'show', 'dev', c.interface], IP_TIMEOUT_MS);
    } catch (err) {
      throw new FloatingAddressError(`cannot read the addresses of ${c.interface}: ${(err as Error).message}`, { cause: err });
    }
    let links: { addr_info?: IpAddrInfo[] }[];
    try {
      links = JSON.parse(text) as { addr_info?: IpAddrInfo[] }[];
    } catch (err) {
      throw new FloatingAddressError(`cannot read the addresses of ${c.interface}: \`ip -j addr\` printed no JSON`, { cause: err });
    }
    const { address, prefix } = this.address;
    return links.some((l) => (l.addr_info ?? []).some((a) => typeof a.local === 'string' && a.local.toLowerCase() === address && a.prefixlen === prefix));
  }

  /** The announcements, one a second, in the background; the old node's neighbours learn the new MAC from them. */
  private announce(): void {
    const c = this.options.config;
    const { logger } = this.options;
    const abort = new AbortController();
    this.announcing = abort;
    const count = c.announceCount;
    const intervalMs = ANNOUNCE_INTERVAL_MS;
    const { address: addr, family } = this.address;
    const sent = async (): Promise<void> => {
      if (family === 4) {
        // -U: unsolicited ARP requests whose sender and target are the address itself (RFC 5227's announcement).
        await this.run(this.announcer, ['-U', '-c', String(count), '-I', c.interface, addr], count * intervalMs + 5000, abort.signal);
        return;
      }
      for (let i = 0; i < count; i++) {
        if (i > 0) await sleep(intervalMs, undefined, { signal: abort.signal });
        // To all nodes, override flag set, our MAC as the target link-layer address: neighbours replace the old one.
        await this.run(this.announcer, ['-i', c.interface, '-s', addr, '-d', 'ff02::1', '-t', addr, '-o', '-e'], 5000, abort.signal);
      }
    };
    const what = family === 4 ? 'unsolicited ARP' : 'unsolicited neighbour advertisement';
    this.announced = sent().then(
      () => logger.info({ floatingAddress: this.description, count }, `floating address ${this.description} announced (${count} ${what}${count > 1 ? 's' : ''})`),
      (err: unknown) => {
        if (abort.signal.aborted) return;
        // The address is held all the same: neighbours find it by ARP/ND when their old entry fails.
        logger.error({ err: new FloatingAddressError(`announcing the floating address ${this.description} failed: ${(err as Error).message}`, { cause: err }) }, `announcing the floating address ${this.description} failed: ${(err as Error).message}`);
      },
    );
  }

  private async quiet(): Promise<void> {
    this.announcing?.abort();
    this.announcing = undefined;
    await this.announced;
  }
}

/** The configuration's floating address, if there is one. */
export function floatingAddressFor(config: FloatingAddressConfig | undefined, logger: Logger): FloatingAddress | undefined {
  return config === undefined ? undefined : new FloatingAddress({ config, logger });
}
