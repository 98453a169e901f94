// Every error code of docs/API.md, provoked with bad input, plus the security
// headers, static MIME types and session-cookie attributes. After every bad
// request the test checks that nothing was written: the person's records and
// profile and the list of accounts are exactly as before.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readdirSync, statSync } from 'node:fs';
import { join, relative, extname } from 'node:path';
import http from 'node:http';
import { startServer, Client, createStaff, errorOf, WEB_DIR } from './harness.mjs';

const PW = 'correct horse battery';
const JSON_CT = { 'Content-Type': 'application/json' };
const THIS_YEAR = new Date().getUTCFullYear();
const isoDay = (offsetDays) => new Date(Date.now() + offsetDays * 86400000).toISOString().slice(0, 10);

let srv, alice, admin, clinician, aliceRecord;

// The state that no bad request may change.
async function state() {
  const recs = await alice.get('/api/records');
  const prof = await alice.get('/api/profile');
  const users = await admin.get('/api/admin/users');
  assert.equal(recs.status, 200, recs.text);
  assert.equal(prof.status, 200, prof.text);
  assert.equal(users.status, 200, users.text);
  return { records: recs.json.records, profile: prof.json.profile, users: users.json.users };
}

// Assert the error response, then that nothing was written.
async function expectError(res, status, code, field, what = '') {
  const label = `${what} → ${res.status} ${res.text.slice(0, 200)}`;
  assert.equal(res.status, status, label);
  const e = errorOf(res);
  assert.equal(e.code, code, label);
  if (field !== undefined) assert.equal(e.field, field, label);
  assert.match(res.headers.get('content-type') || '', /^application\/json/, label);
  return e;
}

async function unchanged(baseline, what) {
  assert.deepEqual(await state(), baseline, `something was written by: ${what}`);
}

// A raw request, for paths fetch would normalise and bodies it would not send.
function rawRequest(method, path, { headers = {}, body } = {}) {
  const u = new URL(srv.base);
  return new Promise((resolve, reject) => {
    const rq = http.request({ host: u.hostname, port: u.port, method, path, headers }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { text += d; });
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, text }));
    });
    rq.on('error', reject);
    if (body !== undefined) rq.write(body);
    rq.end();
  });
}

before(async () => {
  // Generous per-address limit: this file makes more than 20 failed logins on
  // purpose; the per-address limit has its own server below.
  srv = await startServer(['--login-max-failures-ip', '1000']);
  alice = new Client(srv.base);
  await alice.signup('alice', PW);
  const r = await alice.post('/api/records', { kind: 'condition', title: 'asthma', details: 'since childhood', onset: '2001-05-06' });
  assert.equal(r.status, 201, r.text);
  aliceRecord = r.json.record.id;
  const p = await alice.put('/api/profile', { display_name: 'Alice', birth_year: 1985, sex: 'female', region: 'NZ-WGN' });
  assert.equal(p.status, 200, p.text);
  await createStaff(srv.dataDir, 'root.admin', 'admin', PW);
  await createStaff(srv.dataDir, 'dr.who', 'clinician', PW);
  admin = new Client(srv.base);
  await admin.login('root.admin', PW);
  clinician = new Client(srv.base);
  await clinician.login('dr.who', PW);
});

after(async () => {
  if (srv) { await srv.stop(); srv.cleanup(); }
});

test('400 invalid_json: malformed, duplicate keys, non-object, empty, bad UTF-8', async () => {
  const base = await state();
  const bodies = {
    malformed: '{"kind":"note",',
    'unquoted keys': "{kind:'note',title:'x'}",
    'trailing garbage': '{"kind":"note","title":"x"} x',
    'duplicate keys': '{"kind":"note","title":"a","title":"b"}',
    'duplicate keys, nested': '{"kind":"note","title":"a","details":null,"x":{"y":1,"y":2}}',
    'duplicate username': '{"username":"mallory","username":"root.admin","password":"correct horse battery"}',
    array: '[{"kind":"note","title":"x"}]',
    string: '"hello"',
    number: '42',
    null: 'null',
    true: 'true',
    empty: '',
    'only whitespace': '   ',
    'invalid UTF-8': Buffer.from([0x7b, 0x22, 0x74, 0x69, 0x74, 0x6c, 0x65, 0x22, 0x3a, 0x22, 0xff, 0xfe, 0x22, 0x7d]),
  };
  const endpoints = [
    ['anon', 'POST', '/api/auth/signup'],
    ['anon', 'POST', '/api/auth/login'],
    ['anon', 'POST', '/api/auth/reset'],
    ['alice', 'POST', '/api/records'],
    ['alice', 'PUT', `/api/records/${aliceRecord}`],
    ['alice', 'PUT', '/api/profile'],
    ['alice', 'POST', '/api/account/password'],
    ['alice', 'DELETE', '/api/account'],
  ];
  for (const [who, method, path] of endpoints) {
    for (const [name, body] of Object.entries(bodies)) {
      const c = who === 'anon' ? new Client(srv.base) : alice;
      const payload = typeof body === 'string' ? body : new Uint8Array(body);
      const r = await c.req(method, path, payload, { raw: true, headers: JSON_CT });
      const what = `${method} ${path} with ${name} body`;
      await expectError(r, 400, 'invalid_json', undefined, what);
      await unchanged(base, what);
    }
  }
});

