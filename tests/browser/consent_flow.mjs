#!/usr/bin/env node
// Browser test of the ledger pages (consents, wallet, public explorer) against
// the real server, driven by playwright-core and Debian's chromium.
//
//   node tests/browser/consent_flow.mjs <caresync-binary> <web-dir> <artifact-dir>
//
// Starts `caresync serve` on a free port with a temporary data directory, then
// on a 375x800 phone screen: signs up, opens Consents, gives a consent for two
// categories (conditions, symptoms) for public health surveillance, sees it
// active, downloads its receipt through the page's link and checks it offline
// with `caresync ledger verify-proof` (and that a copy with one corrupted byte
// in the proof path, or the wrong node key, fails), revokes it (after a
// "keep sharing" first) and sees it revoked; opens the Wallet: balance 0, the
// register_wallet entry, clear errors for an over-balance redeem and an
// unknown recipient. At desktop size, logged out: the public Ledger page (tree
// head, node key, totals, block paging with "Older blocks"), finds the grant
// by its txid, checks its inclusion proof and block, and asserts that no
// username appears anywhere on the explorer. Then the logged-in pages at
// desktop size. Screenshots of every step go to <artifact-dir>, with the
// downloaded receipt. Any console error, page error, CSP violation, failed
// request or 5xx fails the test.
// Exit codes: 0 pass, 1 fail, 2 usage, 77 skip (no chromium or playwright-core).
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { CHROMIUM, CHROMIUM_ARGS, Watch, check, checkEqual, lintWebDir, log, startServer, browserTest } from './lib.mjs';

const TOTAL_TIMEOUT_MS = 240_000;
const HEX64 = /^[0-9a-f]{64}$/;

const { BIN, WEB_DIR, ARTIFACTS, chromium } = await browserTest('consent_flow');

// ---------------------------------------------------------------- helpers







// ---------------------------------------------------------------- server


async function getJson(url) {
  const res = await fetch(url);
  check(res.ok, `GET ${url}: ${res.status}`);
  return res.json();
}

// More blocks for the explorer's paging, written by a second account through
// the API: each consent is one ledger transaction, sealed in its own block.
async function addFillerBlocks(base, username, count) {
  const signup = await fetch(`${base}/api/auth/signup`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ username, password: 'filler account passphrase' }),
  });
  checkEqual(signup.status, 201, 'filler sign-up');
  const { csrf_token: csrf } = await signup.json();
  const cookie = signup.headers.getSetCookie().map((c) => c.split(';')[0]).join('; ');
  for (let i = 0; i < count; i++) {
    const res = await fetch(`${base}/api/consents`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': csrf, Cookie: cookie },
      body: JSON.stringify({ scope: ['demographics'], purpose: 'research', expires_in_days: 1 + i }),
    });
    checkEqual(res.status, 201, `filler consent ${i + 1}`);
  }
}

