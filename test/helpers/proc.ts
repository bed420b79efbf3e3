/** A `tandem` process spawned by a test, its JSON log lines collected and waited on. */
import { spawn, type ChildProcess } from 'node:child_process';
import { after } from 'node:test';
import { onJsonLines, type JsonLine } from '../../src/util/json-lines.js';
import { CLI } from './cli.js';
import { tlsArgs } from './tls.js';

export interface TandemProcess {
  child: ChildProcess;
  lines: JsonLine[];
  /** Everything the parsed stream carried, as text. */
  text: () => string;
  /** The first line (already seen or still to come) that matches; fails on timeout or exit. */
  waitLine: (pred: (l: JsonLine) => boolean, what: string) => Promise<JsonLine>;
  closed: Promise<number | null>;
}

/** Spawns `tandem ARGS`, parsing `stream` as JSON lines (stderr for the services' logs, stdout for `watch --json`). */
export function spawnTandem(args: string[], options: { stream?: 'stderr' | 'stdout'; timeoutMs?: number; cwd?: string } = {}): TandemProcess {
  const stream = options.stream ?? 'stderr';
  const child = spawn(process.execPath, [CLI, ...args], { cwd: options.cwd, stdio: ['ignore', stream === 'stdout' ? 'pipe' : 'ignore', stream === 'stderr' ? 'pipe' : 'ignore'] });
  after(() => child.kill('SIGKILL'));
  const lines: JsonLine[] = [];
  const waiters: { pred: (l: JsonLine) => boolean; resolve: (l: JsonLine) => void }[] = [];
  let text = '';
  const source = child[stream]!;
  source.on('data', (d: Buffer) => (text += d.toString()));
  onJsonLines(source, (l) => {
    lines.push(l);
    for (const w of [...waiters]) if (w.pred(l)) w.resolve(l);
  });
  const closed = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
  const waitLine = (pred: (l: JsonLine) => boolean, what: string): Promise<JsonLine> => {
    const seen = lines.find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), options.timeoutMs ?? 90_000);
      waiters.push({
        pred,
        resolve: (l) => {
          clearTimeout(timer);
          resolve(l);
        },
      });
      void closed.then(() => setImmediate(() => reject(new Error(`the process exited while waiting for ${what}`))));
    });
  };
  return { child, lines, text: () => text, waitLine, closed };
}

/** The log line a node writes when its monitor listens (its `monitor` field is the URL). */
export const monitorUrl = (l: JsonLine): boolean => typeof l.monitor === 'string' && /monitor listening/.test(String(l.msg));

export interface MonitoredPair {
  secondary: TandemProcess;
  primary: TandemProcess;
  secondaryMonitor: string;
  primaryMonitor: string;
}

/** `tandem secondary` and `tandem primary` from `config` over mutual TLS, each with a monitor on a free port, once protected. */
export async function monitoredPair(config: string): Promise<MonitoredPair> {
  const secondary = spawnTandem(['secondary', '--config', config, '--monitor', '127.0.0.1:0', ...(await tlsArgs('secondary'))]);
  const secondaryMonitor = String((await secondary.waitLine(monitorUrl, "the secondary's monitor")).monitor);
  const port = Number((await secondary.waitLine((l) => typeof l.port === 'number' && /secondary listening/.test(String(l.msg)), 'the secondary')).port);
  const hb = String((await secondary.waitLine((l) => typeof l.heartbeat === 'string', 'the heartbeat channel')).heartbeat);
  const primary = spawnTandem(['primary', '--config', config, '--secondary', `127.0.0.1:${port}`, '--heartbeat', hb, '--service', '127.0.0.1:0', '--monitor', '127.0.0.1:0', ...(await tlsArgs('primary'))]);
  const primaryMonitor = String((await primary.waitLine(monitorUrl, "the primary's monitor")).monitor);
  await primary.waitLine((l) => l.state === 'protected', 'protection');
  return { secondary, primary, secondaryMonitor, primaryMonitor };
}