test('401 unauthenticated: no cookie, garbage cookie, unknown token, ended session', async () => {
  const base = await state();
  const ended = new Client(srv.base);
  await ended.login('alice', PW);
  const endedCookie = ended.cookie, endedCsrf = ended.csrf;
  assert.equal((await ended.post('/api/auth/logout')).status, 200);
  const cookies = {
    none: null,
    garbage: 'not-a-token',
    'unknown well-formed token': randomBytes(32).toString('base64url'),
    'logged-out session': endedCookie,
  };
  const calls = [
    ['GET', '/api/session'], ['GET', '/api/records'], ['GET', `/api/records/${aliceRecord}`], ['GET', '/api/export'],
    ['GET', '/api/profile'], ['GET', '/api/admin/users'],
    ['POST', '/api/records', { kind: 'note', title: 'x' }],
    ['PUT', `/api/records/${aliceRecord}`, { kind: 'note', title: 'x' }],
    ['DELETE', `/api/records/${aliceRecord}`],
    ['PUT', '/api/profile', { display_name: 'x' }],
    ['POST', '/api/auth/logout'],
    ['POST', '/api/account/password', { current_password: PW, new_password: 'whatever1234' }],
    ['DELETE', '/api/account', { password: PW }],
  ];
  for (const [kind, cookie] of Object.entries(cookies)) {
    for (const [method, path, body] of calls) {
      const c = new Client(srv.base);
      c.cookie = cookie;
      c.csrf = endedCsrf; // even a once-valid CSRF token does not help
      const r = await c.req(method, path, body);
      const what = `${method} ${path} with ${kind} cookie`;
      await expectError(r, 401, 'unauthenticated', undefined, what);
      await unchanged(base, what);
    }
  }
});

test('401 invalid_credentials: wrong password, unknown user, wrong recovery code, wrong current password', async () => {
  const base = await state();
  const carol = new Client(srv.base);
  const signup = await carol.signup('carol', PW);
  const code = signup.json.recovery_code;
  const base2 = await state();
  const anon = () => new Client(srv.base);
  const cases = [
    ['login, wrong password', () => anon().post('/api/auth/login', { username: 'carol', password: 'wrong password!' })],
    ['login, unknown user', () => anon().post('/api/auth/login', { username: 'nobody-here', password: PW })],
    ['login, impossible username', () => anon().post('/api/auth/login', { username: 'no such user!', password: PW })],
    ['reset, wrong code', () => anon().post('/api/auth/reset', { username: 'carol', recovery_code: code.replace(/[0-9A-Z]/, (ch) => (ch === 'A' ? 'B' : 'A')), new_password: 'a new long password' })],
    ['reset, garbage code', () => anon().post('/api/auth/reset', { username: 'carol', recovery_code: 'nope', new_password: 'a new long password' })],
    ['reset, unknown user', () => anon().post('/api/auth/reset', { username: 'nobody-here', recovery_code: code, new_password: 'a new long password' })],
  ];
  for (const [what, call] of cases) {
    await expectError(await call(), 401, 'invalid_credentials', undefined, what);
    await unchanged(base2, what);
  }
  // Three failures counted against carol so far; a good log-in clears the
  // per-account counter before the next two (5 would trip the rate limit).
  await new Client(srv.base).login('carol', PW);
  const pw = await carol.post('/api/account/password', { current_password: 'not my password', new_password: 'a new long password' });
  await expectError(pw, 401, 'invalid_credentials', 'current_password', 'password change with wrong current password');
  const del = await carol.del('/api/account', { password: 'not my password' });
  await expectError(del, 401, 'invalid_credentials', 'password', 'account deletion with wrong password');
  await unchanged(base2, 'wrong current password');
  // Carol still exists, her session is alive, and her password and recovery code are unchanged.
  assert.equal((await carol.get('/api/session')).status, 200);
  await new Client(srv.base).login('carol', PW); // also clears carol's failure counter
  const reset = await anon().post('/api/auth/reset', { username: 'carol', recovery_code: code, new_password: PW });
  assert.equal(reset.status, 200, `the original recovery code should still work: ${reset.text}`);
  assert.equal(base.users.length + 1, base2.users.length);
});

test('403 csrf_failed and forbidden', async () => {
  const base = await state();
  const noCsrf = await alice.post('/api/records', { kind: 'note', title: 'forged' }, { csrf: false });
  await expectError(noCsrf, 403, 'csrf_failed', undefined, 'POST /api/records without X-CSRF-Token');
  await unchanged(base, 'no CSRF');
  const wrong = await alice.put('/api/profile', { display_name: 'forged' }, { csrf: false, headers: { 'X-CSRF-Token': 'x'.repeat(43) } });
  await expectError(wrong, 403, 'csrf_failed', undefined, 'PUT /api/profile with a wrong X-CSRF-Token');
  await unchanged(base, 'wrong CSRF');
  for (const [c, method, path, body] of [
    [clinician, 'POST', '/api/records', { kind: 'note', title: 'staff note' }],
    [clinician, 'GET', '/api/records'],
    [clinician, 'GET', `/api/records/${aliceRecord}`],
    [clinician, 'DELETE', `/api/records/${aliceRecord}`],
    [admin, 'GET', '/api/profile'],
    [admin, 'PUT', '/api/profile', { display_name: 'admin' }],
    [admin, 'GET', '/api/export'],
    [alice, 'GET', '/api/admin/users'],
  ]) {
    const r = await c.req(method, path, body);
    await expectError(r, 403, 'forbidden', undefined, `${method} ${path} as the wrong role`);
    await unchanged(base, `${method} ${path}`);
  }
});

