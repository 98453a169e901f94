// Data for tokens (issue 14, first slice): an administrator credits an
// organisation on the ledger, the organisation posts a data request with its
// bearer token, an administrator approves it (funding it in full: an escrow
// of price × max participants), matching people see it with a preview of the
// exact rows that would leave their record, accept and are paid from the
// escrow: once per person, within a daily earning cap; the request closes
// when the escrow is empty, and withdrawing it returns the remainder.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { startServer, Client, createStaff, errorOf, BIN } from './harness.mjs';

const CAP = 50; // --market-daily-cap
const YEAR = new Date().getUTCFullYear();
const HAVE_SQLITE = spawnSync('sqlite3', ['-version']).status === 0;
let srv, admin;
const orgs = {}; // name -> { key, token }
let seq = 0;

function closesIn(days) {
  return new Date(Date.now() + days * 86400e3).toISOString().replace(/\.\d+Z$/, 'Z');
}

function bearer(token) { return { headers: { Authorization: `Bearer ${token}` } }; }

async function org(name) {
  const key = randomBytes(32).toString('hex');
  assert.equal((await admin.post('/api/admin/orgs', { name, public_key: key })).status, 201);
  const t = await admin.post(`/api/admin/orgs/${key}/tokens`, {});
  assert.equal(t.status, 201, t.text);
  return { key, token: t.json.token, c: new Client(srv.base) };
}

const orgReq = (o, method, path, body) => o.c.req(method, path, body, bearer(o.token));

async function balanceOf(o) {
  const r = await orgReq(o, 'GET', '/api/v1/requests');
  assert.equal(r.status, 200, r.text);
  return r.json.balance;
}

// A person whose record has a coded condition; region and birth year vary.
async function person({ region = 'NZ-AUK', birth = 1990, code = 'fungal', onset = '2026-02-10' } = {}) {
  const c = new Client(srv.base);
  c.name = `mk-${process.pid % 1000}-${++seq}`;
  await c.signup(c.name);
  const p = await c.put('/api/profile', { display_name: 'Private Display Name', birth_year: birth, sex: 'female', region });
  assert.equal(p.status, 200, p.text);
  const r = await c.post('/api/records',
    { kind: 'condition', title: 'Secret itchy foot words', details: 'free text never leaves', onset, code });
  assert.equal(r.status, 201, r.text);
  return c;
}

async function post(o, over = {}) {
  const body = {
    title: 'Fungal skin infections in Auckland', purpose_text: 'How often fungal infections recur.',
    purpose: 'research', categories: ['conditions', 'demographics'],
    criteria: { conditions: ['fungal'], countries: ['NZ'] },
    price: 20, max_participants: 2, closes: closesIn(30), ...over,
  };
  const r = await orgReq(o, 'POST', '/api/v1/requests', body);
  assert.equal(r.status, 201, r.text);
  return r.json.request;
}

async function approve(id) {
  const r = await admin.post(`/api/admin/market/requests/${id}/approve`, {});
  assert.equal(r.status, 200, r.text);
  return r.json.request;
}

async function walletBalance(c) { return (await c.get('/api/wallet')).json.wallet.balance; }

function verify() {
  const r = spawnSync(BIN, ['ledger', 'verify', '--data-dir', srv.dataDir], { encoding: 'utf8' });
  return { ok: r.status === 0, out: `${r.stdout}${r.stderr}` };
}

before(async () => {
  srv = await startServer(['--market-daily-cap', String(CAP)]);
  await createStaff(srv.dataDir, 'mk-admin', 'admin');
  admin = new Client(srv.base);
  await admin.login('mk-admin');
  orgs.a = await org('Market Research Institute');
  orgs.b = await org('Other Agency');
  for (const o of [orgs.a, orgs.b]) {
    const cr = await admin.post(`/api/admin/orgs/${o.key}/credit`, { amount: 1000, reference: 'INV-2026-0001' });
    assert.equal(cr.status, 201, cr.text);
    assert.equal(cr.json.balance, 1000);
    // The credit is a ledger transaction naming the organisation and the reference only.
    const tx = await admin.get(`/api/ledger/tx/${cr.json.txid}`);
    assert.equal(tx.json.transaction.kind, 'credit');
    assert.equal(tx.json.transaction.reference, 'INV-2026-0001');
  }
});

