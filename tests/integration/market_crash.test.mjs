// Crash safety of data requests (issue 14): funding, closing and accepting
// each write ledger.db and caresync.db, which cannot commit together. The
// server kills itself (SIGKILL) at each named window between the commits
// (CARESYNC_CRASH_AT, compiled into test builds only) and is restarted on the
// same data directory, where market_recover runs before serving. After each:
//   - `caresync ledger verify` passes (supply = balances + open escrows);
//   - no intent is left and no request is stuck in 'funding' / 'closing';
//   - the request's state follows the ledger (escrow there ⇔ open; closed
//     with the remainder back with the organisation);
//   - an acceptance is all or nothing for the person: paid ⇔ listed as
//     accepted ⇔ its rows stored; not paid ⇒ they can accept again.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { startServer, Client, createStaff, BIN } from './harness.mjs';

const HAVE_SQLITE = spawnSync('sqlite3', ['-version']).status === 0;
const dataDir = mkdtempSync(join(tmpdir(), 'caresync-mkcrash-'));
let srv, admin, org, adminMade = false;
const PRICE = 10, PLACES = 5, CREDIT = 10000;

async function start(crashAt) {
  srv = await startServer([], { dataDir, env: crashAt ? { CARESYNC_CRASH_AT: crashAt } : {} });
  admin = new Client(srv.base);
  if (adminMade) await admin.login('mc-admin');
}

function rebase(c) { const n = new Client(srv.base); n.cookie = c.cookie; n.csrf = c.csrf; return n; }
const asOrg = (method, path, body) =>
  new Client(srv.base).req(method, path, body, { headers: { Authorization: `Bearer ${org.token}` } });

// Run the step against a server that crashes in it; true if it did.
async function crashIn(window, step) {
  await srv.stop();
  await start(window);
  try { await step(); } catch { /* the connection dies with the server */ }
  const exit = await Promise.race([srv.exited, new Promise((r) => setTimeout(() => r(null), 5000))]);
  if (!exit) return false; // no crash points in this build
  assert.equal(exit.signal, 'SIGKILL', `${window}: ${srv.stderr}`);
  await start(null);
  return true;
}

function sql(query) {
  const r = spawnSync('sqlite3', ['-readonly', join(dataDir, 'caresync.db'), query], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout.trim();
}

function checkConsistent(label) {
  const v = spawnSync(BIN, ['ledger', 'verify', '--data-dir', dataDir], { encoding: 'utf8' });
  assert.equal(v.status, 0, `${label}: ${v.stdout}${v.stderr}`);
  if (HAVE_SQLITE) {
    assert.equal(sql('SELECT count(*) FROM market_intents'), '0', `${label}: an intent is left`);
    assert.equal(sql("SELECT count(*) FROM market_requests WHERE state IN ('funding','closing')"), '0', label);
  }
}

async function balance() { return (await asOrg('GET', '/api/v1/requests')).json.balance; }

async function postRequest() {
  const r = await asOrg('POST', '/api/v1/requests', {
    title: 'Crash test request', purpose_text: 'Survive a crash.', purpose: 'research',
    categories: ['conditions'], criteria: { conditions: ['fungal'] }, price: PRICE, max_participants: PLACES,
    closes: new Date(Date.now() + 7 * 86400e3).toISOString().replace(/\.\d+Z$/, 'Z'),
  });
  assert.equal(r.status, 201, r.text);
  return r.json.request.id;
}

async function openRequest() {
  const id = await postRequest();
  assert.equal((await admin.post(`/api/admin/market/requests/${id}/approve`, {})).status, 200);
  return id;
}

async function person() {
  const c = new Client(srv.base);
  await c.signup(`mc-${randomBytes(4).toString('hex')}`);
  assert.equal((await c.put('/api/profile', { birth_year: 1985, sex: 'male', region: 'NZ-WGN' })).status, 200);
  assert.equal((await c.post('/api/records', { kind: 'condition', title: 'x', onset: '2026-03-03', code: 'fungal' })).status, 201);
  return c;
}

before(async () => {
  await start(null);
  await createStaff(dataDir, 'mc-admin', 'admin');
  adminMade = true;
  admin = new Client(srv.base);
  await admin.login('mc-admin');
  const key = randomBytes(32).toString('hex');
  assert.equal((await admin.post('/api/admin/orgs', { name: 'Crash Research', public_key: key })).status, 201);
  org = { key, token: (await admin.post(`/api/admin/orgs/${key}/tokens`, {})).json.token };
  assert.equal((await admin.post(`/api/admin/orgs/${key}/credit`, { amount: CREDIT, reference: 'CRASH-1' })).status, 201);
});

after(async () => {
  if (srv) await srv.stop();
  rmSync(dataDir, { recursive: true, force: true });
});

test('funding: a crash before or after market_open leaves pending (nothing escrowed) or open (escrowed)', async (t) => {
  for (const [window, want] of [['market_after_fund_intent', 'pending'], ['market_after_fund', 'open']]) {
    const id = await postRequest();
    const bal0 = await balance();
    if (!(await crashIn(window, () => admin.post(`/api/admin/market/requests/${id}/approve`, {})))) {
      t.skip('this build has no crash points');
      return;
    }
    const r = (await asOrg('GET', `/api/v1/requests/${id}`)).json.request;
    assert.equal(r.state, want, window);
    assert.equal(await balance(), bal0 - (want === 'open' ? PRICE * PLACES : 0), window);
    checkConsistent(window);
    if (want === 'pending') assert.equal((await admin.post(`/api/admin/market/requests/${id}/approve`, {})).status, 200);
  }
});

test('closing: a crash after the close intent is finished at start; the remainder returns once', async (t) => {
  const id = await openRequest();
  const bal0 = await balance();
  if (!(await crashIn('market_after_close_intent', () => asOrg('POST', `/api/v1/requests/${id}/withdraw`)))) {
    t.skip('this build has no crash points');
    return;
  }
  const r = (await asOrg('GET', `/api/v1/requests/${id}`)).json.request;
  assert.equal(r.state, 'closed');
  assert.equal(await balance(), bal0 + PRICE * PLACES);
  checkConsistent('market_after_close_intent');
});

test('accepting: paid ⇔ accepted ⇔ rows stored, whichever window the crash hits', async (t) => {
  for (const [window, paidAfter] of [['market_after_accept_intent', false], ['market_after_grant', true], ['market_after_pay', true]]) {
    const id = await openRequest();
    let p = await person();
    if (!(await crashIn(window, () => rebase(p).post(`/api/market/requests/${id}/accept`, {})))) {
      t.skip('this build has no crash points');
      return;
    }
    p = rebase(p);
    const wallet = (await p.get('/api/wallet')).json.wallet.balance;
    const seen = (await p.get('/api/market/requests')).json.requests.find((x) => x.id === id);
    const req = (await asOrg('GET', `/api/v1/requests/${id}`)).json.request;
    assert.equal(wallet, paidAfter ? PRICE : 0, window);
    assert.equal(seen.accepted, paidAfter, window);
    assert.equal(req.paid, paidAfter ? 1 : 0, window);
    if (HAVE_SQLITE) assert.equal(sql(`SELECT count(*) FROM market_rows WHERE request_id = '${id}'`), paidAfter ? '1' : '0', window);
    checkConsistent(window);
    // Either way the person ends paid exactly once.
    const again = await p.post(`/api/market/requests/${id}/accept`, {});
    assert.equal(again.status, paidAfter ? 409 : 201, `${window}: ${again.text}`);
    assert.equal((await p.get('/api/wallet')).json.wallet.balance, PRICE, window);
  }
});