test('404 not_found: unknown API routes, unknown pages, bad or foreign record ids', async () => {
  const base = await state();
  const anon = new Client(srv.base);
  for (const [c, method, path] of [
    [anon, 'GET', '/api/nope'], [anon, 'POST', '/api/nope'], [anon, 'GET', '/api'], [anon, 'GET', '/api/'],
    [anon, 'GET', '/api/records/x/y'], [alice, 'GET', '/api/recordsx'], [alice, 'GET', '/api/records/'],
    [alice, 'DELETE', '/api/nope'], [anon, 'GET', '/api/HEALTH'],
    [anon, 'GET', '/no-such-page'], [anon, 'GET', '/no-such-page.html'], [anon, 'GET', '/css/none.css'],
    [anon, 'GET', '/.env'], [anon, 'GET', '/.git/config'], [anon, 'GET', '/caresync.db'],
  ]) {
    const r = await c.req(method, path);
    await expectError(r, 404, 'not_found', undefined, `${method} ${path}`);
  }
  const ids = {
    'not hex': 'not-a-record-id',
    '31 hex': aliceRecord.slice(0, 31),
    '33 hex': `${aliceRecord}0`,
    '32 non-hex': 'g'.repeat(32),
    'unknown id': randomBytes(16).toString('hex'),
    'SQL-ish': "1' OR '1'='1",
  };
  for (const [name, id] of Object.entries(ids)) {
    for (const [method, body] of [['GET'], ['PUT', { kind: 'note', title: 'ghost' }], ['DELETE']]) {
      const r = await alice.req(method, `/api/records/${encodeURIComponent(id)}`, body);
      const what = `${method} /api/records/{${name}}`;
      await expectError(r, 404, 'not_found', undefined, what);
      await unchanged(base, what); // in particular PUT did not create a record
    }
  }
  // Another person's id is not yours: 404, same as an unknown one.
  const bob = new Client(srv.base);
  await bob.signup('bob', PW);
  const base2 = await state();
  for (const [method, body] of [['GET'], ['PUT', { kind: 'note', title: 'hijack' }], ['DELETE']]) {
    const r = await bob.req(method, `/api/records/${aliceRecord}`, body);
    await expectError(r, 404, 'not_found', undefined, `${method} alice's record as bob`);
    await unchanged(base2, `${method} alice's record as bob`);
  }
  const region = await anon.get('/api/regions?country=XX');
  await expectError(region, 404, 'not_found', undefined, 'unknown country');
});

test('404 for path tricks that fetch would normalise', async () => {
  for (const path of ['/../../etc/passwd', '/%2e%2e/%2e%2e/etc/passwd', '/css/../../README.md', '//etc/passwd', '/.hidden', '/css/.hidden.css']) {
    const r = await rawRequest('GET', path);
    assert.ok(r.status === 404 || r.status === 400, `${path}: ${r.status} ${r.text.slice(0, 100)}`);
    assert.ok(!/root:|CareSync/.test(r.text), `${path} leaked a file`);
  }
});

test('405 method_not_allowed with an Allow header', async () => {
  const base = await state();
  const cases = [
    ['PATCH', '/api/records', ['GET', 'POST']],
    ['DELETE', '/api/records', ['GET', 'POST']],
    ['POST', `/api/records/${aliceRecord}`, ['GET', 'PUT', 'DELETE']],
    ['PATCH', `/api/records/${aliceRecord}`, ['GET', 'PUT', 'DELETE']],
    ['GET', '/api/auth/login', ['POST']],
    ['GET', '/api/auth/signup', ['POST']],
    ['PUT', '/api/auth/logout', ['POST']],
    ['GET', '/api/auth/reset', ['POST']],
    ['POST', '/api/health', ['GET']],
    ['DELETE', '/api/session', ['GET']],
    ['GET', '/api/account/password', ['POST']],
    ['GET', '/api/account', ['DELETE']],
    ['POST', '/api/profile', ['GET', 'PUT']],
    ['PUT', '/api/export', ['GET']],
    ['POST', '/api/admin/users', ['GET']],
    ['POST', '/api/regions', ['GET']],
    ['POST', '/', ['GET', 'HEAD']],
    ['PUT', '/records', ['GET', 'HEAD']],
    ['DELETE', '/index.html', ['GET', 'HEAD']],
  ];
  for (const [method, path, allowed] of cases) {
    for (const c of [new Client(srv.base), alice]) {
      const r = await c.req(method, path, method === 'GET' ? undefined : { kind: 'note', title: 'x' });
      await expectError(r, 405, 'method_not_allowed', undefined, `${method} ${path}`);
      const allow = (r.headers.get('allow') || '').split(',').map((s) => s.trim()).filter(Boolean).sort();
      // HEAD may be listed next to GET; nothing else may be added or missing.
      assert.deepEqual(allow.filter((m) => !(m === 'HEAD' && allowed.includes('GET'))),
        allowed.filter((m) => m !== 'HEAD' || !allowed.includes('GET')).sort(), `Allow for ${method} ${path}: ${allow}`);
      await unchanged(base, `${method} ${path}`);
    }
  }
});

