/**
 * /healthz and /readyz, as a load balancer or an orchestrator asks them.
 * Health: the process runs and its monitor loop answers (the request got
 * here) with its source attached. Readiness: the node does what it is there
 * for: a primary whose guest is protected, a secondary standing by with a
 * complete checkpoint, or a secondary that failed over and now runs the
 * guest. Anything else is not ready, and the answer says why.
 */
import type { MonitorState, NodeRole } from './events.js';

export interface Readiness {
  ready: boolean;
  node: NodeRole;
  state: MonitorState;
  /** Why, in a sentence: the state's own reason, after what it means here. */
  reason: string;
}

/** Per role, the states that are ready and what each one means; every other state is not ready. */
const READY: Record<NodeRole, Partial<Record<MonitorState, string>>> = {
  primary: { protected: 'the guest is protected' },
  secondary: { standby: 'standing by with a complete checkpoint', 'failed-over': 'serving the guest after a failover' },
};

const NOT_READY: Partial<Record<MonitorState, string>> = {
  stopped: 'protection is stopped',
  connecting: 'connecting to the secondary: the guest is unprotected',
  precopy: 'syncing the standby (pre-copy): the guest is unprotected until it ends',
  're-protecting': 'syncing a new standby (pre-copy): the guest is unprotected until it ends',
  degraded: 'the standby is lost: the guest is unprotected',
  stopping: 'protection is stopping',
  waiting: 'no primary is streaming: there is no replica to fail over to',
  syncing: 'a primary is streaming its pre-copy: the replica holds no complete checkpoint yet',
  'failing-over': 'failing over: the guest is not served here yet',
};

export function readiness(node: NodeRole, state: MonitorState, reason: string): Readiness {
  const ready = READY[node][state];
  if (ready !== undefined) return { ready: true, node, state, reason: `${ready} (${reason})` };
  return { ready: false, node, state, reason: `${NOT_READY[state] ?? `${state} is not a state a ${node} serves in`} (${reason})` };
}
