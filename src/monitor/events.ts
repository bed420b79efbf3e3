/**
 * The monitor's event schema, version 1 (docs/monitoring.md is its prose
 * twin; keep them in step). Every message a monitor sends is one JSON object
 * with an envelope (`v`, `type`, `ts`, `node`) and the fields of its type.
 *
 * Compatibility rule: new fields and new types may appear within a version;
 * a client ignores what it does not know. Removing or retyping a field, or
 * changing its meaning, bumps SCHEMA_VERSION.
 *
 * validateEvent() is the one reading of the schema: tests use it on every
 * event type, and `tandem watch` uses it on everything it receives.
 */
import type { ArbiterView } from '../arbiter/arbiter.js';
import type { PrecopyProgress } from '../checkpoint/precopy-progress.js';
import { MonitorError, MonitorErrorCodes } from './errors.js';

export const SCHEMA_VERSION = 1;

export const PRIMARY_STATES = [
  'stopped',
  'connecting',
  'precopy',
  /** A fresh pre-copy after the standby was lost. */
  're-protecting',
  'protected',
  'degraded',
  'stopping',
] as const;

export const SECONDARY_STATES = [
  /** No primary is streaming. */
  'waiting',
  /** A primary streams; its first checkpoint is not complete yet. */
  'syncing',
  /** The replica holds a complete checkpoint of the live stream. */
  'standby',
  'failing-over',
  'failed-over',
] as const;

export const MONITOR_STATES = [...PRIMARY_STATES, ...SECONDARY_STATES] as const;
export type MonitorState = (typeof MONITOR_STATES)[number];

/** remus: checkpoints every interval; manual: only on request or divergence (what COLO drives). */
export const MONITOR_MODES = ['remus', 'manual', 'colo', 'none'] as const;
export type MonitorMode = (typeof MONITOR_MODES)[number];

export const NODE_ROLES = ['primary', 'secondary'] as const;
export type NodeRole = (typeof NODE_ROLES)[number];

export const CONTROL_ACTIONS = ['checkpoint', 'set-interval', 'set-mode', 'failover', 'switchover', 'stop-protection', 'start-protection'] as const;
export type ControlAction = (typeof CONTROL_ACTIONS)[number];

interface Envelope {
  v: typeof SCHEMA_VERSION;
  /** Wall-clock time the monitor made the message, ms since the Unix epoch. */
  ts: number;
  node: NodeRole;
}

/** Broadcast events carry a sequence number; a gap means this client missed events (see `dropped`). */
interface Broadcast extends Envelope {
  seq: number;
  /**
   * The domain the event is about (the arbiter's domain name): one monitor
   * may show several, and every broadcast says which. One sequence runs over
   * all of them. null from a node older than the field.
   */
  domain?: string | null;
}

/** A domain name as the arbiter takes it (src/config/config.ts, arbiterName): what `domain` fields and requests may hold. */
export const DOMAIN_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;
export const MAX_DOMAIN_CHARS = 63;

/** One epoch's numbers. Fields a role cannot know are null (the secondary does not see pause time). */
export interface EpochFields {
  epoch: number;
  /** What started it: timer, operator, divergence, max-interval, precopy (primary); applied (secondary). */
  trigger: string;
  pauseUs: number | null;
  /** Dirty pages sent (primary) or pages written into the replica (secondary). */
  dirtyPages: number;
  bytes: number;
  sendMs: number | null;
  ackMs: number | null;
  totalMs: number | null;
  applyMs: number | null;
  /**
   * The primary's protection session (from 1; a new one at each pre-copy): epochs number from 1
   * within a session, so the two together tell sessions apart. null on a secondary, or from an older node.
   */
  session?: number | null;
}

export interface EpochEvent extends Broadcast, EpochFields {
  type: 'epoch';
}

/** How the primary's live pre-copy goes: the engine's report as it is (src/checkpoint/precopy-progress.ts); null fields: the saver does not tell. */
export type PrecopyFields = PrecopyProgress;

/** At most about once a second while a pre-copy runs, and once when its live rounds end. */
export interface PrecopyEvent extends Broadcast, PrecopyFields {
  type: 'precopy';
}

export interface DivergenceEvent extends Broadcast {
  type: 'divergence';
  /** The connection whose outputs differed, when the comparator names one. */
  connection: string | null;
  reason: string;
}

export interface StateEvent extends Broadcast {
  type: 'state';
  state: MonitorState;
  previous: MonitorState;
  reason: string;
}

export interface ModeEvent extends Broadcast {
  type: 'mode';
  mode: MonitorMode;
  /** The Remus interval, ms; null when no timer runs. */
  intervalMs: number | null;
  reason: string;
}

