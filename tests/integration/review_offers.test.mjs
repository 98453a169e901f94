// Clinician review, first slice (issue 13): an organisation registered on the
// ledger offers review; a person lists what they can choose from; a clinician
// belongs to an organisation (CLI --org and the admin API) and its session
// says which; bad input gets the documented error codes.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { startServer, Client, createStaff, errorOf, BIN } from './harness.mjs';

const PW = 'correct horse battery';
let srv, admin, person, orgA, orgB;

function expectError(r, status, code, field) {
  assert.equal(r.status, status, r.text);
  const e = errorOf(r);
  assert.equal(e.code, code, r.text);
  if (field !== undefined) assert.equal(e.field, field, r.text);
}

// `caresync admin create-user` with extra arguments; resolves {code, out, err}.
async function createUser(args) {
  const p = spawn(BIN, ['admin', 'create-user', '--data-dir', srv.dataDir, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '', err = '';
  p.stdout.on('data', (d) => { out += d; });
  p.stderr.on('data', (d) => { err += d; });
  p.stdin.end(PW + '\n');
  const code = await new Promise((r) => p.on('exit', r));
  return { code, out, err };
}

before(async () => {
  srv = await startServer();
  await createStaff(srv.dataDir, 'rv-admin', 'admin', PW);
  admin = new Client(srv.base);
  await admin.login('rv-admin', PW);
  person = new Client(srv.base);
  await person.signup('rv-person', PW);
  orgA = randomBytes(32).toString('hex');
  orgB = randomBytes(32).toString('hex');
  for (const [key, name] of [[orgA, 'Auckland Skin Clinic'], [orgB, 'Global Teledermatology']]) {
    const r = await admin.post('/api/admin/orgs', { name, public_key: key });
    assert.equal(r.status, 201, r.text);
  }
});

after(async () => {
  if (srv) { await srv.stop(); srv.cleanup(); }
});

test('an admin sets offers; a person lists them, filtered by condition and country', async () => {
  const a = await admin.put(`/api/admin/orgs/${orgA}/offer`,
    { price: 40, answer_hours: 48, conditions: ['fungal', 'eczema'], regions: ['nz', 'AU'] });
  assert.equal(a.status, 200, a.text);
  assert.deepEqual(a.json.offer.organisation, { key: orgA, name: 'Auckland Skin Clinic' });
  assert.deepEqual(a.json.offer.regions, ['AU', 'NZ']);
  const b = await admin.put(`/api/admin/orgs/${orgB}/offer`,
    { price: 15, answer_hours: 72, conditions: ['fungal', 'melanoma'], regions: ['*'] });
  assert.equal(b.status, 200, b.text);

  const names = async (q) => {
    const r = await person.get(`/api/review/offers${q}`);
    assert.equal(r.status, 200, r.text);
    return r.json.offers.map((o) => o.organisation.name);
  };
  assert.deepEqual(await names(''), ['Global Teledermatology', 'Auckland Skin Clinic']); // cheapest first
  assert.deepEqual(await names('?condition=eczema'), ['Auckland Skin Clinic']);
  assert.deepEqual(await names('?condition=fungal&country=GB'), ['Global Teledermatology']);
  assert.deepEqual(await names('?condition=eczema&country=GB'), []);
  assert.deepEqual(await names('?country=nz'), ['Global Teledermatology', 'Auckland Skin Clinic']);
  const full = (await person.get('/api/review/offers?condition=eczema')).json.offers[0];
  assert.equal(full.price, 40);
  assert.equal(full.answer_hours, 48);
  assert.deepEqual(full.conditions, ['eczema', 'fungal']);
  assert.match(full.updated_at, /^\d{4}-\d{2}-\d{2}T/);

  // Replace is whole; withdraw removes it; a second withdraw is 404.
  const r = await admin.put(`/api/admin/orgs/${orgA}/offer`, { price: 30, answer_hours: 24, conditions: ['acne_rosacea'], regions: ['GB'] });
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(await names('?condition=eczema'), []);
  assert.deepEqual(await names('?condition=acne_rosacea&country=GB'), ['Auckland Skin Clinic']);
  assert.equal((await admin.del(`/api/admin/orgs/${orgA}/offer`)).status, 200);
  assert.deepEqual(await names(''), ['Global Teledermatology']);
  expectError(await admin.del(`/api/admin/orgs/${orgA}/offer`), 404, 'not_found');
});

test('bad offers and filters get the documented codes and change nothing', async () => {
  const before = (await person.get('/api/review/offers')).json;
  const good = { price: 10, answer_hours: 24, conditions: ['fungal'], regions: ['NZ'] };
  const cases = [
    [{ ...good, price: 0 }, 'price'], [{ ...good, price: 1000001 }, 'price'], [{ ...good, price: '10' }, 'price'],
    [{ ...good, price: 1.5 }, 'price'], [{ ...good, answer_hours: 0 }, 'answer_hours'],
    [{ ...good, answer_hours: 721 }, 'answer_hours'], [{ ...good, conditions: [] }, 'conditions'],
    [{ ...good, conditions: ['not_a_condition'] }, 'conditions'], [{ ...good, conditions: 'fungal' }, 'conditions'],
    [{ ...good, conditions: ['fungal', 'fungal'] }, 'conditions'], [{ ...good, regions: ['XX'] }, 'regions'],
    [{ ...good, regions: ['NZL'] }, 'regions'], [{ ...good, regions: ['*', 'NZ'] }, 'regions'],
    [{ ...good, regions: [] }, 'regions'],
  ];
  for (const [body, field] of cases) {
    expectError(await admin.put(`/api/admin/orgs/${orgB}/offer`, body), 422, 'validation_failed', field);
  }
  // Not registered on the ledger, or not a key at all: 404.
  expectError(await admin.put(`/api/admin/orgs/${randomBytes(32).toString('hex')}/offer`, good), 404, 'not_found');
  expectError(await admin.put('/api/admin/orgs/not-a-key/offer', good), 404, 'not_found');
  expectError(await admin.del(`/api/admin/orgs/${'ab'.repeat(32)}/offer`), 404, 'not_found');
  // Not JSON: 415; not an admin: 403.
  expectError(await admin.put(`/api/admin/orgs/${orgB}/offer`, 'x', { raw: true, headers: { 'Content-Type': 'text/plain' } }),
    415, 'unsupported_media_type');
  expectError(await person.put(`/api/admin/orgs/${orgB}/offer`, good), 403, 'forbidden');
  expectError(await person.get('/api/review/offers?condition=nope'), 422, 'validation_failed', 'condition');
  expectError(await person.get('/api/review/offers?country=XX'), 422, 'validation_failed', 'country');
  expectError(await new Client(srv.base).get('/api/review/offers'), 401, 'unauthenticated');
  assert.deepEqual((await person.get('/api/review/offers')).json, before);
});

test('a clinician created with --org has that organisation in its session', async () => {
  const ok = await createUser(['--username', 'rv-doc', '--role', 'clinician', '--org', orgA]);
  assert.equal(ok.code, 0, ok.err);
  assert.match(ok.out, /Auckland Skin Clinic/);
  const doc = new Client(srv.base);
  const login = await doc.login('rv-doc', PW);
  assert.deepEqual(login.json.user.organisation, { key: orgA });
  const s = await doc.get('/api/session');
  assert.deepEqual(s.json.user, { username: 'rv-doc', role: 'clinician', organisation: { key: orgA } });

  // Refusals: an unregistered org, a malformed key, --org on another role.
  const unknown = await createUser(['--username', 'rv-doc2', '--role', 'clinician', '--org', randomBytes(32).toString('hex')]);
  assert.equal(unknown.code, 1);
  assert.match(unknown.err, /no such organisation/);
  assert.equal((await createUser(['--username', 'rv-doc3', '--role', 'clinician', '--org', 'abc'])).code, 2);
  assert.equal((await createUser(['--username', 'rv-adm', '--role', 'admin', '--org', orgA])).code, 2);
  assert.equal((await createUser(['--username', 'rv-pat', '--role', 'person', '--org', orgA])).code, 2);
  const users = (await admin.get('/api/admin/users')).json.users.map((u) => u.username);
  assert.ok(!users.includes('rv-doc2') && !users.includes('rv-doc3') && !users.includes('rv-adm') && !users.includes('rv-pat'),
    'nothing was created');
  // Analysts belong to an organisation too (issue 14: its data-requests page).
  assert.equal((await createUser(['--username', 'rv-an', '--role', 'analyst', '--org', orgA])).code, 0);
  const an = new Client(srv.base);
  assert.deepEqual((await an.login('rv-an', PW)).json.user, { username: 'rv-an', role: 'analyst', organisation: { key: orgA } });

  // The admin API moves the clinician; its live session sees it next request.
  const moved = await admin.put('/api/admin/users/rv-doc/org', { org: orgB });
  assert.equal(moved.status, 200, moved.text);
  assert.deepEqual(moved.json.organisation, { key: orgB, name: 'Global Teledermatology' });
  assert.deepEqual((await doc.get('/api/session')).json.user.organisation, { key: orgB });
  const cleared = await admin.put('/api/admin/users/rv-doc/org', { org: null });
  assert.equal(cleared.status, 200, cleared.text);
  assert.equal(cleared.json.organisation, null);
  assert.equal((await doc.get('/api/session')).json.user.organisation, undefined);

  // A person's session has no organisation; the API refuses what it must.
  assert.equal((await person.get('/api/session')).json.user.organisation, undefined);
  expectError(await admin.put('/api/admin/users/rv-person/org', { org: orgA }), 422, 'validation_failed', 'role');
  expectError(await admin.put('/api/admin/users/nobody-here/org', { org: orgA }), 404, 'not_found');
  expectError(await admin.put('/api/admin/users/rv-doc/org', { org: randomBytes(32).toString('hex') }), 422,
    'validation_failed', 'org');
  expectError(await admin.put('/api/admin/users/rv-doc/org', { org: 'zz' }), 422, 'validation_failed', 'org');
  expectError(await admin.put('/api/admin/users/rv-doc/org', {}), 422, 'validation_failed', 'org');
  expectError(await doc.put('/api/admin/users/rv-doc/org', { org: orgA }), 403, 'forbidden');
  assert.equal((await doc.get('/api/session')).json.user.organisation, undefined);
});
