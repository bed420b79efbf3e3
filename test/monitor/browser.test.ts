/**
 * The dashboard in a real browser (Debian's chromium driven by
 * playwright-core) against real primary and secondary processes: its charts
 * fill and keep moving, a control action without the token is refused and
 * one with it is done, and the secondary's page shows the failover when the
 * primary is killed. Then how it reads to a person, at 1000 and 1600 px:
 * screenshots (their paths are the test's diagnostics) and a list of checks
 * in words (one-line header, nothing overflowing, units on every axis, no
 * chart before the node started, panels that do not apply marked n/a), the
 * lag while the standby is gone, the pre-copy bar while it is re-protected
 * (through a relay that slows the replication link down), and the events
 * across a reload. Chromium is a test dependency (package.json
 * tandem.debianTestPackages): when it is missing this test fails.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test, type TestContext } from 'node:test';
import { chromium, type Browser, type Page } from 'playwright-core';
import { tempDir } from '../helpers/cli.js';
import { PacedRelay } from '../helpers/paced-relay.js';
import { monitorUrl, monitoredPair, spawnTandem, type TandemProcess } from '../helpers/proc.js';
import { tlsArgs } from '../helpers/tls.js';
import { MonitorServer } from '../../src/monitor/http.js';
import { FakeSource, silent } from './helpers.js';

const CHROMIUM = '/usr/bin/chromium';
const TOKEN = 'browser-test-token-0123456789';
const tmp = tempDir();
after(() => tmp.cleanup());


/** Points on a chart, as the dashboard reports them. */
const points = async (page: Page, id: string): Promise<number> => Number(await page.getAttribute(`#${id}`, 'data-points'));

// Page-side conditions are functions run in the page (Playwright calls them
// without eval, which the dashboard's CSP forbids). This project compiles
// without the DOM library, so the little of it they use is declared here.
interface Rect {
  left: number;
  right: number;
  top: number;
  bottom: number;
  width: number;
  height: number;
}
interface PageElement {
  id: string;
  tagName: string;
  textContent: string | null;
  dataset: Record<string, string | undefined>;
  hidden: boolean;
  scrollWidth: number;
  clientWidth: number;
  children: ArrayLike<PageElement>;
  getBoundingClientRect(): Rect;
  querySelector(selector: string): PageElement | null;
}
declare const document: { documentElement: PageElement; querySelector(selector: string): PageElement | null; querySelectorAll(selector: string): Iterable<PageElement> };
declare const window: { innerWidth: number; getComputedStyle(el: PageElement): { display: string; visibility: string } };

/**
 * What the page shows, for a wait that timed out: the state, the stream's
 * link, the reason and the newest events, so a failure says where it stood.
 */
async function shows(page: Page): Promise<string> {
  const text = async (sel: string): Promise<string> => JSON.stringify(await page.textContent(sel, { timeout: 1000 }).catch((err: Error) => `(unreadable: ${err.message})`));
  const events = await page.$$eval('#events li', (lis) => lis.slice(0, 12).map((li) => (li as unknown as PageElement).textContent ?? '')).catch(() => []);
  return `#state ${await text('#state')}, #link ${await text('#link')}, #reason ${await text('#reason')}, events ${JSON.stringify(events)}`;
}

/** Waits for a page-side condition; a timeout names the condition and what the page showed instead. */
async function waitPage(page: Page, what: string, wait: Promise<unknown>): Promise<void> {
  try {
    await wait;
  } catch (err) {
    throw new Error(`${what}: not seen; the page shows ${await shows(page)}`, { cause: err });
  }
}

const textIs = (page: Page, sel: string, value: string): Promise<void> =>
  waitPage(page, `${sel} reading ${JSON.stringify(value)}`, page.waitForFunction(([s, v]) => document.querySelector(s)?.textContent === v, [sel, value] as const));
const textAbove = (page: Page, sel: string, n: number): Promise<void> =>
  waitPage(page, `${sel} above ${n}`, page.waitForFunction(([s, v]) => Number(document.querySelector(s)?.textContent) > v, [sel, n] as const));
const dataIs = (page: Page, sel: string, key: string, value: string): Promise<void> =>
  waitPage(page, `${sel} data-${key} ${JSON.stringify(value)}`, page.waitForFunction(([s, k, v]) => document.querySelector(s)?.dataset[k] === v, [sel, key, value] as const));
const dataAtLeast = (page: Page, sel: string, key: string, n: number): Promise<void> =>
  waitPage(page, `${sel} data-${key} at least ${n}`, page.waitForFunction(([s, k, v]) => Number(document.querySelector(s)?.dataset[k]) >= v, [sel, key, n] as const));
