#!/usr/bin/env node
// Browser test of the surveillance dashboard against the real server, driven
// by playwright-core and Debian's chromium.
//
//   node tests/browser/surveillance_flow.mjs <caresync-binary> <web-dir> <artifact-dir>
//
// Fills a temporary instance with `caresync demo-data`, makes an analyst with
// `caresync admin create-user`, and a person. The person sees no
// Surveillance link and is refused the page. The analyst logs in, opens
// Surveillance: the synthetic-data banner, a choropleth of the 51 US regions
// (some hatched as suppressed), a chart; picks fungal infections and clicks
// Florida on the map: the chart shows alarms in the injected outbreak; the
// alerts table lists it and one alert is acknowledged; then downloads the
// CSV export through the page's link and checks it holds exactly the
// numbers of the page's release (same header, no count below k).
// Screenshots of every step go to <artifact-dir>. Any console error, page
// error, CSP violation, failed request or unexpected 4xx/5xx fails the test.
// Exit codes: 0 pass, 1 fail, 2 usage, 77 skip (no chromium or playwright-core).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { CHROMIUM, CHROMIUM_ARGS, Watch, check, checkEqual, lintWebDir, log, startServer, browserTest, waitUntil } from './lib.mjs';

const TOTAL_TIMEOUT_MS = 240_000;
const K = 11;

const { BIN, WEB_DIR, ARTIFACTS, chromium } = await browserTest('surveillance_flow');
if (!existsSync(join(WEB_DIR, 'vendor', 'states-10m.json'))) {
  console.error(`FAIL: ${WEB_DIR}/vendor is missing: run make deps (scripts/vendor.sh)`);
  process.exit(1);
}

let shotNo = 0;
let lastPage = null;
async function shot(page, name) {
  shotNo += 1;
  await page.screenshot({ path: join(ARTIFACTS, `${String(shotNo).padStart(2, '0')}-${name}.png`), fullPage: true, animations: 'disabled' });
}

function run(args, input) {
  const r = spawnSync(BIN, args, { encoding: 'utf8', input, timeout: 60_000 });
  if (r.status !== 0) throw new Error(`caresync ${args[0]}: exit ${r.status}: ${r.stderr}`);
  return r.stdout;
}

async function login(page, base, name, password) {
  await page.goto(`${base}/login`);
  await page.fill('#login-username', name);
  await page.fill('#login-password', password);
  await page.click('#login-form button[type="submit"]');
  await page.waitForURL((u) => u.pathname !== '/login', { timeout: 10_000 });
}

async function personFlow(browser, watch, base) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  await watch.attach(context);
  const page = await context.newPage();
  lastPage = page;
  page.setDefaultTimeout(15_000);
  watch.page(page, 'person');
  const r = await fetch(`${base}/api/auth/signup`, { method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ username: 'pat-person', password: 'a person passphrase' }) });
  checkEqual(r.status, 201, 'person sign-up');
  await login(page, base, 'pat-person', 'a person passphrase');
  const links = await page.locator('#site-nav a').evaluateAll((as) => as.map((a) => a.getAttribute('href')));
  check(!links.includes('/surveillance'), `a person has no Surveillance link: ${links}`);
  await page.goto(`${base}/surveillance`);
  await page.locator('main .notice').filter({ hasText: 'analysts and administrators' }).waitFor();
  await shot(page, 'person-refused');
  watch.assertClean('person');
  await context.close();
}

