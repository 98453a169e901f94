// Authorisation matrix: every endpoint of docs/API.md × every kind of caller.
//
// MATRIX below is data: one row per endpoint (method, path, body, expected
// status per role). A new endpoint is one new row. All cells run against one
// server; a mismatch fails with the whole matrix printed compactly.
//
// Callers (columns):
//   anonymous  no cookie at all
//   owner      the person who owns the records addressed by {id}
//   other      another person (must not see or touch the owner's records)
//   clinician, analyst, admin   staff accounts made with `caresync admin create-user`
//
// State-changing cells must not break other cells, so rows say what session
// a cell runs with:
//   session: 'shared'    (default) a copy of the role's long-lived session
//   session: 'fresh'     a new log-in to the role's account (for log-out)
//   session: 'throwaway' a brand-new account of the same role (password
//                        change, account deletion)
// Within a row the owner's cell runs last, so the non-owner cells hit the
// owner's record while it still exists; rows with `guard` re-read the owner's
// record after every non-owner cell and require it unchanged.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { isDeepStrictEqual } from 'node:util';
import { randomBytes } from 'node:crypto';
import { startServer, Client, createStaff, errorOf } from './harness.mjs';

const PW = 'correct horse battery';
const PW2 = 'another long passphrase';
const ROLES = ['anonymous', 'owner', 'other', 'clinician', 'analyst', 'admin'];
const STAFF = ['clinician', 'analyst', 'admin'];
const RUN_ORDER = ['anonymous', 'other', 'clinician', 'analyst', 'admin', 'owner']; // owner last
const ROLE_NAME = { owner: 'person', other: 'person', clinician: 'clinician', analyst: 'analyst', admin: 'admin' };
const ERROR_CODE = { 401: 'unauthenticated', 403: 'forbidden', 404: 'not_found', 422: 'validation_failed' };
const HEX64 = /^[0-9a-f]{64}$/;

// Expected statuses, in ROLES order.
const E = (anonymous, owner, other, clinician, analyst, admin) => ({ anonymous, owner, other, clinician, analyst, admin });
const everyone = (s) => E(s, s, s, s, s, s);
const anySession = (s) => E(401, s, s, s, s, s);
const personOnly = (s, other = s) => E(401, s, other, 403, 403, 403);

const NO_CASE = '0'.repeat(32); // a review case id nobody has

