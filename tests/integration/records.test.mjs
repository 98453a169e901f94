// A person's private health record end to end: entries CRUD, export,
// profile with a region from /api/regions, and the account life cycle that
// re-wraps the data key (password change, recovery-code reset) or destroys
// it (account deletion).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, Client, createStaff, errorOf } from './harness.mjs';

const PW = 'correct horse battery';
const PW2 = 'a different passphrase';
const PW3 = 'yet another passphrase';
const ID = /^[0-9a-f]{32}$/;
const RFC3339_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;
const RECORD_KEYS = ['created_at', 'details', 'ended', 'id', 'kind', 'onset', 'title', 'updated_at'];
const THIS_YEAR = new Date().getUTCFullYear();
const TODAY = new Date().toISOString().slice(0, 10);

let srv, admin;

before(async () => {
  srv = await startServer();
  await createStaff(srv.dataDir, 'records.admin', 'admin', PW);
  admin = new Client(srv.base);
  await admin.login('records.admin', PW);
});

after(async () => {
  if (srv) { await srv.stop(); srv.cleanup(); }
});

function assertRecord(rec, expected, what) {
  assert.deepEqual(Object.keys(rec).sort(), RECORD_KEYS, `${what}: record keys`);
  assert.match(rec.id, ID, what);
  assert.match(rec.created_at, RFC3339_UTC, what);
  assert.match(rec.updated_at, RFC3339_UTC, what);
  assert.ok(rec.updated_at >= rec.created_at, `${what}: updated_at before created_at`);
  for (const k of ['kind', 'title', 'details', 'onset', 'ended']) {
    assert.deepEqual(rec[k], k in expected ? expected[k] : null, `${what}: ${k}`);
  }
}

async function expectError(res, status, code, what) {
  assert.equal(res.status, status, `${what}: ${res.text}`);
  assert.equal(errorOf(res).code, code, what);
}

async function readAll(c) {
  const records = await c.get('/api/records');
  const profile = await c.get('/api/profile');
  assert.equal(records.status, 200, records.text);
  assert.equal(profile.status, 200, profile.text);
  return { records: records.json.records, profile: profile.json.profile };
}

