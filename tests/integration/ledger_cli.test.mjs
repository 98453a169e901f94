// The operator's ledger tools on a real data directory: keygen, verify (and
// its verdict on a file tampered with on disk), proof and verify-proof.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, readFileSync, writeFileSync, statSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServer, Client, BIN } from './harness.mjs';

const run = (...args) => spawnSync(BIN, args, { encoding: 'utf8' });

test('keygen writes a 0600 key file once and prints its public key', () => {
  const dir = mkdtempSync(join(tmpdir(), 'keygen-'));
  try {
    const file = join(dir, 'org.key');
    const r = run('keygen', '--out', file);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout.trim(), /^[0-9a-f]{64}$/);
    assert.equal(statSync(file).mode & 0o777, 0o600);
    const again = run('keygen', '--out', file);
    assert.notEqual(again.status, 0, 'keygen overwrote an existing key');
    assert.match(again.stderr, /cannot create key file/);
    assert.equal(run('keygen').status, 2);
  } finally { rmSync(dir, { recursive: true, force: true }); }
});

test('verify passes on a live ledger, and names the transaction whose bytes were changed on disk', async () => {
  const srv = await startServer();
  try {
    const c = new Client(srv.base);
    await c.signup(`cli${process.pid % 1000}`);
    const txids = [];
    for (let i = 0; i < 5; i++) {
      const r = await c.post('/api/consents', { scope: ['screening'], purpose: 'research', expires_in_days: 10 + i });
      assert.equal(r.status, 201);
      txids.push(r.json.receipt.txid);
    }
    // While the server runs (read-only, WAL snapshot).
    let v = run('ledger', 'verify', '--data-dir', srv.dataDir);
    assert.equal(v.status, 0, v.stderr);
    assert.match(v.stdout, /ledger OK: \d+ blocks, 7 transactions/);
    // Proof from the CLI, checked by the CLI.
    const p = run('ledger', 'proof', txids[2], '--data-dir', srv.dataDir);
    assert.equal(p.status, 0, p.stderr);
    const proofFile = join(srv.dataDir, 'p.json');
    writeFileSync(proofFile, p.stdout);
    const node = (await c.get('/api/ledger')).json.node_key;
    let vp = run('ledger', 'verify-proof', proofFile, '--node-key', node);
    assert.equal(vp.status, 0, vp.stderr);
    assert.match(vp.stdout, /proven transaction: .*"kind":"grant_consent"/);
    // An edited readable copy must not pass, though the bytes are intact.
    const edited = JSON.parse(p.stdout);
    edited.transaction.purpose = 'public_health_surveillance';
    writeFileSync(proofFile + '.edited', JSON.stringify(edited));
    vp = run('ledger', 'verify-proof', proofFile + '.edited');
    assert.equal(vp.status, 1, vp.stdout);
    assert.match(vp.stderr, /readable transaction differs/);
    // The same for a consent receipt's consent block.
    const receipt = (await c.get(`/api/consents/${txids[1]}/receipt`)).json;
    writeFileSync(proofFile + '.receipt', JSON.stringify(receipt));
    assert.equal(run('ledger', 'verify-proof', proofFile + '.receipt', '--node-key', node).status, 0);
    receipt.consent.scope = ['screening', 'conditions'];
    writeFileSync(proofFile + '.receipt', JSON.stringify(receipt));
    vp = run('ledger', 'verify-proof', proofFile + '.receipt', '--node-key', node);
    assert.equal(vp.status, 1);
    assert.match(vp.stderr, /consent .* differs from the proven grant/);
    vp = run('ledger', 'verify-proof', proofFile, '--node-key', 'ab'.repeat(32));
    assert.equal(vp.status, 1);
    assert.match(vp.stderr, /not signed by the trusted node key/);
    assert.equal(run('ledger', 'proof', 'zz', '--data-dir', srv.dataDir).status, 2);
    assert.equal(run('ledger', 'proof', 'ab'.repeat(32), '--data-dir', srv.dataDir).status, 1);

    // Stop cleanly (the WAL is checkpointed into ledger.db), then change one
    // byte of one stored transaction in the file itself.
    const seq = JSON.parse(p.stdout).leaf_index;
    const txHex = JSON.parse(p.stdout).tx;
    await srv.stop();
    const file = join(srv.dataDir, 'ledger.db');
    const bytes = readFileSync(file);
    const at = bytes.indexOf(Buffer.from(txHex, 'hex'));
    assert.ok(at > 0, 'transaction bytes not found in the file');
    bytes[at + 60] ^= 0x01; // inside the body: the grant's expiry
    writeFileSync(file, bytes);
    v = run('ledger', 'verify', '--data-dir', srv.dataDir);
    assert.equal(v.status, 1, v.stdout);
    assert.match(v.stderr, new RegExp(`transaction ${seq}\\b`));
    assert.match(v.stderr, /block: \d+/);
    assert.match(v.stderr, /signature is invalid/);
    // A missing file is an error, not a crash.
    assert.equal(run('ledger', 'verify', '--file', join(srv.dataDir, 'nope.db')).status, 1);
    assert.ok(existsSync(file));
  } finally {
    await srv.stop();
    srv.cleanup();
  }
});