const MATRIX = [
  { method: 'GET', path: '/api/health', expect: everyone(200),
    check: (r) => r.json.status === 'ok' && r.json.storage.ok === true },
  { method: 'GET', path: '/api/regions', expect: everyone(200),
    check: (r) => Array.isArray(r.json.countries) && r.json.countries.some((c) => c.code === 'NZ') },
  { method: 'GET', path: '/api/regions?country=NZ', expect: everyone(200),
    check: (r) => r.json.country === 'NZ' && r.json.subdivisions.some((s) => s.code === 'NZ-AUK') },
  { method: 'POST', path: '/api/auth/signup', expect: everyone(201),
    body: (ctx, role) => ({ username: ctx.unique(`su-${role}`), password: PW }),
    check: (r) => r.json.user.role === 'person' && typeof r.json.recovery_code === 'string' && typeof r.json.csrf_token === 'string' },
  // Each role logs in to its own account (anonymous uses the owner's).
  { method: 'POST', path: '/api/auth/login', expect: everyone(200),
    body: (ctx, role) => ({ username: ctx.names[role === 'anonymous' ? 'owner' : role], password: PW }),
    check: (r, ctx, role) => r.json.user.role === ROLE_NAME[role === 'anonymous' ? 'owner' : role] && typeof r.json.csrf_token === 'string' },
  // One throwaway person; each cell spends the current recovery code and the
  // response's new code feeds the next cell.
  { method: 'POST', path: '/api/auth/reset', expect: everyone(200),
    body: (ctx) => ({ username: ctx.reset.username, recovery_code: ctx.reset.code, new_password: PW2 }),
    after: (ctx, r) => { if (r.json && r.json.recovery_code) ctx.reset.code = r.json.recovery_code; },
    check: (r) => typeof r.json.recovery_code === 'string' },
  { method: 'GET', path: '/api/session', expect: anySession(200),
    check: (r, ctx, role) => r.json.user.username === ctx.names[role] && r.json.user.role === ROLE_NAME[role] },
  { method: 'GET', path: '/api/profile', expect: personOnly(200),
    check: (r) => r.json.profile && 'display_name' in r.json.profile },
  { method: 'PUT', path: '/api/profile', expect: personOnly(200),
    body: (ctx, role) => ({ display_name: `matrix ${role}`, birth_year: 1980, sex: 'unspecified', region: 'NZ-AUK' }),
    check: (r, ctx, role) => r.json.profile.display_name === `matrix ${role}` },
  { method: 'GET', path: '/api/records', expect: personOnly(200),
    check: (r, ctx, role) => Array.isArray(r.json.records) &&
      (role !== 'owner' || r.json.records.some((x) => x.id === ctx.records.ownerRecord)) &&
      (role !== 'other' || !r.json.records.some((x) => x.id === ctx.records.ownerRecord)) },
  { method: 'POST', path: '/api/records', expect: personOnly(201),
    body: (ctx, role) => ({ kind: 'note', title: `created by ${role}` }),
    check: (r) => /^[0-9a-f]{32}$/.test(r.json.record.id) },
  { method: 'GET', path: '/api/records/{id}', expect: personOnly(200, 404), guard: 'ownerRecord',
    check: (r, ctx) => r.json.record.id === ctx.records.ownerRecord },
  { method: 'PUT', path: '/api/records/{id}', expect: personOnly(200, 404), guard: 'ownerRecord',
    body: (ctx, role) => ({ kind: 'condition', title: `overwritten by ${role}`, details: 'attacker text' }),
    check: (r, ctx) => r.json.record.id === ctx.records.ownerRecord && r.json.record.title === 'overwritten by owner' },
  { method: 'DELETE', path: '/api/records/{id}', expect: personOnly(200, 404), guard: 'victimRecord',
    check: (r) => r.json.deleted === true },
  // The owner's record has no photo: 404 for everyone with a person session.
  { method: 'GET', path: '/api/records/{id}/photo', expect: personOnly(404, 404), guard: 'ownerRecord' },
  { method: 'POST', path: '/api/records/{id}/anchor', expect: personOnly(201, 404), guard: 'ownerRecord',
    check: (r) => /^[0-9a-f]{64}$/.test(r.json.anchor.commitment) },
  { method: 'GET', path: '/api/records/{id}/anchor', expect: personOnly(200, 404), guard: 'ownerRecord',
    check: (r) => r.json.format === 'caresync-record-anchor-v2' && JSON.parse(r.json.record_text).title === 'overwritten by owner' },
  { method: 'GET', path: '/api/export', expect: personOnly(200),
    check: (r, ctx, role) => r.json.format === 'caresync-export-1' && r.json.user.username === ctx.names[role] &&
      /attachment/.test(r.headers.get('content-disposition') || '') },
  { method: 'GET', path: '/api/admin/users', expect: E(401, 403, 403, 403, 403, 200),
    check: (r, ctx) => r.json.users.some((u) => u.username === ctx.names.owner && u.role === 'person') &&
      r.json.users.every((u) => Object.keys(u).sort().join() === 'created_at,role,username') },
  // Ledger: wallet (every account has one), consents (persons only), the
  // public explorer (no login needed), organisations (admin only).
  { method: 'GET', path: '/api/wallet', expect: anySession(200),
    check: (r) => HEX64.test(r.json.wallet.public_key) && r.json.wallet.balance === 0 && r.json.wallet.escrowed === 0 &&
      r.json.wallet.history.some((h) => h.kind === 'register_wallet') },
  { method: 'POST', path: '/api/wallet/transfer', expect: anySession(422),
    body: (ctx) => ({ to: ctx.ownerWallet, amount: 1 }) }, // nobody has tokens yet: insufficient balance
  { method: 'POST', path: '/api/wallet/redeem', expect: anySession(422), body: () => ({ amount: 1 }) },
  { method: 'GET', path: '/api/consents', expect: personOnly(200),
    check: (r, ctx, role) => Array.isArray(r.json.consents) &&
      (role === 'owner') === r.json.consents.some((x) => x.id === ctx.consent) },
  { method: 'POST', path: '/api/consents', expect: personOnly(201),
    body: () => ({ scope: ['screening'], purpose: 'public_health_surveillance', expires_in_days: 30 }),
    check: (r) => r.json.consent.status === 'active' && HEX64.test(r.json.receipt.txid) },
  { method: 'GET', path: '/api/consents/{consent}/receipt', expect: personOnly(200, 404),
    check: (r, ctx) => r.json.format === 'caresync-consent-receipt-v2' && r.json.consent.id === ctx.consent &&
      r.json.proof.txid === ctx.consent && /attachment/.test(r.headers.get('content-disposition') || '') },
  { method: 'POST', path: '/api/consents/{consent}/revoke', expect: personOnly(200, 404),
    check: (r, ctx) => r.json.consent.id === ctx.consent && r.json.consent.status === 'revoked' },
  { method: 'GET', path: '/api/ledger', expect: everyone(200),
    check: (r) => HEX64.test(r.json.node_key) && r.json.tree_head.tree_size > 1 },
  { method: 'GET', path: '/api/ledger/blocks?limit=3', expect: everyone(200),
    check: (r) => r.json.blocks.length === 3 && r.json.blocks[0].height > r.json.blocks[1].height },
  { method: 'GET', path: '/api/ledger/blocks/0', expect: everyone(200),
    check: (r) => r.json.block.height === 0 && r.json.transactions[0].kind === 'params' },
  { method: 'GET', path: '/api/ledger/tx/{consent}', expect: everyone(200),
    check: (r, ctx) => r.json.transaction.txid === ctx.consent && r.json.transaction.kind === 'grant_consent' },
  { method: 'GET', path: '/api/ledger/proof/{consent}', expect: everyone(200),
    check: (r, ctx) => r.json.proof.txid === ctx.consent && Array.isArray(r.json.proof.path) },
  { method: 'GET', path: '/api/ledger/consistency?from=2', expect: everyone(200),
    check: (r) => r.json.consistency.from === 2 && HEX64.test(r.json.consistency.from_root) },
  { method: 'GET', path: '/api/ledger/orgs', expect: everyone(200), check: (r) => Array.isArray(r.json.organisations) },
  { method: 'POST', path: '/api/admin/orgs', expect: E(401, 403, 403, 403, 403, 201),
    body: (ctx, role) => ({ name: `Matrix Org ${role}`, public_key: randomBytes(32).toString('hex') }),
    check: (r) => r.json.organisation.name === 'Matrix Org admin' && HEX64.test(r.json.receipt.txid) },
  // Screenings (persons only). Not a photo: refused before any model runs,
  // so the row holds with or without a model installed.
  { method: 'POST', path: '/api/screenings', expect: personOnly(422), codes: { 422: 'not_an_image' },
    body: () => { const f = new FormData(); f.append('photo', new Blob([Buffer.from('not a photo at all')]), 'x.jpg'); return f; },
    opts: { raw: true } },
  { method: 'GET', path: '/api/screenings/0123456789abcdef0123456789abcdef', expect: personOnly(404) },
  { method: 'POST', path: '/api/screenings/0123456789abcdef0123456789abcdef/save', expect: personOnly(404),
    body: () => ({ with_photo: true }) },
  // Surveillance: analysts and admins only; organisations by token only.
  { method: 'GET', path: '/api/surveil/overview', expect: E(401, 403, 403, 403, 200, 200),
    check: (r) => Array.isArray(r.json.conditions) && r.json.k === 11 },
  { method: 'GET', path: '/api/surveil/weeks?to=2026-W02&count=3', expect: E(401, 403, 403, 403, 200, 200),
    check: (r) => r.json.weeks.join() === '2025-W52,2026-W01,2026-W02' },
  { method: 'GET', path: '/api/surveil/aggregates?country=US', expect: E(401, 403, 403, 403, 200, 200),
    check: (r) => r.json.country === 'US' && r.json.k === 11 && Array.isArray(r.json.weeks) },
  { method: 'GET', path: '/api/surveil/series?region=US-CA', expect: E(401, 403, 403, 403, 200, 200),
    check: (r) => r.json.region === 'US-CA' && r.json.weeks.length === r.json.observed.length },
  // ?source= (issue 13): a release by source is analysts' and admins' too.
  { method: 'GET', path: '/api/surveil/aggregates?country=US&source=breakdown', expect: E(401, 403, 403, 403, 200, 200),
    check: (r) => r.json.by_source.map((x) => x.source).join() === 'model,self_reported,clinician_confirmed' },
  { method: 'GET', path: '/api/surveil/series?region=US-CA&source=clinician_confirmed',
    expect: E(401, 403, 403, 403, 200, 200), check: (r) => r.json.source === 'clinician_confirmed' },
  { method: 'GET', path: '/api/surveil/alerts', expect: E(401, 403, 403, 403, 200, 200),
    check: (r) => Array.isArray(r.json.alerts) },
  { method: 'POST', path: '/api/surveil/alerts/999999/ack', expect: E(401, 403, 403, 403, 404, 404), body: () => ({}) },
  { method: 'POST', path: '/api/screenings/0123456789abcdef0123456789abcdef/contribute', expect: personOnly(404),
    body: () => ({}) },
  { method: 'POST', path: `/api/admin/orgs/${'ab'.repeat(32)}/tokens`, expect: E(401, 403, 403, 403, 403, 404),
    body: () => ({}) },
  { method: 'GET', path: '/api/v1/aggregates?country=US', expect: everyone(401), codes: { 401: 'unauthenticated' } },
  // Clinician review (issue 13): offers set by admins for a registered
  // organisation ({org}), listed to anyone signed in; clinicians' organisation.
  { method: 'PUT', path: '/api/admin/orgs/{org}/offer', expect: E(401, 403, 403, 403, 403, 200),
    body: () => ({ price: 20, answer_hours: 48, conditions: ['fungal'], regions: ['NZ'] }),
    check: (r, ctx) => r.json.offer.organisation.key === ctx.reviewOrg && r.json.offer.price === 20 },
  { method: 'GET', path: '/api/review/offers?condition=fungal&country=NZ', expect: anySession(200),
    check: (r, ctx) => r.json.offers.some((o) => o.organisation.key === ctx.reviewOrg) },
  { method: 'GET', path: '/api/review/conditions', expect: anySession(200),
    check: (r) => r.json.conditions.some((c) => c.code === 'fungal' && typeof c.name === 'string' && c.name.length > 0) },
  { method: 'DELETE', path: '/api/admin/orgs/{org}/offer', expect: E(401, 403, 403, 403, 403, 200),
    check: (r) => r.json.withdrawn === true },
  { method: 'PUT', path: '/api/admin/users/{clinician}/org', expect: E(401, 403, 403, 403, 403, 200),
    body: (ctx) => ({ org: ctx.reviewOrg }),
    check: (r, ctx) => r.json.organisation.key === ctx.reviewOrg },
  // Review cases (issue 13). The matrix's owner has no photo record and no
  // tokens and no case exists, so these rows prove who gets past the
  // door; the workflow itself is tests/integration/review_cases.test.mjs.
  { method: 'POST', path: '/api/review/requests', expect: personOnly(422, 404), codes: { 422: 'no_photo' },
    body: (ctx) => ({ record_id: ctx.records.ownerRecord, org: ctx.reviewOrg }) },
  { method: 'GET', path: '/api/review/requests', expect: personOnly(200),
    check: (r) => Array.isArray(r.json.requests) && r.json.requests.length === 0 },
  { method: 'GET', path: `/api/review/requests/${NO_CASE}`, expect: personOnly(404) },
  { method: 'POST', path: `/api/review/requests/${NO_CASE}/withdraw`, expect: personOnly(404) },
  { method: 'POST', path: `/api/review/requests/${NO_CASE}/revoke`, expect: personOnly(404) },
  { method: 'GET', path: '/api/review/queue', expect: E(401, 403, 403, 200, 403, 403),
    check: (r) => Array.isArray(r.json.queue) },
  { method: 'GET', path: `/api/review/cases/${NO_CASE}`, expect: E(401, 403, 403, 404, 403, 403) },
  { method: 'POST', path: `/api/review/cases/${NO_CASE}/answer`, expect: E(401, 403, 403, 404, 403, 403),
    body: () => ({ condition: 'fungal', urgency: 'self_care', advice: 'Keep it dry.' }) },
  { method: 'POST', path: `/api/review/cases/${NO_CASE}/return`, expect: E(401, 403, 403, 404, 403, 403),
    body: () => ({ reason: 'photo not usable' }) },
  // Data requests (issue 14): admins credit and approve; persons list and
  // accept; the organisation's own endpoints take its bearer token only (the
  // token × token cells are the test after the matrix).
  { method: 'POST', path: '/api/admin/orgs/{org}/credit', expect: E(401, 403, 403, 403, 403, 201),
    body: () => ({ amount: 10, reference: 'MATRIX-1' }),
    check: (r, ctx) => r.json.organisation.key === ctx.reviewOrg && r.json.balance >= 10 && HEX64.test(r.json.txid) },
  { method: 'GET', path: '/api/admin/market/requests', expect: E(401, 403, 403, 403, 403, 200),
    check: (r) => Array.isArray(r.json.requests) },
  { method: 'POST', path: `/api/admin/market/requests/${NO_CASE}/approve`, expect: E(401, 403, 403, 403, 403, 404),
    body: () => ({}) },
  { method: 'GET', path: '/api/market/requests', expect: personOnly(200),
    check: (r) => Array.isArray(r.json.requests) && r.json.daily_cap.earned_today === 0 },
  { method: 'POST', path: `/api/market/requests/${NO_CASE}/accept`, expect: personOnly(404), body: () => ({}) },
  { method: 'GET', path: '/api/v1/requests', expect: everyone(401) },
  { method: 'GET', path: `/api/v1/requests/${NO_CASE}`, expect: everyone(401) },
  { method: 'GET', path: `/api/v1/requests/${NO_CASE}/dataset?format=csv`, expect: everyone(401) },
  { method: 'GET', path: '/api/market/participations', expect: personOnly(200),
    check: (r) => Array.isArray(r.json.participations) },
  // The organisation's page (issue 14): the same handlers for a signed-in
  // analyst of an organisation. Here the analyst has none and the clinician
  // (put in {org} above) reviews, so both are refused; the member's cells
  // are the test after the matrix.
  { method: 'GET', path: '/api/org/credit', expect: E(401, 403, 403, 403, 403, 403) },
  { method: 'GET', path: '/api/org/requests', expect: E(401, 403, 403, 403, 403, 403) },
  { method: 'POST', path: '/api/org/requests', expect: E(401, 403, 403, 403, 403, 403),
    body: () => ({ title: 'matrix', purpose_text: 'authz', purpose: 'research', categories: ['demographics'], price: 1,
      max_participants: 1, closes: new Date(Date.now() + 86400e3).toISOString().replace(/\.\d+Z$/, 'Z') }) },
  { method: 'GET', path: `/api/org/requests/${NO_CASE}`, expect: E(401, 403, 403, 403, 403, 403) },
  { method: 'POST', path: `/api/org/requests/${NO_CASE}/withdraw`, expect: E(401, 403, 403, 403, 403, 403),
    body: () => ({}) },
  { method: 'GET', path: `/api/org/requests/${NO_CASE}/dataset?format=csv`, expect: E(401, 403, 403, 403, 403, 403) },
  { method: 'POST', path: '/api/auth/logout', expect: anySession(200), session: 'fresh',
    check: (r) => r.json.ok === true && /cs_session=;/.test(r.headers.get('set-cookie') || '') },
  { method: 'POST', path: '/api/account/password', expect: anySession(200), session: 'throwaway',
    body: () => ({ current_password: PW, new_password: PW2 }), check: (r) => r.json.ok === true },
  // Ends the account's other sessions: a throwaway account, so the shared ones live.
  { method: 'POST', path: '/api/account/sessions/revoke-others', expect: anySession(200), session: 'throwaway',
    check: (r) => r.json.ended === 0 },
  { method: 'DELETE', path: '/api/account', expect: anySession(200), session: 'throwaway',
    body: () => ({ password: PW }), check: (r) => r.json.deleted === true },
];