const textMatches = (page: Page, sel: string, re: RegExp): Promise<void> =>
  waitPage(page, `${sel} matching ${re.source}`, page.waitForFunction(([s, src]) => new RegExp(src).test(document.querySelector(s)?.textContent ?? ''), [sel, re.source] as const));
const logHas = (page: Page, re: RegExp): Promise<void> =>
  waitPage(page, `an event matching ${re.source}`, page.waitForFunction((src) => [...document.querySelectorAll('#events li')].some((li) => new RegExp(src).test(li.textContent ?? '')), re.source));

/** Debian's chromium, headless; a slow start on a loaded machine is waited for. */
const launch = (): Promise<Browser> =>
  chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
    timeout: 120_000,
  });

/** Collects what would show in the browser console as an error (script errors, CSP refusals). */
function consoleErrors(page: Page): string[] {
  const errors: string[] = [];
  page.on('pageerror', (err) => errors.push(err.message));
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(m.text());
  });
  return errors;
}

test('the dashboard charts live epochs, refuses control without the token, and shows a failover', { timeout: 240_000 }, async () => {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: apt-get install -y --no-install-recommends chromium (npm run test-deps does it as root)`);
  const tokenFile = tmp.path('token');
  writeFileSync(tokenFile, TOKEN, { mode: 0o600 });
  const config = tmp.path('browser.yaml');
  // Heartbeats that tolerate a loaded machine: chromium starting on two shared cores can stall both
  // nodes past the default 250 ms, and a false failover would take the pair this test watches away.
  writeFileSync(config, `domain:\n  memory_mib: 4\nprimary:\n  interval_ms: 40\nsecondary:\n  listen: 127.0.0.1:0\n  service: 127.0.0.1:0\nheartbeat:\n  timeout_ms: 3000\nmonitor:\n  token_file: ${tokenFile}\n`);
  const { secondary, primary, secondaryMonitor: secUrl, primaryMonitor: priUrl } = await monitoredPair(config);

  let browser: Browser | undefined;
  try {
    browser = await launch();
    const page = await browser.newPage();
    page.setDefaultTimeout(90_000);
    const errors = consoleErrors(page);
    await page.goto(priUrl);
    await textIs(page, '#state', 'protected');
    assert.equal(await page.textContent('#node'), 'primary');
    assert.equal(await page.textContent('#mode'), 'remus');
    assert.equal(await page.textContent('#interval'), '40 ms');
    assert.equal(await page.textContent('#link'), 'live');
    // uPlot drew its canvases.
    assert.equal(await page.locator('.chart canvas').count(), 5);

    // The charts move: more points, and a later epoch, as time goes on.
    await dataAtLeast(page, '#chart-pause', 'points', 5);
    const firstPoints = await points(page, 'chart-pause');
    const firstEpoch = Number(await page.textContent('#last-epoch'));
    await dataAtLeast(page, '#chart-pause', 'points', firstPoints + 1);
    await textAbove(page, '#last-epoch', firstEpoch);
    assert.ok((await points(page, 'chart-rate')) > 0, 'the rate chart has its window');
    assert.match(String(await page.textContent('#lag')), /^\d+(\.\d)? m?s$/);

    // Control without the token: refused by the monitor, and nothing happens.
    assert.equal(await page.inputValue('#token'), '');
    await page.click('button[data-action="set-mode"]');
    await dataIs(page, '#control-result', 'outcome', 'refused');
    assert.match(String(await page.textContent('#control-result')), /ERR_MONITOR_UNAUTHORIZED/);
    assert.equal(await page.textContent('#mode'), 'remus', 'the refused action changed nothing');
    await logHas(page, /control set-mode by 127\.0\.0\.1:\d+: refused/);

    // With the token the same button works.
    await page.fill('#token', TOKEN);
    await page.selectOption('#mode-select', 'manual');
    await page.click('button[data-action="set-mode"]');
    await dataIs(page, '#control-result', 'outcome', 'ok');
    await textIs(page, '#mode', 'manual');
    assert.equal(await page.textContent('#interval'), '–');
    // The primary does not offer failover: its button is disabled.
    assert.ok(await page.isDisabled('button[data-action="failover"]'));

    // The secondary's page: applied epochs chart, then the failover.
    const sec = await browser.newPage();
    sec.setDefaultTimeout(90_000);
    const secErrors = consoleErrors(sec);
    await sec.goto(secUrl);
    await textIs(sec, '#state', 'standby');
    // Back to timed checkpoints so the secondary keeps receiving epochs.
    await page.selectOption('#mode-select', 'remus');
    await page.click('button[data-action="set-mode"]');
    await textIs(page, '#mode', 'remus');
    const secPoints = await points(sec, 'chart-dirty');
    await dataAtLeast(sec, '#chart-dirty', 'points', secPoints + 1);
    assert.ok(await sec.isEnabled('button[data-action="failover"]'));
    assert.ok(await sec.isDisabled('button[data-action="checkpoint"]'));

    primary.child.kill('SIGKILL');
    await textIs(sec, '#state', 'failed-over');
    assert.equal(await sec.getAttribute('#state', 'data-state'), 'failed-over');
    assert.match(String(await sec.textContent('#reason')), /the guest runs here from epoch \d+/);
    // Serving the guest with no standby of its own: its lag is the time the guest has run unprotected.
    await textMatches(sec, '#lag', /^unprotected for \d+ s$/);
    await logHas(sec, /state failing-over → failed-over/);
    // The primary's page notices its monitor is gone, and keeps saying so
    // through failed retries (the third waits 2 s) rather than turning into
    // "refused or unreachable" at the first one.
    await textMatches(page, '#link', /^lost since /);
    await textMatches(page, '#link', /^lost since .*; retrying in [2-9] s$/);

    // A monitor that needs the token even to be read: the page loads, says the
    // stream is refused, and connects once the token is entered.
    const closedConfig = tmp.path('closed.yaml');
    writeFileSync(closedConfig, `domain:\n  memory_mib: 4\nsecondary:\n  listen: 127.0.0.1:0\n  service: 127.0.0.1:0\nmonitor:\n  token_file: ${tokenFile}\n  loopback_read: false\n`);
    const closed = spawnTandem(['secondary', '--config', closedConfig, '--monitor', '127.0.0.1:0', ...(await tlsArgs('secondary'))]);
    const closedUrl = String((await closed.waitLine(monitorUrl, "the closed secondary's monitor")).monitor);
    const locked = await browser.newPage();
    locked.setDefaultTimeout(90_000);
    await locked.goto(closedUrl);
    await textMatches(locked, '#link', /^refused or unreachable/);
    assert.equal(await locked.textContent('#state'), 'connecting…', 'nothing is shown without the token');
    await locked.fill('#token', TOKEN);
    await locked.dispatchEvent('#token', 'change');
    await textIs(locked, '#link', 'live');
    await textIs(locked, '#state', 'waiting');
    closed.child.kill('SIGTERM');

    assert.deepEqual(
      errors.filter((e) => !/WebSocket|ERR_CONNECTION_REFUSED/.test(e)),
      [],
      'no script error or CSP refusal on the primary page',
    );
    assert.deepEqual(secErrors, [], 'no script error or CSP refusal on the secondary page');
  } catch (err) {
    // The nodes' own account of the same moments (their last log lines).
    const tail = (text: string): string => text.split('\n').slice(-25).join('\n');
    throw new Error(`${err instanceof Error ? err.message : String(err)}\n--- primary log (last lines)\n${tail(primary.text())}\n--- secondary log (last lines)\n${tail(secondary.text())}`, { cause: err });
  } finally {
    await browser?.close();
    secondary.child.kill('SIGTERM');
  }
});

/** The charts, by element id. */
const CHARTS = ['chart-pause', 'chart-dirty', 'chart-rate', 'chart-bytes', 'chart-div'];

/** What the dashboard records of a chart's axes as drawn (data-axes; dashboard.js, recordAxes). */
interface DrawnAxes {
  width: number;
  yRoom: number;
  from: number;
  to: number;
  x: { text: string; left: number; right: number }[];
  y: { text: string; width: number }[];
}

/**
 * What a reader would find wrong with the page as laid out now, each in
 * words; empty when nothing is. Runs in the page, so it is self-contained.
 */
function layoutProblems(): string[] {
  const problems: string[] = [];
  const shown = (el: PageElement): boolean => {
    const style = window.getComputedStyle(el);
    return style.display !== 'none' && style.visibility !== 'hidden' && el.getBoundingClientRect().width > 0;
  };
  const name = (el: PageElement): string => (el.id ? `#${el.id}` : `<${el.tagName.toLowerCase()}> "${(el.textContent ?? '').trim().replace(/\s+/g, ' ').slice(0, 50)}"`);
  const px = (n: number): string => `${Math.round(n)} px`;

  const header = document.querySelector('header');
  if (header === null) return ['the page has no header'];
  const parts = Array.from(header.children).filter(shown);
  const lowest = parts.reduce((a, b) => (b.getBoundingClientRect().top > a.getBoundingClientRect().top ? b : a));
  const highest = parts.reduce((a, b) => (b.getBoundingClientRect().bottom < a.getBoundingClientRect().bottom ? b : a));
  if (lowest.getBoundingClientRect().top >= highest.getBoundingClientRect().bottom) {
    problems.push(`the header takes more than one line: ${name(lowest)} starts at y=${px(lowest.getBoundingClientRect().top)}, below the bottom of ${name(highest)} (y=${px(highest.getBoundingClientRect().bottom)})`);
  }
  if (header.scrollWidth > header.clientWidth) problems.push(`the header's content is ${px(header.scrollWidth)} wide in a ${px(header.clientWidth)} header: its right end is cut off`);
  const root = document.documentElement;
  if (root.scrollWidth > window.innerWidth) problems.push(`the page scrolls sideways: ${px(root.scrollWidth)} of content in a ${px(window.innerWidth)} window`);

  // Boxes whose text must fit them: labels, panels, table cells, the events.
  const boxes = 'header *, .statusline > *, .panel, .panel h2, .pair th, .pair td, .note, #last-failover, .precopy-facts > span, figure, figcaption, .chart, figure .na, #events li, .buttons button, output, dd, dt';
  for (const el of document.querySelectorAll(boxes)) {
    if (!shown(el) || el.clientWidth === 0) continue;
    if (el.scrollWidth > el.clientWidth) problems.push(`${name(el)} overflows its box: ${px(el.scrollWidth)} of content in ${px(el.clientWidth)}`);
  }

  const unit = /^-?\d+(\.\d+)?(\/s| (µs|ms|s|B\/s|kB\/s|MB\/s|GB\/s|pages?)|k pages)$/;
  for (const chart of document.querySelectorAll('.chart')) {
    if (!shown(chart)) continue;
    const axes = JSON.parse(chart.dataset.axes ?? 'null') as DrawnAxes | null;
    if (axes === null) {
      problems.push(`#${chart.id} is shown but has drawn no axes`);
      continue;
    }
    if (axes.width > chart.clientWidth) problems.push(`#${chart.id} is drawn ${px(axes.width)} wide in a ${px(chart.clientWidth)} box`);
    if (axes.y.length === 0) problems.push(`#${chart.id} has no value labels`);
    for (const y of axes.y) {
      if (!unit.test(y.text)) problems.push(`#${chart.id}'s value label "${y.text}" carries no unit`);
      if (y.width > axes.yRoom) problems.push(`#${chart.id}'s value label "${y.text}" is ${px(y.width)} wide but its axis leaves ${px(axes.yRoom)}: it is clipped`);
    }
    if (axes.x.length === 0) problems.push(`#${chart.id} has no time labels`);
    axes.x.forEach((x, i) => {
      if (!/^\d\d:\d\d(:\d\d)?$/.test(x.text)) problems.push(`#${chart.id}'s time label "${x.text}" is not a clock time`);
      if (x.left < 0 || x.right > axes.width) problems.push(`#${chart.id}'s time label "${x.text}" runs past the chart's edge (${px(x.left)} to ${px(x.right)} of ${px(axes.width)})`);
      const next = axes.x[i + 1];
      if (next !== undefined && x.right + 4 > next.left) problems.push(`#${chart.id}'s time labels "${x.text}" and "${next.text}" overlap or touch (${px(x.right)} and ${px(next.left)})`);
    });
  }
  return problems;
}

/** Every chart's x axis spans `seconds` (the one window of the page). */
const windowIs = (page: Page, seconds: number): Promise<void> =>
  waitPage(
    page,
    `every chart spanning ${seconds} s`,
    page.waitForFunction(
      (span) =>
        Array.from(document.querySelectorAll('.chart')).every((c) => {
          const a = JSON.parse(c.dataset.axes ?? 'null') as { from: number; to: number } | null;
          return a !== null && a.to - a.from === span;
        }),
      seconds,
    ),
  );

/** The monitor's JSON at `path`. */
async function getJson(url: string, path: string): Promise<Record<string, unknown>> {
  const res = await fetch(new URL(path, url));
  assert.equal(res.status, 200, `${path} of ${url}`);
  return (await res.json()) as Record<string, unknown>;
}

/** When the node's process started, ms since the epoch (its /metrics). */
async function startedAt(url: string): Promise<number> {
  const text = await (await fetch(new URL('/metrics', url))).text();
  const m = /^process_start_time_seconds(?:\{[^}]*\})? (\S+)$/m.exec(text);
  assert.ok(m, `${url}metrics has no process_start_time_seconds`);
  return Number(m[1]) * 1000;
}