test('entries: create, list newest first, read, update, delete', async () => {
  const rita = new Client(srv.base);
  await rita.signup('rita', PW);
  assert.deepEqual((await rita.get('/api/records')).json, { records: [] });

  const inputs = [
    { kind: 'condition', title: 'Type 2 diabetes', details: 'Diagnosed by GP.\nHbA1c 52.', onset: '2019-03-14' },
    { kind: 'symptom', title: 'Headache', onset: TODAY },
    { kind: 'medication', title: 'Metformin 500 mg', details: 'twice daily', onset: '2019-03-20', ended: '2019-03-20' },
    { kind: 'allergy', title: 'Penicillin', details: 'rash' },
    { kind: 'note', title: 'Leap day visit', onset: '2024-02-29', ended: '2024-03-01' },
    { kind: 'note', title: 'T'.repeat(200), details: `tabs\tand\r\nnewlines ${'d'.repeat(9970)}` },
    { kind: 'note', title: 'é'.repeat(200) },
    { kind: 'note', title: 'Unicode: 🩺 Māori ä 中文' },
  ];
  const created = [];
  for (const body of inputs) {
    const r = await rita.post('/api/records', body);
    assert.equal(r.status, 201, `${body.title.slice(0, 20)}: ${r.text.slice(0, 200)}`);
    assertRecord(r.json.record, body, `create ${body.kind}`);
    assert.equal(r.json.record.created_at, r.json.record.updated_at);
    created.push(r.json.record);
  }
  assert.equal(new Set(created.map((r) => r.id)).size, created.length, 'ids are unique');

  // Fields the client must not control are ignored.
  const sneaky = await rita.post('/api/records', {
    kind: 'note', title: 'sneaky', id: '0'.repeat(32), created_at: '2000-01-01T00:00:00Z', user_id: 1, owner: 'mallory',
  });
  assert.equal(sneaky.status, 201, sneaky.text);
  assertRecord(sneaky.json.record, { kind: 'note', title: 'sneaky' }, 'extra fields');
  assert.notEqual(sneaky.json.record.id, '0'.repeat(32));
  assert.notEqual(sneaky.json.record.created_at, '2000-01-01T00:00:00Z');
  created.push(sneaky.json.record);

  const list = (await rita.get('/api/records')).json.records;
  assert.deepEqual(list.map((r) => r.id), created.map((r) => r.id).reverse(), 'newest first');
  for (const rec of created) {
    const g = await rita.get(`/api/records/${rec.id}`);
    assert.equal(g.status, 200);
    assert.deepEqual(g.json.record, rec, 'GET returns what POST returned');
  }

  // Update: same body rules as POST; a full replacement (omitted fields become null).
  const target = created[0];
  await new Promise((r) => setTimeout(r, 1100)); // so updated_at moves on (second resolution)
  const u = await rita.put(`/api/records/${target.id}`, { kind: 'condition', title: 'Type 2 diabetes (controlled)', onset: '2019-03-14' });
  assert.equal(u.status, 200, u.text);
  assertRecord(u.json.record, { kind: 'condition', title: 'Type 2 diabetes (controlled)', onset: '2019-03-14' }, 'update');
  assert.equal(u.json.record.id, target.id);
  assert.equal(u.json.record.created_at, target.created_at, 'created_at is kept');
  assert.ok(u.json.record.updated_at > target.updated_at, 'updated_at moves forward');
  assert.deepEqual((await rita.get(`/api/records/${target.id}`)).json.record, u.json.record);
  const u2 = await rita.put(`/api/records/${target.id}`, { kind: 'symptom', title: 'now a symptom', onset: '2020-01-01', ended: TODAY });
  assert.equal(u2.status, 200, u2.text);
  assertRecord(u2.json.record, { kind: 'symptom', title: 'now a symptom', onset: '2020-01-01', ended: TODAY }, 'kind change');
  const after = (await rita.get('/api/records')).json.records;
  assert.equal(after.length, created.length, 'update does not add a record');
  assert.equal(after.find((r) => r.id === target.id).title, 'now a symptom');

  // Delete.
  const victim = created[3];
  const d = await rita.del(`/api/records/${victim.id}`);
  assert.equal(d.status, 200, d.text);
  assert.deepEqual(d.json, { deleted: true });
  await expectError(await rita.get(`/api/records/${victim.id}`), 404, 'not_found', 'GET after delete');
  await expectError(await rita.del(`/api/records/${victim.id}`), 404, 'not_found', 'DELETE twice');
  await expectError(await rita.put(`/api/records/${victim.id}`, { kind: 'note', title: 'resurrect' }), 404, 'not_found', 'PUT after delete');
  const final = (await rita.get('/api/records')).json.records;
  assert.equal(final.length, created.length - 1);
  assert.ok(!final.some((r) => r.id === victim.id));
});

