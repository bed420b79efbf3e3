/**
 * Suspending a PV or PVH guest the way libxl does (docs/xen.md, "Suspend"):
 * ask through xenstore, wait for the guest to acknowledge, then wait for the
 * hypervisor to report the domain shut down for suspend.
 *
 * - The request: `suspend` written to /local/domain/ID/control/shutdown. The
 *   guest acknowledges by changing the node (another value, or removing it).
 *   A guest that never does is not suspending: the request is withdrawn in a
 *   transaction (only if it still reads `suspend`, so an acknowledgement that
 *   races the withdrawal wins) and the suspend fails.
 * - The confirmation: the domain's shutdown flag with reason suspend, looked
 *   at on every @releaseDomain event (xenstored fires it when any domain's
 *   state changes; per-domain watches are not implemented in 4.17) and, as a
 *   floor, every `pollMs`.
 */
import { XenError, XenErrorCodes as C } from './errors.js';
import { SHUTDOWN_SUSPEND, type DomainInfo } from './xc.js';
import type { XenstoreClient, XenstoreWatch } from './xenstore.js';
import { XenstoreErrorCodes } from './errors.js';

export interface SuspendOptions {
  /** How long the guest has to acknowledge the request (libxl: 60 s). */
  ackTimeoutMs?: number;
  /** How long, after that, the domain has to shut down for suspend (libxl: 60 s). */
  suspendTimeoutMs?: number;
  /** The floor under the @releaseDomain watch (default 100 ms). */
  pollMs?: number;
}

const DEFAULTS = { ackTimeoutMs: 60_000, suspendTimeoutMs: 60_000, pollMs: 100 };

/** Waits until `test` is true, looking whenever `kick` is called and every `pollMs`; rejects with `onTimeout()` after `timeoutMs`. */
function waitFor(test: () => Promise<boolean>, timeoutMs: number, pollMs: number, onTimeout: () => Error): { kick: () => void; done: Promise<void> } {
  let kick: () => void = () => undefined;
  const done = new Promise<void>((resolve, reject) => {
    let looking = false;
    let again = false;
    let over = false;
    const finish = (err?: unknown): void => {
      if (over) return;
      over = true;
      clearTimeout(deadline);
      clearInterval(poll);
      if (err === undefined) resolve();
      else reject(err instanceof Error ? err : new Error("suspend failed", { cause: err }));
    };
    const look = (): void => {
      if (over) return;
      if (looking) {
        again = true;
        return;
      }
      looking = true;
      test().then(
        (yes) => {
          looking = false;
          if (yes) finish();
          else if (again) {
            again = false;
            look();
          }
        },
        (err: unknown) => finish(err),
      );
    };
    const deadline = setTimeout(() => finish(onTimeout()), timeoutMs);
    const poll = setInterval(look, pollMs);
    kick = look;
    look();
  });
  return { kick: () => kick(), done };
}

/** Suspends domain `domid`; resolves once the hypervisor reports it shut down for suspend. */
export async function suspendDomain(xs: XenstoreClient, xc: { info(domid: number): Promise<DomainInfo | undefined> }, domid: number, options: SuspendOptions = {}): Promise<void> {
  const o = { ...DEFAULTS, ...options };
  const node = `/local/domain/${domid}/control/shutdown`;
  const acked = async (): Promise<boolean> => {
    try {
      return (await xs.read(node)).toString('latin1') !== 'suspend';
    } catch (err) {
      if ((err as { code?: string }).code === XenstoreErrorCodes.XENSTORE_NOENT) return true;
      throw err;
    }
  };
  // Both watches before the request, registered together, and let go without waiting for xenstored's
  // answer: the guest is about to stop, and every round trip here is part of its pause.
  let ack: ReturnType<typeof waitFor> | undefined = undefined;
  let down: ReturnType<typeof waitFor> | undefined = undefined;
  const watches = await Promise.allSettled([xs.watch(node, () => ack?.kick()), xs.watch('@releaseDomain', () => down?.kick())]);
  const failed = watches.find((w) => w.status === 'rejected');
  if (failed !== undefined) {
    for (const w of watches) if (w.status === 'fulfilled') void w.value.unwatch().catch(() => undefined);
    throw failed.reason;
  }
  const [watch, release] = watches.map((w) => (w as PromiseFulfilledResult<XenstoreWatch>).value);
  try {
    // The waiting after the request: the node reads as acknowledged (empty, or absent) until the
    // request is written, and an acknowledgement right after it is not missed (the waiting starts
    // with a read).
    await xs.write(node, 'suspend');
    ack = waitFor(acked, o.ackTimeoutMs, o.pollMs, () => new XenError(C.XEN_SUSPEND_FAILED, `domain ${domid} did not acknowledge the suspend request within ${o.ackTimeoutMs} ms (${node} still reads "suspend")`));
    ack.done.catch(() => undefined);
    try {
      await ack.done;
    } catch (err) {
      await withdraw(xs, node).catch(() => undefined);
      throw err;
    }
    let last: DomainInfo | undefined;
    const suspended = async (): Promise<boolean> => {
      last = await xc.info(domid);
      if (last === undefined || last.dying) throw new XenError(C.XEN_NO_DOMAIN, `domain ${domid} went away while suspending`);
      if (last.shutdown && last.shutdownReason !== SHUTDOWN_SUSPEND) throw new XenError(C.XEN_SUSPEND_FAILED, `domain ${domid} shut down for reason ${last.shutdownReason}, not for suspend (${SHUTDOWN_SUSPEND})`);
      return last.shutdown;
    };
    // Its first look is at once: a guest that suspended before this line is not waited for.
    down = waitFor(suspended, o.suspendTimeoutMs, o.pollMs, () => new XenError(C.XEN_SUSPEND_FAILED, `domain ${domid} acknowledged the suspend request but did not suspend within ${o.suspendTimeoutMs} ms (state ${JSON.stringify(last)})`));
    down.done.catch(() => undefined);
    await down.done;
  } finally {
    void watch.unwatch().catch(() => undefined);
    void release.unwatch().catch(() => undefined);
  }
}

/** Takes a suspend request back, unless the guest acknowledged it meanwhile. */
async function withdraw(xs: XenstoreClient, node: string): Promise<void> {
  await xs.transaction(async (tx) => {
    const v = await xs.read(node, { tx }).catch(() => undefined);
    if (v?.toString('latin1') === 'suspend') await xs.write(node, '', { tx });
  });
}