const clockOf = (ms: number): string => new Date(ms).toISOString().slice(11, 23);

/** Each chart with data starts at or after `startMs`, when the node started. */
async function chartsStartAfter(page: Page, what: string, startMs: number): Promise<void> {
  for (const id of CHARTS) {
    const first = await page.getAttribute(`#${id}`, 'data-first');
    if (first === null || first === '') continue;
    assert.ok(Number(first) >= startMs, `${what}: #${id}'s first point is at ${clockOf(Number(first))}, before the node started at ${clockOf(startMs)} (a chart must start where its data starts)`);
  }
  assert.notEqual(await page.getAttribute('#chart-rate', 'data-first'), '', `${what}: the epochs chart has no point at all`);
}

/** The panels that apply to a node, and the n/a of those that do not. */
async function panelsFit(page: Page, what: string, status: Record<string, unknown>): Promise<void> {
  const na = async (fig: string): Promise<string> => String(await page.getAttribute(`#${fig}`, 'data-na'));
  const naText = async (fig: string): Promise<string> => String(await page.textContent(`#${fig} .na`));
  if (status.node === 'primary') {
    assert.equal(await na('fig-pause'), 'false', `${what}: a primary's pause chart is marked n/a`);
    assert.ok(await page.isVisible('#chart-pause'), `${what}: a primary's pause chart is hidden`);
    assert.equal(await na('fig-div'), 'true', `${what}: a Remus primary shows a COLO divergence chart`);
    assert.match(await naText('fig-div'), /^n\/a in remus mode/, `${what}: the divergence panel does not say why it does not apply`);
  } else {
    assert.equal(await na('fig-pause'), 'true', `${what}: a secondary shows a pause chart, but it never pauses the guest`);
    assert.match(await naText('fig-pause'), /^n\/a on a secondary/, `${what}: the pause panel does not say why it does not apply`);
    assert.equal(await na('fig-div'), 'true', `${what}: a secondary shows a divergence chart`);
    assert.equal(await page.textContent('#mode'), 'n/a', `${what}: a secondary has no checkpoint mode`);
    assert.equal(await page.textContent('#pair-self-clients'), 'n/a (not serving)', `${what}: a standing-by secondary serves no clients`);
  }
  for (const fig of ['fig-pause', 'fig-div']) {
    if ((await na(fig)) === 'true') assert.ok(!(await page.isVisible(`#${fig} .chart`)), `${what}: #${fig} says n/a but still shows its chart`);
  }
  const held = String(await page.textContent('#pair-self-held'));
  if (typeof status.heldBytes === 'number') assert.match(held, /^\d+(\.\d)? (B|kB|MB|GB)$/, `${what}: held output ${status.heldBytes} bytes reads "${held}"`);
  else assert.match(held, /^n\/a/, `${what}: this node reports no held output (${JSON.stringify(status.heldBytes)}) but the page reads "${held}"`);
  const peerNote = String(await page.textContent('#peer-note'));
  if (!('peer' in status)) {
    assert.equal(await page.textContent('#pair-peer-state'), 'n/a', `${what}: the monitor reports no peer, yet the peer column has a state`);
    assert.match(peerNote, /does not report its peer/, `${what}: the pair panel does not say the peer is unknown`);
  } else if (status.peer === null) {
    assert.match(peerNote, /^peer: n\/a/, `${what}: the pair panel does not say there is no peer`);
  } else {
    assert.notEqual(await page.textContent('#pair-peer-state'), '–', `${what}: the monitor reports the peer, yet the peer column is empty`);
  }
  const failover = String(await page.textContent('#last-failover'));
  if (!('lastFailover' in status)) assert.match(failover, /^last failover: n\/a/, `${what}: "${failover}" for a monitor that does not report failovers`);
  else if (status.lastFailover === null) assert.equal(failover, 'last failover: none', `${what}: no failover happened, the page reads "${failover}"`);
  else assert.match(failover, /^last failover: .+ \(.+\)$/, `${what}: the last failover reads "${failover}"`);
}

