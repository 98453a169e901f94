// The differencing attack on releases plus the public ledger (issue 11.0).
//
// The attack as an outside tester ran it: an analyst takes a release, waits
// until exactly one `contribute` transaction appears on the public ledger,
// takes another release, and reads that wallet's region, condition and week
// off the cell that moved. Here the attacker is as strong as the service
// allows — small-cell threshold k = 1 (every count published), a release
// before and after every single contribution, and the whole ledger read
// between them — and four people share in the same week from three regions.
// It must learn nothing: while the week is open no release changes and no
// contribution reaches the ledger; rewards arrive as one batch in random
// order; and once the week is sealed (the server restarted 8 days later,
// through libfaketime) the week appears whole, after the last contribute
// transaction, so no release pair brackets a lone contribution.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startServer, Client, createStaff } from './harness.mjs';

const SHARED = new URL('../../../shared', import.meta.url).pathname;
const MODEL = new URL('../../models/screening.csm', import.meta.url).pathname;
const FAKETIME = '/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1';
const skip = !existsSync(join(SHARED, 'models')) || !existsSync(join(SHARED, 'data')) || !existsSync(MODEL)
  ? 'needs ../shared (models, data) and models/screening.csm: contributions come from real screenings'
  : !existsSync(FAKETIME) ? 'needs Debian faketime (scripts/deps.sh installs it) to move past the week' : false;

const BATCH = 3;
const ARGS = ['--small-cell-k', '1', '--reward-batch', String(BATCH)];

function photo() {
  const dir = join(SHARED, 'data', 'skin-infections-8', 'test', 'ringworm');
  return readFileSync(join(dir, readdirSync(dir).filter((f) => f.endsWith('.jpg')).sort()[0]));
}

let srv;
before(async () => { if (!skip) srv = await startServer(ARGS); });
after(async () => { if (srv) { await srv.stop(); srv.cleanup(); } });

// Every contribute transaction on the ledger: {height, contributor}.
async function contributes(client) {
  const head = (await client.get('/api/ledger')).json.tree_head.height;
  const out = [];
  for (let h = 0; h <= head; h++) {
    const b = (await client.get(`/api/ledger/blocks/${h}`)).json;
    for (const item of b.transactions) {
      const t = item.tx || item;
      if (t.kind === 'contribute') out.push({ height: h, contributor: t.contributor });
    }
  }
  return { head, list: out };
}

// Values of a release that differ from another's, as "week/region/condition".
function moved(a, b) {
  const cells = (rel) => {
    const m = new Map();
    for (const w of rel.weeks) {
      w.cells.forEach((row, i) => row.forEach((v, j) => m.set(`${w.week}/${rel.regions[i]}/${rel.conditions[j]}`, v)));
    }
    return m;
  };
  const ma = cells(a), mb = cells(b), out = [];
  for (const [key, v] of mb) if ((ma.get(key) ?? 0) !== v) out.push(key);
  for (const [key, v] of ma) if (!mb.has(key) && v) out.push(key);
  return out;
}

// The attacker's inference: a release pair with exactly one contribute
// transaction between them and a cell that moved links that wallet to it.
function links(snapshots, ledger) {
  const found = [];
  for (let i = 1; i < snapshots.length; i++) {
    const a = snapshots[i - 1], b = snapshots[i];
    const between = ledger.list.filter((t) => t.height > a.height && t.height <= b.height);
    const diff = moved(a.release, b.release);
    if (between.length === 1 && diff.length) found.push({ wallet: between[0].contributor, cells: diff });
  }
  return found;
}

