// Ledger over HTTP: bad input gets the documented errors and changes nothing;
// the ledger file and the public explorer hold no personal identifier.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, existsSync, readdirSync, rmSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes, createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { startServer, Client, createStaff, errorOf, BIN } from './harness.mjs';

let srv, alice, bob, admin;
const uniq = `${process.pid % 1000}${randomBytes(2).toString('hex')}`;
const names = { alice: `zelda${uniq}`, bob: `quincy${uniq}`, admin: `boss${uniq}` };

before(async () => {
  srv = await startServer();
  alice = new Client(srv.base);
  await alice.signup(names.alice);
  bob = new Client(srv.base);
  await bob.signup(names.bob);
  await createStaff(srv.dataDir, names.admin, 'admin');
  admin = new Client(srv.base);
  await admin.login(names.admin);
});

after(async () => { if (srv) { await srv.stop(); srv.cleanup(); } });

function expectError(r, status, code, field) {
  assert.equal(r.status, status, r.text);
  const e = errorOf(r);
  assert.equal(e.code, code, r.text);
  if (field) assert.equal(e.field, field, r.text);
}

test('consent validation: 422 with the field named, nothing recorded', async () => {
  const head = (await alice.get('/api/ledger')).json.tree_head.tree_size;
  const cases = [
    [{ purpose: 'research' }, 'scope'],
    [{ scope: [], purpose: 'research' }, 'scope'],
    [{ scope: ['dna'], purpose: 'research' }, 'scope'],
    [{ scope: [1], purpose: 'research' }, 'scope'],
    [{ scope: ['screening'] }, 'purpose'],
    [{ scope: ['screening'], purpose: 'marketing' }, 'purpose'],
    [{ scope: ['screening'], purpose: 'research', grantee: 'somebody' }, 'grantee'],
    [{ scope: ['screening'], purpose: 'research', expires_in_days: 0 }, 'expires_in_days'],
    [{ scope: ['screening'], purpose: 'research', expires_in_days: 99999 }, 'expires_in_days'],
    [{ scope: ['screening'], purpose: 'research', expires_in_days: '30' }, 'expires_in_days'],
  ];
  for (const [body, field] of cases) expectError(await alice.post('/api/consents', body), 422, 'validation_failed', field);
  // A grantee that is a well-formed key but no registered organisation.
  expectError(await alice.post('/api/consents', { scope: ['screening'], purpose: 'research', grantee: 'ab'.repeat(32) }),
    404, 'not_found');
  assert.equal((await alice.get('/api/ledger')).json.tree_head.tree_size, head, 'a rejected request wrote to the ledger');
  assert.equal((await alice.get('/api/consents')).json.consents.length, 0);
});

test('revoke: twice is 409 ledger_conflict; someone else\'s or unknown is 404', async () => {
  const g = await alice.post('/api/consents', { scope: ['symptoms', 'demographics'], purpose: 'public_health_surveillance' });
  assert.equal(g.status, 201, g.text);
  const id = g.json.consent.id;
  expectError(await bob.post(`/api/consents/${id}/revoke`), 404, 'not_found');
  expectError(await bob.get(`/api/consents/${id}/receipt`), 404, 'not_found');
  expectError(await alice.post(`/api/consents/${'0'.repeat(64)}/revoke`), 404, 'not_found');
  expectError(await alice.post('/api/consents/xyz/revoke'), 404, 'not_found');
  const r = await alice.post(`/api/consents/${id}/revoke`);
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.consent.status, 'revoked');
  expectError(await alice.post(`/api/consents/${id}/revoke`), 409, 'ledger_conflict', 'grant');
  const list = (await alice.get('/api/consents')).json.consents;
  assert.deepEqual(list.map((c) => [c.id, c.status]), [[id, 'revoked']]);
  // The receipt of a revoked grant still proves the grant was recorded.
  const rc = await alice.get(`/api/consents/${id}/receipt`);
  assert.equal(rc.status, 200);
  // It states only what the proof covers: not the status, which the later
  // revocation (a separate transaction) changed.
  assert.equal(rc.json.consent.id, id);
  assert.equal(rc.json.consent.status, undefined);
  assert.equal(rc.json.consent.revoked_block, undefined);
  assert.equal(rc.json.consent.granted_block, g.json.receipt.block);
});

