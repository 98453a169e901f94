// Surveillance over HTTP, on a real server filled by `caresync demo-data`:
// who may see what (analysts and admins; people and anonymous callers are
// refused), that no released number is below k, that CSV and JSON exports
// carry the same numbers, that asking again returns the same release, that
// every release is on the ledger, that the injected outbreaks raise alerts
// analysts can acknowledge, and that organisations' token API enforces the
// privacy budget. No export, release or analytics row names a person.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { startServer, Client, createStaff, errorOf, BIN } from './harness.mjs';

let srv, analyst, admin, person;
let demo = '';
const K = 11;

before(async () => {
  srv = await startServer();
  const d = spawnSync(BIN, ['demo-data', '--data-dir', srv.dataDir], { encoding: 'utf8' });
  assert.equal(d.status, 0, d.stderr);
  demo = d.stdout;
  await createStaff(srv.dataDir, 'ana', 'analyst');
  await createStaff(srv.dataDir, 'root', 'admin');
  analyst = new Client(srv.base); await analyst.login('ana');
  admin = new Client(srv.base); await admin.login('root');
  person = new Client(srv.base); await person.signup('petra-unique-name');
});

after(async () => { await srv.stop(); if (process.env.SHOW_LOG) console.error(srv.stderr); srv.cleanup(); });

// Every integer in the released numbers (weeks' cells and totals).
function numbers(rel) {
  const out = [];
  for (const w of rel.weeks) {
    for (const row of w.cells) for (const v of row) out.push(v);
    out.push(...w.region_totals, ...w.condition_totals, w.total);
  }
  return out;
}

test('demo-data says what it made, and refuses to double it', () => {
  assert.match(demo, /SYNTHETIC/);
  assert.match(demo, /fungal infections in US-FL/);
  const again = spawnSync(BIN, ['demo-data', '--data-dir', srv.dataDir], { encoding: 'utf8' });
  assert.equal(again.status, 2);
  assert.match(again.stderr, /already holds surveillance data/);
});

test('only analysts and admins see surveillance data', async () => {
  const anon = new Client(srv.base);
  assert.equal((await anon.get('/api/surveil/overview')).status, 401);
  const r = await person.get('/api/surveil/aggregates?country=US');
  assert.equal(r.status, 403);
  assert.equal(errorOf(r).code, 'forbidden');
  assert.equal((await person.get('/api/surveil/alerts')).status, 403);
  const ov = await analyst.get('/api/surveil/overview');
  assert.equal(ov.status, 200);
  assert.deepEqual(ov.json.countries, ['US']);
  assert.equal(ov.json.k, K);
  assert.ok(ov.json.conditions.some((c) => c.code === 'fungal'));
  assert.equal((await admin.get('/api/surveil/overview')).status, 200);
});

