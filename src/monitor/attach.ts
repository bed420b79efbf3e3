/**
 * Where a node shows itself: the process's monitor. A node that runs alone
 * starts its own (ownMonitor, ./wire.ts); a process that runs several
 * domains starts one and hands it to every node, so one monitor lists them
 * all. A node only attaches its source under its domain's name and detaches
 * it when it stops: it never knows which of the two it was given.
 */
import type { MonitorSource } from './source.js';

/** Takes the source off the monitor again (and stops what attach started for it). */
export type Detach = () => Promise<void>;

export interface MonitorAttach {
  /** Shows `source` under the domain's name until the returned function is called. */
  attach(domain: string, source: MonitorSource): Promise<Detach>;
}