test('profile: empty until set, region from /api/regions, export includes it', async () => {
  const pia = new Client(srv.base);
  await pia.signup('pia', PW);
  const empty = await pia.get('/api/profile');
  assert.equal(empty.status, 200);
  assert.deepEqual(empty.json, { profile: { display_name: null, birth_year: null, sex: null, region: null } });

  const countries = await pia.get('/api/regions');
  assert.equal(countries.status, 200);
  assert.ok(countries.json.countries.some((c) => c.code === 'NZ' && /New Zealand/.test(c.name)));
  const nz = await pia.get('/api/regions?country=NZ');
  assert.equal(nz.status, 200);
  assert.equal(nz.json.country, 'NZ');
  assert.ok(nz.json.subdivisions.length > 5);
  for (const s of nz.json.subdivisions) {
    assert.match(s.code, /^NZ-[A-Z0-9]{1,3}$/);
    assert.equal(typeof s.name, 'string');
    assert.equal(typeof s.type, 'string');
  }
  const region = (nz.json.subdivisions.find((s) => s.code === 'NZ-CAN') || nz.json.subdivisions[0]).code;

  const profile = { display_name: 'Pia Tūhoe 🌿', birth_year: 1990, sex: 'intersex', region };
  const put = await pia.put('/api/profile', profile);
  assert.equal(put.status, 200, put.text);
  assert.deepEqual(put.json, { profile });
  assert.deepEqual((await pia.get('/api/profile')).json, { profile });

  // Every documented value and boundary is accepted.
  for (const sex of ['female', 'male', 'intersex', 'unspecified']) {
    const r = await pia.put('/api/profile', { ...profile, sex });
    assert.equal(r.status, 200, `${sex}: ${r.text}`);
  }
  for (const birth_year of [1900, THIS_YEAR]) {
    const r = await pia.put('/api/profile', { ...profile, birth_year });
    assert.equal(r.status, 200, `${birth_year}: ${r.text}`);
  }
  const de = (await pia.get('/api/regions?country=DE')).json.subdivisions[0].code;
  const r = await pia.put('/api/profile', { ...profile, region: de, display_name: 'x'.repeat(100) });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.profile.region, de);

  // Everything may be null again.
  const cleared = { display_name: null, birth_year: null, sex: null, region: null };
  assert.deepEqual((await pia.put('/api/profile', cleared)).json, { profile: cleared });
  assert.deepEqual((await pia.get('/api/profile')).json, { profile: cleared });

  // Export: the whole record as an attachment.
  assert.equal((await pia.put('/api/profile', profile)).status, 200);
  const rec = await pia.post('/api/records', { kind: 'allergy', title: 'Peanuts', details: 'anaphylaxis' });
  assert.equal(rec.status, 201);
  const exp = await pia.get('/api/export');
  assert.equal(exp.status, 200, exp.text);
  assert.match(exp.headers.get('content-disposition') || '', /^attachment/);
  assert.match(exp.headers.get('content-type') || '', /^application\/json/);
  assert.equal(exp.headers.get('cache-control'), 'no-store');
  assert.equal(exp.json.format, 'caresync-export-1');
  assert.match(exp.json.exported_at, RFC3339_UTC);
  assert.deepEqual(exp.json.user, { username: 'pia', role: 'person' });
  assert.deepEqual(exp.json.profile, profile);
  assert.deepEqual(exp.json.records, (await pia.get('/api/records')).json.records);
  assert.deepEqual(exp.json.records.map((x) => x.title), ['Peanuts']);
});

test('log-out ends only that session; user names are lower-cased', async () => {
  const a = new Client(srv.base);
  const s = await a.signup('Lou.Out', PW);
  assert.deepEqual(s.json.user, { username: 'lou.out', role: 'person' });
  const b = new Client(srv.base);
  const l = await b.login('LOU.OUT', PW);
  assert.equal(l.json.user.username, 'lou.out');
  assert.notEqual(a.csrf, b.csrf, 'each session has its own CSRF token');
  const out = await a.post('/api/auth/logout');
  assert.deepEqual(out.json, { ok: true });
  await expectError(await a.get('/api/session'), 401, 'unauthenticated', 'logged-out session');
  assert.equal((await b.get('/api/session')).status, 200, 'the other session lives on');
});

test('change password: old stops working, new works, other sessions end, records stay readable', async () => {
  const a = new Client(srv.base);
  await a.signup('pat', PW);
  const b = new Client(srv.base);
  await b.login('pat', PW);
  for (const title of ['Asthma', 'Eczema']) assert.equal((await a.post('/api/records', { kind: 'condition', title })).status, 201);
  assert.equal((await a.put('/api/profile', { display_name: 'Pat', birth_year: 1975, sex: 'male', region: 'NZ-AUK' })).status, 200);
  const before = await readAll(a);

  const r = await a.post('/api/account/password', { current_password: PW, new_password: PW2 });
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(r.json, { ok: true });

  // The session that changed it carries on; the other one is over.
  assert.equal((await a.get('/api/session')).status, 200);
  assert.deepEqual(await readAll(a), before);
  await expectError(await b.get('/api/session'), 401, 'unauthenticated', 'other session after password change');
  await expectError(await b.get('/api/records'), 401, 'unauthenticated', 'other session reading records');

  await expectError(await new Client(srv.base).post('/api/auth/login', { username: 'pat', password: PW }), 401, 'invalid_credentials', 'old password');
  const c = new Client(srv.base);
  await c.login('pat', PW2);
  // A fresh log-in unwraps the data key with the new password: the sealed rows still open.
  assert.deepEqual(await readAll(c), before);
  assert.equal((await c.post('/api/records', { kind: 'note', title: 'after change' })).status, 201);
  assert.equal((await a.get('/api/records')).json.records.length, 3);
});