test('aggregates: nothing below k, suppressed values null, CSV = JSON, same question same answer', async () => {
  const ov = (await analyst.get('/api/surveil/overview')).json;
  const q = `/api/surveil/aggregates?country=US&to=${ov.latest_week}`;
  const r = await analyst.get(q);
  assert.equal(r.status, 200, r.text);
  const rel = r.json;
  assert.equal(rel.synthetic, true);
  assert.equal(rel.k, K);
  assert.equal(rel.weeks.length, 12);
  // rows: every ISO 3166-2 subdivision of the country, with data or not
  const iso = (await analyst.get('/api/regions?country=US')).json;
  const isoCodes = (iso.subdivisions || iso).map((x) => x.code).sort();
  assert.deepEqual(rel.regions, isoCodes);
  const nums = numbers(rel);
  assert.ok(nums.some((v) => v === null), 'small states have suppressed cells');
  assert.ok(nums.filter((v) => v !== null).every((v) => v === 0 || v >= K), 'no released value below k');
  assert.ok(rel.suppressed_values > 0 && rel.published_values > 0);
  // asking again: byte-identical (the logged release, no new ledger record)
  const again = await analyst.get(q);
  assert.equal(again.text, r.text);
  // CSV of the same query: the same numbers, line for line
  const csv = await analyst.get(q + '&format=csv');
  assert.equal(csv.status, 200);
  assert.match(csv.headers.get('content-type'), /text\/csv/);
  assert.match(csv.headers.get('content-disposition'), /attachment/);
  const lines = csv.text.trim().split('\n');
  assert.equal(lines[0], 'week,region,condition,count,status,synthetic');
  const C = rel.conditions.length, R = rel.regions.length;
  assert.equal(lines.length - 1, rel.weeks.length * (R + 1) * (C + 1));
  const ca = rel.regions.indexOf('US-CA');
  const line = lines.find((l) => l.startsWith(`${rel.weeks[0].week},US-CA,${rel.conditions[0]},`));
  assert.equal(line.split(',')[3], String(rel.weeks[0].cells[ca][0]));
  for (const l of lines.slice(1)) {
    const [, , , count, status, synthetic] = l.split(',');
    assert.equal(synthetic, 'yes');
    if (status === 'suppressed') assert.equal(count, '');
    else assert.ok(Number(count) === 0 || Number(count) >= K, l);
  }
  // one condition: a view of the same release (same numbers, no "all" column)
  const fungal = await analyst.get(`${q}&condition=fungal`);
  assert.equal(fungal.status, 200);
  assert.deepEqual(fungal.json.conditions, ['fungal']);
  const fi = rel.conditions.indexOf('fungal');
  fungal.json.weeks.forEach((w, i) => {
    w.cells.forEach((row, r) => assert.equal(row[0], rel.weeks[i].cells[r][fi]));
    assert.equal(w.total, rel.weeks[i].condition_totals[fi]);
  });
  const fcsv = (await analyst.get(`${q}&condition=fungal&format=csv`)).text.trim().split('\n');
  assert.equal(fcsv.length - 1, rel.weeks.length * (R + 1));
  assert.ok(!fcsv.some((l) => l.split(',')[2] === 'all'));
  // bad input: stable error codes, nothing released
  for (const [path, field] of [['?country=USA', 'country'], ['?country=US&from=2026-W60', 'from'],
    ['?country=US&condition=leprosy', 'condition'], ['?country=US&k=3', 'k'], ['?country=US&epsilon=1', 'epsilon'],
    [`?country=US&to=${ov.current_week}`, 'to']]) {
    const b = await analyst.get('/api/surveil/aggregates' + path);
    assert.equal(b.status, 422, path);
    assert.equal(errorOf(b).field, field, path);
  }
});

// The dashboard takes its period from here rather than counting ISO weeks
// itself. 2020 and 2026 are ISO years with 53 weeks.
test('weeks: ISO weeks counted back by the server, across 53-week years; bad input refused', async () => {
  const ov = (await analyst.get('/api/surveil/overview')).json;
  const w = await analyst.get('/api/surveil/weeks');
  assert.equal(w.status, 200, w.text);
  assert.equal(w.json.to, ov.latest_week, 'the default ends with the latest released week');
  assert.equal(w.json.weeks.length, 12);
  assert.equal(w.json.weeks[0], w.json.from);
  assert.equal(w.json.weeks.at(-1), w.json.to);
  // the same weeks as a release of that period lists
  const half = (await analyst.get(`/api/surveil/weeks?to=${ov.latest_week}&count=26`)).json;
  const rel = await analyst.get(`/api/surveil/aggregates?country=US&from=${half.from}&to=${half.to}`);
  assert.equal(rel.status, 200, rel.text);
  assert.deepEqual(rel.json.weeks.map((x) => x.week), half.weeks);
  assert.deepEqual((await analyst.get('/api/surveil/weeks?to=2021-W02&count=4')).json.weeks,
    ['2020-W52', '2020-W53', '2021-W01', '2021-W02']);
  assert.deepEqual((await analyst.get('/api/surveil/weeks?to=2027-W01&count=3')).json,
    { from: '2026-W52', to: '2027-W01', count: 3, weeks: ['2026-W52', '2026-W53', '2027-W01'] });
  const long = (await admin.get('/api/surveil/weeks?to=2026-W01&count=520')).json.weeks;
  assert.equal(long.length, 520);
  assert.equal(new Set(long).size, 520, 'no week twice');
  assert.ok(long.every((x, i) => i === 0 || x > long[i - 1]), 'oldest first, each after the one before');
  for (const [q, field] of [['to=2025-W53', 'to'], ['to=2026-W48x', 'to'], ['to=2026-48', 'to'], ['count=0', 'count'],
    ['count=521', 'count'], ['count=12.5', 'count'], ['count=', 'count'], ['count=-3', 'count'],
    ['to=1970-W02&count=3', 'count']]) {
    const r = await analyst.get(`/api/surveil/weeks?${q}`);
    assert.equal(r.status, 422, q);
    assert.equal(errorOf(r).code, 'validation_failed', q);
    assert.equal(errorOf(r).field, field, q);
  }
  assert.equal((await person.get('/api/surveil/weeks')).status, 403);
  assert.equal((await new Client(srv.base).get('/api/surveil/weeks')).status, 401);
});

