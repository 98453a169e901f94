// Crash safety of clinician review (issue 13): a review step writes two
// files that cannot commit together — the escrow transaction in ledger.db,
// the case row in caresync.db — so a crash can fall between them. Under
// request / answer / return / withdraw / revoke traffic the server is killed
// with SIGKILL, many times, and restarted on the same data directory (where
// review_recover runs before serving). After every kill and restart:
//   - `caresync ledger verify` passes;
//   - the supply (minted − burned) is what it was: review moves tokens, it
//     never mints or burns them;
//   - every person's balance + the organisation's + the escrowed total
//     (GET /api/ledger) add up to the supply;
//   - no escrow is open without a waiting case, no waiting case lacks an
//     open escrow, and escrowed = the sum of the waiting cases' prices;
//   - every answered case has a settled escrow and the organisation holds
//     exactly their prices; no intent is left.
// Two kinds of kill: at random moments (SIGKILL from here), and at each named
// window between the commits (CARESYNC_CRASH_AT, compiled into test builds
// only: the server kills itself there), so every window is hit for sure.
//
// What an answer feeds (issue 14): the confirmed condition is handed on
// between the settle on the ledger and the case row. A second test kills the
// server in the windows around that hand-over (after the settle, after the
// feed) with the person's public-health consent kept: after recovery the
// confirmed condition is counted once, its reward paid once, and its
// withdrawal tag reached the person's vault (revoking the consent takes it
// back from the open week with the person's screening).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { startServer, Client, createStaff, BIN } from './harness.mjs';

const SHARED = new URL('../../../shared', import.meta.url).pathname;
const MODEL = new URL('../../models/screening.csm', import.meta.url).pathname;
const HAVE_SQLITE = spawnSync('sqlite3', ['-version']).status === 0;
const skip = !existsSync(join(SHARED, 'data')) || !existsSync(MODEL)
  ? 'needs ../shared/data and models/screening.csm: a case is a real saved screening with its photo'
  : !HAVE_SQLITE ? 'needs the sqlite3 shell (scripts/deps.sh) to read both files after each crash' : false;

const ARGS = ['--reward-batch', '1'];
const PEOPLE = 3;
const RANDOM_KILLS = 16;
// Every window between a step's commits (src/review/cases.c).
const WINDOWS = [
  'review_after_request_intent', 'review_after_escrow',
  'review_after_settle_intent', 'review_after_settle',
  'review_after_refund_intent', 'review_after_refund',
  'review_after_revoke_intent', 'review_after_revoke',
];

const CONTRIBUTIONS = 3; // per person, 10 tokens each

function photos() {
  const dir = join(SHARED, 'data', 'skin-infections-8', 'test', 'ringworm');
  return readdirSync(dir).filter((f) => f.endsWith('.jpg')).sort().slice(0, 30).map((f) => readFileSync(join(dir, f)));
}

