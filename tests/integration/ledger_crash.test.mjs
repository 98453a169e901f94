// Crash safety of the ledger: under a write load, the server is killed with
// SIGKILL at random moments (at least 30 times) and restarted on the same
// data directory. After every kill `caresync ledger verify` must pass, the
// server must come back, and every transaction the server acknowledged
// (a 201/200 with a receipt) must be in the ledger afterwards.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServer, Client, BIN } from './harness.mjs';

const KILLS = 32;
const USERS = 4;

function verify(dataDir) {
  const r = spawnSync(BIN, ['ledger', 'verify', '--data-dir', dataDir], { encoding: 'utf8' });
  return { ok: r.status === 0, out: `${r.stdout}${r.stderr}` };
}

// Keep every client writing until the server goes away; collect acknowledged txids.
async function load(clients, acked, stopAt) {
  const one = async (c) => {
    while (Date.now() < stopAt) {
      let r;
      try {
        r = await c.post('/api/consents', { scope: ['screening'], purpose: 'public_health_surveillance', expires_in_days: 7 });
      } catch { return; } // connection refused or reset: the server is dead
      if (r.status === 201) acked.push(r.json.receipt.txid);
      else if (r.status !== 503) throw new Error(`unexpected ${r.status}: ${r.text}`);
      if (r.status === 201 && acked.length % 5 === 0) {
        // Also revoke now and then: a second kind of write, touching existing state.
        try {
          const v = await c.post(`/api/consents/${r.json.consent.id}/revoke`);
          if (v.status === 200) acked.push(v.json.receipt.txid);
        } catch { return; }
      }
    }
  };
  await Promise.all(clients.map(one));
}

test(`ledger survives ${KILLS} SIGKILLs under load with nothing acknowledged lost`, { timeout: 600000 }, async (t) => {
  const dataDir = mkdtempSync(join(tmpdir(), 'caresync-crash-'));
  try {
    let srv = await startServer([], { dataDir });
    const clients = [];
    const creds = [];
    for (let i = 0; i < USERS; i++) {
      const c = new Client(srv.base);
      const name = `crash${process.pid % 1000}u${i}`;
      await c.signup(name);
      creds.push(name);
      clients.push(c);
    }
    const acked = [];
    let rng = 12345;
    const rand = (n) => { rng = (rng * 1103515245 + 12345) & 0x7fffffff; return rng % n; };
    for (let k = 0; k < KILLS; k++) {
      for (const c of clients) c.base = srv.base;
      const before = acked.length;
      const killAfter = 30 + rand(400); // ms into the load
      const loading = load(clients, acked, Date.now() + 5000);
      await new Promise((r) => setTimeout(r, killAfter));
      srv.proc.kill('SIGKILL');
      const exit = await srv.exited;
      assert.equal(exit.signal, 'SIGKILL');
      await loading;
      const v = verify(dataDir);
      assert.ok(v.ok, `verify after kill ${k + 1} (at ${killAfter} ms, ${acked.length - before} acks this round): ${v.out}`);
      srv = await startServer([], { dataDir });
      // Sessions survive the restart; nothing to re-login.
    }
    assert.ok(acked.length > KILLS * 3, `load too light to mean anything: ${acked.length} acknowledged writes`);
    // Every acknowledged transaction is in the ledger.
    const anon = new Client(srv.base);
    const missing = [];
    for (const txid of acked) {
      const r = await anon.get(`/api/ledger/tx/${txid}`);
      if (r.status !== 200) missing.push(`${txid}: ${r.status}`);
    }
    assert.deepEqual(missing, [], `${missing.length} of ${acked.length} acknowledged transactions lost`);
    // The chain the last server built on top of all the crashes verifies too.
    await srv.stop();
    const v = verify(dataDir);
    assert.ok(v.ok, v.out);
    const head = /(\d+) blocks, (\d+) transactions/.exec(v.out);
    assert.ok(head && Number(head[2]) >= acked.length, v.out);
    t.diagnostic(`${KILLS} kills, ${acked.length} acknowledged writes all present; final chain: ${head[1]} blocks, ${head[2]} transactions`);
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
});
