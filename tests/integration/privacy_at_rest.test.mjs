// Privacy at rest: health data is sealed before it reaches SQLite. A unique
// marker is written into a record (title, details) and a profile
// (display_name); the raw bytes of caresync.db and its WAL must not contain
// it, in any common encoding, while the server runs or after it stops.
// Deleted accounts leave no rows (and, with secure_delete, no ciphertext).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { startServer, Client } from './harness.mjs';

const PW = 'correct horse battery';
const marker = randomBytes(16).toString('hex');
const pwMarker = `pw-${randomBytes(12).toString('hex')}`;
const HAVE_SQLITE = spawnSync('sqlite3', ['-version']).status === 0;

let first, srv, keeper, leaver, recovery, sessionToken;

// Every way the marker could plausibly sit in the file.
function encodings(s) {
  const le = Buffer.from(s, 'utf16le');
  const be = Buffer.from(le); be.swap16();
  return {
    utf8: Buffer.from(s, 'utf8'),
    'utf8 upper-case': Buffer.from(s.toUpperCase(), 'utf8'),
    'utf-16le': le,
    'utf-16be': be,
    base64: Buffer.from(Buffer.from(s).toString('base64').slice(0, 20)),
  };
}

function dbFiles(dir) {
  return ['caresync.db', 'caresync.db-wal', 'caresync.db-shm'].map((n) => join(dir, n)).filter((p) => existsSync(p));
}

function findIn(dir, needle, label) {
  const hits = [];
  for (const file of dbFiles(dir)) {
    const bytes = readFileSync(file);
    for (const [enc, buf] of Object.entries(encodings(needle))) {
      if (bytes.indexOf(buf) >= 0) hits.push(`${label} (${enc}) in ${file}`);
    }
  }
  return hits;
}

function sqlite(dbPath, sql) {
  const r = spawnSync('sqlite3', ['-readonly', dbPath, sql], { encoding: 'utf8' });
  assert.equal(r.status, 0, `sqlite3 ${sql}: ${r.stderr}`);
  return r.stdout.trim();
}

before(async () => {
  first = srv = await startServer();
  keeper = new Client(srv.base);
  await keeper.signup('keeper', PW);
  assert.equal((await keeper.post('/api/records', { kind: 'note', title: 'keeper one' })).status, 201);
  assert.equal((await keeper.post('/api/records', { kind: 'note', title: 'keeper two' })).status, 201);
  assert.equal((await keeper.put('/api/profile', { display_name: 'Keeper', birth_year: 1950, sex: 'male', region: null })).status, 200);

  leaver = new Client(srv.base);
  const s = await leaver.signup('leaver', pwMarker);
  recovery = s.json.recovery_code;
  sessionToken = leaver.cookie;
  const rec = await leaver.post('/api/records', {
    kind: 'condition', title: `Condition ${marker}`, details: `Details mention ${marker} twice: ${marker}`, onset: '2015-06-01',
  });
  assert.equal(rec.status, 201, rec.text);
  assert.equal((await leaver.post('/api/records', { kind: 'symptom', title: `S ${marker}`, onset: '2020-02-02' })).status, 201);
  assert.equal((await leaver.post('/api/records', { kind: 'note', title: 'plain note' })).status, 201);
  const p = await leaver.put('/api/profile', { display_name: `Name ${marker}`, birth_year: 1980, sex: 'female', region: 'NZ-AUK' });
  assert.equal(p.status, 200, p.text);
  // The API gives it all back, so the marker really was stored.
  const exp = await leaver.get('/api/export');
  assert.equal(exp.text.split(marker).length - 1, 5);
});

after(async () => {
  if (srv) await srv.stop();
  if (first) { await first.stop(); first.cleanup(); }
});

test('the scan works: the username (stored in clear by design) is found', () => {
  assert.ok(findIn(srv.dataDir, 'leaver', 'username').length > 0, 'positive control failed: scanning the wrong files?');
});

test('while running: no marker, password, recovery code or session token in the database or WAL', () => {
  assert.ok(existsSync(join(srv.dataDir, 'caresync.db')));
  const hits = [
    ...findIn(srv.dataDir, marker, 'marker'),
    ...findIn(srv.dataDir, pwMarker, 'password'),
    ...findIn(srv.dataDir, recovery, 'recovery code'),
    ...findIn(srv.dataDir, sessionToken, 'session token'),
  ];
  assert.deepEqual(hits, []);
});