test('wallet: bad recipients and amounts are 422/404; balances never go negative', async () => {
  const bobKey = (await bob.get('/api/wallet')).json.wallet.public_key;
  for (const [body, field] of [
    [{ to: bobKey }, 'amount'], [{ to: bobKey, amount: 0 }, 'amount'], [{ to: bobKey, amount: -5 }, 'amount'],
    [{ to: bobKey, amount: 1.5 }, 'amount'], [{ to: 'nope', amount: 1 }, 'to'], [{ amount: 1 }, 'to'],
    [{ to: bobKey, amount: 1 }, 'amount'], // insufficient balance
  ]) expectError(await alice.post('/api/wallet/transfer', body), 422, 'validation_failed', field);
  expectError(await alice.post('/api/wallet/transfer', { to: 'cd'.repeat(32), amount: 1 }), 404, 'not_found'); // no such wallet
  expectError(await alice.post('/api/wallet/redeem', { amount: 1 }), 422, 'validation_failed', 'amount');
  expectError(await alice.post('/api/wallet/redeem', {}), 422, 'validation_failed', 'amount');
  const w = (await alice.get('/api/wallet')).json.wallet;
  assert.equal(w.balance, 0);
});

test('explorer: bad heights, txids and paging are clean errors', async () => {
  const anon = new Client(srv.base);
  expectError(await anon.get('/api/ledger/blocks/abc'), 404, 'not_found');
  expectError(await anon.get('/api/ledger/blocks/99999999'), 404, 'not_found');
  expectError(await anon.get('/api/ledger/blocks/-1'), 404, 'not_found');
  expectError(await anon.get('/api/ledger/tx/1234'), 404, 'not_found');
  expectError(await anon.get(`/api/ledger/tx/${'f'.repeat(64)}`), 404, 'not_found');
  expectError(await anon.get(`/api/ledger/proof/${'f'.repeat(64)}`), 404, 'not_found');
  expectError(await anon.get('/api/ledger/blocks?limit=0'), 422, 'validation_failed', 'limit');
  expectError(await anon.get('/api/ledger/blocks?limit=51'), 422, 'validation_failed', 'limit');
  expectError(await anon.get('/api/ledger/blocks?before=x'), 422, 'validation_failed', 'before');
  expectError(await anon.post('/api/ledger', {}), 405, 'method_not_allowed');
  expectError(await anon.get('/api/ledger/consistency'), 422, 'validation_failed', 'from');
  expectError(await anon.get('/api/ledger/consistency?from=x'), 422, 'validation_failed', 'from');
  // from=0 follows RFC 6962: the empty tree is a prefix of every tree, the
  // proof is empty and from_root is the empty tree's hash, SHA-256().
  const c0 = await anon.get('/api/ledger/consistency?from=0');
  assert.equal(c0.status, 200, c0.text);
  assert.deepEqual(c0.json.consistency.proof, []);
  assert.equal(c0.json.consistency.from_root, createHash('sha256').update('').digest('hex'));
  expectError(await anon.get('/api/ledger/consistency?from=3&to=2'), 422, 'validation_failed');
  expectError(await anon.get('/api/ledger/consistency?from=1&to=999999'), 422, 'validation_failed', 'to');
  // Old tree heads (the block headers) are consistent with the latest one.
  const b1 = (await anon.get('/api/ledger/blocks/1')).json.block;
  const cons = await anon.get(`/api/ledger/consistency?from=${b1.tree_size}`);
  assert.equal(cons.status, 200, cons.text);
  assert.equal(cons.json.consistency.from_root, b1.root);
  assert.equal(cons.json.consistency.to_root, (await anon.get('/api/ledger')).json.tree_head.root);
  assert.ok(cons.json.consistency.proof.length >= 1);
  const page = await anon.get('/api/ledger/blocks?limit=2&before=3');
  assert.equal(page.status, 200);
  assert.deepEqual(page.json.blocks.map((b) => b.height), [2, 1]);
});

