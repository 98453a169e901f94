#!/usr/bin/env node
// Browser test of data for tokens (issue 14) against the real server and
// ledger, driven by playwright-core and Debian's chromium.
//
//   node tests/browser/market_flow.mjs <caresync-binary> <web-dir> <artifact-dir>
//
// An organisation (registered on the ledger, with its bearer token, as
// tests/integration/market.test.mjs does) posts a data request through the
// token API; an administrator (browser, /admin-requests) credits it with a
// reference and approves the request, which funds it on the ledger. Two
// people (two browser contexts) make their records matchable with the
// records form's condition select and see the request on /data-requests
// with the organisation, the purpose in words and as a code, the payment,
// the closing date, places left and a preview whose cells are exactly the
// API's rows (no title, details or name). One accepts through the inline
// confirmation (consent on the public ledger under the wallet, paid N
// tokens) and is paid: the wallet shows the market_pay row and the explorer
// names it; a second request then shows the daily-cap message. The other
// declines: nothing is sent, the request is hidden in that browser only, and
// places left stay as they were. The accepting person withdraws: the
// consent is revoked on the ledger, the participation says withdrawn and the
// payment stays. Page errors, CSP violations, 5xx and unexpected 4xx fail it.
// The organisation downloads its dataset (token API) before the withdrawal
// and again after it: the second is smaller, each a ledger release of its
// hash. The server runs with --small-cell-k 1 so one participant's rows are
// delivered at all (k-anonymity itself is market_delivery's test).
// Exit codes: 0 pass, 1 fail, 2 usage, 77 skip (no chromium or playwright-core).
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CHROMIUM, CHROMIUM_ARGS, Watch, browserTest, check, checkEqual, lintWebDir, log, pageCall, pageOk, startServer, waitUntil, createUser as createUserWith } from './lib.mjs';

const PW = 'correct horse battery';
const PRICE = 10;
const CAP = 15; // --market-daily-cap: one payment fits, a second would not
const TOTAL_TIMEOUT_MS = 240_000;

const { BIN, WEB_DIR, ARTIFACTS, chromium } = await browserTest('market_flow');
mkdirSync(ARTIFACTS, { recursive: true });
lintWebDir(WEB_DIR, ['data-requests.html', 'admin-requests.html', 'records.html']);

const createUser = (dataDir, username, role) => createUserWith(BIN, dataDir, username, role, PW);
const call = pageCall;
const ok = pageOk;

// The organisation's side: its bearer token, from Node (no browser).
async function orgCall(base, token, method, path, body, want = 200) {
  const r = await fetch(base + path, {
    method, headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json', Accept: 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  check(r.status === want, `organisation ${method} ${path}: expected ${want}, got ${r.status} ${text}`);
  return JSON.parse(text);
}

function closesIn(days) {
  return new Date(Date.now() + days * 86400e3).toISOString().replace(/\.\d+Z$/, 'Z');
}

async function login(page, base, username) {
  await page.goto(`${base}/`);
  const r = await page.evaluate(async ([u, p]) => (await fetch('/api/auth/login', { method: 'POST',
    headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ username: u, password: p }) })).status, [username, PW]);
  check(r === 200, `log-in ${username}: ${r}`);
}

async function signUp(page, base, username) {
  await page.goto(`${base}/`);
  const r = await page.evaluate(async ([u, p]) => (await fetch('/api/auth/signup', { method: 'POST',
    headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ username: u, password: p }) })).status, [username, PW]);
  check(r === 201, `sign-up ${username}: ${r}`);
}

