// Data for tokens (issue 14), delivery: the organisation downloads its
// request's dataset (CSV, JSON with the data dictionary) made k-anonymous
// in people (k = the server's small-cell k, --small-cell-k, the option the
// surveillance releases use), every new dataset is a ledger release of the
// CSV's SHA-256 (the same bytes again: the same receipt), the people who took
// part see the deliveries their rows were in, a withdrawal leaves the next
// delivery without their rows (payments stay), and nothing an organisation
// can see names a participant.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { startServer, Client, createStaff, errorOf } from './harness.mjs';

const K = 3; // --small-cell-k: small enough for a handful of people
const MARK = `Zq${randomBytes(4).toString('hex')}Mark`; // in names and free text
const BIRTH = 1983; // the distinctive birth year of most participants (age band 40-44 in 2026)
const OLD = 1947; // one person alone in their age: held back
let srv, admin, org, req;
const people = []; // { c, name, region, tags, grant, paid }
let seq = 0;

const bearer = (token) => ({ headers: { Authorization: `Bearer ${token}` } });
const orgReq = (o, method, path, body) => o.c.req(method, path, body, bearer(o.token));
const sha256 = (b) => createHash('sha256').update(b).digest('hex');
const closesIn = (days) => new Date(Date.now() + days * 86400e3).toISOString().replace(/\.\d+Z$/, 'Z');

async function makeOrg(name) {
  const key = randomBytes(32).toString('hex');
  assert.equal((await admin.post('/api/admin/orgs', { name, public_key: key })).status, 201);
  const t = await admin.post(`/api/admin/orgs/${key}/tokens`, {});
  assert.equal(t.status, 201, t.text);
  const cr = await admin.post(`/api/admin/orgs/${key}/credit`, { amount: 1000, reference: 'INV-DELIVERY-1' });
  assert.equal(cr.status, 201, cr.text);
  return { key, token: t.json.token, c: new Client(srv.base) };
}

// A person with `n` coded conditions (the same week), free-text markers
// everywhere a record holds text.
async function person(region, birth = BIRTH, { n = 1, onset = '2026-02-10' } = {}) {
  const c = new Client(srv.base);
  const name = `${MARK.toLowerCase()}-${++seq}`;
  await c.signup(name);
  const p = await c.put('/api/profile', { display_name: `${MARK} Display ${seq}`, birth_year: birth, sex: 'female', region });
  assert.equal(p.status, 200, p.text);
  for (let i = 0; i < n; i++) {
    const r = await c.post('/api/records', { kind: 'condition', title: `${MARK} title ${i}`,
      details: `${MARK} details: seen on ${onset}`, onset, code: 'fungal' });
    assert.equal(r.status, 201, r.text);
  }
  const note = await c.post('/api/records', { kind: 'note', title: `${MARK} note`, details: `${MARK} notes text` });
  assert.equal(note.status, 201, note.text);
  return { c, name, region, birth, onset };
}

async function accept(p) {
  const r = await p.c.post(`/api/market/requests/${req.id}/accept`, {});
  assert.equal(r.status, 201, r.text);
  p.tags = r.json.rows.map((x) => x.tag);
  p.grant = r.json.grant_txid;
  p.paid = r.json.paid;
}

// "a=1, b=2" → { a: 1, b: 2 }
const kv = (text) => Object.fromEntries(text.split(', ').map((x) => x.split('=')).map(([k, v]) => [k, Number(v)]));

function parseCsv(text) {
  const lines = text.split('\r\n');
  assert.equal(lines.pop(), '', 'the CSV ends with CRLF');
  const head = lines.shift().split(',');
  return lines.map((l) => Object.fromEntries(l.split(',').map((v, i) => [head[i], v])));
}

async function download(format) {
  const r = await orgReq(org, 'GET', `/api/v1/requests/${req.id}/dataset?format=${format}`);
  assert.equal(r.status, 200, r.text);
  return r;
}

