#!/usr/bin/env node
// Browser test of the CareSync web UI against the real server, driven by
// playwright-core and Debian's chromium (never a downloaded browser).
//
//   node tests/browser/signup_flow.mjs <caresync-binary> <web-dir> <artifact-dir>
//
// Starts `caresync serve` on a free port with a temporary data directory, then
// on a 375x800 phone screen: signs up, reads the one-time recovery code, checks
// that Continue waits for "I have saved my recovery code", adds a symptom
// record, edits and deletes entries, logs out, fails a wrong-password login,
// logs in again and sees the record, resets the password with the recovery
// code and logs in with the new one. Then at desktop size: profile with a
// home region, export, the staff 403 message, and account deletion.
// Screenshots of every step go to <artifact-dir>. Any console error, page
// error, CSP violation, failed static asset or 5xx fails the test.
// Exit codes: 0 pass, 1 fail, 2 usage, 77 skip (no /usr/bin/chromium).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { CHROMIUM, CHROMIUM_ARGS, Watch, check, checkEqual, lintWebDir, log, startServer, browserTest } from './lib.mjs';

const TOTAL_TIMEOUT_MS = 240_000;

const { BIN, WEB_DIR, ARTIFACTS, chromium } = await browserTest('signup_flow');

// ---------------------------------------------------------------- helpers






function isoDaysAgo(days) {
  const d = new Date(Date.now() - days * 86400_000);
  return d.toISOString().slice(0, 10);
}


// ---------------------------------------------------------------- server


// Staff accounts are made from the command line, before the server opens the database.
function createStaff(dataDir, username, password) {
  const r = spawnSync(BIN, ['admin', 'create-user', '--username', username, '--role', 'clinician', '--data-dir', dataDir],
    { input: `${password}\n`, encoding: 'utf8', timeout: 30_000 });
  if (r.status !== 0) throw new Error(`admin create-user failed (${r.status}): ${r.stderr}${r.stdout}`);
}

// ---------------------------------------------------------------- page watch


// ---------------------------------------------------------------- steps

let shotNo = 0;
let lastPage = null;     // for a screenshot when a step fails
let liveServer = null;   // killed on SIGINT/SIGTERM
async function shot(page, name) {
  shotNo += 1;
  const file = join(ARTIFACTS, `${String(shotNo).padStart(2, '0')}-${name}.png`);
  await page.screenshot({ path: file, fullPage: true, animations: 'disabled' });
}

// Layout and basic accessibility of the current page: no horizontal scroll,
// every form control labelled, one h1, a lang attribute.
async function noHorizontalScroll(page, where) {
  const r = await page.evaluate(() => ({
    sw: document.documentElement.scrollWidth,
    iw: window.innerWidth,
    unlabelled: [...document.querySelectorAll('input, select, textarea')]
      .filter((c) => c.type !== 'hidden' && !c.labels?.length && !c.getAttribute('aria-label'))
      .map((c) => c.id || c.name || c.outerHTML.slice(0, 60)),
    h1: document.querySelectorAll('h1').length,
    lang: document.documentElement.lang,
  }));
  check(r.sw <= r.iw, `${where}: page is ${r.sw}px wide in a ${r.iw}px viewport (horizontal scroll)`);
  check(!r.unlabelled.length, `${where}: form controls without a label: ${r.unlabelled.join(', ')}`);
  checkEqual(r.h1, 1, `${where}: number of h1 headings`);
  check(r.lang, `${where}: <html lang> is set`);
}

async function expectPath(page, path) {
  await page.waitForURL((u) => u.pathname === path, { timeout: 10_000 });
}

async function navUserIs(page, username) {
  const who = page.locator('#nav-user');
  await who.waitFor({ state: 'visible' });
  const text = await who.textContent();
  check(text.includes(username), `header shows the user: "${text}" should name ${username}`);
}

async function checkCsp(response, what) {
  const csp = response.headers()['content-security-policy'] || '';
  check(/script-src 'self'/.test(csp) && /style-src 'self'/.test(csp), `${what} is served with the CSP (got "${csp}")`);
}

