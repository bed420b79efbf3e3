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
}

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
}

export interface EpochEvent extends Broadcast, EpochFields {
  type: 'epoch';
}

/** How the primary's live pre-copy goes (src/checkpoint/precopy-progress.ts); null fields: the saver does not tell. */
export interface PrecopyFields {
  /** The live round under way (1 sends every page). */
  iteration: number;
  pagesSent: number | null;
  pagesTotal: number | null;
  percent: number | null;
  /** Stream bytes since the pre-copy began. */
  bytes: number;
  elapsedMs: number;
  bytesPerSecond: number;
  etaMs: number | null;
  /** The live rounds are over: the first checkpoint is being taken. */
  done: boolean;
}

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
}

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

export type BroadcastEvent = EpochEvent | PrecopyEvent | DivergenceEvent | StateEvent | ModeEvent | ControlEvent | SnapshotEvent;
export type MonitorEvent = BroadcastEvent | DroppedEvent | ReplyEvent | ErrorEvent;
export type EventType = MonitorEvent['type'];

/** What a source publishes: an event without its envelope; the hub stamps it. */
type Body<E> = E extends Broadcast ? Omit<E, 'v' | 'ts' | 'node' | 'seq'> : never;
export type EventBody = Body<EpochEvent | PrecopyEvent | DivergenceEvent | StateEvent | ModeEvent | ControlEvent>;

/** Events a slow client may miss without losing track of where things stand. */
export const SAMPLEABLE: ReadonlySet<EventType> = new Set<EventType>(['epoch', 'precopy', 'divergence', 'control']);

// ---------------------------------------------------------------------------
// Validation

type Kind =
  | 'int'
  | 'num'
  | 'str'
  | 'bool'
  | 'int|null'
  | 'num|null'
  | 'str|null'
  | 'id'
  | 'object|null'
  | { oneOf: readonly string[]; orNull?: true }
  | { arrayOf: Kind }
  | { fields: Record<string, Kind>; orNull?: true };

const envelope: Record<string, Kind> = { v: 'int', type: 'str', ts: 'num', node: { oneOf: NODE_ROLES } };
const broadcast: Record<string, Kind> = { ...envelope, seq: 'int' };
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

const SCHEMA: Record<EventType, Record<string, Kind>> = {
  epoch: { ...broadcast, ...epochFields },
  precopy: { ...broadcast, ...precopyFields },
  divergence: { ...broadcast, connection: 'str|null', reason: 'str' },
  state: { ...broadcast, state: { oneOf: MONITOR_STATES }, previous: { oneOf: MONITOR_STATES }, reason: 'str' },
  mode: { ...broadcast, mode: { oneOf: MONITOR_MODES }, intervalMs: 'int|null', reason: 'str' },
  control: { ...broadcast, action: { oneOf: CONTROL_ACTIONS }, by: 'str', ok: 'bool', code: 'str|null' },
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
  },
  dropped: { ...envelope, count: 'int' },
  reply: { ...envelope, id: 'id', action: { oneOf: [...CONTROL_ACTIONS, 'status'] }, result: 'object|null' },
  error: { ...envelope, id: 'id', code: 'str', message: 'str' },
};

export const EVENT_TYPES = Object.keys(SCHEMA) as EventType[];

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function check(value: unknown, kind: Kind, path: string): void {
  const bad = (expected: string): never => {
    throw new MonitorError(MonitorErrorCodes.MONITOR_BAD_EVENT, `${path}: expected ${expected}, got ${JSON.stringify(value) ?? String(value)}`);
  };
  if (typeof kind === 'object') {
    if ('oneOf' in kind) {
      if (kind.orNull && value === null) return;
      if (typeof value !== 'string' || !kind.oneOf.includes(value)) bad(`one of ${kind.oneOf.join(', ')}`);
    } else if ('arrayOf' in kind) {
      if (!Array.isArray(value)) return bad('an array');
      value.forEach((item, i) => check(item, kind.arrayOf, `${path}[${i}]`));
    } else {
      // Absent reads as null: a node older than the field does not send it.
      if (kind.orNull && (value === null || value === undefined)) return;
      if (!isObj(value)) return bad(kind.orNull ? 'an object or null' : 'an object');
      for (const [k, sub] of Object.entries(kind.fields)) check(value[k], sub, `${path}.${k}`);
    }
    return;
  }
  const nullable = kind.endsWith('|null');
  if (nullable && value === null) return;
  switch (kind) {
    case 'int':
    case 'int|null':
      if (!Number.isSafeInteger(value) || (value as number) < 0) bad(nullable ? 'a non-negative integer or null' : 'a non-negative integer');
      return;
    case 'num':
    case 'num|null':
      if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) bad(nullable ? 'a non-negative number or null' : 'a non-negative number');
      return;
    case 'str':
    case 'str|null':
      if (typeof value !== 'string') bad(nullable ? 'a string or null' : 'a string');
      return;
    case 'bool':
      if (typeof value !== 'boolean') bad('true or false');
      return;
    case 'id':
      if (!(value === null || typeof value === 'string' || Number.isSafeInteger(value))) bad('a string, an integer or null');
      return;
    case 'object|null':
      if (!(value === null || isObj(value))) bad('an object or null');
      return;
  }
}

/**
 * A well-formed envelope of a type this client does not know: a newer node's
 * event, to be skipped (the compatibility rule above), not a protocol error.
 */
export function isUnknownType(message: unknown): boolean {
  return isObj(message) && message.v === SCHEMA_VERSION && typeof message.type === 'string' && /^[a-z][a-z-]{0,31}$/.test(message.type) && !Object.hasOwn(SCHEMA, message.type);
}

/** Checks one received message against the schema; returns it typed, or throws MONITOR_BAD_EVENT naming the field. */
export function validateEvent(message: unknown): MonitorEvent {
  if (!isObj(message)) throw new MonitorError(MonitorErrorCodes.MONITOR_BAD_EVENT, `event: expected an object, got ${JSON.stringify(message) ?? String(message)}`);
  if (message.v !== SCHEMA_VERSION) throw new MonitorError(MonitorErrorCodes.MONITOR_BAD_EVENT, `event.v: schema version ${JSON.stringify(message.v)}; this client reads version ${SCHEMA_VERSION}`);
  const type = message.type;
  if (typeof type !== 'string' || !Object.hasOwn(SCHEMA, type)) {
    throw new MonitorError(MonitorErrorCodes.MONITOR_BAD_EVENT, `event.type: expected one of ${EVENT_TYPES.join(', ')}, got ${JSON.stringify(type)}`);
  }
  for (const [k, kind] of Object.entries(SCHEMA[type as EventType])) check(message[k], kind, `${type}.${k}`);
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
