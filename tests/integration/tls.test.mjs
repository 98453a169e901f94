// HTTPS: with --tls-cert/--tls-key the server speaks TLS, marks the session
// cookie Secure and sends Strict-Transport-Security. Without TLS it refuses
// to listen on anything but loopback.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import https from 'node:https';
import http from 'node:http';
import net from 'node:net';
import { startServer, BIN, WEB_DIR } from './harness.mjs';

const PW = 'correct horse battery';
const HAVE_OPENSSL = spawnSync('openssl', ['version']).status === 0;
const NO_OPENSSL = HAVE_OPENSSL ? false : 'openssl is not installed: cannot make a self-signed certificate';

let dir, srv;

// node:https with verification off (the certificate is self-signed).
function request(base, method, path, { body, headers = {} } = {}) {
  const u = new URL(base);
  return new Promise((resolve, reject) => {
    const rq = https.request({ host: u.hostname, port: u.port, method, path, headers, rejectUnauthorized: false }, (res) => {
      const tls = res.socket && res.socket.encrypted ? res.socket.getProtocol() : null;
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { text += d; });
      res.on('end', () => {
        let json = null;
        try { json = JSON.parse(text); } catch { /* not JSON */ }
        resolve({ status: res.statusCode, headers: res.headers, text, json, tls });
      });
    });
    rq.on('error', reject);
    if (body !== undefined) rq.write(body);
    rq.end();
  });
}

// Run `caresync serve` expecting it to fail; resolves {code, stderr}.
function serveExpectingFailure(args, timeoutMs = 10000) {
  const d = mkdtempSync(join(tmpdir(), 'caresync-it-'));
  const p = spawn(BIN, ['serve', '--port', '0', '--data-dir', d, '--web-dir', WEB_DIR, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '', err = '';
  p.stdout.on('data', (x) => { out += x; });
  p.stderr.on('data', (x) => { err += x; });
  return new Promise((resolve) => {
    const timer = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    p.on('exit', (code, signal) => {
      clearTimeout(timer);
      rmSync(d, { recursive: true, force: true });
      resolve({ code, signal, stdout: out, stderr: err });
    });
  });
}

before(async () => {
  if (!HAVE_OPENSSL) return;
  dir = mkdtempSync(join(tmpdir(), 'caresync-tls-'));
  const gen = spawnSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(dir, 'k.pem'),
    '-out', join(dir, 'c.pem'), '-days', '1', '-subj', '/CN=localhost'], { encoding: 'utf8' });
  assert.equal(gen.status, 0, `openssl failed: ${gen.stderr}`);
  srv = await startServer(['--tls-cert', join(dir, 'c.pem'), '--tls-key', join(dir, 'k.pem')]);
});