async function analystFlow(browser, watch, base, outbreak) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, acceptDownloads: true });
  await watch.attach(context);
  const page = await context.newPage();
  lastPage = page;
  page.setDefaultTimeout(15_000);
  watch.page(page, 'analyst');
  await login(page, base, 'ana-analyst', 'an analyst passphrase');
  await page.click('#site-nav a[href="/surveillance"]');
  await page.waitForURL((u) => u.pathname === '/surveillance');

  // The map: every state drawn, the synthetic banner, some suppressed regions.
  await page.locator('#map svg path.region').nth(40).waitFor();
  const regions = await page.locator('#map svg path.region').count();
  check(regions >= 50, `map draws the US states: ${regions}`);
  await page.locator('#synthetic-banner').waitFor({ state: 'visible' });
  const suppressed = await page.locator('#map svg path[data-suppressed]').count();
  log(`map: ${regions} regions, ${suppressed} suppressed in the latest week (all conditions)`);
  await page.locator('#chart canvas').first().waitFor();
  // The default period, counted back by the server (the page does no week
  // arithmetic): half a year ending with the latest released week, i.e. the
  // release behind the page lists 26 weeks from "From" to "To".
  const period = { from: await page.inputValue('#f-from'), to: await page.inputValue('#f-to') };
  const shownWeeks = await page.evaluate(async (p) => (await (await fetch(`/api/surveil/aggregates?country=US&from=${p.from}&to=${p.to}`)).json()).weeks.map((w) => w.week), period);
  const latest = await page.evaluate(async () => (await (await fetch('/api/surveil/overview')).json()).latest_week);
  checkEqual(period.to, latest, 'the period ends with the latest released week');
  checkEqual(shownWeeks.length, 26, `26 weeks shown, ${period.from} to ${period.to}`);
  checkEqual(shownWeeks[0], period.from, 'the release starts with the week in From');
  await shot(page, 'dashboard');
  watch.assertClean('dashboard');

  // Fungal infections, Florida: the injected outbreak alarms.
  await page.selectOption('#f-condition', 'fungal');
  await page.click('#f-apply');
  // the page is aria-busy until the new filter's map, chart and alerts are in
  await waitUntil(page, () => !document.querySelector('#main').hasAttribute('aria-busy')
    && document.querySelector('#chart-summary')?.dataset.condition === 'fungal');
  await page.locator('#map svg path[data-region="US-FL"]').waitFor();
  // Florida's box centre is in the Gulf: click the shape itself
  await page.locator('#map svg path[data-region="US-FL"]').dispatchEvent('click');
  await page.locator('#chart-region').filter({ hasText: 'US-FL' }).waitFor();
  checkEqual(await page.inputValue('#chart-select'), 'US-FL', 'the region picker follows the map');
  await waitUntil(page, () => {
    const d = document.querySelector('#chart-summary')?.dataset || {};
    return d.region === 'US-FL' && d.condition === 'fungal';
  });
  const summary = await page.locator('#chart-summary').textContent();
  log(`chart: ${summary}`);
  const alarmWeeks = (await page.getAttribute('#chart-summary', 'data-weeks')).split(' ').filter(Boolean);
  check(alarmWeeks.some((w) => w >= outbreak.from && w <= outbreak.to),
    `an alarm within the injected outbreak ${outbreak.from}..${outbreak.to}: ${alarmWeeks}`);
  check(await page.locator('#chart canvas').count() > 0, 'the chart is drawn');
  await shot(page, 'florida-fungal');

  // Alerts: the outbreak is listed; acknowledge one.
  await page.locator('#alerts-table').waitFor();
  check(/for fungal/.test(await page.locator('#alerts-count').textContent()), 'alerts follow the condition filter');
  if (await page.locator('#alerts-all').count()) await page.click('#alerts-all');
  const fl = page.locator('#alerts-table tr', { hasText: 'US-FL' }).filter({ hasText: 'fungal' });
  check(await fl.count() > 0, 'an alert for fungal infections in Florida');
  const before = await page.locator('#alerts-table button[data-alert]').count();
  await fl.first().locator('button[data-alert]').click();
  await waitUntil(page, (n) => document.querySelectorAll('#alerts-table button[data-alert]').length === n - 1, before);
  check(await page.locator('#alerts-table', { hasText: 'acknowledged by ana-analyst' }).count() > 0, 'acknowledged by the analyst');
  await shot(page, 'alert-acknowledged');
  watch.assertClean('alerts');

  // Export: the CSV of exactly what is shown.
  const href = await page.getAttribute('#export-csv', 'href');
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#export-csv')]);
  const file = join(ARTIFACTS, 'export.csv');
  await download.saveAs(file);
  const csv = readFileSync(file, 'utf8').trim().split('\n');
  checkEqual(csv[0], 'week,region,condition,count,status,synthetic', 'CSV header');
  const shown = await page.evaluate(async (u) => (await fetch(u.replace('&format=csv', ''))).json(), href);
  const C = shown.conditions.length, R = shown.regions.length;
  checkEqual(shown.condition, 'fungal', 'the export is the view of the condition shown');
  checkEqual(csv.length - 1, shown.weeks.length * (R + 1) * C, 'one CSV line per released value');
  for (const line of csv.slice(1)) {
    const [, , , count, status, synthetic] = line.split(',');
    checkEqual(synthetic, 'yes', 'every line says synthetic');
    if (status === 'suppressed') checkEqual(count, '', 'suppressed values are empty');
    else check(Number(count) === 0 || Number(count) >= K, `no released count below k: ${line}`);
  }
  const last = shown.weeks[shown.weeks.length - 1];
  const fli = shown.regions.indexOf('US-FL');
  const flLine = csv.find((l) => l.startsWith(`${last.week},US-FL,fungal,`));
  checkEqual(flLine.split(',')[3], last.cells[fli][0] === null ? '' : String(last.cells[fli][0]), 'CSV = the release on the page');
  log(`export: ${csv.length - 1} values, ${csv.filter((l) => l.includes(',suppressed,')).length} suppressed`);
  watch.assertClean('export');

  // Source: clinician-confirmed. The release and the series the page fetches
  // are the release by source, the page says it is a separate release, and
  // the CSV export's source column says which source.
  check(await page.isHidden('#source-note'), 'no source note for all sources');
  const fetched = [];
  const onResponse = (res) => {
    const u = new URL(res.url());
    if (u.pathname === '/api/surveil/aggregates' || u.pathname === '/api/surveil/series') fetched.push(res);
  };
  page.on('response', onResponse);
  await page.selectOption('#f-source', 'clinician_confirmed');
  await page.click('#f-apply');
  await waitUntil(page, () => !document.querySelector('#main').hasAttribute('aria-busy')
    && document.querySelector('#chart-summary')?.dataset.source === 'clinician_confirmed'
    && document.querySelector('#source-note')?.dataset.source === 'clinician_confirmed');
  page.off('response', onResponse);
  const rels = fetched.filter((r) => new URL(r.url()).pathname === '/api/surveil/aggregates');
  const series = fetched.filter((r) => new URL(r.url()).pathname === '/api/surveil/series');
  checkEqual(rels.length, 1, 'one release fetched for the new filter');
  checkEqual(new URL(rels[0].url()).searchParams.get('source'), 'clinician_confirmed', 'the release asks for the source');
  const bySource = await rels[0].json();
  checkEqual(bySource.source, 'clinician_confirmed', 'the release fetched is the clinician-confirmed release');
  check(bySource.release.fingerprint !== shown.release.fingerprint, 'a release by source has its own fingerprint');
  check(series.length >= 1 && series.every((r) => new URL(r.url()).searchParams.get('source') === 'clinician_confirmed'),
    `the series asks for the source: ${series.map((r) => r.url())}`);
  checkEqual((await series[series.length - 1].json()).source, 'clinician_confirmed', 'the chart is the source\'s series');
  const note = await page.locator('#source-note').textContent();
  check(/clinician-confirmed/i.test(note) && /separate release/i.test(note) && /own suppression/i.test(note),
    `the page says a source is a separate release: ${note}`);
  await shot(page, 'source-clinician-confirmed');
  const srcHref = await page.getAttribute('#export-csv', 'href');
  checkEqual(new URL(srcHref, base).searchParams.get('source'), 'clinician_confirmed', 'the export asks for the source');
  const [srcDownload] = await Promise.all([page.waitForEvent('download'), page.click('#export-csv')]);
  const srcFile = join(ARTIFACTS, 'export-clinician-confirmed.csv');
  await srcDownload.saveAs(srcFile);
  const srcCsv = readFileSync(srcFile, 'utf8').trim().split('\n');
  checkEqual(srcCsv[0], 'week,region,condition,count,status,synthetic,source', 'a source\'s CSV gains a source column');
  checkEqual(srcCsv.length - 1, bySource.weeks.length * (bySource.regions.length + 1) * bySource.conditions.length,
    'one CSV line per value of the release by source');
  for (const line of srcCsv.slice(1)) checkEqual(line.split(',')[6], 'clinician_confirmed', `the source column: ${line}`);
  const srcLast = bySource.weeks[bySource.weeks.length - 1];
  const srcFl = srcCsv.find((l) => l.startsWith(`${srcLast.week},US-FL,fungal,`));
  const flCell = srcLast.cells[bySource.regions.indexOf('US-FL')][0];
  checkEqual(srcFl.split(',')[3], flCell === null ? '' : String(flCell), 'source CSV = the release by source on the page');
  log(`source clinician_confirmed: ${srcCsv.length - 1} values, ${srcCsv.filter((l) => l.includes(',suppressed,')).length} suppressed`);
  watch.assertClean('source filter');
  await context.close();
}