let srv;
const ctx = {
  names: {}, clients: {}, records: {}, snapshots: {}, reset: {},
  seq: 0,
  unique(prefix) { return `${prefix}-${process.pid % 1000}-${++this.seq}`.slice(0, 32); },
};
const results = new Map(); // row label -> { role -> { got, ok, note } }

function labelOf(row) { return `${row.method} ${row.path}`; }
function pathOf(row) {
  const p = row.path.replace('{consent}', ctx.consent).replace('{org}', ctx.reviewOrg)
    .replace('{clinician}', ctx.names.clinician);
  if (!p.includes('{id}')) return p;
  return p.replace('{id}', ctx.records[row.guard || 'ownerRecord']);
}
function cloneOf(c) { const n = new Client(c.base); n.cookie = c.cookie; n.csrf = c.csrf; return n; }

async function loginClient(username, password = PW) {
  const c = new Client(srv.base);
  await c.login(username, password);
  return c;
}

// A client for one cell, per the row's session policy.
async function sessionFor(row, role) {
  if (role === 'anonymous') return new Client(srv.base);
  const policy = row.session || 'shared';
  if (policy === 'shared') return cloneOf(ctx.clients[role]);
  if (policy === 'fresh') return loginClient(ctx.names[role]);
  // throwaway: a new account with the same role
  const name = ctx.unique(`tmp-${role}`);
  if (STAFF.includes(role)) {
    await createStaff(srv.dataDir, name, role, PW);
    return loginClient(name);
  }
  const c = new Client(srv.base);
  await c.signup(name, PW);
  return c;
}