function sql(dataDir, query) {
  const r = spawnSync('sqlite3', ['-readonly', join(dataDir, 'caresync.db'),
    `ATTACH 'file:${join(dataDir, 'ledger.db')}?mode=ro' AS l; ${query}`], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout.trim();
}

function verify(dataDir) {
  const r = spawnSync(BIN, ['ledger', 'verify', '--data-dir', dataDir], { encoding: 'utf8' });
  return { ok: r.status === 0, out: `${r.stdout}${r.stderr}` };
}

// A person with tokens (one contribution per photo) and a saved screening
// with its photo to send for review.
async function fundedPerson(srv, name) {
  const c = new Client(srv.base);
  await c.signup(name);
  const prof = await c.put('/api/profile', { display_name: 'Crash Test', birth_year: 1980, sex: 'unspecified', region: 'US-CA' });
  assert.equal(prof.status, 200, prof.text);
  const g = await c.post('/api/consents', { scope: ['screening'], purpose: 'public_health_surveillance' });
  assert.equal(g.status, 201, g.text);
  let record = null;
  let paid = 0;
  for (const img of photos()) {
    const f = new FormData();
    f.append('photo', new Blob([img]), 'photo.jpg');
    const s = await c.post('/api/screenings', f, { raw: true });
    assert.equal(s.status, 201, s.text);
    if (!record) {
      const saved = await c.post(`/api/screenings/${s.json.screening.id}/save`, { with_photo: true });
      assert.equal(saved.status, 201, saved.text);
      record = saved.json.record.id;
    }
    // An unsure result is not shared (422): the next photo then.
    const k = await c.post(`/api/screenings/${s.json.screening.id}/contribute`, {});
    assert.ok(k.status === 201 || k.status === 422, k.text);
    if (k.status === 201 && ++paid === CONTRIBUTIONS) break;
  }
  assert.equal(paid, CONTRIBUTIONS, 'not enough sure screenings among the photos');
  // The invariant below is that review moves tokens and never mints or
  // burns them. With a public-health consent an answer also contributes the
  // confirmed condition, whose reward is minted (http_review_feeds covers
  // that); the consent is revoked here so the supply stays exact.
  const rv = await c.post(`/api/consents/${g.json.consent.id}/revoke`);
  assert.equal(rv.status, 200, rv.text);
  return { c, record };
}

async function walletBalance(c) {
  const r = await c.get('/api/wallet');
  assert.equal(r.status, 200, r.text);
  return r.json.wallet.balance;
}

// What each call may answer while the server is up (anything else fails the
// test): the refusals a race between the person and the clinician produces.
const FINE = new Set([200, 201, 404, 409]);

// Traffic until the server goes away (a refused or reset connection ends a
// loop). Counts each kind of step that succeeded.
async function traffic(people, clinician, orgKey, rand, stats, unexpected) {
  const call = async (what, fn) => {
    let r;
    try { r = await fn(); } catch { return null; } // the server died
    if (!FINE.has(r.status)) unexpected.push(`${what}: ${r.status} ${r.text.slice(0, 200)}`);
    return r;
  };
  const person = async ({ c, record }) => {
    for (;;) {
      const list = await call('list', () => c.get('/api/review/requests'));
      if (!list) return;
      const reqs = list.json?.requests || [];
      const waiting = reqs.filter((x) => x.state === 'waiting');
      const answered = reqs.filter((x) => x.state === 'answered' && x.consent.status === 'active');
      const dice = rand(10);
      let r;
      if (waiting.length && dice < 2) {
        r = await call('withdraw', () => c.post(`/api/review/requests/${waiting[rand(waiting.length)].id}/withdraw`, {}));
        if (r?.status === 200) stats.withdraw++;
      } else if ((waiting.length || answered.length) && dice < 4) {
        const pool = [...waiting, ...answered];
        r = await call('revoke', () => c.post(`/api/review/requests/${pool[rand(pool.length)].id}/revoke`, {}));
        if (r?.status === 200) stats.revoke++;
      } else {
        r = await call('request', () => c.post('/api/review/requests', { record_id: record, org: orgKey, share: { duration: 'weeks' } }));
        if (r?.status === 201) stats.request++;
      }
      if (!r) return;
    }
  };
  const clin = async () => {
    for (;;) {
      const q = await call('queue', () => clinician.get('/api/review/queue'));
      if (!q) return;
      const queue = q.json?.queue || [];
      if (!queue.length) { await new Promise((res) => setTimeout(res, 5)); continue; }
      const id = queue[rand(queue.length)].id;
      const open = await call('open', () => clinician.get(`/api/review/cases/${id}`));
      if (!open) return;
      let r;
      if (rand(3) === 0) {
        r = await call('return', () => clinician.post(`/api/review/cases/${id}/return`, { reason: 'photo unclear' }));
        if (r?.status === 200) stats.return++;
      } else {
        r = await call('answer', () => clinician.post(`/api/review/cases/${id}/answer`,
          { condition: 'fungal', urgency: 'self_care', advice: 'Keep it dry; antifungal cream.' }));
        if (r?.status === 200) stats.answer++;
      }
      if (!r) return;
    }
  };
  await Promise.all([...people.map(person), clin(), clin()]);
}

// Everything that must hold after a crash and a restart.
async function invariants(srv, people, orgKey, supply, label) {
  const led = await new Client(srv.base).get('/api/ledger');
  assert.equal(led.status, 200, led.text);
  const t = led.json.totals;
  assert.equal(t.supply, supply, `${label}: supply changed`);
  assert.equal(t.minted - t.burned, t.supply, label);
  let persons = 0;
  for (const p of people) persons += await walletBalance(p.c);
  const org = Number(sql(srv.dataDir, `SELECT coalesce((SELECT balance FROM l.signers WHERE pubkey = x'${orgKey}'), 0)`));
  assert.equal(persons + org + t.escrowed, supply,
    `${label}: persons ${persons} + organisation ${org} + escrowed ${t.escrowed} ≠ supply ${supply}`);
  const [intents, waitingNoEscrow, escrowNoCase, waitingSum, answeredNotSettled, paid] = sql(srv.dataDir, `
    SELECT (SELECT count(*) FROM review_intents),
      (SELECT count(*) FROM review_cases c LEFT JOIN l.escrows e ON e.request_txid = c.request_txid
        WHERE c.state = 'waiting' AND (e.outcome IS NULL OR e.outcome <> 0)),
      (SELECT count(*) FROM l.escrows e WHERE e.outcome = 0 AND NOT EXISTS
        (SELECT 1 FROM review_cases c WHERE c.request_txid = e.request_txid AND c.state = 'waiting')),
      (SELECT coalesce(sum(price), 0) FROM review_cases WHERE state = 'waiting'),
      (SELECT count(*) FROM review_cases c LEFT JOIN l.escrows e ON e.request_txid = c.request_txid
        WHERE c.state = 'answered' AND (e.outcome IS NULL OR e.outcome <> 1)),
      (SELECT coalesce(sum(price), 0) FROM review_cases WHERE state = 'answered');`).split('|').map(Number);
  assert.equal(intents, 0, `${label}: intents left after recovery`);
  assert.equal(waitingNoEscrow, 0, `${label}: a waiting case without an open escrow`);
  assert.equal(escrowNoCase, 0, `${label}: an open escrow without a waiting case`);
  assert.equal(waitingSum, t.escrowed, `${label}: escrowed ≠ the waiting cases' prices`);
  assert.equal(answeredNotSettled, 0, `${label}: an answered case whose escrow is not settled`);
  assert.equal(paid, org, `${label}: the organisation holds ${org}, answered cases cost ${paid}`);
  return t;
}

test('review steps survive SIGKILL at random moments and in every window between ledger.db and caresync.db',
  { skip, timeout: 900000 }, async (t) => {
    const dataDir = mkdtempSync(join(tmpdir(), 'caresync-review-crash-'));
    let srv;
    try {
      srv = await startServer(ARGS, { dataDir });
      await createStaff(dataDir, 'crash-admin', 'admin');
      const admin = new Client(srv.base);
      await admin.login('crash-admin');
      const orgKey = randomBytes(32).toString('hex');
      assert.equal((await admin.post('/api/admin/orgs', { name: 'Crash Clinic', public_key: orgKey })).status, 201);
      const o = await admin.put(`/api/admin/orgs/${orgKey}/offer`, { price: 1, answer_hours: 48, conditions: ['fungal'], regions: ['*'] });
      assert.equal(o.status, 200, o.text);
      await createStaff(dataDir, 'crash-clin', 'clinician');
      assert.equal((await admin.put('/api/admin/users/crash-clin/org', { org: orgKey })).status, 200);
      const clinician = new Client(srv.base);
      await clinician.login('crash-clin');
      const people = [];
      for (let i = 0; i < PEOPLE; i++) people.push(await fundedPerson(srv, `crash-p${i}`));
      // Rewards are paid by a queue: wait until every contribution is minted.
      let supply = 0;
      for (let i = 0; i < 100; i++) {
        supply = (await admin.get('/api/ledger')).json.totals.supply;
        if (supply === PEOPLE * CONTRIBUTIONS * 10) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      assert.equal(supply, PEOPLE * CONTRIBUTIONS * 10);
      await invariants(srv, people, orgKey, supply, 'before any kill');

      let rng = 20261203;
      const rand = (n) => { rng = (rng * 1103515245 + 12345) & 0x7fffffff; return rng % n; };
      const stats = { request: 0, answer: 0, return: 0, withdraw: 0, revoke: 0 };
      const unexpected = [];
      const hit = [];
      const missed = [];
      const plan = [...WINDOWS, ...Array(RANDOM_KILLS).fill(null)];
      let kills = 0;
      let recovered = 0;
      for (const [k, window] of plan.entries()) {
        // A named window: restart with it armed (the server kills itself on
        // reaching it; a binary built without crash points never does, and
        // is killed from here after 3 s).
        if (window) {
          await srv.stop();
          srv = await startServer(ARGS, { dataDir, env: { CARESYNC_CRASH_AT: window } });
        }
        for (const c of [admin, clinician, ...people.map((p) => p.c)]) c.base = srv.base;
        const loading = traffic(people, clinician, orgKey, rand, stats, unexpected);
        let timedOut = false;
        if (window) {
          const timer = setTimeout(() => { timedOut = true; srv.proc.kill('SIGKILL'); }, 3000);
          const exit = await srv.exited;
          clearTimeout(timer);
          assert.equal(exit.signal, 'SIGKILL');
          (timedOut ? missed : hit).push(window);
        } else {
          await new Promise((r) => setTimeout(r, 40 + rand(500)));
          srv.proc.kill('SIGKILL');
          assert.equal((await srv.exited).signal, 'SIGKILL');
        }
        kills++;
        await loading;
        const how = window || 'random';
        const v = verify(dataDir);
        assert.ok(v.ok, `verify after kill ${k + 1} (${how}): ${v.out}`);
        srv = await startServer(ARGS, { dataDir });
        const resolved = /review recovery: (\d+) interrupted/.exec(srv.stderr);
        if (resolved) recovered += Number(resolved[1]);
        for (const c of [admin, clinician, ...people.map((p) => p.c)]) c.base = srv.base;
        await invariants(srv, people, orgKey, supply, `after kill ${k + 1} (${how})`);
      }
      for (const c of [admin, clinician, ...people.map((p) => p.c)]) c.base = srv.base;
      await invariants(srv, people, orgKey, supply, 'at the end');
      assert.deepEqual(unexpected, [], 'answers other than 200/201/404/409 under crash traffic');
      assert.ok(stats.request > 20 && stats.answer > 5, `traffic too light: ${JSON.stringify(stats)}`);
      // A test build (CARESYNC_CRASH_POINTS) must have died in every window.
      if (hit.length) assert.deepEqual(missed, [], `windows never reached: ${missed.join(', ')}`);
      t.diagnostic(`${kills} kills (${RANDOM_KILLS} random, ${hit.length} in named windows: ${hit.join(' ')}` +
        `${missed.length ? `; not compiled in / missed: ${missed.join(' ')}` : ''}); ${recovered} interrupted steps ` +
        `resolved by recovery; steps acknowledged: ${JSON.stringify(stats)}`);
      await srv.stop();
      const v = verify(dataDir);
      assert.ok(v.ok, v.out);
    } finally {
      if (srv) await srv.stop('SIGKILL');
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

test('an answer cut off by a crash is contributed once, and its withdrawal tag reaches the vault',
  { skip, timeout: 300000 }, async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'caresync-review-feed-crash-'));
    let srv;
    try {
      srv = await startServer(ARGS, { dataDir });
      await createStaff(dataDir, 'feed-admin', 'admin');
      const admin = new Client(srv.base);
      await admin.login('feed-admin');
      const orgKey = randomBytes(32).toString('hex');
      assert.equal((await admin.post('/api/admin/orgs', { name: 'Feed Clinic', public_key: orgKey })).status, 201);
      const o = await admin.put(`/api/admin/orgs/${orgKey}/offer`, { price: 1, answer_hours: 48, conditions: ['fungal'], regions: ['*'] });
      assert.equal(o.status, 200, o.text);
      await createStaff(dataDir, 'feed-clin', 'clinician');
      assert.equal((await admin.put('/api/admin/users/feed-clin/org', { org: orgKey })).status, 200);
      const clinician = new Client(srv.base);
      await clinician.login('feed-clin');
      const imgs = photos();
      const screen = async (c, img) => {
        const f = new FormData();
        f.append('photo', new Blob([img]), 'photo.jpg');
        const s = await c.post('/api/screenings', f, { raw: true });
        assert.equal(s.status, 201, s.text);
        return s.json.screening.id;
      };
      const settled = async (c, want) => {
        for (let i = 0; i < 50 && (await walletBalance(c)) !== want; i++) await new Promise((r) => setTimeout(r, 100));
        await new Promise((r) => setTimeout(r, 300));
        assert.equal(await walletBalance(c), want);
      };
      const confirmed = (region) => Number(sql(dataDir,
        `SELECT coalesce(sum(n), 0) FROM surveil_counts WHERE region = '${region}' AND source = 2`));
      const windows = ['review_after_settle', 'review_after_feed'];
      for (const [i, window] of windows.entries()) {
        const region = ['US-NV', 'US-OR'][i];
        const c = new Client(srv.base);
        await c.signup(`feed-p${i}`);
        const prof = await c.put('/api/profile', { display_name: 'Feed', birth_year: 1980, sex: 'unspecified', region });
        assert.equal(prof.status, 200, prof.text);
        const g = await c.post('/api/consents', { scope: ['screening'], purpose: 'public_health_surveillance' });
        assert.equal(g.status, 201, g.text);
        // Tokens from one screening share (not the photo sent for review).
        let k;
        for (let j = 1; j < imgs.length && k?.status !== 201; j++) {
          k = await c.post(`/api/screenings/${await screen(c, imgs[j])}/contribute`, {});
          assert.ok(k.status === 201 || k.status === 422, k.text);
        }
        assert.equal(k.status, 201, k.text);
        await settled(c, 10);
        const saved = await c.post(`/api/screenings/${await screen(c, imgs[0])}/save`, { with_photo: true });
        assert.equal(saved.status, 201, saved.text);
        const req = await c.post('/api/review/requests', { record_id: saved.json.record.id, org: orgKey, share: {} });
        assert.equal(req.status, 201, req.text);
        assert.equal(req.json.request.contribution.status, 'pending');
        const id = req.json.request.id;

        await srv.stop();
        srv = await startServer(ARGS, { dataDir, env: { CARESYNC_CRASH_AT: window } });
        for (const x of [admin, clinician, c]) x.base = srv.base;
        let answered = null;
        try {
          answered = await clinician.post(`/api/review/cases/${id}/answer`,
            { condition: 'fungal', urgency: 'self_care', advice: 'Antifungal cream.' });
        } catch { /* the server died in the window */ }
        if (answered) { // a build without crash points: the answer simply went through
          assert.equal(answered.status, 200, answered.text);
          await srv.stop();
        } else {
          assert.equal((await srv.exited).signal, 'SIGKILL');
        }
        const v = verify(dataDir);
        assert.ok(v.ok, `verify after ${window}: ${v.out}`);
        srv = await startServer(ARGS, { dataDir });
        for (const x of [admin, clinician, c]) x.base = srv.base;
        if (!answered) assert.match(srv.stderr, /review recovery: 1 interrupted/, window);

        const got = await c.get(`/api/review/requests/${id}`);
        assert.equal(got.status, 200, got.text);
        assert.equal(got.json.request.state, 'answered', window);
        assert.equal(got.json.request.contribution.status, 'counted', `${window}: ${got.text}`);
        assert.equal(got.json.request.contribution.reward, 10);
        assert.equal(confirmed(region), 1, `${window}: counted once`);
        await settled(c, 19); // 10 - 1 for the review + 10 for the confirmation, once
        assert.equal(Number(sql(dataDir, 'SELECT count(*) FROM review_intents')), 0);
        // The tag reached the vault: the revocation takes the confirmed count back too.
        const rv = await c.post(`/api/consents/${g.json.consent.id}/revoke`);
        assert.equal(rv.status, 200, rv.text);
        assert.deepEqual(rv.json.contributions, { withdrawn: 2, in_released_weeks: 0 }, window);
        assert.equal(confirmed(region), 0, `${window}: withdrawn`);
      }
      await srv.stop();
      const v = verify(dataDir);
      assert.ok(v.ok, v.out);
    } finally {
      if (srv) await srv.stop('SIGKILL');
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
