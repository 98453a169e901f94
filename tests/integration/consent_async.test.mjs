// POST /api/consents answers from the ledger's commit without holding a
// server thread (issue 15: the request is deferred and its connection
// suspended until the block is committed). Checked here: many concurrent
// writes are each answered with their own consent and receipt, share blocks
// (more transactions in a block than the server has threads, which a
// request holding its thread could never give), and the ledger holds
// exactly them (revocations too); a client that hangs up while its write waits leaves the
// server healthy and the write committed; SIGTERM with writes waiting exits
// 0 with no sanitizer report, every write answered 201 being stored and
// none answered otherwise.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { rmSync } from 'node:fs';
import { startServer, Client } from './harness.mjs';

const SCOPES = ['screening', 'conditions', 'symptoms', 'demographics'];
const PURPOSES = ['research', 'model_training', 'public_health_surveillance'];
const DAY = 86400e3;

// Request i asks for its own scope, purpose and expiry, so an answer that
// went to the wrong request shows.
const bodyOf = (i) => ({ scope: [SCOPES[i % 4]], purpose: PURPOSES[i % 3], expires_in_days: 1 + (i % 3000) });

function checkAnswer(i, r, sentAt) {
  assert.equal(r.status, 201, `request ${i}: ${r.status} ${r.text}`);
  const { consent, receipt } = r.json;
  assert.deepEqual(consent.scope, [SCOPES[i % 4]], `request ${i} got another request's answer`);
  assert.equal(consent.purpose, PURPOSES[i % 3]);
  const expires = Date.parse(consent.expires_at);
  const want = sentAt + (1 + (i % 3000)) * DAY;
  assert.ok(Math.abs(expires - want) < DAY / 2, `request ${i}: expiry ${consent.expires_at}`);
  assert.equal(consent.status, 'active');
  assert.equal(consent.id, receipt.txid);
  assert.equal(consent.granted_block, receipt.block);
  assert.equal(consent.receipt_url, `/api/consents/${consent.id}/receipt`);
}

// POST over a node:http keep-alive agent (few sockets, reused).
function postVia(agent, base, c, body) {
  const u = new URL(base + '/api/consents');
  const payload = JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: u.hostname, port: u.port, path: u.pathname, method: 'POST', agent,
      headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(payload),
        Cookie: `cs_session=${c.cookie}`, 'X-CSRF-Token': c.csrf },
    }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { text += d; });
      res.on('end', () => {
        let json = null;
        try { json = JSON.parse(text); } catch { /* not JSON */ }
        resolve({ status: res.statusCode, text, json, socket: res.socket });
      });
    });
    req.on('error', reject);
    req.end(payload);
  });
}

test('200 concurrent consent writes: each answered with its own receipt, batched, and exactly them on the ledger', async () => {
  const srv = await startServer(['--threads', '2', '--max-connections-per-ip', '400']);
  try {
    const users = [];
    for (let u = 0; u < 4; u++) {
      const c = new Client(srv.base);
      await c.signup(`async-${u}`);
      users.push(c);
    }
    const h0 = (await users[0].get('/api/health')).json.ledger;
    const N = 200;
    const answered = users.map(() => []);
    const all = [];

    // Round 1: all 200 in flight at once, one connection each (first uses
    // of the wallets among them: their registrations race, one wins each).
    const sentAt = Date.now();
    const r1 = await Promise.all(Array.from({ length: N }, (_, i) => users[i % 4].post('/api/consents', bodyOf(i))));
    r1.forEach((r, i) => { checkAnswer(i, r, sentAt); answered[i % 4].push(r.json.consent.id); all.push(r.json.receipt); });

    // Round 2: 200 more over 16 keep-alive sockets, 16 in flight at a time.
    const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
    const sent2 = Date.now();
    const r2 = await Promise.all(Array.from({ length: N }, (_, i) => postVia(agent, srv.base, users[i % 4], bodyOf(i))));
    r2.forEach((r, i) => { checkAnswer(i, r, sent2); answered[i % 4].push(r.json.consent.id); all.push(r.json.receipt); });
    assert.ok(new Set(r2.map((r) => r.socket)).size <= 16, 'the keep-alive sockets were reused');
    agent.destroy();

    // Distinct transactions at distinct leaves.
    assert.equal(new Set(all.map((x) => x.txid)).size, 2 * N);
    assert.equal(new Set(all.map((x) => x.leaf_index)).size, 2 * N);
    // Blocks were shared: with 2 server threads, requests that each held a
    // thread until their block committed could put at most 2 in a block.
    const perBlock = new Map();
    for (const x of all) perBlock.set(x.block, (perBlock.get(x.block) || 0) + 1);
    const fullest = Math.max(...perBlock.values());
    assert.ok(fullest > 2, `at most ${fullest} writes shared a block`);

    // The ledger holds exactly them (and one wallet registration per user).
    for (let u = 0; u < 4; u++) {
      const list = await users[u].get('/api/consents');
      assert.equal(list.status, 200);
      assert.deepEqual(list.json.consents.map((c) => c.id).sort(), [...answered[u]].sort());
    }
    const h1 = (await users[0].get('/api/health')).json.ledger;
    assert.equal(h1.tree_size - h0.tree_size, 2 * N + 4);

    // Revocations take the same path: 40 at once, each answered with its own.
    const mine = answered[0].slice(0, 40);
    const rv = await Promise.all(mine.map((id) => users[0].post(`/api/consents/${id}/revoke`)));
    rv.forEach((r, k) => {
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json.consent.id, mine[k]);
      assert.equal(r.json.consent.status, 'revoked');
      assert.equal(r.json.consent.revoked_block, r.json.receipt.block);
    });
    const after = (await users[0].get('/api/consents')).json.consents;
    assert.deepEqual(after.filter((c) => c.status === 'revoked').map((c) => c.id).sort(), [...mine].sort());
  } finally {
    await srv.stop();
    srv.cleanup();
  }
});

