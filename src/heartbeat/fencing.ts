/**
 * Fencing at a primary's start: it hears its peer before it serves anyone.
 * A peer that runs a newer generation proves this node was failed over
 * from; it must not serve the guest at all, not even for the moment it
 * takes the peer's heartbeat to arrive.
 */
import { setImmediate as turn } from 'node:timers/promises';
import { ErrorCodes, TandemError } from '../errors.js';
import type { HeartbeatChannel } from './channel.js';

export interface FenceNotice {
  ownGeneration: number;
  peerGeneration: number;
}

/**
 * Starts `channel` and waits for the peer's first heartbeat, at most
 * `timeoutMs` (a peer that is down cannot fence us; the arbiter's job).
 * Rejects with FENCED, the channel stopped, when the peer runs a newer
 * generation.
 */
export async function startUnlessFenced(channel: HeartbeatChannel, timeoutMs: number): Promise<void> {
  let fence: FenceNotice | undefined;
  const onFenced = (f: FenceNotice): void => {
    fence = f;
  };
  channel.once('fenced', onFenced);
  let timer: NodeJS.Timeout | undefined;
  try {
    const heard = new Promise<void>((resolve) => channel.once('heartbeat', () => resolve()));
    await channel.start();
    await Promise.race([heard, new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs)))]);
    // A frame that fences us may sit behind the one we heard: let it be handled.
    await turn();
  } finally {
    clearTimeout(timer);
    channel.off('fenced', onFenced);
  }
  if (fence !== undefined) {
    await channel.stop();
    throw new TandemError(ErrorCodes.FENCED, `fenced: a node runs as primary with generation ${fence.peerGeneration} (this one: ${fence.ownGeneration}); not serving the guest`);
  }
}

/** Resolves when `channel` is fenced (a newer generation is heard) from now on. */
export function whenFenced(channel: HeartbeatChannel): Promise<FenceNotice> {
  return new Promise((resolve) => channel.once('fenced', resolve));
}
