// What a clinician's answer feeds (issue 13). A person with a public-health
// consent asks for review; the clinician's coded answer is contributed to the
// surveillance pool as source clinician_confirmed (region from the person's
// profile, week of the answer, reward queued). With a separate
// model_training consent the photo and the label are kept as a labelled
// example under the data directory, and revoking that consent deletes them.
// A person without the consents feeds nothing. Eight days later (libfaketime)
// the week is sealed: the release filtered by source clinician_confirmed
// shows the confirmed condition, the model source does not, the breakdown
// holds every source beside the plain totals, CSV names the source.
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
  ? 'needs ../shared/data and models/screening.csm: a case is a real saved screening with its photo'
  : !existsSync(FAKETIME) ? 'needs Debian faketime (scripts/deps.sh installs it) to move past the week' : false;
// k = 1 so one confirmed case is shown; every reward minted at once so one
// contribution pays for one review.
const ARGS = ['--reward-batch', '1', '--small-cell-k', '1'];

let srv, later, admin, clin, org, p, q, week, pCase, qCase;

function photo(i = 0) {
  const dir = join(SHARED, 'data', 'skin-infections-8', 'test', 'ringworm');
  return readFileSync(join(dir, readdirSync(dir).filter((f) => f.endsWith('.jpg')).sort()[i]));
}

function expectError(r, status, code, field) {
  assert.equal(r.status, status, r.text);
  const e = errorOf(r);
  assert.equal(e.code, code, r.text);
  if (field) assert.equal(e.field, field, r.text);
}

// A person who shared one screening (10 tokens) and saved it with its photo;
// consents as asked, the public-health one revoked again when keep is false.
async function person(name, { training, keepPublicHealth }, base = srv.base) {
  const c = new Client(base);
  await c.signup(name);
  const prof = await c.put('/api/profile', { display_name: 'X', birth_year: 1985, sex: 'unspecified', region: 'US-CA' });
  assert.equal(prof.status, 200, prof.text);
  const g = await c.post('/api/consents', { scope: ['screening'], purpose: 'public_health_surveillance' });
  assert.equal(g.status, 201, g.text);
  if (training) {
    const t = await c.post('/api/consents', { scope: ['screening'], purpose: 'model_training' });
    assert.equal(t.status, 201, t.text);
    assert.equal(t.json.consent.purpose, 'model_training');
  }
  const screen = async (img) => {
    const f = new FormData();
    f.append('photo', new Blob([img]), 'photo.jpg');
    const s = await c.post('/api/screenings', f, { raw: true });
    assert.equal(s.status, 201, s.text);
    return s.json.screening.id;
  };
  // The shared screening is another photo than the case's: a photo
  // contributed twice earns once and is counted once (issue 14).
  let k;
  for (let i = 1; i < 30 && k?.status !== 201; i++) {
    k = await c.post(`/api/screenings/${await screen(photo(i))}/contribute`, {});
    assert.ok(k.status === 201 || k.status === 422, k.text); // 422: unsure, the next photo
  }
  assert.equal(k.status, 201, k.text);
  week = k.json.contribution.week;
  const saved = await c.post(`/api/screenings/${await screen(photo())}/save`, { with_photo: true });
  assert.equal(saved.status, 201, saved.text);
  for (let i = 0; i < 50 && (await c.get('/api/wallet')).json.wallet.balance < 10; i++)
    await new Promise((r) => setTimeout(r, 100));
  if (!keepPublicHealth) {
    const r = await c.post(`/api/consents/${g.json.consent.id}/revoke`, {});
    assert.equal(r.status, 200, r.text);
    // its screening leaves the open week (issue 14: withdrawal from later releases)
    assert.deepEqual(r.json.contributions, { withdrawn: 1, in_released_weeks: 0 });
  }
  return { c, record: saved.json.record.id };
}

const examples = (dataDir) => {
  const dir = join(dataDir, 'examples');
  if (!existsSync(dir)) return [];
  return readdirSync(dir).flatMap((h) => readdirSync(join(dir, h)).map((f) => `${h}/${f}`));
};