after(async () => {
  if (srv) { await srv.stop(); srv.cleanup(); }
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('serves HTTPS: health works, HSTS and the security headers are sent', { skip: NO_OPENSSL }, async () => {
  assert.match(srv.base, /^https:\/\//, 'the listening line announces https');
  const r = await request(srv.base, 'GET', '/api/health');
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.status, 'ok');
  assert.match(r.tls || '', /^TLSv1\.[23]$/, `negotiated ${r.tls}`);
  const hsts = r.headers['strict-transport-security'] || '';
  assert.match(hsts, /max-age=(\d+)/);
  assert.ok(Number(hsts.match(/max-age=(\d+)/)[1]) >= 86400, `HSTS max-age too short: ${hsts}`);
  assert.equal(r.headers['x-content-type-options'], 'nosniff');
  assert.match(r.headers['content-security-policy'] || '', /frame-ancestors 'none'/);
  // Error responses carry HSTS too.
  const e = await request(srv.base, 'GET', '/api/nope');
  assert.equal(e.status, 404);
  assert.match(e.headers['strict-transport-security'] || '', /max-age=\d+/);
  const page = await request(srv.base, 'GET', '/no-such-page');
  assert.match(page.headers['strict-transport-security'] || '', /max-age=\d+/);
});

test('the session cookie is Secure (and HttpOnly, SameSite=Strict) over TLS; the session works', { skip: NO_OPENSSL }, async () => {
  const body = JSON.stringify({ username: 'tls.user', password: PW });
  const r = await request(srv.base, 'POST', '/api/auth/signup', { body, headers: { 'Content-Type': 'application/json' } });
  assert.equal(r.status, 201, r.text);
  const cookie = [].concat(r.headers['set-cookie'] || [])[0] || '';
  const attrs = cookie.split(';').map((s) => s.trim().toLowerCase());
  assert.ok(attrs.includes('secure'), `no Secure: ${cookie}`);
  assert.ok(attrs.includes('httponly'), cookie);
  assert.ok(attrs.includes('samesite=strict'), cookie);
  const token = cookie.match(/cs_session=([^;]+)/)[1];
  const s = await request(srv.base, 'GET', '/api/session', { headers: { Cookie: `cs_session=${token}` } });
  assert.equal(s.status, 200, s.text);
  assert.equal(s.json.user.username, 'tls.user');
  const w = await request(srv.base, 'POST', '/api/records', {
    body: JSON.stringify({ kind: 'note', title: 'over TLS' }),
    headers: { 'Content-Type': 'application/json', Cookie: `cs_session=${token}`, 'X-CSRF-Token': r.json.csrf_token },
  });
  assert.equal(w.status, 201, w.text);
  const login = await request(srv.base, 'POST', '/api/auth/login', { body, headers: { 'Content-Type': 'application/json' } });
  assert.equal(login.status, 200);
  assert.match([].concat(login.headers['set-cookie'] || [])[0] || '', /;\s*Secure/i);
});

test('plain HTTP to the TLS port gets no API response', { skip: NO_OPENSSL }, async () => {
  const u = new URL(srv.base);
  const outcome = await new Promise((resolve) => {
    const rq = http.request({ host: u.hostname, port: u.port, path: '/api/health', timeout: 5000 }, (res) => {
      let text = '';
      res.on('data', (d) => { text += d; });
      res.on('end', () => resolve({ status: res.statusCode, text }));
    });
    rq.on('timeout', () => { rq.destroy(); resolve({ error: 'timeout' }); });
    rq.on('error', (e) => resolve({ error: e.code || e.message }));
    rq.end();
  });
  assert.ok(outcome.error || !/"status":"ok"/.test(outcome.text), `plaintext got an API answer: ${JSON.stringify(outcome)}`);
});

test('without TLS, --host 0.0.0.0 is refused with a non-zero exit and a clear message', async () => {
  for (const host of ['0.0.0.0', '::']) {
    const r = await serveExpectingFailure(['--host', host]);
    assert.notEqual(r.code, 0, `--host ${host} without TLS started: ${r.stdout}`);
    assert.equal(r.signal, null, `killed: it kept running (${r.stdout})`);
    assert.doesNotMatch(r.stdout, /listening on/);
    assert.match(r.stderr, /refus/i, r.stderr);
    assert.match(r.stderr, /TLS/, r.stderr);
  }
});

test('--tls-cert without --tls-key (and unreadable files) are refused', { skip: NO_OPENSSL }, async () => {
  const onlyCert = await serveExpectingFailure(['--tls-cert', join(dir, 'c.pem')]);
  assert.notEqual(onlyCert.code, 0);
  assert.match(onlyCert.stderr, /tls-key/, onlyCert.stderr);
  const missing = await serveExpectingFailure(['--tls-cert', join(dir, 'nope.pem'), '--tls-key', join(dir, 'k.pem')]);
  assert.notEqual(missing.code, 0);
  assert.doesNotMatch(missing.stdout, /listening on/);
  const swapped = await serveExpectingFailure(['--tls-cert', join(dir, 'k.pem'), '--tls-key', join(dir, 'c.pem')]);
  assert.notEqual(swapped.code, 0, 'key and certificate swapped');
});

test('with TLS, a non-loopback bind address is allowed', { skip: NO_OPENSSL }, async () => {
  const s = await startServer(['--host', '0.0.0.0', '--tls-cert', join(dir, 'c.pem'), '--tls-key', join(dir, 'k.pem')]);
  try {
    const r = await request(s.base, 'GET', '/api/health');
    assert.equal(r.status, 200);
  } finally {
    await s.stop();
    s.cleanup();
  }
});

// Only forward-secret AEAD suites: TLS 1.3, and TLS 1.2 with ECDHE and
// AES-GCM or ChaCha20-Poly1305 (the GnuTLS priority string in server.c).
test('TLS refuses static-RSA, DHE and CBC suites; ECDHE with AES-GCM and TLS 1.3 work', { skip: NO_OPENSSL }, () => {
  const u = new URL(srv.base);
  const hello = (...args) => {
    const r = spawnSync('openssl', ['s_client', '-connect', `127.0.0.1:${u.port}`, ...args],
      { input: '', encoding: 'utf8', timeout: 15000 });
    const m = (r.stdout || '').match(/Cipher is (\S+)/);
    return { status: r.status, cipher: m && m[1] !== '(NONE)' ? m[1] : null, out: r.stdout + r.stderr };
  };
  for (const refused of [['-tls1_2', '-cipher', 'AES128-SHA'], ['-tls1_2', '-cipher', 'ECDHE-RSA-AES128-SHA'],
    ['-tls1_2', '-cipher', 'AES128-GCM-SHA256'], ['-tls1_2', '-cipher', 'DHE-RSA-AES128-GCM-SHA256'],
    ['-tls1_2', '-cipher', 'ECDHE-RSA-AES128-SHA256'],
    // TLS 1.1 and 1.0 (SECLEVEL=0: OpenSSL 3 would not even offer them otherwise)
    ['-tls1_1', '-cipher', 'ALL@SECLEVEL=0'], ['-tls1', '-cipher', 'ALL@SECLEVEL=0']]) {
    const r = hello(...refused);
    assert.equal(r.cipher, null, `${refused.join(' ')} was accepted: ${r.cipher}`);
    assert.notEqual(r.status, 0, `${refused.join(' ')}: ${r.out.slice(0, 400)}`);
  }
  for (const [args, cipher] of [[['-tls1_2', '-cipher', 'ECDHE-RSA-AES128-GCM-SHA256'], 'ECDHE-RSA-AES128-GCM-SHA256'],
    [['-tls1_2', '-cipher', 'ECDHE-RSA-CHACHA20-POLY1305'], 'ECDHE-RSA-CHACHA20-POLY1305'],
    [['-tls1_3'], null]]) {
    const r = hello(...args);
    assert.equal(r.status, 0, `${args.join(' ')} failed: ${r.out.slice(0, 400)}`);
    if (cipher) assert.equal(r.cipher, cipher);
    else assert.match(r.cipher || '', /^TLS_(AES_(128|256)_GCM|CHACHA20_POLY1305)_SHA(256|384)$/, r.out.slice(0, 400));
  }
});

// The request-head deadline counts from the connection, TLS handshake
// included (issue 11.1): a ClientHello sent one byte every 200 ms, never
// idle long enough for the idle timeout, is cut at --head-timeout.
test('a TLS handshake dribbled byte by byte is cut at the head deadline', { skip: NO_OPENSSL }, async () => {
  const s = await startServer(['--tls-cert', join(dir, 'c.pem'), '--tls-key', join(dir, 'k.pem'), '--head-timeout', '2']);
  try {
    const u = new URL(s.base);
    const outcome = await new Promise((resolve) => {
      const sock = net.connect({ host: '127.0.0.1', port: Number(u.port) });
      // A TLS record header announcing a 512-byte handshake message, then its bytes.
      const hello = Buffer.concat([Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00]), Buffer.alloc(512, 1)]);
      let sent = 0, t0 = 0, timer;
      const end = (how) => {
        clearInterval(timer);
        clearTimeout(limit);
        sock.destroy();
        resolve({ how, sent, secs: (Date.now() - t0) / 1000 });
      };
      sock.on('connect', () => {
        t0 = Date.now();
        timer = setInterval(() => { if (!sock.destroyed && sent < hello.length) sock.write(hello.subarray(sent, ++sent)); }, 200);
      });
      sock.on('data', () => {});
      sock.on('close', () => end('closed'));
      sock.on('error', () => end('closed'));
      const limit = setTimeout(() => end('still open'), 15000);
    });
    assert.equal(outcome.how, 'closed', `a dribbled handshake was still open after 15 s (${outcome.sent} bytes)`);
    assert.ok(outcome.secs >= 1.5 && outcome.secs < 10, `closed after ${outcome.secs} s; the deadline is 2 s`);
    assert.ok(outcome.sent >= 5, `only ${outcome.sent} bytes sent before the cut`);
    // A prompt client is served.
    assert.equal((await request(s.base, 'GET', '/api/health')).status, 200);
  } finally {
    await s.stop();
    s.cleanup();
  }
});
