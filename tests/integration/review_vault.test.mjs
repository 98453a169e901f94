// Issue 14 for clinician-confirmed contributions: the anti-abuse and the
// withdrawal of the public-health pool apply to them as to screening shares.
//
// 1. The same photo earns once, whichever way it goes first: a photo shared
//    as a screening and then sent for review is a duplicate — the request
//    says "not_counted / duplicate_photo", the answer counts nothing and pays
//    nothing; a photo sent for review first is reserved, so sharing it as a
//    screening afterwards is refused (409 duplicate_photo), and the answer
//    counts and pays it once.
// 2. The daily cap: a request made when today's earnings are at the cap says
//    so ("daily_cap", reward 0); the answer is counted without a reward.
// 3. Withdrawal: revoking the public-health consent, or deleting the account,
//    takes the confirmed count back from the open week with the screening's;
//    eight days later (libfaketime) the release lacks it, while another
//    person's confirmed case stays.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { startServer, Client, createStaff, errorOf } from './harness.mjs';

const SHARED = new URL('../../../shared', import.meta.url).pathname;
const MODEL = new URL('../../models/screening.csm', import.meta.url).pathname;
const FAKETIME = '/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1';
const skip = !existsSync(join(SHARED, 'data')) || !existsSync(MODEL)
  ? 'needs ../shared/data and models/screening.csm: cases and shares are real screenings with their photos'
  : !existsSync(FAKETIME) ? 'needs Debian faketime (scripts/deps.sh installs it) to move past the week' : false;

// Reward 10 tokens (genesis default): the cap allows two a day. A review costs 1.
const ARGS = ['--small-cell-k', '1', '--reward-batch', '1', '--share-daily-cap', '20',
  '--screenings-per-window', '1000'];
const DIR = join(SHARED, 'data', 'skin-infections-8', 'test', 'ringworm');
const photos = skip ? [] : readdirSync(DIR).filter((f) => f.endsWith('.jpg')).sort();

let srv, later, org, clin;

async function person(name, region) {
  const p = new Client(srv.base);
  await p.signup(name);
  const g = await p.post('/api/consents', { scope: ['screening'], purpose: 'public_health_surveillance' });
  assert.equal(g.status, 201, g.text);
  const prof = await p.put('/api/profile', { display_name: name, birth_year: 1980, sex: 'unspecified', region });
  assert.equal(prof.status, 200, prof.text);
  p.grant = g.json.consent.id;
  p.at = { i: 0 };
  return p;
}

async function screen(p, bytes) {
  const f = new FormData();
  f.append('photo', new Blob([bytes]), 'photo.jpg');
  const s = await p.post('/api/screenings', f, { raw: true });
  assert.equal(s.status, 201, s.text);
  return s.json.screening;
}

// The person's next photo the screening is sure about (an unsure result is
// never shared, so it could not test anything here).
async function confident(p) {
  while (p.at.i < photos.length) {
    const bytes = readFileSync(join(DIR, photos[p.at.i++]));
    const s = await screen(p, bytes);
    if (!s.unsure) return { bytes, s };
  }
  throw new Error('no confident screening among the ringworm photos');
}

