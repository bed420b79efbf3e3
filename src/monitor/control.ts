/**
 * Control requests: parsed and validated here (bounded size, known shape),
 * authorized with the token, audited (who and what, never the token), then
 * handed to a ControlTarget. The primary and the secondary each offer the
 * actions they can do; anything else is refused with MONITOR_UNSUPPORTED.
 */
import type { Logger } from '../util/logger.js';
import type { MonitorAuth } from './auth.js';
import { CONTROL_ACTIONS, DOMAIN_NAME, MAX_DOMAIN_CHARS, type ControlAction, type EventBody } from './events.js';
import { MonitorError, MonitorErrorCodes as C } from './errors.js';
import { MAX_TOKEN_CHARS } from './token.js';

/** Largest client message accepted (also the WebSocket maxPayload). */
export const MAX_MESSAGE_BYTES = 4096;
const MAX_ID_CHARS = 64;

export type SettableMode = 'remus' | 'manual' | 'colo';

export type ControlCommand =
  | { action: 'checkpoint' }
  | { action: 'set-interval'; intervalMs: number }
  | { action: 'set-mode'; mode: SettableMode }
  | { action: 'failover' }
  | { action: 'switchover' }
  | { action: 'stop-protection' }
  | { action: 'start-protection' };

/** `domain`: the domain the request is for; undefined: the only one shown (see MonitorServer). */
export type ClientMessage =
  | { type: 'status'; id: string | number | null; domain?: string }
  | { type: 'control'; id: string | number | null; token: string | undefined; domain?: string; command: ControlCommand };

/** What a node can be told to do; a missing method is an action it does not offer. */
export interface ControlTarget {
  checkpoint?(): void;
  setInterval?(ms: number): void;
  setMode?(mode: SettableMode): void;
  failover?(): Promise<Record<string, unknown>>;
  /** A planned handover to the secondary: a last checkpoint, then it takes over and this node stops. */
  switchover?(): Promise<Record<string, unknown>>;
  stopProtection?(): Promise<void>;
  startProtection?(): void;
}

const bad = (message: string, cause?: unknown): MonitorError => new MonitorError(C.MONITOR_BAD_MESSAGE, message, cause === undefined ? undefined : { cause });
const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function allowOnly(msg: Record<string, unknown>, keys: string[]): void {
  for (const k of Object.keys(msg)) if (!keys.includes(k)) throw bad(`unknown field ${JSON.stringify(k.slice(0, 40))} (known: ${keys.join(', ')})`);
}

/**
 * A domain name from a client (a request's `domain`, /api/status?domain=):
 * undefined stays undefined; anything else must be a name the arbiter would
 * take, else MONITOR_BAD_MESSAGE. Whether it is shown here is the server's question.
 */
export function parseDomain(value: unknown): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string') throw bad(`domain: expected a string, got ${value === null ? 'null' : typeof value}`);
  if (value.length > MAX_DOMAIN_CHARS) throw bad(`domain: at most ${MAX_DOMAIN_CHARS} characters, got ${value.length}`);
  if (!DOMAIN_NAME.test(value)) throw bad(`domain: expected a name of letters, digits, ".", "_", "-", got ${JSON.stringify(value)}`);
  return value;
}

/** The request id, if it is usable; replies echo it. */
export function requestId(msg: unknown): string | number | null {
  if (!isObj(msg)) return null;
  const id = msg.id;
  if (typeof id === 'string' && id.length <= MAX_ID_CHARS) return id;
  if (Number.isSafeInteger(id)) return id as number;
  return null;
}

/**
 * Parses one client message; throws MONITOR_BAD_MESSAGE saying what is wrong.
 * `implicitControl`: a message without `type` is a control request (the HTTP endpoint).
 */