// `caresync ledger verify-proof FILE --node-key KEY`
function verifyProof(file, nodeKey) {
  const r = spawnSync(BIN, ['ledger', 'verify-proof', file, '--node-key', nodeKey], { encoding: 'utf8', timeout: 30_000 });
  return { status: r.status, output: `${r.stdout || ''}${r.stderr || ''}`.trim() };
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

// No horizontal scroll, every control labelled, one h1, a lang attribute.
async function layoutOk(page, where) {
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

async function navLinks(page) {
  await page.locator('#site-nav ul').waitFor();
  return page.locator('#site-nav a').evaluateAll((as) => as.map((a) => a.getAttribute('href')));
}

async function focusedText(page) {
  return page.evaluate(() => document.activeElement?.textContent?.trim() || '');
}

async function signUp(page, base, user) {
  await page.goto(`${base}/`);
  const links = await navLinks(page);
  check(links.includes('/ledger'), `logged-out navigation links to the ledger: ${links}`);
  await page.click('#guest-actions a[href="/signup"]');
  await expectPath(page, '/signup');
  await page.fill('#signup-username', user.name);
  await page.fill('#signup-password', user.password);
  await page.fill('#signup-password2', user.password);
  await page.click('#signup-form button[type="submit"]');
  await page.locator('#recovery-panel').waitFor({ state: 'visible' });
  await page.check('#recovery-saved');
  await page.click('#recovery-continue');
  await expectPath(page, '/records');
  const who = await page.locator('#nav-user').textContent();
  check(who.includes(user.name), `header names the new user: "${who}"`);
}

async function consentItems(page) {
  await page.locator('#list-status').filter({ hasNotText: 'Loading' }).waitFor();
  return page.locator('#consent-list li.consent').evaluateAll((lis) => lis.map((li) => ({
    id: li.dataset.id, status: li.dataset.status, text: li.textContent,
  })));
}

async function phoneFlow(browser, watch, base, user, nodeKey) {
  const context = await browser.newContext({ viewport: { width: 375, height: 800 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true, acceptDownloads: true });
  await watch.attach(context);
  const page = await context.newPage();
  lastPage = page;
  page.setDefaultTimeout(10_000);
  watch.page(page, 'phone');

  // Sign up; the person's navigation has the new pages.
  await signUp(page, base, user);
  const links = await navLinks(page);
  for (const href of ['/records', '/profile', '/consents', '/wallet', '/ledger', '/account']) {
    check(links.includes(href), `person navigation has ${href}: ${links}`);
  }
  watch.assertClean('sign-up');

  // Consents: the explanation, an empty list.
  await page.click('#site-nav a[href="/consents"]');
  await expectPath(page, '/consents');
  await page.locator('#consents-page').waitFor({ state: 'visible' });
  checkEqual(await page.getAttribute('#site-nav a[href="/consents"]', 'aria-current'), 'page', 'Consents is the current nav item');
  checkEqual((await consentItems(page)).length, 0, 'a new account has no consents');
  const explain = await page.locator('#explain-heading + p + ul').textContent();
  for (const words of [/de-identified/i, /region/i, /week/i, /revoke/i, /tokens/i, /nothing that names you/i]) {
    check(words.test(explain), `the explanation mentions ${words}`);
  }
  await page.locator('#reward-conditions').filter({ hasText: /token/ }).waitFor();
  await layoutOk(page, 'consents');
  await shot(page, 'phone-consents-empty');

  // Nothing chosen: an error next to the categories, nothing sent.
  await page.click('#grant-submit');
  await page.locator('#grant-scope-error').waitFor();
  check(/at least one/i.test(await page.locator('#grant-scope-error').textContent()), 'no category chosen: error next to the categories');
  checkEqual(await page.getAttribute('#grant-scope', 'aria-invalid'), 'true', 'the category group is marked invalid');
  await shot(page, 'phone-consents-no-category');
  watch.assertClean('consent without a category');

  // Two categories (one ticked with the keyboard), surveillance, 3 months.
  await page.check('#scope-conditions');
  await page.focus('#scope-symptoms');
  await page.keyboard.press('Space');
  check(await page.isChecked('#scope-symptoms'), 'Space ticks a focused category');
  await page.check('#purpose-surveillance');
  await page.selectOption('#grant-expires', '90');
  await page.click('#grant-submit');
  const receipt = page.locator('#grant-receipt .receipt-note');
  await receipt.waitFor();
  check(/consent given/i.test(await receipt.textContent()), `grant receipt text: ${await receipt.textContent()}`);
  const grantTxid = await receipt.locator('a.hex').getAttribute('title');
  check(HEX64.test(grantTxid), `the receipt names the transaction: ${grantTxid}`);
  const shownTx = (await receipt.locator('a.hex').textContent()).trim();
  check(shownTx.length < 20 && grantTxid.startsWith(shownTx.slice(0, 8)), `the txid is shortened: "${shownTx}"`);
  checkEqual(await receipt.locator('a.hex').getAttribute('href'), `/ledger?tx=${grantTxid}`, 'the receipt links to the explorer');
  check(/block \d+/i.test(await receipt.textContent()), 'the receipt names the block');
  let items = await consentItems(page);
  checkEqual(items.length, 1, 'one consent listed');
  checkEqual(items[0].id, grantTxid, 'the consent id is the grant txid');
  checkEqual(items[0].status, 'active', 'the new consent is active');
  check(/Conditions and symptoms/.test(items[0].text), `scope in words: ${items[0].text}`);
  check(/Public health surveillance/.test(items[0].text), `purpose in words: ${items[0].text}`);
  check(/Active/.test(items[0].text) && /Ends/.test(items[0].text), `status and expiry shown: ${items[0].text}`);
  checkEqual(await page.locator('#scope-conditions').isChecked(), false, 'the form is cleared after a grant');
  await layoutOk(page, 'consents granted');
  await shot(page, 'phone-consents-granted');
  watch.assertClean('grant consent');

  // Download the receipt through the page's link.
  const item = page.locator(`#consent-list li[data-id="${grantTxid}"]`);
  const link = item.locator('a.receipt-link');
  checkEqual(await link.getAttribute('href'), `/api/consents/${grantTxid}/receipt`, 'receipt link href');
  check((await link.getAttribute('download')) !== null, 'the receipt link has the download attribute');
  const [download] = await Promise.all([page.waitForEvent('download'), link.click()]);
  const fileName = download.suggestedFilename();
  checkEqual(fileName, `consent-${grantTxid.slice(0, 16)}.json`, 'receipt file name (from Content-Disposition)');
  const receiptFile = join(ARTIFACTS, fileName);
  await download.saveAs(receiptFile);
  check(!(await download.failure()), `download failed: ${await download.failure()}`);
  const doc = JSON.parse(readFileSync(receiptFile, 'utf8'));
  checkEqual(doc.format, 'caresync-consent-receipt-v2', 'receipt format');
  checkEqual(doc.consent?.id, grantTxid, 'receipt consent id');
  checkEqual(JSON.stringify([...doc.consent.scope].sort()), JSON.stringify(['conditions', 'symptoms']), 'receipt scope');
  checkEqual(doc.consent.purpose, 'public_health_surveillance', 'receipt purpose');
  checkEqual(doc.node_key, nodeKey, 'receipt node key is the one GET /api/ledger shows');
  checkEqual(doc.proof?.txid, grantTxid, 'the receipt proves the grant');
  check(!readFileSync(receiptFile, 'utf8').includes(user.name), 'the receipt does not hold the username');
  watch.assertClean('download receipt');

  // Check it offline; a corrupted copy and a wrong node key must fail.
  let v = verifyProof(receiptFile, nodeKey);
  checkEqual(v.status, 0, `verify-proof on the downloaded receipt (${v.output})`);
  check(/proof OK/.test(v.output) && v.output.includes(grantTxid), `verify-proof says "proof OK" for the grant: ${v.output}`);
  log(`receipt: ${v.output}`);
  check(Array.isArray(doc.proof.path) && doc.proof.path.length > 0, 'the proof has an audit path');
  const corrupted = structuredClone(doc);
  const hex = corrupted.proof.path[0];
  corrupted.proof.path[0] = hex.slice(0, 10) + (hex[10] === '0' ? '1' : '0') + hex.slice(11);
  const badFile = join(ARTIFACTS, `corrupted-${fileName}`);
  writeFileSync(badFile, JSON.stringify(corrupted, null, 2));
  v = verifyProof(badFile, nodeKey);
  check(v.status !== 0 && v.status !== null, `verify-proof must fail on a corrupted path (exit ${v.status}: ${v.output})`);
  check(/INVALID/.test(v.output), `the checker says INVALID: ${v.output}`);
  const copy = join(ARTIFACTS, `copy-${fileName}`);
  copyFileSync(receiptFile, copy);
  const otherKey = (nodeKey[0] === 'a' ? 'b' : 'a') + nodeKey.slice(1);
  v = verifyProof(copy, otherKey);
  check(v.status !== 0 && /INVALID/.test(v.output), `verify-proof must fail with another node key (exit ${v.status}: ${v.output})`);

  // Revoke: "Keep sharing" first changes nothing; then revoke for real.
  await item.getByRole('button', { name: /^Revoke/ }).click();
  await item.getByRole('group').waitFor();
  checkEqual(await focusedText(page), 'Keep sharing', 'focus moves to "Keep sharing" in the confirmation');
  await shot(page, 'phone-consents-confirm-revoke');
  await item.getByRole('button', { name: 'Keep sharing' }).click();
  checkEqual(await focusedText(page), 'Revoke', 'focus returns to Revoke');
  checkEqual((await consentItems(page))[0].status, 'active', '"Keep sharing" keeps the consent');
  await item.getByRole('button', { name: /^Revoke/ }).click();
  await item.getByRole('button', { name: 'Yes, revoke' }).click();
  await page.locator(`#consent-list li[data-id="${grantTxid}"][data-status="revoked"]`).waitFor();
  const revokeNote = page.locator('#list-receipt .receipt-note');
  await revokeNote.waitFor();
  check(/revoked/i.test(await revokeNote.textContent()), `revoke receipt: ${await revokeNote.textContent()}`);
  const revokeTxid = await revokeNote.locator('a.hex').getAttribute('title');
  check(HEX64.test(revokeTxid) && revokeTxid !== grantTxid, `the revocation has its own transaction: ${revokeTxid}`);
  items = await consentItems(page);
  check(/Revoked/.test(items[0].text), `status revoked shown: ${items[0].text}`);
  checkEqual(await page.locator(`#consent-list li[data-id="${grantTxid}"] .revoke-button`).count(), 0, 'no Revoke button on a revoked consent');
  check(await page.locator(`#consent-list li[data-id="${grantTxid}"] a.receipt-link`).isVisible(), 'a revoked consent keeps its receipt link');
  await layoutOk(page, 'consents revoked');
  await shot(page, 'phone-consents-revoked');
  watch.assertClean('revoke consent');

  // Help train the screening model: the hint says what it keeps and that
  // revoking deletes it; the form asks for screening results only (what the
  // server uses for training) and shows no reward; give it, then revoke it.
  const trainHint = await page.locator('#purpose-training-hint').textContent();
  for (const words of [/clinician answers a review you asked for/i, /photo and the clinician’s label/i,
    /no name or anything else that identifies you/i, /revoking deletes them/i, /separate from public-health sharing/i]) {
    check(words.test(trainHint), `the training hint says ${words}: ${trainHint}`);
  }
  await page.check('#scope-conditions');
  await page.check('#purpose-training');
  checkEqual(await page.isChecked('#scope-screening'), true, 'training: screening results are chosen');
  checkEqual(await page.isDisabled('#scope-screening'), true, 'training: screening results is the one category');
  for (const other of ['conditions', 'symptoms', 'demographics']) {
    checkEqual(await page.isChecked(`#scope-${other}`), false, `training: ${other} is not chosen`);
    checkEqual(await page.isDisabled(`#scope-${other}`), true, `training: ${other} cannot be chosen`);
  }
  check(await page.isVisible('#grant-scope-training') && await page.isHidden('#grant-scope-hint'), 'training: the scope hint says why');
  check(await page.isHidden('#reward-screening'), 'training earns no tokens: no reward note');
  await layoutOk(page, 'consents training form');
  await shot(page, 'phone-consents-training-form');
  const [trainGrant] = await Promise.all([
    page.waitForResponse((r) => new URL(r.url()).pathname === '/api/consents' && r.request().method() === 'POST'),
    page.click('#grant-submit'),
  ]);
  checkEqual(trainGrant.status(), 201, 'training consent given');
  const trainBody = JSON.parse(trainGrant.request().postData());
  checkEqual(JSON.stringify(trainBody.scope), '["screening"]', 'the training consent asks for screening results only');
  checkEqual(trainBody.purpose, 'model_training', 'the purpose sent');
  await receipt.filter({ hasText: /help train the screening model/i }).waitFor();
  const trainTxid = (await trainGrant.json()).consent.id;
  const trainItem = page.locator(`#consent-list li[data-id="${trainTxid}"][data-status="active"]`);
  await trainItem.waitFor();
  check(/Help train the screening model/.test(await trainItem.textContent()), `the list shows the purpose: ${await trainItem.textContent()}`);
  checkEqual(await page.isChecked('#scope-screening'), true, 'the training form keeps its one category after a grant');
  await shot(page, 'phone-consents-training-granted');
  await trainItem.getByRole('button', { name: /^Revoke/ }).click();
  const trainConfirm = await trainItem.getByRole('group').textContent();
  check(/photos and labels kept from your reviews will be deleted/.test(trainConfirm), `the confirmation says what goes: ${trainConfirm}`);
  const [trainRevoke] = await Promise.all([
    page.waitForResponse((r) => new URL(r.url()).pathname === `/api/consents/${trainTxid}/revoke`),
    trainItem.getByRole('button', { name: 'Yes, revoke' }).click(),
  ]);
  checkEqual(trainRevoke.status(), 200, 'training consent revoked');
  const deleted = (await trainRevoke.json()).examples_deleted;
  checkEqual(deleted, 0, 'the API says how many examples were deleted (none kept without a review)');
  await page.locator(`#consent-list li[data-id="${trainTxid}"][data-status="revoked"]`).waitFor();
  const trainNote = await page.locator('#list-receipt .receipt-note').textContent();
  check(/help train the screening model revoked/i.test(trainNote) && /no training examples had been kept, so nothing was deleted/i.test(trainNote),
    `the revocation says what was deleted: ${trainNote}`);
  await page.check('#purpose-surveillance');
  checkEqual(await page.isDisabled('#scope-conditions'), false, 'back to public health: every category can be chosen');
  check(await page.isVisible('#reward-screening'), 'and the reward notes are back');
  await layoutOk(page, 'consents training revoked');
  await shot(page, 'phone-consents-training-revoked');
  watch.assertClean('training consent');

  // Wallet: balance 0, the wallet's own history.
  await page.click('#site-nav a[href="/wallet"]');
  await expectPath(page, '/wallet');
  await page.locator('#history-table').waitFor({ state: 'visible' });
  checkEqual((await page.locator('#wallet-balance').textContent()).trim(), '0', 'a new wallet holds 0 tokens');
  const key = (await page.locator('#wallet-key').textContent()).trim();
  check(HEX64.test(key), `the wallet key is shown: ${key}`);
  const reg = page.locator('#history-body tr[data-kind="register_wallet"]');
  checkEqual(await reg.count(), 1, 'history has the register_wallet entry');
  check(/Wallet opened/.test(await reg.textContent()), `register_wallet in words: ${await reg.textContent()}`);
  checkEqual(await page.locator(`#history-body tr[data-txid="${grantTxid}"]`).count(), 1, 'history has the grant');
  checkEqual(await page.locator(`#history-body tr[data-txid="${revokeTxid}"]`).count(), 1, 'history has the revocation');
  checkEqual(await page.locator(`#history-body tr[data-txid="${grantTxid}"] a.hex`).getAttribute('href'),
    `/ledger?tx=${grantTxid}`, 'history links the transaction to the explorer');
  await page.click('#copy-key');
  await page.locator('#copy-status').filter({ hasText: /\w/ }).waitFor();
  await layoutOk(page, 'wallet');
  await shot(page, 'phone-wallet');

  // Redeeming more than the balance: a clear error next to the amount.
  let done = watch.allowHttpError(422, '/api/wallet/redeem');
  await page.fill('#redeem-amount', '1');
  await page.click('#redeem-form button[type="submit"]');
  await page.locator('#redeem-form').getByRole('button', { name: 'Yes, redeem' }).click();
  await page.locator('#redeem-amount-error').waitFor();
  const redeemError = await page.locator('#redeem-amount-error').textContent();
  check(/not enough tokens/i.test(redeemError) && /0 tokens/.test(redeemError), `insufficient balance error: ${redeemError}`);
  await shot(page, 'phone-wallet-insufficient-balance');
  watch.assertClean('redeem over the balance');
  done();

  // Sending to a key no wallet has: an error next to the recipient.
  done = watch.allowHttpError(404, '/api/wallet/transfer');
  await page.fill('#transfer-to', '1'.repeat(64));
  await page.fill('#transfer-amount', '1');
  await page.click('#transfer-form button[type="submit"]');
  await page.locator('#transfer-form').getByRole('button', { name: 'Yes, send' }).click();
  await page.locator('#transfer-to-error').waitFor();
  check(/no wallet/i.test(await page.locator('#transfer-to-error').textContent()), 'unknown recipient error');
  watch.assertClean('transfer to an unknown wallet');
  done();
  // A malformed key never leaves the page.
  await page.fill('#transfer-to', 'not a key');
  await page.click('#transfer-form button[type="submit"]');
  await page.locator('#transfer-to-error').filter({ hasText: /64 characters/ }).waitFor();
  checkEqual(await page.locator('#transfer-form').getByRole('button', { name: 'Yes, send' }).count(), 0,
    'no confirmation for a malformed key');
  await layoutOk(page, 'wallet errors');
  await shot(page, 'phone-wallet-errors');
  watch.assertClean('wallet errors');

  // The explorer fits a phone too, logged in.
  await page.click('#site-nav a[href="/ledger"]');
  await expectPath(page, '/ledger');
  await page.locator('#tree-head').waitFor();
  await layoutOk(page, 'phone ledger');
  await shot(page, 'phone-ledger');
  await page.goto(`${base}/ledger?tx=${grantTxid}`);
  await page.locator('#proof-check.is-ok').waitFor();
  await layoutOk(page, 'phone ledger transaction');
  await shot(page, 'phone-ledger-transaction');
  watch.assertClean('phone ledger');
  await context.close();
  return { grantTxid, revokeTxid, walletKey: key };
}

async function explorerFlow(browser, watch, base, ids, secrets, nodeKey) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  await watch.attach(context);
  const page = await context.newPage();
  lastPage = page;
  page.setDefaultTimeout(10_000);
  watch.page(page, 'desktop-public');
  const apiCalls = [];
  page.on('request', (r) => { if (new URL(r.url()).pathname.startsWith('/api/')) apiCalls.push(new URL(r.url()).pathname); });

  // Nobody signed in: the overview.
  const res = await page.goto(`${base}/ledger`);
  checkEqual(res.status(), 200, 'GET /ledger');
  await page.locator('#tree-head').waitFor();
  check(await page.locator('#nav-user').count() === 0, 'logged out');
  checkEqual(await page.getAttribute('#site-nav a[href="/ledger"]', 'aria-current'), 'page', 'Ledger is the current nav item');
  check(!apiCalls.includes('/api/session'), 'the public page does not probe for a session without a login hint');
  const head = await getJson(`${base}/api/ledger`);
  checkEqual((await page.locator('#node-key').textContent()).trim(), nodeKey, 'node key shown');
  checkEqual((await page.locator('#head-height').textContent()).trim(), String(head.tree_head.height), 'tree head height shown');
  const headText = await page.locator('#tree-head').textContent();
  check(headText.includes(head.tree_head.root), 'tree head root shown');
  check(headText.includes(String(head.tree_head.tree_size)), 'tree size shown');
  check(/Active consents/.test(await page.locator('#totals').textContent()), 'totals shown');
  check(await page.locator('#organisations').isVisible(), 'organisations section shown');
  const firstHeights = await page.locator('#blocks-table tbody tr').evaluateAll((trs) => trs.map((t) => Number(t.dataset.height)));
  checkEqual(firstHeights.length, 10, 'ten latest blocks listed');
  checkEqual(firstHeights[0], head.tree_head.height, 'the newest block comes first');
  await layoutOk(page, 'ledger overview');
  await shot(page, 'desktop-ledger');

  // Older blocks and back.
  await page.click('#older-link');
  await page.waitForURL((u) => u.searchParams.get('before') === String(firstHeights[9]));
  await page.locator('#blocks-table').waitFor();
  const older = await page.locator('#blocks-table tbody tr').evaluateAll((trs) => trs.map((t) => Number(t.dataset.height)));
  check(older.length > 0 && older[0] === firstHeights[9] - 1, `older page continues below ${firstHeights[9]}: ${older}`);
  await shot(page, 'desktop-ledger-older');
  await page.click('#newest-link');
  await expectPath(page, '/ledger');
  await page.locator('#tree-head').waitFor();
  watch.assertClean('ledger overview');

  // Find the grant by its txid (pasted in capitals with spaces: normalised).
  await page.fill('#lookup-tx', ` ${ids.grantTxid.toUpperCase()} `);
  await page.press('#lookup-tx', 'Enter');
  await page.waitForURL((u) => u.searchParams.get('tx') === ids.grantTxid);
  await page.locator('#tx-detail').waitFor();
  checkEqual(await page.getAttribute('#tx-kind', 'data-kind'), 'grant_consent', 'the transaction is the grant');
  checkEqual((await page.locator('#tx-id').textContent()).trim(), ids.grantTxid, 'full txid shown');
  const txText = await page.locator('#tx-detail').textContent();
  check(/Conditions and symptoms/.test(txText) && /Public health surveillance/.test(txText), `grant in words: ${txText}`);
  check(txText.includes(ids.walletKey), 'the signer is the wallet key');
  await page.locator('#proof-check.is-ok').waitFor();
  check((await page.locator('#proof-path li').count()) > 0, 'audit path listed');
  checkEqual(await page.getAttribute('#proof-download', 'href'), `/api/ledger/proof/${ids.grantTxid}`, 'proof download link');
  await layoutOk(page, 'ledger transaction');
  await shot(page, 'desktop-ledger-transaction');

  // No personal data anywhere on the explorer.
  async function noSecrets(where) {
    const text = `${await page.locator('body').innerText()}\n${await page.content()}`;
    for (const s of secrets) check(!text.toLowerCase().includes(s.toLowerCase()), `${where}: the explorer shows "${s}"`);
  }
  await noSecrets('transaction view');
  watch.assertClean('find the grant');

  // Its block lists it.
  await page.click('#tx-detail a[href^="/ledger?block="]');
  await page.locator('#block-detail').waitFor();
  checkEqual(await page.locator(`#tx-list li[data-txid="${ids.grantTxid}"]`).count(), 1, 'the block lists the grant');
  await layoutOk(page, 'ledger block');
  await shot(page, 'desktop-ledger-block');
  await noSecrets('block view');

  // The revocation points back at the grant.
  await page.goto(`${base}/ledger?tx=${ids.revokeTxid}`);
  await page.locator('#tx-detail').waitFor();
  checkEqual(await page.getAttribute('#tx-kind', 'data-kind'), 'revoke_consent', 'the revocation');
  checkEqual(await page.locator(`#tx-detail a[href="/ledger?tx=${ids.grantTxid}"]`).count(), 1, 'the revocation links to the grant');
  await page.locator('#proof-check.is-ok').waitFor();
  await noSecrets('revocation view');

  // Overview and older pages hold no usernames either.
  await page.goto(`${base}/ledger`);
  await page.locator('#tree-head').waitFor();
  await noSecrets('overview');
  watch.assertClean('block and revocation');

  // Bad and unknown ids: a plain message.
  await page.goto(`${base}/ledger?tx=zz`);
  await page.locator('#lookup-tx-error').waitFor();
  const unknown = '0'.repeat(63) + '1';
  const d1 = watch.allowHttpError(404, `/api/ledger/tx/${unknown}`);
  const d2 = watch.allowHttpError(404, `/api/ledger/proof/${unknown}`);
  await page.goto(`${base}/ledger?tx=${unknown}`);
  await page.locator('#view [role="alert"]', { hasText: 'No transaction' }).waitFor();
  await shot(page, 'desktop-ledger-unknown-tx');
  watch.assertClean('unknown transaction');
  d1(); d2();
  await context.close();
}

async function desktopPages(browser, watch, base, user) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  await watch.attach(context);
  const page = await context.newPage();
  lastPage = page;
  page.setDefaultTimeout(10_000);
  watch.page(page, 'desktop');
  const done = watch.allowHttpError(401, '/api/session');
  await page.goto(`${base}/consents`);
  await page.waitForURL((u) => u.pathname === '/login' && u.searchParams.get('next') === '/consents');
  watch.assertClean('consents needs a login');
  done();
  await page.fill('#login-username', user.name);
  await page.fill('#login-password', user.password);
  await page.click('#login-form button[type="submit"]');
  await expectPath(page, '/consents');
  const items = await consentItems(page);
  checkEqual(items.length, 2, 'desktop: two consents (public health, then training)');
  checkEqual(items.map((i) => i.status).join(), 'revoked,revoked', 'desktop: both are revoked');
  check(/Help train the screening model/.test(items[0].text), `desktop: the newest is the training consent: ${items[0].text}`);
  await layoutOk(page, 'desktop consents');
  await shot(page, 'desktop-consents');
  await page.click('#site-nav a[href="/wallet"]');
  await expectPath(page, '/wallet');
  await page.locator('#history-table').waitFor({ state: 'visible' });
  await layoutOk(page, 'desktop wallet');
  await shot(page, 'desktop-wallet');
  // Existing pages still work with the longer navigation.
  for (const path of ['/records', '/profile', '/account', '/']) {
    await page.goto(base + path);
    await page.locator('#nav-user').waitFor();
    await layoutOk(page, `desktop ${path}`);
  }
  watch.assertClean('desktop pages');
  await context.close();
}

// ---------------------------------------------------------------- main

async function main() {
  mkdirSync(ARTIFACTS, { recursive: true });
  for (const f of readdirSync(ARTIFACTS)) if (f.endsWith('.png') || f.endsWith('.json')) rmSync(join(ARTIFACTS, f));
  check(existsSync(BIN), `no caresync binary at ${BIN}`);
  lintWebDir(WEB_DIR, ['consents.html', 'wallet.html', 'ledger.html']);

  const dataDir = mkdtempSync(join(tmpdir(), 'caresync-consent-'));
  const suffix = Math.random().toString(36).slice(2, 8);
  const user = { name: `kiri${suffix}`, password: 'correct horse battery staple' };
  const filler = `filler${suffix}`;
  let server = null;
  let browser = null;
  const timer = setTimeout(() => {
    console.error(`FAIL: timed out after ${TOTAL_TIMEOUT_MS / 1000} s`);
    if (server) server.proc.kill('SIGKILL');
    process.exit(1);
  }, TOTAL_TIMEOUT_MS);
  const started = Date.now();
  try {
    server = await startServer(dataDir, { bin: BIN, webDir: WEB_DIR, artifacts: ARTIFACTS });
    liveServer = server;
    const { node_key: nodeKey } = await getJson(`${server.base}/api/ledger`);
    check(HEX64.test(nodeKey), `GET /api/ledger node_key: ${nodeKey}`);
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
    log(`chromium ${browser.version()}`);
    const watch = new Watch();
    const ids = await phoneFlow(browser, watch, server.base, user, nodeKey);
    log('phone (375x800): consent granted, receipt verified offline (and a corrupted one refused), revoked; wallet: ok');
    await addFillerBlocks(server.base, filler, 12);
    await explorerFlow(browser, watch, server.base, ids, [user.name, filler], nodeKey);
    log('desktop (1280x900), logged out: explorer overview, paging, transaction + proof, block, no usernames: ok');
    await desktopPages(browser, watch, server.base, user);
    log('desktop (1280x900), logged in: consents and wallet pages: ok');
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
    log(`run time ${((Date.now() - started) / 1000).toFixed(1)} s`);
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
  console.log('PASS: browser consent flow');
  process.exit(0);
} catch (err) {
  console.error(`FAIL: ${err.stack || err.message}`);
  console.error(`screenshots and server.log: ${ARTIFACTS}`);
  process.exit(1);
}
