#!/usr/bin/env node
// Browser test of the screening page against the real server and the
// bundled model, driven by playwright-core and Debian's chromium.
//
//   node tests/browser/screening_flow.mjs <caresync-binary> <web-dir> <artifact-dir>
//
// On a 375x800 phone screen: signs up, opens "Check skin", first sends a
// file that is not a photo (the page shows the server's refusal), then a
// real held-out photo from ../shared/data (a ringworm case), sees the upload
// progress, the top three conditions with percentages, triage advice and
// the not-a-diagnosis notice, saves the result and finds it in Records.
// Screenshots go to <artifact-dir>. Page errors, CSP violations, 5xx and
// unexpected console errors fail the test.
// Exit codes: 0 pass, 1 fail, 2 usage, 77 skip (no chromium, playwright-core,
// ../shared or models/screening.csm).
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const CHROMIUM = '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const SHARED = new URL('../../../shared', import.meta.url).pathname;
const MODEL = new URL('../../models/screening.csm', import.meta.url).pathname;

if (process.argv.length < 5) {
  console.error('usage: node tests/browser/screening_flow.mjs <caresync-binary> <web-dir> <artifact-dir>');
  process.exit(2);
}
for (const [path, what] of [[CHROMIUM, 'chromium'], [join(SHARED, 'data'), '../shared/data'], [MODEL, 'models/screening.csm']]) {
  if (!existsSync(path)) {
    console.log(`SKIP: ${what} not found (${path})`);
    process.exit(77);
  }
}
let chromium;
try {
  ({ chromium } = await import('playwright-core'));
} catch (err) {
  console.log(`SKIP: playwright-core is not installed: ${err.code || err.message}`);
  process.exit(77);
}
const BIN = resolve(process.argv[2]);
const WEB_DIR = resolve(process.argv[3]);
const ARTIFACTS = resolve(process.argv[4]);
mkdirSync(ARTIFACTS, { recursive: true });

const log = (m) => console.log(`[browser] ${m}`);
const check = (c, m) => { if (!c) throw new Error(`check failed: ${m}`); };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function freePort() {
  return new Promise((res, rej) => {
    const s = net.createServer();
    s.unref();
    s.on('error', rej);
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => res(port)); });
  });
}

const dataDir = mkdtempSync(join(tmpdir(), 'caresync-browser-screening-'));
const port = await freePort();
const proc = spawn(BIN, ['serve', '--port', String(port), '--data-dir', dataDir, '--web-dir', WEB_DIR],
  { stdio: ['ignore', 'pipe', 'pipe'] });
let output = '';
proc.stdout.on('data', (d) => { output += d; });
proc.stderr.on('data', (d) => { output += d; });
const base = `http://127.0.0.1:${port}`;
let browser;
let failed = false;
try {
  for (let i = 0; ; i++) {
    try { if ((await fetch(`${base}/api/health`)).ok) break; } catch { /* not yet */ }
    if (i > 200) throw new Error(`server did not start:\n${output}`);
    await sleep(100);
  }
  check(/screening model .* loaded/.test(output), `the server did not load the model:\n${output}`);
  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  const context = await browser.newContext({ viewport: { width: 375, height: 800 } });
  const page = await context.newPage();
  const problems = [];
  const allowed = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    const t = m.text();
    if (allowed.some((a) => t.includes(a))) return;
    problems.push(`console error: ${t}`);
  });
  page.on('response', (r) => { if (r.status() >= 500) problems.push(`${r.status()} from ${r.url()}`); });
  let shot = 0;
  const snap = async (name) => page.screenshot({ path: join(ARTIFACTS, `${String(++shot).padStart(2, '0')}-${name}.png`), fullPage: true });

  // An account (through the API from the page, so the browser holds the cookie).
  await page.goto(`${base}/`);
  const signed = await page.evaluate(async () => {
    const r = await fetch('/api/auth/signup', { method: 'POST', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ username: 'screening.person', password: 'correct horse battery' }) });
    return r.status;
  });
  check(signed === 201, `sign-up: ${signed}`);
  await page.goto(`${base}/screening`);
  await page.waitForSelector('#screening-page:not([hidden])');
  check(await page.locator('#site-nav a[href="/screening"]').count() === 1, 'nav link to the screening page');
  await snap('empty');

  // Not a photo: the page shows the refusal and keeps the form.
  allowed.push('status of 422');
  const junk = join(dataDir, 'notes.txt');
  writeFileSync(junk, 'these are not pixels');
  await page.setInputFiles('#photo', junk);
  await page.click('#screening-submit');
  await page.waitForFunction(() => document.querySelector('#screening-message').textContent.length > 0);
  const refusal = await page.textContent('#screening-message');
  check(/not a photo|image|picture/i.test(refusal), `refusal message: ${refusal}`);
  check(await page.isHidden('#result'), 'no result for a refused file');
  await snap('refused');

  // A real held-out photo.
  const dir = join(SHARED, 'data', 'skin-infections-8', 'test', 'ringworm');
  const photo = join(dir, readdirSync(dir).filter((f) => f.endsWith('.jpg')).sort()[0]);
  log(`uploading ${photo}`);
  await page.setInputFiles('#photo', photo);
  await page.click('#screening-submit');
  await page.waitForSelector('#result:not([hidden])', { timeout: 60_000 });
  check(await page.inputValue('#photo') !== '', 'the chosen file stays chosen');
  const top = await page.$$eval('#result-top li', (lis) => lis.map((li) => ({
    condition: li.dataset.condition, text: li.textContent, value: Number(li.querySelector('meter').value) })));
  check(top.length === 3, `three conditions: ${JSON.stringify(top)}`);
  check(top[0].value >= top[1].value && top[1].value >= top[2].value, `ordered: ${JSON.stringify(top)}`);
  check(top[0].condition === 'fungal', `ringworm is a fungal infection: ${JSON.stringify(top)}`);
  check(/not a diagnosis/.test(await page.textContent('#result-notice')), 'not-a-diagnosis notice');
  check((await page.textContent('#result-advice')).length > 40, 'advice');
  check((await page.textContent('#result-triage')).length > 10, 'triage');
  check(Number(await page.getAttribute('#upload-progress', 'value')) === 100, 'upload progress reached 100');
  log(`result: ${(await page.textContent('#result-verdict')).trim()}`);
  await snap('result');

  // Save into the private record, then find it there.
  await page.click('#save-button');
  await page.waitForFunction(() => /Saved/.test(document.querySelector('#save-message').textContent));
  await snap('saved');
  await page.goto(`${base}/records`);
  await page.waitForSelector('#record-list li');
  const titles = await page.$$eval('#record-list li', (lis) => lis.map((li) => li.textContent));
  check(titles.some((t) => /Skin screening/.test(t)), `saved result in records: ${JSON.stringify(titles)}`);
  await snap('records');
  check(problems.length === 0, `browser problems:\n${problems.join('\n')}`);
  log('PASS');
} catch (err) {
  failed = true;
  console.error(err.stack || String(err));
} finally {
  if (browser) await browser.close();
  proc.kill('SIGTERM');
  await new Promise((r) => proc.on('exit', r));
  writeFileSync(join(ARTIFACTS, 'server.log'), output);
  if (/ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:/.test(output)) {
    failed = true;
    console.error(`sanitizer report in the server output:\n${output.slice(-3000)}`);
  }
  rmSync(dataDir, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