test('409 username_taken (names are compared lower-cased)', async () => {
  const base = await state();
  for (const username of ['alice', 'ALICE', 'Alice', 'root.admin']) {
    const r = await new Client(srv.base).post('/api/auth/signup', { username, password: 'someone else entirely' });
    await expectError(r, 409, 'username_taken', undefined, `signup ${username}`);
    assert.equal(r.headers.get('set-cookie'), null, 'no session for a refused sign-up');
    await unchanged(base, `signup ${username}`);
  }
  await new Client(srv.base).login('alice', PW); // alice's password was not replaced
  // A race for one new name: exactly one wins, the rest are 409 (not 500).
  const race = await Promise.all(Array.from({ length: 5 }, () =>
    new Client(srv.base).post('/api/auth/signup', { username: 'Racer', password: PW })));
  const statuses = race.map((r) => r.status).sort();
  assert.deepEqual(statuses, [201, 409, 409, 409, 409], race.map((r) => r.text).join('\n'));
  assert.equal(race.find((r) => r.status === 201).json.user.username, 'racer', 'names are lower-cased');
  for (const r of race.filter((x) => x.status === 409)) assert.equal(errorOf(r).code, 'username_taken');
  const users = (await admin.get('/api/admin/users')).json.users;
  assert.equal(users.filter((u) => u.username === 'racer').length, 1);
});

test('413 payload_too_large: declared Content-Length and chunked bodies over 64 KiB', async () => {
  const base = await state();
  const limit = 64 * 1024;
  // Valid JSON that would be accepted if it were small enough: padding is whitespace.
  const padded = (obj, size) => { const s = JSON.stringify(obj); return s + ' '.repeat(size - s.length); };
  const overRecord = padded({ kind: 'note', title: 'too big' }, limit + 1);
  const overSignup = padded({ username: 'bigbody', password: PW }, limit + 1);

  let r = await alice.post('/api/records', overRecord, { raw: true, headers: JSON_CT });
  await expectError(r, 413, 'payload_too_large', undefined, 'POST /api/records, 64 KiB + 1');
  await unchanged(base, '413 records');
  r = await new Client(srv.base).post('/api/auth/signup', overSignup, { raw: true, headers: JSON_CT });
  await expectError(r, 413, 'payload_too_large', undefined, 'POST /api/auth/signup, 64 KiB + 1');
  await unchanged(base, '413 signup');
  // A large declared body from a client that waits for "100 Continue" is
  // refused before it is sent.
  r = await new Promise((resolve, reject) => {
    const u = new URL(srv.base);
    const size = 1024 * 1024;
    const rq = http.request({ host: u.hostname, port: u.port, method: 'PUT', path: '/api/profile', headers: {
      ...JSON_CT, 'Content-Length': size, Expect: '100-continue', Cookie: `cs_session=${alice.cookie}`, 'X-CSRF-Token': alice.csrf,
    } }, (res) => {
      let text = '';
      res.on('data', (d) => { text += d; });
      res.on('end', () => resolve({ status: res.statusCode, headers: new Headers(res.headers), text, json: JSON.parse(text), continued }));
    });
    let continued = false;
    rq.on('continue', () => { continued = true; rq.end(Buffer.alloc(size, 0x20)); });
    rq.on('error', reject);
  });
  await expectError(r, 413, 'payload_too_large', undefined, 'PUT /api/profile, 1 MiB with Expect: 100-continue');
  assert.equal(r.continued, false, 'the server asked for a body it was going to refuse');
  await unchanged(base, '413 profile');

  // Chunked: no Content-Length, the body just keeps coming.
  const chunked = async (path, head, total, headers) => {
    const enc = new TextEncoder();
    let sent = 0;
    const stream = new ReadableStream({
      pull(ctrl) {
        if (sent === 0) { ctrl.enqueue(enc.encode(head)); sent = head.length; return; }
        if (sent >= total) { ctrl.close(); return; }
        const n = Math.min(8192, total - sent);
        ctrl.enqueue(enc.encode(' '.repeat(n)));
        sent += n;
      },
    });
    const res = await fetch(srv.base + path, { method: 'POST', body: stream, duplex: 'half', headers });
    const text = await res.text();
    let json = null;
    try { json = JSON.parse(text); } catch { /* reported by errorOf */ }
    return { status: res.status, headers: res.headers, text, json };
  };
  const auth = { ...JSON_CT, Cookie: `cs_session=${alice.cookie}`, 'X-CSRF-Token': alice.csrf };
  r = await chunked('/api/records', '{"kind":"note","title":"chunked too big"}', limit + 10000, auth);
  await expectError(r, 413, 'payload_too_large', undefined, 'chunked POST /api/records');
  await unchanged(base, '413 chunked records');
  r = await chunked('/api/auth/signup', `{"username":"chunky","password":"${PW}"}`, 4 * limit, JSON_CT);
  await expectError(r, 413, 'payload_too_large', undefined, 'chunked POST /api/auth/signup');
  await unchanged(base, '413 chunked signup');

  // The limit itself is allowed (proves the 413s above are about size).
  r = await chunked('/api/records', '{"kind":"note","title":"chunked at the limit"}', limit, auth);
  assert.equal(r.status, 201, `chunked body of exactly 64 KiB: ${r.text.slice(0, 200)}`);
  r = await alice.post('/api/records', padded({ kind: 'note', title: 'at the limit' }, limit), { raw: true, headers: JSON_CT });
  assert.equal(r.status, 201, `body of exactly 64 KiB: ${r.text.slice(0, 200)}`);
  for (const title of ['chunked at the limit', 'at the limit']) {
    const list = await alice.get('/api/records');
    const rec = list.json.records.find((x) => x.title === title);
    assert.ok(rec, title);
    assert.equal((await alice.del(`/api/records/${rec.id}`)).status, 200);
  }
  await unchanged(base, 'cleanup');
});

