// Issue 14 for the public-health pool: anti-abuse and withdrawal.
//
// 1. The same photo earns once: a second screening of the same photo, and a
//    re-encoded, resized copy of it (the 224 px copy the service itself kept
//    in the record), are refused with 409 duplicate_photo — not counted, not
//    rewarded; another person's identical photo is theirs to share (hashes
//    are compared within one person only); the daily cap answers
//    409 daily_cap_reached.
// 2. Withdrawal: a person shares in a week that is now sealed (the server run
//    14 days earlier through libfaketime) and in the running week, then
//    revokes the public-health consent: the revocation says one was
//    withdrawn and one stays in a released week; the sealed week's count is
//    unchanged, and when the running week is released (8 days later) it
//    lacks their count.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startServer, Client, createStaff, errorOf } from './harness.mjs';

const SHARED = new URL('../../../shared', import.meta.url).pathname;
const MODEL = new URL('../../models/screening.csm', import.meta.url).pathname;
const FAKETIME = '/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1';
const skip = !existsSync(join(SHARED, 'models')) || !existsSync(join(SHARED, 'data')) || !existsSync(MODEL)
  ? 'needs ../shared (models, data) and models/screening.csm: contributions come from real screenings'
  : !existsSync(FAKETIME) ? 'needs Debian faketime (scripts/deps.sh installs it) to move the weeks' : false;

// Reward 10 tokens a contribution (genesis default): the cap allows two a day.
const ARGS = ['--small-cell-k', '1', '--reward-batch', '1', '--share-daily-cap', '20',
  '--screenings-per-window', '1000'];
const DIR = join(SHARED, 'data', 'skin-infections-8', 'test', 'ringworm');
const photos = skip ? [] : readdirSync(DIR).filter((f) => f.endsWith('.jpg')).sort();

async function person(base, name, region) {
  const p = new Client(base);
  await p.signup(name);
  const g = await p.post('/api/consents', { scope: ['screening'], purpose: 'public_health_surveillance' });
  assert.equal(g.status, 201, g.text);
  assert.equal((await p.put('/api/profile', { display_name: name, birth_year: 1980, sex: 'unspecified', region })).status, 200);
  p.grant = g.json.consent.id;
  return p;
}

async function screen(p, bytes) {
  const f = new FormData();
  f.append('photo', new Blob([bytes]), 'photo.jpg');
  const s = await p.post('/api/screenings', f, { raw: true });
  assert.equal(s.status, 201, s.text);
  return s.json.screening;
}

// The next photo of the folder (from *at) that the screening is sure about:
// an unsure result is not shared at all.
async function confident(p, at) {
  while (at.i < photos.length) {
    const bytes = readFileSync(join(DIR, photos[at.i++]));
    const s = await screen(p, bytes);
    if (!s.unsure) return { bytes, s };
  }
  throw new Error('no confident screening among the ringworm photos');
}

const contribute = (p, id) => p.post(`/api/screenings/${id}/contribute`, {});
const balance = async (p) => (await p.get('/api/wallet')).json.wallet.balance;

let srv;
before(async () => { if (!skip) srv = await startServer(ARGS); });
after(async () => { if (srv) { await srv.stop(); srv.cleanup(); } });