async function main() {
  mkdirSync(ARTIFACTS, { recursive: true });
  lintWebDir(WEB_DIR, ['surveillance.html']);
  const dataDir = mkdtempSync(join(tmpdir(), 'caresync-surveil-'));
  let server = null;
  let browser = null;
  const timer = setTimeout(() => {
    console.error(`FAIL: timed out after ${TOTAL_TIMEOUT_MS / 1000} s`);
    if (server) server.proc.kill('SIGKILL');
    process.exit(1);
  }, TOTAL_TIMEOUT_MS);
  const started = Date.now();
  try {
    const demo = run(['demo-data', '--data-dir', dataDir]).trim();
    log(demo);
    const m = /fungal infections in US-FL, (\d{4}-W\d\d) to (\d{4}-W\d\d)/.exec(demo);
    check(m, 'demo-data names the Florida outbreak');
    const outbreak = { from: m[1], to: m[2] };
    run(['admin', 'create-user', '--data-dir', dataDir, '--username', 'ana-analyst', '--role', 'analyst'], 'an analyst passphrase\n');
    server = await startServer(dataDir, { bin: BIN, webDir: WEB_DIR, artifacts: ARTIFACTS });
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
    log(`chromium ${browser.version()}`);
    const watch = new Watch();
    await personFlow(browser, watch, server.base);
    log('person: no link, page refused: ok');
    await analystFlow(browser, watch, server.base, outbreak);
    log('analyst: map, chart with alarms, alert acknowledged, CSV export = release: ok');
  } catch (err) {
    if (lastPage && !lastPage.isClosed()) await lastPage.screenshot({ path: join(ARTIFACTS, 'FAILED.png'), fullPage: true }).catch(() => {});
    throw err;
  } finally {
    clearTimeout(timer);
    if (browser) await browser.close().catch(() => {});
    let stopError = null;
    if (server) await server.stop().catch((e) => { stopError = e; });
    rmSync(dataDir, { recursive: true, force: true });
    log(`run time ${((Date.now() - started) / 1000).toFixed(1)} s`);
    if (stopError) throw stopError; // eslint-disable-line no-unsafe-finally
  }
}

try {
  await main();
  log(`screenshots: ${ARTIFACTS} (${shotNo})`);
  console.log('PASS: browser surveillance flow');
  process.exit(0);
} catch (err) {
  console.error(`FAIL: ${err.stack || err.message}`);
  console.error(`screenshots and server.log: ${ARTIFACTS}`);
  process.exit(1);
}
