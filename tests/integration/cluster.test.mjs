// A 3-process ledger cluster on loopback (issue 15): three
// `caresync serve --cluster FILE` processes, raft and forward ports picked
// free by the test. Genesis is sealed once and shared; a consent written on
// any node (a follower forwards it to the leader) is in that node's explorer
// when the write answers and reaches every node's chain byte for byte; after
// kill -9 of the leader a write on a survivor waits for the new leader and
// commits, with every acknowledged consent still on both.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync, copyFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BIN, startServer, Client } from './harness.mjs';

const freePort = () => new Promise((resolve, reject) => {
  const s = createServer();
  s.on('error', reject);
  s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
});
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Poll fn until it returns a truthy value or the deadline passes.
async function until(what, fn, ms = 30000) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

function keygen(path) {
  const out = execFileSync(BIN, ['keygen', '--out', path], { encoding: 'utf8' });
  return out.match(/[0-9a-f]{64}/)[0];
}

async function heads(nodes) {
  return Promise.all(nodes.map(async (n) => (await new Client(n.base).get('/api/ledger')).json?.tree_head));
}

// Every node's chain, block by block, is the same (hashes compared).
async function sameChains(nodes, minHeight) {
  const hs = await heads(nodes);
  if (hs.some((h) => !h) || new Set(hs.map((h) => h.hash)).size !== 1 || hs[0].height < minHeight) return false;
  for (let b = 0; b <= hs[0].height; b++) {
    const got = await Promise.all(nodes.map(async (n) => (await new Client(n.base).get(`/api/ledger/blocks/${b}`)).json));
    const hashes = got.map((j) => JSON.stringify(j?.block?.hash ?? j?.hash ?? j));
    assert.equal(new Set(hashes).size, 1, `block ${b} differs between nodes: ${hashes.join(' ')}`);
  }
  return hs[0];
}

// A consent written on node i: any node answers 201 (a follower forwards
// it), and that node's own explorer has it at once (read-your-writes).
async function consentOn(clients, i, body = { scope: ['symptoms'], purpose: 'public_health_surveillance' }) {
  const r = await clients[i].post('/api/consents', body);
  assert.equal(r.status, 201, `node ${i + 1}: ${r.text}`);
  const id = r.json.consent.id;
  const seen = await new Client(clients[i].base).get(`/api/ledger/tx/${id}`);
  assert.equal(seen.status, 200, `node ${i + 1} does not show its own write ${id}: ${seen.text}`);
  return { node: i, id };
}

// The index of the node every live node names as leader.
async function leaderOf(nodes, live) {
  return (await until('health to agree on one leader', async () => {
    const hs = await Promise.all(live.map(async (i) => (await new Client(nodes[i].base).get('/api/health')).json));
    const leaders = live.filter((i, k) => hs[k]?.cluster?.leader);
    const id = leaders.length === 1 ? leaders[0] + 1 : 0;
    return id && hs.every((h) => h.cluster.leader_id === id) ? id : 0;
  })) - 1;
}

test('three serve processes: one genesis, identical chains, kill -9 of the leader', { timeout: 180000 }, async () => {
  const root = mkdtempSync(join(tmpdir(), 'caresync-cluster-'));
  const nodes = [];
  try {
    keygen(join(root, 'admin.key'));
    const members = [];
    for (let i = 1; i <= 3; i++) {
      const dir = join(root, `node${i}`);
      mkdirSync(join(dir, 'keys'), { recursive: true, mode: 0o700 });
      copyFileSync(join(root, 'admin.key'), join(dir, 'keys', 'admin.key'));
      const key = keygen(join(dir, 'keys', 'node.key'));
      members.push({ id: i, address: `127.0.0.1:${await freePort()}`, forward: `127.0.0.1:${await freePort()}`, key });
    }
    const file = join(root, 'cluster.json');
    writeFileSync(file, JSON.stringify({ nodes: members, election_ms: 1000, heartbeat_ms: 100 }));
    for (let i = 1; i <= 3; i++) {
      nodes.push(await startServer(['--cluster', file], { dataDir: join(root, `node${i}`) }));
    }
    // One genesis, the same on all three.
    const g = await until('genesis on every node', () => sameChains(nodes, 0));
    assert.equal(g.height, 0);

    const clients = [];
    for (let i = 0; i < 3; i++) {
      clients.push(new Client(nodes[i].base));
      await clients[i].signup(`cluster-person-${i}`);
    }
    const acked = [];
    // Every node takes writes, the two followers included (twice each: the
    // second reuses the wallet the first registered, so its nonce is the
    // follower's own next one).
    for (const i of [0, 1, 2]) {
      acked.push(await consentOn(clients, i));
      acked.push(await consentOn(clients, i, { scope: ['screening'], purpose: 'research' }));
    }
    const h1 = await until('the writes on every node', () => sameChains(nodes, 1));
    // The explorer on every node shows every write, wherever it was made.
    for (const a of acked) {
      for (const n of nodes) {
        const r = await new Client(n.base).get(`/api/ledger/tx/${a.id}`);
        assert.equal(r.status, 200, `${n.base} lacks consent ${a.id} written on node ${a.node + 1}: ${r.text}`);
      }
    }
    // /api/health names the cluster state: nobody halted, one leader that
    // everyone names (polled: a leader change may be under way).
    await until('health to agree on one leader', async () => {
      const hs = await Promise.all(nodes.map(async (n) => (await new Client(n.base).get('/api/health')).json));
      for (const h of hs) {
        assert.equal(h.status, 'ok', JSON.stringify(h));
        assert.equal(h.cluster.halted, false);
      }
      const leaders = hs.map((h, i) => (h.cluster.leader ? i + 1 : 0)).filter(Boolean);
      return leaders.length === 1 && hs.every((h) => h.cluster.leader_id === leaders[0]);
    });

    // kill -9 the leader: a write on a survivor waits (forwarding retries)
    // until the other two have elected one, then commits.
    const dead = await leaderOf(nodes, [0, 1, 2]);
    nodes[dead].proc.kill('SIGKILL');
    await nodes[dead].exited;
    const live = [0, 1, 2].filter((i) => i !== dead);
    acked.push(await consentOn(clients, live[0]));
    acked.push(await consentOn(clients, live[1]));
    const liveNodes = live.map((i) => nodes[i]);
    await until('the surviving nodes to agree', () => sameChains(liveNodes, h1.height + 1));
    // Every acknowledged consent is on both survivors' ledgers.
    for (const a of acked) {
      for (const i of live) {
        const r = await new Client(nodes[i].base).get(`/api/ledger/tx/${a.id}`);
        assert.equal(r.status, 200, `node ${i + 1} lacks acknowledged consent ${a.id}: ${r.text}`);
      }
    }
  } finally {
    for (const n of nodes) { await n.stop(); }
    rmSync(root, { recursive: true, force: true });
  }
});
