// The organisation's page (issue 14): an analyst whom an administrator put
// in an organisation acts for it by session on /api/org/…, through the same
// handler bodies as the organisation's bearer-token API. Proven here by
// asking both for the same things and requiring the same answers — lists,
// one request, refusals with their codes and fields, the dataset bytes and
// its ledger receipt — and by the two writing into one another's view.
// (Who may call which route is tests/integration/authz_matrix.test.mjs.)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes, createHash } from 'node:crypto';
import { startServer, Client, createStaff, errorOf } from './harness.mjs';

let srv, admin, member, org;
const PW = 'correct horse battery';

function closesIn(days) {
  return new Date(Date.now() + days * 86400e3).toISOString().replace(/\.\d+Z$/, 'Z');
}

const token = (method, path, body, o = {}) =>
  new Client(srv.base).req(method, path, body, { ...o, headers: { ...(o.headers || {}), Authorization: `Bearer ${org.token}` } });
const session = (method, path, body, o) => member.req(method, path, body, o);
const terms = (over = {}) => ({
  title: 'Fungal skin infections', purpose_text: 'How often fungal infections recur.', purpose: 'research',
  categories: ['conditions', 'demographics'], criteria: { conditions: ['fungal'], countries: ['NZ'] },
  price: 5, max_participants: 3, closes: closesIn(30), ...over,
});

before(async () => {
  srv = await startServer(['--small-cell-k', '1']);
  await createStaff(srv.dataDir, 'op-admin', 'admin', PW);
  await createStaff(srv.dataDir, 'op-member', 'analyst', PW);
  admin = new Client(srv.base);
  await admin.login('op-admin', PW);
  const key = randomBytes(32).toString('hex');
  assert.equal((await admin.post('/api/admin/orgs', { name: 'Page Test Institute', public_key: key })).status, 201);
  const t = await admin.post(`/api/admin/orgs/${key}/tokens`, {});
  assert.equal(t.status, 201, t.text);
  org = { key, token: t.json.token };
  assert.equal((await admin.put('/api/admin/users/op-member/org', { org: key })).status, 200);
  member = new Client(srv.base);
  await member.login('op-member', PW);
});

after(async () => {
  if (srv) { await srv.stop(); srv.cleanup(); }
});