// Every released QI combination is shared by at least K people (the test
// knows whose tags are whose from the acceptances; the server never says).
function assertKAnonymous(rows) {
  const owner = new Map();
  for (const p of people) for (const t of p.tags) owner.set(t, p.name);
  const classes = new Map();
  for (const r of rows) {
    const key = [r.age_band, r.sex, r.region, r.period].join('|');
    if (!classes.has(key)) classes.set(key, new Set());
    assert.ok(owner.has(r.tag), `delivered tag ${r.tag} belongs to an acceptance`);
    classes.get(key).add(owner.get(r.tag));
  }
  for (const [key, who] of classes) assert.ok(who.size >= K, `class ${key} has ${who.size} people < k = ${K}`);
}

before(async () => {
  srv = await startServer(['--small-cell-k', String(K), '--market-daily-cap', '1000']);
  await createStaff(srv.dataDir, 'dl-admin', 'admin');
  admin = new Client(srv.base);
  await admin.login('dl-admin');
  org = await makeOrg('Delivery Research Unit');
  const made = await orgReq(org, 'POST', '/api/v1/requests', {
    title: 'Fungal infections by region', purpose_text: 'Regional recurrence of fungal infections.',
    purpose: 'research', categories: ['conditions', 'demographics'], criteria: { conditions: ['fungal'], countries: ['NZ'] },
    price: 5, max_participants: 20, closes: closesIn(30),
  });
  assert.equal(made.status, 201, made.text);
  req = made.json.request;
  assert.equal((await admin.post(`/api/admin/market/requests/${req.id}/approve`, {})).status, 200);
  // Four in Auckland (a class of 4 ≥ k at the subdivision), two in
  // Wellington and one in Canterbury (3 people only at country level), one
  // in Bay of Plenty with three rows in one week (three rows, one person:
  // never a class of its own), one older person in Otago (alone at every
  // level: held back).
  for (const region of ['NZ-AUK', 'NZ-AUK', 'NZ-AUK', 'NZ-AUK', 'NZ-WGN', 'NZ-WGN', 'NZ-CAN'])
    people.push(await person(region));
  people.push(await person('NZ-BOP', BIRTH, { n: 3 }));
  people.push(await person('NZ-OTA', OLD, { onset: '2026-03-17' }));
  for (const p of people) await accept(p);
});

after(async () => {
  if (srv) { await srv.stop(); srv.cleanup(); }
});

let first; // the first CSV delivery

test('CSV: k-anonymous in people, counts in headers consistent with the rows, a ledger release of its hash', async () => {
  const r = await download('csv');
  assert.match(r.headers.get('content-type'), /^text\/csv/);
  const rows = parseCsv(r.text);
  const h = (n) => r.headers.get(n);
  const counts = kv(h('x-rows'));
  const rowsIn = people.reduce((s, p) => s + p.tags.length, 0);
  assert.equal(Number(h('x-k')), K);
  assert.equal(counts.in, rowsIn);
  assert.equal(counts.delivered, rows.length);
  assert.equal(counts.held_back, rowsIn - rows.length);
  const gen = kv(h('x-rows-generalised'));
  assert.deepEqual(Object.keys(gen), ['region_to_country', 'week_to_month', 'age_to_10_years', 'age_to_20_years', 'sex_to_unspecified']);
  // A held-back row went up every step first; a delivered row at country
  // level went up the first step; so the counts must add up with the rows.
  const atCountry = rows.filter((x) => /^[A-Z]{2}$/.test(x.region)).length;
  assert.equal(gen.region_to_country, atCountry + counts.held_back);
  assert.equal(gen.sex_to_unspecified, counts.held_back + rows.filter((x) => x.sex === 'unspecified').length);
  assertKAnonymous(rows);
  // People, not rows: the Bay of Plenty person's three rows are not a class of three.
  const bop = people.find((p) => p.region === 'NZ-BOP');
  assert.equal(bop.tags.length, 3);
  for (const t of bop.tags) {
    const row = rows.find((x) => x.tag === t);
    assert.ok(row, 'the Bay of Plenty rows are delivered (generalised)');
    assert.equal(row.region, 'NZ');
  }
  // Auckland's four people keep their subdivision; the old person is held back.
  assert.ok(rows.filter((x) => x.region === 'NZ-AUK').length === 4);
  const old = people.find((p) => p.birth === OLD);
  assert.ok(!rows.some((x) => old.tags.includes(x.tag)), 'the person alone in their class is held back');
  assert.ok(counts.held_back >= 1);
  // The ledger: a release to the organisation carrying the CSV's SHA-256.
  const hash = sha256(r.bytes);
  assert.equal(h('x-dataset-sha256'), hash);
  const tx = (await new Client(srv.base).get(`/api/ledger/tx/${h('x-ledger-txid')}`)).json.transaction;
  assert.equal(tx.kind, 'release');
  assert.equal(tx.query, hash);
  assert.equal(tx.org, org.key);
  assert.equal(tx.k_min, K);
  assert.equal(tx.cells, rows.length);
  assert.equal(h('x-repeat'), 'false');
  first = { hash, txid: h('x-ledger-txid'), rows, text: r.text };
});