function renderMatrix() {
  const rows = MATRIX.map((row) => {
    const res = results.get(labelOf(row)) || {};
    return [labelOf(row), ...ROLES.map((role) => {
      const cell = res[role];
      if (!cell) return '-';
      return cell.ok ? String(cell.got) : `✗${cell.got}≠${row.expect[role]}${cell.note ? ` (${cell.note})` : ''}`;
    })];
  });
  const head = ['endpoint', ...ROLES];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const fmt = (r) => r.map((v, i) => v.padEnd(widths[i])).join('  ').trimEnd();
  return [fmt(head), ...rows.map(fmt)].join('\n');
}

async function snapshot(key) {
  const r = await ctx.clients.owner.get(`/api/records/${ctx.records[key]}`);
  assert.equal(r.status, 200, `owner cannot read ${key}: ${r.text}`);
  ctx.snapshots[key] = r.json.record;
}

before(async () => {
  srv = await startServer();
  for (const role of ['owner', 'other']) {
    ctx.names[role] = ctx.unique(role);
    ctx.clients[role] = new Client(srv.base);
    await ctx.clients[role].signup(ctx.names[role], PW);
  }
  for (const role of STAFF) {
    ctx.names[role] = ctx.unique(`staff-${role}`);
    await createStaff(srv.dataDir, ctx.names[role], role, PW);
    ctx.clients[role] = await loginClient(ctx.names[role]);
  }
  const owner = ctx.clients.owner;
  for (const [key, title] of [['ownerRecord', 'owner private condition'], ['victimRecord', 'owner record to delete']]) {
    const r = await owner.post('/api/records', { kind: 'condition', title, details: 'private details', onset: '2020-01-02' });
    assert.equal(r.status, 201, r.text);
    ctx.records[key] = r.json.record.id;
    await snapshot(key);
  }
  // The owner has a consent on the ledger; the other person one of their own.
  const g = await owner.post('/api/consents', { scope: ['screening', 'symptoms'], purpose: 'public_health_surveillance' });
  assert.equal(g.status, 201, g.text);
  ctx.consent = g.json.consent.id;
  const og = await ctx.clients.other.post('/api/consents', { scope: ['conditions'], purpose: 'research' });
  assert.equal(og.status, 201, og.text);
  ctx.ownerWallet = (await owner.get('/api/wallet')).json.wallet.public_key;
  // The other person has a record too, so "not yours" is not "nobody has any".
  const o = await ctx.clients.other.post('/api/records', { kind: 'note', title: 'other person note' });
  assert.equal(o.status, 201, o.text);
  // An organisation on the ledger, for the review-offer rows.
  ctx.reviewOrg = randomBytes(32).toString('hex');
  const ro = await ctx.clients.admin.post('/api/admin/orgs', { name: 'Matrix Review Clinic', public_key: ctx.reviewOrg });
  assert.equal(ro.status, 201, ro.text);
  ctx.reset.username = ctx.unique('reset');
  const s = await new Client(srv.base).signup(ctx.reset.username, PW);
  ctx.reset.code = s.json.recovery_code;
});