/** An audit line: a control action was tried. The token is never part of it. */
export interface ControlEvent extends Broadcast {
  type: 'control';
  action: ControlAction;
  /** Who asked: the client's remote address. */
  by: string;
  ok: boolean;
  /** The error code when refused or failed. */
  code: string | null;
}

/** How a node hears its peer on the heartbeat channel (src/heartbeat/detector.ts). */
export const HEARTBEAT_STATES = ['unknown', 'alive', 'suspect', 'dead'] as const;
export type HeartbeatState = (typeof HEARTBEAT_STATES)[number];

/** When a node last took over (or, a primary, was fenced) and why. */
export interface FailoverFields {
  /** Wall-clock ms since the Unix epoch. */
  ts: number;
  reason: string;
  /** The generation it took (a promotion) or that fenced it; null when no generation is known. */
  generation: number | null;
}

/**
 * The other node of the pair, as this node last read it from the peer's
 * monitor (`monitor.peer`). Unreachable: `error` says why, and the other
 * fields keep their last known values (null before the first answer).
 */
export interface PeerFields {
  url: string;
  reachable: boolean;
  error: string | null;
  /** When the peer last answered, ms since the Unix epoch; null: never. */
  fetchedAt: number | null;
  node: NodeRole | null;
  state: MonitorState | null;
  reason: string | null;
  generation: number | null;
  heartbeat: HeartbeatState | null;
  lastEpoch: number | null;
  lagMs: number | null;
  heldBytes: number | null;
  clients: number | null;
  /** The peer's own last failover (a primary learns of a promotion here). */
  lastFailover: FailoverFields | null;
}

/**
 * The peer's view changed: sent when it is first reached, lost, back, or
 * says something new (state, reason, generation, heartbeat, role, its last
 * failover), and on a poll whose numbers moved, at most once per poll.
 *
 * `peer` is the view as the snapshot has it. Its fields are repeated at the
 * top level, but for `node`, which there is the envelope's (the node that
 * sends the event): the peer's role is `peer.node`.
 */
export interface PeerEvent extends Broadcast, Omit<PeerFields, 'node'> {
  type: 'peer';
  peer: PeerFields;
  /** Which of reachable, error, node, state, reason, generation, heartbeat, lastFailover changed; empty when only the numbers did. */
  changed: string[];
}

/** This node took over the guest, or (a primary) learnt that another node took it: it is fenced. */
export interface FailoverEvent extends Broadcast, FailoverFields {
  type: 'failover';
}

/** Sent first on every connection: where things stand, with recent epochs so charts start filled. */
export interface SnapshotEvent extends Broadcast {
  type: 'snapshot';
  state: MonitorState;
  reason: string;
  /** null on a node that does not pace checkpoints (the secondary). */
  mode: MonitorMode | null;
  intervalMs: number | null;
  lastEpoch: number;
  /** Since the last acked (primary) or applied (secondary) epoch, ms; null before the first. */
  lagMs: number | null;
  /** The control actions this node offers. */
  actions: ControlAction[];
  recent: (EpochFields & { ts: number })[];
  /** Clients connected to the guest's service through this node's front (0 on a node without one, such as a secondary). */
  clients: number;
  /** Who may serve the guest, as this node knows it (src/arbiter). */
  arbiter: ArbiterView;
  /** The pre-copy under way (the primary's last report), or null. */
  precopy: PrecopyFields | null;
  /** This node's generation (fencing): the one it serves as, or (a standby) the one of the primary it follows; null: not known. */
  generation: number | null;
  /** How this node hears its peer on the heartbeat channel; null: it has no heartbeat channel. */
  heartbeat: HeartbeatState | null;
  /** Guest output held for unacked epochs, bytes; null where this node holds none. */
  heldBytes: number | null;
  /** The other node, from its monitor; null when no peer monitor is configured. */
  peer: PeerFields | null;
  /** The last HISTORY_EVENTS events other than epochs and pre-copy reports, oldest first, as they were broadcast. */
  history: HistoryEvent[];
  lastFailover: FailoverFields | null;
  /**
   * Whether the guest this node serves has a standby holding its acked epochs: a primary in
   * `protected`, a node that took over once it is protected again; false where it serves
   * unprotected or does not serve (a standby). null from a node older than the field.
   */
  guestProtected: boolean | null;
}

/** The domain in the envelope is no longer shown by this monitor (its node stopped): a client forgets it. */
export interface DetachedEvent extends Broadcast {
  type: 'detached';
}

