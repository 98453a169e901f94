#!/usr/bin/env node
// Browser test of clinician review (issue 13) against the real server, the
// bundled model and the ledger, driven by playwright-core and Debian's
// chromium.
//
//   node tests/browser/review_flow.mjs <caresync-binary> <web-dir> <artifact-dir>
//
// The whole loop in two browser contexts: a person signs up, screens a real
// held-out photo (../shared/data, a ringworm case), saves it with the photo,
// opens "Ask a clinician" from the record entry, chooses an organisation and
// sees exactly what will be shared; with no tokens the page says so; paid
// with one shared result (--reward-batch 1 pays it at once) the request goes.
// A clinician (another context) opens the queue, opens the case (photo,
// result, the chosen extras) and answers; the person sees the answer beside
// the screening's result, who opened the case, and in the wallet the price
// paid and nothing held; the record entry itself shows the review waiting,
// then the answer beside the model's result with a link to /reviews; the
// person's model_training consent kept the answered photo as an example,
// and revoking it on /consents says one example was deleted. Then a withdrawal and a case the clinician returns
// with a reason (both refunded), and a request to an
// organisation that promises an answer within one hour, left unanswered: the
// server is restarted two hours later under libfaketime and the person sees
// "expired" and the refund. Balances and states shown are checked against
// the API's. Page errors, CSP violations, 5xx and unexpected 4xx fail it.
// Exit codes: 0 pass, 1 fail, 2 usage, 77 skip (no chromium, playwright-core,
// ../shared/data, models/screening.csm or libfaketime).
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CHROMIUM, CHROMIUM_ARGS, Watch, browserTest, check, checkEqual, lintWebDir, log, pageCall, pageOk, startServer, waitUntil, createUser as createUserWith } from './lib.mjs';

const SHARED = new URL('../../../shared', import.meta.url).pathname;
const MODEL = new URL('../../models/screening.csm', import.meta.url).pathname;
const FAKETIME = '/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1';
const PW = 'correct horse battery';
// Each reward is paid at once, so one shared result funds the reviews.
const ARGS = ['--reward-batch', '1'];

const { BIN, WEB_DIR, ARTIFACTS, chromium } = await browserTest('review_flow', [
  [join(SHARED, 'data'), '../shared/data (a review case is a real saved screening with its photo)'],
  [MODEL, 'models/screening.csm'], [FAKETIME, 'Debian faketime (scripts/deps.sh installs it) for the timeout']]);
mkdirSync(ARTIFACTS, { recursive: true });
lintWebDir(WEB_DIR, ['reviews.html', 'review.html']);

const createUser = (dataDir, username, role) => createUserWith(BIN, dataDir, username, role, PW);
const call = pageCall;
const ok = pageOk;

async function login(page, base, username) {
  await page.goto(`${base}/`);
  const r = await page.evaluate(async ([u, p]) => (await fetch('/api/auth/login', { method: 'POST',
    headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ username: u, password: p }) })).status, [username, PW]);
  check(r === 200, `log-in ${username}: ${r}`);
}

