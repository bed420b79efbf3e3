/**
 * The dashboard in a real browser (Debian's chromium driven by
 * playwright-core) against real primary and secondary processes: its charts
 * fill and keep moving, a control action without the token is refused and
 * one with it is done, and the secondary's page shows the failover when the
 * primary is killed. Chromium is a test dependency (package.json
 * tandem.debianTestPackages): when it is missing this test fails.
 */
import assert from 'node:assert/strict';
import { existsSync, writeFileSync } from 'node:fs';
import { after, test } from 'node:test';
import { chromium, type Browser, type Page } from 'playwright-core';
import { tempDir } from '../helpers/cli.js';
import { monitorUrl, monitoredPair, spawnTandem } from '../helpers/proc.js';
import { tlsArgs } from '../helpers/tls.js';

const CHROMIUM = '/usr/bin/chromium';
const TOKEN = 'browser-test-token-0123456789';
const tmp = tempDir();
after(() => tmp.cleanup());


/** Points on a chart, as the dashboard reports them. */
const points = async (page: Page, id: string): Promise<number> => Number(await page.getAttribute(`#${id}`, 'data-points'));

// Page-side conditions are functions run in the page (Playwright calls them
// without eval, which the dashboard's CSP forbids). This project compiles
// without the DOM library, so the little of it they use is declared here.
interface PageElement {
  textContent: string | null;
  dataset: Record<string, string | undefined>;
}
declare const document: { querySelector(selector: string): PageElement | null; querySelectorAll(selector: string): Iterable<PageElement> };

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
  writeFileSync(tokenFile, TOKEN);
  const config = tmp.path('browser.yaml');
  // Heartbeats that tolerate a loaded machine: chromium starting on two shared cores can stall both
  // nodes past the default 250 ms, and a false failover would take the pair this test watches away.
  writeFileSync(config, `domain:\n  memory_mib: 4\nprimary:\n  interval_ms: 40\nsecondary:\n  listen: 127.0.0.1:0\n  service: 127.0.0.1:0\nheartbeat:\n  timeout_ms: 3000\nmonitor:\n  token_file: ${tokenFile}\n`);
  const { secondary, primary, secondaryMonitor: secUrl, primaryMonitor: priUrl } = await monitoredPair(config);

  let browser: Browser | undefined;
  try {
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
      timeout: 120_000,
    });
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