/**
 * The answer to /api/status (or a `status` request) that names no domain on
 * a monitor showing none or several: one snapshot per domain, by name.
 */
export interface DomainsEvent extends Envelope {
  type: 'domains';
  domains: SnapshotEvent[];
}

/** What the history keeps: every broadcast but the high-rate ones (epochs, pre-copy reports) and snapshots. */
export type HistoryEvent = DivergenceEvent | StateEvent | ModeEvent | ControlEvent | PeerEvent | FailoverEvent;

/** Events kept for the snapshot's history. */
export const HISTORY_EVENTS = 100;

/** To one client: it was too slow and missed `count` events since the last message it got. */
export interface DroppedEvent extends Envelope {
  type: 'dropped';
  count: number;
}

/** To one client: the answer to its request `id`. */
export interface ReplyEvent extends Envelope {
  type: 'reply';
  id: string | number | null;
  action: ControlAction | 'status';
  result: Record<string, unknown> | null;
}

/** To one client: its request `id` failed; `code` is one of the ERR_MONITOR_* codes. */
export interface ErrorEvent extends Envelope {
  type: 'error';
  id: string | number | null;
  code: string;
  message: string;
}

export type BroadcastEvent = EpochEvent | PrecopyEvent | DivergenceEvent | StateEvent | ModeEvent | ControlEvent | PeerEvent | FailoverEvent | SnapshotEvent | DetachedEvent;
export type MonitorEvent = BroadcastEvent | DroppedEvent | ReplyEvent | ErrorEvent | DomainsEvent;
export type EventType = MonitorEvent['type'];

/** What a source publishes: an event without its envelope; the hub stamps it. */
type Body<E> = E extends Broadcast ? Omit<E, 'v' | 'ts' | 'node' | 'seq'> : never;
export type EventBody = Body<EpochEvent | PrecopyEvent | DivergenceEvent | StateEvent | ModeEvent | ControlEvent | PeerEvent | FailoverEvent | DetachedEvent>;

/**
 * Events a slow client may miss without losing track of where things stand.
 * Not `peer` (the last one is the peer as it stands) nor `failover`.
 */
export const SAMPLEABLE: ReadonlySet<EventType> = new Set<EventType>(['epoch', 'precopy', 'divergence', 'control']);

/** Events the history does not keep: they come many a second, and the snapshot has their own summary (recent, precopy). */
const NOT_HISTORY: ReadonlySet<EventType> = new Set<EventType>(['epoch', 'precopy', 'snapshot', 'detached']);

/** Whether the history keeps this broadcast: a peer event only when something other than its numbers changed. */
export function isHistoryEvent(e: BroadcastEvent): e is HistoryEvent {
  if (NOT_HISTORY.has(e.type)) return false;
  return e.type !== 'peer' || e.changed.length > 0;
}

// ---------------------------------------------------------------------------
// Validation

type Kind =
  | 'int'
  | 'num'
  | 'str'
  | 'bool'
  | 'bool|null'
  | 'int|null'
  | 'num|null'
  | 'str|null'
  | 'id'
  | 'object|null'
  /** A broadcast event of a type this client knows, other than a snapshot; unknown types are left out of the array. */
  | 'history-event'
  /** A snapshot event, whole (in a `domains` answer). */
  | 'snapshot-event'
  | { oneOf: readonly string[]; orNull?: true }
  | { arrayOf: Kind }
  | { fields: Record<string, Kind>; orNull?: true }
  /** A field newer nodes send: an older node's event lacks it, and it reads as `absent`. */
  | { newer: Kind; absent: null | readonly [] };

const newer = (kind: Kind, absent: null | readonly [] = null): Kind => ({ newer: kind, absent });

const envelope: Record<string, Kind> = { v: 'int', type: 'str', ts: 'num', node: { oneOf: NODE_ROLES } };
const broadcast: Record<string, Kind> = { ...envelope, seq: 'int', domain: newer('str|null') };
const epochFields: Record<string, Kind> = {
  epoch: 'int',
  trigger: 'str',
  pauseUs: 'num|null',
  dirtyPages: 'int',
  bytes: 'int',
  sendMs: 'num|null',
  ackMs: 'num|null',
  totalMs: 'num|null',
  applyMs: 'num|null',
  session: newer('int|null'),
};

const precopyFields: Record<string, Kind> = {
  iteration: 'int',
  pagesSent: 'int|null',
  pagesTotal: 'int|null',
  percent: 'num|null',
  bytes: 'int',
  elapsedMs: 'num',
  bytesPerSecond: 'num',
  etaMs: 'num|null',
  done: 'bool',
};