// A client that sends a large body without waiting for "100 Continue" (fetch,
// most HTTP libraries) must still be able to read the 413: if the server
// answers and closes while the body is still arriving, the kernel resets the
// connection and the client sees EPIPE/ECONNRESET instead.
test('413 reaches a client that streams a 1 MiB body without Expect: 100-continue', async () => {
  const outcomes = {};
  for (let i = 0; i < 10; i++) {
    let k;
    try {
      const res = await fetch(srv.base + '/api/auth/signup', { method: 'POST', headers: JSON_CT, body: ' '.repeat(1024 * 1024) });
      k = String(res.status);
      await res.text();
    } catch (e) { k = (e.cause && e.cause.code) || e.message; }
    outcomes[k] = (outcomes[k] || 0) + 1;
  }
  assert.deepEqual(outcomes, { 413: 10 });
});

test('415 unsupported_media_type: bodies that are not application/json', async () => {
  const base = await state();
  const json = JSON.stringify({ username: 'formuser', password: PW });
  const types = {
    'text/plain': 'text/plain',
    form: 'application/x-www-form-urlencoded',
    multipart: 'multipart/form-data; boundary=xyz',
    'application/jsonp': 'application/jsonp',
    'application/json-patch+json': 'application/json-patch+json',
    'text/json': 'text/json',
    'no Content-Type': null,
  };
  const calls = [
    [() => new Client(srv.base), 'POST', '/api/auth/signup', json],
    [() => new Client(srv.base), 'POST', '/api/auth/login', JSON.stringify({ username: 'alice', password: PW })],
    [() => new Client(srv.base), 'POST', '/api/auth/reset', JSON.stringify({ username: 'alice', recovery_code: 'x', new_password: PW })],
    [() => alice, 'POST', '/api/records', JSON.stringify({ kind: 'note', title: 'plain' })],
    [() => alice, 'PUT', `/api/records/${aliceRecord}`, JSON.stringify({ kind: 'note', title: 'plain' })],
    [() => alice, 'PUT', '/api/profile', JSON.stringify({ display_name: 'plain' })],
    [() => alice, 'POST', '/api/account/password', JSON.stringify({ current_password: PW, new_password: 'plain text pass' })],
    [() => alice, 'DELETE', '/api/account', JSON.stringify({ password: PW })],
  ];
  for (const [client, method, path, body] of calls) {
    for (const [name, ct] of Object.entries(types)) {
      // A Uint8Array body makes fetch send no Content-Type of its own.
      const r = await client().req(method, path, new TextEncoder().encode(body), { raw: true, headers: ct ? { 'Content-Type': ct } : {} });
      const what = `${method} ${path} as ${name}`;
      await expectError(r, 415, 'unsupported_media_type', undefined, what);
      assert.equal(r.headers.get('set-cookie'), null, `${what} set a cookie`);
      await unchanged(base, what);
    }
  }
  // Parameters and case do not matter (RFC 9110 media types are case-insensitive).
  for (const ct of ['application/json; charset=utf-8', 'Application/JSON']) {
    const r = await alice.post('/api/records', JSON.stringify({ kind: 'note', title: `ct ${ct}` }), { raw: true, headers: { 'Content-Type': ct } });
    assert.equal(r.status, 201, `${ct}: ${r.text}`);
    assert.equal((await alice.del(`/api/records/${r.json.record.id}`)).status, 200);
  }
  await unchanged(base, 'cleanup');
});