const dataDir = mkdtempSync(join(tmpdir(), 'caresync-browser-review-'));
let browser, server;
let failed = false;
try {
  server = await startServer(dataDir, { bin: BIN, webDir: WEB_DIR, artifacts: ARTIFACTS, args: ARGS, logName: 'server-1.log' });
  let base = server.base;
  await new Promise((r) => setTimeout(r, 200)); // the model line follows the listening line
  check(/screening model .* loaded/.test(server.output), `the server did not load the model:\n${server.output}`);
  createUser(dataDir, 'rv-admin', 'admin');
  createUser(dataDir, 'rv-clinician', 'clinician');
  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  const watch = new Watch();
  const contexts = {};
  const pages = {};
  for (const who of ['admin', 'person', 'clinician']) {
    contexts[who] = await browser.newContext({ viewport: { width: 1100, height: 900 } });
    await watch.attach(contexts[who]);
    pages[who] = await contexts[who].newPage();
    pages[who].setDefaultTimeout(20_000);
    watch.page(pages[who], who);
  }
  const { admin, person, clinician } = pages;
  let shot = 0;
  const snap = async (page, name) => page.screenshot({ path: join(ARTIFACTS, `${String(++shot).padStart(2, '0')}-${name}.png`), fullPage: true });

  // Two organisations on the ledger with offers: Alpha answers within two
  // days for 4 tokens, Beta within one hour for 5; the clinician is Alpha's.
  await login(admin, base, 'rv-admin');
  const orgA = randomBytes(32).toString('hex');
  const orgB = randomBytes(32).toString('hex');
  await ok(admin, 'POST', '/api/admin/orgs', { name: 'Alpha Skin Clinic', public_key: orgA }, 201);
  await ok(admin, 'POST', '/api/admin/orgs', { name: 'Beta Teledermatology', public_key: orgB }, 201);
  await ok(admin, 'PUT', `/api/admin/orgs/${orgA}/offer`, { price: 4, answer_hours: 48, conditions: ['fungal', 'eczema'], regions: ['*'] });
  await ok(admin, 'PUT', `/api/admin/orgs/${orgB}/offer`, { price: 5, answer_hours: 1, conditions: ['fungal'], regions: ['*'] });
  await ok(admin, 'PUT', '/api/admin/users/rv-clinician/org', { org: orgA });

  // The person: an account, a home region and a public-health consent (to
  // earn tokens later), one screened photo saved with the photo.
  await person.goto(`${base}/`);
  const signed = await person.evaluate(async (pw) => (await fetch('/api/auth/signup', { method: 'POST',
    headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ username: 'review.person', password: pw }) })).status, PW);
  check(signed === 201, `sign-up: ${signed}`);
  await ok(person, 'PUT', '/api/profile', { display_name: 'Review Person', birth_year: 1988, sex: 'unspecified', region: 'US-CA' });
  await ok(person, 'POST', '/api/consents', { scope: ['screening'], purpose: 'public_health_surveillance' }, 201);
  // And helps train the model: the answer keeps the photo and its label.
  const training = (await ok(person, 'POST', '/api/consents', { scope: ['screening'], purpose: 'model_training' }, 201)).consent;
  await person.goto(`${base}/screening`);
  await person.waitForSelector('#screening-page:not([hidden])');
  const dir = join(SHARED, 'data', 'skin-infections-8', 'test', 'ringworm');
  await person.setInputFiles('#photo', join(dir, readdirSync(dir).filter((f) => f.endsWith('.jpg')).sort()[0]));
  await person.click('#screening-submit');
  await person.waitForSelector('#result:not([hidden])', { timeout: 60_000 });
  await person.check('#save-photo');
  await person.click('#save-button');
  await waitUntil(person, () => /Saved with the photo/.test(document.querySelector('#save-message').textContent));
  const screeningId = await person.getAttribute('#share-button', 'data-id');
  check(/^[0-9a-f]{32}$/.test(screeningId || ''), `screening id: ${screeningId}`);

  // From the record entry: "Ask a clinician".
  await person.goto(`${base}/records`);
  await person.waitForSelector('#record-list li a.ask-clinician');
  const record = (await ok(person, 'GET', '/api/records')).records.find((r) => r.photo);
  check(record, 'a record with its photo');
  check(await person.locator('#site-nav a[href="/reviews"]').count() === 1, 'persons have a Reviews link');
  await person.click(`#record-list li[data-id="${record.id}"] a.ask-clinician`);
  await person.waitForURL((u) => u.pathname === '/reviews' && u.searchParams.get('record') === record.id);
  await person.waitForSelector('#reviews-page:not([hidden])');
  await waitUntil(person, () => document.querySelectorAll('#offer-list input[name="org"]').length === 2);
  checkEqual(await person.inputValue('#ask-record'), record.id, 'the entry asked about is chosen');
  const offerText = await person.textContent('#offer-list');
  check(/Alpha Skin Clinic — 4 tokens, answers within 48 hours/.test(offerText) && /Beta Teledermatology — 5 tokens, answers within 1 hour/.test(offerText),
    `offers with price and answer time: ${offerText}`);

  // The preview: the 224 px photo, the result text, the extras chosen, nothing else.
  await person.check(`#offer-list input[value="${orgA}"]`);
  await person.selectOption('#share-age', '30-44');
  await person.selectOption('#share-site', 'arm');
  await person.fill('#share-note', 'Itchy ring, spreading for a while.');
  await waitUntil(person, () => {
    const img = document.querySelector('#preview-photo');
    return img && !img.hidden && img.complete && img.naturalWidth > 0;
  });
  const preview = await person.evaluate(() => ({
    photo: [document.querySelector('#preview-photo').naturalWidth, document.querySelector('#preview-photo').naturalHeight],
    src: document.querySelector('#preview-photo').getAttribute('src'),
    title: document.querySelector('#preview-title').textContent,
    details: document.querySelector('#preview-details').textContent,
    extras: [...document.querySelectorAll('#preview-extras li')].map((li) => [li.dataset.extra, li.textContent]),
    cost: document.querySelector('#preview-cost').textContent,
  }));
  checkEqual(preview.src, `/api/records/${record.id}/photo`, 'the preview shows the saved photo');
  checkEqual(preview.photo.join('x'), '224x224', 'the shared photo is the 224 px copy');
  checkEqual(preview.title, record.title, 'the preview shows the result text');
  checkEqual(preview.details, record.details || '', 'and its details');
  checkEqual(JSON.stringify(preview.extras), JSON.stringify([['age_band', 'Age band: 30–44'], ['body_site', 'Where on the body: Arm'],
    ['note', 'Note: Itchy ring, spreading for a while.']]), 'the preview lists exactly the extras chosen');
  check(/4 tokens will be held/.test(preview.cost), `the price: ${preview.cost}`);
  await snap(person, 'ask-preview');

  // No tokens yet: the page says so plainly, with the way to the wallet.
  const allow409 = watch.allowHttpError(409, '/api/review/requests');
  await person.click('#ask-submit');
  await person.click('.confirm-box button:not(.button-secondary)');
  await waitUntil(person, () => /Not enough tokens/.test(document.querySelector('#ask-message').textContent));
  check(await person.locator('#ask-message a[href="/wallet"]').count() === 1, 'a link to the wallet');
  checkEqual((await ok(person, 'GET', '/api/review/requests')).requests.length, 0, 'nothing was asked');
  allow409();
  watch.assertClean('refused for tokens');

  // Tokens: a shared result's reward, paid at once — another photo than the
  // one sent for review, since the same photo contributed twice (shared,
  // then confirmed) earns once (issue 14). The next sure screening of the
  // folder (an unsure one is not shared: 422).
  // (In a second tab: this one keeps the request form as filled in.)
  const tab = await person.context().newPage();
  let paid = null;
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.jpg')).sort().slice(1, 30)) {
    await tab.goto(`${base}/screening`);
    await tab.waitForSelector('#screening-page:not([hidden])');
    await tab.setInputFiles('#photo', join(dir, file));
    await tab.click('#screening-submit');
    await tab.waitForSelector('#result:not([hidden])', { timeout: 60_000 });
    const other = await tab.getAttribute('#share-button', 'data-id');
    watch.allowHttpError(422, `/api/screenings/${other}/contribute`);
    const r = await call(tab, 'POST', `/api/screenings/${other}/contribute`, {});
    check(r.status === 201 || r.status === 422, `contribute: ${r.status} ${r.text}`);
    if (r.status === 201) {
      paid = r.json;
      break;
    }
  }
  await tab.close();
  check(paid, 'a sure screening to share');
  checkEqual(paid.payment.status, 'paid', 'the reward is paid at once (--reward-batch 1)');
  const funded = (await ok(person, 'GET', '/api/wallet')).wallet.balance;
  check(funded >= 9, `enough tokens for the reviews: ${funded}`);
  log(`funded: ${funded} tokens`);

  await person.click('#ask-submit');
  await person.click('.confirm-box button:not(.button-secondary)');
  await waitUntil(person, () => /Sent to Alpha Skin Clinic/.test(document.querySelector('#ask-message').textContent));
  let mine = (await ok(person, 'GET', '/api/review/requests')).requests;
  checkEqual(mine.length, 1, 'one request');
  const first = mine[0];
  checkEqual(first.state, 'waiting', 'waiting');
  await waitUntil(person, (id) => document.querySelector(`#request-list li[data-id="${id}"][data-state="waiting"]`), first.id);
  const waitingText = await person.textContent(`#request-list li[data-id="${first.id}"]`);
  check(/Waiting for a clinician/.test(waitingText) && /Answer due by/.test(waitingText) && /Alpha Skin Clinic/.test(waitingText),
    `the waiting request: ${waitingText}`);
  const caseCopy = (await ok(person, 'GET', `/api/review/requests/${first.id}`)).request.case;
  checkEqual(JSON.stringify(caseCopy.share), JSON.stringify({ age_band: '30-44', body_site: 'arm', note: 'Itchy ring, spreading for a while.' }),
    'the case holds what the preview showed');
  checkEqual(caseCopy.result.title, preview.title, 'the case holds the result text the preview showed');

  // The wallet while waiting: the price held, not spent.
  const walletShows = async (state) => {
    await person.goto(`${base}/wallet`);
    await person.waitForSelector('#wallet-page:not([hidden])');
    await waitUntil(person, () => document.querySelector('#history-status').textContent.includes('newest first'));
    const w = (await ok(person, 'GET', '/api/wallet')).wallet;
    const seen = await person.evaluate(() => ({
      balance: document.querySelector('#wallet-balance').textContent,
      escrowed: document.querySelector('#wallet-escrowed').textContent,
      escrowShown: !document.querySelector('#wallet-escrow-line').hidden,
      rows: [...document.querySelectorAll('#history-body tr')].map((tr) => ({ kind: tr.dataset.kind, txid: tr.dataset.txid,
        escrow: tr.dataset.escrow || null, text: tr.textContent })),
    }));
    checkEqual(seen.balance, w.balance.toLocaleString('en-US'), `${state}: the balance shown is the API's`);
    checkEqual(seen.escrowShown, w.escrowed > 0, `${state}: the held line shows when tokens are held`);
    if (w.escrowed > 0) checkEqual(seen.escrowed, `${w.escrowed} ${w.escrowed === 1 ? 'token' : 'tokens'}`, `${state}: held amount`);
    return { w, seen };
  };
  let { w, seen } = await walletShows('waiting');
  checkEqual(w.balance, funded - 4, 'the price left the balance');
  checkEqual(w.escrowed, 4, 'and is held');
  let req = seen.rows.find((r) => r.txid === first.request_txid);
  check(req && req.kind === 'review_request' && req.escrow === 'open' && /Alpha Skin Clinic/.test(req.text)
    && /held until a clinician answers/.test(req.text) && /\u22124/.test(req.text), `the request's row: ${JSON.stringify(req)}`);
  await snap(person, 'wallet-held');
  watch.assertClean('request sent');

  // The record entry says it went for review and is waiting.
  checkEqual(first.record_id, record.id, 'the request names the entry it came from');
  const reviewOnRecord = async () => {
    await person.goto(`${base}/records`);
    await person.waitForSelector(`#record-list li[data-id="${record.id}"] .record-review`);
    return person.evaluate((rid) => {
      const box = document.querySelector(`#record-list li[data-id="${rid}"] .record-review`);
      const t = (sel) => box.querySelector(sel)?.textContent ?? null;
      const sides = [...box.querySelectorAll('.review-compare > .review-side')];
      return { request: box.dataset.request, state: box.dataset.state, tag: t('.review-state'), note: t('.record-review-note'),
        condition: t('.answer-condition'), urgency: t('.answer-urgency'), advice: t('.answer-advice'), clinician: t('.answer-clinician'),
        modelTitle: t('.model-title'), sides: sides.map((x) => x.getAttribute('aria-label')),
        sameRow: sides.length === 2 && Math.abs(sides[0].getBoundingClientRect().top - sides[1].getBoundingClientRect().top) < 2,
        link: box.querySelector('a')?.getAttribute('href') ?? null,
        others: document.querySelectorAll('#record-list .record-review').length };
    }, record.id);
  };
  let onRecord = await reviewOnRecord();
  checkEqual(onRecord.request, first.id, 'the entry shows its own request');
  checkEqual(onRecord.tag, 'Waiting for a clinician', 'the entry shows the review waiting');
  check(/not answered yet; the answer is due by/.test(onRecord.note || ''), `the entry says when the answer is due: ${onRecord.note}`);
  checkEqual(onRecord.condition, null, 'no answer on the entry yet');
  checkEqual(onRecord.others, 1, 'only the entry that went for review shows one');
  await snap(person, 'record-waiting');
  watch.assertClean('record shows the waiting review');

  // The clinician, in another context: queue → case → answer.
  await login(clinician, base, 'rv-clinician');
  await clinician.goto(`${base}/review`);
  await clinician.waitForSelector('#review-page:not([hidden])');
  check(await clinician.locator('#site-nav a[href="/review"][aria-current="page"]').count() === 1, 'the clinician\'s nav marks the queue');
  await waitUntil(clinician, () => document.querySelectorAll('#queue-body tr').length === 1);
  const queue = (await ok(clinician, 'GET', '/api/review/queue')).queue;
  checkEqual(queue.map((x) => x.id).join(), first.id, 'the queue holds the case');
  check(/4 tokens/.test(await clinician.textContent('#queue-body tr')), 'the queue shows the price');
  await clinician.click(`#queue-body tr[data-id="${first.id}"] button.open-case`);
  await clinician.waitForSelector('#case-card:not([hidden])');
  await waitUntil(clinician, () => {
    const img = document.querySelector('#case-photo-box img');
    return img && img.complete && img.naturalWidth > 0;
  });
  const opened = await clinician.evaluate(() => ({
    photo: [document.querySelector('#case-photo-box img').naturalWidth, document.querySelector('#case-photo-box img').naturalHeight],
    title: document.querySelector('#case-title').textContent,
    extras: [...document.querySelectorAll('#case-extras li')].map((li) => li.dataset.extra),
    focused: document.activeElement?.id,
  }));
  checkEqual(opened.photo.join('x'), '224x224', 'the clinician sees the 224 px photo');
  checkEqual(opened.title, record.title, 'and the result text');
  checkEqual(opened.extras.join(), 'age_band,body_site,note', 'and exactly the extras shared');
  checkEqual(opened.focused, 'case-heading', 'focus moves to the opened case');
  await snap(clinician, 'case');
  await clinician.selectOption('#answer-condition', 'fungal');
  await clinician.check('#urgency-gp');
  const advice = 'Looks like ringworm. An antifungal cream twice daily for two weeks; see your GP if it spreads.';
  await clinician.fill('#answer-advice', advice);
  await clinician.click('#answer-submit');
  await waitUntil(clinician, () => /Answered/.test(document.querySelector('#review-message').textContent));
  await waitUntil(clinician, () => /No case is waiting/.test(document.querySelector('#queue-status').textContent));
  check(await clinician.isHidden('#case-card'), 'the answered case closes');
  watch.assertClean('clinician answered');

  // The person: the answer beside the screening's result, who opened it.
  await person.goto(`${base}/reviews`);
  await person.waitForSelector(`#request-list li[data-id="${first.id}"][data-state="answered"] .review-details`);
  const api1 = (await ok(person, 'GET', `/api/review/requests/${first.id}`)).request;
  checkEqual(api1.state, 'answered', 'answered in the API');
  const shown = await person.evaluate((id) => {
    const li = document.querySelector(`#request-list li[data-id="${id}"]`);
    const t = (s) => li.querySelector(s)?.textContent ?? null;
    const sides = [...li.querySelectorAll('.review-compare > .review-side')];
    return { tag: t('.review-state'), condition: t('.answer-condition'), urgency: t('.answer-urgency'), advice: t('.answer-advice'),
      clinician: t('.answer-clinician'), modelTitle: t('.model-title'), sides: sides.map((s) => s.getAttribute('aria-label')),
      sameRow: sides.length === 2 && Math.abs(sides[0].getBoundingClientRect().top - sides[1].getBoundingClientRect().top) < 2,
      openings: [...li.querySelectorAll('.opening-list li')].map((x) => x.textContent) };
  }, first.id);
  checkEqual(shown.tag, 'Answered', 'state shown');
  checkEqual(shown.condition, 'Fungal infection', 'the coded condition, named');
  checkEqual(shown.urgency, 'See a pharmacist or GP', 'the urgency in words');
  checkEqual(shown.advice, advice, 'the advice');
  checkEqual(shown.clinician, api1.answer.clinician, 'the clinician\'s pseudonym');
  check(/^clinician-[0-9a-f]{8}$/.test(shown.clinician), `a pseudonym: ${shown.clinician}`);
  checkEqual(shown.modelTitle, record.title, 'the screening\'s result');
  checkEqual(shown.sides.join(' | '), 'What the screening said | What the clinician said', 'side by side');
  check(shown.sameRow, 'the result and the answer sit beside each other');
  checkEqual(shown.openings.length, api1.openings.length, 'every opening is listed');
  check(shown.openings.length === 1 && shown.openings[0].startsWith(`${api1.openings[0].clinician}, `), `who opened it: ${shown.openings}`);
  await snap(person, 'answered');
  // On a phone the two sides stack, and nothing runs off the screen.
  await person.setViewportSize({ width: 375, height: 800 });
  await waitUntil(person, () => document.documentElement.scrollWidth <= 375);
  await snap(person, 'answered-phone');
  await person.setViewportSize({ width: 1100, height: 900 });

  // The wallet: the price paid to the organisation, nothing held.
  // The person shares with public health, so the clinician's confirmed
  // condition was contributed (source clinician_confirmed) and rewarded like
  // the shared result that funded them (--reward-batch 1: at once).
  const R = funded;
  ({ w, seen } = await walletShows('settled'));
  checkEqual(w.balance, funded - 4 + R, 'balance down by the price, up by the confirmed contribution\'s reward');
  checkEqual(seen.rows.filter((r) => r.kind === 'contribute').length, 2, 'two rewards: the shared result and the confirmed condition');
  checkEqual(w.escrowed, 0, 'nothing held any more');
  req = seen.rows.find((r) => r.txid === first.request_txid);
  check(req.escrow === 'settled' && /paid to the organisation in block/.test(req.text), `settled row: ${JSON.stringify(req)}`);
  await snap(person, 'wallet-settled');
  watch.assertClean('answer seen');

  // The record entry itself: the clinician's answer beside the model's
  // result, the same as the API's, with a link to the review on /reviews.
  onRecord = await reviewOnRecord();
  checkEqual(onRecord.state, 'answered', 'the entry shows the review answered');
  checkEqual(onRecord.tag, 'Answered', 'in words');
  checkEqual(onRecord.condition, 'Fungal infection', 'the entry: the coded condition, named');
  checkEqual(onRecord.urgency, 'See a pharmacist or GP', 'the entry: the urgency in words');
  checkEqual(onRecord.advice, api1.answer.advice, 'the entry: the advice');
  checkEqual(onRecord.clinician, api1.answer.clinician, 'the entry: the clinician\'s pseudonym');
  checkEqual(onRecord.modelTitle, record.result.title, 'the entry: the model\'s result');
  checkEqual(onRecord.sides.join(' | '), 'What the screening said | What the clinician said', 'the entry: side by side');
  check(onRecord.sameRow, 'the entry: the result and the answer sit beside each other');
  checkEqual(onRecord.link, `/reviews#request-${first.id}`, 'the entry links to the review');
  await snap(person, 'record-answered');
  await person.setViewportSize({ width: 375, height: 800 });
  await waitUntil(person, () => document.documentElement.scrollWidth <= 375);
  await snap(person, 'record-answered-phone');
  await person.setViewportSize({ width: 1100, height: 900 });
  await person.click(`#record-list li[data-id="${record.id}"] .record-review a`);
  await person.waitForURL((u) => u.pathname === '/reviews' && u.hash === `#request-${first.id}`);
  await waitUntil(person, (id) => document.activeElement?.id === `request-${id}`, first.id);
  watch.assertClean('record shows the answer');

  // The answer kept the photo and its label for training: revoking the
  // training consent on the consents page deletes it and says so.
  await person.goto(`${base}/consents`);
  const trainingItem = person.locator(`#consent-list li[data-id="${training.id}"][data-status="active"]`);
  await trainingItem.waitFor();
  check(/Help train the screening model/.test(await trainingItem.textContent()), 'the training consent is listed by its purpose');
  await trainingItem.getByRole('button', { name: /^Revoke/ }).click();
  const [revoked] = await Promise.all([
    person.waitForResponse((r) => new URL(r.url()).pathname === `/api/consents/${training.id}/revoke`),
    trainingItem.getByRole('button', { name: 'Yes, revoke' }).click(),
  ]);
  checkEqual(revoked.status(), 200, 'training consent revoked');
  checkEqual((await revoked.json()).examples_deleted, 1, 'the answered case\'s example was kept, and is deleted');
  await waitUntil(person, () => /1 training example \(a photo and its label\) was deleted/.test(
    document.querySelector('#list-receipt')?.textContent || ''));
  await snap(person, 'training-revoked');
  watch.assertClean('training consent revoked');

  // Withdraw a waiting request: refunded at once.
  await person.goto(`${base}/reviews?record=${record.id}`);
  await waitUntil(person, () => document.querySelectorAll('#offer-list input[name="org"]').length === 2);
  await person.check(`#offer-list input[value="${orgA}"]`);
  await person.click('#ask-submit');
  await person.click('.confirm-box button:not(.button-secondary)');
  await waitUntil(person, () => /Sent to Alpha/.test(document.querySelector('#ask-message').textContent));
  mine = (await ok(person, 'GET', '/api/review/requests')).requests;
  const second = mine.find((q) => q.state === 'waiting');
  checkEqual((await ok(person, 'GET', '/api/wallet')).wallet.escrowed, 4, 'held again');
  await person.click(`#request-list li[data-id="${second.id}"] button.withdraw-button`);
  await person.click('.confirm-box button:not(.button-secondary)');
  await waitUntil(person, () => /Withdrawn/.test(document.querySelector('#requests-message').textContent));
  await waitUntil(person, (id) => document.querySelector(`#request-list li[data-id="${id}"][data-state="withdrawn"]`), second.id);
  w = (await ok(person, 'GET', '/api/wallet')).wallet;
  checkEqual(`${w.balance}/${w.escrowed}`, `${funded - 4 + R}/0`, 'withdrawn: the price came back');
  // A newer request from the same entry, withdrawn, does not hide the answer.
  onRecord = await reviewOnRecord();
  checkEqual(`${onRecord.request}/${onRecord.state}`, `${first.id}/answered`, 'the entry keeps showing the answered review');
  checkEqual(onRecord.condition, 'Fungal infection', 'and its answer');
  await person.goto(`${base}/reviews?record=${record.id}`);
  await waitUntil(person, () => document.querySelectorAll('#offer-list input[name="org"]').length === 2);
  watch.assertClean('withdrawn');

  // Returned by the clinician with a reason: refunded, the reason shown.
  await person.check(`#offer-list input[value="${orgA}"]`);
  await person.click('#ask-submit');
  await person.click('.confirm-box button:not(.button-secondary)');
  await waitUntil(person, () => /Sent to Alpha/.test(document.querySelector('#ask-message').textContent));
  const third = (await ok(person, 'GET', '/api/review/requests')).requests.find((q) => q.state === 'waiting');
  await clinician.click('#queue-refresh');
  await waitUntil(clinician, (id) => document.querySelector(`#queue-body tr[data-id="${id}"] button.open-case`), third.id);
  await clinician.click(`#queue-body tr[data-id="${third.id}"] button.open-case`);
  await clinician.waitForSelector('#case-card:not([hidden])');
  await clinician.fill('#return-reason', 'The photo is too far away: please take it closer.');
  await clinician.click('#return-submit');
  await clinician.click('.confirm-box button:not(.button-secondary)');
  await waitUntil(clinician, () => /Returned/.test(document.querySelector('#review-message').textContent));
  await person.goto(`${base}/reviews`);
  await person.waitForSelector(`#request-list li[data-id="${third.id}"][data-state="returned"]`);
  const returnedText = await person.textContent(`#request-list li[data-id="${third.id}"]`);
  check(/Returned by the clinician/.test(returnedText) && /too far away/.test(returnedText), `returned: ${returnedText}`);
  w = (await ok(person, 'GET', '/api/wallet')).wallet;
  checkEqual(`${w.balance}/${w.escrowed}`, `${funded - 4 + R}/0`, 'returned: the price came back');
  watch.assertClean('returned');

  // A request to Beta (one hour), left unanswered.
  await waitUntil(person, () => document.querySelectorAll('#offer-list input[name="org"]').length === 2);
  await person.check(`#offer-list input[value="${orgB}"]`);
  await person.click('#ask-submit');
  await person.click('.confirm-box button:not(.button-secondary)');
  await waitUntil(person, () => /Sent to Beta/.test(document.querySelector('#ask-message').textContent));
  const late = (await ok(person, 'GET', '/api/review/requests')).requests.find((q) => q.state === 'waiting');
  checkEqual(late.organisation.key, orgB, 'the late request went to Beta');
  w = (await ok(person, 'GET', '/api/wallet')).wallet;
  checkEqual(`${w.balance}/${w.escrowed}`, `${funded - 9 + R}/5`, 'Beta\'s price held');
  watch.assertClean('late request');

  // Two hours later (the server restarted under libfaketime): expired, refunded.
  await server.stop();
  server = await startServer(dataDir, { bin: BIN, webDir: WEB_DIR, artifacts: ARTIFACTS, args: ARGS, logName: 'server-2.log',
    env: { LD_PRELOAD: FAKETIME, FAKETIME: '+2h', DONT_FAKE_MONOTONIC: '1' } });
  base = server.base;
  await person.goto(`${base}/reviews`);
  await person.waitForSelector(`#request-list li[data-id="${late.id}"]`);
  const lateApi = (await ok(person, 'GET', `/api/review/requests/${late.id}`)).request;
  checkEqual(lateApi.state, 'expired', 'expired in the API');
  checkEqual(await person.getAttribute(`#request-list li[data-id="${late.id}"]`, 'data-state'), 'expired', 'expired on the page');
  check(/Expired/.test(await person.textContent(`#request-list li[data-id="${late.id}"] .review-state`)), 'said in words');
  await snap(person, 'expired');
  ({ w, seen } = await walletShows('refunded'));
  checkEqual(`${w.balance}/${w.escrowed}`, `${funded - 4 + R}/0`, 'expired: Beta\'s price came back');
  req = seen.rows.find((r) => r.txid === lateApi.request_txid);
  check(req.escrow === 'refunded' && /given back to you in block/.test(req.text), `refunded row: ${JSON.stringify(req)}`);
  const refund = seen.rows.find((r) => r.kind === 'review_refund' && r.txid === lateApi.close_txid);
  check(refund && /\+5/.test(refund.text) && /held for Beta Teledermatology came back/.test(refund.text),
    `the refund's own row: ${JSON.stringify(seen.rows)}`);
  await snap(person, 'wallet-refunded');

  // Persons do not review: /review says so.
  await person.goto(`${base}/review`);
  await person.waitForSelector('#review-notice');
  check(/for clinicians/.test(await person.textContent('#review-notice')), 'a notice for persons on /review');
  check(await person.locator('#site-nav a[href="/review"]').count() === 0, 'no queue link for persons');
  watch.assertClean('review flow');
  log('PASS');
} catch (err) {
  failed = true;
  console.error(err.stack || String(err));
} finally {
  if (browser) await browser.close();
  try {
    if (server) await server.stop(); // fails on a sanitizer report in the server's output
  } catch (err) {
    failed = true;
    console.error(err.message);
  }
  rmSync(dataDir, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