test('the same photo earns once; the daily cap applies; both say so', { skip }, async () => {
  const a = await person(srv.base, 'dup.a', 'US-CA');
  const at = { i: 0 };
  const first = await confident(a, at);
  const c1 = await contribute(a, first.s.id);
  assert.equal(c1.status, 201, c1.text);
  const paid = await balance(a);
  assert.equal(paid, c1.json.reward);

  // The same photo, screened again: a new result, the same photo.
  const again = await screen(a, first.bytes);
  const r2 = await contribute(a, again.id);
  assert.equal(r2.status, 409, r2.text);
  let e = errorOf(r2);
  assert.equal(e.code, 'duplicate_photo');
  assert.equal(e.field, 'photo');
  assert.match(e.message, /already shared/);
  // The same result again keeps its own answer.
  assert.equal(errorOf(await contribute(a, first.s.id)).code, 'already_shared');

  // A re-encoded, resized copy: the 224 px JPEG the service kept in the record.
  const saved = await a.post(`/api/screenings/${first.s.id}/save`, { with_photo: true });
  assert.equal(saved.status, 201, saved.text);
  const copy = await a.get(`/api/records/${saved.json.record.id}/photo`);
  assert.equal(copy.status, 200);
  assert.notDeepEqual(copy.bytes, first.bytes);
  const s3 = await screen(a, copy.bytes);
  assert.ok(!s3.unsure, "the kept copy screens as the original did");
  assert.equal(errorOf(await contribute(a, s3.id)).code, 'duplicate_photo');
  assert.equal(await balance(a), paid, 'a duplicate earned nothing');

  // Another person with the very same photo: theirs to share.
  const b = await person(srv.base, 'dup.b', 'US-CA');
  const sb = await screen(b, first.bytes);
  assert.equal((await contribute(b, sb.id)).status, 201);

  // A different photo is a new contribution; the third in a day is over the cap.
  const second = await confident(a, at);
  assert.equal((await contribute(a, second.s.id)).status, 201);
  const third = await confident(a, at);
  const r4 = await contribute(a, third.s.id);
  assert.equal(r4.status, 409, r4.text);
  e = errorOf(r4);
  assert.equal(e.code, 'daily_cap_reached');
  assert.match(e.message, /cap .*20 earned today/);
  assert.equal(await balance(a), 2 * paid);
});

test('revoking the public-health consent withdraws from weeks not yet released only', { skip }, async () => {
  const analystName = 'wd.analyst';
  const env = (shift) => ({ LD_PRELOAD: FAKETIME, FAKETIME: shift, DONT_FAKE_MONOTONIC: '1' });
  // Two weeks ago (a fresh data directory): the person shares once.
  const early = await startServer(ARGS, { env: env('-14d') });
  const dataDir = early.dataDir;
  let oldWeek;
  const at = { i: 0 };
  try {
    const p = await person(early.base, 'wd.p', 'US-NV');
    const s = await confident(p, at);
    const c = await contribute(p, s.s.id);
    assert.equal(c.status, 201, c.text);
    oldWeek = c.json.contribution.week;
  } finally {
    await early.stop();
  }
  await createStaff(dataDir, analystName, 'analyst');
  const now = await startServer(ARGS, { dataDir });
  let week;
  const cell = (rel, w, region) => {
    const wk = rel.weeks.find((x) => x.week === w);
    return wk ? wk.region_totals[rel.regions.indexOf(region)] : 0;
  };
  try {
    const analyst = new Client(now.base);
    await analyst.login(analystName);
    const sealed = await analyst.get(`/api/surveil/aggregates?country=US&from=${oldWeek}&to=${oldWeek}`);
    assert.equal(sealed.status, 200, sealed.text);
    assert.equal(cell(sealed.json, oldWeek, 'US-NV'), 1);

    const p = new Client(now.base);
    await p.login('wd.p');
    const s = await confident(p, at);
    const c = await contribute(p, s.s.id);
    assert.equal(c.status, 201, c.text);
    week = c.json.contribution.week;
    // Someone else in the same cell stays counted.
    const q = await person(now.base, 'wd.q', 'US-NV');
    const sq = await confident(q, at);
    assert.equal((await contribute(q, sq.s.id)).status, 201);

    const grant = (await p.get('/api/consents')).json.consents.find((x) => x.purpose === 'public_health_surveillance');
    const r = await p.post(`/api/consents/${grant.id}/revoke`);
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.json.contributions, { withdrawn: 1, in_released_weeks: 1 });
    // The sealed week, asked afresh (the default twelve weeks, another question, so built from the
    // counts rather than the release log): unchanged.
    const again = await analyst.get(`/api/surveil/aggregates?country=US&to=${oldWeek}`);
    assert.equal(again.status, 200, again.text);
    assert.equal(cell(again.json, oldWeek, 'US-NV'), 1, 'a sealed week never changes');
  } finally {
    await now.stop();
  }
  // Eight days on, the running week is released without the withdrawn count.
  const later = await startServer(ARGS, { dataDir, env: env('+8d') });
  try {
    const analyst = new Client(later.base);
    await analyst.login(analystName);
    const rel = await analyst.get(`/api/surveil/aggregates?country=US&to=${week}`);
    assert.equal(rel.status, 200, rel.text);
    assert.equal(cell(rel.json, week, 'US-NV'), 1, 'only the other person is counted');
    assert.equal(cell(rel.json, oldWeek, 'US-NV'), 1);
  } finally {
    await later.stop();
  }
});