test('422 validation_failed names the field: records', async () => {
  const base = await state();
  const future = isoDay(2);
  const cases = [
    [{}, 'kind'],
    [{ title: 'no kind' }, 'kind'],
    [{ kind: 'diagnosis', title: 'x' }, 'kind'],
    [{ kind: 42, title: 'x' }, 'kind'],
    [{ kind: null, title: 'x' }, 'kind'],
    [{ kind: 'note' }, 'title'],
    [{ kind: 'note', title: '' }, 'title'],
    [{ kind: 'note', title: null }, 'title'],
    [{ kind: 'note', title: 42 }, 'title'],
    [{ kind: 'note', title: 'x'.repeat(201) }, 'title'],
    [{ kind: 'note', title: 'é'.repeat(201) }, 'title'],
    [{ kind: 'note', title: 'ok', details: 'x'.repeat(10001) }, 'details'],
    [{ kind: 'note', title: 'ok', details: 7 }, 'details'],
    [{ kind: 'condition', title: 'ok', onset: future }, 'onset'],
    [{ kind: 'condition', title: 'ok', onset: `${THIS_YEAR + 1}-01-01` }, 'onset'],
    [{ kind: 'condition', title: 'ok', onset: '2024-1-05' }, 'onset'],
    [{ kind: 'condition', title: 'ok', onset: '2024/01/05' }, 'onset'],
    [{ kind: 'condition', title: 'ok', onset: '05-01-2024' }, 'onset'],
    [{ kind: 'condition', title: 'ok', onset: '2024-01-05T00:00:00Z' }, 'onset'],
    [{ kind: 'condition', title: 'ok', onset: 'yesterday' }, 'onset'],
    [{ kind: 'condition', title: 'ok', onset: 20240105 }, 'onset'],
    [{ kind: 'condition', title: 'ok', onset: '2023-02-30' }, 'onset'],
    [{ kind: 'condition', title: 'ok', onset: '2023-02-29' }, 'onset'],
    [{ kind: 'condition', title: 'ok', onset: '2023-04-31' }, 'onset'],
    [{ kind: 'condition', title: 'ok', onset: '2023-13-01' }, 'onset'],
    [{ kind: 'condition', title: 'ok', onset: '2023-00-10' }, 'onset'],
    [{ kind: 'condition', title: 'ok', onset: '2023-01-00' }, 'onset'],
    [{ kind: 'condition', title: 'ok', onset: '+2023-01-01' }, 'onset'],
    [{ kind: 'condition', title: 'ok', onset: '2024-03-10', ended: '2024-03-09' }, 'ended'],
    [{ kind: 'medication', title: 'ok', onset: '2024-03-10', ended: '2023-12-31' }, 'ended'],
    [{ kind: 'medication', title: 'ok', onset: '2024-03-10', ended: future }, 'ended'],
    [{ kind: 'medication', title: 'ok', onset: '2024-03-10', ended: '2024-02-30' }, 'ended'],
    [{ kind: 'medication', title: 'ok', ended: 'soon' }, 'ended'],
    [{ kind: 'symptom', title: 'headache' }, 'onset'],
    [{ kind: 'symptom', title: 'headache', onset: null }, 'onset'],
    [{ kind: 'symptom', title: 'headache', onset: '' }, 'onset'],
    [{ kind: 'symptom', title: 'headache', ended: '2024-01-01' }, 'onset'],
  ];
  for (const [body, field] of cases) {
    for (const [method, path] of [['POST', '/api/records'], ['PUT', `/api/records/${aliceRecord}`]]) {
      const r = await alice.req(method, path, body);
      const what = `${method} ${path.replace(aliceRecord, '{id}')} ${JSON.stringify(body).slice(0, 90)}`;
      await expectError(r, 422, 'validation_failed', field, what);
      await unchanged(base, what);
    }
  }
});

test('422 validation_failed names the field: profile', async () => {
  const base = await state();
  const cases = [
    [{ display_name: 'x'.repeat(101) }, 'display_name'],
    [{ display_name: 42 }, 'display_name'],
    [{ birth_year: 1899 }, 'birth_year'],
    [{ birth_year: THIS_YEAR + 1 }, 'birth_year'],
    [{ birth_year: '1990' }, 'birth_year'],
    [{ birth_year: 1990.5 }, 'birth_year'],
    [{ birth_year: -1990 }, 'birth_year'],
    [{ sex: 'other' }, 'sex'],
    [{ sex: 'F' }, 'sex'],
    [{ sex: '' }, 'sex'],
    [{ sex: true }, 'sex'],
    [{ region: 'NZ' }, 'region'],
    [{ region: 'XX-ABC' }, 'region'],
    [{ region: 'NZ-XXX' }, 'region'],
    [{ region: 'NZ-AUK ' }, 'region'],
    [{ region: 'Auckland' }, 'region'],
    [{ region: 64 }, 'region'],
  ];
  for (const [body, field] of cases) {
    const full = { display_name: 'Alice', birth_year: 1985, sex: 'female', region: 'NZ-WGN', ...body };
    const r = await alice.put('/api/profile', full);
    const what = `PUT /api/profile ${JSON.stringify(body).slice(0, 90)}`;
    await expectError(r, 422, 'validation_failed', field, what);
    await unchanged(base, what);
  }
});

test('422 validation_failed names the field: sign-up, reset, password change', async () => {
  const base = await state();
  const anon = () => new Client(srv.base);
  const signups = [
    [{ username: 'ab', password: PW }, 'username'],
    [{ username: 'a'.repeat(33), password: PW }, 'username'],
    [{ username: 'bad name', password: PW }, 'username'],
    [{ username: '.alice2', password: PW }, 'username'],
    [{ username: '-alice2', password: PW }, 'username'],
    [{ username: '_alice2', password: PW }, 'username'],
    [{ username: 'ålice', password: PW }, 'username'],
    [{ username: 'al!ce', password: PW }, 'username'],
    [{ username: 'al/ce', password: PW }, 'username'],
    [{ username: '', password: PW }, 'username'],
    [{ username: 1234, password: PW }, 'username'],
    [{ password: PW }, 'username'],
    [{ username: 'newperson', password: 'short' }, 'password'],
    [{ username: 'newperson', password: '123456789' }, 'password'],
    [{ username: 'newperson', password: 'x'.repeat(257) }, 'password'],
    [{ username: 'newperson', password: 'é'.repeat(129) }, 'password'], // 258 bytes: the limit is in bytes
    [{ username: 'newperson', password: 12345678901 }, 'password'],
    [{ username: 'newperson' }, 'password'],
  ];
  for (const [body, field] of signups) {
    const r = await anon().post('/api/auth/signup', body);
    const what = `signup ${JSON.stringify(body).slice(0, 90)}`;
    await expectError(r, 422, 'validation_failed', field, what);
    assert.equal(r.headers.get('set-cookie'), null, `${what} set a cookie`);
    await unchanged(base, what);
  }
  for (const np of ['short', '123456789', 'x'.repeat(257)]) {
    const r = await anon().post('/api/auth/reset', { username: 'alice', recovery_code: 'AAAA-AAAA', new_password: np });
    await expectError(r, 422, 'validation_failed', 'new_password', `reset with new_password of ${np.length}`);
    const c = await alice.post('/api/account/password', { current_password: PW, new_password: np });
    await expectError(c, 422, 'validation_failed', 'new_password', `password change to ${np.length} chars`);
    await unchanged(base, 'short new password');
  }
  // Alice's password is still the old one and her session is alive.
  assert.equal((await alice.get('/api/session')).status, 200);
  await anon().login('alice', PW);
});

