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

// ---- Proof documents are checked in full ----

// Every one-field edit we can enumerate of a document: each value changed
// (a hex character flipped, a digit changed, a number bumped either way, a
// string extended, null/booleans swapped), each member removed, an unknown
// member added to each object, each array element dropped and one added.
function* edits(doc) {
  const paths = [];
  const walk = (v, path) => {
    paths.push(path);
    if (Array.isArray(v)) v.forEach((x, i) => walk(x, [...path, i]));
    else if (v && typeof v === 'object') for (const k of Object.keys(v)) walk(v[k], [...path, k]);
  };
  walk(doc, []);
  const at = (root, path) => path.reduce((o, k) => o[k], root);
  const edited = (path, fn, what) => {
    const copy = structuredClone(doc);
    if (path.length === 0) fn(copy, null, null);
    else fn(copy, at(copy, path.slice(0, -1)), path[path.length - 1]);
    return { what: `${what} at ${path.join('.') || '(root)'}`, doc: copy };
  };
  for (const path of paths) {
    const v = at(doc, path);
    const set = (nv, what) => edited(path, (c, parent, key) => { parent[key] = nv; }, what);
    if (path.length) {
      if (typeof v === 'string') {
        if (/^[0-9a-f]+$/.test(v)) {
          for (const i of new Set([0, v.length >> 1, v.length - 1])) {
            const ch = v[i] === 'f' ? '0' : (parseInt(v[i], 16) + 1).toString(16);
            yield set(v.slice(0, i) + ch + v.slice(i + 1), `hex char ${i} flipped`);
          }
          if (/[a-f]/.test(v)) yield set(v.toUpperCase(), 'hex upper-cased (same bytes)');
        }
        yield set('', 'string emptied');
        const d = v.search(/[0-9]/);
        if (d >= 0 && !/^[0-9a-f]+$/.test(v)) yield set(v.slice(0, d) + ((+v[d] + 1) % 10) + v.slice(d + 1), 'digit changed');
        if (d < 0) yield set(v + 'x', 'string changed');
      } else if (typeof v === 'number') {
        yield set(v + 1, 'number bumped');
        if (v > 0) yield set(v - 1, 'number lowered');
        yield set(String(v), 'number as a string');
      } else if (v === null) yield set(0, 'null replaced');
      else if (typeof v === 'boolean') yield set(!v, 'boolean flipped');
      if (v !== null) yield set(null, 'value nulled');
      const parentIsArray = Array.isArray(at(doc, path.slice(0, -1)));
      yield edited(path, (c, parent, key) => { if (parentIsArray) parent.splice(key, 1); else delete parent[key]; },
        parentIsArray ? 'element removed' : 'field removed');
    }
    if (Array.isArray(v)) {
      yield edited(path, (c, parent, key) => {
        const arr = parent ? parent[key] : c;
        arr.push(arr.length ? arr[arr.length - 1] : 'ab'.repeat(32));
      }, 'element added');
    } else if (v && typeof v === 'object') {
      yield edited(path, (c, parent, key) => { (parent ? parent[key] : c).unexpected = 1; }, 'unknown field added');
    }
  }
}