const failoverFields: Record<string, Kind> = { ts: 'num', reason: 'str', generation: 'int|null' };
const heartbeatKind: Kind = { oneOf: HEARTBEAT_STATES, orNull: true };

const peerFields: Record<string, Kind> = {
  url: 'str',
  reachable: 'bool',
  error: 'str|null',
  fetchedAt: 'num|null',
  node: { oneOf: NODE_ROLES, orNull: true },
  state: { oneOf: MONITOR_STATES, orNull: true },
  reason: 'str|null',
  generation: 'int|null',
  heartbeat: heartbeatKind,
  lastEpoch: 'int|null',
  lagMs: 'num|null',
  heldBytes: 'int|null',
  clients: 'int|null',
  lastFailover: { fields: failoverFields, orNull: true },
};

const SCHEMA: Record<EventType, Record<string, Kind>> = {
  epoch: { ...broadcast, ...epochFields },
  precopy: { ...broadcast, ...precopyFields },
  divergence: { ...broadcast, connection: 'str|null', reason: 'str' },
  state: { ...broadcast, state: { oneOf: MONITOR_STATES }, previous: { oneOf: MONITOR_STATES }, reason: 'str' },
  mode: { ...broadcast, mode: { oneOf: MONITOR_MODES }, intervalMs: 'int|null', reason: 'str' },
  control: { ...broadcast, action: { oneOf: CONTROL_ACTIONS }, by: 'str', ok: 'bool', code: 'str|null' },
  peer: { ...peerFields, ...broadcast, peer: { fields: peerFields }, changed: { arrayOf: 'str' } },
  failover: { ...broadcast, ...failoverFields },
  snapshot: {
    ...broadcast,
    state: { oneOf: MONITOR_STATES },
    reason: 'str',
    mode: { oneOf: MONITOR_MODES, orNull: true },
    intervalMs: 'int|null',
    lastEpoch: 'int',
    lagMs: 'num|null',
    actions: { arrayOf: { oneOf: CONTROL_ACTIONS } },
    recent: { arrayOf: { fields: { ...epochFields, ts: 'num' } } },
    clients: 'int',
    arbiter: { fields: { kind: { oneOf: ['none', 'etcd'] }, holder: 'str|null', generation: 'int|null', protected: 'bool', authority: 'bool' } },
    precopy: { fields: precopyFields, orNull: true },
    generation: newer('int|null'),
    heartbeat: newer(heartbeatKind),
    heldBytes: newer('int|null'),
    peer: { fields: peerFields, orNull: true },
    history: newer({ arrayOf: 'history-event' }, []),
    lastFailover: { fields: failoverFields, orNull: true },
    guestProtected: newer('bool|null'),
  },
  dropped: { ...envelope, count: 'int' },
  reply: { ...envelope, id: 'id', action: { oneOf: [...CONTROL_ACTIONS, 'status'] }, result: 'object|null' },
  error: { ...envelope, id: 'id', code: 'str', message: 'str' },
  domains: { ...envelope, domains: { arrayOf: 'snapshot-event' } },
  detached: { ...broadcast, domain: 'str' },
};

export const EVENT_TYPES = Object.keys(SCHEMA) as EventType[];

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** What a history may hold: broadcasts, not snapshots (no snapshot inside a snapshot). */
const HISTORY_TYPES: ReadonlySet<string> = new Set(EVENT_TYPES.filter((t) => t !== 'snapshot' && t !== 'detached' && 'seq' in SCHEMA[t]));

/** Checks the fields of `object` in place; an absent field that reads as something else (null, []) is set to it. */
function checkFields(object: Record<string, unknown>, fields: Record<string, Kind>, path: string): void {
  for (const [k, sub] of Object.entries(fields)) {
    const value = check(object[k], sub, `${path}.${k}`);
    if (value !== object[k]) object[k] = value;
  }
}

