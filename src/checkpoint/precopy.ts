/**
 * When to stop the live pre-copy and take the first checkpoint. Xen's
 * default stops after 5 rounds or when fewer than 50 pages are dirty; Tandem
 * also stops when the dirty set stops shrinking (the guest dirties pages as
 * fast as they are sent, so more rounds only cost bandwidth).
 */
import type { PrecopyDecision, PrecopyStats } from '../domain/types.js';

export interface PrecopyOptions {
  /** Stop when at most this many pages are dirty. */
  targetDirtyPages: number;
  /** Stop after this many rounds whatever the dirty set. */
  maxIterations: number;
  /** Stop when a round leaves at least this fraction of what it sent dirty again (1 = not shrinking). */
  shrinkRatio: number;
}

export const DEFAULT_PRECOPY: PrecopyOptions = { targetDirtyPages: 50, maxIterations: 5, shrinkRatio: 1 };

export function precopyPolicy(options: PrecopyOptions = DEFAULT_PRECOPY): (stats: PrecopyStats) => PrecopyDecision {
  return (stats) => {
    if (stats.dirtyCount <= options.targetDirtyPages) return 'stop-and-copy';
    if (stats.iteration >= options.maxIterations) return 'stop-and-copy';
    if (stats.iteration > 1 && stats.dirtyCount >= stats.sentLast * options.shrinkRatio) return 'stop-and-copy';
    return 'continue';
  };
}