test('organisations: admin registers once; duplicates 409; bad names and keys 422', async () => {
  const key = randomBytes(32).toString('hex');
  const ok = await admin.post('/api/admin/orgs', { name: 'Northland Public Health', public_key: key });
  assert.equal(ok.status, 201, ok.text);
  expectError(await admin.post('/api/admin/orgs', { name: 'Northland Public Health', public_key: key }), 409, 'ledger_conflict', 'org');
  expectError(await admin.post('/api/admin/orgs', { name: ' padded', public_key: randomBytes(32).toString('hex') }), 422, 'validation_failed', 'name');
  expectError(await admin.post('/api/admin/orgs', { name: 'Tab\there', public_key: randomBytes(32).toString('hex') }), 422, 'validation_failed', 'name');
  expectError(await admin.post('/api/admin/orgs', { name: 'x'.repeat(65), public_key: randomBytes(32).toString('hex') }), 422, 'validation_failed', 'name');
  expectError(await admin.post('/api/admin/orgs', { name: 'Fine Name', public_key: 'short' }), 422, 'validation_failed', 'public_key');
  const orgs = (await alice.get('/api/ledger/orgs')).json.organisations;
  assert.deepEqual(orgs.map((o) => o.name), ['Northland Public Health']);
  // A consent to that organisation now works.
  const g = await alice.post('/api/consents', { scope: ['conditions'], purpose: 'research', grantee: key });
  assert.equal(g.status, 201, g.text);
  assert.equal(g.json.consent.grantee, key);
});

test('record anchors: commitment on the ledger, proof checks offline, edits and strangers are 404', async () => {
  const rec = await alice.post('/api/records', { kind: 'allergy', title: 'Peanuts', details: 'anaphylaxis 2019' });
  assert.equal(rec.status, 201);
  const id = rec.json.record.id;
  const a = await alice.post(`/api/records/${id}/anchor`);
  assert.equal(a.status, 201, a.text);
  assert.match(a.json.anchor.commitment, /^[0-9a-f]{64}$/);
  expectError(await alice.post(`/api/records/${id}/anchor`), 409, 'ledger_conflict', 'commitment');
  expectError(await bob.post(`/api/records/${id}/anchor`), 404, 'not_found');
  expectError(await bob.get(`/api/records/${id}/anchor`), 404, 'not_found');
  const tx = await bob.get(`/api/ledger/tx/${a.json.anchor.receipt.txid}`);
  assert.equal(tx.json.transaction.kind, 'anchor');
  assert.equal(tx.json.transaction.commitment, a.json.anchor.commitment);
  assert.ok(!tx.text.includes('Peanuts'));
  const proof = await alice.get(`/api/records/${id}/anchor`);
  assert.equal(proof.status, 200, proof.text);
  assert.equal(proof.json.commitment, a.json.anchor.commitment);
  assert.equal(JSON.parse(proof.json.record_text).title, 'Peanuts');
  // Offline: the CLI checks text+salt → commitment → anchored tx → signed log.
  const dir = mkdtempSync(join(tmpdir(), 'anchor-'));
  try {
    const file = join(dir, 'anchor.json');
    writeFileSync(file, proof.text);
    const node = (await bob.get('/api/ledger')).json.node_key;
    let r = spawnSync(BIN, ['ledger', 'verify-proof', file, '--node-key', node], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /record OK/);
    const forged = { ...proof.json, record_text: proof.json.record_text.replace('Peanuts', 'Walnuts') };
    writeFileSync(file, JSON.stringify(forged));
    r = spawnSync(BIN, ['ledger', 'verify-proof', file, '--node-key', node], { encoding: 'utf8' });
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /INVALID/);
  } finally { rmSync(dir, { recursive: true, force: true }); }
  // After an edit, the current version is not anchored (but can be).
  assert.equal((await alice.put(`/api/records/${id}`, { kind: 'allergy', title: 'Peanuts', details: 'changed' })).status, 200);
  expectError(await alice.get(`/api/records/${id}/anchor`), 404, 'not_found');
  assert.equal((await alice.post(`/api/records/${id}/anchor`)).status, 201);
});