test('a repeat of the same dataset, CSV or JSON, gets the same receipt and writes nothing', async () => {
  const height = (await admin.get('/api/ledger')).json.tree_head.height;
  const again = await download('csv');
  assert.equal(again.text, first.text);
  assert.equal(again.headers.get('x-ledger-txid'), first.txid);
  assert.equal(again.headers.get('x-repeat'), 'true');
  const j = (await download('json')).json;
  assert.equal(j.sha256, first.hash);
  assert.equal(j.receipt.txid, first.txid);
  assert.equal(j.receipt.repeat, true);
  assert.equal((await admin.get('/api/ledger')).json.tree_head.height, height, 'no block for a repeat');
});

test('JSON: the same rows, the summary and the data dictionary', async () => {
  const j = (await download('json')).json;
  assert.equal(j.format, 'caresync-anon/1');
  assert.equal(j.k, K);
  assert.deepEqual(j.rows.map((x) => x.tag), first.rows.map((x) => x.tag));
  assert.deepEqual(j.rows, first.rows);
  assert.equal(j.summary.delivered, first.rows.length);
  assert.equal(j.summary.rows_in, j.summary.delivered + j.summary.held_back);
  assert.equal(j.receipt.contributors, people.length);
  const names = j.dictionary.map((d) => d.name);
  assert.deepEqual(names, Object.keys(first.rows[0]));
  for (const d of j.dictionary) assert.ok(d.meaning && d.values && d.generalisation, `dictionary entry ${d.name}`);
});

test('people see the deliveries of their requests; a withdrawal leaves the next one without their rows', async () => {
  const [leaver, stayer] = people;
  const before = (await leaver.c.get('/api/market/participations')).json.participations;
  const mine = before.find((x) => x.request === req.id);
  assert.ok(mine, 'the participation is listed');
  assert.deepEqual(mine.deliveries.map((d) => [d.txid, d.sha256]), [[first.txid, first.hash]]);
  assert.equal(mine.paid, leaver.paid);
  const wallet0 = (await leaver.c.get('/api/wallet')).json.wallet.balance;
  // Revoke the consent the acceptance made.
  const rv = await leaver.c.post(`/api/consents/${leaver.grant}/revoke`, {});
  assert.equal(rv.status, 200, rv.text);
  const r = await download('csv');
  const rows = parseCsv(r.text);
  assert.equal(r.headers.get('x-repeat'), 'false');
  assert.notEqual(r.headers.get('x-ledger-txid'), first.txid);
  assert.equal(kv(r.headers.get('x-rows')).in, people.reduce((s, p) => s + p.tags.length, 0) - leaver.tags.length);
  assert.ok(rows.length < first.rows.length, 'the next delivery is smaller');
  assert.ok(!rows.some((x) => leaver.tags.includes(x.tag)), 'the withdrawn rows are gone');
  assertKAnonymous(rows);
  const tx = (await admin.get(`/api/ledger/tx/${r.headers.get('x-ledger-txid')}`)).json.transaction;
  assert.equal(tx.kind, 'release');
  assert.equal(tx.query, sha256(r.bytes));
  // Payments stay; the leaver's list keeps the first delivery only, the
  // stayer's has both.
  assert.equal((await leaver.c.get('/api/wallet')).json.wallet.balance, wallet0);
  const after = (await leaver.c.get('/api/market/participations')).json.participations.find((x) => x.request === req.id);
  assert.ok(after.withdrawn_at);
  assert.deepEqual(after.deliveries.map((d) => d.txid), [first.txid]);
  const st = (await stayer.c.get('/api/market/participations')).json.participations.find((x) => x.request === req.id);
  assert.deepEqual(st.deliveries.map((d) => d.txid).sort(), [first.txid, r.headers.get('x-ledger-txid')].sort());
  // A person who took part in nothing sees nothing.
  const none = new Client(srv.base);
  await none.signup(`dl-none-${process.pid}`);
  assert.deepEqual((await none.get('/api/market/participations')).json.participations, []);
});

