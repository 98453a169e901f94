// Accounts against abuse: sign-ups are limited per client address and write
// nothing permanent (the ledger wallet is registered at its first use); a
// stranger's wrong passwords lock out their own address, not the owner nor
// the owner's recovery-code reset; a person can end their other sessions.
//
// Different client addresses are real: the server listens on 127.0.0.1 and
// the clients connect from other loopback addresses (127.0.0.2, …), so the
// server sees each as its own address.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { startServer, Client, createStaff, errorOf } from './harness.mjs';

const PW = 'correct horse battery';

// The harness Client, sending from a chosen local address (fetch cannot).
class AddrClient extends Client {
  constructor(base, localAddress) { super(base); this.localAddress = localAddress; }
  req(method, path, body, { headers = {}, csrf = true } = {}) {
    const h = { ...headers };
    if (this.cookie) h.Cookie = `cs_session=${this.cookie}`;
    if (csrf && this.csrf && method !== 'GET' && method !== 'HEAD') h['X-CSRF-Token'] = this.csrf;
    let payload;
    if (body !== undefined) { payload = JSON.stringify(body); h['Content-Type'] = 'application/json'; }
    const url = new URL(this.base + path);
    return new Promise((resolve, reject) => {
      const rq = http.request({ host: url.hostname, port: url.port, path: url.pathname + url.search, method,
        headers: h, localAddress: this.localAddress }, (res) => {
        const parts = [];
        res.on('data', (d) => parts.push(d));
        res.on('end', () => {
          const text = Buffer.concat(parts).toString('utf8');
          let json = null;
          try { json = text ? JSON.parse(text) : null; } catch { /* not JSON */ }
          const cookie = (res.headers['set-cookie'] || []).join(';').match(/cs_session=([^;]*)/);
          if (cookie) this.cookie = cookie[1] || null;
          if (json && json.csrf_token) this.csrf = json.csrf_token;
          resolve({ status: res.statusCode, json, text, headers: { get: (n) => res.headers[n.toLowerCase()] ?? null } });
        });
      });
      rq.on('error', reject);
      if (payload) rq.write(payload);
      rq.end();
    });
  }
}

function expectError(r, status, code, field) {
  assert.equal(r.status, status, r.text);
  const e = errorOf(r);
  assert.equal(e.code, code, r.text);
  if (field) assert.equal(e.field, field, r.text);
}

let srv;
before(async () => { srv = await startServer(); });
after(async () => { if (srv) { await srv.stop(); srv.cleanup(); } });

test('sign-ups are limited per client address: N+1 is 429 with Retry-After; another address still signs up', async () => {
  const s = await startServer(['--signups-per-window', '3', '--signups-window', '3600']);
  try {
    const from = (addr) => new AddrClient(s.base, addr);
    for (let i = 1; i <= 3; i++) {
      const r = await from('127.0.0.2').post('/api/auth/signup', { username: `flood${i}`, password: PW });
      assert.equal(r.status, 201, `sign-up ${i}: ${r.text}`);
    }
    // A refused sign-up (name taken) does not use up the budget ...
    expectError(await from('127.0.0.4').post('/api/auth/signup', { username: 'flood1', password: PW }), 409, 'username_taken');
    const over = from('127.0.0.2');
    const r = await over.post('/api/auth/signup', { username: 'flood4', password: PW });
    expectError(r, 429, 'rate_limited');
    const retry = r.headers.get('retry-after');
    assert.match(retry || '', /^\d+$/, 'Retry-After is delta-seconds');
    assert.ok(Number(retry) > 0 && Number(retry) <= 3600, `Retry-After ${retry} within the window`);
    assert.equal(r.headers.get('set-cookie'), null, 'no session for a refused sign-up');
    assert.match(errorOf(r).message, /too many new accounts/);
    // Nothing was made: the name is still free, from another address.
    const other = from('127.0.0.3');
    const ok = await other.post('/api/auth/signup', { username: 'flood4', password: PW });
    assert.equal(ok.status, 201, ok.text);
    assert.equal((await other.get('/api/session')).json.user.username, 'flood4');
    // Logging in is not a sign-up: the limited address still logs in.
    assert.equal((await from('127.0.0.2').post('/api/auth/login', { username: 'flood1', password: PW })).status, 200);
  } finally {
    await s.stop();
    s.cleanup();
  }
});