test('deleting an account revokes its active consents on the ledger first', async () => {
  const c = new Client(srv.base);
  await c.signup(`leaver${uniq}`);
  const active = async () => (await c.get('/api/ledger')).json.totals.consents_active;
  const before = await active();
  for (const scope of [['screening'], ['symptoms']]) {
    assert.equal((await c.post('/api/consents', { scope, purpose: 'public_health_surveillance' })).status, 201);
  }
  assert.equal(await active(), before + 2);
  expectError(await c.del('/api/account', { password: 'wrong password!!' }), 401, 'invalid_credentials');
  assert.equal(await active(), before + 2, 'a failed deletion must not touch the ledger');
  const d = await c.del('/api/account', { password: 'correct horse battery' });
  assert.equal(d.status, 200, d.text);
  assert.equal(await active(), before);
});

test('privacy: no personal identifier in the ledger file or the public explorer', async () => {
  const marker = `MARKER${randomBytes(6).toString('hex')}`;
  const display = `Display${uniq}Person`;
  assert.equal((await alice.put('/api/profile', { display_name: display, birth_year: 1961, sex: 'female', region: 'NZ-AUK' })).status, 200);
  assert.equal((await alice.post('/api/records', { kind: 'condition', title: marker, details: `${marker} details`, onset: '2024-02-03' })).status, 201);
  const g = await alice.post('/api/consents', { scope: ['screening', 'conditions', 'symptoms', 'demographics'], purpose: 'public_health_surveillance' });
  assert.equal(g.status, 201);
  await alice.get('/api/wallet');
  // Everything the public can see.
  const anon = new Client(srv.base);
  const pages = [await anon.get('/api/ledger'), await anon.get('/api/ledger/blocks?limit=50'), await anon.get('/api/ledger/orgs')];
  const head = pages[0].json.tree_head.height;
  for (let h = 0; h <= head; h++) pages.push(await anon.get(`/api/ledger/blocks/${h}`));
  pages.push(await anon.get(`/api/ledger/proof/${g.json.consent.id}`));
  const publicText = pages.map((p) => p.text).join('\n');
  // And the ledger file itself, with its WAL, after a clean stop flushed it.
  await srv.stop();
  const files = readdirSync(srv.dataDir).filter((f) => f.startsWith('ledger.db'));
  const bytes = Buffer.concat(files.map((f) => readFileSync(join(srv.dataDir, f))));
  const cli = spawnSync(BIN, ['ledger', 'verify', '--data-dir', srv.dataDir], { encoding: 'utf8' });
  assert.equal(cli.status, 0, cli.stderr);
  // (The birth year is checked in the file only: four digits occur by
  // chance in the explorer's hex strings.)
  const identifiers = [names.alice, names.bob, names.admin, display, marker, 'NZ-AUK', 'Auckland', 'female'];
  for (const id of identifiers) {
    assert.ok(!publicText.includes(id), `explorer shows "${id}"`);
    assert.ok(!bytes.includes(Buffer.from(id)), `ledger file contains "${id}"`);
  }
  assert.ok(!bytes.includes(Buffer.from('1961')), 'ledger file contains the birth year');
  assert.ok(existsSync(join(srv.dataDir, 'ledger.db')));
  const dir = srv.dataDir;
  srv = await startServer([], { dataDir: dir }); // for after()
  srv.cleanup = () => rmSync(dir, { recursive: true, force: true });
});