after(async () => {
  if (srv) { await srv.stop(); srv.cleanup(); }
});

test('credit: admin only, registered organisations only, validated, counted in the supply', async () => {
  const before = (await admin.get('/api/ledger')).json.totals;
  const unknown = randomBytes(32).toString('hex');
  assert.equal((await admin.post(`/api/admin/orgs/${unknown}/credit`, { amount: 5, reference: 'X' })).status, 404);
  const bad = await admin.post(`/api/admin/orgs/${orgs.b.key}/credit`, { amount: 5, reference: 'Name\nJane Doe' });
  assert.equal(bad.status, 422);
  assert.equal(errorOf(bad).field, 'reference');
  assert.equal(errorOf(await admin.post(`/api/admin/orgs/${orgs.b.key}/credit`, { amount: 0, reference: 'X' })).field, 'amount');
  const ok = await admin.post(`/api/admin/orgs/${orgs.b.key}/credit`, { amount: 7, reference: 'PO 77' });
  assert.equal(ok.status, 201, ok.text);
  const afterT = (await admin.get('/api/ledger')).json.totals;
  assert.equal(afterT.minted, before.minted + 7);
  assert.equal(await balanceOf(orgs.b), 1007);
});

test('post + fund: pending until approved, then escrowed in full and shown to matching people only', async () => {
  const a = orgs.a;
  const bal0 = await balanceOf(a);
  const match = await person();
  const elsewhere = await person({ region: 'US-CA' });
  const req = await post(a);
  assert.equal(req.state, 'pending');
  assert.equal(req.paid, 0);
  // Not funded, not visible.
  assert.ok(!(await match.get('/api/market/requests')).json.requests.some((x) => x.id === req.id));
  assert.equal(await balanceOf(a), bal0);
  // Too expensive for the balance: refused before anything is stored.
  const broke = await orgReq(a, 'POST', '/api/v1/requests', {
    title: 't', purpose_text: 'p', purpose: 'research', categories: ['conditions'], price: 1000, max_participants: 2,
    closes: closesIn(5),
  });
  assert.equal(broke.status, 409);
  assert.equal(errorOf(broke).code, 'insufficient_tokens');
  const escrowed0 = (await admin.get('/api/ledger')).json.totals.escrowed;
  const open = await approve(req.id);
  assert.equal(open.state, 'open');
  assert.match(open.escrow_txid, /^[0-9a-f]{64}$/);
  assert.equal(open.remaining, 40);
  assert.equal(await balanceOf(a), bal0 - 40);
  assert.equal((await admin.get('/api/ledger')).json.totals.escrowed, escrowed0 + 40);
  const tx = await admin.get(`/api/ledger/tx/${open.escrow_txid}`);
  assert.equal(tx.json.transaction.kind, 'market_open');
  assert.equal(tx.json.transaction.price, 20);
  assert.equal(tx.json.transaction.max_participants, 2);
  // A second approval is a conflict.
  assert.equal((await admin.post(`/api/admin/market/requests/${req.id}/approve`, {})).status, 409);

  const seen = (await match.get('/api/market/requests')).json.requests.find((x) => x.id === req.id);
  assert.ok(seen, 'the matching person sees the open request');
  assert.equal(seen.organisation.name, 'Market Research Institute');
  assert.equal(seen.purpose, 'research');
  assert.equal(seen.price, 20);
  assert.equal(seen.accepted, false);
  // The preview is exactly the generalised rows: code, ISO week, 5-year band, subdivision, sex.
  const lo = Math.floor((YEAR - 1990) / 5) * 5;
  assert.deepEqual(seen.preview, [{
    category: 'conditions', code: 'fungal', week: '2026-W07', age_band: `${lo}-${lo + 4}`, sex: 'female', region: 'NZ-AUK',
  }]);
  const text = JSON.stringify(seen.preview);
  for (const secret of ['Secret', 'free text', '1990', '2026-02-10', 'Private Display Name', match.name]) {
    assert.ok(!text.includes(secret), `preview leaks ${secret}`);
  }
  assert.ok(!(await elsewhere.get('/api/market/requests')).json.requests.some((x) => x.id === req.id));
  assert.equal((await elsewhere.post(`/api/market/requests/${req.id}/accept`, {})).status, 404);
  // Another organisation's token cannot see or withdraw it.
  assert.equal((await orgReq(orgs.b, 'GET', `/api/v1/requests/${req.id}`)).status, 404);
  assert.equal((await orgReq(orgs.b, 'POST', `/api/v1/requests/${req.id}/withdraw`)).status, 404);
  orgs.a.fundedRequest = req.id;
});

