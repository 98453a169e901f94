#!/usr/bin/env node
// Browser test of the one page layout (web/js/layout.js) against the real
// server, driven by playwright-core and Debian's chromium.
//
//   node tests/browser/layout_flow.mjs <caresync-binary> <web-dir> <artifact-dir>
//
// The HTML pages hold only their own content, an empty header placeholder and
// one module script (lintWebDir checks the files); the skip link, header,
// navigation and footer are rendered by layout.js. Here every page is opened
// by a visitor, a person, a clinician and an analyst, and on each: the body
// is skip link, header (brand + navigation), main, one footer, in that
// order; the navigation holds exactly the links of the role; the link of the
// page shown (and only it) is marked aria-current="page"; the footer is the
// common one except on the dashboard, which keeps its own. The skip link is
// the first stop of the keyboard and moves focus to the content. Without
// JavaScript a page still shows its content, under a header band as tall
// as the rendered one (the page does not jump when the layout fills in).
// Any console error, page error, CSP violation, failed request or
// unexpected 4xx/5xx fails the test.
// Exit codes: 0 pass, 1 fail, 2 usage, 77 skip (no chromium or playwright-core).
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { CHROMIUM, CHROMIUM_ARGS, Watch, check, checkEqual, lintWebDir, log, startServer, browserTest, waitUntil, createUser } from './lib.mjs';

const TOTAL_TIMEOUT_MS = 240_000;

const { BIN, WEB_DIR, ARTIFACTS, chromium } = await browserTest('layout_flow');

const PAGES = ['/', '/login', '/signup', '/reset', '/ledger', '/screening', '/records', '/reviews', '/profile', '/consents', '/wallet',
  '/account', '/surveillance', '/review', '/data-requests', '/admin-requests', '/org-requests'];
const PRIVATE = new Set(['/screening', '/records', '/reviews', '/profile', '/consents', '/wallet', '/account', '/surveillance',
  '/review', '/data-requests', '/admin-requests', '/org-requests']);
// What each role's navigation offers today (before the layout was one file,
// the same sets were built by js/nav.js): the expected links, in order.
const NAV = {
  visitor: ['/', '/ledger', '/login', '/signup'],
  person: ['/screening', '/records', '/reviews', '/profile', '/consents', '/data-requests', '/wallet', '/ledger', '/account'],
  clinician: ['/review', '/wallet', '/ledger', '/account'],
  analyst: ['/surveillance', '/wallet', '/ledger', '/account'],
};
const FOOTER = 'CareSync keeps your health record private: it is encrypted with a key only your password or recovery code can unlock.';
const DASHBOARD_FOOTER = 'Every release of these numbers is recorded on the public ledger with its query fingerprint.';
// Staff are refused personal data: the pages say so (the 403 is handled).
const STAFF_403 = ['/api/records', '/api/profile', '/api/consents'];

let lastPage = null;

// The layout as rendered: body order, header parts, navigation, footer.
function readLayout(page) {
  return page.evaluate(() => {
    const kids = [...document.body.children].filter((e) => e.tagName !== 'SCRIPT');
    const tag = (e) => `${e.tagName.toLowerCase()}${e.className && e.tagName !== 'MAIN' ? `.${e.className.split(' ')[0]}` : ''}`;
    const nav = document.querySelector('header.site-header > .site-header-inner > nav#site-nav[aria-label="Main"]');
    return {
      body: kids.map(tag),
      skipHref: document.querySelector('a.skip-link')?.getAttribute('href'),
      mainId: document.querySelector('main')?.id,
      brand: document.querySelector('header.site-header > .site-header-inner > a.brand[href="/"]')?.textContent,
      links: nav ? [...nav.querySelectorAll('a')].map((a) => a.getAttribute('href')) : null,
      current: [...document.querySelectorAll('#site-nav a[aria-current="page"]')].map((a) => a.getAttribute('href')),
      footers: [...document.querySelectorAll('footer.site-footer')].map((f) => f.textContent.trim()),
      user: document.querySelector('#nav-user')?.textContent ?? null,
    };
  });
}

async function checkPage(page, base, role, user, path) {
  const where = `${role} ${path}`;
  await page.goto(base + path);
  // A visitor is sent to log in from a private page.
  const expectPath = role === 'visitor' && PRIVATE.has(path) ? '/login' : path;
  await page.waitForURL((u) => u.pathname === expectPath);
  await page.locator('#site-nav ul').waitFor();
  if (user) await page.locator('#nav-user').waitFor();
  const l = await readLayout(page);
  checkEqual(l.body.join(' '), 'a.skip-link header.site-header main footer.site-footer', `${where}: body order`);
  checkEqual(l.skipHref, `#${l.mainId}`, `${where}: the skip link targets main`);
  checkEqual(l.brand, '\u271aCareSync', `${where}: brand`);
  checkEqual(l.links.join(' '), NAV[role].join(' '), `${where}: navigation of the role`);
  const here = NAV[role].includes(expectPath) ? [expectPath] : [];
  checkEqual(l.current.join(' '), here.join(' '), `${where}: the current page is marked, nothing else`);
  checkEqual(l.footers.length, 1, `${where}: one footer`);
  checkEqual(l.footers[0], path === '/surveillance' && role !== 'visitor' ? DASHBOARD_FOOTER : FOOTER, `${where}: footer`);
  if (user) check(l.user.includes(user), `${where}: the header names ${user}: "${l.user}"`);
  else checkEqual(l.user, null, `${where}: nobody named in the header`);
}