test('errors: format, another organisation, unknown request', async () => {
  const bad = await orgReq(org, 'GET', `/api/v1/requests/${req.id}/dataset?format=xml`);
  assert.equal(bad.status, 422);
  assert.equal(errorOf(bad).field, 'format');
  const other = await makeOrg('Delivery Bystander');
  assert.equal(errorOf(await orgReq(other, 'GET', `/api/v1/requests/${req.id}/dataset?format=csv`)).code, 'not_found');
  assert.equal((await orgReq(org, 'GET', `/api/v1/requests/${'0'.repeat(32)}/dataset`)).status, 404);
  assert.equal((await new Client(srv.base).get(`/api/v1/requests/${req.id}/dataset`)).status, 401);
});

test('MARKER: nothing an organisation can see names a participant, their birth year or an exact date', async () => {
  const anon = new Client(srv.base);
  const pages = [
    await orgReq(org, 'GET', '/api/v1/requests'), // its requests and its balance (its wallet)
    await orgReq(org, 'GET', `/api/v1/requests/${req.id}`),
    await download('csv'), await download('json'),
    await anon.get('/api/ledger'), await anon.get('/api/ledger/orgs'), await anon.get('/api/ledger/blocks?limit=50'),
  ];
  const head = pages[4].json.tree_head.height;
  for (let h = 0; h <= head; h++) pages.push(await anon.get(`/api/ledger/blocks/${h}`));
  const txids = new Set();
  for (const p of pages.slice(7)) for (const t of JSON.stringify(p.json).match(/[0-9a-f]{64}/g) || []) txids.add(t);
  for (const t of txids) {
    const r = await anon.get(`/api/ledger/tx/${t}`);
    if (r.status === 200) pages.push(r);
  }
  // Headers count too (the CSV's counts and receipt travel there).
  const seen = pages.map((p) => `${[...p.headers].map(([k, v]) => `${k}: ${v}`).join('\n')}\n${p.text}`).join('\n');
  assert.ok(seen.includes(first.hash), 'the pages looked at include the delivery');
  assert.ok(!seen.includes(MARK) && !seen.toLowerCase().includes(MARK.toLowerCase()), 'a username, display name or free text leaks');
  for (const p of people) assert.ok(!seen.includes(p.name), `username ${p.name} leaks`);
  // Years outside hex strings (four digits occur by chance inside them).
  const bare = seen.replace(/[0-9a-f]{16,}/g, ' ');
  for (const y of [BIRTH, OLD]) assert.ok(!new RegExp(`(^|[^0-9])${y}([^0-9]|$)`).test(bare), `birth year ${y} appears`);
  for (const d of ['2026-02-10', '2026-03-17']) assert.ok(!seen.includes(d), `exact date ${d} appears`);
  // The age band derived from the birth year is what leaves.
  assert.ok(first.rows.some((x) => x.age_band === `${Math.floor((new Date().getUTCFullYear() - BIRTH) / 5) * 5}-${Math.floor((new Date().getUTCFullYear() - BIRTH) / 5) * 5 + 4}`));
});