after(async () => {
  if (srv) { await srv.stop(); srv.cleanup(); }
});

test('authorisation matrix: every endpoint × every role', async () => {
  const problems = [];
  for (const row of MATRIX) {
    const label = labelOf(row);
    const res = {};
    results.set(label, res);
    for (const role of RUN_ORDER) {
      const client = await sessionFor(row, role);
      const body = typeof row.body === 'function' ? row.body(ctx, role) : row.body;
      const opts = typeof row.opts === 'function' ? row.opts(ctx, role) : row.opts;
      const r = await client.req(row.method, pathOf(row), body, opts);
      const want = row.expect[role];
      const cell = { got: r.status, ok: r.status === want, note: '' };
      if (cell.ok && want >= 400) {
        let code;
        try { code = errorOf(r).code; } catch { code = 'not-an-error-body'; }
        if (code !== ((row.codes && row.codes[want]) || ERROR_CODE[want])) { cell.ok = false; cell.note = code; }
      } else if (cell.ok && row.check) {
        let good = false;
        try { good = row.check(r, ctx, role); } catch { good = false; }
        if (!good) { cell.ok = false; cell.note = 'body'; }
      }
      if (row.after) row.after(ctx, r);
      // The owner's record must be untouched by everyone but the owner.
      if (row.guard) {
        const g = await ctx.clients.owner.get(`/api/records/${ctx.records[row.guard]}`);
        if (role !== 'owner') {
          if (g.status !== 200 || !isDeepStrictEqual(g.json.record, ctx.snapshots[row.guard])) {
            cell.ok = false;
            cell.note = `owner's record changed: ${g.status} ${g.text.slice(0, 120)}`;
          }
        } else if (row.method === 'DELETE') {
          if (g.status !== 404) { cell.ok = false; cell.note = `record still there after delete: ${g.status}`; }
        } else if (g.status === 200) {
          ctx.snapshots[row.guard] = g.json.record;
        }
      }
      if (!cell.ok) problems.push(`${label} as ${role}: expected ${want}, got ${r.status} ${r.text.slice(0, 200)}`);
      res[role] = cell;
    }
  }
  assert.equal(problems.length, 0, `\n${renderMatrix()}\n\n${problems.join('\n')}`);
});

test('the shared sessions are all still alive after the matrix', async () => {
  for (const role of ['owner', 'other', ...STAFF]) {
    const r = await ctx.clients[role].get('/api/session');
    assert.equal(r.status, 200, `${role}: ${r.text}`);
    assert.equal(r.json.user.username, ctx.names[role]);
  }
});

test('a person cannot reach another person\'s record in either direction', async () => {
  const mine = await ctx.clients.other.get('/api/records');
  const otherId = mine.json.records.find((x) => x.title === 'other person note').id;
  for (const [method, body] of [['GET'], ['PUT', { kind: 'note', title: 'hijack' }], ['DELETE']]) {
    const r = await ctx.clients.owner.req(method, `/api/records/${otherId}`, body);
    assert.equal(r.status, 404, `${method}: ${r.text}`);
    assert.equal(errorOf(r).code, 'not_found');
  }
  const after = await ctx.clients.other.get(`/api/records/${otherId}`);
  assert.equal(after.status, 200);
  assert.equal(after.json.record.title, 'other person note');
  // Not leaked through the list or the export either.
  const list = await ctx.clients.owner.get('/api/records');
  assert.ok(!list.json.records.some((x) => x.id === otherId));
  const exp = await ctx.clients.owner.get('/api/export');
  assert.ok(!exp.text.includes(otherId));
});