async function login(page, username, password) {
  await page.fill('#login-username', username);
  await page.fill('#login-password', password);
  await page.click('#login-form button[type="submit"]');
}

async function recordTitles(page) {
  await page.locator('#list-status').filter({ hasNotText: 'Loading' }).waitFor();
  return page.locator('#record-list .record-title').allTextContents();
}

async function readRecoveryPanel(page, step) {
  const panel = page.locator('#recovery-panel');
  await panel.waitFor({ state: 'visible' });
  const code = (await page.locator('#recovery-code').textContent()).trim();
  check(code.length >= 16, `${step}: recovery code shown (got "${code}")`);
  const cont = page.locator('#recovery-continue');
  check(await cont.isDisabled(), `${step}: Continue is disabled before "I have saved my recovery code" is ticked`);
  check(!(await page.locator('#recovery-saved').isChecked()), `${step}: the saved checkbox starts unticked`);
  // Clicking a disabled Continue must not navigate.
  await cont.click({ force: true, timeout: 2000 }).catch(() => {});
  check(await panel.isVisible(), `${step}: still on the recovery code after clicking a disabled Continue`);
  return code;
}

async function tickSavedAndContinue(page, step) {
  await page.click('#copy-recovery');
  await page.locator('#copy-status').filter({ hasText: /\w/ }).waitFor();
  await page.check('#recovery-saved');
  const cont = page.locator('#recovery-continue');
  check(await cont.isEnabled(), `${step}: Continue is enabled once the box is ticked`);
  await page.uncheck('#recovery-saved');
  check(await cont.isDisabled(), `${step}: Continue is disabled again when the box is unticked`);
  // Keyboard: Space on the focused checkbox ticks it.
  await page.focus('#recovery-saved');
  await page.keyboard.press('Space');
  check(await cont.isEnabled(), `${step}: Continue is enabled after ticking with the keyboard`);
  await cont.click();
}