test('every release is on the ledger, to a registered organisation', async () => {
  const orgs = (await analyst.get('/api/ledger/orgs')).json.organisations;
  assert.ok(orgs.some((o) => o.name === 'CareSync analysts'));
  const head = (await analyst.get('/api/ledger')).json.tree_head.height;
  let releases = 0;
  for (let h = head; h >= 0 && h > head - 40; h--) {
    const b = (await analyst.get(`/api/ledger/blocks/${h}`)).json;
    for (const tx of b.transactions) if (tx.kind === 'release') releases++;
  }
  assert.ok(releases >= 1, 'release transactions recorded');
});

test('series: the outbreak in Florida alarms; observed values are the release\'s', async () => {
  const ov = (await analyst.get('/api/surveil/overview')).json;
  const r = await analyst.get(`/api/surveil/series?region=US-FL&condition=fungal&method=c2&to=${ov.latest_week}`);
  assert.equal(r.status, 200, r.text);
  const s = r.json;
  assert.equal(s.weeks.length, 12);
  assert.equal(s.observed.length, 12);
  assert.equal(s.upperbound.length, 12);
  assert.ok(s.alarm.some((a) => a === true), 'an alarm in the outbreak weeks');
  assert.ok(s.observed.every((v) => v === null || v === 0 || v >= K));
  const bad = await analyst.get('/api/surveil/series?region=Florida');
  assert.equal(bad.status, 422);
  const badm = await analyst.get('/api/surveil/series?region=US-FL&method=magic');
  assert.equal(errorOf(badm).field, 'method');
});

test('alerts: raised for the injected outbreaks, acknowledged once', async () => {
  const r = await analyst.get('/api/surveil/alerts');
  assert.equal(r.status, 200);
  const fl = r.json.alerts.find((a) => a.region === 'US-FL' && a.condition === 'fungal');
  const wa = r.json.alerts.find((a) => a.region === 'US-WA' && a.condition === 'viral');
  assert.ok(fl, 'Florida fungal outbreak alert');
  assert.ok(wa, 'Washington viral outbreak alert');
  assert.equal(fl.synthetic, true);
  assert.ok(r.json.alerts.every((a) => a.observed === null || a.observed === 0 || a.observed >= K));
  const ack = await analyst.post(`/api/surveil/alerts/${fl.id}/ack`, {});
  assert.equal(ack.status, 200);
  assert.equal(ack.json.acked_by, 'ana');
  const twice = await analyst.post(`/api/surveil/alerts/${fl.id}/ack`, {});
  assert.equal(twice.status, 409);
  assert.equal(errorOf(twice).code, 'already_acknowledged');
  assert.equal((await analyst.post('/api/surveil/alerts/999999/ack', {})).status, 404);
  assert.equal((await analyst.post(`/api/surveil/alerts/${wa.id}/ack`, {}, { csrf: false })).status, 403);
  const open = (await analyst.get('/api/surveil/alerts?open=1')).json.alerts;
  assert.ok(!open.some((a) => a.id === fl.id));
});