// A coded condition through the records form: the new "Condition (optional)" select.
async function addCodedCondition(page, base, title, onset, code) {
  await page.goto(`${base}/records`);
  await page.waitForSelector('#records-page:not([hidden])');
  await waitUntil(page, (c) => [...document.querySelectorAll('#record-code option')].some((o) => o.value === c), code);
  await page.selectOption('#record-kind', 'condition');
  check(await page.locator('#record-code-field').isVisible(), 'the condition select shows for conditions');
  await page.fill('#record-title', title);
  await page.fill('#record-onset', onset);
  await page.fill('#record-details', 'Private free text that never leaves');
  await page.selectOption('#record-code', code);
  await page.click('#record-submit');
  await page.waitForSelector(`#record-list .record-code[data-code="${code}"]`);
  await page.selectOption('#record-kind', 'medication');
  check(!(await page.locator('#record-code-field').isVisible()), 'no condition select for a medication');
}

const dataDir = mkdtempSync(join(tmpdir(), 'caresync-browser-market-'));
let browser, server;
let failed = false;
const timer = setTimeout(() => {
  console.error(`FAIL: timed out after ${TOTAL_TIMEOUT_MS / 1000} s`);
  if (server) server.proc.kill('SIGKILL');
  process.exit(1);
}, TOTAL_TIMEOUT_MS);
try {
  server = await startServer(dataDir, { bin: BIN, webDir: WEB_DIR, artifacts: ARTIFACTS, args: ['--market-daily-cap', String(CAP), '--small-cell-k', '1'] });
  const { base } = server;
  createUser(dataDir, 'mf-admin', 'admin');
  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  const watch = new Watch();
  const pages = {};
  for (const who of ['admin', 'ann', 'ben']) {
    const context = await browser.newContext({ viewport: { width: 1100, height: 900 } });
    await watch.attach(context);
    pages[who] = await context.newPage();
    pages[who].setDefaultTimeout(20_000);
    watch.page(pages[who], who);
  }
  const { admin, ann, ben } = pages;
  let shot = 0;
  const snap = async (page, name) => page.screenshot({ path: join(ARTIFACTS, `${String(++shot).padStart(2, '0')}-${name}.png`), fullPage: true });

  // The organisation: registered on the ledger, with a bearer token.
  await login(admin, base, 'mf-admin');
  const orgKey = randomBytes(32).toString('hex');
  const orgName = 'Fungal Research Institute';
  await ok(admin, 'POST', '/api/admin/orgs', { name: orgName, public_key: orgKey }, 201);
  const token = (await ok(admin, 'POST', `/api/admin/orgs/${orgKey}/tokens`, {}, 201)).token;

  // The administrator credits it on /admin-requests (their nav has the page).
  await admin.goto(`${base}/admin-requests`);
  await admin.waitForSelector('#admin-page:not([hidden])');
  check(await admin.locator('#site-nav a[href="/admin-requests"][aria-current="page"]').count() === 1,
    'the administrator\'s nav has Data requests, marked current');
  await waitUntil(admin, (k) => [...document.querySelectorAll('#credit-org option')].some((o) => o.value === k), orgKey);
  await admin.selectOption('#credit-org', orgKey);
  await admin.fill('#credit-amount', '100');
  await admin.fill('#credit-reference', 'INV-2026-0042');
  await admin.click('#credit-submit');
  await waitUntil(admin, () => /Credited 100 tokens/.test(document.querySelector('#credit-message').textContent));
  check(/balance is now 100 tokens/.test(await admin.textContent('#credit-message')), 'the new balance is shown');
  const creditTx = await admin.getAttribute('#credit-receipt a.hex', 'title');
  const creditRead = (await ok(admin, 'GET', `/api/ledger/tx/${creditTx}`)).transaction;
  checkEqual(creditRead.kind, 'credit', 'the receipt names the credit transaction');
  checkEqual(creditRead.reference, 'INV-2026-0042', 'with the reference');
  checkEqual((await orgCall(base, token, 'GET', '/api/v1/requests')).balance, 100, 'the organisation holds the credit');

  // The organisation posts a request with its token; it waits for approval.
  const terms = {
    title: 'How often fungal skin infections recur', purpose_text: 'We study recurrence of fungal infections by age and region.',
    purpose: 'research', categories: ['conditions', 'demographics'], criteria: { conditions: ['fungal'], countries: ['NZ'] },
    price: PRICE, max_participants: 2, closes: closesIn(30),
  };
  const posted = (await orgCall(base, token, 'POST', '/api/v1/requests', terms, 201)).request;
  checkEqual(posted.state, 'pending', 'posted requests wait for an administrator');

  // Approve on the page (pending is the default view), with the confirmation.
  await admin.selectOption('#state-filter', 'open');
  await admin.selectOption('#state-filter', 'pending');
  const item = admin.locator(`#request-list li[data-id="${posted.id}"]`);
  await item.waitFor();
  check(/20 tokens/.test(await item.textContent()), 'the total to escrow (price × places) is shown');
  await snap(admin, 'admin-pending');
  await item.locator('.approve-button').click();
  const q = await admin.textContent(`#request-list li[data-id="${posted.id}"] .confirm-question`);
  check(/20 tokens move from Fungal Research Institute/.test(q), `the approval says what moves: ${q}`);
  await admin.click(`#request-list li[data-id="${posted.id}"] .confirm-box button:not(.button-secondary)`);
  await waitUntil(admin, () => /Approved/.test(document.querySelector('#list-message').textContent));
  const funded = (await orgCall(base, token, 'GET', `/api/v1/requests/${posted.id}`)).request;
  checkEqual(funded.state, 'open', 'approved = open');
  checkEqual(funded.remaining, 2 * PRICE, 'funded in full');
  checkEqual(await admin.getAttribute('#list-message a.hex', 'title'), funded.escrow_txid, 'the funding transaction is linked');
  watch.assertClean('credit and approve');

  // Two people, each with a matching record made through the records form.
  for (const [page, name, birth] of [[ann, 'ann.market', 1990], [ben, 'ben.market', 1975]]) {
    await signUp(page, base, name);
    await ok(page, 'PUT', '/api/profile', { display_name: `Secret Name ${name}`, birth_year: birth, sex: 'female', region: 'NZ-AUK' });
    await addCodedCondition(page, base, `Itchy foot words of ${name}`, '2026-02-10', 'fungal');
  }
  const annRecords = (await ok(ann, 'GET', '/api/records')).records;
  checkEqual(annRecords[0].code, 'fungal', 'the records form saved the code');
  check(await ann.locator('#site-nav a[href="/data-requests"]').count() === 1, 'persons have a Data requests link');
  await ann.click('#site-nav a[href="/data-requests"]');
  await ann.waitForURL((u) => u.pathname === '/data-requests');

  // What each sees: the request with its facts, and exactly the API's rows.
  for (const [page, who] of [[ann, 'ann'], [ben, 'ben']]) {
    if (page !== ann) await page.goto(`${base}/data-requests`);
    const li = page.locator(`#open-list li[data-id="${posted.id}"]`);
    await li.waitFor();
    const api = (await ok(page, 'GET', '/api/market/requests')).requests.find((r) => r.id === posted.id);
    check(api, `${who}: the API lists the request`);
    const text = await li.textContent();
    for (const want of [orgName, terms.title, terms.purpose_text, 'Health research', 'research', `${PRICE} tokens`, '2 of 2']) {
      check(text.includes(want), `${who}: the request shows "${want}": ${text}`);
    }
    // Keys shown as short hex (the organisation's) are random and may hold "1975": read around them.
    const bare = await li.evaluate((n) => { const c = n.cloneNode(true); c.querySelectorAll('.hex').forEach((h) => h.remove()); return c.textContent; });
    check(!/Itchy foot|Private free text|Secret Name|19[79]\d|2026-02-10/.test(bare), `${who}: no title, details, name, birth year or date: ${bare}`);
    const cells = await li.locator('table.preview-rows tbody tr').evaluateAll((trs) => trs.map((tr) => Object.fromEntries(
      [...tr.querySelectorAll('td')].map((td) => [td.dataset.key, td.textContent]))));
    checkEqual(cells.length, api.preview.length, `${who}: one table row per API row`);
    cells.forEach((c, i) => {
      const row = api.preview[i];
      checkEqual(Object.keys(c).sort().join(','), Object.keys(row).sort().join(','), `${who}: the table has the row's columns`);
      for (const key of ['week', 'age_band', 'region']) checkEqual(c[key], row[key], `${who}: preview ${key}`);
      check(c.code.includes(row.code), `${who}: preview code ${c.code} names ${row.code}`);
    });
    check(/never the words you wrote/.test(await page.textContent('#what-leaves')), 'the page says what is generalised');
    check(/Never shared: your name/.test(await page.textContent('#what-leaves')), 'and what never leaves');
    checkEqual(api.preview[0].week, '2026-W07', 'the onset as its ISO week');
  }
  await snap(ann, 'person-preview');

  // Ann accepts through the inline confirmation and is paid.
  await ann.click(`#open-list li[data-id="${posted.id}"] .accept-button`);
  const confirm = await ann.textContent(`#open-list li[data-id="${posted.id}"] .confirm-question`);
  check(/public ledger under your wallet, without your name/.test(confirm) && /paid 10 tokens/.test(confirm),
    `the confirmation says ledger, no name, payment: ${confirm}`);
  await ann.click(`#open-list li[data-id="${posted.id}"] .confirm-box button:not(.button-secondary)`);
  await waitUntil(ann, () => /were paid 10 tokens/.test(document.querySelector('#page-message').textContent));
  const payTx = await ann.getAttribute('#page-message a.hex[aria-label="Payment transaction"]', 'title');
  const took = ann.locator(`#took-list li[data-request="${posted.id}"]`);
  await took.waitFor();
  checkEqual(await took.locator('.paid').textContent(), '10 tokens', 'the participation shows the payment');
  await snap(ann, 'person-accepted');

  // The wallet shows it; the explorer names it.
  await ann.click('#site-nav a[href="/wallet"]');
  await ann.locator('#history-table').waitFor({ state: 'visible' });
  checkEqual((await ann.locator('#wallet-balance').textContent()).trim(), String(PRICE), 'the wallet holds the payment');
  const payRow = ann.locator(`#history-body tr[data-kind="market_pay"][data-txid="${payTx}"]`);
  checkEqual(await payRow.count(), 1, 'the wallet history has the payment row');
  check(/Paid for sharing data with a data request/.test(await payRow.textContent()), 'read as words');
  check(/\+10/.test(await payRow.textContent()), 'with its amount');
  await ann.goto(`${base}/ledger?tx=${payTx}`);
  await waitUntil(ann, () => document.querySelector('#tx-kind'));
  checkEqual(await ann.textContent('#tx-kind'), 'Paid for sharing data with a data request', 'the explorer names the payment');

  // Ben declines: nothing goes to the server, and nothing changes there.
  await ben.goto(`${base}/data-requests`);
  const benItem = ben.locator(`#open-list li[data-id="${posted.id}"]`);
  await benItem.waitFor();
  check(/1 of 2/.test(await benItem.textContent()), 'Ben sees one place left after Ann');
  const posts = [];
  ben.on('request', (r) => { if (r.method() !== 'GET') posts.push(r.url()); });
  await benItem.locator('.decline-button').click();
  await benItem.waitFor({ state: 'detached' });
  check(/declined every open request/.test(await ben.textContent('#open-status')), 'the list says so');
  check(await ben.locator('#show-declined').isVisible(), 'declined requests can be shown again');
  checkEqual(posts.length, 0, 'declining sends nothing');
  const benList = await ok(ben, 'GET', '/api/market/requests');
  checkEqual(benList.participations.length, 0, 'Ben took part in nothing');
  checkEqual(benList.requests.find((r) => r.id === posted.id).places_left, 1, 'places left unchanged by the decline');
  checkEqual((await ok(ben, 'GET', '/api/wallet')).wallet.balance, 0, 'Ben is not paid');
  await ben.reload();
  await ben.locator('#show-declined').waitFor({ state: 'visible' });
  checkEqual(await ben.locator(`#open-list li[data-id="${posted.id}"]`).count(), 0, 'still hidden after a reload');
  watch.assertClean('accept and decline');

  // A second request: Ann's payment today leaves less than its price under the cap.
  const second = (await orgCall(base, token, 'POST', '/api/v1/requests', { ...terms, title: 'A second fungal study', max_participants: 3 }, 201)).request;
  await ok(admin, 'POST', `/api/admin/market/requests/${second.id}/approve`, {});
  await ann.goto(`${base}/data-requests`);
  const capped = ann.locator(`#open-list li[data-id="${second.id}"]`);
  await capped.waitFor();
  check(/earning limit of 15 tokens/.test(await capped.locator('.cap-applies').textContent()), 'the daily cap message');
  check(await capped.locator('.accept-button').isDisabled(), 'accepting is off while the cap applies');
  check(/earned 10 tokens/.test(await ann.textContent('#cap-status')), 'today\'s earnings are shown');

  // The organisation downloads: Ann's rows are in it.
  const ds1 = await orgCall(base, token, 'GET', `/api/v1/requests/${posted.id}/dataset?format=json`);
  check(ds1.rows.length > 0 && ds1.summary.delivered === ds1.rows.length, `the dataset holds Ann's rows: ${JSON.stringify(ds1.summary)}`);
  check(/^[0-9a-f]{64}$/.test(ds1.receipt.txid || ''), `a ledger release for the delivery: ${JSON.stringify(ds1.receipt)}`);

  // Ann withdraws: the consent is revoked on the ledger; the payment stays.
  const grant = (await ok(ann, 'GET', '/api/market/requests')).participations[0].grant_txid;
  await took.locator('.withdraw-button').click();
  const wq = await ann.textContent(`#took-list li[data-request="${posted.id}"] .confirm-question`);
  check(/removed from every later delivery/.test(wq) && /10 tokens you were paid stay yours/.test(wq), `the withdrawal says what happens: ${wq}`);
  await ann.click(`#took-list li[data-request="${posted.id}"] .confirm-box button:not(.button-secondary)`);
  await waitUntil(ann, () => /Withdrawn from/.test(document.querySelector('#took-message').textContent));
  await ann.locator(`#took-list li[data-request="${posted.id}"] .withdrawn-note`).waitFor();
  const consent = (await ok(ann, 'GET', '/api/consents')).consents.find((c) => c.id === grant);
  checkEqual(consent && consent.status, 'revoked', 'the consent is revoked');
  const after = (await ok(ann, 'GET', '/api/market/requests')).participations[0];
  check(after.withdrawn_at, 'the participation is withdrawn');
  checkEqual((await ok(ann, 'GET', '/api/wallet')).wallet.balance, PRICE, 'the payment stays paid');
  checkEqual(await ann.locator(`#took-list li[data-request="${posted.id}"] .withdraw-button`).count(), 0, 'no second withdrawal');
  await snap(ann, 'person-withdrawn');
  watch.assertClean('withdraw');
  // The next download lacks her rows, and is a release of its own.
  const ds2 = await orgCall(base, token, 'GET', `/api/v1/requests/${posted.id}/dataset?format=json`);
  check(ds2.rows.length < ds1.rows.length, `the next download is smaller: ${ds1.rows.length} → ${ds2.rows.length}`);
  check(ds2.receipt.txid !== ds1.receipt.txid, 'a new release for the smaller dataset');
  log('credit, approve, preview, accept + paid, decline, daily cap, download, withdraw, smaller download: ok');
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
console.log('PASS: browser market flow');