async function phoneFlow(browser, watch, base, user) {
  const context = await browser.newContext({ viewport: { width: 375, height: 800 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true });
  await watch.attach(context);
  const page = await context.newPage();
  lastPage = page;
  page.setDefaultTimeout(10_000);
  watch.page(page, 'phone');

  // Landing page.
  const landing = await page.goto(`${base}/`);
  checkEqual(landing.status(), 200, 'GET /');
  await checkCsp(landing, '/');
  await page.locator('h1').waitFor();
  const headline = await page.locator('h1').textContent();
  check(/skin/i.test(headline) && /private/i.test(headline), 'landing page headline: screening first, then privacy');
  const body = await page.locator('main').textContent();
  for (const word of ['Skin screening', 'not a diagnosis', 'Private health records', 'consent', 'Outbreak surveillance'])
    check(body.includes(word), `landing page mentions "${word}"`);
  // What the product does today, screening first; nothing offered as "coming".
  const cards = await page.locator('main .card h3').allTextContents();
  checkEqual(cards[0], 'Skin screening', 'first thing the landing page offers');
  check(!/coming/i.test(body), 'landing page lists nothing as coming');
  await noHorizontalScroll(page, 'landing');
  await shot(page, 'phone-landing');
  watch.assertClean('landing');

  // Sign-up: client-side checks first (nothing sent), then the real thing.
  await page.click('#guest-actions a[href="/signup"]');
  await expectPath(page, '/signup');
  await page.locator('#signup-form').waitFor();
  await page.click('#signup-form button[type="submit"]');
  await page.locator('#signup-username[aria-invalid="true"]').waitFor();
  check(await page.locator('#signup-username-error').isVisible(), 'empty sign-up: error next to username');
  check((await page.locator('#signup-message').textContent()).length > 0, 'empty sign-up: message in the live region');
  await page.fill('#signup-username', user.name);
  await page.fill('#signup-password', user.password);
  await page.fill('#signup-password2', `${user.password}x`);
  await page.click('#signup-form button[type="submit"]');
  await page.locator('#signup-password2-error').waitFor();
  check(/match/i.test(await page.locator('#signup-password2-error').textContent()), 'mismatched passwords are reported');
  await noHorizontalScroll(page, 'signup');
  await shot(page, 'phone-signup-errors');
  await page.fill('#signup-password2', user.password);
  await page.click('#signup-form button[type="submit"]');
  user.recovery = await readRecoveryPanel(page, 'sign-up');
  check(await page.locator('#signup-form').isHidden(), 'the sign-up form is gone once the code shows');
  await navUserIs(page, user.name);
  await noHorizontalScroll(page, 'recovery code');
  await shot(page, 'phone-signup-recovery-code');
  await tickSavedAndContinue(page, 'sign-up');
  await expectPath(page, '/records');
  watch.assertClean('sign-up');

  // Records: empty list, a symptom needs an onset date, add one.
  await navUserIs(page, user.name);
  checkEqual((await recordTitles(page)).length, 0, 'a new account has no records');
  await shot(page, 'phone-records-empty');
  await page.selectOption('#record-kind', 'symptom');
  await page.fill('#record-title', user.record);
  await page.click('#record-submit');
  await page.locator('#record-onset-error').waitFor();
  check(/start/i.test(await page.locator('#record-onset-error').textContent()), 'symptom without onset: error next to the date');
  await page.fill('#record-onset', user.onset);
  await page.fill('#record-details', 'Worse in the mornings.\nBetter after water.');
  await page.click('#record-submit');
  await page.locator('#record-message.is-ok').waitFor();
  let titles = await recordTitles(page);
  checkEqual(titles.length, 1, 'one record after adding');
  checkEqual(titles[0], user.record, 'the record title is shown as text');
  check(await page.locator('#record-list script, #record-list b').count() === 0, 'user text is not parsed as HTML');
  const item = page.locator('#record-list li.record').first();
  check((await item.locator('time').first().getAttribute('datetime')) === user.onset, 'the onset date is shown');
  check((await item.textContent()).includes('Better after water.'), 'details are shown');
  await noHorizontalScroll(page, 'records');
  await shot(page, 'phone-records-added');

  // Edit and delete, on a second entry.
  await page.selectOption('#record-kind', 'medication');
  await page.fill('#record-title', 'Ibuprofen 200 mg');
  await page.click('#record-submit');
  await page.locator('#record-list li.record', { hasText: 'Ibuprofen 200 mg' }).waitFor();
  await page.locator('#record-list li.record', { hasText: 'Ibuprofen 200 mg' }).getByRole('button', { name: /^Edit/ }).click();
  checkEqual(await page.inputValue('#record-title'), 'Ibuprofen 200 mg', 'edit fills the form');
  await page.fill('#record-title', 'Ibuprofen 400 mg');
  await page.click('#record-submit');
  await page.locator('#record-list li.record', { hasText: 'Ibuprofen 400 mg' }).waitFor();
  titles = await recordTitles(page);
  check(titles.includes('Ibuprofen 400 mg') && !titles.includes('Ibuprofen 200 mg'), `edit renamed the entry: ${titles}`);
  const med = page.locator('#record-list li.record', { hasText: 'Ibuprofen 400 mg' });
  await med.getByRole('button', { name: /^Delete/ }).click();
  await shot(page, 'phone-records-confirm-delete');
  await med.getByRole('button', { name: 'Yes, delete' }).click();
  await page.locator('#record-list li.record', { hasText: 'Ibuprofen' }).waitFor({ state: 'detached' });
  titles = await recordTitles(page);
  checkEqual(JSON.stringify(titles), JSON.stringify([user.record]), 'only the symptom is left after the delete');
  watch.assertClean('records');

  // Log out from the header.
  await page.click('#logout-button');
  await expectPath(page, '/login');
  await page.locator('#login-notice', { hasText: 'logged out' }).waitFor();
  check(await page.locator('#nav-user').count() === 0, 'no user in the header after logging out');
  await shot(page, 'phone-logged-out');
  watch.assertClean('log out');

  // Wrong password: a clear error, still on the login page.
  let done = watch.allowHttpError(401, '/api/auth/login');
  await login(page, user.name, 'not the right password');
  await page.locator('#login-message', { hasText: /wrong username or password/i }).waitFor();
  await expectPath(page, '/login');
  checkEqual(await page.inputValue('#login-password'), '', 'the password field is cleared after a failed login');
  await noHorizontalScroll(page, 'login');
  await shot(page, 'phone-login-wrong-password');
  watch.assertClean('wrong password');
  done();

  // The right password: back to the records, which are still there.
  await login(page, user.name, user.password);
  await expectPath(page, '/records');
  await navUserIs(page, user.name);
  titles = await recordTitles(page);
  checkEqual(JSON.stringify(titles), JSON.stringify([user.record]), 'the record is listed after logging in again');
  await shot(page, 'phone-login-records');
  watch.assertClean('log in');

  // Forgot the password: reset with the recovery code.
  await page.click('#logout-button');
  await expectPath(page, '/login');
  await page.click('a[href="/reset"]');
  await expectPath(page, '/reset');
  await page.fill('#reset-username', user.name);
  await page.fill('#reset-code', user.recovery);
  await page.fill('#reset-password', user.newPassword);
  await page.fill('#reset-password2', user.newPassword);
  await noHorizontalScroll(page, 'reset');
  await shot(page, 'phone-reset-form');
  await page.click('#reset-form button[type="submit"]');
  const newCode = await readRecoveryPanel(page, 'reset');
  check(newCode !== user.recovery, 'the reset shows a new recovery code');
  await shot(page, 'phone-reset-new-code');
  await tickSavedAndContinue(page, 'reset');
  await expectPath(page, '/login');
  await page.locator('#login-notice', { hasText: 'new password' }).waitFor();
  user.recovery = newCode;
  watch.assertClean('reset');

  // The old password no longer works; the new one does.
  done = watch.allowHttpError(401, '/api/auth/login');
  await login(page, user.name, user.password);
  await page.locator('#login-message', { hasText: /wrong username or password/i }).waitFor();
  watch.assertClean('old password after reset');
  done();
  await login(page, user.name, user.newPassword);
  await expectPath(page, '/records');
  titles = await recordTitles(page);
  checkEqual(JSON.stringify(titles), JSON.stringify([user.record]), 'the record survives the password reset');
  await shot(page, 'phone-login-new-password');
  watch.assertClean('log in with the new password');

  // The other pages fit the phone too.
  for (const path of ['/profile', '/account', '/']) {
    await page.goto(base + path);
    await page.locator('#nav-user').waitFor();
    await noHorizontalScroll(page, path);
  }
  watch.assertClean('phone pages');
  await context.close();
}

async function desktopFlow(browser, watch, base, user, staff) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  await watch.attach(context);
  const page = await context.newPage();
  lastPage = page;
  page.setDefaultTimeout(10_000);
  watch.page(page, 'desktop');

  // Visiting a private page first sends you to log in, and back afterwards.
  let done = watch.allowHttpError(401, '/api/session');
  await page.goto(`${base}/profile`);
  await page.waitForURL((u) => u.pathname === '/login' && u.searchParams.get('next') === '/profile');
  watch.assertClean('redirect to login');
  done();
  await login(page, user.name, user.newPassword);
  await expectPath(page, '/profile');
  await navUserIs(page, user.name);

  // Profile: country, then a subdivision of it.
  await page.locator('#profile-page').waitFor({ state: 'visible' });
  await page.locator('#profile-country option[value="NZ"]').waitFor({ state: 'attached' });
  await page.fill('#profile-name', 'Sam <b>Test</b>');
  await page.fill('#profile-birth-year', '1985');
  await page.selectOption('#profile-sex', 'unspecified');
  await page.selectOption('#profile-country', 'NZ');
  await page.locator('#profile-region option[value="NZ-AUK"]').waitFor({ state: 'attached' });
  await page.selectOption('#profile-region', 'NZ-AUK');
  await page.click('#profile-form button[type="submit"]');
  await page.locator('#profile-message.is-ok').waitFor();
  await page.reload();
  await page.locator('#profile-region option[value="NZ-AUK"]').waitFor({ state: 'attached' });
  checkEqual(await page.inputValue('#profile-name'), 'Sam <b>Test</b>', 'display name saved');
  checkEqual(await page.inputValue('#profile-birth-year'), '1985', 'birth year saved');
  checkEqual(await page.inputValue('#profile-sex'), 'unspecified', 'sex saved');
  checkEqual(await page.inputValue('#profile-country'), 'NZ', 'country shown from the saved region');
  checkEqual(await page.inputValue('#profile-region'), 'NZ-AUK', 'region saved');
  await noHorizontalScroll(page, 'desktop profile');
  await shot(page, 'desktop-profile');
  watch.assertClean('profile');

  // Records page and its export link.
  await page.click('nav a[href="/records"]');
  await expectPath(page, '/records');
  const titles = await recordTitles(page);
  checkEqual(JSON.stringify(titles), JSON.stringify([user.record]), 'desktop: the record is listed');
  checkEqual(await page.getAttribute('#export-link', 'href'), '/api/export', 'export link');
  const exp = await context.request.get(`${base}/api/export`);
  checkEqual(exp.status(), 200, 'GET /api/export');
  const doc = await exp.json();
  checkEqual(doc.format, 'caresync-export-1', 'export format');
  check(doc.records?.some((r) => r.title === user.record && r.onset === user.onset), 'export holds the record');
  checkEqual(doc.profile?.region, 'NZ-AUK', 'export holds the profile');
  await noHorizontalScroll(page, 'desktop records');
  await shot(page, 'desktop-records');
  watch.assertClean('desktop records');

  // Account page, then delete the account (wrong password first).
  await page.click('nav a[href="/account"]');
  await expectPath(page, '/account');
  await page.locator('#account-page').waitFor({ state: 'visible' });
  await shot(page, 'desktop-account');
  // "Log out everywhere else": a second session (another device) ends, this one goes on.
  const elsewhere = await fetch(`${base}/api/auth/login`, { method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ username: user.name, password: user.newPassword }) });
  checkEqual(elsewhere.status, 200, 'log-in from another device');
  const elsewhereCookie = elsewhere.headers.getSetCookie().map((c) => c.split(';')[0]).join('; ');
  const probe = () => fetch(`${base}/api/session`, { headers: { Cookie: elsewhereCookie } });
  checkEqual((await probe()).status, 200, 'the other device is logged in');
  await page.click('#sessions-form button[type="submit"]');
  await page.locator('#sessions-message.is-ok').waitFor();
  check(/Logged out \d+ other session/.test(await page.locator('#sessions-message').textContent()),
    `sessions message: ${await page.locator('#sessions-message').textContent()}`);
  checkEqual((await probe()).status, 401, 'the other device was logged out');
  checkEqual((await context.request.get(`${base}/api/session`)).status(), 200, 'this device is still logged in');
  await shot(page, 'desktop-account-sessions-ended');
  watch.assertClean('log out everywhere else');
  await page.fill('#delete-password', 'definitely wrong');
  done = watch.allowHttpError(401, '/api/account');
  const forbiddenToo = watch.allowHttpError(403, '/api/account');
  const invalidToo = watch.allowHttpError(422, '/api/account');
  await page.click('#delete-form button[type="submit"]');
  await page.locator('#delete-password-error').waitFor();
  await page.locator('#delete-form:not([aria-busy])').waitFor();
  check(await page.locator('#account-page').isVisible(), 'a wrong password does not delete the account');
  await shot(page, 'desktop-account-delete-wrong-password');
  watch.assertClean('delete with a wrong password');
  done(); forbiddenToo(); invalidToo();
  await page.fill('#delete-password', user.newPassword);
  await page.click('#delete-form button[type="submit"]');
  await page.locator('#deleted-panel').waitFor({ state: 'visible' });
  check(await page.locator('#nav-user').count() === 0, 'header is logged out after deleting the account');
  await shot(page, 'desktop-account-deleted');
  watch.assertClean('delete account');
  done = watch.allowHttpError(401, '/api/auth/login');
  await page.goto(`${base}/login`);
  await login(page, user.name, user.newPassword);
  await page.locator('#login-message', { hasText: /wrong username or password/i }).waitFor();
  watch.assertClean('deleted account cannot log in');
  done();

  // A staff account sees a clear explanation instead of records.
  await page.fill('#login-username', staff.name);
  await page.fill('#login-password', staff.password);
  await page.click('#login-form button[type="submit"]');
  await expectPath(page, '/account');
  await navUserIs(page, staff.name);
  done = watch.allowHttpError(403, '/api/records');
  await page.goto(`${base}/records`);
  await page.locator('#staff-notice').waitFor();
  check(/personal accounts/i.test(await page.locator('#staff-notice').textContent()), 'staff notice on /records');
  await shot(page, 'desktop-staff-records');
  watch.assertClean('staff records');
  done();
  done = watch.allowHttpError(403, '/api/profile');
  await page.goto(`${base}/profile`);
  await page.locator('#staff-notice').waitFor();
  await shot(page, 'desktop-staff-profile');
  watch.assertClean('staff profile');
  done();
  await context.close();
}

