#!/usr/bin/env node
// Browser test of the organisation's own page (issue 14, /org-requests)
// against the real server and ledger, driven by playwright-core and
// Debian's chromium.
//
//   node tests/browser/org_flow.mjs <caresync-binary> <web-dir> <artifact-dir>
//
// An administrator registers an organisation on the ledger and puts an
// analyst in it (PUT /api/admin/users/{username}/org). The analyst signs in:
// their navigation has the organisation's Data requests page (no other
// role's has, see layout_flow). On the page they see the organisation and
// its credit; the administrator credits it on /admin-requests; the member
// posts a request THROUGH THE FORM (title, purpose in words and as a code,
// categories, condition codes, countries, age bands, price, places, closing
// date), the page showing the escrow it needs against the credit; a form
// missing its categories is refused on the page. The administrator approves
// it on /admin-requests. Three people accept (the person's side is
// market_flow's; here by the API): two alike, one who stands out. The
// member's page shows places taken and left and the escrow left, and
// downloads the CSV, the JSON and the data dictionary as files: the CSV's
// SHA-256 is the ledger release's, its rows are the delivered count, and the
// page shows how many rows the k-anonymity check (k = 2) held back, equal to
// the server's count. No participant's name, username, words or birth year
// is in any file. The member withdraws the request: the rest of the escrow
// returns to the credit. Page errors, CSP violations, 5xx and unexpected 4xx
// fail it.
// Exit codes: 0 pass, 1 fail, 2 usage, 77 skip (no chromium or playwright-core).
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  CHROMIUM, CHROMIUM_ARGS, Watch, browserTest, check, checkEqual, lintWebDir, log, pageOk, startServer, waitUntil,
  createUser as createUserWith,
} from './lib.mjs';

const PW = 'correct horse battery';
const PRICE = 10;
const PLACES = 4;
const K = 2;
const TOTAL_TIMEOUT_MS = 240_000;

const { BIN, WEB_DIR, ARTIFACTS, chromium } = await browserTest('org_flow');
mkdirSync(ARTIFACTS, { recursive: true });
lintWebDir(WEB_DIR, ['org-requests.html', 'admin-requests.html']);

const createUser = (dataDir, username, role) => createUserWith(BIN, dataDir, username, role, PW);
const ok = pageOk;

async function login(page, base, username) {
  await page.goto(`${base}/login`);
  await page.fill('#login-username', username);
  await page.fill('#login-password', PW);
  await page.click('#login-form button[type="submit"]');
  await page.waitForURL((u) => u.pathname !== '/login');
}

async function signUp(page, base, username) {
  await page.goto(`${base}/`);
  const r = await page.evaluate(async ([u, p]) => (await fetch('/api/auth/signup', { method: 'POST',
    headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ username: u, password: p }) })).status, [username, PW]);
  check(r === 201, `sign-up ${username}: ${r}`);
}