test('one payment per person; budget exhaustion closes the request with nothing left in escrow', async () => {
  const a = orgs.a;
  const req = await approve((await post(a, { price: 15, max_participants: 2 })).id);
  const bal0 = await balanceOf(a);
  const [p1, p2, p3] = [await person(), await person(), await person()];
  const r1 = await p1.post(`/api/market/requests/${req.id}/accept`, {});
  assert.equal(r1.status, 201, r1.text);
  assert.equal(r1.json.paid, 15);
  assert.equal(await walletBalance(p1), 15);
  // The consent the acceptance made: grantee the organisation, the request's purpose and categories.
  const consents = (await p1.get('/api/consents')).json.consents;
  const cn = consents.find((x) => x.id === r1.json.grant_txid);
  assert.ok(cn, 'the grant is among the person\'s consents');
  assert.equal(cn.grantee, a.key);
  assert.equal(cn.purpose, 'research');
  assert.deepEqual(cn.scope.sort(), ['conditions', 'demographics']);
  assert.equal((await admin.get(`/api/ledger/tx/${r1.json.payment_txid}`)).json.transaction.kind, 'market_pay');
  const paidRow = (await p1.get('/api/wallet')).json.wallet.history.find((h) => h.kind === 'market_pay');
  assert.equal(paidRow.delta, 15);
  assert.equal(paidRow.request, req.escrow_txid);
  // Twice: refused, and not paid again.
  const again = await p1.post(`/api/market/requests/${req.id}/accept`, {});
  assert.equal(again.status, 409);
  assert.equal(errorOf(again).code, 'already_accepted');
  assert.equal(await walletBalance(p1), 15);
  assert.equal((await p1.get('/api/market/requests')).json.requests.find((x) => x.id === req.id).accepted, true);
  // The second place empties the escrow: the ledger closes it, the request follows.
  assert.equal((await p2.post(`/api/market/requests/${req.id}/accept`, {})).status, 201);
  const done = (await orgReq(a, 'GET', `/api/v1/requests/${req.id}`)).json.request;
  assert.equal(done.state, 'closed');
  assert.equal(done.paid, 2);
  assert.equal(done.remaining, 0);
  assert.equal(await balanceOf(a), bal0); // all spent on the two participants, nothing returned
  assert.ok(!(await p3.get('/api/market/requests')).json.requests.some((x) => x.id === req.id));
  assert.equal((await p3.post(`/api/market/requests/${req.id}/accept`, {})).status, 404);
  assert.equal(await walletBalance(p3), 0);
  if (HAVE_SQLITE) {
    // Two rows stored by random tag, with no person id; the tags are not in clear anywhere else.
    const q = spawnSync('sqlite3', ['-readonly', join(srv.dataDir, 'caresync.db'),
      `SELECT hex(tag), row FROM market_rows WHERE request_id = '${req.id}'`], { encoding: 'utf8' });
    const rows = q.stdout.trim().split('\n');
    assert.equal(rows.length, 2, q.stdout);
    for (const line of rows) {
      const [tag, row] = line.split('|');
      assert.match(tag, /^[0-9A-F]{32}$/);
      assert.deepEqual(Object.keys(JSON.parse(row)).sort(), ['age_band', 'category', 'code', 'region', 'sex', 'week']);
      const other = spawnSync('sqlite3', ['-readonly', join(srv.dataDir, 'caresync.db'),
        `SELECT count(*) FROM market_participation WHERE instr(hex(sealed), '${tag}') > 0`], { encoding: 'utf8' });
      assert.equal(other.stdout.trim(), '0');
    }
  }
});