before(async () => {
  if (skip) return;
  srv = await startServer(ARGS);
  await createStaff(srv.dataDir, 'rf-admin', 'admin');
  admin = new Client(srv.base);
  await admin.login('rf-admin');
  org = randomBytes(32).toString('hex');
  assert.equal((await admin.post('/api/admin/orgs', { name: 'Feeds Skin Clinic', public_key: org })).status, 201);
  const o = await admin.put(`/api/admin/orgs/${org}/offer`,
    { price: 10, answer_hours: 24, conditions: ['fungal', 'eczema'], regions: ['*'] });
  assert.equal(o.status, 200, o.text);
  await createStaff(srv.dataDir, 'rf-clin', 'clinician');
  assert.equal((await admin.put('/api/admin/users/rf-clin/org', { org })).status, 200);
  clin = new Client(srv.base);
  await clin.login('rf-clin');
  await createStaff(srv.dataDir, 'rf-analyst', 'analyst');
  p = await person('rf-consenting', { training: true, keepPublicHealth: true });
  q = await person('rf-withdrawn', { training: false, keepPublicHealth: false });
});

after(async () => {
  if (later) await later.stop();
  if (srv) { await srv.stop(); srv.cleanup(); }
});

test('an answer feeds the pool and the examples only under the consents', { skip }, async () => {
  for (const who of [p, q]) {
    const r = await who.c.post('/api/review/requests', { record_id: who.record, org, share: { body_site: 'arm' } });
    assert.equal(r.status, 201, r.text);
    who.case = r.json.request.id;
    // the case copy gains no place
    assert.ok(!JSON.stringify(r.json.request.case).includes('US-CA'));
  }
  pCase = p.case;
  qCase = q.case;
  assert.deepEqual(examples(srv.dataDir), []);
  for (const id of [pCase, qCase]) {
    const a = await clin.post(`/api/review/cases/${id}/answer`,
      { condition: 'eczema', urgency: 'pharmacist_or_gp', advice: 'Moisturise; see a GP if it spreads.' });
    assert.equal(a.status, 200, a.text);
  }
  // One labelled example: the consenting person's, named by condition and week only.
  const kept = examples(srv.dataDir);
  assert.equal(kept.length, 1, JSON.stringify(kept));
  assert.match(kept[0], new RegExp(`^[0-9a-f]{64}/[0-9a-f]{32}\\.eczema\\.${week}\\.jpg$`));
  // The week is open: nothing shows yet (only sealed weeks leave).
  const a = new Client(srv.base);
  await a.login('rf-analyst');
  expectError(await a.get(`/api/surveil/aggregates?country=US&source=clinician_confirmed&to=${week}`),
    422, 'week_not_released', 'to');
});