test('releases plus the public ledger do not reveal who contributed', { skip }, async () => {
  const analystName = 'diff.analyst';
  await createStaff(srv.dataDir, analystName, 'analyst');
  const analyst = new Client(srv.base);
  await analyst.login(analystName);
  const snapshots = [];
  const snap = async () => {
    const r = await analyst.get('/api/surveil/aggregates?country=US');
    assert.equal(r.status, 200, r.text);
    const height = (await analyst.get('/api/ledger')).json.tree_head.height;
    snapshots.push({ release: r.json, text: r.text, height });
  };

  const ov = (await analyst.get('/api/surveil/overview')).json;
  const people = [['diff.p1', 'US-CA'], ['diff.p2', 'US-NY'], ['diff.p3', 'US-TX'], ['diff.p4', 'US-CA']];
  const wallets = {};
  const image = photo();
  await snap();
  for (const [name, region] of people) {
    const p = new Client(srv.base);
    await p.signup(name);
    assert.equal((await p.post('/api/consents', { scope: ['screening'], purpose: 'public_health_surveillance' })).status, 201);
    assert.equal((await p.put('/api/profile', { display_name: name, birth_year: 1980, sex: 'unspecified', region })).status, 200);
    const f = new FormData();
    f.append('photo', new Blob([image]), 'photo.jpg');
    const s = await p.post('/api/screenings', f, { raw: true });
    assert.equal(s.status, 201, s.text);
    const c = await p.post(`/api/screenings/${s.json.screening.id}/contribute`, {});
    assert.equal(c.status, 201, c.text);
    assert.equal(c.json.contribution.week, ov.current_week, 'the contribution counts into the running week');
    wallets[name] = (await p.get('/api/wallet')).json.wallet.public_key;
    await snap();
  }

  // While the week is open, every release is the same release, byte for byte
  // (the logged answer), and none of them shows the running week.
  for (const s of snapshots) assert.equal(s.text, snapshots[0].text, 'a release moved while the week was open');
  assert.ok(!snapshots[0].release.weeks.some((w) => w.week === ov.current_week), 'the running week is never released');

  // The ledger got the rewards as one batch of BATCH, after the BATCH-th
  // contribution, and nothing between the earlier release pairs; the fourth
  // waits for the next batch.
  let ledger = await contributes(analyst);
  assert.equal(ledger.list.length, BATCH, JSON.stringify(ledger.list));
  assert.ok(ledger.list.every((t) => t.height > snapshots[BATCH - 1].height), 'no reward before the batch was full');
  assert.deepEqual(ledger.list.map((t) => t.contributor).sort(),
    [wallets['diff.p1'], wallets['diff.p2'], wallets['diff.p3']].sort());
  assert.deepEqual(links(snapshots, ledger), []);

  // Eight days on, the week is sealed: it appears whole, and the ledger has
  // no contribute transaction between the last release before and the first
  // release after, so the attack pairs nothing.
  await srv.stop();
  const later = await startServer(ARGS, { dataDir: srv.dataDir, env: {
    LD_PRELOAD: FAKETIME, FAKETIME: '+8d', DONT_FAKE_MONOTONIC: '1' } });
  try {
    const a2 = new Client(later.base);
    await a2.login(analystName);
    const ov2 = (await a2.get('/api/surveil/overview')).json;
    assert.ok(ov2.latest_week >= ov.current_week, `week sealed: latest ${ov2.latest_week}, shared in ${ov.current_week}`);
    const r = await a2.get(`/api/surveil/aggregates?country=US&to=${ov.current_week}`);
    assert.equal(r.status, 200, r.text);
    const week = r.json.weeks.find((w) => w.week === ov.current_week);
    const at = (region) => week.region_totals[r.json.regions.indexOf(region)];
    assert.deepEqual([at('US-CA'), at('US-NY'), at('US-TX'), week.total], [2, 1, 1, 4]);
    const height = (await a2.get('/api/ledger')).json.tree_head.height;
    snapshots.push({ release: r.json, text: r.text, height });
    ledger = await contributes(a2);
    assert.deepEqual(links(snapshots, ledger), [], 'the attack links no wallet to a cell');
    // the one change the attacker sees is the whole week, four people in
    // three regions, with BATCH wallets on the ledger and none between
    const last = snapshots.length - 1;
    assert.equal(ledger.list.filter((t) => t.height > snapshots[last - 1].height).length, 0);
    assert.ok(moved(snapshots[last - 1].release, snapshots[last].release).length >= 3);
    // the fourth person's reward is still queued (not on the ledger)
    assert.ok(!ledger.list.some((t) => t.contributor === wallets['diff.p4']));
  } finally {
    await later.stop();
  }
});