test('organisations: token API, epsilon per release, budget enforced', async () => {
  const key = randomBytes(32).toString('hex');
  const reg = await admin.post('/api/admin/orgs', { name: 'County Health Dept', public_key: key });
  assert.equal(reg.status, 201, reg.text);
  assert.equal((await analyst.post(`/api/admin/orgs/${key}/tokens`, {})).status, 403);
  assert.equal((await admin.post(`/api/admin/orgs/${'00'.repeat(32)}/tokens`, {})).status, 404);
  const tok = await admin.post(`/api/admin/orgs/${key}/tokens`, {});
  assert.equal(tok.status, 201);
  const token = tok.json.token;
  const org = new Client(srv.base);
  const none = await org.get('/api/v1/aggregates?country=US');
  assert.equal(none.status, 401);
  assert.equal(errorOf(none).code, 'unauthenticated');
  const wrong = await org.get('/api/v1/aggregates?country=US', { headers: { Authorization: 'Bearer nope' } });
  assert.equal(wrong.status, 401);
  const auth = { headers: { Authorization: `Bearer ${token}` } };
  const a = await org.get('/api/v1/aggregates?country=US&epsilon=4', auth);
  assert.equal(a.status, 200, a.text);
  assert.equal(a.json.epsilon, 4);
  assert.equal(a.json.release.organisation, 'County Health Dept');
  assert.ok(numbers(a.json).filter((v) => v !== null).every((v) => v === 0 || v >= K));
  // the same question again: the same noisy answer, no budget spent
  const a2 = await org.get('/api/v1/aggregates?country=US&epsilon=4', auth);
  assert.equal(a2.text, a.text);
  const b = await org.get('/api/v1/aggregates?country=US&epsilon=4&k=12', auth);
  assert.equal(b.status, 200);
  const c = await org.get('/api/v1/aggregates?country=US&epsilon=4&k=13', auth); // 12 > budget 10
  assert.equal(c.status, 409);
  assert.equal(errorOf(c).code, 'budget_exhausted');
  // exact releases cost nothing and still work
  const exact = await org.get('/api/v1/aggregates?country=US&k=14&format=csv', auth);
  assert.equal(exact.status, 200);
  assert.match(exact.text, /^week,region,condition,count,status,synthetic\n/);
  const orgs = (await analyst.get('/api/ledger/orgs')).json.organisations;
  assert.ok(orgs.some((o) => o.name === 'County Health Dept'));
});

test('no analytics row, release or export names a person', async () => {
  const ov = (await analyst.get('/api/surveil/overview')).json;
  const exp = await analyst.get(`/api/surveil/aggregates?country=US&to=${ov.latest_week}&format=csv`);
  assert.ok(!exp.text.includes('petra-unique-name'));
  const db = join(srv.dataDir, 'caresync.db');
  const dump = (t) => execFileSync('sqlite3', [db, `.dump ${t}`], { encoding: 'utf8', maxBuffer: 1 << 28 });
  const data = dump('surveil_counts') + dump('surveil_releases') + dump('surveil_budget');
  assert.ok(data.length > 1000);
  for (const needle of ['petra-unique-name', 'ana', 'root']) assert.ok(!data.includes(`'${needle}'`), needle);
  // alerts name the analyst who acknowledged them (staff), never a person
  assert.ok(!dump('surveil_alerts').includes('petra-unique-name'));
  const cols = execFileSync('sqlite3', [db, "SELECT group_concat(name) FROM pragma_table_info('surveil_counts')"],
    { encoding: 'utf8' }).trim();
  assert.equal(cols, 'region,week,condition,age_band,source,synthetic,n');
});

test('with two years of history, alerts come from Farrington flexible (Noufaily configuration)', async () => {
  const s2 = await startServer();
  try {
    const d = spawnSync(BIN, ['demo-data', '--data-dir', s2.dataDir, '--weeks', '130', '--seed', '7'], { encoding: 'utf8' });
    assert.equal(d.status, 0, d.stderr);
    await createStaff(s2.dataDir, 'ana2', 'analyst');
    const a = new Client(s2.base); await a.login('ana2');
    const r = await a.get('/api/surveil/alerts');
    assert.equal(r.status, 200, r.text);
    assert.ok(r.json.alerts.length > 0);
    assert.ok(r.json.alerts.every((x) => x.method === 'farrington'), JSON.stringify(r.json.alerts.slice(0, 3)));
    assert.ok(r.json.alerts.some((x) => x.region === 'US-FL' && x.condition === 'fungal'), 'the Florida outbreak');
  } finally {
    await s2.stop();
    s2.cleanup();
  }
});
