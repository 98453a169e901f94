// The data directory: private to the service's user (directory 0700, files
// 0600, a warning for an existing directory that is wider), and one server
// per data directory (a second `serve` is refused while the first serves on).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BIN, WEB_DIR, startServer, Client, createStaff } from './harness.mjs';

const mode = (p) => statSync(p).mode & 0o7777;
const octal = (m) => '0' + m.toString(8);

// Run caresync to its exit; resolves {code, stdout, stderr}. A process that
// is still running after `ms` is killed and reported as such.
function run(args, ms = 20000) {
  return new Promise((resolve) => {
    const p = spawn(BIN, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '', stderr = '';
    p.stdout.on('data', (d) => { stdout += d; });
    p.stderr.on('data', (d) => { stderr += d; });
    const timer = setTimeout(() => p.kill('SIGKILL'), ms);
    p.on('exit', (code, signal) => { clearTimeout(timer); resolve({ code, signal, stdout, stderr }); });
  });
}

const serveArgs = (dataDir, port) =>
  ['serve', '--port', String(port), '--data-dir', dataDir, '--web-dir', WEB_DIR, '--log-level', 'warn'];

test('a fresh data directory is 0700 and every file in it 0600', async () => {
  const parent = mkdtempSync(join(tmpdir(), 'caresync-dd-'));
  const dataDir = join(parent, 'var'); // made by caresync itself, not by the test
  const srv = await startServer([], { dataDir });
  try {
    // A write, so the databases have their WAL and shared-memory files.
    const c = new Client(srv.base);
    await c.signup('modes-person');
    assert.equal((await c.post('/api/records', { kind: 'note', title: 'a note' })).status, 201);
    assert.equal(mode(dataDir), 0o700, `data directory is ${octal(mode(dataDir))}`);
    assert.equal(mode(join(dataDir, 'keys')), 0o700, 'keys directory');
    const files = ['caresync.db', 'caresync.db-wal', 'caresync.db-shm', 'ledger.db', 'ledger.db-wal', 'ledger.db-shm',
      'caresync.lock', 'keys/node.key', 'keys/admin.key'];
    for (const f of files) {
      const p = join(dataDir, f);
      assert.ok(existsSync(p), `${f} exists`);
      assert.equal(mode(p), 0o600, `${f} is ${octal(mode(p))}`);
    }
    // Nothing else in the directory escapes the rule either.
    for (const f of readdirSync(dataDir)) {
      const p = join(dataDir, f);
      assert.equal(mode(p) & 0o077, 0, `${f} is ${octal(mode(p))}`);
    }
    assert.doesNotMatch(srv.stderr, /readable or writable by others/, 'no warning for a directory caresync made');
  } finally {
    await srv.stop();
    rmSync(parent, { recursive: true, force: true });
  }
});

test('admin create-user on a fresh directory makes it private too', async () => {
  const parent = mkdtempSync(join(tmpdir(), 'caresync-dd-'));
  const dataDir = join(parent, 'var');
  try {
    await createStaff(dataDir, 'modes-admin', 'admin');
    assert.equal(mode(dataDir), 0o700);
    assert.equal(mode(join(dataDir, 'caresync.db')), 0o600);
  } finally {
    rmSync(parent, { recursive: true, force: true });
  }
});

test('an existing directory wider than 0700 is served, with a warning that names it', async () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'caresync-dd-'));
  chmodSync(dataDir, 0o755);
  const srv = await startServer([], { dataDir });
  try {
    assert.match(srv.stderr, /warn .*directory .*caresync-dd-\S+ is readable or writable by others.*chmod 700/);
    assert.equal((await new Client(srv.base).get('/api/health')).status, 200);
    // Files made in it are private all the same.
    assert.equal(mode(join(dataDir, 'caresync.db')), 0o600);
    assert.equal(mode(join(dataDir, 'ledger.db')), 0o600);
  } finally {
    await srv.stop();
  }
  // A database file someone widened is named on the next start.
  chmodSync(join(dataDir, 'caresync.db'), 0o644);
  const again = await startServer([], { dataDir });
  try {
    assert.match(again.stderr, /warn .*file .*caresync\.db is readable or writable by others.*chmod 600/);
  } finally {
    await again.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
});

test('a second serve on the same data directory and port is refused; the first keeps serving', async () => {
  const srv = await startServer();
  try {
    const port = new URL(srv.base).port;
    const second = await run(serveArgs(srv.dataDir, port));
    assert.notEqual(second.code, 0, `second server exited ${second.code} (${second.signal}): ${second.stderr}`);
    assert.equal(second.signal, null, 'it exits by itself, at once');
    assert.match(second.stderr, /data directory .* is in use by another caresync serve, pid \d+/);
    assert.doesNotMatch(second.stdout, /listening/);
    // The first one still answers, writes included.
    const c = new Client(srv.base);
    await c.signup('still-serving');
    const r = await c.post('/api/records', { kind: 'note', title: 'after the second start' });
    assert.equal(r.status, 201, r.text);
    assert.equal((await c.get('/api/records')).json.records.length, 1);
  } finally {
    const { code } = await srv.stop();
    assert.equal(code, 0);
  }
  // The lock goes with the process: the same directory serves again.
  const again = await startServer([], { dataDir: srv.dataDir });
  try {
    const c = new Client(again.base);
    await c.login('still-serving');
    assert.equal((await c.get('/api/records')).json.records.length, 1);
  } finally {
    await again.stop();
    srv.cleanup();
  }
});

test('a second serve on another data directory cannot take a port in use', async () => {
  const srv = await startServer();
  const other = mkdtempSync(join(tmpdir(), 'caresync-dd-'));
  try {
    const second = await run(serveArgs(other, new URL(srv.base).port));
    assert.notEqual(second.code, 0, `second server exited ${second.code} (${second.signal}): ${second.stderr}`);
    assert.equal(second.signal, null, 'it exits by itself, at once');
    assert.match(second.stderr, /cannot listen/);
    assert.equal((await new Client(srv.base).get('/api/health')).status, 200);
  } finally {
    await srv.stop();
    srv.cleanup();
    rmSync(other, { recursive: true, force: true });
  }
});
