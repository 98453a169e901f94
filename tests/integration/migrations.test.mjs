// Schema versions: a database written by a newer caresync (PRAGMA
// user_version above what this binary knows) is refused, and left untouched.
// (Upgrades from older versions are covered by the C unit tests.)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServer, Client, BIN, WEB_DIR } from './harness.mjs';

const PW = 'correct horse battery';
const HAVE_SQLITE = spawnSync('sqlite3', ['-version']).status === 0;
const NO_SQLITE = HAVE_SQLITE ? false : 'the sqlite3 CLI is not installed';

let origDir, latest;
const dirs = [];

function tempDir() { const d = mkdtempSync(join(tmpdir(), 'caresync-mig-')); dirs.push(d); return d; }
function sha256(file) { return createHash('sha256').update(readFileSync(file)).digest('hex'); }
function listing(dir) { return readdirSync(dir).sort().map((n) => `${n}:${statSync(join(dir, n)).size}`); }
function sqlite(db, sql) {
  const r = spawnSync('sqlite3', [db, sql], { encoding: 'utf8' });
  assert.equal(r.status, 0, `sqlite3 ${sql}: ${r.stderr}`);
  return r.stdout.trim();
}

// Copy a stopped data directory (databases — the WALs are empty after a
// clean stop — and the keys/ directory).
function copyData(from) {
  const to = tempDir();
  cpSync(from, to, { recursive: true });
  return to;
}

// Run a caresync command to completion (serve is killed if it starts).
function run(args, timeoutMs = 10000) {
  const p = spawn(BIN, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '', stderr = '';
  p.stdout.on('data', (d) => {
    stdout += d;
    if (/listening on/.test(stdout)) p.kill('SIGTERM'); // it should not have started
  });
  p.stderr.on('data', (d) => { stderr += d; });
  return new Promise((resolve) => {
    const timer = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    p.on('exit', (code, signal) => { clearTimeout(timer); resolve({ code, signal, stdout, stderr }); });
  });
}

before(async () => {
  const srv = await startServer();
  origDir = srv.dataDir;
  dirs.push(origDir);
  const c = new Client(srv.base);
  await c.signup('mig.user', PW);
  assert.equal((await c.post('/api/records', { kind: 'note', title: 'before the version bump' })).status, 201);
  latest = (await c.get('/api/health')).json.storage.schema_version;
  assert.ok(Number.isInteger(latest) && latest >= 1, `schema_version ${latest}`);
  const exit = await srv.stop();
  assert.equal(exit.code, 0);
});

after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

test('an unmodified copy of the stopped database starts and keeps its data (control)', async () => {
  const dir = copyData(origDir);
  const srv = await startServer([], { dataDir: dir });
  try {
    const c = new Client(srv.base);
    await c.login('mig.user', PW);
    const r = await c.get('/api/records');
    assert.deepEqual(r.json.records.map((x) => x.title), ['before the version bump']);
    assert.equal((await c.get('/api/health')).json.storage.schema_version, latest);
  } finally {
    await srv.stop();
  }
});

test('a database from a newer version is refused and left byte-for-byte untouched', { skip: NO_SQLITE }, async () => {
  const dir = copyData(origDir);
  const db = join(dir, 'caresync.db');
  assert.equal(sqlite(db, 'PRAGMA user_version'), String(latest));
  sqlite(db, 'PRAGMA user_version = 99');
  assert.equal(sqlite(db, 'PRAGMA user_version'), '99');
  for (const side of ['caresync.db-wal', 'caresync.db-shm']) assert.ok(!existsSync(join(dir, side)), `${side} left by sqlite3`);
  const hash = sha256(db);
  const files = listing(dir);

  const r = await run(['serve', '--port', '0', '--data-dir', dir, '--web-dir', WEB_DIR]);
  assert.notEqual(r.code, 0, `serve started on a v99 database:\n${r.stdout}${r.stderr}`);
  assert.equal(r.signal, null, 'it had to be killed');
  assert.doesNotMatch(r.stdout, /listening on/);
  assert.match(r.stderr, /newer|version/i, r.stderr);
  assert.match(r.stderr, /99/, 'the message names the version found');

  assert.equal(sha256(db), hash, 'the database file was modified');
  assert.deepEqual(listing(dir), files, 'files were added to or left in the data directory');
  assert.equal(sqlite(db, 'PRAGMA user_version'), '99');

  // The operator CLI refuses it too, again without touching it.
  const a = await run(['admin', 'list-users', '--data-dir', dir]);
  assert.notEqual(a.code, 0, `admin list-users accepted a v99 database: ${a.stdout}`);
  assert.match(a.stderr, /newer|version/i, a.stderr);
  assert.equal(sha256(db), hash, 'admin list-users modified the database');
});

test('the original database is unaffected by all this', async () => {
  const srv = await startServer([], { dataDir: origDir });
  try {
    const c = new Client(srv.base);
    await c.login('mig.user', PW);
    assert.equal((await c.get('/api/records')).json.records.length, 1);
  } finally {
    await srv.stop();
  }
});