test('sign-up cannot choose a role: extra fields do not escalate', async () => {
  const c = new Client(srv.base);
  const name = ctx.unique('wannabe');
  const r = await c.post('/api/auth/signup', { username: name, password: PW, role: 'admin', user: { role: 'admin' } });
  assert.equal(r.status, 201, r.text);
  assert.deepEqual(r.json.user, { username: name, role: 'person' });
  assert.equal((await c.get('/api/admin/users')).status, 403);
  const s = await c.get('/api/session');
  assert.equal(s.json.user.role, 'person');
  const users = (await ctx.clients.admin.get('/api/admin/users')).json.users;
  assert.deepEqual(users.filter((u) => u.username === name).map((u) => u.role), ['person']);
  assert.ok(users.every((u) => /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/.test(u.created_at)), 'created_at is RFC 3339 UTC');
});

// CSRF: every state-changing endpoint that runs with a session. Each attempt
// carries a body that WOULD succeed with the right token, against a dedicated
// victim account, and afterwards nothing may have changed.
const CSRF_ROWS = MATRIX.filter((row) => row.method !== 'GET' && row.expect.anonymous === 401);

test('CSRF rows cover every state-changing session endpoint', () => {
  const labels = CSRF_ROWS.map(labelOf).sort();
  assert.deepEqual(labels, [
    'DELETE /api/account', 'DELETE /api/admin/orgs/{org}/offer', 'DELETE /api/records/{id}', 'POST /api/account/password',
    'POST /api/account/sessions/revoke-others', `POST /api/admin/market/requests/${NO_CASE}/approve`,
    'POST /api/admin/orgs', `POST /api/admin/orgs/${'ab'.repeat(32)}/tokens`, 'POST /api/admin/orgs/{org}/credit',
    'POST /api/auth/logout', 'POST /api/consents', 'POST /api/consents/{consent}/revoke',
    `POST /api/market/requests/${NO_CASE}/accept`, 'POST /api/org/requests', `POST /api/org/requests/${NO_CASE}/withdraw`,
    'POST /api/records', 'POST /api/records/{id}/anchor',
    `POST /api/review/cases/${NO_CASE}/answer`, `POST /api/review/cases/${NO_CASE}/return`,
    'POST /api/review/requests', `POST /api/review/requests/${NO_CASE}/revoke`,
    `POST /api/review/requests/${NO_CASE}/withdraw`,
    'POST /api/screenings',
    'POST /api/screenings/0123456789abcdef0123456789abcdef/contribute',
    'POST /api/screenings/0123456789abcdef0123456789abcdef/save',
    'POST /api/surveil/alerts/999999/ack',
    'POST /api/wallet/redeem', 'POST /api/wallet/transfer',
    'PUT /api/admin/orgs/{org}/offer', 'PUT /api/admin/users/{clinician}/org',
    'PUT /api/profile', 'PUT /api/records/{id}',
  ]);
});

test('state-changing requests without the right X-CSRF-Token are 403 csrf_failed and change nothing', async () => {
  const name = ctx.unique('csrf-victim');
  const victim = new Client(srv.base);
  await victim.signup(name, PW);
  const sentinel = await loginClient(name); // would die on password change, deletion
  const rec = await victim.post('/api/records', { kind: 'allergy', title: 'penicillin' });
  assert.equal(rec.status, 201);
  const prof = await victim.put('/api/profile', { display_name: 'Victim', birth_year: 1970, sex: 'female', region: null });
  assert.equal(prof.status, 200);
  const grant = await victim.post('/api/consents', { scope: ['symptoms'], purpose: 'research' });
  assert.equal(grant.status, 201);
  const state = async () => ({
    records: (await victim.get('/api/records')).json,
    profile: (await victim.get('/api/profile')).json,
    consents: (await victim.get('/api/consents')).json,
    wallet: (await victim.get('/api/wallet')).json,
    orgs: (await victim.get('/api/ledger/orgs')).json,
  });
  const before = await state();
  const bodies = {
    'POST /api/auth/logout': undefined,
    'POST /api/account/password': { current_password: PW, new_password: PW2 },
    'POST /api/account/sessions/revoke-others': undefined,
    'DELETE /api/account': { password: PW },
    'PUT /api/profile': { display_name: 'Attacker', birth_year: 2000, sex: 'male', region: null },
    'POST /api/records': { kind: 'note', title: 'forged' },
    'PUT /api/records/{id}': { kind: 'note', title: 'forged' },
    'DELETE /api/records/{id}': undefined,
    'POST /api/consents': { scope: ['screening'], purpose: 'public_health_surveillance' },
    'POST /api/consents/{consent}/revoke': undefined,
    'POST /api/wallet/transfer': { to: ctx.ownerWallet, amount: 1 },
    'POST /api/wallet/redeem': { amount: 1 },
    'POST /api/records/{id}/anchor': undefined,
    'POST /api/screenings': undefined,
    'POST /api/screenings/0123456789abcdef0123456789abcdef/save': { with_photo: true },
    'POST /api/admin/orgs': { name: 'Forged Org', public_key: randomBytes(32).toString('hex') },
    'POST /api/screenings/0123456789abcdef0123456789abcdef/contribute': {},
    'POST /api/surveil/alerts/999999/ack': {},
    [`POST /api/admin/orgs/${'ab'.repeat(32)}/tokens`]: {},
    'PUT /api/admin/orgs/{org}/offer': { price: 1, answer_hours: 1, conditions: ['fungal'], regions: ['*'] },
    'DELETE /api/admin/orgs/{org}/offer': undefined,
    'PUT /api/admin/users/{clinician}/org': { org: null },
    'POST /api/admin/orgs/{org}/credit': { amount: 1, reference: 'FORGED' },
    [`POST /api/admin/market/requests/${NO_CASE}/approve`]: {},
    [`POST /api/market/requests/${NO_CASE}/accept`]: {},
    'POST /api/org/requests': { title: 'forged', purpose_text: 'forged', purpose: 'research', categories: ['demographics'],
      price: 1, max_participants: 1, closes: '2099-01-01T00:00:00Z' },
    [`POST /api/org/requests/${NO_CASE}/withdraw`]: {},
  };
  const variants = {
    'no header': {},
    'wrong token': { 'X-CSRF-Token': randomBytes(32).toString('base64url') },
    'empty token': { 'X-CSRF-Token': '' },
    "another session's token": { 'X-CSRF-Token': ctx.clients.owner.csrf },
    'token with a suffix': { 'X-CSRF-Token': `${victim.csrf}x` },
  };
  const failures = [];
  for (const row of CSRF_ROWS) {
    const label = labelOf(row);
    const path = row.path.replace('{id}', rec.json.record.id).replace('{consent}', grant.json.consent.id)
      .replace('{org}', ctx.reviewOrg).replace('{clinician}', ctx.names.clinician);
    for (const [variant, headers] of Object.entries(variants)) {
      const r = await cloneOf(victim).req(row.method, path, bodies[label], { csrf: false, headers });
      let code = null;
      try { code = errorOf(r).code; } catch { /* reported below */ }
      if (r.status !== 403 || code !== 'csrf_failed') failures.push(`${label} (${variant}): ${r.status} ${r.text.slice(0, 150)}`);
    }
  }
  assert.deepEqual(failures, [], failures.join('\n'));
  // Nothing happened: both sessions alive, password unchanged, data unchanged.
  assert.equal((await victim.get('/api/session')).status, 200, 'victim session ended');
  assert.equal((await sentinel.get('/api/session')).status, 200, 'other session ended (password changed or account deleted?)');
  assert.deepEqual(await state(), before);
  // And the same requests with the token do work (the test is not vacuous).
  const ok = await victim.post('/api/records', bodies['POST /api/records']);
  assert.equal(ok.status, 201);
});

