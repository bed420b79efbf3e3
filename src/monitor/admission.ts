/**
 * Who gets one of the monitor's WebSocket slots. Reading may be open to
 * anyone who reaches the port (loopback by default), so idle readers, as
 * many as there are slots, must never lock out the operator who comes to
 * act. Two rules, as HAProxy and Redis keep room for their admins:
 *
 *   - Slots are `maxClients`, of which `operatorSlots` are kept for
 *     operators (clients that presented the control token when they
 *     connected). Viewers (everyone else) get at most the rest: past that
 *     a viewer is refused, however many slots are free.
 *   - An operator is admitted while any slot is free; when none is (more
 *     operators than their reserve, the rest taken by viewers), the viewer
 *     idle longest (no message from it for the longest time; viewers that
 *     only watch never send one, so the one connected longest) gives up
 *     its slot. Only when every slot is an operator's is an operator
 *     refused.
 *
 * No sockets here: clients are opaque keys, so the policy is tested with
 * plain objects and served with `ws`.
 */
import { MonitorError, MonitorErrorCodes as C } from './errors.js';

export type ClientRole = 'operator' | 'viewer';

export interface AdmissionLimits {
  maxClients: number;
  operatorSlots: number;
}

export const DEFAULT_MAX_CLIENTS = 256;
/**
 * Kept for operators by default: a sixteenth of the slots, at most 16 (room
 * for a few dashboards, `tandem watch`es and scripts with the rest taken).
 * A monitor of fewer than 16 slots keeps none: eviction alone then makes
 * room for an operator.
 */
export const defaultOperatorSlots = (maxClients: number): number => Math.min(16, Math.floor(maxClients / 16));
export const MAX_MAX_CLIENTS = 65_536;

/** The limits with their defaults, or MONITOR_BAD_OPTIONS saying which is out of range. */
export function admissionLimits(options: Partial<AdmissionLimits>): AdmissionLimits {
  const maxClients = options.maxClients ?? DEFAULT_MAX_CLIENTS;
  if (!Number.isInteger(maxClients) || maxClients < 1 || maxClients > MAX_MAX_CLIENTS) {
    throw new MonitorError(C.MONITOR_BAD_OPTIONS, `monitor: maxClients must be an integer in 1..${MAX_MAX_CLIENTS}, got ${maxClients}`);
  }
  const operatorSlots = options.operatorSlots ?? defaultOperatorSlots(maxClients);
  if (!Number.isInteger(operatorSlots) || operatorSlots < 0 || operatorSlots > maxClients) {
    throw new MonitorError(C.MONITOR_BAD_OPTIONS, `monitor: operatorSlots must be an integer in 0..maxClients (${maxClients}), got ${operatorSlots}`);
  }
  return { maxClients, operatorSlots };
}

/** What to do with a newcomer: admit it (first closing `evict`, if given), or refuse it and say why. */
export type Admission<T> = { admit: true; evict: T | undefined } | { admit: false; why: 'viewers-full' | 'full' };

export interface AdmissionStats {
  operators: number;
  viewers: number;
  refusedViewers: number;
  refusedOperators: number;
  /** Viewers closed to make room for an operator. */
  evictedViewers: number;
}

export class MonitorAdmission<T> {
  private readonly operators = new Set<T>();
  /** Viewer -> its last activity (ms); iteration order is activity order, the one idle longest first. */
  private readonly viewers = new Map<T, number>();
  private readonly counters = { refusedViewers: 0, refusedOperators: 0, evictedViewers: 0 };

  constructor(private readonly limits: AdmissionLimits) {}

  get size(): number {
    return this.operators.size + this.viewers.size;
  }

  stats(): AdmissionStats {
    return { operators: this.operators.size, viewers: this.viewers.size, ...this.counters };
  }

  /** Decides for a newcomer and counts a refusal; admits nobody (add() does, once it is connected). */
  decide(role: ClientRole): Admission<T> {
    const { maxClients, operatorSlots } = this.limits;
    const free = this.size < maxClients;
    if (role === 'viewer') {
      if (this.viewers.size >= maxClients - operatorSlots) return this.refuse(role, 'viewers-full');
      return free ? { admit: true, evict: undefined } : this.refuse(role, 'full');
    }
    if (free) return { admit: true, evict: undefined };
    const victim = this.viewers.keys().next();
    return victim.done === true ? this.refuse(role, 'full') : { admit: true, evict: victim.value };
  }

  add(client: T, role: ClientRole, now: number): void {
    if (role === 'operator') this.operators.add(client);
    else this.viewers.set(client, now);
  }

  /** A viewer sent something: it goes to the end of the eviction order. */
  touch(client: T, now: number): void {
    if (this.viewers.delete(client)) this.viewers.set(client, now);
  }

  /** How long a viewer has sent nothing (0 for an operator or a stranger). */
  idleMs(client: T, now: number): number {
    const at = this.viewers.get(client);
    return at === undefined ? 0 : Math.max(0, now - at);
  }

  /** The client is gone; `evicted`: it was closed to make room (counted). */
  remove(client: T, evicted = false): void {
    if (this.viewers.delete(client) && evicted) this.counters.evictedViewers++;
    this.operators.delete(client);
  }

  roleOf(client: T): ClientRole | undefined {
    return this.operators.has(client) ? 'operator' : this.viewers.has(client) ? 'viewer' : undefined;
  }

  private refuse(role: ClientRole, why: 'viewers-full' | 'full'): Admission<T> {
    if (role === 'viewer') this.counters.refusedViewers++;
    else this.counters.refusedOperators++;
    return { admit: false, why };
  }
}