test('the session and the token see and refuse the same things', async () => {
  // No credit yet: both refuse a request the same way.
  const poorT = await token('POST', '/api/v1/requests', terms());
  const poorS = await session('POST', '/api/org/requests', terms());
  assert.equal(poorS.status, 409);
  assert.deepEqual([poorS.status, errorOf(poorS)], [poorT.status, errorOf(poorT)]);
  assert.equal(errorOf(poorS).code, 'insufficient_tokens');
  const credit = (await session('GET', '/api/org/credit')).json;
  assert.deepEqual(credit, { organisation: { key: org.key, name: 'Page Test Institute' }, balance: 0 });

  assert.equal((await admin.post(`/api/admin/orgs/${org.key}/credit`, { amount: 100, reference: 'OP-1' })).status, 201);
  assert.equal((await session('GET', '/api/org/credit')).json.balance, 100);

  // Validation: the same code, field and message for each bad body.
  for (const bad of [{ ...terms(), purpose: 'marketing' }, { ...terms(), categories: [] }, { ...terms(), closes: '2001-01-01T00:00:00Z' },
    { ...terms(), criteria: { countries: ['XX'] } }, { ...terms(), extra: 1 }]) {
    const t = await token('POST', '/api/v1/requests', bad);
    const s = await session('POST', '/api/org/requests', bad);
    assert.equal(s.status, 422, s.text);
    assert.deepEqual([s.status, errorOf(s)], [t.status, errorOf(t)], JSON.stringify(bad));
  }
  const notJson = { raw: true, headers: { 'Content-Type': 'text/plain' } };
  const t415 = await token('POST', '/api/v1/requests', 'x', notJson);
  const s415 = await session('POST', '/api/org/requests', 'x', notJson);
  assert.deepEqual([s415.status, errorOf(s415).code], [t415.status, errorOf(t415).code]);
  assert.equal(s415.status, 415);

  // Posted by session, read by token; posted by token, read by session.
  const bySession = await session('POST', '/api/org/requests', terms({ title: 'posted on the page' }));
  assert.equal(bySession.status, 201, bySession.text);
  const byToken = await token('POST', '/api/v1/requests', terms({ title: 'posted with the token' }));
  assert.equal(byToken.status, 201, byToken.text);
  for (const id of [bySession.json.request.id, byToken.json.request.id]) {
    const t = await token('GET', `/api/v1/requests/${id}`);
    const s = await session('GET', `/api/org/requests/${id}`);
    assert.equal(s.status, 200);
    assert.deepEqual(s.json, t.json);
  }
  assert.deepEqual(bySession.json.request, (await token('GET', `/api/v1/requests/${bySession.json.request.id}`)).json.request);
  const listT = await token('GET', '/api/v1/requests');
  const listS = await session('GET', '/api/org/requests');
  assert.deepEqual(listS.json, listT.json);
  // (Newest first by the second they were posted: these two may share one.)
  assert.deepEqual(listS.json.requests.map((r) => r.title).sort(), ['posted on the page', 'posted with the token']);
  const missing = `/requests/${'0'.repeat(32)}`;
  const m1 = await token('GET', `/api/v1${missing}`);
  const m2 = await session('GET', `/api/org${missing}`);
  assert.deepEqual([m2.status, errorOf(m2)], [m1.status, errorOf(m1)]);
  assert.equal(m2.status, 404);

  // The dataset: the same bytes, hash and ledger receipt through either door.
  const id = bySession.json.request.id;
  assert.equal((await admin.post(`/api/admin/market/requests/${id}/approve`, {})).status, 200);
  const p = new Client(srv.base);
  await p.signup(`op-person-${process.pid % 1000}`);
  assert.equal((await p.put('/api/profile', { display_name: 'Hidden Name', birth_year: 1984, sex: 'male', region: 'NZ-AUK' })).status, 200);
  assert.equal((await p.post('/api/records', { kind: 'condition', title: 'hidden words', onset: '2026-03-02', code: 'fungal' })).status, 201);
  assert.equal((await p.post(`/api/market/requests/${id}/accept`, {})).status, 201);
  const csvS = await session('GET', `/api/org/requests/${id}/dataset?format=csv`);
  assert.equal(csvS.status, 200, csvS.text);
  const csvT = await token('GET', `/api/v1/requests/${id}/dataset?format=csv`);
  assert.equal(csvS.text, csvT.text);
  for (const h of ['x-dataset-sha256', 'x-ledger-txid', 'x-delivered-at', 'x-k', 'x-rows', 'x-rows-generalised', 'content-disposition']) {
    assert.equal(csvS.headers.get(h), csvT.headers.get(h), h);
  }
  assert.equal(csvS.headers.get('x-repeat'), 'false', 'the first delivery is a new release');
  assert.equal(csvT.headers.get('x-repeat'), 'true', 'the same dataset through the token is the same release');
  assert.equal(createHash('sha256').update(csvS.text).digest('hex'), csvS.headers.get('x-dataset-sha256'));
  assert.ok(!/op-person|Hidden Name|hidden words|1984|2026-03-02/.test(csvS.text), csvS.text);
  const jsonS = await session('GET', `/api/org/requests/${id}/dataset?format=json`);
  assert.equal(jsonS.json.sha256, csvS.headers.get('x-dataset-sha256'));
  assert.equal(jsonS.json.receipt.txid, csvS.headers.get('x-ledger-txid'));
  const badFormat = await session('GET', `/api/org/requests/${id}/dataset?format=xml`);
  assert.deepEqual([badFormat.status, errorOf(badFormat).field], [422, 'format']);

  // Withdrawn by session; the token sees it closed and the credit back.
  const w = await session('POST', `/api/org/requests/${id}/withdraw`, {});
  assert.equal(w.status, 200, w.text);
  assert.equal(w.json.request.state, 'closed');
  const again = await session('POST', `/api/org/requests/${id}/withdraw`, {});
  const againT = await token('POST', `/api/v1/requests/${id}/withdraw`, {});
  assert.deepEqual([again.status, errorOf(again)], [againT.status, errorOf(againT)]);
  assert.equal(again.status, 409);
  assert.equal((await token('GET', `/api/v1/requests/${id}`)).json.request.state, 'closed');
  assert.equal((await session('GET', '/api/org/credit')).json.balance, (await token('GET', '/api/v1/requests')).json.balance);
});
