/**
 * `tandem status [URL] [--json]`: one snapshot from a monitor: state,
 * health, mode, last epoch, lag, what control actions it offers; the pair
 * (this node and its peer side by side, as the node reads its peer's
 * monitor), the last failover and the last few events. Usable as a check
 * command: exit status 0 when the node is healthy, EXIT_UNHEALTHY (4) when
 * it answered and is not, 1 when it could not be asked. Only this node's
 * health counts: its peer has its own check.
 *
 * A monitor showing several domains: every domain, one after the other,
 * and healthy only if every one is (--domain NAME: that one alone).
 */
import type { Argv } from 'yargs';
import { DEFAULT_MONITOR_URL, fetchStatuses } from '../../monitor/client.js';
import { flagDomain } from './control.js';
import type { EpochFields, FailoverFields, NodeRole, PeerFields, SnapshotEvent } from '../../monitor/events.js';
import { arbiterLine, eventLine, failoverLine, precopyLine } from '../../monitor/view.js';
import { flagPath, operandMonitorUrls } from '../config-args.js';
import { EXIT_UNHEALTHY } from '../errors.js';
import { jsonLine } from '../json-out.js';
import { resolveCliToken } from '../token.js';

interface StatusArgs {
  url: string | undefined;
  json: boolean;
  'token-file': string | undefined;
  domain: string | undefined;
}

export interface Health {
  healthy: boolean;
  /** Why, in words, for the human output. */
  why: string;
}

/**
 * Is the node doing its job? A primary, if its guest is protected (a
 * secondary holds its last checkpoint); a secondary, if it stands by with a
 * complete checkpoint or, having failed over, serves the guest.
 */
export function health(s: SnapshotEvent): Health {
  if (s.node === 'primary') {
    return s.state === 'protected' ? { healthy: true, why: 'the guest is protected' } : { healthy: false, why: `the guest is not protected (${s.state})` };
  }
  if (s.state === 'standby') return { healthy: true, why: 'standing by with a complete checkpoint' };
  // Serving after a failover is not enough for a check: the guest must have a standby again (an older node does not say: trust it).
  if (s.state === 'failed-over') return s.guestProtected === false ? { healthy: false, why: 'failed over: serving the guest, unprotected' } : { healthy: true, why: 'failed over: serving the guest, protected again' };
  return { healthy: false, why: s.state === 'failing-over' ? 'failing over' : `not standing by (${s.state}): it holds no complete checkpoint of a live stream` };
}