test('the dashboard reads well at 1000 and 1600 px, counts time unprotected, shows a re-protection\'s pre-copy and keeps its events over a reload', { timeout: 480_000 }, async (t: TestContext) => {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: apt-get install -y --no-install-recommends chromium (npm run test-deps does it as root)`);
  // Kept after the test: the screenshots are what it leaves for a person to look at.
  const shots = mkdtempSync(join(tmpdir(), 'tandem-dashboard-'));
  const tokenFile = tmp.path('layout-token');
  writeFileSync(tokenFile, TOKEN, { mode: 0o600 });
  // 16 MiB of guest: its pre-copy through the relay paced at PACE takes seconds, long enough to watch.
  // Heartbeats as in the test above: a chromium start must not cause a false failover.
  const PACE = 2_000_000;
  const base = `domain:\n  memory_mib: 16\nprimary:\n  interval_ms: 40\n  retry_ms: 200\n  retry_max_ms: 1000\nheartbeat:\n  timeout_ms: 3000\nmonitor:\n  token_file: ${tokenFile}\n`;
  const firstConfig = tmp.path('layout.yaml');
  writeFileSync(firstConfig, `${base}secondary:\n  listen: 127.0.0.1:0\n  service: 127.0.0.1:0\n`);
  const startSecondary = async (config: string): Promise<{ proc: TandemProcess; url: string; port: number; heartbeat: string }> => {
    const proc = spawnTandem(['secondary', '--config', config, '--monitor', '127.0.0.1:0', ...(await tlsArgs('secondary'))]);
    const url = String((await proc.waitLine(monitorUrl, "the secondary's monitor")).monitor);
    const port = Number((await proc.waitLine((l) => typeof l.port === 'number' && /secondary listening/.test(String(l.msg)), 'the secondary')).port);
    const heartbeat = String((await proc.waitLine((l) => typeof l.heartbeat === 'string', 'the heartbeat channel')).heartbeat);
    return { proc, url, port, heartbeat };
  };
  let sec = await startSecondary(firstConfig);
  // The primary reaches the secondary through the relay, so the test can slow its pre-copy down.
  const relay = new PacedRelay({ host: '127.0.0.1', port: sec.port });
  const via = await relay.start();
  after(() => relay.stop());
  // The primary reads the secondary's monitor (--monitor-peer), so its pair panel has both columns.
  const primary = spawnTandem(['primary', '--config', firstConfig, '--secondary', `127.0.0.1:${via.port}`, '--heartbeat', sec.heartbeat, '--service', '127.0.0.1:0', '--monitor', '127.0.0.1:0', '--monitor-peer', sec.url, ...(await tlsArgs('primary'))]);
  const priUrl = String((await primary.waitLine(monitorUrl, "the primary's monitor")).monitor);
  await primary.waitLine((l) => l.state === 'protected', 'protection');
  const priStart = await startedAt(priUrl);
  const secStart = await startedAt(sec.url);

  const shoot = async (page: Page, label: string): Promise<void> => {
    const path = join(shots, `${label}.png`);
    await page.screenshot({ path, fullPage: true });
    t.diagnostic(`screenshot (${label}): ${path}`);
  };
  const readsWell = async (page: Page, label: string): Promise<void> => {
    await shoot(page, label);
    const problems = await page.evaluate(layoutProblems);
    assert.deepEqual(problems, [], `${label}: what a reader would find wrong:\n- ${problems.join('\n- ')}`);
  };

  let browser: Browser | undefined;
  try {
    browser = await launch();
    const errors: string[][] = [];
    for (const width of [1000, 1600]) {
      const pri = await browser.newPage({ viewport: { width, height: 1100 } });
      pri.setDefaultTimeout(90_000);
      errors.push(consoleErrors(pri));
      await pri.goto(priUrl);
      await textIs(pri, '#state', 'protected');
      await dataAtLeast(pri, '#chart-pause', 'points', 3);
      await dataAtLeast(pri, '#chart-rate', 'points', 3);
      await readsWell(pri, `primary-${width}px`);
      await chartsStartAfter(pri, `the primary at ${width} px`, priStart);
      await panelsFit(pri, `the primary at ${width} px`, await getJson(priUrl, '/api/status'));
      // The pair as the primary reads it from the secondary's monitor.
      await textIs(pri, '#pair-peer-state', 'standby');
      assert.match(String(await pri.textContent('#lag')), /^\d+(\.\d)? m?s$/, `the primary at ${width} px: a protected primary's lag is a time`);
      assert.ok(await pri.isHidden('#precopy'), `the primary at ${width} px: the pre-copy bar shows while protected`);

      const second = await browser.newPage({ viewport: { width, height: 1100 } });
      second.setDefaultTimeout(90_000);
      errors.push(consoleErrors(second));
      await second.goto(sec.url);
      await textIs(second, '#state', 'standby');
      await dataAtLeast(second, '#chart-dirty', 'points', 3);
      await readsWell(second, `secondary-${width}px`);
      await chartsStartAfter(second, `the secondary at ${width} px`, secStart);
      await panelsFit(second, `the secondary at ${width} px`, await getJson(sec.url, '/api/status'));
      assert.match(String(await second.textContent('#lag')), /^\d+(\.\d)? m?s$/, `the secondary at ${width} px: a standby's lag (since its last applied checkpoint) is a time`);
      await second.close();

      if (width === 1600) {
        // One window for every chart, chosen once.
        await pri.selectOption('#window', '60');
        await windowIs(pri, 60);
        await pri.selectOption('#window', '3600');
        await windowIs(pri, 3600);
        await readsWell(pri, `primary-${width}px-1h`);
        await pri.reload();
        await textIs(pri, '#state', 'protected');
        assert.equal(await pri.inputValue('#window'), '3600', 'the chosen window is forgotten on a reload');
        await windowIs(pri, 3600);
        await pri.selectOption('#window', '300');
      }
      await pri.close();
    }

    // The standby goes away: the lag reads as the time the guest has been unprotected.
    const watch = await browser.newPage({ viewport: { width: 1000, height: 1100 } });
    watch.setDefaultTimeout(90_000);
    errors.push(consoleErrors(watch));
    await watch.goto(priUrl);
    await textIs(watch, '#state', 'protected');
    sec.proc.child.kill('SIGTERM');
    await sec.proc.closed;
    // Refused like the stopped secondary itself, rather than accepted by the relay and closed.
    await relay.stop();
    await textMatches(watch, '#lag', /^unprotected for \d+ s$/);
    await textMatches(watch, '#lag', /^unprotected for [1-9]\d* s$/);
    assert.equal(await watch.getAttribute('#lag', 'data-unprotected'), 'true');
    const both = await watch.evaluate(() => [document.querySelector('#lag')?.textContent, document.querySelector('#pair-self-lag')?.textContent]);
    assert.equal(both[1], both[0], 'the pair panel and the header disagree on the lag');
    const counted = Number(/\d+/.exec(String(both[0]))?.[0]);
    await readsWell(watch, 'primary-1000px-unprotected');
    // A page opened now counts from the loss too, not from its own start.
    await watch.reload();
    await textMatches(watch, '#lag', /^unprotected for \d+ s$/);
    const recounted = Number(/\d+/.exec(String(await watch.textContent('#lag')))?.[0]);
    assert.ok(recounted >= counted - 1, `after a reload the page says unprotected for ${recounted} s, but it was ${counted} s before the reload: it counts from the reload, not from the loss`);

    // The standby comes back on its address, its link slowed: the re-protection's pre-copy shows as a bar.
    await relay.start();
    relay.pace(PACE);
    const againConfig = tmp.path('layout-again.yaml');
    writeFileSync(againConfig, `${base}secondary:\n  listen: 127.0.0.1:${sec.port}\n  heartbeat: ${sec.heartbeat}\n  service: 127.0.0.1:0\n`);
    sec = await startSecondary(againConfig);
    await waitPage(
      watch,
      'the pre-copy bar with a percentage',
      watch.waitForFunction(() => {
        const panel = document.querySelector('#precopy');
        return panel !== null && !panel.hidden && panel.dataset.percent !== undefined;
      }),
    );
    const bar = await watch.evaluate(() => ['#state', '#precopy-title', '#precopy-percent', '#precopy-rate', '#precopy-eta', '#precopy-detail'].map((s) => document.querySelector(s)?.textContent ?? ''));
    const [barState, title, percent, barRate, eta, detail] = bar;
    assert.equal(barState, 're-protecting', `the pre-copy bar shows in state ${barState}`);
    assert.match(title, /^Re-protecting: pre-copy, round \d+$/, `the pre-copy panel's title reads "${title}"`);
    assert.match(percent, /^(\d+(\.\d)? %|live rounds done)$/, `the pre-copy's progress reads "${percent}"`);
    assert.match(barRate, /^\d+(\.\d)? (B|kB|MB|GB)\/s$/, `the pre-copy's rate reads "${barRate}", not a rate with its unit`);
    assert.match(eta, /^(ETA \d.*|taking the first checkpoint)$/, `the pre-copy's ETA reads "${eta}"`);
    assert.match(detail, /^\d+\/\d+ pages, \d+(\.\d)? (B|kB|MB) sent in \d/, `the pre-copy's detail reads "${detail}"`);
    await readsWell(watch, 'primary-1000px-re-protecting');
    relay.pace(undefined);
    await textIs(watch, '#state', 'protected');
    assert.ok(await watch.isHidden('#precopy'), 'the pre-copy bar stays after protection is back');
    assert.match(String(await watch.textContent('#lag')), /^\d+(\.\d)? m?s$/, 'protected again, the lag is a time again');

    // The events: the re-protection is listed, and a reload keeps the list when the monitor keeps its history.
    const stateLines = async (): Promise<string[]> =>
      (await watch.$$eval('#events li', (lis) => lis.map((li) => (li as unknown as PageElement).textContent ?? ''))).filter((l) => /^\d\d:\d\d:\d\d state /.test(l));
    await logHas(watch, /state re-protecting → protected/);
    const seen = await stateLines();
    assert.ok(seen.some((l) => / → re-protecting: /.test(l)), `the events list does not show the re-protection starting: ${JSON.stringify(seen)}`);
    const kept = 'history' in (await getJson(priUrl, '/api/status'));
    await watch.reload();
    await textIs(watch, '#state', 'protected');
    const note = String(await watch.textContent('#history-note'));
    if (kept) {
      const again = await stateLines();
      for (const line of seen) assert.ok(again.includes(line), `after a reload the events list lost "${line}"; it shows ${JSON.stringify(again)}`);
      assert.match(note, /^the monitor's last \d+ events/, `the events list does not say it comes from the monitor's history: "${note}"`);
    } else {
      t.diagnostic('this monitor sends no history: checked that the page says so instead of the list surviving the reload');
      assert.equal(note, 'events since this page opened (this monitor keeps no history)', 'a monitor without history, and the page does not say the list starts at the page');
    }

    assert.deepEqual(
      errors.flat().filter((e) => !/WebSocket|ERR_CONNECTION_REFUSED/.test(e)),
      [],
      'no script error or CSP refusal on any page',
    );
  } catch (err) {
    const tail = (text: string): string => text.split('\n').slice(-25).join('\n');
    throw new Error(`${err instanceof Error ? err.message : String(err)}\n--- primary log (last lines)\n${tail(primary.text())}\n--- secondary log (last lines)\n${tail(sec.proc.text())}`, { cause: err });
  } finally {
    await browser?.close();
    sec.proc.child.kill('SIGTERM');
    primary.child.kill('SIGTERM');
  }
});

test('a monitor of two domains: a picker and an overview; the page follows the domain picked, and its controls reach that one alone', { timeout: 180_000 }, async () => {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: apt-get install -y --no-install-recommends chromium (npm run test-deps does it as root)`);
  const monitor = new MonitorServer({ host: '127.0.0.1', port: 0, role: 'primary', logger: silent, auth: { token: TOKEN, allowRemoteRead: false } });
  await monitor.start();
  const alpha = new FakeSource('primary', 'protected');
  const beta = new FakeSource('primary', 'degraded');
  let browser: Browser | undefined;
  try {
    const detachAlpha = await monitor.attach('alpha', alpha);
    browser = await launch();
    const page = await browser.newPage({ viewport: { width: 1000, height: 1100 } });
    page.setDefaultTimeout(60_000);
    const errors = consoleErrors(page);
    await page.goto(monitor.url);
    await textIs(page, '#state', 'protected');
    assert.equal(await page.isHidden('#domains'), true, 'one domain: no overview');
    assert.equal(await page.isHidden('#domain-picker'), true, 'one domain: no picker');

    // A second domain attached while the page is open: it is told at once.
    await monitor.attach('beta', beta);
    await waitPage(page, 'the overview of two domains', page.waitForFunction(() => [...document.querySelectorAll('#domains-rows tr')].length === 2));
    assert.equal(await page.isHidden('#domains'), false);
    assert.deepEqual(await page.$$eval('#domain option', (os) => os.map((o) => (o as unknown as { value: string }).value)), ['alpha', 'beta']);
    assert.equal(await page.inputValue('#domain'), 'alpha');
    assert.equal(await page.textContent('#state'), 'protected', 'still the domain first shown');

    // Beta's news: its line in the overview, not the page.
    beta.become('connecting');
    await textIs(page, '#domains-rows tr[data-domain="beta"] .state', 'connecting');
    assert.equal(await page.textContent('#state'), 'protected');

    // The control goes to the domain shown.
    await page.fill('#token', TOKEN);
    await page.click('button[data-action="checkpoint"]');
    await dataIs(page, '#control-result', 'outcome', 'ok');
    assert.deepEqual([alpha.calls, beta.calls], [['checkpoint'], []]);

    // Picking beta: the page is beta's, the address says so, and a control reaches beta.
    await page.selectOption('#domain', 'beta');
    await textIs(page, '#state', 'connecting');
    assert.match(page.url(), /#domain=beta$/);
    await dataIs(page, '#domains-rows tr[data-domain="beta"]', 'domain', 'beta');
    assert.equal(await page.getAttribute('#domains-rows tr[data-domain="beta"]', 'aria-selected'), 'true');
    alpha.become('degraded');
    await textIs(page, '#domains-rows tr[data-domain="alpha"] .state', 'degraded');
    assert.equal(await page.textContent('#state'), 'connecting', "alpha's state is not beta's page");
    await page.click('button[data-action="checkpoint"]');
    for (let i = 0; i < 600 && beta.calls.length === 0; i++) await new Promise((resolve) => setTimeout(resolve, 50));
    assert.deepEqual([alpha.calls, beta.calls], [['checkpoint'], ['checkpoint']]);

    // A reload keeps the domain picked; clicking a row picks it too.
    await page.reload();
    await textIs(page, '#state', 'connecting');
    await page.click('#domains-rows tr[data-domain="alpha"]');
    await textIs(page, '#state', 'degraded');

    // The domain shown is taken off: the page shows the one left, alone again.
    await detachAlpha();
    await textIs(page, '#state', 'connecting');
    await waitPage(page, 'the overview gone with the second domain', page.waitForFunction(() => document.querySelector('#domains')?.hidden === true));
    assert.deepEqual(errors, [], 'no script or CSP errors');
  } finally {
    await browser?.close();
    await monitor.stop();
  }
});
