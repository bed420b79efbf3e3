/**
 * libxc's half of a save, for a real Xen domain: Xen's own save code, run by
 * libxl-save-helper (save-helper.ts), behind Tandem's LibxcSaver seam
 * (src/domain/types.ts). The helper's callbacks become the engine's:
 *
 *   helper suspend     → callbacks.suspend()    (the engine suspends the domain, runs postsuspend)
 *   helper postcopy    → callbacks.postcopy()   (the guest runs again)
 *   helper checkpoint  → callbacks.checkpoint() (libxl's records, the secondary's ack, commit; it
 *                        returns when the next epoch is due, and says whether there is one)
 *
 * The libxc bytes the helper writes into its io_fd are passed on into the
 * stream untouched, as fast as they come (the guest is suspended while libxc
 * copies its pages into the fd). The helper's checkpoint message and those
 * bytes travel on different channels, so the checkpoint callback first waits
 * for the epoch's CHECKPOINT record to have arrived (LibxcFramer).
 *
 * A Remus stream told to stop ends without a libxc END (libxc writes none);
 * the session then ends the stream at that checkpoint.
 */
import type { LibxcOutput, LibxcSaver, SaveCallbacks, SaveParameters } from '../types.js';
import type { Logger } from '../../util/logger.js';
import { SaveHelperError, SaveHelperErrorCodes as C, XenError, XenErrorCodes } from './errors.js';
import { LibxcFramer } from './libxc-framer.js';
import { startSave, type SaveHelperOptions } from './save-helper.js';

export interface XenSaverOptions {
  domid: number;
  logger: Logger;
  /** The save helper's own options (a test's stand-in). */
  helper?: Pick<SaveHelperOptions, 'helperPath' | 'command' | 'maxBufferedBytes'>;
}

export class XenSaver implements LibxcSaver {
  constructor(private readonly options: XenSaverOptions) {}

  async save(out: LibxcOutput, params: SaveParameters, callbacks: SaveCallbacks): Promise<void> {
    if (params.type === 'colo') throw new XenError(XenErrorCodes.XEN_SAVE_FAILED, 'COLO is not built for Xen domains (Debian\'s libxl has none either)');
    // Xen 4.17's libxc writes stream version 3; the session's encoder only frames it.
    if (params.version !== 3) throw new XenError(XenErrorCodes.XEN_SAVE_FAILED, `Xen 4.17 writes libxc stream version 3, not ${params.version}`);
    const { domid, logger } = this.options;
    // Page counts of the checkpoints whose CHECKPOINT record has been passed on, not yet handed to the engine (in order: both sides count the same checkpoints).
    const arrived: number[] = [];
    let onArrival: (() => void) | undefined;
    const framer = new LibxcFramer({
      onCheckpoint: (_n, pages) => {
        arrived.push(pages);
        onArrival?.();
      },
    });
    let streamEnded!: () => void;
    const ended = new Promise<void>((resolve) => (streamEnded = resolve));
    let answered = 0;
    // libxc decides its live rounds itself and tells them only as progress steps ("done of total" pages of the round
    // under way); a count that falls back, or a new total, is the next round. Told until the first suspend.
    const live = { on: true, round: 1, done: -1, total: -1 };
    const onProgress = (p: { doingWhat: string; done: bigint; total: bigint }): void => {
      if (!live.on || p.total <= 0n || p.total > 2n ** 40n || p.done > p.total) return;
      const [done, total] = [Number(p.done), Number(p.total)];
      if (live.done >= 0 && (done < live.done || total !== live.total)) live.round++;
      live.done = done;
      live.total = total;
      callbacks.precopyProgress?.({ iteration: live.round, sent: done, total });
    };
    const driver = startSave({
      ...this.options.helper,
      domid,
      streamType: params.type,
      live: params.type === 'remus',
      handlers: {
        suspend: () => {
          live.on = false;
          return callbacks.suspend();
        },
        // No device model for PV and PVH guests: nothing to switch (libxc asks for PVH too).
        switchQemuLogdirty: () => Promise.resolve(),
        postcopy: async () => {
          await callbacks.postcopy();
          return 'continue';
        },
        checkpoint: async () => {
          answered++;
          while (arrived.length === 0) {
            const more = await Promise.race([new Promise<boolean>((resolve) => (onArrival = () => resolve(true))), ended.then(() => false)]);
            if (!more && arrived.length === 0) throw new SaveHelperError(C.SAVE_HELPER_BAD_MESSAGE, `the helper called checkpoint ${answered}, but its stream ended before that checkpoint's CHECKPOINT record`);
          }
          return (await callbacks.checkpoint({ pages: arrived.shift()! })) ? 'continue' : 'stop';
        },
      },
      onLog: (e) => logger.debug({ level: e.levelName, context: e.context }, `save helper: ${e.text}`),
      onProgress,
    });
    const drained = (async () => {
      try {
        for await (const chunk of driver.stream!) {
          const c = chunk as Buffer;
          framer.push(c);
          out.write([c]);
          await out.flush();
        }
      } finally {
        streamEnded();
      }
    })();
    // A stream that cannot be passed on (the link failed) stops the helper too; `done` then says so.
    drained.catch((err: unknown) => driver.abort(`the stream could not be passed on: ${err instanceof Error ? err.message : String(err)}`));
    const outcome = await driver.done;
    await drained;
    if (outcome.retval !== 0) throw new XenError(XenErrorCodes.XEN_SAVE_FAILED, `Xen's save helper completed with retval ${outcome.retval} (errno ${outcome.errno}): ${outcome.lastLogs.slice(-3).join(' | ')}`);
  }
}
