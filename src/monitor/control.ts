/**
 * Control requests: parsed and validated here (bounded size, known shape),
 * authorized with the token, audited (who and what, never the token), then
 * handed to a ControlTarget. The primary and the secondary each offer the
 * actions they can do; anything else is refused with MONITOR_UNSUPPORTED.
 */
import type { Logger } from '../util/logger.js';
import type { MonitorAuth } from './auth.js';
import { CONTROL_ACTIONS, type ControlAction, type EventBody } from './events.js';
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

export type ClientMessage =
  | { type: 'status'; id: string | number | null }
  | { type: 'control'; id: string | number | null; token: string | undefined; command: ControlCommand };

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
    allowOnly(msg, ['type', 'id']);
    return { type: 'status', id };
  }
  if (msg.type !== 'control') throw bad(`type: expected "control" or "status", got ${JSON.stringify(msg.type)?.slice(0, 40)}`);
  const action = msg.action;
  if (typeof action !== 'string' || !(CONTROL_ACTIONS as readonly string[]).includes(action)) {
    throw bad(`action: expected one of ${CONTROL_ACTIONS.join(', ')}, got ${JSON.stringify(action)?.slice(0, 40)}`);
  }
  const token = msg.token;
  if (token !== undefined && (typeof token !== 'string' || token.length > MAX_TOKEN_CHARS)) throw bad(`token: expected a string of at most ${MAX_TOKEN_CHARS} characters`);
  const common = ['type', 'id', 'token', 'action'];
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
  return { type: 'control', id, token: token, command };
}

export interface ControlOptions {
  target: ControlTarget;
  auth: MonitorAuth;
  logger: Logger;
  /** Publishes the audit event every client sees. */
  audit: (event: EventBody) => void;
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

export class MonitorControl {
  constructor(private readonly options: ControlOptions) {}

  /** The actions this node offers. */
  get actions(): ControlAction[] {
    return CONTROL_ACTIONS.filter((a) => typeof this.options.target[METHOD[a]] === 'function');
  }

  /** Authorizes, audits and runs one command; throws a MonitorError when refused or failed. */
  /** `who.address`: the peer's IP, the key wrong tokens are counted under; `who.remote`: how logs name it. */
  async perform(command: ControlCommand, who: { remote: string; address?: string; token: string | undefined }): Promise<Record<string, unknown> | null> {
    const { target, auth, logger } = this.options;
    const { action } = command;
    const args = command.action === 'set-interval' ? { intervalMs: command.intervalMs } : command.action === 'set-mode' ? { mode: command.mode } : {};
    const record = (ok: boolean, code: string | null): void => this.options.audit({ type: 'control', action, by: who.remote, ok, code });
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
    if (typeof target[METHOD[action]] !== 'function') {
      logger.warn({ by: who.remote, action }, `control refused: ${action} from ${who.remote}: not offered by this node`);
      record(false, C.MONITOR_UNSUPPORTED);
      throw new MonitorError(C.MONITOR_UNSUPPORTED, `${action} is not offered by this node (offered: ${this.actions.join(', ') || 'none'})`);
    }
    logger.warn({ by: who.remote, action, ...args }, `control: ${action} requested by ${who.remote}`);
    try {
      const result = await this.run(command);
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

  private async run(command: ControlCommand): Promise<Record<string, unknown> | null> {
    const t = this.options.target;
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