test('withdrawing an open request returns the remainder to the organisation', async () => {
  const a = orgs.a;
  const req = await approve((await post(a, { price: 10, max_participants: 3 })).id);
  const bal0 = await balanceOf(a);
  const p = await person();
  assert.equal((await p.post(`/api/market/requests/${req.id}/accept`, {})).status, 201);
  const w = await orgReq(a, 'POST', `/api/v1/requests/${req.id}/withdraw`);
  assert.equal(w.status, 200, w.text);
  assert.equal(w.json.request.state, 'closed');
  assert.equal(w.json.request.paid, 1);
  assert.equal(await balanceOf(a), bal0 + 20);
  assert.equal((await orgReq(a, 'POST', `/api/v1/requests/${req.id}/withdraw`)).status, 409);
  assert.equal((await p.post(`/api/market/requests/${req.id}/accept`, {})).status, 404);
  // A pending request is simply withdrawn: nothing was escrowed.
  const pending = await post(a);
  const wp = await orgReq(a, 'POST', `/api/v1/requests/${pending.id}/withdraw`);
  assert.equal(wp.json.request.state, 'withdrawn');
  assert.equal(await balanceOf(a), bal0 + 20);
});

test('withdrawal: revoking the consent, or deleting the account, removes the person\'s rows; payments stay', async () => {
  const a = orgs.a;
  const req = await approve((await post(a, { price: 5, max_participants: 5 })).id);
  const [p1, p2, p3] = [await person(), await person(), await person()];
  const grants = [];
  for (const p of [p1, p2, p3]) {
    const r = await p.post(`/api/market/requests/${req.id}/accept`, {});
    assert.equal(r.status, 201, r.text);
    grants.push(r.json.grant_txid);
  }
  const count = () => spawnSync('sqlite3', ['-readonly', join(srv.dataDir, 'caresync.db'),
    `SELECT count(*) FROM market_rows WHERE request_id = '${req.id}'`], { encoding: 'utf8' }).stdout.trim();
  if (HAVE_SQLITE) assert.equal(count(), '3');
  const rv = await p1.post(`/api/consents/${grants[0]}/revoke`, {});
  assert.equal(rv.status, 200, rv.text);
  assert.equal(rv.json.consent.status, 'revoked');
  assert.equal(await walletBalance(p1), 5); // paid stays paid
  if (HAVE_SQLITE) assert.equal(count(), '2');
  // Revoked once: no second withdrawal, the request still shows as taken part in.
  assert.equal((await p1.get('/api/market/requests')).json.requests.find((x) => x.id === req.id).accepted, true);
  const del = await p2.del('/api/account', { password: 'correct horse battery' });
  assert.equal(del.status, 200, del.text);
  if (HAVE_SQLITE) assert.equal(count(), '1');
  // The organisation's view is unchanged: paid 3, three consents were given.
  assert.equal((await orgReq(a, 'GET', `/api/v1/requests/${req.id}`)).json.request.paid, 3);
});

test('daily earning cap: the person is told when it applies, and is not paid past it', async () => {
  const a = orgs.a;
  const r1 = await approve((await post(a, { price: 30, max_participants: 3 })).id);
  const r2 = await approve((await post(a, { price: 30, max_participants: 3 })).id);
  const p = await person();
  let list = (await p.get('/api/market/requests')).json;
  assert.deepEqual(list.daily_cap, { cap: CAP, earned_today: 0 });
  assert.equal(list.requests.find((x) => x.id === r2.id).daily_cap.applies, false);
  assert.equal((await p.post(`/api/market/requests/${r1.id}/accept`, {})).status, 201);
  list = (await p.get('/api/market/requests')).json;
  assert.deepEqual(list.daily_cap, { cap: CAP, earned_today: 30 });
  assert.equal(list.requests.find((x) => x.id === r2.id).daily_cap.applies, true);
  const refused = await p.post(`/api/market/requests/${r2.id}/accept`, {});
  assert.equal(refused.status, 409);
  const e = errorOf(refused);
  assert.equal(e.code, 'daily_cap_reached');
  assert.match(e.message, /daily earning limit/);
  assert.equal(await walletBalance(p), 30);
  const st = (await orgReq(a, 'GET', `/api/v1/requests/${r2.id}`)).json.request;
  assert.equal(st.paid, 0);
});