async function rolePages(browser, watch, base, role, user, password) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  await watch.attach(context);
  const page = await context.newPage();
  lastPage = page;
  page.setDefaultTimeout(15_000);
  watch.page(page, role);
  // A private page asks a visitor's session (401) before sending them to log in.
  const allowed = role === 'visitor' ? [watch.allowHttpError(401, '/api/session')]
    : role === 'clinician' || role === 'analyst' ? STAFF_403.map((p) => watch.allowHttpError(403, p)) : [];
  if (user) {
    await page.goto(`${base}/login`);
    await page.fill('#login-username', user);
    await page.fill('#login-password', password);
    await page.click('#login-form button[type="submit"]');
    await page.waitForURL((u) => u.pathname !== '/login');
  }
  for (const path of PAGES) await checkPage(page, base, role, user, path);
  await page.screenshot({ path: join(ARTIFACTS, `${role}-account.png`), fullPage: true, animations: 'disabled' });
  // Keyboard: the skip link is the first stop and moves focus to the content.
  await page.goto(`${base}/ledger`);
  await page.locator('#site-nav ul').waitFor();
  await page.keyboard.press('Tab');
  checkEqual(await page.evaluate(() => document.activeElement?.className), 'skip-link', `${role}: first Tab stop`);
  await page.keyboard.press('Enter');
  await waitUntil(page, () => document.activeElement?.id === 'main');
  watch.assertClean(`${role} pages`);
  for (const off of allowed) off();
  await context.close();
}

// No JavaScript: the content is there, under a header band as tall as the
// rendered header, which the layout then fills in place.
async function withoutScript(browser, base) {
  const heights = {};
  for (const js of [false, true]) {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, javaScriptEnabled: js });
    const page = await context.newPage();
    lastPage = page;
    await page.goto(`${base}/login`);
    if (js) await page.locator('#site-nav ul').waitFor();
    else {
      check(await page.locator('main h1').isVisible(), 'without JavaScript the page content shows');
      checkEqual(await page.locator('#site-header > *').count(), 0, 'without JavaScript the header is the empty placeholder');
      await page.screenshot({ path: join(ARTIFACTS, 'no-script-login.png'), fullPage: true });
    }
    heights[js] = await page.evaluate(() => ({
      header: document.querySelector('header.site-header').getBoundingClientRect().height,
      main: document.querySelector('main').getBoundingClientRect().top,
    }));
    await context.close();
  }
  log(`header height without / with JavaScript: ${heights.false.header.toFixed(2)} / ${heights.true.header.toFixed(2)} px`);
  check(Math.abs(heights.false.header - heights.true.header) < 1, 'the placeholder holds the header\'s height');
  check(Math.abs(heights.false.main - heights.true.main) < 1, 'the content does not move when the header fills in');
}

async function main() {
  mkdirSync(ARTIFACTS, { recursive: true });
  check(existsSync(BIN), `no caresync binary at ${BIN}`);
  lintWebDir(WEB_DIR, ['index.html', 'surveillance.html']);
  const dataDir = mkdtempSync(join(tmpdir(), 'caresync-layout-'));
  const users = [['person', 'pia-person', 'a person passphrase'], ['clinician', 'cid-clinician', 'a clinician passphrase'],
    ['analyst', 'ana-analyst', 'an analyst passphrase']];
  let server = null;
  let browser = null;
  const timer = setTimeout(() => {
    console.error(`FAIL: timed out after ${TOTAL_TIMEOUT_MS / 1000} s`);
    if (server) server.proc.kill('SIGKILL');
    process.exit(1);
  }, TOTAL_TIMEOUT_MS);
  try {
    for (const [role, name, pw] of users) createUser(BIN, dataDir, name, role, pw);
    server = await startServer(dataDir, { bin: BIN, webDir: WEB_DIR, artifacts: ARTIFACTS });
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
    log(`chromium ${browser.version()}`);
    const watch = new Watch();
    await rolePages(browser, watch, server.base, 'visitor', null, null);
    for (const [role, name, pw] of users) await rolePages(browser, watch, server.base, role, name, pw);
    log(`${PAGES.length} pages x visitor, person, clinician, analyst: one layout, role's navigation, current page, footer: ok`);
    await withoutScript(browser, server.base);
    log('without JavaScript: content shown, header band holds its height: ok');
  } catch (err) {
    if (lastPage && !lastPage.isClosed()) await lastPage.screenshot({ path: join(ARTIFACTS, 'FAILED.png'), fullPage: true }).catch(() => {});
    throw err;
  } finally {
    clearTimeout(timer);
    if (browser) await browser.close().catch(() => {});
    let stopError = null;
    if (server) await server.stop().catch((e) => { stopError = e; });
    rmSync(dataDir, { recursive: true, force: true });
    if (stopError) throw stopError; // eslint-disable-line no-unsafe-finally
  }
}

try {
  await main();
  console.log('PASS: browser layout flow');
  process.exit(0);
} catch (err) {
  console.error(`FAIL: ${err.stack || err.message}`);
  console.error(`screenshots and server.log: ${ARTIFACTS}`);
  process.exit(1);
}