test('reset with the recovery code: new code, old code spent, records stay readable', async () => {
  const q = new Client(srv.base);
  const s = await q.signup('quinn', PW);
  const code1 = s.json.recovery_code;
  assert.match(code1, /^[0-9A-Z]{4}(-[0-9A-Z]{4})+$/);
  for (const title of ['Migraine', 'Hay fever']) assert.equal((await q.post('/api/records', { kind: 'condition', title })).status, 201);
  assert.equal((await q.put('/api/profile', { display_name: 'Quinn', birth_year: 2001, sex: 'unspecified', region: null })).status, 200);
  const before = await readAll(q);

  const anon = () => new Client(srv.base);
  const r = await anon().post('/api/auth/reset', { username: 'quinn', recovery_code: code1, new_password: PW2 });
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(Object.keys(r.json), ['recovery_code']);
  const code2 = r.json.recovery_code;
  assert.match(code2, /^[0-9A-Z]{4}(-[0-9A-Z]{4})+$/);
  assert.notEqual(code2, code1);
  assert.equal(r.headers.get('set-cookie'), null, 'reset does not log in by itself');

  await expectError(await anon().post('/api/auth/reset', { username: 'quinn', recovery_code: code1, new_password: PW3 }), 401, 'invalid_credentials', 'spent recovery code');
  await expectError(await anon().post('/api/auth/login', { username: 'quinn', password: PW }), 401, 'invalid_credentials', 'old password after reset');
  const c = new Client(srv.base);
  await c.login('quinn', PW2); // also clears the two failures above
  assert.deepEqual(await readAll(c), before, 'records and profile open with the re-wrapped key');

  // The new code is real: it resets again, and is then spent too.
  const r2 = await anon().post('/api/auth/reset', { username: 'quinn', recovery_code: code2, new_password: PW3 });
  assert.equal(r2.status, 200, r2.text);
  assert.notEqual(r2.json.recovery_code, code2);
  await expectError(await anon().post('/api/auth/reset', { username: 'quinn', recovery_code: code2, new_password: PW }), 401, 'invalid_credentials', 'second code spent');
  const d = new Client(srv.base);
  await d.login('quinn', PW3);
  assert.deepEqual(await readAll(d), before);
});

test('delete account: sessions end, log-in fails, the name can be reused and sees nothing old', async () => {
  const a = new Client(srv.base);
  const s = await a.signup('sam', PW);
  const code = s.json.recovery_code;
  const b = new Client(srv.base);
  await b.login('sam', PW);
  const ids = [];
  for (const title of ['Private condition', 'Private note']) {
    const r = await a.post('/api/records', { kind: 'note', title });
    assert.equal(r.status, 201);
    ids.push(r.json.record.id);
  }
  assert.equal((await a.put('/api/profile', { display_name: 'Sam Old', birth_year: 1960, sex: 'female', region: 'NZ-OTA' })).status, 200);

  const del = await a.del('/api/account', { password: PW });
  assert.equal(del.status, 200, del.text);
  assert.deepEqual(del.json, { deleted: true });
  assert.match(del.headers.get('set-cookie') || '', /cs_session=;.*Max-Age=0/);
  await expectError(await a.get('/api/session'), 401, 'unauthenticated', 'deleting session');
  await expectError(await b.get('/api/records'), 401, 'unauthenticated', 'other session of the deleted account');
  await expectError(await new Client(srv.base).post('/api/auth/login', { username: 'sam', password: PW }), 401, 'invalid_credentials', 'log-in after delete');
  await expectError(await new Client(srv.base).post('/api/auth/reset', { username: 'sam', recovery_code: code, new_password: PW2 }), 401, 'invalid_credentials', 'reset after delete');
  let users = (await admin.get('/api/admin/users')).json.users;
  assert.ok(!users.some((u) => u.username === 'sam'), 'account is gone from the admin list');

  const again = new Client(srv.base);
  const s2 = await again.signup('sam', PW);
  assert.equal(s2.status, 201);
  assert.notEqual(s2.json.recovery_code, code);
  assert.deepEqual(await readAll(again), {
    records: [], profile: { display_name: null, birth_year: null, sex: null, region: null },
  });
  for (const id of ids) await expectError(await again.get(`/api/records/${id}`), 404, 'not_found', 'old record id');
  const exp = await again.get('/api/export');
  assert.deepEqual(exp.json.records, []);
  users = (await admin.get('/api/admin/users')).json.users;
  assert.equal(users.filter((u) => u.username === 'sam').length, 1);
  // The old recovery code does not open the new account either.
  await expectError(await new Client(srv.base).post('/api/auth/reset', { username: 'sam', recovery_code: code, new_password: PW2 }), 401, 'invalid_credentials', 'old code on new account');
});