test('after a graceful SIGTERM stop (WAL checkpointed): still no marker; after restart it is all readable', async () => {
  const stopped = await srv.stop('SIGTERM');
  assert.deepEqual(stopped, { code: 0, signal: null });
  const wal = join(srv.dataDir, 'caresync.db-wal');
  assert.ok(!existsSync(wal) || readFileSync(wal).length === 0, 'the WAL is checkpointed and truncated on a clean stop');
  const hits = [
    ...findIn(srv.dataDir, marker, 'marker'),
    ...findIn(srv.dataDir, pwMarker, 'password'),
    ...findIn(srv.dataDir, recovery, 'recovery code'),
    ...findIn(srv.dataDir, sessionToken, 'session token'),
  ];
  assert.deepEqual(hits, []);
  assert.ok(findIn(srv.dataDir, 'leaver', 'username').length > 0, 'positive control');
  // Same data directory, new process: the sealed rows open again for their owner.
  srv = await startServer([], { dataDir: first.dataDir });
  for (const c of [keeper, leaver]) c.base = srv.base;
  const exp = await leaver.get('/api/export');
  assert.equal(exp.status, 200, exp.text);
  assert.equal(exp.text.split(marker).length - 1, 5);
  assert.deepEqual(findIn(srv.dataDir, marker, 'marker'), []);
});

test('deleted account: rows gone, ciphertext gone after checkpoint, name reusable with nothing inside', async (t) => {
  // The ciphertexts of the leaver's rows, to look for after deletion.
  let sealed = [];
  if (HAVE_SQLITE) {
    const db = join(srv.dataDir, 'caresync.db');
    sealed = sqlite(db, "SELECT hex(sealed) FROM records WHERE user_id = (SELECT id FROM users WHERE username = 'leaver') " +
      "UNION ALL SELECT hex(sealed) FROM profiles WHERE user_id = (SELECT id FROM users WHERE username = 'leaver')")
      .split('\n').filter(Boolean).map((h) => Buffer.from(h, 'hex'));
    assert.equal(sealed.length, 4, 'three records and a profile are stored for the leaver');
  }
  const del = await leaver.del('/api/account', { password: pwMarker });
  assert.equal(del.status, 200, del.text);

  const again = new Client(srv.base);
  await again.signup('leaver', PW);
  assert.deepEqual((await again.get('/api/records')).json.records, []);
  assert.deepEqual((await again.get('/api/profile')).json.profile, { display_name: null, birth_year: null, sex: null, region: null });
  assert.equal((await keeper.get('/api/records')).json.records.length, 2, "the other account's records are untouched");

  const stopped = await srv.stop('SIGTERM');
  assert.deepEqual(stopped, { code: 0, signal: null });
  assert.deepEqual([...findIn(srv.dataDir, marker, 'marker'), ...findIn(srv.dataDir, pwMarker, 'password')], []);
  if (!HAVE_SQLITE) { t.skip('sqlite3 CLI not installed: row counts and ciphertext scan skipped'); return; }
  const db = join(srv.dataDir, 'caresync.db');
  assert.equal(sqlite(db, 'SELECT count(*) FROM records'), '2', 'only the keeper\'s two records remain');
  assert.equal(sqlite(db, 'SELECT count(*) FROM profiles'), '1', 'only the keeper\'s profile remains');
  assert.equal(sqlite(db, 'SELECT count(*) FROM records WHERE user_id NOT IN (SELECT id FROM users)'), '0');
  assert.equal(sqlite(db, 'SELECT count(*) FROM sessions WHERE user_id NOT IN (SELECT id FROM users)'), '0');
  const left = [];
  for (const file of dbFiles(srv.dataDir)) {
    const bytes = readFileSync(file);
    sealed.forEach((blob, i) => { if (bytes.indexOf(blob.subarray(0, 48)) >= 0) left.push(`blob ${i} in ${file}`); });
  }
  assert.deepEqual(left, [], 'secure_delete: the deleted ciphertext is overwritten');
});