export function parseClientMessage(text: string, implicitControl = false): ClientMessage {
  if (Buffer.byteLength(text) > MAX_MESSAGE_BYTES) throw bad(`message of ${Buffer.byteLength(text)} bytes; at most ${MAX_MESSAGE_BYTES}`);
  let msg: unknown;
  try {
    msg = JSON.parse(text);
  } catch (err) {
    throw bad('not JSON', err);
  }
  if (!isObj(msg)) throw bad('expected a JSON object');
  if (implicitControl && msg.type === undefined) msg.type = 'control';
  if (msg.id !== undefined && requestId(msg) === null) throw bad(`id: expected a string of at most ${MAX_ID_CHARS} characters or an integer`);
  const id = requestId(msg);
  if (msg.type === 'status') {
    allowOnly(msg, ['type', 'id', 'domain']);
    const domain = parseDomain(msg.domain);
    return domain === undefined ? { type: 'status', id } : { type: 'status', id, domain };
  }
  if (msg.type !== 'control') throw bad(`type: expected "control" or "status", got ${JSON.stringify(msg.type)?.slice(0, 40)}`);
  const action = msg.action;
  if (typeof action !== 'string' || !(CONTROL_ACTIONS as readonly string[]).includes(action)) {
    throw bad(`action: expected one of ${CONTROL_ACTIONS.join(', ')}, got ${JSON.stringify(action)?.slice(0, 40)}`);
  }
  const token = msg.token;
  if (token !== undefined && (typeof token !== 'string' || token.length > MAX_TOKEN_CHARS)) throw bad(`token: expected a string of at most ${MAX_TOKEN_CHARS} characters`);
  const domain = parseDomain(msg.domain);
  const common = ['type', 'id', 'token', 'action', 'domain'];
  let command: ControlCommand;
  switch (action as ControlAction) {
    case 'set-interval': {
      allowOnly(msg, [...common, 'intervalMs']);
      const ms = msg.intervalMs;
      if (!Number.isInteger(ms) || (ms as number) < 1 || (ms as number) > 60_000) throw bad(`intervalMs: expected an integer in 1..60000, got ${JSON.stringify(ms)}`);
      command = { action: 'set-interval', intervalMs: ms as number };
      break;
    }
    case 'set-mode': {
      allowOnly(msg, [...common, 'mode']);
      if (msg.mode !== 'remus' && msg.mode !== 'manual' && msg.mode !== 'colo') throw bad(`mode: expected "remus", "manual" or "colo", got ${JSON.stringify(msg.mode)?.slice(0, 40)}`);
      command = { action: 'set-mode', mode: msg.mode };
      break;
    }
    default:
      allowOnly(msg, common);
      command = { action } as ControlCommand;
  }
  return domain === undefined ? { type: 'control', id, token, command } : { type: 'control', id, token, domain, command };
}

/** Where a request for `domain` goes: its node's actions, under the domain's name. */
export interface ControlRoute {
  target: ControlTarget;
  domain: string | undefined;
}

export interface ControlOptions {
  /** The one node's actions (a monitor without domains); or `route`. */
  target?: ControlTarget;
  /**
   * Finds the node a request is for (a monitor of domains): throws
   * MONITOR_UNKNOWN_DOMAIN or MONITOR_DOMAIN_REQUIRED. Asked before the
   * token is checked (a refused request is audited under its domain), but
   * its error is told only to a client with the token: the domains' names
   * are not for anyone who can reach the port.
   */
  route?: (domain: string | undefined) => ControlRoute;
  auth: MonitorAuth;
  logger: Logger;
  /** Publishes the audit event every client sees, under the domain it was for (undefined: none, or not known). */
  audit: (event: EventBody, domain?: string) => void;
}

const METHOD: Record<ControlAction, keyof ControlTarget> = {
  checkpoint: 'checkpoint',
  'set-interval': 'setInterval',
  'set-mode': 'setMode',
  failover: 'failover',
  switchover: 'switchover',
  'stop-protection': 'stopProtection',
  'start-protection': 'startProtection',
};

/** The actions a node offers: the methods its target has. */
export function offeredActions(target: ControlTarget): ControlAction[] {
  return CONTROL_ACTIONS.filter((a) => typeof target[METHOD[a]] === 'function');
}

export class MonitorControl {
  constructor(private readonly options: ControlOptions) {
    if ((options.target === undefined) === (options.route === undefined)) throw new MonitorError(C.MONITOR_BAD_OPTIONS, 'control: give either a target or a route');
  }

  /** The actions this node offers (a monitor without domains; with domains, each has its own). */
  get actions(): ControlAction[] {
    return this.options.target === undefined ? [] : offeredActions(this.options.target);
  }