test('every one-field edit of a consent receipt, a record anchor and an inclusion proof is refused', async () => {
  const srv = await startServer();
  const dir = mkdtempSync(join(tmpdir(), 'proof-edits-'));
  try {
    const c = new Client(srv.base);
    await c.signup(`edits${process.pid % 1000}`);
    const g = await c.post('/api/consents', { scope: ['screening', 'symptoms'], purpose: 'research', expires_in_days: 30 });
    assert.equal(g.status, 201, g.text);
    const rec = await c.post('/api/records', { kind: 'allergy', title: 'Peanuts', details: 'since 2001' });
    assert.equal(rec.status, 201, rec.text);
    const anchored = await c.post(`/api/records/${rec.json.record.id}/anchor`);
    assert.equal(anchored.status, 201, anchored.text);
    // Later blocks, so the holding blocks are not the tree head.
    for (let i = 0; i < 3; i++)
      assert.equal((await c.post('/api/consents', { scope: ['conditions'], purpose: 'research' })).status, 201);
    const node = (await c.get('/api/ledger')).json.node_key;
    const txid = g.json.receipt.txid;
    const cli = run('ledger', 'proof', txid, '--data-dir', srv.dataDir);
    assert.equal(cli.status, 0, cli.stderr);
    const docs = {
      receipt: (await c.get(`/api/consents/${txid}/receipt`)).json,
      anchor: (await c.get(`/api/records/${rec.json.record.id}/anchor`)).json,
      explorer: (await c.get(`/api/ledger/proof/${anchored.json.anchor.receipt.txid}`)).json,
      proof: JSON.parse(cli.stdout),
    };
    assert.equal(docs.receipt.format, 'caresync-consent-receipt-v2');
    assert.equal(docs.anchor.format, 'caresync-record-anchor-v2');
    assert.equal(docs.receipt.consent.granted_block, g.json.receipt.block);
    assert.ok(docs.proof.tx_block.block.height < docs.proof.tree_head.block.height, 'the tx should not be in the head block');
    let total = 0;
    for (const [name, doc] of Object.entries(docs)) {
      const orig = join(dir, `${name}.json`);
      writeFileSync(orig, JSON.stringify(doc));
      const ok = run('ledger', 'verify-proof', orig, '--node-key', node);
      assert.equal(ok.status, 0, `${name}: ${ok.stderr}`);
      assert.match(ok.stdout, /proof OK/);
      const files = [], whats = new Map();
      for (const e of edits(doc)) {
        const f = join(dir, `${name}-${files.length}.json`);
        writeFileSync(f, JSON.stringify(e.doc));
        files.push(f);
        whats.set(f, e.what);
      }
      // One process checks them all and gives one verdict per file; with and
      // without a trusted key (an edit must not depend on --node-key to fail).
      for (const extra of [['--node-key', node], []]) {
        const r = run('ledger', 'verify-proof', ...files, ...extra);
        assert.equal(r.status, 1);
        const passed = files.filter((f) => r.stdout.includes(`${f}: proof OK`));
        assert.deepEqual(passed.map((f) => `${name}: ${whats.get(f)}`), [], 'edited documents that verified');
        const refused = files.filter((f) => r.stderr.includes(`verify-proof: ${f}: INVALID: `));
        assert.equal(refused.length, files.length, `${name}: every edit must be refused with a reason`);
      }
      total += files.length;
      // Readable copies get the sentences people know.
      if (name === 'receipt') {
        const e = structuredClone(doc);
        e.consent.granted_block += 1;
        writeFileSync(orig, JSON.stringify(e));
        assert.match(run('ledger', 'verify-proof', orig).stderr, /consent \(consent.granted_block\) differs from the proven grant/);
        const e2 = structuredClone(doc);
        e2.proof.tree_head.block.time_ms += 1;
        writeFileSync(orig, JSON.stringify(e2));
        assert.match(run('ledger', 'verify-proof', orig).stderr, /field proof.tree_head.block.time_ms differs/);
      }
    }
    assert.ok(total > 1000, `only ${total} edits enumerated`);
    console.log(`# ${total} one-field edits, all refused`);
    // A v1 document (the old format, with unchecked fields) is refused.
    writeFileSync(join(dir, 'v1.json'), JSON.stringify({ ...docs.receipt, format: 'caresync-consent-receipt-v1' }));
    const v1 = run('ledger', 'verify-proof', join(dir, 'v1.json'));
    assert.equal(v1.status, 1);
    assert.match(v1.stderr, /v1 document/);
  } finally {
    await srv.stop();
    srv.cleanup();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('verify prints the genesis hash and keys; --node-key and --genesis pin them; another ledger is refused', async () => {
  const a = await startServer();
  const b = await startServer();
  try {
    for (const srv of [a, b]) {
      const c = new Client(srv.base);
      await c.signup(`pin${process.pid % 1000}`);
      assert.equal((await c.post('/api/consents', { scope: ['screening'], purpose: 'research' })).status, 201);
    }
    const nodeA = (await new Client(a.base).get('/api/ledger')).json.node_key;
    const nodeB = (await new Client(b.base).get('/api/ledger')).json.node_key;
    assert.notEqual(nodeA, nodeB);
    const v = run('ledger', 'verify', '--data-dir', a.dataDir);
    assert.equal(v.status, 0, v.stderr);
    const genesisA = v.stdout.match(/^genesis: ([0-9a-f]{64})$/m)[1];
    assert.match(v.stdout, /^admin key: [0-9a-f]{64}$/m);
    assert.equal(v.stdout.match(/^node keys \(signed blocks\): ([0-9a-f ]+)$/m)[1], nodeA);
    assert.match(v.stdout, /nothing was pinned/);
    // The genesis hash is block 0's, as the explorer shows it.
    assert.equal((await new Client(a.base).get('/api/ledger/blocks/0')).json.block.hash, genesisA);
    let r = run('ledger', 'verify', '--data-dir', a.dataDir, '--node-key', nodeA, '--genesis', genesisA);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /pinned: genesis node keys/);
    // Several trusted node keys: one of them must have signed each block.
    r = run('ledger', 'verify', '--data-dir', a.dataDir, '--node-key', nodeB, '--node-key', nodeA);
    assert.equal(r.status, 0, r.stderr);
    r = run('ledger', 'verify', '--data-dir', a.dataDir, '--node-key', 'ab'.repeat(32));
    assert.equal(r.status, 1, r.stdout);
    assert.match(r.stderr, /block 0: block is signed by a key that is not a pinned node key/);
    assert.match(r.stderr, /block: 0/);
    r = run('ledger', 'verify', '--data-dir', a.dataDir, '--genesis', 'cd'.repeat(32));
    assert.equal(r.status, 1, r.stdout);
    assert.match(r.stderr, /genesis is not the pinned one/);
    // Ledger B is valid on its own (its genesis names its own keys) but is
    // not the ledger A's auditor pinned.
    assert.equal(run('ledger', 'verify', '--data-dir', b.dataDir).status, 0);
    r = run('ledger', 'verify', '--data-dir', b.dataDir, '--node-key', nodeA);
    assert.equal(r.status, 1);
    assert.match(r.stderr, new RegExp(`not a pinned node key.*${nodeB}`));
    r = run('ledger', 'verify', '--data-dir', b.dataDir, '--genesis', genesisA);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /genesis is not the pinned one/);
    assert.equal(run('ledger', 'verify', '--data-dir', a.dataDir, '--genesis', 'xyz').status, 2);
    assert.equal(run('ledger', 'verify', '--data-dir', a.dataDir, '--node-key', 'ab').status, 2);
  } finally {
    await a.stop(); await b.stop();
    a.cleanup(); b.cleanup();
  }
});

test('the command list names every ledger task, verify-consistency included', () => {
  const r = run();
  assert.equal(r.status, 2);
  assert.match(r.stderr, /^ {2}ledger .*verify-proof, verify-consistency$/m, r.stderr);
  assert.match(run('ledger', '--help').stdout, /^ {2}verify-consistency FILE$/m);
});

test('verify-consistency checks what the explorer serves, tied to signed tree heads; from=0 per RFC 6962', async () => {
  const srv = await startServer();
  const dir = mkdtempSync(join(tmpdir(), 'cons-'));
  const file = (name, v) => { const f = join(dir, name); writeFileSync(f, typeof v === 'string' ? v : JSON.stringify(v)); return f; };
  try {
    const c = new Client(srv.base);
    await c.signup(`cons${process.pid % 1000}`);
    const g = await c.post('/api/consents', { scope: ['screening'], purpose: 'research' });
    // A tree head an auditor kept: block 1 as the explorer serves it.
    const oldResp = (await c.get('/api/ledger/blocks/1')).json;
    for (let i = 0; i < 5; i++) assert.equal((await c.post('/api/consents', { scope: ['symptoms'], purpose: 'research' })).status, 201);
    const newResp = (await c.get('/api/ledger')).json;
    const node = newResp.node_key;
    const from = oldResp.block.tree_size, to = newResp.tree_head.tree_size;
    const cons = (await c.get(`/api/ledger/consistency?from=${from}&to=${to}`)).json;
    const consF = file('cons.json', cons), oldF = file('old.json', oldResp), newF = file('new.json', newResp);
    const vc = (...args) => run('ledger', 'verify-consistency', ...args);
    let r = vc(consF, '--old', oldF, '--new', newF, '--node-key', node);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`consistency OK: the log of ${from} leaves .* prefix of the log of ${to} leaves`));
    assert.match(r.stdout, /old tree head: block 1 signed by node .* \(trusted\)/);
    // Alone, the proof links its two roots, and says they are unsigned.
    r = vc(consF);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /roots are not tied to a signed tree head/);
    // The inner object, one block from /api/ledger/blocks, and a proof
    // document's tree head serve as well; so does a bare path with both heads.
    const blocks = (await c.get('/api/ledger/blocks?limit=50')).json.blocks;
    const receipt = (await c.get(`/api/consents/${g.json.consent.id}/receipt`)).json;
    assert.equal(receipt.proof.tree_head.block.tree_size, to);
    r = vc(file('inner.json', cons.consistency), '--old', file('b1.json', blocks.find((b) => b.height === 1)),
      '--new', file('receipt.json', receipt), '--node-key', node);
    assert.equal(r.status, 0, r.stderr);
    r = vc(file('path.json', cons.consistency.proof), '--old', oldF, '--new', newF);
    assert.equal(r.status, 0, r.stderr);
    // Refused: every field edited, unknown fields, wrong heads, wrong key.
    const bad = [];
    const flip = (h) => (h[0] === 'f' ? '0' : (parseInt(h[0], 16) + 1).toString(16)) + h.slice(1);
    for (const k of ['from', 'to']) bad.push([`${k} bumped`, { consistency: { ...cons.consistency, [k]: cons.consistency[k] + 1 } }]);
    for (const k of ['from_root', 'to_root']) bad.push([`${k} flipped`, { consistency: { ...cons.consistency, [k]: flip(cons.consistency[k]) } }]);
    cons.consistency.proof.forEach((h, i) => {
      const p = [...cons.consistency.proof];
      p[i] = flip(h);
      bad.push([`proof[${i}] flipped`, { consistency: { ...cons.consistency, proof: p } }]);
      bad.push([`proof[${i}] removed`, { consistency: { ...cons.consistency, proof: p.filter((_, j) => j !== i) } }]);
    });
    bad.push(['proof element added', { consistency: { ...cons.consistency, proof: [...cons.consistency.proof, 'ab'.repeat(32)] } }]);
    bad.push(['unknown field', { consistency: { ...cons.consistency, note: 'x' } }]);
    bad.push(['unknown outer field', { ...cons, note: 'x' }]);
    for (const k of Object.keys(cons.consistency)) {
      const e = { ...cons.consistency };
      delete e[k];
      bad.push([`${k} removed`, { consistency: e }]);
    }
    for (const [what, doc] of bad) {
      r = vc(file('bad.json', doc), '--old', oldF, '--new', newF);
      assert.equal(r.status, 1, `${what}: ${r.stdout}`);
      assert.match(r.stderr, /INVALID/, what);
    }
    // The proof is right but the old head is another block: refused.
    r = vc(consF, '--old', file('b2.json', blocks.find((b) => b.height === 2)), '--new', newF);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /old tree head .* is not the proof's from/);
    // A head whose readable fields were edited fails its signature or hash.
    for (const k of ['time_ms', 'tx_count', 'height']) {
      r = vc(consF, '--old', file('e.json', { block: { ...oldResp.block, [k]: oldResp.block[k] + 1 } }), '--new', newF);
      assert.equal(r.status, 1, k);
    }
    r = vc(consF, '--old', file('e.json', { block: { ...oldResp.block, extra: 1 } }), '--new', newF);
    assert.equal(r.status, 1);
    r = vc(consF, '--old', oldF, '--new', newF, '--node-key', 'ab'.repeat(32));
    assert.equal(r.status, 1);
    assert.match(r.stderr, /not signed by the trusted node key/);
    assert.equal(vc(file('path.json', cons.consistency.proof)).status, 1); // a bare path needs both heads
    // from=0: the empty proof, trivially consistent (RFC 6962); anything
    // else from 0 is refused.
    const zero = (await c.get('/api/ledger/consistency?from=0')).json;
    assert.deepEqual(zero.consistency.proof, []);
    r = vc(file('zero.json', zero), '--new', newF);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /from the empty tree/);
    r = vc(file('zero.json', { consistency: { ...zero.consistency, proof: [cons.consistency.proof[0]] } }));
    assert.equal(r.status, 1);
    r = vc(file('zero.json', { consistency: { ...zero.consistency, from_root: newResp.tree_head.root } }));
    assert.equal(r.status, 1);
  } finally {
    await srv.stop();
    srv.cleanup();
    rmSync(dir, { recursive: true, force: true });
  }
});
