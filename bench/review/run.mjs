// Review round trip through the API (issue 13): requests/s and latency of
//   request  POST /api/review/requests        (person: seal the case copy, escrow on the ledger, case row)
//   open     GET  /api/review/cases/{id}      (clinician: unseal the organisation's copy, log the opening)
//   answer   POST /api/review/cases/{id}/answer (clinician: seal the answer, settle on the ledger, row)
// against a real server (the Release build by default), CONC callers at once.
//
//   node bench/review/run.mjs [path/to/caresync]     (make bench runs it on build-bench/caresync)
//
// Environment: BENCH_REVIEW_CASES (cases per phase, default 240), BENCH_REVIEW_CONC (concurrent
// callers, default 8). Tokens come from real contributions (a screening of a photo each), so it
// needs ../shared/data and models/screening.csm; without them it says so and exits 0.
// Each phase's every response must be 2xx, else exit 1. Numbers depend on the machine and its
// load (the ledger commits each block with an fsync): compare runs on the same machine.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';

const ROOT = new URL('../..', import.meta.url).pathname;
process.env.CARESYNC_BIN = process.argv[2] || process.env.CARESYNC_BIN || join(ROOT, 'build-bench/caresync');
process.env.CARESYNC_WEB_DIR = process.env.CARESYNC_WEB_DIR || join(ROOT, 'web');
const { startServer, Client, createStaff } = await import('../../tests/integration/harness.mjs');

const SHARED = join(ROOT, '../shared');
const CASES = Number(process.env.BENCH_REVIEW_CASES || 240);
const CONC = Number(process.env.BENCH_REVIEW_CONC || 8);
const PRICE = 1;
const TOKENS = 10; // per contribution

if (!existsSync(join(SHARED, 'data')) || !existsSync(join(ROOT, 'models/screening.csm'))) {
  console.log('review bench: skipped (needs ../shared/data and models/screening.csm for the screenings that pay)');
  process.exit(0);
}
if (!existsSync(process.env.CARESYNC_BIN)) {
  console.error(`review bench: no server binary at ${process.env.CARESYNC_BIN}`);
  process.exit(1);
}

const dir = join(SHARED, 'data', 'skin-infections-8', 'test', 'ringworm');
const photos = readdirSync(dir).filter((f) => f.endsWith('.jpg')).sort().slice(0, 40).map((f) => readFileSync(join(dir, f)));

function fail(what, r) {
  console.error(`review bench: ${what}: ${r.status} ${r.text.slice(0, 300)}`);
  process.exit(1);
}

// n jobs over CONC workers; returns {seconds, lat:[ms…]}.
async function run(n, job) {
  const lat = [];
  let next = 0;
  const t0 = process.hrtime.bigint();
  await Promise.all(Array.from({ length: CONC }, async () => {
    for (let i = next++; i < n; i = next++) {
      const s = process.hrtime.bigint();
      await job(i);
      lat.push(Number(process.hrtime.bigint() - s) / 1e6);
    }
  }));
  return { seconds: Number(process.hrtime.bigint() - t0) / 1e9, lat: lat.sort((a, b) => a - b) };
}

const pct = (lat, p) => lat[Math.min(lat.length - 1, Math.floor(lat.length * p))].toFixed(1);

const srv = await startServer(['--reward-batch', '1']);
try {
  await createStaff(srv.dataDir, 'bench-admin', 'admin');
  const admin = new Client(srv.base);
  await admin.login('bench-admin');
  const org = randomBytes(32).toString('hex');
  let r = await admin.post('/api/admin/orgs', { name: 'Bench Clinic', public_key: org });
  if (r.status !== 201) fail('register org', r);
  r = await admin.put(`/api/admin/orgs/${org}/offer`, { price: PRICE, answer_hours: 48, conditions: ['fungal'], regions: ['*'] });
  if (r.status !== 200) fail('offer', r);
  await createStaff(srv.dataDir, 'bench-clin', 'clinician');
  r = await admin.put('/api/admin/users/bench-clin/org', { org });
  if (r.status !== 200) fail('clinician org', r);
  const clin = new Client(srv.base);
  await clin.login('bench-clin');

  // People with tokens: one sure contribution = TOKENS reviews each.
  const people = [];
  let photo = 0;
  for (let need = CASES; need > 0; need -= TOKENS * PRICE) {
    const c = new Client(srv.base);
    await c.signup(`bench-p${people.length}`);
    r = await c.put('/api/profile', { display_name: 'Bench', birth_year: 1980, sex: 'unspecified', region: 'US-CA' });
    if (r.status !== 200) fail('profile', r);
    r = await c.post('/api/consents', { scope: ['screening'], purpose: 'public_health_surveillance' });
    if (r.status !== 201) fail('consent', r);
    let record = null;
    for (;;) {
      const f = new FormData();
      f.append('photo', new Blob([photos[photo++ % photos.length]]), 'photo.jpg');
      const s = await c.post('/api/screenings', f, { raw: true });
      if (s.status !== 201) fail('screening', s);
      if (!record) {
        const saved = await c.post(`/api/screenings/${s.json.screening.id}/save`, { with_photo: true });
        if (saved.status !== 201) fail('save', saved);
        record = saved.json.record.id;
      }
      const k = await c.post(`/api/screenings/${s.json.screening.id}/contribute`, {});
      if (k.status === 201) break;
      if (k.status !== 422) fail('contribute', k);
    }
    people.push({ c, record, left: TOKENS });
  }
  for (const p of people) {
    for (let i = 0; i < 100 && (await p.c.get('/api/wallet')).json.wallet.balance < TOKENS; i++)
      await new Promise((res) => setTimeout(res, 50));
  }

  // Person i % P asks: each person's requests stay within their tokens.
  const ids = [];
  const req = await run(CASES, async (i) => {
    const p = people[i % people.length];
    const x = await p.c.post('/api/review/requests', { record_id: p.record, org, share: { duration: 'weeks' } });
    if (x.status !== 201) fail('request', x);
    ids[i] = x.json.request.id;
  });
  const open = await run(CASES, async (i) => {
    const x = await clin.get(`/api/review/cases/${ids[i]}`);
    if (x.status !== 200) fail('open', x);
  });
  const ans = await run(CASES, async (i) => {
    const x = await clin.post(`/api/review/cases/${ids[i]}/answer`,
      { condition: 'fungal', urgency: 'self_care', advice: 'Keep it dry; antifungal cream for two weeks.' });
    if (x.status !== 200) fail('answer', x);
  });
  const t = (await admin.get('/api/ledger')).json.totals;
  if (t.escrowed !== 0) { console.error(`review bench: ${t.escrowed} tokens still escrowed`); process.exit(1); }

  console.log(`review round trip: ${CASES} cases, ${CONC} concurrent callers, ${people.length} people`);
  console.log('phase      req/s   p50 ms   p99 ms');
  for (const [name, m] of [['request', req], ['open', open], ['answer', ans]])
    console.log(`${name.padEnd(8)} ${(CASES / m.seconds).toFixed(1).padStart(7)} ${pct(m.lat, 0.5).padStart(8)} ${pct(m.lat, 0.99).padStart(8)}`);
} finally {
  await srv.stop();
  srv.cleanup();
}
