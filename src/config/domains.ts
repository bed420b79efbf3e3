/**
 * Many domains in one process (`domains:` in the configuration): each entry
 * names a domain and lays its own keys over the file's top-level sections.
 * Here every entry becomes the full configuration of one node, as if it had
 * a file of its own, and the entries are checked as a whole: two domains
 * never share a name, nor an address one of the two processes binds or
 * connects to (each domain has its own stream and heartbeat connection, so
 * that one domain's backpressure, bad stream or reconnect never holds
 * another's; docs/operations.md, "Many domains").
 */
import { insecureExposure } from '../transport/tls-config.js';
import { formatAddress, type Address } from '../util/address.js';
import { primaryIntervalProblem, type DomainEntry, type NodeRole, type TandemConfig } from './config.js';

/** One domain of a many-domain process: its name, its mode if it sets one, and its node's whole configuration. */
export interface DomainPlan {
  name: string;
  /** Left out in the file: the command's --mode. */
  mode: 'remus' | 'colo' | undefined;
  cfg: TandemConfig;
}

/** The keys given (a value, not undefined) of an overlay. */
function given<T extends object>(overlay: T | undefined): Partial<T> {
  if (overlay === undefined) return {};
  return Object.fromEntries(Object.entries(overlay).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** Entry `entry`'s whole configuration: the base with its keys laid over, named as at the arbiter, with no monitor of its own. */
function derive(base: TandemConfig, entry: DomainEntry): TandemConfig {
  const cfg = structuredClone(base);
  cfg.domains = undefined;
  cfg.arbiter.domain = entry.name;
  // The process has one monitor, for every domain (src/monitor/attach.ts): a node never starts its own.
  cfg.monitor.listen = undefined;
  if (entry.domain !== undefined) cfg.domain = structuredClone(entry.domain);
  Object.assign(cfg.primary, structuredClone(given(entry.primary)));
  Object.assign(cfg.secondary, structuredClone(given(entry.secondary)));
  Object.assign(cfg.colo, structuredClone(given(entry.colo)));
  return cfg;
}

/**
 * Each entry of `base.domains` as its node's configuration (none without
 * `domains:`). Pure: the same base gives the same plans, and the base is
 * not changed; the flags a command applies to the base (TLS, arbiter, log
 * level, hooks) reach every domain.
 */
export function domainConfigs(base: TandemConfig): DomainPlan[] {
  return (base.domains ?? []).map((entry) => ({ name: entry.name, mode: entry.mode, cfg: derive(base, entry) }));
}

const WILDCARD_HOSTS = new Set(['0.0.0.0', '::', '']);

/** Whether two addresses are one for a listener (a wildcard host covers every address on its port); port 0 is any free port, never shared. */
function clash(a: Address, b: Address): boolean {
  if (a.port === 0 || b.port === 0 || a.port !== b.port) return false;
  return a.host === b.host || WILDCARD_HOSTS.has(a.host) || WILDCARD_HOSTS.has(b.host);
}

const plus = (a: Address, n: number): Address => ({ host: a.host, port: a.port === 0 ? 0 : Math.min(65535, a.port + n) });

interface Used {
  /** `domains[i].key`, and how a default was made. */
  key: string;
  address: Address;
}

/**
 * The addresses one process uses for domain `i`, by what they are: those the
 * primary's process binds, those it connects to (each domain its own
 * secondary listener), those the secondary's binds. Defaults are made as
 * the nodes make them (heartbeat: port + 1, COLO net link: port + 2).
 */
function addressesOf(plan: DomainPlan, i: number, role: NodeRole | undefined): Used[][] {
  const { primary: p, secondary: s, colo } = plan.cfg;
  const at = (key: string, address: Address | undefined, by?: string): Used[] =>
    address === undefined ? [] : [{ key: `domains[${i}].${key}${by === undefined ? '' : ` (by default ${by})`}`, address }];
  const colos = plan.mode === 'colo' || colo.net !== undefined;
  const primaryBinds = [...at('primary.service', p.service)];
  const primaryReaches =
    p.secondary === undefined
      ? []
      : [
          ...at('primary.secondary', p.secondary),
          ...(p.heartbeat === undefined ? at('primary.heartbeat', plus(p.secondary, 1), 'primary.secondary + 1') : at('primary.heartbeat', p.heartbeat)),
        ];
  const secondaryBinds = [
    ...at('secondary.listen', s.listen),
    ...(s.heartbeat === undefined ? at('secondary.heartbeat', plus(s.listen, 1), 'secondary.listen + 1') : at('secondary.heartbeat', s.heartbeat)),
    ...at('secondary.service', s.service),
    ...(colos ? (colo.net === undefined ? at('colo.net', plus(s.listen, 2), 'secondary.listen + 2') : at('colo.net', colo.net)) : []),
  ];
  const groups: Used[][] = [];
  if (role !== 'secondary') groups.push(primaryBinds, primaryReaches);
  if (role !== 'primary') groups.push(secondaryBinds);
  return groups;
}

/**
 * What is wrong with `base.domains` as a whole, naming the keys
 * (`domains[2].primary.service`); undefined when nothing is. `role`: the
 * process it is for (a file with `role:` is checked for its role alone,
 * one without for both: a pair's shared file).
 */
export function domainsProblem(base: TandemConfig, role: NodeRole | undefined = base.role): string | undefined {
  const entries = base.domains;
  if (entries === undefined) return undefined;
  // One address cannot float for many domains, each failing over on its own.
  if (base.floatingAddress !== undefined) return 'floating_address: not with domains: (one address cannot move with many domains, each failing over on its own); serve each domain on its own address';
  const seen = new Map<string, number>();
  for (const [i, entry] of entries.entries()) {
    const first = seen.get(entry.name);
    if (first !== undefined) return `domains[${i}].name: "${entry.name}" is domains[${first}]'s name too; each domain needs its own`;
    seen.set(entry.name, i);
  }
  const plans = domainConfigs(base);
  // Two entries naming one Xen domain would checkpoint one guest twice (a name merged from the top level counts).
  const xenNames = new Map<string, number>();
  for (const [i, plan] of plans.entries()) {
    const d = plan.cfg.domain;
    if (d.type !== 'xen' || d.name === undefined) continue;
    const first = xenNames.get(d.name);
    if (first !== undefined) return `domains[${i}].domain.name ("${d.name}") is also domains[${first}]'s: each entry protects its own Xen domain`;
    xenNames.set(d.name, i);
  }
  for (const [i, plan] of plans.entries()) {
    const intervals = primaryIntervalProblem(plan.cfg.primary, `domains[${i}].primary`);
    if (intervals !== undefined) return intervals;
    const exposed = insecureExposure(plan.cfg);
    if (exposed !== undefined) return `domains[${i}] (${plan.name}): ${exposed}`;
  }
  const used = plans.map((plan, i) => addressesOf(plan, i, role));
  const groups = used[0]?.length ?? 0;
  for (let g = 0; g < groups; g++) {
    for (let i = 0; i < used.length; i++) {
      for (let j = 0; j < i; j++) {
        for (const a of used[i][g]) {
          const b = used[j][g].find((u) => clash(a.address, u.address));
          if (b !== undefined) return `${a.key} (${formatAddress(a.address)}) is also ${b.key} (${formatAddress(b.address)}): each domain needs its own address`;
        }
      }
    }
  }
  return undefined;
}