test('429 rate_limited per account: 5 wrong passwords, then even the right one is refused', async () => {
  const dave = new Client(srv.base);
  await dave.signup('dave', PW);
  for (let i = 1; i <= 5; i++) {
    const r = await new Client(srv.base).post('/api/auth/login', { username: 'dave', password: `wrong password ${i}` });
    await expectError(r, 401, 'invalid_credentials', undefined, `wrong password #${i}`);
  }
  for (const password of [PW, 'wrong again!!']) {
    const r = await new Client(srv.base).post('/api/auth/login', { username: 'dave', password });
    await expectError(r, 429, 'rate_limited', undefined, `6th attempt (${password === PW ? 'right' : 'wrong'} password)`);
    const retry = r.headers.get('retry-after');
    assert.match(retry || '', /^\d+$/, 'Retry-After is delta-seconds');
    assert.ok(Number(retry) > 0 && Number(retry) <= 900, `Retry-After ${retry} within the 900 s window`);
    assert.equal(r.headers.get('set-cookie'), null, 'no session while throttled');
  }
  // The limit is per account: alice logs in fine from the same address.
  await new Client(srv.base).login('alice', PW);
  // Dave's existing session is not affected.
  assert.equal((await dave.get('/api/session')).status, 200);
});

test('429 rate_limited per client address (--login-max-failures-ip 3), across usernames', async () => {
  const s2 = await startServer(['--login-max-failures-ip', '3']);
  let s3;
  try {
    const erin = new Client(s2.base);
    await erin.signup('erin', PW);
    for (const username of ['frank', 'grace', 'heidi']) {
      const r = await new Client(s2.base).post('/api/auth/login', { username, password: 'wrong password' });
      await expectError(r, 401, 'invalid_credentials', undefined, `failed login as ${username}`);
    }
    // A fourth, different and correct, account from the same address is refused.
    const r = await new Client(s2.base).post('/api/auth/login', { username: 'erin', password: PW });
    await expectError(r, 429, 'rate_limited', undefined, 'login after 3 failures from this address');
    const retry = r.headers.get('retry-after');
    assert.match(retry || '', /^\d+$/);
    assert.ok(Number(retry) > 0 && Number(retry) <= 900, `Retry-After ${retry}`);
    assert.equal(r.headers.get('set-cookie'), null);
    // The counters are stored: a restart does not reset an attack.
    assert.equal((await s2.stop()).code, 0);
    s3 = await startServer(['--login-max-failures-ip', '3'], { dataDir: s2.dataDir });
    const again = await new Client(s3.base).post('/api/auth/login', { username: 'erin', password: PW });
    await expectError(again, 429, 'rate_limited', undefined, 'after a restart');
  } finally {
    if (s3) await s3.stop();
    await s2.stop();
    s2.cleanup();
  }
});

test('429 ends when the window ends (--login-window 3)', async () => {
  const s4 = await startServer(['--login-max-failures', '2', '--login-window', '3']);
  try {
    await new Client(s4.base).signup('ivan', PW);
    for (let i = 0; i < 2; i++) {
      await expectError(await new Client(s4.base).post('/api/auth/login', { username: 'ivan', password: 'wrong password' }), 401, 'invalid_credentials', undefined, `failure ${i + 1}`);
    }
    const r = await new Client(s4.base).post('/api/auth/login', { username: 'ivan', password: PW });
    await expectError(r, 429, 'rate_limited', undefined, 'inside the window');
    const retry = Number(r.headers.get('retry-after'));
    assert.ok(retry >= 1 && retry <= 3, `Retry-After ${retry} within a 3 s window`);
    await new Promise((res) => setTimeout(res, retry * 1000 + 1100));
    await new Client(s4.base).login('ivan', PW);
  } finally {
    await s4.stop();
    s4.cleanup();
  }
});

function assertSecurityHeaders(r, what, { api = true } = {}) {
  const h = (n) => r.headers.get ? r.headers.get(n) : r.headers[n.toLowerCase()];
  const csp = h('content-security-policy') || '';
  assert.match(csp, /frame-ancestors 'none'/, `${what}: CSP ${csp}`);
  assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/, `${what}: CSP ${csp}`);
  assert.match(csp, /default-src 'self'/, `${what}: CSP ${csp}`);
  assert.equal(h('x-content-type-options'), 'nosniff', what);
  assert.equal(h('referrer-policy'), 'no-referrer', what);
  if (api) assert.equal(h('cache-control'), 'no-store', `${what}: API responses are not cached`);
}