// ---------------------------------------------------------------- main

async function main() {
  mkdirSync(ARTIFACTS, { recursive: true });
  for (const f of readdirSync(ARTIFACTS)) if (f.endsWith('.png')) rmSync(join(ARTIFACTS, f));
  check(existsSync(BIN), `no caresync binary at ${BIN}`);
  lintWebDir(WEB_DIR, ['index.html']);

  const dataDir = mkdtempSync(join(tmpdir(), 'caresync-browser-'));
  const suffix = Math.random().toString(36).slice(2, 8);
  const user = {
    name: `sam${suffix}`,
    password: 'correct horse battery staple',
    newPassword: 'a brand new passphrase 42',
    record: 'Headache <script>alert(1)</script> & <b>aura</b>',
    onset: isoDaysAgo(10),
  };
  const staff = { name: `dr.ng${suffix}`, password: 'staff member passphrase' };
  let server = null;
  let browser = null;
  const timer = setTimeout(() => {
    console.error(`FAIL: timed out after ${TOTAL_TIMEOUT_MS / 1000} s`);
    if (server) server.proc.kill('SIGKILL');
    process.exit(1);
  }, TOTAL_TIMEOUT_MS);
  try {
    createStaff(dataDir, staff.name, staff.password);
    server = await startServer(dataDir, { bin: BIN, webDir: WEB_DIR, artifacts: ARTIFACTS });
    liveServer = server;
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
    log(`chromium ${browser.version()}`);
    const watch = new Watch();
    await phoneFlow(browser, watch, server.base, user);
    log('phone (375x800): sign-up, recovery code, records, log out/in, wrong password, reset: ok');
    await desktopFlow(browser, watch, server.base, user, staff);
    log('desktop (1280x900): profile/region, export, delete account, staff notice: ok');
    log(`tolerated handled API errors: ${watch.seen.length ? watch.seen.join(', ') : 'none'}`);
  } catch (err) {
    if (lastPage && !lastPage.isClosed()) {
      await lastPage.screenshot({ path: join(ARTIFACTS, 'FAILED.png'), fullPage: true }).catch(() => {});
    }
    throw err;
  } finally {
    clearTimeout(timer);
    if (browser) await browser.close().catch(() => {});
    let stopError = null;
    if (server) await server.stop().catch((e) => { stopError = e; });
    liveServer = null;
    rmSync(dataDir, { recursive: true, force: true });
    if (stopError) throw stopError; // eslint-disable-line no-unsafe-finally
  }
}

for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    if (liveServer) liveServer.proc.kill('SIGKILL');
    console.error(`FAIL: interrupted by ${sig}`);
    process.exit(1);
  });
}

try {
  await main();
  log(`screenshots: ${ARTIFACTS} (${shotNo})`);
  console.log('PASS: browser signup flow');
  process.exit(0);
} catch (err) {
  console.error(`FAIL: ${err.stack || err.message}`);
  console.error(`screenshots and server.log: ${ARTIFACTS}`);
  process.exit(1);
}