const num = (v: number, digits: number): string => (Number.isInteger(v) ? String(v) : v.toFixed(digits));
const msText = (v: number | null): string => (v === null ? '-' : `${num(v, v < 10 ? 2 : 0)} ms`);
function bytesText(n: number): string {
  if (n < 1024) return `${n} B`;
  return n < 1024 ** 2 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / 1024 ** 2).toFixed(1)} MiB`;
}

/** One epoch in words, every number with its unit. */
export function epochText(e: EpochFields): string {
  const parts = [`epoch ${e.epoch} (${e.trigger})`];
  if (e.pauseUs !== null) parts.push(`pause ${msText(e.pauseUs / 1000)}`);
  parts.push(`${e.dirtyPages} dirty pages`, bytesText(e.bytes));
  if (e.totalMs !== null) parts.push(`total ${msText(e.totalMs)}`);
  if (e.applyMs !== null) parts.push(`applied in ${msText(e.applyMs)}`);
  return parts.join(', ');
}

/** History events shown. */
const SHOWN_EVENTS = 5;

const orDash = (v: number | string | null): string => (v === null ? '-' : String(v));

/** This node and its peer, one column each. */
function pairTable(s: SnapshotEvent): string[] {
  const p: PeerFields | null = s.peer;
  const rows: [string, string, string][] = [
    ['', 'this node', p === null ? '' : 'peer'],
    ['role', s.node, orDash(p?.node ?? null)],
    ['state', s.state, orDash(p?.state ?? null)],
    ['generation', orDash(s.generation), orDash(p?.generation ?? null)],
    ['heartbeat', s.heartbeat ?? 'n/a', p === null ? '' : (p.heartbeat ?? (p.fetchedAt === null ? '-' : 'n/a'))],
    ['last epoch', String(s.lastEpoch), orDash(p?.lastEpoch ?? null)],
    ['lag', msText(s.lagMs), p === null ? '' : msText(p.lagMs)],
    ['held output', s.heldBytes === null ? 'none' : bytesText(s.heldBytes), p === null ? '' : p.heldBytes === null ? (p.fetchedAt === null ? '-' : 'none') : bytesText(p.heldBytes)],
    ['service clients', String(s.clients), orDash(p?.clients ?? null)],
  ];
  const w0 = Math.max(...rows.map((r) => r[0].length));
  const w1 = Math.max(...rows.map((r) => r[1].length));
  const table = rows.map(([a, b, c]) => `  ${a.padEnd(w0)}  ${b.padEnd(w1)}  ${c}`.trimEnd());
  if (p === null) return ['pair:      no peer monitor configured (monitor.peer): this node only', ...table];
  const read = p.fetchedAt === null ? 'never read' : `read ${secondsText(s.ts - p.fetchedAt)} before this snapshot`;
  const head = p.reachable ? `pair:      peer monitor ${p.url} (${read})` : `pair:      peer monitor ${p.url} UNREACHABLE: ${p.error ?? 'no answer'} (${read}; its column is the last known)`;
  return [head, ...table];
}

function secondsText(ms: number): string {
  const s = Math.max(0, ms) / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  if (s < 3600) return `${(s / 60).toFixed(0)} min`;
  if (s < 86_400) return `${(s / 3600).toFixed(1)} h`;
  return `${(s / 86_400).toFixed(1)} days`;
}

/** The pair's latest failover: this node's or the one its peer tells of. */
function lastFailover(s: SnapshotEvent): { on: NodeRole | 'peer'; f: FailoverFields } | undefined {
  const own = s.lastFailover === null ? undefined : { on: s.node, f: s.lastFailover };
  const peer = s.peer?.lastFailover ? { on: s.peer.node ?? ('peer' as const), f: s.peer.lastFailover } : undefined;
  if (own === undefined || peer === undefined) return own ?? peer;
  return peer.f.ts > own.f.ts ? peer : own;
}

export function statusText(s: SnapshotEvent): string {
  const h = health(s);
  const last = s.recent.at(-1);
  const lines = [
    `node:      ${s.node}`,
    `state:     ${s.state} (${s.reason})`,
    `health:    ${h.healthy ? 'healthy' : 'NOT HEALTHY'}: ${h.why}`,
    `mode:      ${s.mode ?? 'n/a'}${s.intervalMs === null ? '' : `, every ${s.intervalMs} ms`}`,
    `epoch:     ${s.lastEpoch}${last?.session === undefined || last.session === null ? '' : ` (session ${last.session})`}`,
    `lag:       ${msText(s.lagMs)}`,
    // A big guest's pre-copy takes minutes: how far it got, while it runs.
    ...(s.precopy === null ? [] : [`progress:  ${precopyLine(s.precopy)}`]),
    `last:      ${last ? epochText(last) : '-'}`,
    `controls:  ${s.actions.join(', ') || 'none'}`,
    `clients:   ${s.clients} connected to the guest's service`,
    `arbiter:   ${arbiterLine(s.arbiter)}`,
    '',
    ...pairTable(s),
  ];
  const failover = lastFailover(s);
  lines.push(
    failover === undefined
      ? 'last failover: none known to this node or its peer'
      : `last failover: on the ${failover.on}, ${secondsText(s.ts - failover.f.ts)} before this snapshot, at ${failoverLine(failover.f)}`,
  );
  const recent = s.history.slice(-SHOWN_EVENTS);
  lines.push(recent.length === 0 ? 'events:    none since the monitor started' : `events:    the last ${recent.length} of ${s.history.length} kept`, ...recent.map((e) => `  ${eventLine(e)}`));
  return `${lines.join('\n')}\n`;
}

/** Every domain's status; one domain as a monitor of one node always printed it. */
export function domainsText(all: SnapshotEvent[]): string {
  if (all.length === 0) return 'domains:   none shown by this monitor yet\nhealth:    NOT HEALTHY: nothing is protected here\n';
  if (all.length === 1) return statusText(all[0]);
  const healthy = all.filter((s) => health(s).healthy).length;
  const head = `domains:   ${all.length} (${all.map((s) => s.domain ?? '?').join(', ')}); ${healthy === all.length ? 'all healthy' : `${all.length - healthy} NOT HEALTHY`}\n`;
  return [head, ...all.map((s) => `== domain ${s.domain ?? '?'} ==\n${statusText(s)}`)].join('\n');
}

export function statusCommand(yargs: Argv): Argv {
  return yargs.command<StatusArgs>(
    'status [url]',
    `one snapshot from a monitor; exit status ${EXIT_UNHEALTHY} when the node is not healthy (a primary not protected, a secondary not standing by nor serving)`,
    (y) =>
      y
        .positional('url', { type: 'string', describe: `monitor URL or HOST:PORT (default ${DEFAULT_MONITOR_URL})` })
        .option('json', { type: 'boolean', default: false, describe: 'print the snapshot event as JSON' })
        .option('domain', { requiresArg: true, type: 'string', describe: 'the domain to report, on a monitor showing several (default: every one)' })
        .option('token-file', { requiresArg: true, type: 'string', describe: 'file holding the token, for a monitor that wants it to be read (default: $TANDEM_MONITOR_TOKEN)' }),
    async (args) => {
      const urls = operandMonitorUrls(args.url ?? DEFAULT_MONITOR_URL);
      const token = resolveCliToken(args['token-file'] === undefined ? undefined : flagPath(args['token-file'], '--token-file'));
      const domain = flagDomain(args.domain);
      const all = await fetchStatuses(urls, token, domain === undefined ? {} : { domain });
      process.stdout.write(args.json ? all.map((s) => jsonLine(s)).join('') : domainsText(all));
      if (all.length === 0 || !all.every((s) => health(s).healthy)) process.exitCode = EXIT_UNHEALTHY;
    },
  );
}