// Data requests (issue 14): an organisation's bearer token reaches its own
// requests only; another organisation's token gets 404 for them; sessions
// (person, analyst, admin) and no credentials get 401 on /api/v1.
test('data-request endpoints: organisation token × another organisation × person × analyst × admin', async () => {
  const admin = ctx.clients.admin;
  const orgs = {};
  for (const name of ['Matrix Requester', 'Matrix Bystander']) {
    const key = randomBytes(32).toString('hex');
    assert.equal((await admin.post('/api/admin/orgs', { name, public_key: key })).status, 201);
    const t = await admin.post(`/api/admin/orgs/${key}/tokens`, {});
    assert.equal(t.status, 201, t.text);
    orgs[name] = { key, token: t.json.token };
  }
  const mine = orgs['Matrix Requester'], theirs = orgs['Matrix Bystander'];
  assert.equal((await admin.post(`/api/admin/orgs/${mine.key}/credit`, { amount: 100, reference: 'M-2' })).status, 201);
  const body = { title: 'matrix', purpose_text: 'authz', purpose: 'research', categories: ['demographics'], price: 1,
    max_participants: 5, closes: new Date(Date.now() + 86400e3).toISOString().replace(/\.\d+Z$/, 'Z') };
  const as = {
    org: (m, p, b) => new Client(srv.base).req(m, p, b, { headers: { Authorization: `Bearer ${mine.token}` } }),
    other_org: (m, p, b) => new Client(srv.base).req(m, p, b, { headers: { Authorization: `Bearer ${theirs.token}` } }),
    bad_token: (m, p, b) => new Client(srv.base).req(m, p, b, { headers: { Authorization: 'Bearer bm90IGEgdG9rZW4' } }),
    person: (m, p, b) => cloneOf(ctx.clients.owner).req(m, p, b),
    analyst: (m, p, b) => cloneOf(ctx.clients.analyst).req(m, p, b),
    admin: (m, p, b) => cloneOf(admin).req(m, p, b),
  };
  const made = await as.org('POST', '/api/v1/requests', body);
  assert.equal(made.status, 201, made.text);
  const id = made.json.request.id;
  const cells = [
    // [method, path, body, {caller: status}], the owning organisation last where it changes state
    ['GET', '/api/v1/requests', undefined,
      { other_org: 200, bad_token: 401, person: 401, analyst: 401, admin: 401, org: 200 }],
    ['GET', `/api/v1/requests/${id}`, undefined,
      { other_org: 404, bad_token: 401, person: 401, analyst: 401, admin: 401, org: 200 }],
    ['POST', '/api/v1/requests', body,
      { other_org: 409, bad_token: 401, person: 401, analyst: 401, admin: 401, org: 201 }],
    ['GET', `/api/v1/requests/${id}/dataset?format=json`, undefined,
      { other_org: 404, bad_token: 401, person: 401, analyst: 401, admin: 401, org: 200 }],
    ['POST', `/api/v1/requests/${id}/withdraw`, {},
      { other_org: 404, bad_token: 401, person: 401, analyst: 401, admin: 401, org: 200 }],
  ];
  const problems = [];
  for (const [method, path, b, want] of cells) {
    for (const [who, status] of Object.entries(want)) {
      const r = await as[who](method, path, b);
      if (r.status !== status) problems.push(`${method} ${path} as ${who}: ${r.status} ≠ ${status} ${r.text.slice(0, 120)}`);
      if (status === 200 && method === 'GET' && path === '/api/v1/requests') {
        const has = r.json.requests.some((x) => x.id === id);
        if (has !== (who === 'org')) problems.push(`${who} ${has ? 'sees' : 'misses'} the request in its list`);
      }
    }
  }
  assert.deepEqual(problems, [], problems.join('\n'));
  // The bystander's probing changed nothing; the owner's withdrawal did.
  const after = await as.org('GET', `/api/v1/requests/${id}`);
  assert.equal(after.json.request.state, 'withdrawn');
});