test('security headers on API, error and static responses', async () => {
  const anon = new Client(srv.base);
  assertSecurityHeaders(await anon.get('/api/health'), 'GET /api/health');
  assertSecurityHeaders(await alice.get('/api/records'), 'GET /api/records');
  assertSecurityHeaders(await alice.get('/api/export'), 'GET /api/export');
  assertSecurityHeaders(await anon.req('HEAD', '/api/health'), 'HEAD /api/health');
  assertSecurityHeaders(await anon.get('/api/session'), '401');
  assertSecurityHeaders(await anon.get('/api/nope'), '404 API');
  assertSecurityHeaders(await anon.req('PATCH', '/api/records'), '405');
  assertSecurityHeaders(await anon.post('/api/auth/login', 'x', { raw: true, headers: { 'Content-Type': 'text/plain' } }), '415');
  assertSecurityHeaders(await anon.post('/api/auth/login', '{', { raw: true, headers: JSON_CT }), '400');
  assertSecurityHeaders(await anon.post('/api/auth/login', ' '.repeat(70000), { raw: true, headers: JSON_CT }), '413');
  assertSecurityHeaders(await anon.post('/api/auth/signup', { username: 'x', password: PW }), '422');
  assertSecurityHeaders(await clinician.get('/api/records'), '403');
  // Static-side errors carry them too (no-store not required there).
  assertSecurityHeaders(await anon.get('/no-such-page'), '404 page', { api: false });
  assertSecurityHeaders(await anon.req('POST', '/'), '405 page', { api: false });
  assertSecurityHeaders(await rawRequest('GET', '/../../etc/passwd'), 'traversal', { api: false });
});

// web/ may hold only a few files: check whatever is there, skip what is not.
function webFiles() {
  const out = [];
  const walk = (dir) => {
    let names = [];
    try { names = readdirSync(dir); } catch { return; }
    for (const n of names) {
      if (n.startsWith('.')) continue;
      const p = join(dir, n);
      if (statSync(p).isDirectory()) walk(p);
      else out.push('/' + relative(WEB_DIR, p).split('\\').join('/'));
    }
  };
  walk(WEB_DIR);
  return out;
}

test('static files: MIME types and security headers', async (t) => {
  const files = webFiles();
  const want = { '.html': /^text\/html/, '.css': /^text\/css/, '.js': /^(text|application)\/javascript/ };
  const anon = new Client(srv.base);
  for (const [ext, type] of Object.entries(want)) {
    const file = files.find((f) => extname(f) === ext);
    if (!file) {
      await t.test(`${ext} is served as ${type}`, (st) => st.skip(`no ${ext} file in ${WEB_DIR}`));
      continue;
    }
    await t.test(`${ext} is served as ${type}`, async () => {
      const r = await anon.get(file);
      assert.equal(r.status, 200, `${file}: ${r.status}`);
      assert.match(r.headers.get('content-type') || '', type, file);
      assertSecurityHeaders(r, file, { api: false });
    });
  }
  const index = files.includes('/index.html');
  await t.test('/ serves index.html', async (st) => {
    if (!index) { st.skip(`no index.html in ${WEB_DIR}`); return; }
    const r = await anon.get('/');
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type') || '', /^text\/html/);
    assertSecurityHeaders(r, '/', { api: false });
  });
  const pretty = files.find((f) => /^\/[^/]+\.html$/.test(f) && f !== '/index.html');
  await t.test('pretty URLs: /name serves name.html', async (st) => {
    if (!pretty) { st.skip(`no page other than index.html in ${WEB_DIR}`); return; }
    const r = await anon.get(pretty.slice(0, -'.html'.length));
    assert.equal(r.status, 200, pretty);
    assert.match(r.headers.get('content-type') || '', /^text\/html/);
  });
});

test('session cookie: HttpOnly, SameSite=Strict, Path=/ on sign-up and log-in; cleared on log-out', async () => {
  const c = new Client(srv.base);
  const check = (setCookie, what) => {
    assert.ok(setCookie, `${what}: no Set-Cookie`);
    const attrs = setCookie.split(';').map((s) => s.trim().toLowerCase());
    assert.match(attrs[0], /^cs_session=[a-z0-9_-]{20,}$/i, what);
    assert.ok(attrs.includes('httponly'), `${what}: ${setCookie}`);
    assert.ok(attrs.includes('samesite=strict'), `${what}: ${setCookie}`);
    assert.ok(attrs.includes('path=/'), `${what}: ${setCookie}`);
  };
  const s = await c.signup('cookie.monster', PW);
  check(s.headers.get('set-cookie'), 'signup');
  const l = await new Client(srv.base).login('cookie.monster', PW);
  check(l.headers.get('set-cookie'), 'login');
  assert.notEqual(s.headers.get('set-cookie'), l.headers.get('set-cookie'), 'each log-in gets a new session');
  // The CSRF token is not the session token.
  assert.ok(!s.headers.get('set-cookie').includes(s.json.csrf_token));
  const out = await c.post('/api/auth/logout');
  assert.equal(out.status, 200);
  const cleared = out.headers.get('set-cookie') || '';
  assert.match(cleared, /cs_session=;/);
  assert.match(cleared, /Max-Age=0|Expires=Thu, 01 Jan 1970/i);
});