test('a client that hangs up while its write waits: the server stays healthy, the write is committed', async () => {
  // A wide block window keeps the write waiting long enough to hang up.
  const srv = await startServer(['--ledger-batch-ms', '1500']);
  try {
    const c = new Client(srv.base);
    await c.signup('async-hangup');
    const first = await c.post('/api/consents', bodyOf(0)); // registers the wallet
    assert.equal(first.status, 201, first.text);

    const payload = JSON.stringify(bodyOf(1));
    const sock = net.connect(Number(new URL(srv.base).port), '127.0.0.1');
    await new Promise((resolve) => sock.on('connect', resolve));
    sock.write(`POST /api/consents HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n` +
      `Cookie: cs_session=${c.cookie}\r\nX-CSRF-Token: ${c.csrf}\r\nContent-Length: ${Buffer.byteLength(payload)}\r\n\r\n${payload}`);
    await new Promise((r) => setTimeout(r, 400)); // received and waiting for its block
    sock.destroy();

    // Served meanwhile, and afterwards.
    assert.equal((await c.get('/api/health')).status, 200);
    let ids = [];
    for (let k = 0; k < 100 && ids.length < 2; k++) {
      await new Promise((r) => setTimeout(r, 100));
      ids = (await c.get('/api/consents')).json.consents.map((x) => x.id);
    }
    assert.equal(ids.length, 2, 'the write of the client that hung up is committed');
    const again = await c.post('/api/consents', bodyOf(2));
    assert.equal(again.status, 201, again.text);
    assert.equal((await c.get('/api/consents')).json.consents.length, 3);
    assert.doesNotMatch(srv.stderr, /AddressSanitizer|runtime error|^\S+\s+error\s/m, srv.stderr);
  } finally {
    await srv.stop();
    srv.cleanup();
  }
});

test('SIGTERM with consent writes waiting: exit 0, each answered 201 and stored, no sanitizer report', async () => {
  const srv = await startServer(['--ledger-batch-ms', '2000']);
  let srv2;
  try {
    const c = new Client(srv.base);
    await c.signup('async-term');
    const first = await c.post('/api/consents', bodyOf(0));
    assert.equal(first.status, 201, first.text);

    const N = 30;
    const pending = Array.from({ length: N }, (_, i) => c.post('/api/consents', bodyOf(i + 1))
      .catch((e) => ({ status: 0, error: String(e) })));
    await new Promise((r) => setTimeout(r, 500)); // received, waiting for the block
    srv.proc.kill('SIGTERM');
    const results = await Promise.all(pending);
    const exit = await srv.exited;
    assert.deepEqual(exit, { code: 0, signal: null }, srv.stderr);
    assert.doesNotMatch(srv.stderr, /AddressSanitizer|LeakSanitizer|runtime error|^\S+\s+error\s/m, srv.stderr);
    const ok = results.filter((r) => r.status === 201);
    // Late arrivals may be refused (503 shutting_down, nothing written);
    // nothing else, and the writes that were waiting are answered 201.
    for (const r of results.filter((x) => x.status !== 201)) {
      assert.equal(r.status, 503, r.text || r.error);
      assert.equal(r.json.error.code, 'shutting_down');
    }
    assert.ok(ok.length >= 1, 'some writes were waiting at the signal');

    srv2 = await startServer([], { dataDir: srv.dataDir });
    c.base = srv2.base;
    const stored = (await c.get('/api/consents')).json.consents.map((x) => x.id).sort();
    assert.deepEqual(stored, [first.json.consent.id, ...ok.map((r) => r.json.consent.id)].sort());
  } finally {
    if (srv2) await srv2.stop();
    await srv.stop();
    rmSync(srv.dataDir, { recursive: true, force: true });
  }
});
