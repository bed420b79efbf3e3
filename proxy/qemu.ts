/**
 * Runs QEMU's colo-compare standalone (Debian `qemu-system-x86`, no guest:
 * `-machine none`) as a peer for the differential test and the benchmark.
 * Its four chardevs are listening sockets on free loopback ports.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:net';
import { canConnect } from '../src/util/net.js';
import type { ComparatorAddresses } from './client.js';

export const QEMU_BINARY = 'qemu-system-x86_64';

export interface ColoCompareOptions {
  compareTimeoutMs?: number;
  expiredScanCycleMs?: number;
  maxQueueSize?: number;
  vnetHdr?: boolean;
}

/** True when the QEMU binary runs here. */
export function qemuAvailable(): boolean {
  const r = spawnSync(QEMU_BINARY, ['--version'], { encoding: 'utf8' });
  return r.status === 0;
}

async function freePort(): Promise<number> {
  const s = createServer();
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

export class ColoCompareProcess {
  readonly addresses: ComparatorAddresses;
  private constructor(
    private readonly child: ChildProcess,
    ports: number[],
    readonly stderr: () => string,
  ) {
    const a = (port: number): { host: string; port: number } => ({ host: '127.0.0.1', port });
    this.addresses = { primaryIn: a(ports[0]), secondaryIn: a(ports[1]), outdev: a(ports[2]), notify: a(ports[3]) };
  }

  /**
   * Starts QEMU and resolves once its notify socket accepts connections (it
   * opens the chardevs before creating colo-compare). Note: a chardev
   * socket serves one client; probing the notify port uses it up briefly,
   * and QEMU takes the next client after the probe closes.
   */
  static async start(o: ColoCompareOptions = {}): Promise<ColoCompareProcess> {
    // A free port is free when looked up, not necessarily when QEMU binds it (another process may take
    // it in between, on a busy machine): a bind failure is tried again on new ports, a few times.
    for (let attempt = 1; ; attempt++) {
      try {
        return await ColoCompareProcess.startOnce(o);
      } catch (err) {
        if (attempt >= 4 || !/Address already in use/.test((err as Error).message)) throw err;
      }
    }
  }

  private static async startOnce(o: ColoCompareOptions): Promise<ColoCompareProcess> {
    const ports = [await freePort(), await freePort(), await freePort(), await freePort()];
    const dev = (id: string, port: number): string[] => ['-chardev', `socket,id=${id},host=127.0.0.1,port=${port},server=on,wait=off`];
    const props = [
      'colo-compare,id=cc0,primary_in=pri,secondary_in=sec,outdev=out,iothread=iot0,notify_dev=nfy',
      `compare_timeout=${o.compareTimeoutMs ?? 3000}`,
      `expired_scan_cycle=${o.expiredScanCycleMs ?? 1000}`,
      `max_queue_size=${o.maxQueueSize ?? 1024}`,
      `vnet_hdr_support=${o.vnetHdr ? 'on' : 'off'}`,
    ].join(',');
    const args = [
      '-machine', 'none', '-nodefaults', '-display', 'none',
      '-object', 'iothread,id=iot0',
      ...dev('pri', ports[0]), ...dev('sec', ports[1]), ...dev('out', ports[2]), ...dev('nfy', ports[3]),
      '-object', props,
    ];
    const child = spawn(QEMU_BINARY, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const exited = once(child, 'exit').then(() => {
      throw new Error(`${QEMU_BINARY} exited: ${err.trim()}`);
    });
    exited.catch(() => {});
    // The chardevs listen before colo-compare is created; the notify one is created last.
    for (;;) {
      const up = await Promise.race([canConnect('127.0.0.1', ports[3]), exited]);
      if (up) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    return new ColoCompareProcess(child, ports, () => err);
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const gone = once(this.child, 'exit');
    this.child.kill('SIGTERM');
    await gone;
  }
}