// The organisation's page (issue 14): an analyst an administrator put in an
// organisation acts for it by session on /api/org — the same handlers as
// the token API. Callers: the member, a member of another organisation, an
// analyst without one (today's analyst), a clinician of the same
// organisation, a person, an administrator, nobody.
test('organisation-page endpoints: member × other member × analyst without org × clinician × person × admin × anonymous', async () => {
  const admin = ctx.clients.admin;
  const orgs = {};
  for (const name of ['Page Requester', 'Page Bystander']) {
    const key = randomBytes(32).toString('hex');
    assert.equal((await admin.post('/api/admin/orgs', { name, public_key: key })).status, 201);
    orgs[name] = key;
  }
  const mine = orgs['Page Requester'], theirs = orgs['Page Bystander'];
  assert.equal((await admin.post(`/api/admin/orgs/${mine}/credit`, { amount: 100, reference: 'PAGE-1' })).status, 201);
  const staff = async (role, org) => {
    const name = ctx.unique(`pg-${role}`);
    await createStaff(srv.dataDir, name, role, PW);
    if (org) {
      const put = await admin.put(`/api/admin/users/${name}/org`, { org });
      assert.equal(put.status, 200, put.text);
      const orgName = org === mine ? 'Page Requester' : 'Page Bystander';
      assert.deepEqual(put.json, { username: name, role, organisation: { key: org, name: orgName } });
    }
    return { name, client: await loginClient(name) };
  };
  const member = await staff('analyst', mine);
  const otherMember = await staff('analyst', theirs);
  const clinician = await staff('clinician', mine);
  assert.deepEqual((await member.client.get('/api/session')).json.user.organisation, { key: mine });
  // An analyst without an organisation is today's analyst: no organisation in its session.
  assert.deepEqual((await ctx.clients.analyst.get('/api/session')).json.user, { username: ctx.names.analyst, role: 'analyst' });
  const as = {
    member: (m, p, b) => cloneOf(member.client).req(m, p, b),
    other_member: (m, p, b) => cloneOf(otherMember.client).req(m, p, b),
    analyst: (m, p, b) => cloneOf(ctx.clients.analyst).req(m, p, b),
    clinician: (m, p, b) => cloneOf(clinician.client).req(m, p, b),
    person: (m, p, b) => cloneOf(ctx.clients.owner).req(m, p, b),
    admin: (m, p, b) => cloneOf(admin).req(m, p, b),
    anonymous: (m, p, b) => new Client(srv.base).req(m, p, b),
  };
  const body = { title: 'page matrix', purpose_text: 'authz', purpose: 'research', categories: ['demographics'], price: 1,
    max_participants: 5, closes: new Date(Date.now() + 86400e3).toISOString().replace(/\.\d+Z$/, 'Z') };
  const made = await as.member('POST', '/api/org/requests', body);
  assert.equal(made.status, 201, made.text);
  assert.equal(made.json.request.organisation.key, mine, 'posted for the member\'s organisation');
  const id = made.json.request.id;
  const refused = { analyst: 403, clinician: 403, person: 403, admin: 403, anonymous: 401 };
  const cells = [
    // [method, path, body, {caller: status}], the member last where it changes state
    ['GET', '/api/org/credit', undefined, { other_member: 200, ...refused, member: 200 }],
    ['GET', '/api/org/requests', undefined, { other_member: 200, ...refused, member: 200 }],
    ['GET', `/api/org/requests/${id}`, undefined, { other_member: 404, ...refused, member: 200 }],
    ['POST', '/api/org/requests', body, { other_member: 409, ...refused, member: 201 }],
    ['GET', `/api/org/requests/${id}/dataset?format=json`, undefined, { other_member: 404, ...refused, member: 200 }],
    ['POST', `/api/org/requests/${id}/withdraw`, {}, { other_member: 404, ...refused, member: 200 }],
  ];
  const CODES = { 401: 'unauthenticated', 403: 'forbidden', 404: 'not_found', 409: 'insufficient_tokens' };
  const problems = [];
  for (const [method, path, b, want] of cells) {
    for (const [who, status] of Object.entries(want)) {
      const r = await as[who](method, path, b);
      if (r.status !== status) problems.push(`${method} ${path} as ${who}: ${r.status} ≠ ${status} ${r.text.slice(0, 120)}`);
      if (r.status === status && status >= 400) {
        let code;
        try { code = errorOf(r).code; } catch { code = 'not-an-error-body'; }
        if (code !== CODES[status]) problems.push(`${method} ${path} as ${who}: code ${code} ≠ ${CODES[status]}`);
      }
      if (r.status === 200 && path === '/api/org/requests') {
        const has = r.json.requests.some((x) => x.id === id);
        if (has !== (who === 'member')) problems.push(`${who} ${has ? 'sees' : 'misses'} the request in its list`);
      }
      if (r.status === 200 && path === '/api/org/credit') {
        const expected = who === 'member' ? [mine, 'Page Requester', 100] : [theirs, 'Page Bystander', 0];
        const got = [r.json.organisation.key, r.json.organisation.name, r.json.balance];
        if (!isDeepStrictEqual(got, expected)) problems.push(`${who}'s credit: ${JSON.stringify(got)}`);
      }
    }
  }
  assert.deepEqual(problems, [], problems.join('\n'));
  // The session POSTs need the CSRF token, as every other.
  const forged = await cloneOf(member.client).req('POST', '/api/org/requests', body, { csrf: false });
  assert.equal(forged.status, 403);
  assert.equal(errorOf(forged).code, 'csrf_failed');
  // The probing changed nothing; the member's withdrawal did.
  assert.equal((await as.member('GET', `/api/org/requests/${id}`)).json.request.state, 'withdrawn');
  // Taken out of the organisation, the member is an analyst like any other at its next request.
  assert.equal((await admin.put(`/api/admin/users/${member.name}/org`, { org: null })).status, 200);
  assert.equal((await as.member('GET', '/api/org/requests')).status, 403);
  assert.equal((await as.member('GET', '/api/surveil/alerts')).status, 200);
  assert.deepEqual((await as.member('GET', '/api/session')).json.user, { username: member.name, role: 'analyst' });
});