test('eight days on: the release by source shows the confirmed condition', { skip }, async () => {
  await srv.stop();
  later = await startServer(ARGS, { dataDir: srv.dataDir, env: {
    LD_PRELOAD: FAKETIME, FAKETIME: '+8d', DONT_FAKE_MONOTONIC: '1' } });
  const a = new Client(later.base);
  await a.login('rf-analyst');
  const period = `country=US&from=${week}&to=${week}`;
  const cell = (rel, region, condition) => {
    const w = rel.weeks.find((x) => x.week === week);
    return w.cells[rel.regions.indexOf(region)][rel.conditions.indexOf(condition)];
  };
  const plain = await a.get(`/api/surveil/aggregates?${period}`);
  assert.equal(plain.status, 200, plain.text);
  assert.equal(plain.json.by_source, undefined);
  // one screening (model) and one confirmed answer: the withdrawn person's
  // answer was not contributed, and their screening left the open week when
  // they revoked (issue 14)
  assert.equal(plain.json.weeks[0].total, 2);
  assert.equal(cell(plain.json, 'US-CA', 'eczema'), 1);

  const conf = await a.get(`/api/surveil/aggregates?${period}&source=clinician_confirmed`);
  assert.equal(conf.status, 200, conf.text);
  assert.equal(conf.json.source, 'clinician_confirmed');
  assert.equal(cell(conf.json, 'US-CA', 'eczema'), 1);
  assert.equal(conf.json.weeks[0].total, 1);

  const model = await a.get(`/api/surveil/aggregates?${period}&source=model`);
  assert.equal(model.status, 200, model.text);
  assert.equal(cell(model.json, 'US-CA', 'eczema'), 0);
  assert.equal(model.json.weeks[0].total, 1);

  const br = await a.get(`/api/surveil/aggregates?${period}&source=breakdown`);
  assert.equal(br.status, 200, br.text);
  assert.deepEqual(br.json.by_source.map((s) => s.source), ['model', 'self_reported', 'clinician_confirmed']);
  assert.deepEqual(br.json.weeks, plain.json.weeks, 'the totals are the plain release, value for value');

  // one condition's view of one source, and its CSV
  const view = await a.get(`/api/surveil/aggregates?${period}&source=clinician_confirmed&condition=eczema`);
  assert.equal(view.status, 200, view.text);
  assert.equal(view.json.weeks[0].total, 1);
  const csv = await a.get(`/api/surveil/aggregates?${period}&source=clinician_confirmed&format=csv`);
  assert.equal(csv.status, 200, csv.text);
  assert.match(csv.headers.get('content-type'), /^text\/csv/);
  assert.ok(csv.text.startsWith('week,region,condition,count,status,synthetic,source\n'), csv.text.slice(0, 80));
  assert.ok(csv.text.includes(`${week},US-CA,eczema,1,published,no,clinician_confirmed\n`));
  const plainCsv = await a.get(`/api/surveil/aggregates?${period}&format=csv`);
  assert.ok(plainCsv.text.startsWith('week,region,condition,count,status,synthetic\n'), 'the plain CSV is unchanged');

  // the series of one source
  const s = await a.get(`/api/surveil/series?region=US-CA&condition=eczema&source=clinician_confirmed&from=${week}&to=${week}`);
  assert.equal(s.status, 200, s.text);
  assert.equal(s.json.source, 'clinician_confirmed');
  assert.deepEqual(s.json.observed, [1]);
  const sm = await a.get(`/api/surveil/series?region=US-CA&condition=eczema&source=model&from=${week}&to=${week}`);
  assert.deepEqual(sm.json.observed, [0]);

  expectError(await a.get(`/api/surveil/aggregates?${period}&source=gossip`), 422, 'validation_failed', 'source');
  expectError(await a.get(`/api/surveil/series?region=US-CA&source=breakdown`), 422, 'validation_failed', 'source');
});

test('revoking model_training deletes the kept examples', { skip }, async () => {
  const c = new Client(later.base);
  await c.login('rf-consenting');
  const list = await c.get('/api/consents');
  const training = list.json.consents.find((x) => x.purpose === 'model_training' && x.status === 'active');
  assert.ok(training, list.text);
  assert.equal(examples(later.dataDir).length, 1);
  const r = await c.post(`/api/consents/${training.id}/revoke`, {});
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.examples_deleted, 1);
  assert.deepEqual(examples(later.dataDir), []);
  // the other consent and the contribution stand
  assert.ok((await c.get('/api/consents')).json.consents.some((x) => x.purpose === 'public_health_surveillance'
    && x.status === 'active'));
});

test('deleting the account deletes its kept examples', { skip }, async () => {
  const r = await person('rf-leaving', { training: true, keepPublicHealth: true }, later.base);
  const clin2 = new Client(later.base);
  await clin2.login('rf-clin');
  const req = await r.c.post('/api/review/requests', { record_id: r.record, org, share: {} });
  assert.equal(req.status, 201, req.text);
  const a = await clin2.post(`/api/review/cases/${req.json.request.id}/answer`,
    { condition: 'fungal', urgency: 'pharmacist_or_gp', advice: 'Antifungal cream.' });
  assert.equal(a.status, 200, a.text);
  assert.equal(examples(later.dataDir).length, 1);
  const d = await r.c.del('/api/account', { password: 'correct horse battery' });
  assert.equal(d.status, 200, d.text);
  assert.deepEqual(examples(later.dataDir), []);
});