  /** Authorizes, audits and runs one command; throws a MonitorError when refused or failed. */
  /** `who.address`: the peer's IP, the key wrong tokens are counted under; `who.remote`: how logs name it. `domain`: the request's, if it named one. */
  async perform(command: ControlCommand, who: { remote: string; address?: string; token: string | undefined }, domain?: string): Promise<Record<string, unknown> | null> {
    const { auth, logger } = this.options;
    const { action } = command;
    let route: ControlRoute | undefined;
    let unrouted: MonitorError | undefined;
    try {
      route = this.options.route === undefined ? { target: this.options.target!, domain: undefined } : this.options.route(domain);
    } catch (err) {
      if (!(err instanceof MonitorError)) throw err;
      unrouted = err;
    }
    const args = command.action === 'set-interval' ? { intervalMs: command.intervalMs } : command.action === 'set-mode' ? { mode: command.mode } : {};
    const record = (ok: boolean, code: string | null): void => this.options.audit({ type: 'control', action, by: who.remote, ok, code }, route?.domain);
    const verdict = auth.verify(who.token, who.address);
    if (verdict === 'locked') {
      const s = Math.ceil(auth.lockedFor(who.address) / 1000);
      logger.warn({ by: who.remote, action }, `control refused: ${action} from ${who.remote}: too many wrong tokens from this address; locked for ${s} s more`);
      record(false, C.MONITOR_RATE_LIMITED);
      throw new MonitorError(C.MONITOR_RATE_LIMITED, `control refused: too many wrong tokens from this address; try again in ${s} s`);
    }
    if (verdict !== 'ok') {
      const why = verdict === 'unconfigured' ? 'no control token is configured on this node' : verdict === 'missing' ? 'no token given' : 'wrong token';
      logger.warn({ by: who.remote, action, ...args }, `control refused: ${action} from ${who.remote}: ${why}`);
      record(false, C.MONITOR_UNAUTHORIZED);
      throw new MonitorError(C.MONITOR_UNAUTHORIZED, `control refused: ${why}`);
    }
    if (route === undefined) {
      logger.warn({ by: who.remote, action, domain }, `control refused: ${action} from ${who.remote}: ${unrouted!.message}`);
      record(false, unrouted!.code);
      throw unrouted!;
    }
    const { target } = route;
    const on = route.domain === undefined ? {} : { domain: route.domain };
    if (typeof target[METHOD[action]] !== 'function') {
      logger.warn({ by: who.remote, action, ...on }, `control refused: ${action} from ${who.remote}: not offered by this node`);
      record(false, C.MONITOR_UNSUPPORTED);
      throw new MonitorError(C.MONITOR_UNSUPPORTED, `${action} is not offered by this node (offered: ${offeredActions(target).join(', ') || 'none'})`);
    }
    logger.warn({ by: who.remote, action, ...on, ...args }, `control: ${action} requested by ${who.remote}${route.domain === undefined ? '' : ` for domain ${route.domain}`}`);
    try {
      const result = await this.run(target, command);
      record(true, null);
      return result;
    } catch (err) {
      if (err instanceof MonitorError && err.code === C.MONITOR_REFUSED) {
        // Not a failure of the node: it said no, and did nothing.
        logger.warn({ by: who.remote, action }, `control: ${action} from ${who.remote} refused: ${err.message}`);
        record(false, C.MONITOR_REFUSED);
        throw err;
      }
      logger.error({ by: who.remote, action, err }, `control: ${action} from ${who.remote} failed`);
      record(false, C.MONITOR_ACTION_FAILED);
      throw new MonitorError(C.MONITOR_ACTION_FAILED, `${action} failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
  }

  private async run(t: ControlTarget, command: ControlCommand): Promise<Record<string, unknown> | null> {
    switch (command.action) {
      case 'checkpoint':
        t.checkpoint!();
        return null;
      case 'set-interval':
        t.setInterval!(command.intervalMs);
        return { intervalMs: command.intervalMs };
      case 'set-mode':
        t.setMode!(command.mode);
        return { mode: command.mode };
      case 'failover':
        return await t.failover!();
      case 'switchover':
        return await t.switchover!();
      case 'stop-protection':
        await t.stopProtection!();
        return null;
      case 'start-protection':
        t.startProtection!();
        return null;
    }
  }
}