test('sign-up writes nothing to the ledger; the first consent registers the wallet, the second does not again', async () => {
  const anon = new Client(srv.base);
  const ledger = async () => (await anon.get('/api/ledger')).json;
  const before = await ledger();
  const p = new Client(srv.base);
  await p.signup('first.use', PW);
  // Reads that find nothing do not register either.
  assert.deepEqual((await p.get('/api/consents')).json.consents, []);
  expectError(await p.post(`/api/consents/${'ab'.repeat(32)}/revoke`), 404, 'not_found');
  expectError(await p.post('/api/wallet/redeem', { amount: 1 }), 422, 'validation_failed', 'amount');
  // A first consent the ledger would refuse (no such organisation) leaves no registration behind.
  expectError(await p.post('/api/consents', { scope: ['screening'], purpose: 'research', grantee: 'cd'.repeat(32) }),
    404, 'not_found');
  let after = await ledger();
  assert.equal(after.tree_head.tree_size, before.tree_head.tree_size, 'sign-up (or a read) wrote a ledger transaction');
  assert.equal(after.totals.wallets, before.totals.wallets);

  const g1 = await p.post('/api/consents', { scope: ['screening'], purpose: 'public_health_surveillance' });
  assert.equal(g1.status, 201, g1.text);
  after = await ledger();
  assert.equal(after.tree_head.tree_size, before.tree_head.tree_size + 2, 'first consent: register_wallet + grant');
  assert.equal(after.totals.wallets, before.totals.wallets + 1);
  const g2 = await p.post('/api/consents', { scope: ['symptoms'], purpose: 'research' });
  assert.equal(g2.status, 201, g2.text);
  const last = await ledger();
  assert.equal(last.tree_head.tree_size, after.tree_head.tree_size + 1, 'second consent: the grant only');
  assert.equal(last.totals.wallets, after.totals.wallets);
  const w = (await p.get('/api/wallet')).json.wallet;
  assert.deepEqual(w.history.map((h) => h.kind).sort(), ['grant_consent', 'grant_consent', 'register_wallet']);
  // The grant was signed by the wallet just registered.
  const tx = (await anon.get(`/api/ledger/tx/${g1.json.consent.id}`)).json.transaction;
  assert.equal(tx.signer, w.public_key);
});

test('concurrent first uses register the wallet exactly once', async () => {
  const p = new Client(srv.base);
  await p.signup('first.race', PW);
  const rs = await Promise.all([
    p.post('/api/consents', { scope: ['screening'], purpose: 'research' }),
    p.post('/api/consents', { scope: ['conditions'], purpose: 'research' }),
    p.post('/api/consents', { scope: ['demographics'], purpose: 'research' }),
    p.get('/api/wallet'),
  ]);
  for (const r of rs) assert.ok(r.status === 200 || r.status === 201, r.text);
  const w = (await p.get('/api/wallet')).json.wallet;
  assert.equal(w.history.filter((h) => h.kind === 'register_wallet').length, 1, JSON.stringify(w.history));
  assert.equal(w.history.filter((h) => h.kind === 'grant_consent').length, 3);
});

test('deleting an account never used on the ledger writes nothing there', async () => {
  const anon = new Client(srv.base);
  const p = new Client(srv.base);
  await p.signup('never.used', PW);
  const size = (await anon.get('/api/ledger')).json.tree_head.tree_size;
  const d = await p.del('/api/account', { password: PW });
  assert.equal(d.status, 200, d.text);
  assert.equal((await anon.get('/api/ledger')).json.tree_head.tree_size, size);
});

test('a stranger\'s wrong passwords lock out their address, not the owner nor the recovery reset', async () => {
  const owner = new AddrClient(srv.base, '127.0.0.2');
  const signup = await owner.post('/api/auth/signup', { username: 'target.olga', password: PW });
  assert.equal(signup.status, 201, signup.text);
  const attacker = () => new AddrClient(srv.base, '127.0.0.3');
  for (let i = 1; i <= 5; i++) {
    expectError(await attacker().post('/api/auth/login', { username: 'target.olga', password: `guess number ${i}` }),
      401, 'invalid_credentials');
  }
  for (const password of [`guess number 6`, PW]) {
    const r = await attacker().post('/api/auth/login', { username: 'target.olga', password });
    expectError(r, 429, 'rate_limited');
    assert.ok(Number(r.headers.get('retry-after')) > 0);
  }
  // The owner, from their own address, logs in with the right password ...
  const again = new AddrClient(srv.base, '127.0.0.2');
  const li = await again.post('/api/auth/login', { username: 'target.olga', password: PW });
  assert.equal(li.status, 200, li.text);
  // ... and can reset with the recovery code (which ends every session).
  const PW3 = 'olga has a new password';
  const reset = await new AddrClient(srv.base, '127.0.0.2').post('/api/auth/reset',
    { username: 'target.olga', recovery_code: signup.json.recovery_code, new_password: PW3 });
  assert.equal(reset.status, 200, reset.text);
  assert.equal((await again.get('/api/session')).status, 401);
  assert.equal((await new AddrClient(srv.base, '127.0.0.2').post('/api/auth/login',
    { username: 'target.olga', password: PW3 })).status, 200);
  // The attacker's address stays throttled for this account, even with the new password ...
  expectError(await attacker().post('/api/auth/login', { username: 'target.olga', password: PW3 }), 429, 'rate_limited');
  // ... but not for everyone else's accounts (its address budget is larger).
  const bystander = new Client(srv.base);
  await bystander.signup('bystander.bo', PW);
  assert.equal((await attacker().post('/api/auth/login', { username: 'bystander.bo', password: PW })).status, 200);
});