const contribute = (p, id) => p.post(`/api/screenings/${id}/contribute`, {});
const balance = async (p) => (await p.get('/api/wallet')).json.wallet.balance;
async function balanceSettles(p, want) {
  let b;
  for (let i = 0; i < 50; i++) {
    b = await balance(p);
    if (b === want) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  // and stays: nothing else is on its way
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(await balance(p), want);
}

async function share(p) {
  const x = await confident(p);
  const c = await contribute(p, x.s.id);
  assert.equal(c.status, 201, c.text);
  return x;
}

async function saved(p, screening) {
  const r = await p.post(`/api/screenings/${screening.id}/save`, { with_photo: true });
  assert.equal(r.status, 201, r.text);
  return r.json.record.id;
}

async function ask(p, record) {
  const r = await p.post('/api/review/requests', { record_id: record, org, share: {} });
  assert.equal(r.status, 201, r.text);
  return r.json.request;
}

async function answer(id, condition = 'eczema') {
  const a = await clin.post(`/api/review/cases/${id}/answer`,
    { condition, urgency: 'self_care', advice: 'Moisturise twice a day.' });
  assert.equal(a.status, 200, a.text);
}

before(async () => {
  if (skip) return;
  srv = await startServer(ARGS);
  await createStaff(srv.dataDir, 'rv-admin', 'admin');
  const admin = new Client(srv.base);
  await admin.login('rv-admin');
  org = randomBytes(32).toString('hex');
  assert.equal((await admin.post('/api/admin/orgs', { name: 'Vault Skin Clinic', public_key: org })).status, 201);
  const o = await admin.put(`/api/admin/orgs/${org}/offer`,
    { price: 1, answer_hours: 24, conditions: ['fungal', 'eczema'], regions: ['*'] });
  assert.equal(o.status, 200, o.text);
  await createStaff(srv.dataDir, 'rv-clin', 'clinician');
  assert.equal((await admin.put('/api/admin/users/rv-clin/org', { org })).status, 200);
  clin = new Client(srv.base);
  await clin.login('rv-clin');
  await createStaff(srv.dataDir, 'rv-analyst', 'analyst');
});

after(async () => {
  if (later) await later.stop();
  if (srv) { await srv.stop(); srv.cleanup(); }
});

test('a photo shared and then confirmed earns once', { skip }, async () => {
  const a = await person('rv.dup', 'US-CA');
  const x = await share(a);
  await balanceSettles(a, 10);
  const req = await ask(a, await saved(a, x.s));
  assert.equal(req.contribution.status, 'not_counted', JSON.stringify(req.contribution));
  assert.equal(req.contribution.reason, 'duplicate_photo');
  assert.equal(req.contribution.reward, 0);
  assert.match(req.contribution.message, /already shared/);
  await answer(req.id);
  await balanceSettles(a, 9); // paid the review, earned nothing for the duplicate
  const got = await a.get(`/api/review/requests/${req.id}`);
  assert.equal(got.status, 200, got.text);
  assert.equal(got.json.request.state, 'answered');
  assert.equal(got.json.request.contribution.status, 'not_counted');
  // nothing of it reached the open week: a withdrawal finds the share alone
});

test('a photo confirmed first is reserved: shared afterwards it is the duplicate', { skip }, async () => {
  const b = await person('rv.first', 'US-CA');
  await share(b); // tokens for the review
  await balanceSettles(b, 10);
  const y = await confident(b);
  const req = await ask(b, await saved(b, y.s));
  assert.equal(req.contribution.status, 'pending', JSON.stringify(req.contribution));
  assert.equal(req.contribution.reason, null);
  assert.equal(req.contribution.reward, 10);
  // the same photo screened again and shared: refused, nothing earned
  const again = await screen(b, y.bytes);
  const r = await contribute(b, again.id);
  assert.equal(r.status, 409, r.text);
  assert.equal(errorOf(r).code, 'duplicate_photo');
  await answer(req.id);
  await balanceSettles(b, 19); // 10 - 1 + 10, once
  const got = await b.get(`/api/review/requests/${req.id}`);
  assert.deepEqual({ ...got.json.request.contribution, message: undefined },
    { status: 'counted', reason: null, reward: 10, message: undefined });
  // a confirmed count is withdrawable: the revocation takes back both
  const rv = await b.post(`/api/consents/${b.grant}/revoke`);
  assert.equal(rv.status, 200, rv.text);
  assert.deepEqual(rv.json.contributions, { withdrawn: 2, in_released_weeks: 0 });
  const after = await b.get(`/api/review/requests/${req.id}`);
  assert.equal(after.json.request.contribution.status, 'withdrawn');
  await balanceSettles(b, 19); // payments made stay paid
});

test('the daily cap applies to a confirmed case, and the person is told', { skip }, async () => {
  const c = await person('rv.cap', 'US-CA');
  await share(c);
  await share(c);
  await balanceSettles(c, 20); // at the cap
  const z = await confident(c);
  const req = await ask(c, await saved(c, z.s));
  assert.equal(req.contribution.status, 'pending');
  assert.equal(req.contribution.reason, 'daily_cap');
  assert.equal(req.contribution.reward, 0);
  assert.match(req.contribution.message, /cap .*\(20\) is reached/);
  await answer(req.id);
  await balanceSettles(c, 19); // paid the review; the answer earned nothing
  const got = await c.get(`/api/review/requests/${req.id}`);
  assert.equal(got.json.request.contribution.status, 'counted');
  assert.equal(got.json.request.contribution.reason, 'daily_cap');
});

test('withdrawal and account deletion remove confirmed cases from the next release', { skip }, async () => {
  // Three people in one state: one revokes, one deletes the account, one stays.
  const people = [];
  for (const name of ['rv.revokes', 'rv.leaves', 'rv.stays']) {
    const p = await person(name, 'US-NV');
    await share(p);
    await balanceSettles(p, 10);
    const x = await confident(p);
    const req = await ask(p, await saved(p, x.s));
    assert.equal(req.contribution.status, 'pending');
    await answer(req.id, 'eczema');
    await balanceSettles(p, 19);
    p.caseId = req.id;
    people.push(p);
  }
  const [revokes, leaves] = people;
  const rv = await revokes.post(`/api/consents/${revokes.grant}/revoke`);
  assert.equal(rv.status, 200, rv.text);
  assert.deepEqual(rv.json.contributions, { withdrawn: 2, in_released_weeks: 0 });
  const d = await leaves.del('/api/account', { password: 'correct horse battery' });
  assert.equal(d.status, 200, d.text);
  // the week of today's answers
  const cs = await people[2].get(`/api/review/requests/${people[2].caseId}`);
  assert.equal(cs.json.request.contribution.status, 'counted');
  await srv.stop();
  later = await startServer(ARGS, { dataDir: srv.dataDir, env: {
    LD_PRELOAD: FAKETIME, FAKETIME: '+8d', DONT_FAKE_MONOTONIC: '1' } });
  const a = new Client(later.base);
  await a.login('rv-analyst');
  const period = 'country=US'; // the twelve weeks to the latest sealed one
  const conf = await a.get(`/api/surveil/aggregates?${period}&source=clinician_confirmed`);
  assert.equal(conf.status, 200, conf.text);
  const nv = conf.json.regions.indexOf('US-NV');
  const eczema = conf.json.conditions.indexOf('eczema');
  const total = conf.json.weeks.reduce((n, w) => n + w.cells[nv][eczema], 0);
  assert.equal(total, 1, 'only the person who stayed is counted as clinician-confirmed in US-NV');
  const model = await a.get(`/api/surveil/aggregates?${period}&source=model`);
  assert.equal(model.status, 200, model.text);
  const shares = model.json.weeks.reduce((n, w) => n + w.region_totals[model.json.regions.indexOf('US-NV')], 0);
  assert.equal(shares, 1, "the leaving people's screenings went too");
});