const dataDir = mkdtempSync(join(tmpdir(), 'caresync-browser-org-'));
let browser, server;
let failed = false;
const timer = setTimeout(() => {
  console.error(`FAIL: timed out after ${TOTAL_TIMEOUT_MS / 1000} s`);
  if (server) server.proc.kill('SIGKILL');
  process.exit(1);
}, TOTAL_TIMEOUT_MS);
try {
  server = await startServer(dataDir, { bin: BIN, webDir: WEB_DIR, artifacts: ARTIFACTS, args: ['--small-cell-k', String(K)] });
  const { base } = server;
  createUser(dataDir, 'of-admin', 'admin');
  createUser(dataDir, 'of-analyst', 'analyst');
  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  const watch = new Watch();
  const pages = {};
  for (const who of ['admin', 'member', 'ann', 'ben', 'cat']) {
    const context = await browser.newContext({ viewport: { width: 1100, height: 900 }, acceptDownloads: true });
    await watch.attach(context);
    pages[who] = await context.newPage();
    pages[who].setDefaultTimeout(20_000);
    watch.page(pages[who], who);
  }
  const { admin, member } = pages;
  let shot = 0;
  const snap = async (page, name) => page.screenshot({ path: join(ARTIFACTS, `${String(++shot).padStart(2, '0')}-${name}.png`), fullPage: true });

  // The organisation on the ledger, and the analyst put in it.
  await login(admin, base, 'of-admin');
  const orgKey = randomBytes(32).toString('hex');
  const orgName = 'Southern Skin Study';
  await ok(admin, 'POST', '/api/admin/orgs', { name: orgName, public_key: orgKey }, 201);
  const put = await ok(admin, 'PUT', '/api/admin/users/of-analyst/org', { org: orgKey });
  checkEqual(put.role, 'analyst', 'an analyst can belong to an organisation');

  // The member signs in: the organisation's page is in their navigation.
  await login(member, base, 'of-analyst');
  await member.locator('#site-nav a[href="/org-requests"]').waitFor();
  await member.click('#site-nav a[href="/org-requests"]');
  await member.waitForURL((u) => u.pathname === '/org-requests');
  check(await member.locator('#site-nav a[href="/org-requests"][aria-current="page"]').count() === 1,
    'the member\'s nav has the organisation\'s Data requests, marked current');
  await waitUntil(member, () => /tokens?$/.test(document.querySelector('#org-balance').textContent));
  check((await member.textContent('#org-name')).includes(orgName), 'the page names the organisation');
  checkEqual(await member.textContent('#org-balance'), '0 tokens', 'no credit yet');
  check(/no data request yet/.test(await member.textContent('#list-status')), 'no requests yet');

  // The administrator credits it on /admin-requests.
  await admin.goto(`${base}/admin-requests`);
  await admin.waitForSelector('#admin-page:not([hidden])');
  await waitUntil(admin, (k) => [...document.querySelectorAll('#credit-org option')].some((o) => o.value === k), orgKey);
  await admin.selectOption('#credit-org', orgKey);
  await admin.fill('#credit-amount', '100');
  await admin.fill('#credit-reference', 'PO-7731');
  await admin.click('#credit-submit');
  await waitUntil(admin, () => /Credited 100 tokens/.test(document.querySelector('#credit-message').textContent));

  // The member posts through the form. Without categories the page refuses it.
  await member.reload();
  await waitUntil(member, () => document.querySelector('#org-balance').textContent === '100 tokens');
  await waitUntil(member, () => document.querySelector('#condition-choices input[value="fungal"]'));
  const terms = {
    title: 'Recurrence of fungal skin infections', purpose_text: 'We study how often fungal infections come back, by age band and region.',
  };
  await member.fill('#post-title', terms.title);
  await member.fill('#post-purpose-text', terms.purpose_text);
  await member.check('#purpose-research');
  await member.check('#post-conditions input[value="fungal"]');
  await member.fill('#post-countries', 'nz');
  for (const band of ['35-39', '75-79']) await member.check(`#post-age-bands input[value="${band}"]`);
  await member.fill('#post-price', String(PRICE));
  await member.fill('#post-places', String(PLACES));
  const closes = new Date(Date.now() + 30 * 86400e3).toISOString().slice(0, 10);
  await member.fill('#post-closes', closes);
  const total = await member.textContent('#escrow-total');
  check(/Escrow needed: 10 tokens × 4 places = 40 tokens/.test(total) && /credit: 100 tokens/.test(total),
    `the escrow the request needs and the credit are shown: ${total}`);
  await member.click('#post-submit');
  await waitUntil(member, () => /Choose at least one kind of data/.test(document.querySelector('#post-message').textContent));
  checkEqual((await ok(member, 'GET', '/api/org/requests')).requests.length, 0, 'nothing was posted');
  await member.check('#category-conditions');
  await member.check('#category-demographics');
  await snap(member, 'member-form');
  await member.click('#post-submit');
  await waitUntil(member, () => /Posted/.test(document.querySelector('#post-message').textContent));
  const item = member.locator('#request-list li.market-request').first();
  await item.waitFor();
  const id = await item.getAttribute('data-id');
  checkEqual(await item.locator('.request-state').textContent(), 'Waiting for approval', 'posted requests wait');
  const posted = (await ok(member, 'GET', `/api/org/requests/${id}`)).request;
  checkEqual(posted.organisation.key, orgKey, 'posted for the member\'s organisation');
  const c = posted.criteria;
  checkEqual(JSON.stringify([c.conditions, c.countries, c.age_bands]), JSON.stringify([['fungal'], ['NZ'], ['35-39', '75-79']]),
    'the criteria as entered');
  checkEqual(posted.categories.join(), 'conditions,demographics', 'the categories as ticked');
  checkEqual(posted.purpose, 'research', 'the purpose code');
  checkEqual(posted.closes, `${closes}T23:59:59Z`, 'closes at the end of the chosen day (UTC)');
  checkEqual([posted.price, posted.max_participants].join(), `${PRICE},${PLACES}`, 'price and places');
  watch.assertClean('credit and post');

  // The administrator approves it on /admin-requests.
  await admin.selectOption('#state-filter', 'open');
  await admin.selectOption('#state-filter', 'pending');
  const pending = admin.locator(`#request-list li[data-id="${id}"]`);
  await pending.waitFor();
  check((await pending.textContent()).includes(orgName), 'the administrator sees the organisation');
  await pending.locator('.approve-button').click();
  await admin.click(`#request-list li[data-id="${id}"] .confirm-box button:not(.button-secondary)`);
  await waitUntil(admin, () => /Approved/.test(document.querySelector('#list-message').textContent));

  // Three people accept: two alike, one who stands out among fewer than k.
  for (const [who, name, birth, sex, region, onset] of [
    ['ann', 'ann.orgflow', 1990, 'female', 'NZ-AUK', '2026-02-10'],
    ['ben', 'ben.orgflow', 1990, 'female', 'NZ-AUK', '2026-02-11'],
    ['cat', 'cat.orgflow', 1950, 'male', 'NZ-WGN', '2026-06-10']]) {
    const page = pages[who];
    await signUp(page, base, name);
    await ok(page, 'PUT', '/api/profile', { display_name: `Secret Name ${who}`, birth_year: birth, sex, region });
    await ok(page, 'POST', '/api/records', { kind: 'condition', title: `Private words of ${who}`, details: 'never leaves', onset, code: 'fungal' }, 201);
    const accepted = await ok(page, 'POST', `/api/market/requests/${id}/accept`, {}, 201);
    checkEqual(accepted.paid, PRICE, `${who} is paid`);
  }

  // The member's page: open, places taken and left, escrow left, credit.
  await member.reload();
  const open = member.locator(`#request-list li[data-id="${id}"]`);
  await open.waitFor();
  checkEqual(await open.locator('.request-state').textContent(), 'Open', 'approved = open');
  checkEqual(await open.locator('.places').textContent(), '3 taken, 1 left', 'places taken and left');
  checkEqual(await open.locator('.escrow-left').textContent(), '10 tokens', 'the escrow left');
  checkEqual(await member.textContent('#org-balance'), '60 tokens', 'the credit less the escrow');

  // Downloads: the CSV, the JSON and the data dictionary, as files.
  const save = async (kind) => {
    const [dl] = await Promise.all([member.waitForEvent('download'), open.locator(`.download-${kind}`).click()]);
    return { name: dl.suggestedFilename(), bytes: readFileSync(await dl.path()) };
  };
  const csv = await save('csv');
  checkEqual(csv.name, `dataset-${id}.csv`, 'the CSV file name');
  const summary = open.locator('.delivery-summary');
  await summary.waitFor();
  const server1 = await ok(member, 'GET', `/api/org/requests/${id}/dataset?format=json`);
  checkEqual(server1.receipt.repeat, true, 'the page\'s CSV was the release; the same rows again write nothing');
  checkEqual(createHash('sha256').update(csv.bytes).digest('hex'), server1.sha256, 'the file is the released dataset (its SHA-256)');
  const lines = csv.bytes.toString('utf8').trim().split(/\r?\n/);
  checkEqual(lines.length - 1, server1.summary.delivered, 'one CSV line per delivered row');
  check(server1.summary.held_back >= 1 && server1.summary.delivered >= 1,
    `k = ${K}: the two alike are delivered, the one who stands out held back: ${JSON.stringify(server1.summary)}`);
  checkEqual(await summary.getAttribute('data-held-back'), String(server1.summary.held_back), 'the page shows the held-back count');
  checkEqual(await summary.getAttribute('data-delivered'), String(server1.summary.delivered), 'and the delivered count');
  const said = await summary.textContent();
  check(said.includes(`${server1.summary.held_back} row${server1.summary.held_back === 1 ? '' : 's'} held back`) && said.includes(`k = ${K}`),
    `the held-back count in words: ${said}`);
  check(await summary.locator(`a.hex[title="${server1.receipt.txid}"]`).count() === 1, 'the ledger release is linked');
  const json = await save('json');
  const doc = JSON.parse(json.bytes.toString('utf8'));
  checkEqual(doc.sha256, server1.sha256, 'the JSON file holds the same dataset');
  checkEqual(doc.rows.length, server1.summary.delivered, 'with the delivered rows');
  const dict = await save('dictionary');
  checkEqual(dict.name, `dictionary-${id}.json`, 'the dictionary file name');
  const dictionary = JSON.parse(dict.bytes.toString('utf8')).dictionary;
  check(Array.isArray(dictionary) && dictionary.some((d) => d.name === 'age_band' && d.meaning), 'the data dictionary explains the columns');
  for (const f of [csv, json]) {
    // Hashes and ids (long hex runs) are random and may hold "1990": read around them.
    const text = f.bytes.toString('utf8').replace(/[0-9a-f]{16,}/g, '');
    check(!/orgflow|Secret Name|Private words|never leaves|1990|1950|2026-02-1\d|2026-06-10/.test(text),
      `${f.name}: no username, name, words, birth year or exact date`);
  }
  await snap(member, 'member-downloaded');
  watch.assertClean('approve, accept, download');

  // The member withdraws it: it closes, the rest of the escrow returns.
  await open.locator('.withdraw-button').click();
  const q = await member.textContent(`#request-list li[data-id="${id}"] .confirm-question`);
  check(/10 tokens left in escrow return/.test(q), `the withdrawal says what returns: ${q}`);
  await member.click(`#request-list li[data-id="${id}"] .confirm-box button:not(.button-secondary)`);
  await waitUntil(member, () => /Withdrew/.test(document.querySelector('#list-message').textContent));
  const gone = member.locator(`#request-list li[data-id="${id}"]`);
  checkEqual(await gone.locator('.request-state').textContent(), 'Closed', 'an open request withdrawn is closed on the ledger');
  checkEqual(await gone.locator('.withdraw-button').count(), 0, 'no second withdrawal');
  checkEqual(await member.textContent('#org-balance'), '70 tokens', 'the rest of the escrow is back in the credit');
  watch.assertClean('withdraw');
  log('member nav, credit, post through the page, approve, places and escrow, CSV/JSON/dictionary downloads with held-back count, withdraw: ok');
} catch (err) {
  failed = true;
  console.error(`FAIL: ${err.stack || err.message}`);
} finally {
  if (browser) await browser.close().catch(() => {});
  if (server) {
    try { await server.stop(); } catch (err) { failed = true; console.error(`FAIL: ${err.message}`); }
  }
  clearTimeout(timer);
  if (!failed) rmSync(dataDir, { recursive: true, force: true });
}
if (failed) process.exit(1);
console.log('PASS: browser organisation flow');