test('many addresses together meet the account\'s slower global budget; the recovery reset still works', async () => {
  const s = await startServer(['--login-max-failures-account', '4', '--login-account-window', '3600']);
  try {
    const owner = new AddrClient(s.base, '127.0.0.2');
    const signup = await owner.post('/api/auth/signup', { username: 'target.pia', password: PW });
    assert.equal(signup.status, 201);
    for (const addr of ['127.0.1.1', '127.0.1.2', '127.0.1.3', '127.0.1.4']) {
      expectError(await new AddrClient(s.base, addr).post('/api/auth/login', { username: 'target.pia', password: 'a wrong guess' }),
        401, 'invalid_credentials');
    }
    const r = await new AddrClient(s.base, '127.0.0.2').post('/api/auth/login', { username: 'target.pia', password: PW });
    expectError(r, 429, 'rate_limited');
    assert.ok(Number(r.headers.get('retry-after')) > 900, `the account window is an hour: ${r.headers.get('retry-after')}`);
    const PW3 = 'pia has a new password';
    const reset = await new AddrClient(s.base, '127.0.0.2').post('/api/auth/reset',
      { username: 'target.pia', recovery_code: signup.json.recovery_code, new_password: PW3 });
    assert.equal(reset.status, 200, reset.text);
    assert.equal((await new AddrClient(s.base, '127.0.0.2').post('/api/auth/login',
      { username: 'target.pia', password: PW3 })).status, 200);
  } finally {
    await s.stop();
    s.cleanup();
  }
});

test('log out everywhere else: other sessions end, the current one goes on', async () => {
  const phone = new Client(srv.base);
  await phone.signup('many.devices', PW);
  const laptop = new Client(srv.base);
  await laptop.login('many.devices', PW);
  const tablet = new Client(srv.base);
  await tablet.login('many.devices', PW);
  const stranger = new Client(srv.base);
  await stranger.signup('someone.else', PW);
  for (const c of [phone, laptop, tablet]) assert.equal((await c.get('/api/session')).status, 200);
  // Needs the CSRF token like every write.
  expectError(await tablet.post('/api/account/sessions/revoke-others', undefined, { csrf: false }), 403, 'csrf_failed');
  assert.equal((await phone.get('/api/session')).status, 200);
  const r = await tablet.post('/api/account/sessions/revoke-others');
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.ended, 2);
  for (const c of [phone, laptop]) {
    expectError(await c.get('/api/session'), 401, 'unauthenticated');
    expectError(await c.get('/api/records'), 401, 'unauthenticated');
  }
  assert.equal((await tablet.get('/api/session')).status, 200);
  assert.equal((await tablet.post('/api/records', { kind: 'note', title: 'still here' })).status, 201);
  assert.equal((await stranger.get('/api/session')).status, 200, "another person's session ended");
  // Again: nothing left to end.
  assert.equal((await tablet.post('/api/account/sessions/revoke-others')).json.ended, 0);

  // The same at log-in: end_other_sessions ends the tablet.
  const desk = new Client(srv.base);
  expectError(await desk.post('/api/auth/login', { username: 'many.devices', password: PW, end_other_sessions: 'yes' }),
    422, 'validation_failed', 'end_other_sessions');
  assert.equal((await tablet.get('/api/session')).status, 200, 'a refused log-in ended sessions');
  const li = await desk.post('/api/auth/login', { username: 'many.devices', password: PW, end_other_sessions: true });
  assert.equal(li.status, 200, li.text);
  assert.equal(li.json.ended_sessions, 1);
  expectError(await tablet.get('/api/session'), 401, 'unauthenticated');
  assert.equal((await desk.get('/api/session')).status, 200);
  // Staff accounts have sessions too.
  await createStaff(srv.dataDir, 'staff.sam', 'clinician', PW);
  const s1 = new Client(srv.base);
  await s1.login('staff.sam', PW);
  const s2 = new Client(srv.base);
  await s2.login('staff.sam', PW);
  assert.equal((await s2.post('/api/account/sessions/revoke-others')).json.ended, 1);
  expectError(await s1.get('/api/session'), 401, 'unauthenticated');
});

test('saving a screening: with_photo of the wrong type is 422 validation_failed', async () => {
  const p = new Client(srv.base);
  await p.signup('photo.typer', PW);
  for (const with_photo of ['yes', 1, null, {}]) {
    expectError(await p.post(`/api/screenings/${'0'.repeat(32)}/save`, { with_photo }), 422, 'validation_failed', 'with_photo');
  }
});