// GET /api/records is served from a per-session memo of the rendered list
// (sealed under a key from the session token). Every write must be visible to
// the very next read, from any session of the person, and a session that
// ended must not be served.
test('records list: each write is seen by the next read of every session; log-out ends it', async () => {
  const a = new Client(srv.base);
  await a.signup('memo.mia', PW);
  const b = new Client(srv.base);
  await b.login('memo.mia', PW);
  const titles = async (c) => {
    const r = await c.get('/api/records');
    assert.equal(r.status, 200, r.text);
    return r.json.records.map((x) => x.title);
  };
  const created = await a.post('/api/records', { kind: 'note', title: 'first' });
  assert.equal(created.status, 201, created.text);
  const id = created.json.record.id;
  // Read twice from each session so both have a memo before every write.
  for (const c of [a, b, a, b]) assert.deepEqual(await titles(c), ['first']);

  const u = await a.put(`/api/records/${id}`, { kind: 'note', title: 'first, edited' });
  assert.equal(u.status, 200, u.text);
  assert.deepEqual(await titles(a), ['first, edited'], 'update seen by the writer');
  assert.deepEqual(await titles(b), ['first, edited'], 'update seen by the other session');

  assert.equal((await b.post('/api/records', { kind: 'note', title: 'second' })).status, 201);
  assert.deepEqual(await titles(b), ['second', 'first, edited']);
  assert.deepEqual(await titles(a), ['second', 'first, edited']);

  assert.equal((await a.del(`/api/records/${id}`)).status, 200);
  assert.deepEqual(await titles(a), ['second']);
  assert.deepEqual(await titles(b), ['second']);

  // Repeated reads return the same body; a profile write leaves the list intact.
  const r1 = await a.get('/api/records');
  assert.equal((await a.put('/api/profile', { display_name: 'Mia', birth_year: 1990, sex: 'female', region: null })).status, 200);
  const r2 = await a.get('/api/records');
  assert.equal(r2.text, r1.text);

  // Log-out: that cookie is refused even though its list was just served.
  const aCookie = a.cookie;
  assert.equal((await a.post('/api/auth/logout')).status, 200);
  const stale = new Client(srv.base);
  stale.cookie = aCookie;
  await expectError(await stale.get('/api/records'), 401, 'unauthenticated', 'no cookie after log-out');
  assert.equal(a.cookie, null, 'log-out cleared the cookie');
  assert.deepEqual(await titles(b), ['second'], 'the other session still reads');

  // Password change from b: the logged-out cookie of a stays refused; b reads fresh data.
  const c = new Client(srv.base);
  await c.login('memo.mia', PW);
  assert.deepEqual(await titles(c), ['second']);
  assert.equal((await b.post('/api/account/password', { current_password: PW, new_password: PW2 })).status, 200);
  await expectError(await c.get('/api/records'), 401, 'unauthenticated', 'other session after password change');
  assert.deepEqual(await titles(b), ['second']);
});