test('the person\'s listing: places left as the ledger counts, and every request they took part in', async () => {
  const a = orgs.a;
  const req = await approve((await post(a, { price: 4, max_participants: 2, title: 'Places and participations' })).id);
  const [p1, p2] = [await person(), await person()];
  let seen = (await p1.get('/api/market/requests')).json;
  let mine = seen.requests.find((x) => x.id === req.id);
  assert.equal(mine.max_participants, 2);
  assert.equal(mine.places_left, 2);
  assert.deepEqual(seen.participations, []);
  const acc = await p1.post(`/api/market/requests/${req.id}/accept`, {});
  assert.equal(acc.status, 201, acc.text);
  mine = (await p2.get('/api/market/requests')).json.requests.find((x) => x.id === req.id);
  assert.equal(mine.places_left, 1);
  seen = (await p1.get('/api/market/requests')).json;
  assert.equal(seen.participations.length, 1);
  const took = seen.participations[0];
  assert.equal(took.request, req.id);
  assert.equal(took.title, 'Places and participations');
  assert.equal(took.organisation.key, a.key);
  assert.equal(took.paid, 4);
  assert.equal(took.grant_txid, acc.json.grant_txid);
  assert.equal(took.state, 'open');
  assert.equal(took.withdrawn_at, null);
  assert.match(took.paid_at, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/);
  // Nobody else's participation is listed.
  assert.deepEqual((await p2.get('/api/market/requests')).json.participations, []);
  // The last place closes the request; the participation is still listed (closed), and withdrawing marks it.
  assert.equal((await p2.post(`/api/market/requests/${req.id}/accept`, {})).status, 201);
  seen = (await p1.get('/api/market/requests')).json;
  assert.ok(!seen.requests.some((x) => x.id === req.id));
  assert.equal(seen.participations[0].state, 'closed');
  assert.equal((await p1.post(`/api/consents/${took.grant_txid}/revoke`, {})).status, 200);
  const after = (await p1.get('/api/market/requests')).json.participations[0];
  assert.match(after.withdrawn_at, /Z$/);
  assert.equal(after.paid, 4);
});

test('a record entry\'s code is a short token, never text', async () => {
  const c = new Client(srv.base);
  await c.signup(`mk-code-${process.pid % 1000}`);
  for (const code of ['Fungal', 'has space', 'x'.repeat(32), '', 7]) {
    const r = await c.post('/api/records', { kind: 'condition', title: 't', code });
    assert.equal(r.status, 422, `${JSON.stringify(code)}: ${r.text}`);
    assert.equal(errorOf(r).field, 'code');
  }
  const ok = await c.post('/api/records', { kind: 'symptom', title: 't', onset: '2026-01-05', code: 'eczema' });
  assert.equal(ok.status, 201, ok.text);
  assert.equal(ok.json.record.code, 'eczema');
  // Without a code an entry looks as it always did.
  const plain = await c.post('/api/records', { kind: 'note', title: 'n' });
  assert.ok(!('code' in plain.json.record));
});

test('validation: every field named, unknown codes and countries refused', async () => {
  const a = orgs.a;
  const cases = [
    [{ purpose: 'marketing' }, 'purpose'], [{ categories: ['photos'] }, 'categories'], [{ price: 0 }, 'price'],
    [{ max_participants: 0 }, 'max_participants'], [{ closes: '2020-01-01T00:00:00Z' }, 'closes'],
    [{ closes: 'tomorrow' }, 'closes'], [{ criteria: { conditions: ['not_a_code'] } }, 'conditions'],
    [{ criteria: { countries: ['XX'] } }, 'countries'], [{ criteria: { age_bands: ['30-40'] } }, 'age_bands'],
    [{ title: '' }, 'title'],
  ];
  for (const [over, field] of cases) {
    const body = { title: 't', purpose_text: 'p', purpose: 'research', categories: ['conditions'], price: 1,
      max_participants: 1, closes: closesIn(3), ...over };
    const r = await orgReq(a, 'POST', '/api/v1/requests', body);
    assert.equal(r.status, 422, `${field}: ${r.text}`);
    assert.equal(errorOf(r).field, field);
  }
});

test('the ledger verifies: credits are mints, open escrows are counted', async () => {
  const v = verify();
  assert.ok(v.ok, v.out);
});
