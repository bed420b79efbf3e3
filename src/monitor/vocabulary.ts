/**
 * The one vocabulary of states: what the monitor shows (events, /metrics,
 * the dashboard, `tandem status`) is what the logs say. The engine and the
 * replica keep their own state machines; these name their states for
 * people, in one place, so a log line and a dashboard never disagree.
 */
import type { ProtectionState } from '../checkpoint/engine.js';
import type { ReplicaState } from '../secondary/receiver.js';
import type { MonitorState } from './events.js';

/** A primary's protection state as shown: a pre-copy after protection was lost is a re-protection. */
export function primaryStateName(state: ProtectionState, wasProtected: boolean): MonitorState {
  return state === 'precopy' && wasProtected ? 're-protecting' : state;
}

const REPLICA_STATE: Record<ReplicaState, MonitorState> = { idle: 'waiting', syncing: 'syncing', protected: 'standby' };

/** A secondary's replica state as shown: waiting for a primary, syncing its pre-copy, standing by with a checkpoint. */
export function replicaStateName(state: ReplicaState): MonitorState {
  return REPLICA_STATE[state];
}