/** Checks `value` against `kind`; returns it as the client reads it (absent fields filled, unknown history events left out). */
function check(value: unknown, kind: Kind, path: string): unknown {
  const bad = (expected: string): never => {
    throw new MonitorError(MonitorErrorCodes.MONITOR_BAD_EVENT, `${path}: expected ${expected}, got ${clipped(value)}`);
  };
  if (typeof kind === 'object') {
    if ('newer' in kind) return value === undefined ? (kind.absent === null ? null : []) : check(value, kind.newer, path);
    if ('oneOf' in kind) {
      if (kind.orNull && value === null) return value;
      if (typeof value !== 'string' || !kind.oneOf.includes(value)) bad(`one of ${kind.oneOf.join(', ')}`);
    } else if ('arrayOf' in kind) {
      if (!Array.isArray(value)) return bad('an array');
      const items = value.map((item, i) => check(item, kind.arrayOf, `${path}[${i}]`));
      const kept = items.filter((item) => item !== SKIPPED);
      return kept.length === value.length && items.every((item, i) => item === value[i]) ? value : kept;
    } else {
      // Absent reads as null: a node older than the field does not send it.
      if (kind.orNull && (value === null || value === undefined)) return null;
      if (!isObj(value)) return bad(kind.orNull ? 'an object or null' : 'an object');
      checkFields(value, kind.fields, path);
    }
    return value;
  }
  const nullable = kind.endsWith('|null');
  if (nullable && value === null) return value;
  switch (kind) {
    case 'int':
    case 'int|null':
      if (!Number.isSafeInteger(value) || (value as number) < 0) bad(nullable ? 'a non-negative integer or null' : 'a non-negative integer');
      break;
    case 'num':
    case 'num|null':
      if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) bad(nullable ? 'a non-negative number or null' : 'a non-negative number');
      break;
    case 'str':
    case 'str|null':
      if (typeof value !== 'string') bad(nullable ? 'a string or null' : 'a string');
      break;
    case 'bool':
    case 'bool|null':
      if (typeof value !== 'boolean') bad(nullable ? 'true, false or null' : 'true or false');
      break;
    case 'id':
      if (!(value === null || typeof value === 'string' || Number.isSafeInteger(value))) bad('a string, an integer or null');
      break;
    case 'object|null':
      if (!(value === null || isObj(value))) bad('an object or null');
      break;
    case 'history-event':
      // A newer node's event type: the compatibility rule says skip it.
      if (isUnknownType(value)) return SKIPPED;
      if (!isObj(value) || typeof value.type !== 'string' || !HISTORY_TYPES.has(value.type)) bad(`a broadcast event of one of ${[...HISTORY_TYPES].join(', ')}`);
      checkEvent(value as Record<string, unknown>, `${path}.`);
      break;
    case 'snapshot-event':
      if (!isObj(value) || value.type !== 'snapshot') bad('a snapshot event');
      checkEvent(value as Record<string, unknown>, `${path}.`);
      break;
  }
  return value;
}

const SKIPPED = Symbol('skipped');

/** A value in an error message: cut short (a peer's answer may be large). */
function clipped(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 120 ? `${text.slice(0, 120)}...` : text;
}

/**
 * A well-formed envelope of a type this client does not know: a newer node's
 * event, to be skipped (the compatibility rule above), not a protocol error.
 */
export function isUnknownType(message: unknown): boolean {
  return isObj(message) && message.v === SCHEMA_VERSION && typeof message.type === 'string' && /^[a-z][a-z-]{0,31}$/.test(message.type) && !Object.hasOwn(SCHEMA, message.type);
}

function checkEvent(message: Record<string, unknown>, prefix: string): void {
  if (message.v !== SCHEMA_VERSION) throw new MonitorError(MonitorErrorCodes.MONITOR_BAD_EVENT, `${prefix}event.v: schema version ${clipped(message.v)}; this client reads version ${SCHEMA_VERSION}`);
  const type = message.type;
  if (typeof type !== 'string' || !Object.hasOwn(SCHEMA, type)) {
    throw new MonitorError(MonitorErrorCodes.MONITOR_BAD_EVENT, `${prefix}event.type: expected one of ${EVENT_TYPES.join(', ')}, got ${clipped(type)}`);
  }
  checkFields(message, SCHEMA[type as EventType], `${prefix}${type}`);
}

/**
 * Checks one received message against the schema; returns it typed, or
 * throws MONITOR_BAD_EVENT naming the field. Fields an older node leaves out
 * are filled in as they read (null, an empty history), and a history's
 * events of types a newer node added are left out, in place.
 */
export function validateEvent(message: unknown): MonitorEvent {
  if (!isObj(message)) throw new MonitorError(MonitorErrorCodes.MONITOR_BAD_EVENT, `event: expected an object, got ${clipped(message)}`);
  checkEvent(message, '');
  return message as unknown as MonitorEvent;
}

/** Parses and validates one text frame. */
export function parseEvent(text: string): MonitorEvent {
  let message: unknown;
  try {
    message = JSON.parse(text);
  } catch (err) {
    throw new MonitorError(MonitorErrorCodes.MONITOR_BAD_EVENT, `event: not JSON: ${(err as Error).message}`, { cause: err });
  }
  return validateEvent(message);
}
